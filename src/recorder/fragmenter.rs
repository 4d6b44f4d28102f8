//! Turns the media link's `Media` frames into fMP4 fragments, one per GOP (sans-IO).
//!
//! A sample's duration is the distance to the next sample of its track, so samples
//! are held until that next sample arrives:
//! - a video keyframe closes the fragment (all buffered video then has durations);
//!   so does a video frame that would make the fragment longer than `max_fragment`;
//! - the last buffered audio packet moves on to the next fragment, since its
//!   duration is not known yet (tfdt keeps the audio timeline exact);
//! - with no video in the fragment (audio only, or audio before the first
//!   keyframe), audio closes it when it spans `max_fragment`;
//! - at `finish` the last sample of a track repeats the previous duration (or
//!   1/fps for video, 960 ticks = 20 ms for Opus).
//!
//! Video frames before the first keyframe cannot be decoded, so they are dropped
//! and counted ([`Fragmenter::dropped_before_keyframe`]) rather than rejected: a
//! mixer that starts mid-GOP is not wrong, just early.

use std::time::Duration;

use thiserror::Error;

use crate::link::frame::{Media, StartParams, Track};
use crate::media::h264::{self, H264Error};
use crate::media::mp4::{
    self, FragmentTiming, InitError, SampleEntry, TrackFragment, AUDIO_TRACK_ID, SAMPLE_NON_SYNC,
    SAMPLE_SYNC, VIDEO_TRACK_ID,
};

/// Opus packets are 20 ms: 960 ticks at 48 kHz.
const OPUS_PACKET_TICKS: u32 = 960;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FragmentError {
    #[error("invalid start parameters: {0}")]
    Start(#[from] InitError),
    #[error("{track:?} frame at dts {dts} has no data")]
    Empty { track: Track, dts: i64 },
    #[error("{track:?} frame has negative dts {dts}")]
    NegativeDts { track: Track, dts: i64 },
    #[error("{track:?} dts {dts} does not increase (previous {previous})")]
    DtsNotIncreasing {
        track: Track,
        dts: i64,
        previous: i64,
    },
    #[error("{track:?} frame at dts {dts}: pts {pts} is too far from dts")]
    CompositionOffset { track: Track, dts: i64, pts: i64 },
    #[error("video frame at dts {dts}: {source}")]
    Video { dts: i64, source: H264Error },
}

/// One finished `moof` + `mdat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub bytes: Vec<u8>,
    pub sequence: u32,
    /// Media time of the fragment's video (audio if it has no video) since the start.
    pub start_us: u64,
    pub duration_us: u32,
    /// The fragment starts with a sync sample (a video keyframe).
    pub keyframe: bool,
    pub video_samples: u32,
    pub audio_samples: u32,
}

struct Pending {
    dts: u64,
    composition_offset: i32,
    sync: bool,
    data: Vec<u8>,
}

struct TrackBuffer {
    pending: Vec<Pending>,
    last_dts: Option<i64>,
    /// Duration of the latest sample whose duration is known, for the final sample.
    last_duration: Option<u32>,
    default_duration: u32,
}

impl TrackBuffer {
    fn new(default_duration: u32) -> Self {
        Self {
            pending: Vec::new(),
            last_dts: None,
            last_duration: None,
            default_duration,
        }
    }

    /// Takes the samples that can go into a fragment now: all of them if the next
    /// sample's dts is known or we are finishing, otherwise all but the last.
    fn take(
        &mut self,
        next_dts: Option<u64>,
        finishing: bool,
    ) -> (Vec<SampleEntry>, Vec<u8>, Option<u64>, bool) {
        let n = match (next_dts, finishing) {
            (None, false) => self.pending.len().saturating_sub(1),
            _ => self.pending.len(),
        };
        let taken: Vec<Pending> = self.pending.drain(..n).collect();
        let next = next_dts.or_else(|| self.pending.first().map(|p| p.dts));
        let mut entries = Vec::with_capacity(taken.len());
        let mut data = Vec::with_capacity(taken.iter().map(|p| p.data.len()).sum());
        for (i, p) in taken.iter().enumerate() {
            let following = taken.get(i + 1).map(|q| q.dts).or(next);
            let duration = match following {
                // dts strictly increase, and a gap beyond u32 ticks (13 h of video)
                // is clamped rather than wrapped.
                Some(d) => u32::try_from(d - p.dts).unwrap_or(u32::MAX),
                None => self.last_duration.unwrap_or(self.default_duration),
            };
            self.last_duration = Some(duration);
            entries.push(SampleEntry {
                duration,
                size: p.data.len() as u32,
                flags: if p.sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
                composition_offset: p.composition_offset,
            });
            data.extend_from_slice(&p.data);
        }
        let base = taken.first().map(|p| p.dts);
        let sync = taken.first().is_some_and(|p| p.sync);
        (entries, data, base, sync)
    }
}

pub struct Fragmenter {
    init: Vec<u8>,
    max_video_ticks: u64,
    max_audio_ticks: u64,
    video: TrackBuffer,
    audio: TrackBuffer,
    next_sequence: u32,
    seen_keyframe: bool,
    dropped_before_keyframe: u64,
}

fn ticks(d: Duration, track: Track) -> u64 {
    (d.as_micros() * u128::from(track.timescale()) / 1_000_000).max(1) as u64
}

impl Fragmenter {
    pub fn new(start: &StartParams, max_fragment: Duration) -> Result<Self, FragmentError> {
        let init = mp4::init_segment(&start.video, &start.audio)?;
        let frame_ticks = Track::Video.timescale() / u32::from(start.video.fps.max(1));
        Ok(Self {
            init,
            max_video_ticks: ticks(max_fragment, Track::Video),
            max_audio_ticks: ticks(max_fragment, Track::Audio),
            video: TrackBuffer::new(frame_ticks),
            audio: TrackBuffer::new(OPUS_PACKET_TICKS),
            next_sequence: 1,
            seen_keyframe: false,
            dropped_before_keyframe: 0,
        })
    }

    /// `ftyp` + `moov`, with zero durations to be patched at finish.
    pub fn init_segment(&self) -> Vec<u8> {
        self.init.clone()
    }

    /// Numbers the fragments from `sequence` on: a resumed recording continues the
    /// numbering of its earlier segments.
    pub fn number_from(&mut self, sequence: u32) {
        self.next_sequence = sequence;
    }

    #[cfg(test)]
    /// Video frames dropped because they came before the first keyframe.
    pub fn dropped_before_keyframe(&self) -> u64 {
        self.dropped_before_keyframe
    }

    /// Adds one frame; returns the fragment it closed, if any.
    pub fn push(&mut self, media: &Media) -> Result<Option<Fragment>, FragmentError> {
        let track = media.track;
        let dts = media.dts;
        if track == Track::Video && !media.keyframe && !self.seen_keyframe {
            self.dropped_before_keyframe += 1;
            if self.dropped_before_keyframe == 1 {
                tracing::warn!(dts, "dropping video before the first keyframe");
            }
            return Ok(None);
        }
        if media.data.is_empty() {
            return Err(FragmentError::Empty { track, dts });
        }
        if dts < 0 {
            return Err(FragmentError::NegativeDts { track, dts });
        }
        let buffer = match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        };
        if let Some(previous) = buffer.last_dts.filter(|&p| dts <= p) {
            return Err(FragmentError::DtsNotIncreasing {
                track,
                dts,
                previous,
            });
        }
        let composition_offset = media
            .pts
            .checked_sub(dts)
            .and_then(|c| i32::try_from(c).ok())
            .ok_or(FragmentError::CompositionOffset {
                track,
                dts,
                pts: media.pts,
            })?;
        let data = match track {
            Track::Video => h264::annex_b_to_avcc(&media.data)
                .map_err(|source| FragmentError::Video { dts, source })?,
            Track::Audio => media.data.clone(),
        };
        let udts = dts as u64;

        let fragment = match track {
            Track::Video => {
                let first = self.video.pending.first().map(|p| p.dts);
                let cut = first.is_some_and(|f| media.keyframe || udts - f >= self.max_video_ticks);
                if cut {
                    self.close(Some(udts), None, false)
                } else {
                    None
                }
            }
            Track::Audio => {
                let first = self.audio.pending.first().map(|p| p.dts);
                let cut = self.video.pending.is_empty()
                    && first.is_some_and(|f| udts - f >= self.max_audio_ticks);
                if cut {
                    self.close(None, Some(udts), false)
                } else {
                    None
                }
            }
        };

        let sample = Pending {
            dts: udts,
            composition_offset,
            sync: media.keyframe || track == Track::Audio,
            data,
        };
        match track {
            Track::Video => {
                self.seen_keyframe = true;
                self.video.last_dts = Some(dts);
                self.video.pending.push(sample);
            }
            Track::Audio => {
                self.audio.last_dts = Some(dts);
                self.audio.pending.push(sample);
            }
        }
        Ok(fragment)
    }

    /// Closes the recording: everything still buffered becomes the last fragment.
    pub fn finish(&mut self) -> Option<Fragment> {
        self.close(None, None, true)
    }

    fn close(
        &mut self,
        next_video: Option<u64>,
        next_audio: Option<u64>,
        finishing: bool,
    ) -> Option<Fragment> {
        let (v_entries, v_data, v_base, v_sync) = self.video.take(next_video, finishing);
        let (a_entries, a_data, a_base, a_sync) = self.audio.take(next_audio, finishing);
        if v_entries.is_empty() && a_entries.is_empty() {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let bytes = mp4::fragment(
            sequence,
            &[
                TrackFragment {
                    track_id: VIDEO_TRACK_ID,
                    base_decode_time: v_base.unwrap_or(0),
                    samples: &v_entries,
                    data: &v_data,
                },
                TrackFragment {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: a_base.unwrap_or(0),
                    samples: &a_entries,
                    data: &a_data,
                },
            ],
        );
        let span =
            |entries: &[SampleEntry]| entries.iter().map(|e| u64::from(e.duration)).sum::<u64>();
        // Same rule as the reader's `FragmentTiming::of`: video if present.
        let timing = match v_base {
            Some(base) => {
                FragmentTiming::from_ticks(base, span(&v_entries), Track::Video.timescale(), v_sync)
            }
            None => FragmentTiming::from_ticks(
                a_base.unwrap_or(0),
                span(&a_entries),
                Track::Audio.timescale(),
                a_sync,
            ),
        };
        Some(Fragment {
            bytes,
            sequence,
            start_us: timing.start_us,
            duration_us: timing.duration_us,
            keyframe: timing.keyframe,
            video_samples: v_entries.len() as u32,
            audio_samples: a_entries.len() as u32,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::frame::{AudioCodec, AudioParams, VideoCodec, VideoParams};
    use crate::media::mp4::{boxes, parse_moof, parse_moov};

    pub(crate) fn start_params() -> StartParams {
        StartParams {
            recording: "rec-1".try_into().unwrap(),
            room: "room-a".try_into().unwrap(),
            video: VideoParams {
                codec: VideoCodec::H264,
                sps: heapless::Vec::from_slice(&[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01]).unwrap(),
                pps: heapless::Vec::from_slice(&[0x68, 0xce, 0x3c, 0x80]).unwrap(),
                width: 320,
                height: 240,
                fps: 30,
            },
            audio: AudioParams {
                codec: AudioCodec::Opus,
                sample_rate: 48_000,
                channels: 1,
                pre_skip: 312,
            },
        }
    }

    fn video(n: i64, keyframe: bool) -> Media {
        let nal = if keyframe { 0x65 } else { 0x41 };
        Media {
            track: Track::Video,
            pts: n * 3000,
            dts: n * 3000,
            keyframe,
            data: vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, nal, 0x88, n as u8, 7],
        }
    }

    fn audio(n: i64) -> Media {
        Media {
            track: Track::Audio,
            pts: n * 960,
            dts: n * 960,
            keyframe: true,
            data: vec![0xfc, n as u8],
        }
    }

    /// Interleaves 30 fps video (keyframe every `gop` frames) and 20 ms audio.
    fn feed(f: &mut Fragmenter, frames: i64, gop: i64) -> Vec<Fragment> {
        let mut out = Vec::new();
        let mut a = 0;
        for n in 0..frames {
            // Audio up to this video frame's time.
            while a * 960 * 90_000 / 48_000 <= n * 3000 {
                out.extend(f.push(&audio(a)).unwrap());
                a += 1;
            }
            out.extend(f.push(&video(n, n % gop == 0)).unwrap());
        }
        out.extend(f.finish());
        out
    }

    fn check_against_reader(f: &Fragmenter, fragments: &[Fragment]) {
        let init = f.init_segment();
        let (h, body) = boxes(&init).nth(1).unwrap().unwrap();
        let info = parse_moov(body, h.header_len, init.len() as u64).unwrap();
        for frag in fragments {
            let (_, body) = boxes(&frag.bytes).next().unwrap().unwrap();
            let moof = parse_moof(body).unwrap();
            assert_eq!(moof.sequence, frag.sequence);
            let t = FragmentTiming::of(&info, &moof).unwrap();
            assert_eq!(
                (t.start_us, t.duration_us, t.keyframe),
                (frag.start_us, frag.duration_us, frag.keyframe)
            );
        }
    }

    #[test]
    fn one_fragment_per_gop() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(2)).unwrap();
        let frags = feed(&mut f, 90, 30);
        assert_eq!(frags.len(), 3);
        assert!(frags.iter().all(|f| f.keyframe && f.video_samples == 30));
        assert_eq!(
            frags.iter().map(|f| f.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            (frags[1].start_us, frags[1].duration_us),
            (1_000_000, 1_000_000)
        );
        // Every audio packet pushed (up to the last frame time) is written.
        let audio: u32 = frags.iter().map(|f| f.audio_samples).sum();
        assert_eq!(audio, 149);
        // The last fragment ends with a 1/30 s frame (the previous duration).
        assert_eq!(
            frags[2].start_us + u64::from(frags[2].duration_us),
            3_000_000
        );
        check_against_reader(&f, &frags);
    }

    #[test]
    fn long_gops_are_cut_at_max_fragment() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(2)).unwrap();
        let frags = feed(&mut f, 150, 1000);
        assert_eq!(
            frags.iter().map(|f| f.video_samples).collect::<Vec<_>>(),
            vec![60, 60, 30]
        );
        assert_eq!(
            frags.iter().map(|f| f.keyframe).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        assert!(frags.iter().all(|f| f.duration_us <= 2_000_000));
        check_against_reader(&f, &frags);
    }

    #[test]
    fn video_before_first_keyframe_is_dropped() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(2)).unwrap();
        assert_eq!(f.push(&video(0, false)).unwrap(), None);
        assert_eq!(f.push(&video(1, false)).unwrap(), None);
        assert_eq!(f.dropped_before_keyframe(), 2);
        assert_eq!(f.push(&video(2, true)).unwrap(), None);
        let last = f.finish().unwrap();
        assert_eq!(
            (last.video_samples, last.start_us, last.keyframe),
            (1, 66_666, true)
        );
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn audio_only_is_cut_at_max_fragment() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(1)).unwrap();
        let mut frags: Vec<Fragment> = (0..120)
            .filter_map(|n| f.push(&audio(n)).unwrap())
            .collect();
        frags.extend(f.finish());
        assert_eq!(
            frags.iter().map(|f| f.audio_samples).collect::<Vec<_>>(),
            vec![50, 50, 20]
        );
        assert_eq!(frags[1].start_us, 1_000_000);
        check_against_reader(&f, &frags);
    }

    #[test]
    fn bad_input_is_rejected() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(2)).unwrap();
        f.push(&video(5, true)).unwrap();
        assert!(matches!(
            f.push(&video(5, false)),
            Err(FragmentError::DtsNotIncreasing { .. })
        ));
        assert!(matches!(
            f.push(&video(4, false)),
            Err(FragmentError::DtsNotIncreasing { .. })
        ));
        let mut m = video(6, false);
        m.data = vec![0, 0, 0, 5, 0x41, 1, 2, 3, 4];
        assert_eq!(
            f.push(&m),
            Err(FragmentError::Video {
                dts: 18_000,
                source: H264Error::NotAnnexB
            })
        );
        m.data.clear();
        assert!(matches!(f.push(&m), Err(FragmentError::Empty { .. })));
        let mut m = audio(1);
        m.dts = -1;
        assert!(matches!(f.push(&m), Err(FragmentError::NegativeDts { .. })));
        let mut m = audio(1);
        m.pts = i64::MAX;
        assert!(matches!(
            f.push(&m),
            Err(FragmentError::CompositionOffset { .. })
        ));
        // Rejected frames leave the state as it was.
        assert_eq!(f.push(&video(6, false)).unwrap(), None);
        let mut bad = start_params();
        bad.video.sps.clear();
        assert!(matches!(
            Fragmenter::new(&bad, Duration::from_secs(2)),
            Err(FragmentError::Start(_))
        ));
    }

    #[test]
    fn avcc_samples_without_parameter_sets() {
        let mut f = Fragmenter::new(&start_params(), Duration::from_secs(2)).unwrap();
        let mut key = video(0, true);
        key.data = vec![
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 1, 2, 3,
        ];
        f.push(&key).unwrap();
        let frag = f.finish().unwrap();
        let mdat = boxes(&frag.bytes).nth(1).unwrap().unwrap().1;
        assert_eq!(mdat, &[0, 0, 0, 4, 0x65, 1, 2, 3]);
    }
}
