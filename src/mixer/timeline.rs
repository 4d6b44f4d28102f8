//! The mixer's one timeline and how each participant's RTP timestamps land on it.
//!
//! Time zero is the mixer's start; a position is counted in the stream's own clock
//! (48 kHz for Opus, 90 kHz for H.264) so consecutive packets land back to back with
//! no rounding. A stream is placed by the wall clock of its sender reports when it has
//! one, with one offset per participant so that their audio and video stay together;
//! until then by the arrival of its first frame. Audio captured on the box itself
//! has no timestamps and is placed by the mixer's own clock ([`LocalTimeline`]).

use std::time::Duration;

use crate::ingest::depacketize::opus::CLOCK_RATE;
use crate::ingest::MediaKind;

/// Offsets of one participant's two streams onto the timeline.
#[derive(Debug, Default, Clone)]
pub struct ParticipantTimeline {
    audio: StreamOffset,
    video: StreamOffset,
    /// Timeline microseconds minus sender wall-clock microseconds, fixed the first time
    /// either stream is seen with a wall clock.
    wall_to_timeline_us: Option<i64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct StreamOffset {
    /// Timeline position minus RTP timestamp, in the stream's clock.
    offset: Option<i64>,
    /// Whether `offset` comes from the sender's wall clock (final) or from arrival.
    from_wall_clock: bool,
}

/// Microseconds to the nearest tick; positions before the start are legal (negative).
fn ticks(us: i64, rate: u32) -> i64 {
    (i128::from(us) * i128::from(rate) + 500_000).div_euclid(1_000_000) as i64
}

impl ParticipantTimeline {
    /// Where a frame of `kind` with (extended) RTP timestamp `ts` belongs on the
    /// timeline, in the kind's clock. `arrival` is time since the mixer's start;
    /// `wallclock_us` the sender's wall clock at `ts`, if known.
    pub fn place(
        &mut self,
        kind: MediaKind,
        ts: i64,
        arrival: Duration,
        wallclock_us: Option<i64>,
    ) -> i64 {
        let rate = kind.clock_rate();
        let arrival_us = arrival.as_micros() as i64;
        let stream = match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        };
        match wallclock_us {
            Some(wall) if !stream.from_wall_clock => {
                let shift = *self.wall_to_timeline_us.get_or_insert(arrival_us - wall);
                stream.offset = Some(ticks(wall + shift, rate) - ts);
                stream.from_wall_clock = true;
            }
            None if stream.offset.is_none() => {
                stream.offset = Some(ticks(arrival_us, rate) - ts);
            }
            _ => {}
        }
        ts + stream.offset.expect("set above")
    }
}

/// How far local audio may stray from the mixer's clock before it is put back on it:
/// well inside the output delay, so a frame placed on the clock still makes its mix.
pub const LOCAL_TOLERANCE: Duration = Duration::from_millis(20);
/// Samples over which local audio must stay behind the clock before it is moved up:
/// scheduling delays make single frames late, never all of them for a second.
const LOCAL_WINDOW: i64 = CLOCK_RATE as i64;

/// Audio captured on the box itself (the room microphone) on the timeline, at 48 kHz.
///
/// Captures carry no timestamps, only the instant their last sample was captured, by
/// the mixer's clock. Frames follow each other back to back by sample count, as the
/// sound card's clock paces them; where that clock drifts from the mixer's, or samples
/// were lost, the stream is put back on the mixer's clock once it strays by more than
/// [`LOCAL_TOLERANCE`]: at once when it runs ahead (a delay never makes a frame early),
/// once it has been behind for a whole second otherwise.
#[derive(Debug, Clone)]
pub struct LocalTimeline {
    /// Position of the next sample.
    next: Option<i64>,
    /// Least lateness (clock position minus placed position) of the frames since one
    /// was on time, and how many samples they hold.
    least_late: i64,
    window: i64,
}

impl Default for LocalTimeline {
    fn default() -> Self {
        Self {
            next: None,
            least_late: i64::MAX,
            window: 0,
        }
    }
}

impl LocalTimeline {
    /// Where `samples` (per channel) whose last one was captured `captured_end` after
    /// the mixer's start belong on the timeline.
    pub fn place(&mut self, samples: usize, captured_end: Duration) -> i64 {
        let n = samples as i64;
        let tolerance = ticks(LOCAL_TOLERANCE.as_micros() as i64, CLOCK_RATE);
        let clock = ticks(captured_end.as_micros() as i64, CLOCK_RATE) - n;
        let next = *self.next.get_or_insert(clock);
        let late = clock - next;
        let at = if late < -tolerance {
            self.on_clock();
            clock
        } else if late <= tolerance {
            self.on_clock();
            next
        } else {
            self.least_late = self.least_late.min(late);
            self.window += n;
            if self.window < LOCAL_WINDOW {
                next
            } else {
                let behind = self.least_late;
                self.on_clock();
                next + behind
            }
        };
        self.next = Some(at + n);
        at
    }

    fn on_clock(&mut self) {
        self.least_late = i64::MAX;
        self.window = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_sender_reports_the_first_arrival_anchors_each_stream() {
        let mut t = ParticipantTimeline::default();
        // First audio packet (ts 1000) arrives 100 ms after the start.
        assert_eq!(t.place(MediaKind::Audio, 1000, 100 * MS, None), 4800);
        // Later packets follow their timestamps, whatever their arrival jitter.
        assert_eq!(t.place(MediaKind::Audio, 1960, 135 * MS, None), 5760);
        assert_eq!(t.place(MediaKind::Video, 9000, 110 * MS, None), 9900);
        assert_eq!(t.place(MediaKind::Video, 12000, 150 * MS, None), 12900);
    }

    #[test]
    fn sender_wall_clock_aligns_audio_and_video_of_one_participant() {
        let mut t = ParticipantTimeline::default();
        let wall0 = 3_900_000_000_000_000i64;
        // Audio ts 0 was captured at wall0 and arrives 50 ms after the start; video
        // captured at the same instant arrives 30 ms later (a bigger frame).
        let a = t.place(MediaKind::Audio, 0, 50 * MS, Some(wall0));
        let v = t.place(MediaKind::Video, 777, 80 * MS, Some(wall0));
        assert_eq!(a, 2400);
        // Same capture instant, same timeline instant.
        assert_eq!(v, 4500);
        // 1 s later on the sender's clock is 1 s later on the timeline.
        assert_eq!(
            t.place(MediaKind::Audio, 48_000, 2000 * MS, Some(wall0 + 1_000_000)),
            50_400
        );
    }

    #[test]
    fn a_stream_moves_to_the_wall_clock_once_and_stays() {
        let mut t = ParticipantTimeline::default();
        assert_eq!(t.place(MediaKind::Audio, 0, 20 * MS, None), 960);
        // The first report: placed by the wall clock from now on.
        let wall = 1_000_000_000;
        assert_eq!(t.place(MediaKind::Audio, 960, 45 * MS, Some(wall)), 2160);
        // A later report drifting by a millisecond does not move the stream.
        assert_eq!(
            t.place(MediaKind::Audio, 1920, 60 * MS, Some(wall + 21_000)),
            3120
        );
    }

    #[test]
    fn rounding_to_ticks() {
        assert_eq!(ticks(1, 48_000), 0);
        assert_eq!(ticks(11, 48_000), 1); // 0.528 ticks
        assert_eq!(ticks(-11, 48_000), -1);
        assert_eq!(ticks(20_000, 48_000), 960);
    }

    /// Places `frames` 20 ms frames whose capture ends `captured_end(k)` after the start,
    /// returning each frame's position and lateness against the clock.
    fn local(frames: usize, captured_end: impl Fn(usize) -> Duration) -> Vec<(i64, i64)> {
        let mut t = LocalTimeline::default();
        (0..frames)
            .map(|k| {
                let end = captured_end(k);
                let at = t.place(960, end);
                (at, ticks(end.as_micros() as i64, CLOCK_RATE) - 960 - at)
            })
            .collect()
    }

    fn back_to_back(placed: &[(i64, i64)]) -> usize {
        placed.windows(2).filter(|w| w[1].0 == w[0].0 + 960).count()
    }

    #[test]
    fn local_audio_follows_its_sample_count_through_scheduling_delays() {
        // Frames handed over up to 50 ms late, now and then, from a card that keeps time.
        let placed = local(500, |k| {
            let delay = [0, 3, 0, 50, 12, 0, 0, 31][k % 8];
            100 * MS + 20 * MS * (k as u32 + 1) + delay * MS
        });
        assert_eq!(
            placed[0].0, 4800,
            "the first frame sits where it was captured"
        );
        assert_eq!(back_to_back(&placed), 499, "never moved");
    }

    #[test]
    fn a_slow_sound_card_is_moved_back_onto_the_clock() {
        // 0.1% slow: each frame of 960 samples takes 20.02 ms of the mixer's clock.
        let placed = local(5000, |k| Duration::from_micros(20_020 * (k as u64 + 1)));
        let worst = placed.iter().map(|p| p.1.abs()).max().unwrap();
        assert!(worst <= 2 * 960, "strays {worst} samples");
        // Corrected now and then, not frame by frame.
        let moves = 4999 - back_to_back(&placed);
        assert!((2..=10).contains(&moves), "{moves} moves");
        assert!(
            placed.windows(2).all(|w| w[1].0 >= w[0].0 + 960),
            "never overlaps"
        );
    }

    #[test]
    fn a_fast_sound_card_is_moved_back_onto_the_clock() {
        let placed = local(5000, |k| Duration::from_micros(19_980 * (k as u64 + 1)));
        let worst = placed.iter().map(|p| p.1.abs()).max().unwrap();
        assert!(worst <= 960, "strays {worst} samples");
        let moves = 4999 - back_to_back(&placed);
        assert!((2..=10).contains(&moves), "{moves} moves");
    }

    #[test]
    fn lost_samples_leave_a_gap_within_a_second() {
        // 300 ms of capture lost after frame 100.
        let placed = local(300, |k| {
            let lost = if k > 100 { 300 * MS } else { Duration::ZERO };
            20 * MS * (k as u32 + 1) + lost
        });
        assert_eq!(placed[100].1, 0);
        assert!(placed[101].1 >= 300 * 48);
        assert!(
            placed[155..].iter().all(|p| p.1 == 0),
            "{:?}",
            &placed[140..]
        );
    }

    #[test]
    fn a_late_first_frame_does_not_hold_the_stream_back() {
        let placed = local(10, |k| {
            let delay = if k == 0 { 45 * MS } else { Duration::ZERO };
            20 * MS * (k as u32 + 1) + delay
        });
        assert_eq!(placed[0].0, 45 * 48);
        assert_eq!(placed[1].0, 960, "back on the clock at the next frame");
        assert!(placed[1..].iter().all(|p| p.1 == 0));
    }
}
