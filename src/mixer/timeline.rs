//! The mixer's one timeline and how each participant's RTP timestamps land on it.
//!
//! Time zero is the mixer's start; a position is counted in the stream's own clock
//! (48 kHz for Opus, 90 kHz for H.264) so consecutive packets land back to back with
//! no rounding. A stream is placed by the wall clock of its sender reports when it has
//! one, with one offset per participant so that their audio and video stay together;
//! until then by the arrival of its first frame.

use std::time::Duration;

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
}
