//! LED patterns: what the status LED (and the optional fault LED) do in each panel
//! state, as a pure function of the state and the time since it was entered. Each
//! pattern starts at its beginning when the state changes, so a change shows at once.
//!
//! | state | status LED | fault LED |
//! |---|---|---|
//! | ready | heartbeat: 100 ms on every 2 s | off |
//! | starting, stopping | busy: three 100 ms flashes, 700 ms dark | off |
//! | recording | steady on | off |
//! | warning | wink: on, dark 250 ms every 2 s | slow blink |
//! | spooling | double blink: 200 on, 200 off, 200 on, 1000 off | slow blink |
//! | fault | fast blink: 125 ms on, 125 ms off | steady on |
//! | eject-safe | slow blink: 1 s on, 1 s off | off |

use std::time::{Duration, Instant};

use super::status::PanelState;

/// An on/off pattern that repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Off,
    Steady,
    Heartbeat,
    Busy,
    Wink,
    DoubleBlink,
    FastBlink,
    SlowBlink,
}

impl Pattern {
    /// The status LED's and the fault LED's pattern in `state`.
    pub fn for_state(state: PanelState) -> (Pattern, Pattern) {
        match state {
            PanelState::Ready => (Pattern::Heartbeat, Pattern::Off),
            PanelState::Starting | PanelState::Stopping => (Pattern::Busy, Pattern::Off),
            PanelState::Recording => (Pattern::Steady, Pattern::Off),
            PanelState::Warning => (Pattern::Wink, Pattern::SlowBlink),
            PanelState::Spooling => (Pattern::DoubleBlink, Pattern::SlowBlink),
            PanelState::Fault => (Pattern::FastBlink, Pattern::Steady),
            PanelState::EjectSafe => (Pattern::SlowBlink, Pattern::Off),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Off => "off",
            Pattern::Steady => "steady",
            Pattern::Heartbeat => "heartbeat",
            Pattern::Busy => "busy",
            Pattern::Wink => "wink",
            Pattern::DoubleBlink => "double blink",
            Pattern::FastBlink => "fast blink",
            Pattern::SlowBlink => "slow blink",
        }
    }

    /// One cycle: (lit, milliseconds) in order.
    fn steps(self) -> &'static [(bool, u64)] {
        match self {
            Pattern::Off => &[(false, 1000)],
            Pattern::Steady => &[(true, 1000)],
            Pattern::Heartbeat => &[(true, 100), (false, 1900)],
            Pattern::Busy => &[
                (true, 100),
                (false, 100),
                (true, 100),
                (false, 100),
                (true, 100),
                (false, 700),
            ],
            Pattern::Wink => &[(true, 1750), (false, 250)],
            Pattern::DoubleBlink => &[(true, 200), (false, 200), (true, 200), (false, 1000)],
            Pattern::FastBlink => &[(true, 125), (false, 125)],
            Pattern::SlowBlink => &[(true, 1000), (false, 1000)],
        }
    }

    /// Whether the LED is lit `elapsed` after the pattern began.
    pub fn lit(self, elapsed: Duration) -> bool {
        let steps = self.steps();
        let period: u64 = steps.iter().map(|&(_, ms)| ms).sum();
        let mut t = (elapsed.as_millis() % u128::from(period)) as u64;
        for &(on, ms) in steps {
            if t < ms {
                return on;
            }
            t -= ms;
        }
        unreachable!("t is below the sum of the steps")
    }
}

/// A state and its patterns in words: `spooling (LED double blink, fault LED slow blink)`.
pub fn describe(state: PanelState) -> String {
    let (led, fault_led) = Pattern::for_state(state);
    format!(
        "{state} (LED {}, fault LED {})",
        led.name(),
        fault_led.name()
    )
}

/// What the LEDs show at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leds {
    pub status: bool,
    /// The optional second (red) LED.
    pub fault: bool,
}

impl Leds {
    pub fn at(state: PanelState, elapsed: Duration) -> Self {
        let (status, fault) = Pattern::for_state(state);
        Self {
            status: status.lit(elapsed),
            fault: fault.lit(elapsed),
        }
    }
}

/// The state being shown and since when, which sets the patterns' phase.
#[derive(Debug, Clone, Copy)]
pub struct Indicator {
    state: PanelState,
    since: Instant,
}

impl Indicator {
    pub fn new(state: PanelState, now: Instant) -> Self {
        Self { state, since: now }
    }

    pub fn state(&self) -> PanelState {
        self.state
    }

    /// Shows `state` from now on, if it is another one; whether it was.
    pub fn show(&mut self, state: PanelState, now: Instant) -> bool {
        if state == self.state {
            return false;
        }
        *self = Self::new(state, now);
        true
    }

    pub fn leds(&self, now: Instant) -> Leds {
        Leds::at(self.state, now.saturating_duration_since(self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The pattern sampled every 10 ms over `period` ms.
    fn trace(p: Pattern, period: u64) -> Vec<bool> {
        (0..period / 10).map(|k| p.lit(ms(k * 10))).collect()
    }

    #[test]
    fn patterns_have_their_documented_shape() {
        assert!((0..100).all(|k| Pattern::Steady.lit(ms(k * 97))));
        assert!((0..100).all(|k| !Pattern::Off.lit(ms(k * 97))));
        let hb = Pattern::Heartbeat;
        assert!(hb.lit(ms(0)) && hb.lit(ms(99)) && !hb.lit(ms(100)) && !hb.lit(ms(1999)));
        assert!(hb.lit(ms(2000)) && hb.lit(ms(20_050)));
        let fast = Pattern::FastBlink;
        assert!(fast.lit(ms(0)) && !fast.lit(ms(125)) && fast.lit(ms(250)) && !fast.lit(ms(375)));
        let slow = Pattern::SlowBlink;
        assert!(slow.lit(ms(999)) && !slow.lit(ms(1000)) && slow.lit(ms(2000)));
        let wink = Pattern::Wink;
        assert!(wink.lit(ms(1749)) && !wink.lit(ms(1750)) && !wink.lit(ms(1999)));
        let double: Vec<bool> = [0, 199, 200, 399, 400, 599, 600, 1599, 1600]
            .iter()
            .map(|&t| Pattern::DoubleBlink.lit(ms(t)))
            .collect();
        assert_eq!(
            double,
            [true, true, false, false, true, true, false, false, true]
        );
        // Busy: three flashes in 1.2 s.
        let flashes = trace(Pattern::Busy, 1200)
            .windows(2)
            .filter(|w| !w[0] && w[1])
            .count()
            + 1;
        assert_eq!(flashes, 3);
    }

    #[test]
    fn every_state_looks_different_on_the_status_led() {
        // 24 s is a whole number of every pattern's cycle.
        let traces: Vec<(PanelState, Vec<bool>)> = PanelState::ALL
            .iter()
            .map(|&s| (s, trace(Pattern::for_state(s).0, 24_000)))
            .collect();
        for (i, (a, ta)) in traces.iter().enumerate() {
            for (b, tb) in &traces[i + 1..] {
                let same = matches!(
                    (a, b),
                    (PanelState::Starting, PanelState::Stopping)
                        | (PanelState::Stopping, PanelState::Starting)
                );
                assert_eq!(ta == tb, same, "{a} and {b}");
            }
        }
    }

    #[test]
    fn fault_led_marks_trouble_only() {
        for s in PanelState::ALL {
            let lit_ever = trace(Pattern::for_state(s).1, 2000).contains(&true);
            let trouble = matches!(
                s,
                PanelState::Warning | PanelState::Spooling | PanelState::Fault
            );
            assert_eq!(lit_ever, trouble, "{s}");
        }
        assert_eq!(
            Leds::at(PanelState::Fault, ms(130)),
            Leds {
                status: false,
                fault: true
            }
        );
    }

    #[test]
    fn a_new_state_starts_its_pattern_at_once() {
        let t = Instant::now();
        let mut ind = Indicator::new(PanelState::Recording, t);
        assert!(ind.leds(t + ms(5000)).status);
        // Entering fault half-way through a second: lit now, dark 125 ms later.
        let t1 = t + ms(5500);
        assert!(ind.show(PanelState::Fault, t1));
        assert!(ind.leds(t1).status);
        assert!(!ind.leds(t1 + ms(125)).status);
        assert_eq!(
            describe(PanelState::Spooling),
            "spooling (LED double blink, fault LED slow blink)"
        );
        // Showing the same state again does not restart its pattern.
        assert!(!ind.show(PanelState::Fault, t1 + ms(125)));
        assert!(!ind.leds(t1 + ms(125)).status);
        assert_eq!(ind.state(), PanelState::Fault);
    }
}
