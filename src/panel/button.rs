//! The front-panel button: raw levels in (sampled, or on each edge), debounced, and
//! gestures out. Sans-IO: time is passed in.
//!
//! - A level counts once it has held for `debounce`; bounce and shorter glitches are
//!   ignored, and a press is timed from when its level began.
//! - Short press: released before `short_max` → [`Gesture::Short`] on release.
//! - Long press: held for `long` → [`Gesture::Long`] at that moment, while still held,
//!   so the LED changes under the finger; its release is no gesture.
//! - Released between `short_max` and `long`: nothing (the user changed their mind).
//! - A button already down when watching begins (held at boot, or stuck) counts only
//!   after it has been released.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonTiming {
    pub debounce: Duration,
    pub short_max: Duration,
    pub long: Duration,
}

impl Default for ButtonTiming {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(30),
            short_max: Duration::from_secs(1),
            long: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    Short,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Debounced {
    Up,
    /// Down since `since`; `spent`: it already gave its gesture, or never may.
    Down {
        since: Instant,
        spent: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Button {
    timing: ButtonTiming,
    /// The last raw level and since when it has been so.
    raw: bool,
    raw_since: Instant,
    level: Debounced,
}

impl Button {
    /// `pressed`: the level when watching begins.
    pub fn new(timing: ButtonTiming, pressed: bool, now: Instant) -> Self {
        let level = if pressed {
            Debounced::Down {
                since: now,
                spent: true,
            }
        } else {
            Debounced::Up
        };
        Self {
            timing,
            raw: pressed,
            raw_since: now,
            level,
        }
    }

    /// A raw level (true: pressed) seen at `now`, then whatever is due.
    pub fn sample(&mut self, pressed: bool, now: Instant) -> Option<Gesture> {
        if pressed == self.raw {
            return self.poll(now);
        }
        // The old level lasted until now: it may have settled (or held long) unseen.
        let before = self.poll(now);
        self.raw = pressed;
        self.raw_since = now;
        before.or(self.poll(now))
    }

    /// What is due at `now` without a new level: a debounced edge, the long press.
    pub fn poll(&mut self, now: Instant) -> Option<Gesture> {
        let settled = now.saturating_duration_since(self.raw_since) >= self.timing.debounce;
        match self.level {
            Debounced::Up if self.raw && settled => {
                self.level = Debounced::Down {
                    since: self.raw_since,
                    spent: false,
                };
                self.poll_long(now)
            }
            Debounced::Down { since, spent } if !self.raw && settled => {
                // Held until the release began; a late poll may find the long press
                // due first.
                let long = self.poll_long(self.raw_since);
                self.level = Debounced::Up;
                let held = self.raw_since.saturating_duration_since(since);
                long.or((!spent && held < self.timing.short_max).then_some(Gesture::Short))
            }
            Debounced::Down { .. } => {
                // A release still bouncing does not end the hold.
                let until = if self.raw { now } else { self.raw_since };
                self.poll_long(until)
            }
            Debounced::Up => None,
        }
    }

    /// The long press, if the button has been held until `until` and it is due.
    fn poll_long(&mut self, until: Instant) -> Option<Gesture> {
        let Debounced::Down { since, spent } = &mut self.level else {
            return None;
        };
        if *spent || until.saturating_duration_since(*since) < self.timing.long {
            return None;
        }
        *spent = true;
        Some(Gesture::Long)
    }

    #[cfg(test)]
    /// Whether the button is held down (debounced).
    pub fn is_down(&self) -> bool {
        matches!(self.level, Debounced::Down { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A button sampled every `step` ms through a script of raw levels.
    struct Bench {
        button: Button,
        t0: Instant,
        now: u64,
        gestures: Vec<(u64, Gesture)>,
    }

    impl Bench {
        fn new() -> Self {
            Self::starting(false)
        }

        fn starting(pressed: bool) -> Self {
            let t0 = Instant::now();
            Self {
                button: Button::new(ButtonTiming::default(), pressed, t0),
                t0,
                now: 0,
                gestures: Vec::new(),
            }
        }

        /// Holds `pressed` for `ms`, sampled every 10 ms.
        fn hold(&mut self, pressed: bool, ms: u64) -> &mut Self {
            let end = self.now + ms;
            while self.now < end {
                self.at(self.now, pressed);
                self.now = (self.now + 10).min(end);
            }
            self
        }

        fn at(&mut self, ms: u64, pressed: bool) {
            let now = self.t0 + Duration::from_millis(ms);
            if let Some(g) = self.button.sample(pressed, now) {
                self.gestures.push((ms, g));
            }
        }

        fn press(&mut self, ms: u64) -> &mut Self {
            self.hold(true, ms).hold(false, 200)
        }
    }

    #[test]
    fn short_press_on_release() {
        let mut b = Bench::new();
        b.hold(false, 100).hold(true, 200);
        assert!(b.gestures.is_empty(), "nothing while held");
        assert!(b.button.is_down());
        b.hold(false, 100);
        // Released at 300 ms, counted once the release held for the debounce.
        assert_eq!(b.gestures, [(330, Gesture::Short)]);
        assert!(!b.button.is_down());
    }

    #[test]
    fn long_press_when_the_threshold_is_reached_and_its_release_is_nothing() {
        let mut b = Bench::new();
        b.hold(true, 10_000);
        assert_eq!(b.gestures, [(3000, Gesture::Long)], "once, at 3 s, held");
        b.hold(false, 500);
        assert_eq!(b.gestures.len(), 1);
    }

    #[test]
    fn timing_edges() {
        // Just under the short limit: short; at it: nothing; just under long: nothing.
        for (held, expect) in [
            (40, Some(Gesture::Short)),
            (990, Some(Gesture::Short)),
            (1000, None),
            (2000, None),
            (2990, None),
            (3000, Some(Gesture::Long)),
        ] {
            let mut b = Bench::new();
            b.press(held);
            assert_eq!(
                b.gestures.first().map(|&(_, g)| g),
                expect,
                "held {held} ms"
            );
            assert!(b.gestures.len() <= 1);
        }
    }

    #[test]
    fn glitches_shorter_than_the_debounce_are_ignored() {
        let mut b = Bench::new();
        b.hold(false, 100)
            .hold(true, 20)
            .hold(false, 500)
            .hold(true, 10)
            .hold(false, 500);
        assert!(b.gestures.is_empty());
        // Exactly the debounce is a (very short) press.
        b.press(30);
        assert_eq!(b.gestures.len(), 1);
    }

    #[test]
    fn bounce_on_press_and_release_is_one_short_press() {
        let mut b = Bench::new();
        b.hold(false, 100);
        for _ in 0..4 {
            b.hold(true, 10).hold(false, 10);
        }
        b.hold(true, 300);
        for _ in 0..4 {
            b.hold(false, 10).hold(true, 10);
        }
        b.hold(false, 300);
        assert_eq!(b.gestures.len(), 1);
        assert_eq!(b.gestures[0].1, Gesture::Short);
    }

    #[test]
    fn dropouts_while_held_do_not_break_a_long_press() {
        let mut b = Bench::new();
        b.hold(true, 1000)
            .hold(false, 20)
            .hold(true, 1000)
            .hold(false, 10)
            .hold(true, 1500);
        assert_eq!(b.gestures, [(3000, Gesture::Long)]);
    }

    #[test]
    fn two_presses_are_two_gestures() {
        let mut b = Bench::new();
        b.press(200).press(150).press(3500).press(100);
        let g: Vec<Gesture> = b.gestures.iter().map(|&(_, g)| g).collect();
        assert_eq!(
            g,
            [
                Gesture::Short,
                Gesture::Short,
                Gesture::Long,
                Gesture::Short
            ]
        );
    }

    #[test]
    fn held_when_watching_begins_counts_only_after_a_release() {
        let mut b = Bench::starting(true);
        b.hold(true, 10_000).hold(false, 200);
        assert!(
            b.gestures.is_empty(),
            "a stuck or held button is no gesture"
        );
        b.press(100);
        assert_eq!(b.gestures.len(), 1);
    }

    #[test]
    fn edges_only_with_polls_in_between() {
        // An edge-driven backend: levels only when they change, polls on a timer.
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = Button::new(ButtonTiming::default(), false, t0);
        assert_eq!(b.sample(true, at(100)), None);
        assert_eq!(b.poll(at(129)), None);
        assert!(!b.is_down());
        assert_eq!(b.poll(at(130)), None);
        assert!(b.is_down());
        assert_eq!(b.poll(at(3099)), None);
        assert_eq!(b.poll(at(3100)), Some(Gesture::Long));
        assert_eq!(b.sample(false, at(4000)), None);
        assert_eq!(b.poll(at(5000)), None);

        // A late poll finds a long hold that was released since: still the long press.
        assert_eq!(b.sample(true, at(6000)), None);
        assert_eq!(b.sample(false, at(9500)), Some(Gesture::Long));
        assert_eq!(b.poll(at(9600)), None);
        assert!(!b.is_down());

        // A short press seen only as two edges and a poll.
        assert_eq!(b.sample(true, at(10_000)), None);
        assert_eq!(b.sample(false, at(10_200)), None);
        assert_eq!(b.poll(at(10_230)), Some(Gesture::Short));
    }
}
