//! H.264 as the engine decodes it: what starts a stream anew. The decoding itself
//! is libavcodec's ([`super::libav`]); waiting for keyframes and the spare pictures
//! are [`super::video::VideoDecoder`]'s, as for every codec.

use crate::media::h264::{is_annex_b, nal_type, nal_units, NAL_IDR};

/// Whether an access unit holds an IDR slice, which every picture after it can be
/// decoded from.
pub(crate) fn is_keyframe(access_unit: &[u8]) -> bool {
    is_annex_b(access_unit) && nal_units(access_unit).any(|nal| nal_type(nal) == NAL_IDR)
}

#[cfg(test)]
mod tests {
    use crate::decoder::video::VideoDecoder;
    use crate::encoder::EncodedVideo;
    use crate::media::codec::VideoFormat;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::{PatternSource, PatternSpec, PALETTE};

    fn encode(spec: PatternSpec, frames: usize) -> Vec<EncodedVideo> {
        let mut source = PatternSource::new(spec).unwrap();
        (0..frames).map(|_| source.next_frame().unwrap()).collect()
    }

    fn assert_near(got: [u8; 3], want: [u8; 3]) {
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 6);
        assert!(close, "{got:?} is not near {want:?}");
    }

    #[test]
    fn pattern_round_trips_in_colour_and_size() {
        let spec = PatternSpec {
            width: 320,
            height: 180,
            rgb: PALETTE[3],
            ..PatternSpec::default()
        };
        let mut decoder = VideoDecoder::new(VideoFormat::H264).unwrap();
        for frame in encode(spec, 5) {
            let picture = decoder.decode(&frame.data).unwrap().unwrap();
            assert_eq!((picture.width(), picture.height()), (320, 180));
            // Away from the white square, which sweeps along the middle.
            assert_near(picture.pixel(8, 8), rgb_to_yuv(PALETTE[3]));
            assert_near(picture.pixel(300, 170), rgb_to_yuv(PALETTE[3]));
        }
        assert_eq!(decoder.size(), Some((320, 180)));
        assert!(!decoder.awaiting_keyframe());
    }

    #[test]
    fn resolution_change_at_a_keyframe() {
        let small = PatternSpec {
            width: 160,
            height: 120,
            ..PatternSpec::default()
        };
        let large = PatternSpec {
            width: 352,
            height: 288,
            rgb: PALETTE[5],
            ..PatternSpec::default()
        };
        let mut decoder = VideoDecoder::new(VideoFormat::H264).unwrap();
        for (spec, frames) in [(small, encode(small, 3)), (large, encode(large, 3))] {
            for frame in frames {
                let picture = decoder.decode(&frame.data).unwrap().unwrap();
                let size = (usize::from(spec.width), usize::from(spec.height));
                assert_eq!((picture.width(), picture.height()), size);
                assert_near(picture.pixel(4, 4), rgb_to_yuv(spec.rgb));
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let frames = encode(PatternSpec::default(), 2);
        let mut decoder = VideoDecoder::new(VideoFormat::H264).unwrap();
        decoder.decode(&frames[0].data).unwrap();
        // Flipped bytes in a real keyframe, and noise behind a start code with an IDR
        // header: errors or pictures, never a panic.
        let mut seed = 1u64;
        for round in 0..40 {
            let mut au = frames[0].data.clone();
            for _ in 0..8 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = 5 + (seed >> 33) as usize % (au.len() - 5);
                au[i] ^= (seed >> 20) as u8 | 1;
            }
            if round % 2 == 1 {
                au = [&[0, 0, 0, 1, 0x65][..], &crate::synth::filler(seed, 200)].concat();
            }
            let _ = decoder.decode(&au);
        }
        // And it recovers at a clean keyframe.
        assert!(decoder.decode(&frames[0].data).unwrap().is_some());
    }
}
