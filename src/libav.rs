//! libavcodec, the system's (FFmpeg's, through `ffmpeg-sys-next`), as the box's codecs
//! use it: one open codec context with the packet and the frame it is fed and read
//! through. The decoders of participants' video and audio are built on it
//! ([`crate::decoder`]).
//!
//! Why libavcodec: its buffers are sized for the stream instead of openh264's fixed
//! 3 MiB a decoder, which kept the mixer over its memory targets at 9 and 16
//! participants; its Opus decoder is also cheaper than ropus's (`docs/benchmarks.md`).
//! Every context runs on one thread, its caller's: the engine thread is the one that
//! pays, and no frame waits for a thread pool.

use std::ffi::CStr;
use std::ptr;
use std::sync::Once;

use ffmpeg_sys_next as ff;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LibavError {
    #[error("{codec} codec could not be set up: {reason}")]
    Setup { codec: &'static str, reason: String },
    #[error("{codec} data rejected: {reason}")]
    Rejected { codec: &'static str, reason: String },
    #[error("{codec} packet of {len} bytes is too large")]
    TooLarge { codec: &'static str, len: usize },
}

/// The codecs the box decodes with libavcodec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    H264,
    Opus,
}

impl Codec {
    fn id(self) -> ff::AVCodecID {
        match self {
            Self::H264 => ff::AVCodecID::AV_CODEC_ID_H264,
            Self::Opus => ff::AVCodecID::AV_CODEC_ID_OPUS,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::Opus => "Opus",
        }
    }
}

/// libavcodec's own description of an error code.
fn describe(code: i32) -> String {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: av_strerror writes a NUL-terminated string of at most `buf.len()` bytes.
    unsafe { ff::av_strerror(code, buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated above, within `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// An open decoder: packets in, frames out.
pub(crate) struct Decoder {
    codec: Codec,
    ctx: *mut ff::AVCodecContext,
    packet: *mut ff::AVPacket,
    frame: *mut ff::AVFrame,
}

// SAFETY: the context, packet and frame are owned by this value alone and used from
// one thread at a time (`&mut self`); a context with one thread keeps no state tied
// to the thread that made it.
unsafe impl Send for Decoder {}

impl Decoder {
    /// A decoder of `codec`, its context set by `configure` before it is opened.
    pub(crate) fn open(
        codec: Codec,
        configure: impl FnOnce(&mut ff::AVCodecContext),
    ) -> Result<Self, LibavError> {
        static QUIET: Once = Once::new();
        // libavcodec logs every damaged packet to stderr itself; what reaches the box
        // from the network is not its to log (the callers log at debug).
        // SAFETY: sets a process-wide integer; no other code of the process logs
        // through libav.
        QUIET.call_once(|| unsafe { ff::av_log_set_level(ff::AV_LOG_QUIET) });
        let fail = |reason: String| LibavError::Setup {
            codec: codec.name(),
            reason,
        };
        // SAFETY: find_decoder returns a static codec or null.
        let decoder = unsafe { ff::avcodec_find_decoder(codec.id()) };
        if decoder.is_null() {
            return Err(fail("libavcodec was built without it".into()));
        }
        // Each allocation is freed by `drop` from here on, null or not.
        let this = Self {
            codec,
            // SAFETY: plain allocations; null on failure, checked below.
            ctx: unsafe { ff::avcodec_alloc_context3(decoder) },
            packet: unsafe { ff::av_packet_alloc() },
            frame: unsafe { ff::av_frame_alloc() },
        };
        if this.ctx.is_null() || this.packet.is_null() || this.frame.is_null() {
            return Err(fail("out of memory".into()));
        }
        // SAFETY: ctx is a freshly allocated context of `decoder`, not yet open.
        let code = unsafe {
            let ctx = &mut *this.ctx;
            ctx.thread_count = 1;
            configure(ctx);
            ff::avcodec_open2(this.ctx, decoder, ptr::null_mut())
        };
        if code < 0 {
            return Err(fail(describe(code)));
        }
        Ok(this)
    }

    /// Decodes one packet, handing each frame it gives to `each` (a frame is valid
    /// only during the call). An empty packet is refused: to libavcodec it would
    /// mean the end of the stream.
    pub(crate) fn decode<E: From<LibavError>>(
        &mut self,
        data: &[u8],
        mut each: impl FnMut(&ff::AVFrame) -> Result<(), E>,
    ) -> Result<(), E> {
        let codec = self.codec.name();
        let rejected = |reason: String| LibavError::Rejected { codec, reason };
        if data.is_empty() {
            return Err(rejected("empty packet".into()).into());
        }
        let len = i32::try_from(data.len()).map_err(|_| LibavError::TooLarge {
            codec,
            len: data.len(),
        })?;
        // SAFETY: the packet is ours; with no buffer of its own (`buf` null) the
        // decoder copies `len` bytes of `data`, padded as it needs, before
        // send_packet returns, and keeps no pointer to them.
        let code = unsafe {
            (*self.packet).data = data.as_ptr().cast_mut();
            (*self.packet).size = len;
            let code = ff::avcodec_send_packet(self.ctx, self.packet);
            (*self.packet).data = ptr::null_mut();
            (*self.packet).size = 0;
            code
        };
        if code < 0 {
            return Err(rejected(describe(code)).into());
        }
        loop {
            // SAFETY: the context is open and the frame ours; receive_frame unrefs
            // what the frame held before.
            let code = unsafe { ff::avcodec_receive_frame(self.ctx, self.frame) };
            if code == ff::AVERROR(ff::EAGAIN) || code == ff::AVERROR_EOF {
                return Ok(());
            }
            if code < 0 {
                return Err(rejected(describe(code)).into());
            }
            // SAFETY: receive_frame succeeded: the frame holds what was decoded.
            let result = each(unsafe { &*self.frame });
            // SAFETY: the frame's buffers go back to the decoder's pool.
            unsafe { ff::av_frame_unref(self.frame) };
            result?;
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: each was allocated in `open` (or is null, which these accept) and is
        // freed once.
        unsafe {
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.packet);
            ff::avcodec_free_context(&mut self.ctx);
        }
    }
}

/// Sets a context's channel layout to the default one of `channels` channels.
pub(crate) fn set_channels(ctx: &mut ff::AVCodecContext, channels: usize) {
    // SAFETY: the layout is the context's own, unset or default before this call.
    unsafe { ff::av_channel_layout_default(&mut ctx.ch_layout, channels as i32) };
}

/// Whether a frame's picture is damaged (concealed by libavcodec) rather than whole.
pub(crate) fn is_damaged(frame: &ff::AVFrame) -> bool {
    frame.flags & ff::AV_FRAME_FLAG_CORRUPT != 0 || frame.decode_error_flags != 0
}

/// Whether a frame's pixels are 4:2:0 planar (limited or full range).
pub(crate) fn is_yuv420(frame: &ff::AVFrame) -> bool {
    [
        ff::AVPixelFormat::AV_PIX_FMT_YUV420P as i32,
        ff::AVPixelFormat::AV_PIX_FMT_YUVJ420P as i32,
    ]
    .contains(&frame.format)
}

/// Channel `channel` of a frame's samples, when the frame holds them as planar
/// 32-bit float (libavcodec's Opus decoder gives nothing else).
pub(crate) fn float_plane(frame: &ff::AVFrame, channel: usize) -> Option<&[f32]> {
    let planar_float = frame.format == ff::AVSampleFormat::AV_SAMPLE_FMT_FLTP as i32;
    let channels = usize::try_from(frame.ch_layout.nb_channels).ok()?;
    let samples = usize::try_from(frame.nb_samples).ok()?;
    if !planar_float || channel >= channels.min(frame.data.len()) || frame.data[channel].is_null() {
        return None;
    }
    // SAFETY: a decoded planar float frame has one plane of `nb_samples` floats per
    // channel (the first 8 in `data`), valid while the frame is referenced.
    Some(unsafe { std::slice::from_raw_parts(frame.data[channel].cast::<f32>(), samples) })
}
