//! VP8 decoding of one participant's video with libvpx (the system library, through
//! `env-libvpx-sys`), one frame at a time, into [`Picture`]s.
//!
//! Waiting for key frames and the spare pictures are [`super::video::VideoDecoder`]'s,
//! as for every codec.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::ptr;

use thiserror::Error;
use vpx_sys::{
    vpx_codec_ctx_t, vpx_codec_dec_init_ver, vpx_codec_decode, vpx_codec_destroy, vpx_codec_err_t,
    vpx_codec_err_to_string, vpx_codec_get_frame, vpx_codec_vp8_dx, vpx_img_fmt,
    VPX_DECODER_ABI_VERSION,
};

use super::video::PicturePool;
use crate::media::picture::{Picture, PictureError};

#[derive(Debug, Error)]
pub(crate) enum Vp8DecodeError {
    #[error("VP8 decoder could not be created: {0}")]
    Create(#[source] LibvpxError),
    #[error("corrupt VP8 frame, wait for the next key frame: {0}")]
    Corrupt(#[source] LibvpxError),
    #[error("VP8 frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("VP8 picture in format {0:?}, not I420")]
    Format(vpx_img_fmt),
    #[error("decoded picture is unusable, wait for the next key frame: {0}")]
    BadPicture(#[from] PictureError),
}

/// An error code of libvpx, with its own description.
#[derive(Debug, Error)]
#[error("{}", describe(*.0))]
pub(crate) struct LibvpxError(vpx_codec_err_t);

fn describe(code: vpx_codec_err_t) -> String {
    // SAFETY: libvpx returns a static, NUL-terminated string for every code.
    unsafe { CStr::from_ptr(vpx_codec_err_to_string(code)) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn check(code: vpx_codec_err_t) -> Result<(), LibvpxError> {
    match code {
        vpx_codec_err_t::VPX_CODEC_OK => Ok(()),
        e => Err(LibvpxError(e)),
    }
}

pub(crate) struct Vp8Decoder {
    /// Boxed: libvpx keeps pointers to the context it was initialised in.
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: the context is owned by this value alone and libvpx keeps no thread-local
// state for it; it is used from one thread at a time (`&mut self`).
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub(crate) fn new() -> Result<Self, Vp8DecodeError> {
        // SAFETY: an all-zero context is what vpx_codec_dec_init expects to fill in.
        let mut ctx: Box<vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: ctx is valid and stays at its address (boxed); a null configuration
        // asks for the defaults.
        let code = unsafe {
            vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx_codec_vp8_dx(),
                ptr::null(),
                0,
                VPX_DECODER_ABI_VERSION as i32,
            )
        };
        check(code).map_err(Vp8DecodeError::Create)?;
        Ok(Self { ctx })
    }

    /// Decodes one frame into a picture of `pool`. `Ok(None)` when it gave no
    /// picture (a frame not to be shown).
    pub(crate) fn decode(
        &mut self,
        frame: &[u8],
        pool: &mut PicturePool,
    ) -> Result<Option<Picture>, Vp8DecodeError> {
        let len = u32::try_from(frame.len()).map_err(|_| Vp8DecodeError::TooLarge(frame.len()))?;
        // SAFETY: the context was initialised; libvpx reads `len` bytes of `frame`
        // and keeps no pointer to them after the call.
        let code =
            unsafe { vpx_codec_decode(&mut *self.ctx, frame.as_ptr(), len, ptr::null_mut(), 0) };
        check(code).map_err(Vp8DecodeError::Corrupt)?;
        let mut iter = ptr::null();
        let mut picture = None;
        loop {
            // SAFETY: the context is initialised; the image it returns stays valid
            // until the next call on the context, and is copied out before that.
            let img = unsafe { vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            // SAFETY: a non-null image from libvpx is a valid vpx_image_t.
            let Some(img) = (unsafe { img.as_ref() }) else {
                break;
            };
            if img.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
                return Err(Vp8DecodeError::Format(img.fmt));
            }
            let strides = [0, 1, 2].map(|i| img.stride[i].max(0) as usize);
            let planes = [0, 1, 2].map(|i| img.planes[i].cast_const());
            let (w, h) = (img.d_w as usize, img.d_h as usize);
            // SAFETY: each plane of a decoded I420 image holds its rows of `stride`
            // bytes, valid until the next call on the context.
            let p = unsafe { pool.copy_raw(w, h, planes, strides) }?;
            pool.keep_last(&mut picture, p);
        }
        Ok(picture)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once.
        unsafe { vpx_codec_destroy(&mut *self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::video::{VideoDecodeError, VideoDecoder};
    use crate::ingest::depacketize::vp8::is_key_frame;
    use crate::media::codec::VideoFormat;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::vpx::{VpxCodec, VpxConfig, VpxEncoder};
    use crate::synth::PALETTE;

    fn assert_near(got: [u8; 3], want: [u8; 3]) {
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 6);
        assert!(close, "{got:?} is not near {want:?}");
    }

    fn frames(width: usize, height: usize, rgb: [u8; 3], n: usize) -> Vec<Vec<u8>> {
        let mut encoder = VpxEncoder::new(VpxConfig {
            codec: VpxCodec::Vp8,
            width: width as u16,
            height: height as u16,
            fps: 30,
            bitrate_bps: 500_000,
        })
        .unwrap();
        let picture = Picture::filled(width, height, rgb_to_yuv(rgb)).unwrap();
        (0..n)
            .map(|i| {
                encoder
                    .encode(&picture, i as i64 * 3000, i == 0)
                    .unwrap()
                    .data
            })
            .collect()
    }

    #[test]
    fn libvpx_frames_decode_in_colour_and_size() {
        let encoded = frames(320, 180, PALETTE[3], 5);
        assert_eq!(encoded.len(), 5);
        assert!(is_key_frame(&encoded[0]) && !is_key_frame(&encoded[1]));
        let mut decoder = VideoDecoder::new(VideoFormat::Vp8).unwrap();
        for frame in &encoded {
            let picture = decoder.decode(frame).unwrap().unwrap();
            assert_eq!((picture.width(), picture.height()), (320, 180));
            assert_near(picture.pixel(8, 8), rgb_to_yuv(PALETTE[3]));
            assert_near(picture.pixel(300, 170), rgb_to_yuv(PALETTE[3]));
            decoder.recycle(picture);
        }
        assert_eq!(decoder.size(), Some((320, 180)));
    }

    #[test]
    fn corrupt_input_waits_for_the_next_key_frame_and_never_panics() {
        let encoded = frames(160, 120, PALETTE[1], 3);
        let mut decoder = VideoDecoder::new(VideoFormat::Vp8).unwrap();
        assert!(matches!(
            decoder.decode(&encoded[1]),
            Err(VideoDecodeError::AwaitingKeyframe)
        ));
        assert!(decoder.decode(&encoded[0]).unwrap().is_some());
        // A key frame tag on garbage, and flipped bytes in a real key frame.
        let mut seed = 7u64;
        for round in 0..40 {
            let mut f = encoded[0].clone();
            if round % 2 == 0 {
                f = [&f[..10], &crate::synth::filler(seed, 300)].concat();
            } else {
                for _ in 0..8 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = 10 + (seed >> 33) as usize % (f.len() - 10);
                    f[i] ^= (seed >> 20) as u8 | 1;
                }
            }
            seed += 1;
            let _ = decoder.decode(&f);
        }
        assert!(decoder.decode(b"x").is_err());
        assert!(decoder.awaiting_keyframe());
        assert!(decoder.decode(&encoded[0]).unwrap().is_some());
        assert!(decoder.decode(&encoded[1]).unwrap().is_some());
    }
}
