//! The sending side of the simulated participants' video payload formats: H.264
//! (RFC 6184, packetization mode 1), VP8 (RFC 7741) and VP9 (RFC 9628), each frame
//! cut into RTP payloads of at most the configured size, a browser's 15-bit picture
//! ID in every VP8 and VP9 payload.

use crate::encoder::EncodedVideo;
use crate::ingest::depacketize::h264::{H264Error, H264Packetizer};
use crate::ingest::depacketize::vp8;
use crate::synth::PatternCodec;

/// VP9 payload descriptor, first byte (RFC 9628, 4.2): picture ID present.
const VP9_I: u8 = 0x80;
/// Inter-picture predicted: not a keyframe.
const VP9_P: u8 = 0x40;
/// Beginning and end of a frame.
const VP9_B: u8 = 0x08;
const VP9_E: u8 = 0x04;
/// The picture ID's M bit: 15 bits.
const PICTURE_ID_M: u8 = 0x80;

enum Format {
    H264(H264Packetizer),
    Vp8,
    Vp9,
}

pub(crate) struct VideoPacketizer {
    format: Format,
    max_payload: usize,
    /// Of the next frame, 15 bits.
    picture_id: u16,
}

impl VideoPacketizer {
    /// `max_payload` is at least 100 (checked with the simulator's configuration).
    pub(crate) fn new(codec: PatternCodec, max_payload: usize) -> Result<Self, H264Error> {
        let format = match codec {
            PatternCodec::H264 => Format::H264(H264Packetizer::new(max_payload)?),
            PatternCodec::Vp8 => Format::Vp8,
            PatternCodec::Vp9 => Format::Vp9,
        };
        Ok(Self {
            format,
            max_payload,
            picture_id: 0,
        })
    }

    /// The RTP payloads of one frame, in order; the last one goes with the marker bit.
    pub(crate) fn packetize(&mut self, frame: &EncodedVideo) -> Result<Vec<Vec<u8>>, H264Error> {
        let id = self.picture_id;
        self.picture_id = (id + 1) & 0x7fff;
        Ok(match &self.format {
            Format::H264(p) => p.packetize(&frame.data)?,
            // Always two bytes, as browsers send it, even below 128.
            Format::Vp8 => vp8::packetize(&frame.data, self.max_payload, Some(id | 0x8000)),
            Format::Vp9 => vp9(frame, self.max_payload, id),
        })
    }
}

/// VP9 payloads in non-flexible mode without layers: the descriptor's first byte,
/// then the picture ID.
fn vp9(frame: &EncodedVideo, max_payload: usize, picture_id: u16) -> Vec<Vec<u8>> {
    let predicted = if frame.keyframe { 0 } else { VP9_P };
    let id = [PICTURE_ID_M | (picture_id >> 8) as u8, picture_id as u8];
    let chunks: Vec<&[u8]> = frame.data.chunks(max_payload - 3).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let b = if i == 0 { VP9_B } else { 0 };
            let e = if i == last { VP9_E } else { 0 };
            [&[VP9_I | predicted | b | e], &id[..], chunk].concat()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::depacketize::vp8::Vp8Depacketizer;

    fn frame(len: usize, keyframe: bool) -> EncodedVideo {
        EncodedVideo {
            // A VP8 key frame's tag and start code, when it is one.
            data: (0..len)
                .map(|i| match (keyframe, i) {
                    (true, 0) => 0x50,
                    (true, 3) => 0x9d,
                    (true, 4) => 0x01,
                    (true, 5) => 0x2a,
                    (false, 0) => 0x31,
                    _ => (i % 251) as u8,
                })
                .collect(),
            keyframe,
            pts: 0,
        }
    }

    #[test]
    fn vp9_descriptors_mark_the_frame_its_start_end_and_picture_id() {
        let mut p = VideoPacketizer::new(PatternCodec::Vp9, 100).unwrap();
        let key = p.packetize(&frame(250, true)).unwrap();
        assert_eq!(key.len(), 3);
        assert!(key.iter().all(|k| k.len() <= 100));
        let first: Vec<u8> = key.iter().map(|k| k[0]).collect();
        assert_eq!(first, [VP9_I | VP9_B, VP9_I, VP9_I | VP9_E]);
        assert!(key.iter().all(|k| k[1..3] == [0x80, 0]));
        let body: Vec<u8> = key.iter().flat_map(|k| k[3..].to_vec()).collect();
        assert_eq!(body, frame(250, true).data);
        let inter = p.packetize(&frame(20, false)).unwrap();
        assert_eq!(
            inter,
            [[
                &[VP9_I | VP9_P | VP9_B | VP9_E, 0x80, 1][..],
                &frame(20, false).data
            ]
            .concat()]
        );
    }

    #[test]
    fn vp8_payloads_carry_a_15_bit_picture_id_and_depacketize() {
        let mut p = VideoPacketizer::new(PatternCodec::Vp8, 100).unwrap();
        let mut d = Vp8Depacketizer::new();
        for (k, f) in [frame(500, true), frame(30, false)].iter().enumerate() {
            let payloads = p.packetize(f).unwrap();
            assert!(payloads.iter().all(|x| x.len() <= 100 && x[2] == 0x80));
            assert_eq!(payloads[0][3], k as u8);
            let last = payloads.len() - 1;
            for (i, x) in payloads.iter().enumerate() {
                d.push(k as i64 * 3000, i == last, x).unwrap();
            }
            assert_eq!(d.pop().unwrap().data, f.data);
        }
    }
}
