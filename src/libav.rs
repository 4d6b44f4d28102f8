//! libavcodec, the system's (FFmpeg's, through `ffmpeg-sys-next`), as the box's codecs
//! use it: one open codec context with the packet and the frame it is fed and read
//! through. The decoders of participants' video and audio are built on it
//! ([`crate::decoder`]), and so is every Opus encoder of the box (libopus, through
//! libavcodec's wrapper: [`crate::mixer::audio_encoder`]).
//!
//! Why libavcodec: its buffers are sized for the stream instead of openh264's fixed
//! 3 MiB a decoder, which kept the mixer over its memory targets at 9 and 16
//! participants; its Opus decoder is also cheaper than ropus's, and libopus encodes
//! the mix in half ropus's time (`docs/benchmarks.md`).
//! Every context runs on one thread, its caller's: the engine thread is the one that
//! pays, and no frame waits for a thread pool.

use std::ffi::CStr;
use std::ptr;
use std::sync::Once;

use ffmpeg_sys_next as ff;
use thiserror::Error;

use crate::ingest::depacketize::opus::CLOCK_RATE;

#[derive(Debug, Error)]
pub enum LibavError {
    #[error("{codec} codec could not be set up: {reason}")]
    Setup { codec: &'static str, reason: String },
    #[error("{codec} data rejected: {reason}")]
    Rejected { codec: &'static str, reason: String },
    #[error("{codec} packet of {len} bytes is too large")]
    TooLarge { codec: &'static str, len: usize },
    #[error("out of memory for a reference on a decoded frame")]
    FrameRef,
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

/// An open codec context with the packet and the frame it is used through, freed
/// together.
struct Context {
    name: &'static str,
    ctx: *mut ff::AVCodecContext,
    packet: *mut ff::AVPacket,
    frame: *mut ff::AVFrame,
}

// SAFETY: the context, packet and frame are owned by this value alone and used from
// one thread at a time (`&mut self`); a context with one thread keeps no state tied
// to the thread that made it.
unsafe impl Send for Context {}

impl Context {
    /// Opens `codec` (found by libavcodec, or null when it was built without it), its
    /// context set by `configure` first.
    fn open(
        name: &'static str,
        codec: *const ff::AVCodec,
        configure: impl FnOnce(&mut ff::AVCodecContext),
    ) -> Result<Self, LibavError> {
        static QUIET: Once = Once::new();
        // libavcodec logs every damaged packet to stderr itself; what reaches the box
        // from the network is not its to log (the callers log at debug).
        // SAFETY: sets a process-wide integer; no other code of the process logs
        // through libav.
        QUIET.call_once(|| unsafe { ff::av_log_set_level(ff::AV_LOG_QUIET) });
        let fail = |reason: String| LibavError::Setup {
            codec: name,
            reason,
        };
        if codec.is_null() {
            return Err(fail("libavcodec was built without it".into()));
        }
        // Each allocation is freed by `drop` from here on, null or not.
        let this = Self {
            name,
            // SAFETY: plain allocations; null on failure, checked below.
            ctx: unsafe { ff::avcodec_alloc_context3(codec) },
            packet: unsafe { ff::av_packet_alloc() },
            frame: unsafe { ff::av_frame_alloc() },
        };
        if this.ctx.is_null() || this.packet.is_null() || this.frame.is_null() {
            return Err(fail("out of memory".into()));
        }
        // SAFETY: ctx is a freshly allocated context of `codec`, not yet open.
        let code = unsafe {
            let ctx = &mut *this.ctx;
            ctx.thread_count = 1;
            configure(ctx);
            ff::avcodec_open2(this.ctx, codec, ptr::null_mut())
        };
        if code < 0 {
            return Err(fail(describe(code)));
        }
        Ok(this)
    }

    fn rejected(&self, reason: String) -> LibavError {
        LibavError::Rejected {
            codec: self.name,
            reason,
        }
    }
}

impl Drop for Context {
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

/// An open decoder: packets in, frames out.
pub(crate) struct Decoder(Context);

impl Decoder {
    /// A decoder of `codec`, its context set by `configure` before it is opened.
    pub(crate) fn open(
        codec: Codec,
        configure: impl FnOnce(&mut ff::AVCodecContext),
    ) -> Result<Self, LibavError> {
        // SAFETY: find_decoder returns a static codec or null.
        let decoder = unsafe { ff::avcodec_find_decoder(codec.id()) };
        Context::open(codec.name(), decoder, configure).map(Self)
    }

    /// Decodes one packet, handing each frame it gives to `each` (a frame is valid
    /// only during the call). An empty packet is refused: to libavcodec it would
    /// mean the end of the stream.
    pub(crate) fn decode<E: From<LibavError>>(
        &mut self,
        data: &[u8],
        mut each: impl FnMut(&ff::AVFrame) -> Result<(), E>,
    ) -> Result<(), E> {
        let c = &mut self.0;
        if data.is_empty() {
            return Err(c.rejected("empty packet".into()).into());
        }
        let len = i32::try_from(data.len()).map_err(|_| LibavError::TooLarge {
            codec: c.name,
            len: data.len(),
        })?;
        // SAFETY: the packet is ours; with no buffer of its own (`buf` null) the
        // decoder copies `len` bytes of `data`, padded as it needs, before
        // send_packet returns, and keeps no pointer to them.
        let code = unsafe {
            (*c.packet).data = data.as_ptr().cast_mut();
            (*c.packet).size = len;
            let code = ff::avcodec_send_packet(c.ctx, c.packet);
            (*c.packet).data = ptr::null_mut();
            (*c.packet).size = 0;
            code
        };
        if code < 0 {
            return Err(c.rejected(describe(code)).into());
        }
        loop {
            // SAFETY: the context is open and the frame ours; receive_frame unrefs
            // what the frame held before.
            let code = unsafe { ff::avcodec_receive_frame(c.ctx, c.frame) };
            if code == ff::AVERROR(ff::EAGAIN) || code == ff::AVERROR_EOF {
                return Ok(());
            }
            if code < 0 {
                return Err(c.rejected(describe(code)).into());
            }
            // SAFETY: receive_frame succeeded: the frame holds what was decoded.
            let result = each(unsafe { &*c.frame });
            // SAFETY: the frame's buffers go back to the decoder's pool.
            unsafe { ff::av_frame_unref(c.frame) };
            result?;
        }
    }
}

/// A reference on a decoded frame, kept past the decode call that gave it: the
/// picture is shown from the decoder's own buffers, which go back to its pool when
/// the last reference does.
pub(crate) struct FrameRef(ptr::NonNull<ff::AVFrame>);

// SAFETY: the frame is this value's alone; its buffers are reference counted
// atomically, so the decoder may reuse or free them from another thread.
unsafe impl Send for FrameRef {}

impl FrameRef {
    pub(crate) fn new(frame: &ff::AVFrame) -> Result<Self, LibavError> {
        // SAFETY: `frame` is a valid decoded frame; the clone is a new frame holding
        // new references on its buffers, or null when out of memory.
        ptr::NonNull::new(unsafe { ff::av_frame_clone(frame) })
            .map(Self)
            .ok_or(LibavError::FrameRef)
    }

    pub(crate) fn frame(&self) -> &ff::AVFrame {
        // SAFETY: valid from `new` until `drop`.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for FrameRef {
    fn drop(&mut self) {
        let mut frame = self.0.as_ptr();
        // SAFETY: made by av_frame_clone in `new`, freed once here.
        unsafe { ff::av_frame_free(&mut frame) };
    }
}

/// An open Opus encoder (libopus, through libavcodec's `libopus`): frames of 16-bit
/// interleaved samples at 48 kHz in, one packet each out.
pub(crate) struct OpusEncoder {
    context: Context,
    channels: usize,
    /// Samples per channel of every frame it takes.
    frame_samples: usize,
}

impl OpusEncoder {
    /// `channels` channels at 48 kHz, general audio (music and speech alike), VBR at
    /// `bitrate_bps` (libopus takes 500 to 256 000 a channel), frames of
    /// `frame_samples` samples per channel (libopus's 2.5 to 60 ms).
    pub(crate) fn open(
        channels: usize,
        bitrate_bps: u32,
        frame_samples: usize,
    ) -> Result<Self, LibavError> {
        const NAME: &str = "Opus (libopus)";
        // SAFETY: find_encoder_by_name reads a NUL-terminated name and returns a
        // static codec or null.
        let encoder = unsafe { ff::avcodec_find_encoder_by_name(c"libopus".as_ptr()) };
        let rate = CLOCK_RATE as i32;
        let context = Context::open(NAME, encoder, |ctx| {
            ctx.sample_rate = rate;
            ctx.sample_fmt = ff::AVSampleFormat::AV_SAMPLE_FMT_S16;
            ctx.bit_rate = i64::from(bitrate_bps);
            ctx.time_base = ff::AVRational { num: 1, den: rate };
            set_channels(ctx, channels);
        })?;
        // SAFETY: the context is open; libopus sets its frame size as it opens.
        let opened = unsafe { (*context.ctx).frame_size };
        if usize::try_from(opened).ok() != Some(frame_samples) {
            return Err(LibavError::Setup {
                codec: NAME,
                reason: format!("frames of {opened} samples, not {frame_samples}"),
            });
        }
        // SAFETY: the frame is ours and empty; its buffer is sized by the format,
        // sample count and layout set here (the open context's own).
        let code = unsafe {
            let (frame, ctx) = (&mut *context.frame, &*context.ctx);
            frame.format = ctx.sample_fmt as i32;
            frame.nb_samples = opened;
            frame.sample_rate = ctx.sample_rate;
            let code = ff::av_channel_layout_copy(&mut frame.ch_layout, &ctx.ch_layout);
            if code < 0 {
                code
            } else {
                ff::av_frame_get_buffer(context.frame, 0)
            }
        };
        if code < 0 {
            return Err(LibavError::Setup {
                codec: NAME,
                reason: describe(code),
            });
        }
        Ok(Self {
            context,
            channels,
            frame_samples,
        })
    }

    /// Samples a player drops from the start of the stream (the Opus pre-skip): the
    /// encoder's lookahead.
    pub(crate) fn pre_skip(&self) -> u16 {
        // SAFETY: the context is open; libopus sets its padding as it opens.
        let padding = unsafe { (*self.context.ctx).initial_padding };
        // A few hundred samples at most; the header field is 16 bits.
        u16::try_from(padding).unwrap_or(u16::MAX)
    }

    /// Encodes one frame of `frame_samples` interleaved samples a channel to one
    /// packet.
    pub(crate) fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, LibavError> {
        let c = &mut self.context;
        let want = self.frame_samples * self.channels;
        if pcm.len() != want {
            return Err(c.rejected(format!("{} samples, not {want}", pcm.len())));
        }
        // SAFETY: the frame holds one interleaved plane of `want` samples (made in
        // `open`); make_writable gives it a buffer of its own if the encoder still
        // references the last one.
        let code = unsafe {
            let code = ff::av_frame_make_writable(c.frame);
            if code >= 0 {
                let plane = std::slice::from_raw_parts_mut((*c.frame).data[0].cast::<i16>(), want);
                plane.copy_from_slice(pcm);
                ff::avcodec_send_frame(c.ctx, c.frame)
            } else {
                code
            }
        };
        if code < 0 {
            return Err(c.rejected(describe(code)));
        }
        // SAFETY: the context is open and the packet ours; receive_packet unrefs
        // what the packet held before, and a packet it gives holds `size` bytes.
        unsafe {
            let code = ff::avcodec_receive_packet(c.ctx, c.packet);
            if code < 0 {
                return Err(c.rejected(describe(code)));
            }
            let size = usize::try_from((*c.packet).size).unwrap_or(0);
            let data = std::slice::from_raw_parts((*c.packet).data, size).to_vec();
            ff::av_packet_unref(c.packet);
            Ok(data)
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
