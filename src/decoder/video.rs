//! A participant's video decoder, of the format its stream is in.
//!
//! What every codec needs alike is kept here once: after the start, a loss or any
//! error the decoder waits for a keyframe (a picture predicted from a lost or
//! corrupt reference would only show garbage), refusing other frames with
//! [`VideoDecodeError::AwaitingKeyframe`]; and pictures given back once shown are
//! kept, for the next ones to be decoded into instead of allocating (libavcodec's
//! pictures are shown from its own frames, whose buffers it pools itself). Every
//! error means "request a keyframe" to the caller.

use thiserror::Error;

use super::h264;
use super::vp8::{Vp8DecodeError, Vp8Decoder};
use crate::ingest::depacketize::vp8::is_key_frame;
use crate::libav::{self, LibavError};
use crate::media::codec::VideoFormat;
use crate::media::h264::is_annex_b;
use crate::media::picture::{AsPlanes, Picture, PictureError, Planes};

#[derive(Debug, Error)]
pub(crate) enum VideoDecodeError {
    #[error(transparent)]
    Libav(#[from] LibavError),
    #[error("H.264 picture damaged or not 4:2:0 (pixel format {0}); wait for the next keyframe")]
    Damaged(i32),
    #[error(transparent)]
    Vp8(#[from] Vp8DecodeError),
    #[error("decoded picture is unusable, wait for the next keyframe: {0}")]
    BadPicture(#[from] PictureError),
    #[error("H.264 access unit is not Annex B; wait for the next keyframe")]
    NotAnnexB,
    #[error("waiting for a keyframe after an error, a loss or before the first one")]
    AwaitingKeyframe,
}

/// Pictures given back and kept for the next decodes: as many as wait for their
/// turn in the engine in steady state (its mixing delay is a few frames).
const MAX_SPARE: usize = 4;

/// Pictures done with, whose buffers the next pictures are copied into.
#[derive(Default)]
pub(crate) struct PicturePool {
    spare: Vec<Picture>,
}

impl PicturePool {
    /// A copy of `planes`, in a spare picture's memory when there is one.
    fn copy(&mut self, planes: Planes<'_>) -> Picture {
        match self.spare.pop() {
            Some(mut p) => {
                p.copy_from(planes);
                p
            }
            None => Picture::copied(planes),
        }
    }

    /// A picture of a decoder's 4:2:0 planes, copied as [`Self::copy`] does.
    ///
    /// # Safety
    /// As [`Planes::from_raw`]: each of `planes` points to `height` rows (the chroma
    /// planes to half as many, rounded up) of its stride's bytes, valid during the
    /// call.
    pub(crate) unsafe fn copy_raw(
        &mut self,
        width: usize,
        height: usize,
        planes: [*const u8; 3],
        strides: [usize; 3],
    ) -> Result<Picture, PictureError> {
        // SAFETY: the caller's promise.
        let planes = unsafe { Planes::from_raw(width, height, planes, strides) }?;
        Ok(self.copy(planes))
    }

    /// Makes `picture` the one to show of a frame's, giving back the one it
    /// replaces: only the last of the pictures one frame gives is shown.
    pub(crate) fn keep_last(&mut self, shown: &mut Option<Picture>, picture: Picture) {
        if let Some(passed) = shown.replace(picture) {
            self.give_back(passed);
        }
    }

    pub(crate) fn give_back(&mut self, picture: Picture) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(picture);
        }
    }
}

/// A decoded picture: libavcodec's own frame, shown without a copy, or a copy in a
/// picture of the decoder's pool (libvpx's image lasts only until its next decode).
pub(crate) enum Decoded {
    Frame(libav::FrameRef),
    Copied(Picture),
}

impl AsPlanes for Decoded {
    fn planes(&self) -> Planes<'_> {
        match self {
            Self::Frame(f) => frame_planes(f.frame()).expect("checked as it was decoded"),
            Self::Copied(p) => p.planes(),
        }
    }
}

#[cfg(test)]
impl Decoded {
    pub(crate) fn width(&self) -> usize {
        self.planes().width()
    }

    pub(crate) fn height(&self) -> usize {
        self.planes().height()
    }

    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        self.planes().pixel(x, y)
    }
}

/// The planes of a decoded 4:2:0 frame, as [`Planes::from_raw`] makes them.
fn frame_planes(frame: &ffmpeg_sys_next::AVFrame) -> Result<Planes<'_>, VideoDecodeError> {
    let mut strides = [0usize; 3];
    for (i, stride) in strides.iter_mut().enumerate() {
        *stride = usize::try_from(frame.linesize[i])
            .map_err(|_| VideoDecodeError::Damaged(frame.format))?;
    }
    let (w, h) = (frame.width.max(0) as usize, frame.height.max(0) as usize);
    let data = [0, 1, 2].map(|i| frame.data[i].cast_const());
    // SAFETY: each plane of a decoded 4:2:0 frame holds its rows of `linesize`
    // bytes, valid while the frame is referenced (as long as `frame` is borrowed).
    Ok(unsafe { Planes::from_raw(w, h, data, strides) }?)
}

/// Decodes one frame with `decoder`: a reference on the last picture it gives.
fn decode_frame(
    decoder: &mut libav::Decoder,
    data: &[u8],
) -> Result<Option<Decoded>, VideoDecodeError> {
    let mut picture = None;
    decoder.decode(data, |frame| {
        // A damaged picture, concealed by libavcodec, would show its damage and be
        // the reference of the next ones: the keyframe wait starts instead.
        if libav::is_damaged(frame)
            || !libav::is_yuv420(frame)
            || frame.width < 2
            || frame.height < 2
        {
            return Err(VideoDecodeError::Damaged(frame.format));
        }
        frame_planes(frame)?;
        // Only the last of the pictures one frame gives is shown.
        picture = Some(libav::FrameRef::new(frame)?);
        Ok::<(), VideoDecodeError>(())
    })?;
    Ok(picture.map(Decoded::Frame))
}

enum Codec {
    /// libavcodec's H.264 decoder, with no reordering delay.
    H264(libav::Decoder),
    Vp8(Vp8Decoder),
}

pub(crate) struct VideoDecoder {
    codec: Codec,
    awaiting_keyframe: bool,
    /// Size of the last picture, to notice and log resolution changes.
    size: Option<(usize, usize)>,
    pool: PicturePool,
}

impl VideoDecoder {
    pub(crate) fn new(format: VideoFormat) -> Result<Self, VideoDecodeError> {
        let codec = match format {
            VideoFormat::H264 => Codec::H264(libav::Decoder::open(libav::Codec::H264, |ctx| {
                ctx.flags |= ffmpeg_sys_next::AV_CODEC_FLAG_LOW_DELAY as i32;
            })?),
            VideoFormat::Vp8 => Codec::Vp8(Vp8Decoder::new()?),
        };
        Ok(Self {
            codec,
            // A stream joined mid-way cannot be decoded before its next keyframe.
            awaiting_keyframe: true,
            size: None,
            pool: PicturePool::default(),
        })
    }

    /// Decodes one frame (an H.264 access unit in Annex B, a VP8 frame). `Ok(None)`
    /// when it gave no picture (parameter sets only, a frame not to be shown). On
    /// error, ask the sender for a keyframe.
    pub(crate) fn decode(&mut self, frame: &[u8]) -> Result<Option<Decoded>, VideoDecodeError> {
        let keyframe = match self.codec {
            Codec::H264(_) => h264::is_keyframe(frame),
            Codec::Vp8(_) => is_key_frame(frame),
        };
        if self.awaiting_keyframe && !keyframe {
            return Err(VideoDecodeError::AwaitingKeyframe);
        }
        let decoded = match &mut self.codec {
            Codec::H264(_) if !is_annex_b(frame) => Err(VideoDecodeError::NotAnnexB),
            Codec::H264(d) => decode_frame(d, frame),
            Codec::Vp8(d) => d
                .decode(frame, &mut self.pool)
                .map(|p| p.map(Decoded::Copied))
                .map_err(Into::into),
        };
        let picture = match decoded {
            Ok(p) => p,
            Err(e) => {
                if !self.awaiting_keyframe {
                    tracing::debug!(error = %e, "video decoding stopped until the next keyframe");
                }
                self.awaiting_keyframe = true;
                return Err(e);
            }
        };
        if keyframe {
            self.awaiting_keyframe = false;
        }
        if let Some(p) = &picture {
            let p = p.planes();
            let size = (p.width(), p.height());
            if self.size != Some(size) {
                tracing::debug!(width = size.0, height = size.1, "video picture size");
                self.size = Some(size);
            }
        }
        Ok(picture)
    }

    /// Frames of the stream were lost: nothing decodes until the next keyframe.
    pub(crate) fn wait_for_keyframe(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// Gives back a picture this decoder made, once it is no longer shown: the
    /// next picture reuses its memory instead of allocating.
    pub(crate) fn recycle(&mut self, picture: Decoded) {
        match picture {
            // Its buffers go back to libavcodec's pool as the reference goes.
            Decoded::Frame(_) => {}
            Decoded::Copied(p) => self.pool.give_back(p),
        }
    }

    #[cfg(test)]
    /// True until a keyframe has been decoded after the start, a loss or an error.
    pub(crate) fn awaiting_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    #[cfg(test)]
    /// Size of the last decoded picture.
    pub(crate) fn size(&self) -> Option<(usize, usize)> {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::vpx::{VpxCodec, VpxConfig, VpxEncoder};
    use crate::synth::{PatternSource, PatternSpec, PALETTE};

    /// The first `n` frames of a stream in `format` with a keyframe every 4, and
    /// which of them are keyframes; its colour near the corners is `COLOUR`.
    fn stream(format: VideoFormat, n: usize) -> Vec<(Vec<u8>, bool)> {
        match format {
            VideoFormat::H264 => {
                let spec = PatternSpec {
                    width: 160,
                    height: 120,
                    gop: 4,
                    rgb: COLOUR,
                    ..PatternSpec::default()
                };
                let mut source = PatternSource::new(spec).unwrap();
                (0..n)
                    .map(|_| {
                        let f = source.next_frame().unwrap();
                        (f.data, f.keyframe)
                    })
                    .collect()
            }
            VideoFormat::Vp8 => {
                let mut encoder = VpxEncoder::new(VpxConfig {
                    codec: VpxCodec::Vp8,
                    width: 160,
                    height: 120,
                    fps: 30,
                    bitrate_bps: 300_000,
                })
                .unwrap();
                let picture = Picture::filled(160, 120, rgb_to_yuv(COLOUR)).unwrap();
                (0..n)
                    .map(|i| {
                        let f = encoder
                            .encode(&picture, i as i64 * 3000, i % 4 == 0)
                            .unwrap();
                        (f.data, f.keyframe)
                    })
                    .collect()
            }
        }
    }

    const COLOUR: [u8; 3] = PALETTE[4];

    fn assert_colour(picture: &Decoded, format: VideoFormat) {
        let (got, want) = (picture.pixel(4, 4), rgb_to_yuv(COLOUR));
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 6);
        assert!(close, "{format:?}: {got:?} is not near {want:?}");
    }

    #[test]
    fn every_codec_waits_for_a_keyframe_at_the_start_after_a_loss_and_after_an_error() {
        for format in [VideoFormat::H264, VideoFormat::Vp8] {
            let frames = stream(format, 6);
            assert!(frames[0].1 && !frames[1].1 && frames[4].1, "{format:?}");
            let mut d = VideoDecoder::new(format).unwrap();
            // Joined mid-way: nothing decodes before a keyframe.
            assert!(matches!(
                d.decode(&frames[1].0),
                Err(VideoDecodeError::AwaitingKeyframe)
            ));
            assert!(d.decode(&frames[0].0).unwrap().is_some(), "{format:?}");
            assert!(!d.awaiting_keyframe());
            assert!(d.decode(&frames[1].0).unwrap().is_some(), "{format:?}");
            // A loss: the next delta frame would be predicted from what was lost.
            d.wait_for_keyframe();
            assert!(matches!(
                d.decode(&frames[2].0),
                Err(VideoDecodeError::AwaitingKeyframe)
            ));
            assert!(d.decode(&frames[4].0).unwrap().is_some(), "{format:?}");
            // An error: likewise until the next keyframe.
            let garbage: &[u8] = match format {
                VideoFormat::H264 => b"not h264",
                VideoFormat::Vp8 => b"x",
            };
            assert!(!matches!(
                d.decode(garbage),
                Ok(_) | Err(VideoDecodeError::AwaitingKeyframe)
            ));
            assert!(d.awaiting_keyframe(), "{format:?}");
            assert!(matches!(
                d.decode(&frames[5].0),
                Err(VideoDecodeError::AwaitingKeyframe)
            ));
            assert!(d.decode(&frames[0].0).unwrap().is_some(), "{format:?}");
            assert_eq!(d.size(), Some((160, 120)));
        }
    }

    #[test]
    fn libvpx_pictures_are_decoded_into_recycled_ones() {
        let frames = stream(VideoFormat::Vp8, 3);
        let mut d = VideoDecoder::new(VideoFormat::Vp8).unwrap();
        let first = d.decode(&frames[0].0).unwrap().unwrap();
        let Decoded::Copied(picture) = &first else {
            panic!("libvpx's image is copied");
        };
        let buffer = picture.y().as_ptr();
        d.recycle(first);
        let second = d.decode(&frames[1].0).unwrap().unwrap();
        assert!(matches!(&second, Decoded::Copied(p) if p.y().as_ptr() == buffer));
        assert_eq!((second.width(), second.height()), (160, 120));
        assert_colour(&second, VideoFormat::Vp8);
        // A recycled picture of another size is made to fit.
        d.recycle(Decoded::Copied(Picture::filled(64, 64, [0; 3]).unwrap()));
        let third = d.decode(&frames[2].0).unwrap().unwrap();
        assert_eq!((third.width(), third.height()), (160, 120));
        assert_colour(&third, VideoFormat::Vp8);
    }

    #[test]
    fn libavcodec_pictures_are_its_own_frames_and_outlive_the_next_decodes() {
        let frames = stream(VideoFormat::H264, 4);
        let mut d = VideoDecoder::new(VideoFormat::H264).unwrap();
        // Held, as pictures wait for their time in the engine, while more decode.
        let held: Vec<Decoded> = frames
            .iter()
            .map(|(f, _)| d.decode(f).unwrap().unwrap())
            .collect();
        for picture in &held {
            assert!(matches!(picture, Decoded::Frame(_)), "not copied");
            assert_eq!((picture.width(), picture.height()), (160, 120));
            assert_colour(picture, VideoFormat::H264);
        }
        let luma = |p: &Decoded| p.planes().plane(0).0.as_ptr();
        assert!(
            held.windows(2).all(|w| luma(&w[0]) != luma(&w[1])),
            "each held picture has buffers of its own"
        );
        for picture in held {
            d.recycle(picture);
        }
        let last = d.decode(&frames[0].0).unwrap().unwrap();
        // A picture may outlive its decoder (a participant leaving while the
        // compositor still shows it): libavcodec frees its pool with the last frame.
        drop(d);
        assert_colour(&last, VideoFormat::H264);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_spares() {
        let mut pool = PicturePool::default();
        for _ in 0..MAX_SPARE + 3 {
            pool.give_back(Picture::filled(16, 16, [0; 3]).unwrap());
        }
        assert_eq!(pool.spare.len(), MAX_SPARE);
    }
}
