//! A lossy network path for one RTP stream: drops, swaps neighbouring packets and
//! delays them, all decided by a seeded RNG so that a run can be repeated exactly.
//! Sans-IO: packets and time in, packets due for sending out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use thiserror::Error;

/// How long a packet held back for reordering waits for a successor to overtake it.
const REORDER_HOLD: Duration = Duration::from_millis(50);

#[derive(Debug, Error, PartialEq)]
pub enum ImpairmentError {
    #[error("{what} probability {value} is not within 0..=1")]
    Probability { what: &'static str, value: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairmentConfig {
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is held back and sent after the next one.
    pub reorder: f64,
    /// Each packet is delayed by a uniform random time up to this.
    pub jitter: Duration,
}

impl ImpairmentConfig {
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        for (what, value) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairmentError::Probability { what, value });
            }
        }
        Ok(())
    }

    pub fn is_clean(&self) -> bool {
        self.loss == 0.0 && self.reorder == 0.0 && self.jitter.is_zero()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImpairmentStats {
    pub dropped: u64,
    pub reordered: u64,
}

#[derive(Debug)]
pub struct Impairment {
    config: ImpairmentConfig,
    rng: StdRng,
    /// Packets by (due time, arrival number): equal due times keep their order.
    queue: BTreeMap<(Instant, u64), Vec<u8>>,
    arrivals: u64,
    /// A packet waiting to be overtaken, and when it goes anyway.
    held: Option<(Instant, Vec<u8>)>,
    stats: ImpairmentStats,
}

impl Impairment {
    /// `config` must have passed [`ImpairmentConfig::validate`].
    pub fn new(config: ImpairmentConfig, rng: StdRng) -> Self {
        Self {
            config,
            rng,
            queue: BTreeMap::new(),
            arrivals: 0,
            held: None,
            stats: ImpairmentStats::default(),
        }
    }

    #[cfg(test)]
    pub fn stats(&self) -> ImpairmentStats {
        self.stats
    }

    /// Offers a packet at `now`; false if the path dropped it.
    pub fn push(&mut self, packet: Vec<u8>, now: Instant) -> bool {
        if self.config.is_clean() {
            self.enqueue(now, packet);
            return true;
        }
        if self.rng.gen_bool(self.config.loss) {
            self.stats.dropped += 1;
            return false;
        }
        let due = now + self.config.jitter.mul_f64(self.rng.gen::<f64>());
        match self.held.take() {
            Some((_, held)) => {
                self.enqueue(due, packet);
                self.enqueue(due, held);
                self.stats.reordered += 1;
            }
            None if self.rng.gen_bool(self.config.reorder) => {
                self.held = Some((due + REORDER_HOLD, packet));
            }
            None => self.enqueue(due, packet),
        }
        true
    }

    /// The next packet to send at `now`, if one is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.held.as_ref().is_some_and(|(at, _)| *at <= now) {
            let (at, packet) = self.held.take().expect("checked above");
            self.enqueue(at, packet);
        }
        let entry = self.queue.first_entry().filter(|e| e.key().0 <= now)?;
        Some(entry.remove())
    }

    /// When the next packet falls due.
    pub fn next_due(&self) -> Option<Instant> {
        let queued = self.queue.keys().next().map(|k| k.0);
        let held = self.held.as_ref().map(|h| h.0);
        queued.into_iter().chain(held).min()
    }

    fn enqueue(&mut self, due: Instant, packet: Vec<u8>) {
        self.queue.insert((due, self.arrivals), packet);
        self.arrivals += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn drain(line: &mut Impairment, now: Instant) -> Vec<u8> {
        std::iter::from_fn(|| line.pop_due(now))
            .map(|p| p[0])
            .collect()
    }

    #[test]
    fn clean_path_passes_everything_in_order() {
        let t0 = Instant::now();
        let mut line = Impairment::new(ImpairmentConfig::default(), StdRng::seed_from_u64(1));
        for i in 0..10u8 {
            assert!(line.push(vec![i], t0));
        }
        assert_eq!(drain(&mut line, t0), (0..10).collect::<Vec<_>>());
        assert_eq!(line.next_due(), None);
    }

    #[test]
    fn reordering_swaps_neighbours_or_releases_after_the_hold() {
        let t0 = Instant::now();
        let config = ImpairmentConfig {
            reorder: 1.0,
            ..ImpairmentConfig::default()
        };
        let mut line = Impairment::new(config, StdRng::seed_from_u64(1));
        line.push(vec![0], t0);
        line.push(vec![1], t0);
        assert_eq!(drain(&mut line, t0), vec![1, 0]);
        line.push(vec![2], t0);
        assert_eq!(drain(&mut line, t0), Vec::<u8>::new());
        assert_eq!(line.next_due(), Some(t0 + REORDER_HOLD));
        assert_eq!(drain(&mut line, t0 + REORDER_HOLD), vec![2]);
        assert_eq!(line.stats().reordered, 1);
    }

    #[test]
    fn jitter_delays_within_the_bound() {
        let t0 = Instant::now();
        let jitter = Duration::from_millis(30);
        let config = ImpairmentConfig {
            jitter,
            ..ImpairmentConfig::default()
        };
        let mut line = Impairment::new(config, StdRng::seed_from_u64(3));
        for i in 0..50u8 {
            line.push(vec![i], t0);
        }
        assert!(line.next_due().unwrap() >= t0);
        let mut got = drain(&mut line, t0 + jitter);
        assert_eq!(got.len(), 50);
        got.sort_unstable();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn probabilities_are_checked() {
        let bad = ImpairmentConfig {
            loss: 1.5,
            ..ImpairmentConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ImpairmentError::Probability {
                what: "loss",
                value: 1.5
            })
        );
    }

    proptest! {
        /// Whatever the settings, every packet not dropped comes out exactly once, and
        /// the same seed gives the same run.
        #[test]
        fn nothing_is_lost_or_duplicated_but_drops(
            seed in any::<u64>(),
            loss in 0.0..0.5f64,
            reorder in 0.0..0.5f64,
            jitter_ms in 0u64..40,
            n in 1usize..200,
        ) {
            let t0 = Instant::now();
            let config = ImpairmentConfig { loss, reorder, jitter: Duration::from_millis(jitter_ms) };
            let run = || {
                let mut line = Impairment::new(config, StdRng::seed_from_u64(seed));
                let mut out = Vec::new();
                let mut kept = 0;
                for i in 0..n {
                    let now = t0 + Duration::from_millis(i as u64 * 5);
                    kept += usize::from(line.push((i as u32).to_be_bytes().to_vec(), now));
                    out.extend(std::iter::from_fn(|| line.pop_due(now)));
                }
                out.extend(std::iter::from_fn(|| line.pop_due(t0 + Duration::from_secs(60))));
                (out, kept, line.stats())
            };
            let (out, kept, stats) = run();
            prop_assert_eq!(out.len(), kept);
            prop_assert_eq!(stats.dropped as usize, n - kept);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), kept);
            prop_assert_eq!(run().0, out);
        }
    }
}
