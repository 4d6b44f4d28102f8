//! Fragmented MP4 (ISO BMFF) as the recorder writes it: [`writer`] builds the init
//! segment (`ftyp` + `moov`) and the fragments (`moof` + `mdat`); [`reader`] parses
//! files for recovery, inspection and the web page; [`edit`] rewrites fixed-size
//! fields of a written init segment in place.
//!
//! The reader is the half that handles untrusted bytes (a file from a failing disk,
//! or one that was tampered with): its fuzz target is `mp4_reader`.

mod edit;
mod reader;
mod writer;

pub(crate) use edit::{
    continuation_init, duration_patches, movie_duration_us, stream_configuration,
};
pub use reader::*;
pub(crate) use writer::*;

/// Track id of the H.264 track in files this module writes.
pub(crate) const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the Opus track in files this module writes.
pub(crate) const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of `mvhd`, `tkhd` and `mehd` durations (milliseconds, as ffmpeg writes).
pub(crate) const MOVIE_TIMESCALE: u32 = 1000;

/// `sample_flags` of a sync sample (depends on no other sample).
pub(crate) const SAMPLE_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample (depends on others, `is_non_sync_sample`).
pub(crate) const SAMPLE_NON_SYNC: u32 = 0x0101_0000;
pub(crate) const NON_SYNC_BIT: u32 = 0x0001_0000;

/// Media time in microseconds of `ticks` in a track of `timescale`.
fn ticks_to_us(ticks: u64, timescale: u32) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(timescale.max(1))) as u64
}

/// Microseconds covered by `[start, start + duration)` ticks, computed as the
/// difference of the rounded end points so consecutive spans add up exactly.
fn span_us(start: u64, duration: u64, timescale: u32) -> u32 {
    let end = ticks_to_us(start.saturating_add(duration), timescale);
    u32::try_from(end - ticks_to_us(start, timescale)).unwrap_or(u32::MAX)
}

/// One sample of a track fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleEntry {
    pub(crate) duration: u32,
    pub(crate) size: u32,
    pub(crate) flags: u32,
    /// pts - dts in track units.
    pub(crate) composition_offset: i32,
}

impl SampleEntry {
    /// Depends on no other sample (a keyframe).
    pub(crate) fn is_sync(&self) -> bool {
        self.flags & NON_SYNC_BIT == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{AudioCodec, AudioParams, VideoCodec, VideoParams};
    use proptest::prelude::*;
    use std::io::Cursor;

    pub(crate) fn params() -> (VideoParams, AudioParams) {
        let video = VideoParams {
            codec: VideoCodec::H264,
            sps: heapless::Vec::from_slice(&[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01]).unwrap(),
            pps: heapless::Vec::from_slice(&[0x68, 0xce, 0x3c, 0x80]).unwrap(),
            width: 640,
            height: 360,
            fps: 30,
        };
        let audio = AudioParams {
            codec: AudioCodec::Opus,
            sample_rate: 48_000,
            channels: 2,
            pre_skip: 312,
        };
        (video, audio)
    }

    fn sample_fragment(seq: u32, base: u64) -> Vec<u8> {
        let v = [
            SampleEntry {
                duration: 3000,
                size: 3,
                flags: SAMPLE_SYNC,
                composition_offset: 0,
            },
            SampleEntry {
                duration: 3000,
                size: 2,
                flags: SAMPLE_NON_SYNC,
                composition_offset: 0,
            },
        ];
        let a = [SampleEntry {
            duration: 960,
            size: 4,
            flags: SAMPLE_SYNC,
            composition_offset: 0,
        }];
        fragment(
            seq,
            &[
                TrackFragment {
                    track_id: VIDEO_TRACK_ID,
                    base_decode_time: base,
                    samples: &v,
                    data: &[1, 2, 3, 4, 5],
                },
                TrackFragment {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: 0,
                    samples: &a,
                    data: &[9; 4],
                },
            ],
        )
    }

    #[test]
    fn a_continuation_init_has_no_pre_skip_and_the_same_layout() {
        let (video, audio) = params();
        let first = init_segment(&video, &audio).unwrap();
        let next = continuation_init(&first).unwrap();
        assert_eq!(first.len(), next.len());
        let read = |b: &[u8]| read_init(&mut Cursor::new(b), b.len() as u64).unwrap();
        let info = read(&first);
        assert_eq!(info, read(&next));
        let at = info.tracks[1].pre_skip_at.unwrap() as usize;
        assert_eq!(
            u16::from_be_bytes([first[at], first[at + 1]]),
            audio.pre_skip
        );
        assert_eq!(&next[at..at + 2], [0, 0]);
        let differ: Vec<usize> = (0..first.len()).filter(|&i| first[i] != next[i]).collect();
        assert!(differ.iter().all(|&i| i == at || i == at + 1), "{differ:?}");
        assert_eq!(
            stream_configuration(&first).unwrap(),
            stream_configuration(&next).unwrap()
        );
    }

    #[test]
    fn init_segment_parses_back() {
        let (v, a) = params();
        let init = init_segment(&v, &a).unwrap();
        let scan = scan(&mut Cursor::new(&init), init.len() as u64).unwrap();
        assert_eq!(scan.init.len, init.len() as u64);
        assert!(scan.fragments.is_empty() && scan.torn.is_none());
        let video = scan.init.track(VIDEO_TRACK_ID).unwrap();
        assert_eq!(
            (&video.codec, video.width, video.height, video.timescale),
            (b"avc1", 640, 360, 90_000)
        );
        let audio = scan.init.track(AUDIO_TRACK_ID).unwrap();
        assert_eq!(
            (
                &audio.codec,
                audio.channels,
                audio.sample_rate,
                audio.timescale
            ),
            (b"Opus", 2, 48_000, 48_000)
        );
        assert!(scan.init.mvhd_duration_at.is_some() && scan.init.mehd_duration_at.is_some());
        // The duration fields are where the patches say: all zero before patching.
        for (at, _) in duration_patches(&scan.init, &[(1, 90_000), (2, 48_000)]) {
            assert_eq!(&init[at as usize..at as usize + 8], &[0; 8]);
        }
    }

    /// The body of the `avcC` box in an init segment.
    fn avcc(init: &[u8]) -> &[u8] {
        let at = init.windows(4).position(|w| w == b"avcC").unwrap();
        let size = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
        &init[at + 4..at - 4 + size]
    }

    #[test]
    fn avcc_repeats_chroma_and_bit_depths_of_a_high_profile_sps() {
        let (mut v, a) = params();
        let init = init_segment(&v, &a).unwrap();
        assert!(
            avcc(&init).ends_with(&v.pps),
            "Constrained Baseline: nothing after the PPS"
        );

        let sps = crate::media::h264::tests::X264_HIGH_SPS;
        v.sps = heapless::Vec::from_slice(&sps).unwrap();
        let init = init_segment(&v, &a).unwrap();
        let body = avcc(&init);
        assert_eq!(&body[1..4], &sps[1..4], "profile, compatibility, level");
        assert!(
            body.ends_with(&[0xfd, 0xf8, 0xf8, 0]),
            "4:2:0, 8 bits: {body:02x?}"
        );

        v.sps = heapless::Vec::from_slice(&sps[..4]).unwrap();
        assert!(matches!(init_segment(&v, &a), Err(InitError::Sps(_))));
    }

    #[test]
    fn duration_patches_use_movie_timescale() {
        let (v, a) = params();
        let mut init = init_segment(&v, &a).unwrap();
        let info = read_init(&mut Cursor::new(&init), init.len() as u64).unwrap();
        for (at, bytes) in duration_patches(&info, &[(1, 180_000), (2, 96_960)]) {
            init[at as usize..at as usize + 8].copy_from_slice(&bytes);
        }
        let mvhd = info.mvhd_duration_at.unwrap() as usize;
        assert_eq!(
            u64::from_be_bytes(init[mvhd..mvhd + 8].try_into().unwrap()),
            2020
        );
        let tkhd = info.track(1).unwrap().tkhd_duration_at.unwrap() as usize;
        assert_eq!(
            u64::from_be_bytes(init[tkhd..tkhd + 8].try_into().unwrap()),
            2000
        );
        assert_eq!(
            movie_duration_us(&info, &[(1, 180_000), (2, 96_960)]),
            2_020_000
        );
    }

    #[test]
    fn fragment_parses_back() {
        let (v, a) = params();
        let mut file = init_segment(&v, &a).unwrap();
        let init_len = file.len() as u64;
        file.extend(sample_fragment(1, 0));
        file.extend(sample_fragment(2, 6000));
        let scan = scan(&mut Cursor::new(&file), file.len() as u64).unwrap();
        assert_eq!(scan.torn, None);
        assert_eq!(scan.fragments.len(), 2);
        assert_eq!(scan.fragments[0].offset, init_len);
        let m = &scan.fragments[1].moof;
        assert_eq!(m.sequence, 2);
        assert_eq!(
            (
                m.trafs[0].base_decode_time,
                m.trafs[0].duration,
                m.trafs[0].sample_count
            ),
            (6000, 6000, 2)
        );
        assert!(m.trafs[0].first_sample_sync);
        let timing = FragmentTiming::of(&scan.init, m).unwrap();
        assert_eq!(
            timing,
            FragmentTiming {
                start_us: 66_666,
                duration_us: 66_667,
                keyframe: true
            }
        );
        // Samples sit where the trun says.
        let f = &scan.fragments[0];
        let at = (f.offset + m.trafs[0].data_offset) as usize;
        assert_eq!(&file[at..at + 5], &[1, 2, 3, 4, 5]);
        assert_eq!(scan.track_ends(), vec![(1, 12_000), (2, 960)]);
    }

    #[test]
    fn samples_parse_back() {
        let frag = sample_fragment(3, 6000);
        let (_, body) = boxes(&frag).next().unwrap().unwrap();
        let (moof, samples) = parse_moof_samples(body).unwrap();
        assert_eq!(moof, parse_moof(body).unwrap());
        assert_eq!(samples.len(), 2);
        assert_eq!(
            samples[0]
                .iter()
                .map(|s| (s.duration, s.size, s.flags & NON_SYNC_BIT == 0))
                .collect::<Vec<_>>(),
            [(3000, 3, true), (3000, 2, false)]
        );
        assert_eq!(
            samples[1][0],
            SampleEntry {
                duration: 960,
                size: 4,
                flags: SAMPLE_SYNC,
                composition_offset: 0
            }
        );
    }

    #[test]
    fn torn_tails_are_found() {
        let (v, a) = params();
        let mut file = init_segment(&v, &a).unwrap();
        file.extend(sample_fragment(1, 0));
        let whole = file.len() as u64;
        let second = sample_fragment(2, 6000);
        for cut in [1, 8, 20, second.len() - 20, second.len() - 1] {
            let mut f = file.clone();
            f.extend_from_slice(&second[..cut]);
            let s = scan(&mut Cursor::new(&f), f.len() as u64).unwrap();
            assert_eq!(s.fragments.len(), 1, "cut {cut}");
            assert_eq!(s.valid_len, whole);
            assert_eq!(s.torn.unwrap().offset(), whole);
        }
        // A zero-filled tail (delayed allocation after a crash).
        let mut f = file.clone();
        f.extend_from_slice(&[0; 100]);
        let s = scan(&mut Cursor::new(&f), f.len() as u64).unwrap();
        assert_eq!((s.valid_len, s.fragments.len()), (whole, 1));
    }

    #[test]
    fn large_size_and_size_zero_headers() {
        let mut buf = vec![0, 0, 0, 1];
        buf.extend_from_slice(b"free");
        buf.extend_from_slice(&20u64.to_be_bytes());
        buf.extend_from_slice(&[7; 4]);
        buf.extend_from_slice(&[0, 0, 0, 0]);
        buf.extend_from_slice(b"mdat");
        buf.extend_from_slice(&[1, 2, 3]);
        let got: Vec<_> = boxes(&buf).map(Result::unwrap).collect();
        assert_eq!(got[0].0.header_len, 16);
        assert_eq!(got[0].1, &[7; 4]);
        assert_eq!(got[1].0.size, 11);
        assert_eq!(got[1].1, &[1, 2, 3]);
        // A size past the end is an error, not a slice panic.
        let bad = [0, 0, 0, 50, b'a', b'b', b'c', b'd'];
        assert!(boxes(&bad).next().unwrap().is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&mut Cursor::new(&data), data.len() as u64);
            let _ = parse_moof(&data);
            let _ = parse_moov(&data, 0, 0);
            for b in boxes(&data) {
                if b.is_err() { break; }
            }
        }

        #[test]
        fn reader_never_panics_on_mutated_files(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let (v, a) = params();
            let mut file = init_segment(&v, &a).unwrap();
            file.extend(sample_fragment(1, 0));
            file.extend(sample_fragment(2, 6000));
            for (at, byte) in flips {
                let n = file.len();
                file[at % n] = byte;
            }
            file.truncate(cut % (file.len() + 1));
            let _ = scan(&mut Cursor::new(&file), file.len() as u64);
        }
    }
}
