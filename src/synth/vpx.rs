//! VP8 and VP9 encoding with libvpx (the system library, through `env-libvpx-sys`,
//! as the box's VP8 decoder): what a browser publishes in a Janus room. A small safe
//! wrapper, pictures in and frames out; keyframes come when asked for.

use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::ptr;

use thiserror::Error;
use vpx_sys::{
    vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_destroy,
    vpx_codec_enc_cfg_t, vpx_codec_enc_config_default, vpx_codec_enc_init_ver, vpx_codec_encode,
    vpx_codec_get_cx_data, vpx_codec_iface_t, vpx_codec_vp8_cx, vpx_codec_vp9_cx, vpx_image_t,
    vpx_img_fmt, vpx_img_wrap, vpx_kf_mode, vpx_rc_mode, VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF,
    VPX_ENCODER_ABI_VERSION, VPX_FRAME_IS_KEY,
};

use crate::decoder::vp8::{check, LibvpxError};
use crate::encoder::EncodedVideo;
use crate::media::picture::Picture;

/// The RTP clock of video: pts are given and returned in these units.
const CLOCK_HZ: i32 = 90_000;
/// libvpx's speed setting: the fastest of its real-time range for both codecs, as
/// a lab runs up to 16 of these at once.
const CPU_USED: c_int = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VpxCodec {
    Vp8,
    Vp9,
}

impl VpxCodec {
    fn interface(self) -> *mut vpx_codec_iface_t {
        // SAFETY: libvpx's interface getters return pointers to its static tables.
        unsafe {
            match self {
                VpxCodec::Vp8 => vpx_codec_vp8_cx(),
                VpxCodec::Vp9 => vpx_codec_vp9_cx(),
            }
        }
    }
}

/// Public through [`PatternError`](super::video::PatternError); libvpx's own error is
/// the box's decoder's business, so its description is kept here.
#[derive(Debug, Error)]
pub enum VpxError {
    #[error("libvpx encoder, {what}: {detail}")]
    Libvpx { what: &'static str, detail: String },
    #[error("picture is {got:?}, the libvpx encoder was opened for {want:?}")]
    PictureSize {
        want: (usize, usize),
        got: (usize, usize),
    },
    #[error("the libvpx encoder gave no frame for a picture")]
    NoFrame,
}

fn call(what: &'static str, code: vpx_sys::vpx_codec_err_t) -> Result<(), VpxError> {
    check(code).map_err(|e: LibvpxError| VpxError::Libvpx {
        what,
        detail: e.to_string(),
    })
}

/// The encoder's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VpxConfig {
    pub(crate) codec: VpxCodec,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) fps: u16,
    pub(crate) bitrate_bps: u32,
}

pub(crate) struct VpxEncoder {
    /// Boxed: libvpx keeps pointers to the context it was initialised in.
    ctx: Box<vpx_codec_ctx_t>,
    size: (usize, usize),
    /// One frame's duration in 90 kHz ticks.
    duration: u64,
}

// SAFETY: the context is owned by this value alone and libvpx keeps no thread-local
// state for it; it is used from one thread at a time (`&mut self`).
unsafe impl Send for VpxEncoder {}

impl VpxEncoder {
    pub(crate) fn new(config: VpxConfig) -> Result<Self, VpxError> {
        let iface = config.codec.interface();
        // SAFETY: a zeroed configuration is what libvpx fills with its defaults.
        let mut cfg: vpx_codec_enc_cfg_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: `cfg` is valid for writes; usage 0 is the only one defined.
        call("defaults", unsafe {
            vpx_codec_enc_config_default(iface, &mut cfg, 0)
        })?;
        cfg.g_w = u32::from(config.width);
        cfg.g_h = u32::from(config.height);
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = CLOCK_HZ;
        cfg.g_threads = 1;
        // Every frame out as it goes in, at a steady rate, as for a live call.
        cfg.g_lag_in_frames = 0;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (config.bitrate_bps / 1000).max(1);
        // Keyframes only when the caller asks, so their places are the caller's.
        cfg.kf_mode = vpx_kf_mode::VPX_KF_DISABLED;
        // SAFETY: an all-zero context is what vpx_codec_enc_init expects to fill in.
        let mut ctx: Box<vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        // SAFETY: ctx stays at its address (boxed); cfg is read during the call only.
        call("init", unsafe {
            vpx_codec_enc_init_ver(&mut *ctx, iface, &cfg, 0, VPX_ENCODER_ABI_VERSION as i32)
        })?;
        let mut encoder = Self {
            ctx,
            size: (usize::from(config.width), usize::from(config.height)),
            duration: u64::from(CLOCK_HZ as u32 / u32::from(config.fps.max(1))),
        };
        // SAFETY: the context is initialised; VP8E_SET_CPUUSED takes one int.
        call("speed", unsafe {
            vpx_sys::vpx_codec_control_(
                &mut *encoder.ctx,
                vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int,
                CPU_USED,
            )
        })?;
        Ok(encoder)
    }

    /// Encodes `picture` at `pts` (90 kHz), a keyframe if `keyframe`.
    pub(crate) fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        keyframe: bool,
    ) -> Result<EncodedVideo, VpxError> {
        let (w, h) = (picture.width(), picture.height());
        if (w, h) != self.size {
            return Err(VpxError::PictureSize {
                want: self.size,
                got: (w, h),
            });
        }
        let (y, u, v) = (picture.y(), picture.u(), picture.v());
        // SAFETY: a zeroed image is filled in by vpx_img_wrap.
        let mut img: vpx_image_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: the image only describes the picture's planes, which outlive the
        // encode call; the encoder reads them and never writes.
        unsafe {
            vpx_img_wrap(
                &mut img,
                vpx_img_fmt::VPX_IMG_FMT_I420,
                w as u32,
                h as u32,
                1,
                y.as_ptr().cast_mut(),
            );
        }
        img.planes[1] = u.as_ptr().cast_mut();
        img.planes[2] = v.as_ptr().cast_mut();
        img.stride = [w as c_int, (w / 2) as c_int, (w / 2) as c_int, 0];
        let flags = if keyframe {
            VPX_EFLAG_FORCE_KF as i64
        } else {
            0
        };
        // SAFETY: context initialised, image valid for the call (see above).
        call("encode", unsafe {
            vpx_codec_encode(
                &mut *self.ctx,
                &img,
                pts,
                self.duration,
                flags,
                VPX_DL_REALTIME.into(),
            )
        })?;
        let mut out: Option<EncodedVideo> = None;
        let mut iter = ptr::null();
        loop {
            // SAFETY: the packets stay valid until the next call on the context and
            // are copied out before it.
            let pkt = unsafe { vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            // SAFETY: a non-null packet from libvpx is a valid vpx_codec_cx_pkt_t.
            let Some(pkt) = (unsafe { pkt.as_ref() }) else {
                break;
            };
            if pkt.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: a frame packet's union member is `frame`; its buffer holds `sz`
            // bytes.
            let (data, key) = unsafe {
                let f = pkt.data.frame;
                let data = std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize);
                (data, f.flags & VPX_FRAME_IS_KEY != 0)
            };
            // Without lag there is one frame packet per picture (VP9's superframe
            // comes as one too).
            let frame = out.get_or_insert_with(|| EncodedVideo {
                data: Vec::with_capacity(data.len()),
                keyframe: key,
                pts,
            });
            frame.data.extend_from_slice(data);
        }
        out.ok_or(VpxError::NoFrame)
    }
}

impl Drop for VpxEncoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { vpx_codec_destroy(&mut *self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::video::VideoDecoder;
    use crate::ingest::depacketize::vp8::is_key_frame;
    use crate::media::codec::VideoFormat;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::PALETTE;

    fn config(codec: VpxCodec) -> VpxConfig {
        VpxConfig {
            codec,
            width: 160,
            height: 120,
            fps: 30,
            bitrate_bps: 300_000,
        }
    }

    #[test]
    fn vp8_frames_decode_in_colour_with_keyframes_where_asked() {
        let mut encoder = VpxEncoder::new(config(VpxCodec::Vp8)).unwrap();
        let mut decoder = VideoDecoder::new(VideoFormat::Vp8).unwrap();
        let want = rgb_to_yuv(PALETTE[4]);
        let picture = Picture::filled(160, 120, want).unwrap();
        for k in 0..6 {
            let frame = encoder.encode(&picture, k * 3000, k % 3 == 0).unwrap();
            assert_eq!((frame.keyframe, frame.pts), (k % 3 == 0, k * 3000));
            assert_eq!(is_key_frame(&frame.data), frame.keyframe);
            let got = decoder.decode(&frame.data).unwrap().unwrap();
            let close = got
                .pixel(80, 60)
                .iter()
                .zip(want)
                .all(|(&g, w)| g.abs_diff(w) <= 6);
            assert!(close, "{:?} is not near {want:?}", got.pixel(80, 60));
        }
    }

    #[test]
    fn vp9_frames_come_out_and_a_wrong_size_is_refused() {
        let mut encoder = VpxEncoder::new(config(VpxCodec::Vp9)).unwrap();
        let picture = Picture::filled(160, 120, [80, 90, 100]).unwrap();
        let key = encoder.encode(&picture, 0, true).unwrap();
        let inter = encoder.encode(&picture, 3000, false).unwrap();
        assert!(key.keyframe && !inter.keyframe);
        assert!(key.data.len() > inter.data.len());
        let small = Picture::filled(80, 60, [80, 90, 100]).unwrap();
        assert!(matches!(
            encoder.encode(&small, 6000, false),
            Err(VpxError::PictureSize { .. })
        ));
    }
}
