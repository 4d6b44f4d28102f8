//! The output frame rate: which composited frame is due when, and its timestamp, so
//! that output frames come at a steady rate whatever the participants send. Frame
//! times are derived from the start and the frame number, never accumulated, so
//! they do not drift.

use std::time::{Duration, Instant};

use thiserror::Error;

/// RTP/MP4 video clock rate.
pub const PTS_HZ: u64 = 90_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameClockError {
    #[error("frame rate must be 1..=120, got {0}")]
    BadRate(u32),
}

/// One output frame to produce now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Frame number since the start.
    pub index: u64,
    /// Presentation time in 90 kHz units since the start.
    pub pts: u64,
    /// Frames that came due before this one but were not asked for in time; they
    /// are dropped rather than rendered late, to catch up with real time.
    pub skipped: u64,
}

#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    fps: u32,
    /// The next frame not yet handed out.
    next: u64,
}

impl FrameClock {
    /// Frame 0 is due at `start`.
    pub fn new(start: Instant, fps: u32) -> Result<Self, FrameClockError> {
        if !(1..=120).contains(&fps) {
            return Err(FrameClockError::BadRate(fps));
        }
        Ok(Self {
            start,
            fps,
            next: 0,
        })
    }

    /// When frame `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        let nanos = (u128::from(index) * 1_000_000_000).div_ceil(u128::from(self.fps));
        self.start + Duration::from_nanos(nanos as u64)
    }

    /// Presentation time of frame `index` in 90 kHz units.
    pub fn pts(&self, index: u64) -> u64 {
        index * PTS_HZ / u64::from(self.fps)
    }

    /// The lowest presentation time that the next frame handed out at `now` or
    /// later can have.
    pub fn next_pts_from(&self, now: Instant) -> u64 {
        self.pts(self.index_at(now).unwrap_or(0).max(self.next))
    }

    /// The newest frame due at `now`.
    fn index_at(&self, now: Instant) -> Option<u64> {
        let elapsed = now.checked_duration_since(self.start)?.as_nanos();
        Some((elapsed * u128::from(self.fps) / 1_000_000_000) as u64)
    }

    /// When the next frame is due: the IO shell sleeps until then.
    pub fn next_due(&self) -> Instant {
        self.due(self.next)
    }

    /// The newest frame due at `now`, if one is due that was not handed out yet.
    pub fn poll(&mut self, now: Instant) -> Option<Tick> {
        let index = self.index_at(now)?;
        if index < self.next {
            return None;
        }
        let skipped = index - self.next;
        if skipped > 0 {
            tracing::debug!(skipped, index, "output fell behind, frames skipped");
        }
        self.next = index + 1;
        Some(Tick {
            index,
            pts: self.pts(index),
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_ticks_at_the_frame_rate() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, 30).unwrap();
        assert_eq!(clock.next_due(), start);
        let t0 = clock.poll(start).unwrap();
        assert_eq!((t0.index, t0.pts, t0.skipped), (0, 0, 0));
        // Nothing more until the next frame is due.
        assert_eq!(clock.poll(start + Duration::from_millis(20)), None);
        assert_eq!(clock.next_due(), start + Duration::from_nanos(33_333_334));
        let t1 = clock.poll(clock.next_due()).unwrap();
        assert_eq!((t1.index, t1.pts, t1.skipped), (1, 3000, 0));
        // Frame 30 is due exactly one second in.
        assert_eq!(clock.due(30), start + Duration::from_secs(1));
        assert_eq!(clock.pts(30), 90_000);
    }

    #[test]
    fn falling_behind_skips_to_the_newest_frame() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, 25).unwrap();
        clock.poll(start).unwrap();
        let late = clock.poll(start + Duration::from_millis(130)).unwrap();
        assert_eq!((late.index, late.pts, late.skipped), (3, 3 * 3600, 2));
        assert_eq!(clock.poll(start + Duration::from_millis(150)), None);
        assert_eq!(
            clock
                .poll(start + Duration::from_millis(160))
                .unwrap()
                .skipped,
            0
        );
    }

    #[test]
    fn the_next_frame_handed_out_has_at_least_next_pts_from() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, 25).unwrap();
        assert_eq!(clock.next_pts_from(start - Duration::from_secs(1)), 0);
        let late = start + Duration::from_millis(130);
        assert_eq!(clock.next_pts_from(late), 3 * 3600);
        assert_eq!(clock.poll(late).unwrap().pts, 3 * 3600);
        // Frame 3 handed out: the next one is frame 4 at the earliest.
        assert_eq!(clock.next_pts_from(late), 4 * 3600);
        let later = start + Duration::from_millis(330);
        assert_eq!(clock.next_pts_from(later), 8 * 3600);
        assert_eq!(clock.poll(later).unwrap().pts, 8 * 3600);
    }

    #[test]
    fn before_start_and_bad_rates() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut clock = FrameClock::new(start, 30).unwrap();
        assert_eq!(clock.poll(Instant::now()), None);
        assert_eq!(
            FrameClock::new(start, 0).unwrap_err(),
            FrameClockError::BadRate(0)
        );
        assert!(FrameClock::new(start, 121).is_err());
    }
}
