//! Framing of the media link: a `u32` little-endian payload length, then the postcard
//! encoding of one [`Frame`]. Sans-IO: bytes in, frames out.

use super::frame::Frame;

/// Largest payload accepted unless configured otherwise.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// Bytes of the length prefix in front of every payload.
const LEN_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {trailing} trailing bytes after the frame in a {len}-byte payload")]
    Trailing { trailing: usize, len: usize },
    #[error("malformed frame: {len}-byte payload does not decode as a frame: {source}")]
    Malformed {
        len: usize,
        #[source]
        source: postcard::Error,
    },
    #[error("cannot encode frame: {0}")]
    Encode(#[source] postcard::Error),
}

/// Appends `frame` to `out` as one length-prefixed frame. On error `out` is unchanged.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    let result = match postcard::to_io(frame, &mut *out) {
        Ok(_) => {
            let len = out.len() - start - LEN_BYTES;
            u32::try_from(len).map_err(|_| CodecError::TooLarge {
                len,
                max: u32::MAX as usize,
            })
        }
        Err(e) => Err(CodecError::Encode(e)),
    };
    match result {
        Ok(len) => {
            out[start..start + LEN_BYTES].copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Incremental decoder: push bytes as they arrive, take frames out as they complete.
///
/// After the first error the stream cannot be resynchronised, so the decoder stays
/// failed: it drops its buffer, ignores further bytes and repeats the error.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`; consumed bytes are dropped lazily so that
    /// many small frames do not each shift the whole buffer.
    pos: usize,
    max_frame: usize,
    failed: Option<CodecError>,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            max_frame,
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.append_with(|buf| buf.extend_from_slice(bytes));
    }

    /// Lets `fill` append bytes to the buffer in place (the link decrypts records
    /// straight into it), saving the copy of [`push`](Self::push); `None`, and
    /// `fill` not called, once the decoder has failed.
    pub(crate) fn append_with<T>(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> T) -> Option<T> {
        if self.failed.is_some() {
            return None;
        }
        // Compact only once the consumed part is at least as large as what is left,
        // so each byte is moved O(1) times on average.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Some(fill(&mut self.buf))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.pos..];
        let Some(prefix) = avail.first_chunk::<LEN_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > self.max_frame {
            return Err(self.fail(CodecError::TooLarge {
                len,
                max: self.max_frame,
            }));
        }
        let Some(payload) = avail.get(LEN_BYTES..LEN_BYTES + len) else {
            return Ok(None);
        };
        let decoded = match postcard::take_from_bytes::<Frame>(payload) {
            Ok((frame, [])) => Ok(frame),
            Ok((_, rest)) => Err(CodecError::Trailing {
                trailing: rest.len(),
                len,
            }),
            Err(source) => Err(CodecError::Malformed { len, source }),
        };
        match decoded {
            Ok(frame) => {
                self.pos += LEN_BYTES + len;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                Ok(Some(frame))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: CodecError) -> CodecError {
        self.buf = Vec::new();
        self.pos = 0;
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{
        text, AudioCodec, AudioParams, Fault, FaultKind, FaultTarget, Media, StartParams, Stats,
        Summary, Text, Track, VideoCodec, VideoParams,
    };
    use proptest::prelude::*;

    fn any_text<const N: usize>() -> impl Strategy<Value = Text<N>> {
        // Multi-byte characters make `text` cut at a char boundary near the limit.
        proptest::string::string_regex(&format!("[a-zA-Z0-9 _./é€-]{{0,{N}}}"))
            .unwrap()
            .prop_map(|s| text::<N>(&s))
    }

    fn any_bytes<const N: usize>() -> impl Strategy<Value = heapless::Vec<u8, N>> {
        proptest::collection::vec(any::<u8>(), 0..=N)
            .prop_map(|v| heapless::Vec::from_slice(&v).unwrap())
    }

    fn any_fault_kind() -> impl Strategy<Value = FaultKind> {
        proptest::sample::select(FaultKind::ALL.to_vec())
    }

    fn any_target() -> impl Strategy<Value = FaultTarget> {
        prop_oneof![
            Just(FaultTarget::File),
            Just(FaultTarget::Index),
            Just(FaultTarget::Storage)
        ]
    }

    fn any_start() -> impl Strategy<Value = StartParams> {
        (
            any_text::<64>(),
            any_text::<64>(),
            any_bytes::<256>(),
            any_bytes::<256>(),
            any::<(u16, u16, u16)>(),
            any::<(u32, u8, u16)>(),
        )
            .prop_map(
                |(
                    recording,
                    room,
                    sps,
                    pps,
                    (width, height, fps),
                    (sample_rate, channels, pre_skip),
                )| {
                    StartParams {
                        recording,
                        room,
                        video: VideoParams {
                            codec: VideoCodec::H264,
                            sps,
                            pps,
                            width,
                            height,
                            fps,
                        },
                        audio: AudioParams {
                            codec: AudioCodec::Opus,
                            sample_rate,
                            channels,
                            pre_skip,
                        },
                    }
                },
            )
    }

    fn any_media() -> impl Strategy<Value = Media> {
        (
            prop_oneof![Just(Track::Video), Just(Track::Audio)],
            any::<(i64, i64, bool)>(),
            proptest::collection::vec(any::<u8>(), 0..4096),
        )
            .prop_map(|(track, (pts, dts, keyframe), data)| Media {
                track,
                pts,
                dts,
                keyframe,
                data,
            })
    }

    /// Every `Frame` variant with every field drawn over its whole bounded range.
    fn any_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            any_text::<64>().prop_map(|recording| Frame::Hello { recording }),
            Just(Frame::Accept),
            any_text::<128>().prop_map(|reason| Frame::Reject { reason }),
            any_start().prop_map(Frame::Start),
            any_media().prop_map(Frame::Media),
            Just(Frame::Stop),
            any::<u64>().prop_map(|seq| Frame::Ping { seq }),
            any::<u64>().prop_map(|seq| Frame::Pong { seq }),
            (any_text::<64>(), any_text::<256>())
                .prop_map(|(recording, path)| Frame::Started { recording, path }),
            (any_text::<64>(), any::<(u32, u64, u64, u64)>()).prop_map(
                |(recording, (fragments, file_bytes, index_bytes, media_ms))| Frame::Stopped {
                    summary: Summary {
                        recording,
                        fragments,
                        file_bytes,
                        index_bytes,
                        media_ms,
                    }
                }
            ),
            (
                any_text::<64>(),
                any_fault_kind(),
                any_target(),
                any_text::<200>(),
                any::<u64>()
            )
                .prop_map(|(recording, kind, target, detail, at)| Frame::Fault(
                    Fault {
                        recording,
                        kind,
                        target,
                        detail,
                        at
                    }
                )),
            (any_fault_kind(), any_target(), any::<u64>())
                .prop_map(|(kind, target, at)| Frame::Cleared { kind, target, at }),
            any::<(u64, u64, u64, u64, u64)>().prop_map(
                |(file_bytes, index_bytes, duration_ms, free_bytes, at)| Frame::Stats(Stats {
                    file_bytes,
                    index_bytes,
                    duration_ms,
                    free_bytes,
                    at
                })
            ),
        ]
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// Splits `bytes` at the given cut points (taken modulo the length).
    fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn every_frame_round_trips(frames in proptest::collection::vec(any_frame(), 1..8),
                                   cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
            let mut wire = Vec::new();
            for f in &frames {
                encode(f, &mut wire).unwrap();
            }
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut decoded = Vec::new();
            for chunk in chunks(&wire, &cuts) {
                decoder.push(chunk);
                while let Some(f) = decoder.next_frame().unwrap() {
                    decoded.push(f);
                }
            }
            prop_assert_eq!(decoded, frames);
            prop_assert_eq!(decoder.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overbuffer(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..32),
            max in 0usize..300,
        ) {
            let mut decoder = FrameDecoder::new(max);
            for chunk in chunks(&bytes, &cuts) {
                decoder.push(chunk);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            prop_assert!(decoder.buffered() < max + LEN_BYTES);
                            break;
                        }
                        Err(_) => {
                            prop_assert_eq!(decoder.buffered(), 0);
                            break;
                        }
                    }
                }
            }
        }

        #[test]
        fn valid_frames_between_valid_lengths_of_garbage(
            frame in any_frame(),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // A valid frame followed by a well-framed garbage payload: the first decodes,
            // the second yields an error or (rarely) another frame, never a panic.
            let mut wire = Vec::new();
            encode(&frame, &mut wire).unwrap();
            wire.extend(framed(&garbage));
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
            decoder.push(&wire);
            prop_assert_eq!(decoder.next_frame().unwrap(), Some(frame));
            let _ = decoder.next_frame();
        }
    }

    #[test]
    fn oversize_length_rejected_from_prefix_alone() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&1025u32.to_le_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(CodecError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        // The decoder stays failed and does not buffer what follows.
        decoder.push(&[0; 100]);
        assert_eq!(decoder.buffered(), 0);
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn length_at_max_is_accepted() {
        let frame = Frame::Ping { seq: 7 };
        let mut wire = Vec::new();
        encode(&frame, &mut wire).unwrap();
        let len = wire.len() - LEN_BYTES;
        let mut decoder = FrameDecoder::new(len);
        decoder.push(&wire);
        assert_eq!(decoder.next_frame(), Ok(Some(frame)));
    }

    #[test]
    fn trailing_bytes_in_payload_are_malformed() {
        let mut payload = postcard::to_stdvec(&Frame::Stop).unwrap();
        payload.extend_from_slice(&[1, 2, 3]);
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&framed(&payload));
        assert_eq!(
            decoder.next_frame(),
            Err(CodecError::Trailing {
                trailing: 3,
                len: payload.len()
            })
        );
    }

    #[test]
    fn undecodable_payload_is_malformed() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&framed(&[0xff, 0xff, 0xff]));
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::Malformed { .. })
        ));
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&framed(&[]));
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn truncated_frame_waits_for_more() {
        let frame = Frame::Reject {
            reason: text("disk full"),
        };
        let mut wire = Vec::new();
        encode(&frame, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&wire[..2]);
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.push(&wire[2..wire.len() - 1]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), wire.len() - 1);
        decoder.push(&wire[wire.len() - 1..]);
        assert_eq!(decoder.next_frame(), Ok(Some(frame)));
        assert_eq!(decoder.next_frame(), Ok(None));
    }

    #[test]
    fn many_small_frames_keep_the_buffer_compact() {
        let mut one = Vec::new();
        encode(&Frame::Ping { seq: 1 }, &mut one).unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        // Half a frame is always left over, so the buffer never empties by itself and
        // only compaction keeps it from growing with every frame.
        decoder.push(&one[..one.len() / 2]);
        for _ in 0..10_000 {
            decoder.push(&one[one.len() / 2..]);
            decoder.push(&one[..one.len() / 2]);
            assert!(decoder.next_frame().unwrap().is_some());
            assert_eq!(decoder.next_frame().unwrap(), None);
        }
        assert!(decoder.buf.capacity() < 64 * one.len());
    }
}
