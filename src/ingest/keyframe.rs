//! Rate limit for keyframe requests (PLI): a lost packet makes every following frame
//! undecodable, and asking again for each of them would flood the sender, which needs
//! a moment to produce the keyframe anyway.

use std::time::{Duration, Instant};

/// Default minimum time between two requests for one stream.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct KeyframeLimiter {
    min_interval: Duration,
    last_sent: Option<Instant>,
    wanted: bool,
}

impl KeyframeLimiter {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            wanted: false,
        }
    }

    /// A keyframe is needed; it stays wanted until one arrives.
    pub fn want(&mut self) {
        self.wanted = true;
    }

    /// A keyframe arrived.
    pub fn satisfied(&mut self) {
        self.wanted = false;
    }

    /// True when a request should be sent now.
    pub fn poll(&mut self, now: Instant) -> bool {
        let allowed = self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if self.wanted && allowed {
            self.last_sent = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_at_most_once_per_interval_until_satisfied() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut k = KeyframeLimiter::new(DEFAULT_MIN_INTERVAL);
        assert!(!k.poll(t0));
        k.want();
        assert!(k.poll(t0));
        k.want();
        assert!(!k.poll(at(100)));
        assert!(!k.poll(at(499)));
        assert!(k.poll(at(500)));
        k.satisfied();
        assert!(!k.poll(at(2000)));
        k.want();
        assert!(k.poll(at(2000)));
    }
}
