//! The mixing core: participants come and go and their frames arrive; out come one
//! Opus track and one H.264 track at a steady pace, ready for the media link.
//!
//! Sans-IO: time is passed in. Output runs `delay` behind the timeline so that frames
//! which took a little longer through the network and the decoders still make it:
//! video frame `n` (timeline `n / fps`) is rendered at `start + delay + n / fps`,
//! audio frame `k` (timeline `[k, k + 1) * 20 ms`) is mixed once its end plus `delay`
//! has passed. Both tracks start at the timeline's zero, so they stay in sync.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, warn};

use super::audio_encoder::{OpusEncodeError, OpusEncoder, CHANNELS};
use super::audio_mixer::{AudioMixer, MixerConfig};
use super::compositor::{Compositor, CompositorConfig};
use super::frame_clock::{FrameClock, PTS_HZ};
use super::timeline::{LocalTimeline, ParticipantTimeline};
use crate::decoder::opus::OpusDecoder;
use crate::decoder::video::{Decoded, VideoDecodeError, VideoDecoder};
use crate::encoder::{self, EncodedVideo, EncoderConfig, EncoderError, EncoderKind, VideoEncoder};
use crate::ingest::{Frame, MediaKind};
use crate::link::frame::{
    text, AudioCodec, AudioParams, Media, StartParams, Track, VideoCodec, VideoParams,
};
use crate::media::h264;
use crate::sfu::control::{ParticipantId, ParticipantInfo};

/// Samples per channel of one 20 ms output audio frame at 48 kHz.
const AUDIO_FRAME: i64 = 960;
const AUDIO_FRAME_TIME: Duration = Duration::from_millis(20);
/// Coded video frames waiting for their turn, per participant: a bound on memory when
/// a sender runs ahead of the timeline (the oldest is then decoded early and its
/// picture passed over).
const MAX_CODED_FRAMES: usize = 30;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub width: u16,
    pub height: u16,
    pub fps: u16,
    pub video_bitrate_bps: u32,
    pub audio_bitrate_bps: u32,
    /// Keyframe interval of the output (the recorder's fragment duration).
    pub keyframe_interval: Duration,
    pub encoder: EncoderKind,
    /// How far output runs behind the timeline.
    pub delay: Duration,
    /// How long a stalled participant's last picture is shown before a placeholder.
    pub hold: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_bps: 2_500_000,
            audio_bitrate_bps: 96_000,
            keyframe_interval: Duration::from_secs(2),
            encoder: EncoderKind::Auto,
            delay: Duration::from_millis(80),
            hold: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("video encoder: {0}")]
    Encoder(#[from] EncoderError),
    #[error("audio encoder: {0}")]
    AudioEncoder(#[from] OpusEncodeError),
    #[error("audio mixer: {0}")]
    AudioMixer(#[from] super::audio_mixer::MixerError),
    #[error("the video encoder's first frame has no {0}")]
    MissingParameterSet(&'static str),
    #[error("parameter set of {0} bytes does not fit the Start frame")]
    ParameterSetTooLong(usize),
    #[error("the video encoder gave no first frame")]
    NoFirstFrame,
    #[error("compositor: {0}")]
    Compositor(#[from] super::compositor::CompositorError),
    #[error("output frame rate: {0}")]
    FrameRate(#[from] super::frame_clock::FrameClockError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineOutput {
    Media(Media),
    /// The participant's video cannot be decoded until its next keyframe.
    KeyframeRequest(ParticipantId),
}

/// 20 ms of audio captured on the box itself (the room microphone): 960 stereo pairs
/// at 48 kHz, interleaved, and when the last of them was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFrame {
    pub pcm: Vec<i16>,
    pub captured: Instant,
    /// The first frame of a capture (the microphone opened, or opened again).
    pub(crate) first: bool,
}

/// Audio captured on the box, in the mix like a participant without a tile.
struct LocalInput {
    source: u32,
    timeline: LocalTimeline,
}

/// Counters of one participant, for logs and the stats the mixer reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ParticipantCounters {
    audio_packets: u64,
    audio_decode_errors: u64,
    /// Loss events in the audio (each gap is mixed as silence).
    audio_losses: u64,
    video_frames: u64,
    video_decode_errors: u64,
    pictures_late: u64,
}

struct Participant {
    info: ParticipantInfo,
    /// Key of the participant in the audio mixer and the compositor.
    source: u32,
    timeline: ParticipantTimeline,
    opus: OpusDecoder,
    /// `None` when the box cannot decode the video's codec: its tile stays a
    /// placeholder.
    video: Option<VideoDecoder>,
    /// Video frames not decoded yet, oldest first. They wait coded (kilobytes each)
    /// rather than as pictures (115 KB at 320x240, 1.4 MB at 1280x720): the decoder's
    /// pool keeps as many pictures as were ever alive at once.
    coded: VecDeque<Coded>,
    /// The next picture to show, with its timeline position (90 kHz): decoded one
    /// turn ahead, so decoding stays off the output frame's path.
    ahead: Option<(i64, Decoded)>,
    counters: ParticipantCounters,
}

/// A participant's video as it waits to be decoded.
enum Coded {
    Frame {
        at: i64,
        data: Vec<u8>,
    },
    /// Frames were lost here: what follows waits for a keyframe.
    Loss,
}

impl Participant {
    fn recycle(&mut self, picture: Decoded) {
        if let Some(d) = &mut self.video {
            d.recycle(picture);
        }
    }

    /// Decodes the video frames that should be pictures before the render of
    /// `next_pts`: the next one when no picture is ahead, those whose picture that
    /// render would pass over anyway, and the oldest when too many wait.
    fn decode_ahead(&mut self, next_pts: i64, out: &mut Vec<EngineOutput>) {
        let Some(decoder) = self.video.as_mut() else {
            return;
        };
        loop {
            let full = self.coded.len() > MAX_CODED_FRAMES;
            match self.coded.front() {
                None => return,
                Some(Coded::Loss) => {
                    self.coded.pop_front();
                    decoder.wait_for_keyframe();
                    continue;
                }
                Some(Coded::Frame { at, .. }) => {
                    let passed =
                        *at <= next_pts && self.ahead.as_ref().is_some_and(|(a, _)| *a <= next_pts);
                    if self.ahead.is_some() && !passed && !full {
                        return;
                    }
                }
            }
            let Some(Coded::Frame { at, data }) = self.coded.pop_front() else {
                unreachable!("the front is a frame");
            };
            match decoder.decode(&data) {
                Ok(picture) => {
                    self.counters.video_frames += 1;
                    if let Some(picture) = picture {
                        if let Some((before, older)) = self.ahead.replace((at, picture)) {
                            if before > next_pts {
                                self.counters.pictures_late += 1;
                            }
                            decoder.recycle(older);
                        }
                    }
                }
                // Before the first keyframe or after a loss: the ingest has asked for
                // one already.
                Err(VideoDecodeError::AwaitingKeyframe) => {}
                Err(e) => {
                    self.counters.video_decode_errors += 1;
                    debug!(id = %self.info.id, "video frame does not decode: {e}");
                    out.push(EngineOutput::KeyframeRequest(self.info.id.clone()));
                }
            }
        }
    }
}

pub struct Engine {
    config: EngineConfig,
    start: Instant,
    participants: Vec<Participant>,
    by_ssrc: HashMap<u32, usize>,
    local: Option<LocalInput>,
    next_source: u32,
    audio: AudioMixer<u32>,
    audio_encoder: OpusEncoder,
    compositor: Compositor<u32, Decoded>,
    frames: FrameClock,
    video_encoder: Box<dyn VideoEncoder>,
    /// Next audio frame to mix, in frames of 20 ms.
    next_audio: i64,
    /// Output not yet handed out (the first video frame, encoded at construction).
    ready: Vec<EngineOutput>,
    video_params: VideoParams,
    keyframe_wanted: bool,
    /// The keyframe interval in 90 kHz ticks, and the pts from which the next
    /// keyframe is due. Counted in time, not frames: frames skipped when the machine
    /// falls behind would otherwise stretch a group of pictures past the recorder's
    /// fragment duration, and fragments would begin without a keyframe.
    gop_ticks: i64,
    next_keyframe_pts: i64,
}

impl Engine {
    /// Opens the encoders and encodes the first video frame, whose parameter sets the
    /// `Start` frame needs.
    pub fn new(config: EngineConfig, start: Instant) -> Result<Self, EngineError> {
        let gop_frames = (config.keyframe_interval.as_secs_f64() * f64::from(config.fps))
            .round()
            .max(1.0) as u32;
        let mut video_encoder = encoder::open(&EncoderConfig {
            width: u32::from(config.width),
            height: u32::from(config.height),
            fps: u32::from(config.fps),
            bitrate_bps: config.video_bitrate_bps,
            gop_frames,
            kind: config.encoder.clone(),
        })?;
        info!(encoder = video_encoder.name(), "video encoder ready");
        let mut compositor = Compositor::new(CompositorConfig {
            width: usize::from(config.width),
            height: usize::from(config.height),
            hold: config.hold,
            ..CompositorConfig::default()
        })?;
        let first_due = start + config.delay;
        let mut frames = FrameClock::new(first_due, u32::from(config.fps))?;
        let tick = frames.poll(first_due).expect("frame 0 is due at the start");
        let picture = compositor.render(start);
        let mut first = video_encoder.encode(picture, tick.pts as i64, true)?;
        if first.is_empty() {
            // A hardware pipeline holds frames back: this one is needed now.
            first = video_encoder.flush()?;
        }
        let video_params = video_params(
            &config,
            &first.first().ok_or(EngineError::NoFirstFrame)?.data,
        )?;
        let audio_encoder = OpusEncoder::new(CHANNELS, config.audio_bitrate_bps)?;
        let gop_ticks = i64::from(gop_frames) * PTS_HZ as i64 / i64::from(config.fps);
        Ok(Self {
            ready: first.into_iter().map(video_media).collect(),
            start,
            participants: Vec::new(),
            by_ssrc: HashMap::new(),
            local: None,
            next_source: 0,
            audio: AudioMixer::new(0, MixerConfig::default()),
            audio_encoder,
            compositor,
            frames,
            video_encoder,
            next_audio: 0,
            video_params,
            keyframe_wanted: false,
            gop_ticks,
            next_keyframe_pts: tick.pts as i64 + gop_ticks,
            config,
        })
    }

    pub(crate) fn start_params(&self, recording: &str, room: &str) -> StartParams {
        StartParams {
            recording: text(recording),
            room: text(room),
            video: self.video_params.clone(),
            audio: AudioParams {
                codec: AudioCodec::Opus,
                sample_rate: 48_000,
                channels: 2,
                pre_skip: self.audio_encoder.pre_skip(),
            },
        }
    }

    #[cfg(test)]
    fn participants(&self) -> impl Iterator<Item = (&ParticipantInfo, ParticipantCounters)> {
        self.participants.iter().map(|p| (&p.info, p.counters))
    }

    /// Makes the next output video frame a keyframe.
    #[cfg(test)]
    fn force_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    pub(crate) fn join(&mut self, info: ParticipantInfo) {
        if self.participants.iter().any(|p| p.info.id == info.id) {
            warn!(id = %info.id, "participant joined twice; ignored");
            return;
        }
        let opus = match OpusDecoder::new() {
            Ok(o) => o,
            Err(e) => return warn!(id = %info.id, "no Opus decoder: {e}"),
        };
        let video = match info.video_codec.format().map(VideoDecoder::new) {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => return warn!(id = %info.id, "no video decoder: {e}"),
            None => None,
        };
        let source = self.next_source;
        self.next_source += 1;
        self.audio.add_source(source);
        info!(id = %info.id, name = %info.name, "participant joins the mix");
        self.participants.push(Participant {
            info,
            source,
            timeline: ParticipantTimeline::default(),
            opus,
            video,
            coded: VecDeque::new(),
            ahead: None,
            counters: ParticipantCounters::default(),
        });
        self.relayout();
    }

    pub(crate) fn leave(&mut self, id: &str) {
        let Some(at) = self.participants.iter().position(|p| p.info.id == id) else {
            return;
        };
        let p = self.participants.remove(at);
        self.audio.remove_source(p.source);
        info!(id = %p.info.id, counters = ?p.counters, "participant leaves the mix");
        self.relayout();
    }

    fn relayout(&mut self) {
        self.by_ssrc.clear();
        for (i, p) in self.participants.iter().enumerate() {
            self.by_ssrc.insert(p.info.audio.ssrc, i);
            self.by_ssrc.insert(p.info.video.ssrc, i);
        }
        let sources: Vec<u32> = self.participants.iter().map(|p| p.source).collect();
        if let Err(e) = self.compositor.set_sources(&sources) {
            // Only more than 16 participants: the SFU sim and the roster allow 16.
            warn!("participants not laid out: {e}");
        }
    }

    /// Decodes one frame of a participant and files its samples or picture.
    pub(crate) fn on_frame(&mut self, frame: Frame, now: Instant) -> Vec<EngineOutput> {
        let Some(&i) = self.by_ssrc.get(&frame.ssrc) else {
            debug!(ssrc = frame.ssrc, "frame of no participant");
            return Vec::new();
        };
        let arrival = now.saturating_duration_since(self.start);
        let next_pts = self.frames.next_pts_from(now) as i64;
        let p = &mut self.participants[i];
        let at = p
            .timeline
            .place(frame.kind, frame.ts, arrival, frame.wallclock_us);
        match frame.kind {
            MediaKind::Audio => {
                p.counters.audio_packets += 1;
                match p.opus.decode(&frame.data) {
                    Ok(pcm) => {
                        if let Err(e) = self.audio.push(p.source, at, pcm) {
                            debug!(id = %p.info.id, "audio not mixed: {e}");
                        }
                    }
                    Err(e) => {
                        p.counters.audio_decode_errors += 1;
                        debug!(id = %p.info.id, "Opus packet does not decode: {e}");
                    }
                }
                Vec::new()
            }
            MediaKind::Video => {
                let mut out = Vec::new();
                if p.video.is_some() {
                    p.coded.push_back(Coded::Frame {
                        at,
                        data: frame.data,
                    });
                    p.decode_ahead(next_pts, &mut out);
                }
                out
            }
        }
    }

    /// Mixes audio captured on the box (the room microphone) from here on, placed by
    /// when it was captured; it joins the mix with its first frame.
    pub fn on_local_audio(&mut self, frame: &LocalFrame) {
        let local = self.local.get_or_insert_with(|| {
            let source = self.next_source;
            self.next_source += 1;
            self.audio.add_source(source);
            info!("local audio (room microphone) joins the mix");
            LocalInput {
                source,
                timeline: LocalTimeline::default(),
            }
        });
        if frame.first {
            // A new capture owes nothing to where the last one ended.
            local.timeline = LocalTimeline::default();
        }
        let end = frame.captured.saturating_duration_since(self.start);
        let at = local.timeline.place(frame.pcm.len() / CHANNELS, end);
        if let Err(e) = self.audio.push(local.source, at, &frame.pcm) {
            debug!("local audio not mixed: {e}");
        }
    }

    /// What became of the local audio's samples, once it has joined the mix.
    #[cfg(test)]
    fn local_audio_stats(&self) -> Option<super::audio_mixer::SourceStats> {
        self.audio.stats(self.local.as_ref()?.source)
    }

    /// Packets of a stream were lost: the audio gap is mixed as silence; video waits
    /// for the keyframe the ingest has asked for.
    pub(crate) fn on_lost(&mut self, ssrc: u32) {
        let Some(&i) = self.by_ssrc.get(&ssrc) else {
            return;
        };
        let p = &mut self.participants[i];
        if ssrc == p.info.video.ssrc {
            // After the frames already here, which came before the loss; taken in
            // turn as they are decoded.
            if p.video.is_some() && !matches!(p.coded.back(), Some(Coded::Loss)) {
                p.coded.push_back(Coded::Loss);
            }
        } else {
            p.counters.audio_losses += 1;
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.frames.next_due().min(self.audio_due(self.next_audio))
    }

    fn audio_due(&self, frame: i64) -> Instant {
        self.start + self.config.delay + AUDIO_FRAME_TIME * (frame + 1) as u32
    }

    /// Mixes and encodes every output frame that is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<EngineOutput>, EngineError> {
        let mut out = std::mem::take(&mut self.ready);
        while self.audio_due(self.next_audio) <= now {
            let at = self.next_audio * AUDIO_FRAME;
            let mixed = self.audio.mix(at)?;
            let data = self.audio_encoder.encode(&mixed.pcm)?;
            out.push(EngineOutput::Media(Media {
                track: Track::Audio,
                pts: at,
                dts: at,
                keyframe: true,
                data,
            }));
            self.next_audio += 1;
        }
        if let Some(due) = self.frames.poll(now) {
            if due.skipped > 0 {
                debug!(skipped = due.skipped, "video output fell behind");
            }
            let pts = due.pts as i64;
            for p in &mut self.participants {
                // The newest picture whose time has come; older ones are passed over.
                p.decode_ahead(pts, &mut out);
                if p.ahead.as_ref().is_some_and(|(at, _)| *at <= pts) {
                    if let Some((_, picture)) = p.ahead.take() {
                        if let Some(done) = self.compositor.push(p.source, picture, now) {
                            p.recycle(done);
                        }
                    }
                }
            }
            let picture = self.compositor.render(now);
            let force = std::mem::take(&mut self.keyframe_wanted) || pts >= self.next_keyframe_pts;
            if force {
                // Counted from the frame asked for: a hardware pipeline hands it out later.
                self.next_keyframe_pts = pts + self.gop_ticks;
            }
            let encoded = self.video_encoder.encode(picture, pts, force)?;
            for e in &encoded {
                if e.keyframe {
                    self.next_keyframe_pts = self.next_keyframe_pts.max(e.pts + self.gop_ticks);
                }
            }
            out.extend(encoded.into_iter().map(video_media));
            // The pictures of the next render, decoded now that this one is out.
            let next_pts = self.frames.next_pts_from(now) as i64;
            for p in &mut self.participants {
                p.decode_ahead(next_pts, &mut out);
            }
        }
        Ok(out)
    }
}

fn video_media(encoded: EncodedVideo) -> EngineOutput {
    EngineOutput::Media(Media {
        track: Track::Video,
        pts: encoded.pts,
        dts: encoded.pts,
        keyframe: encoded.keyframe,
        data: encoded.data,
    })
}

fn video_params(config: &EngineConfig, first: &[u8]) -> Result<VideoParams, EngineError> {
    let (sps, pps) = h264::parameter_sets(first);
    let sps = sps.ok_or(EngineError::MissingParameterSet("SPS"))?;
    let pps = pps.ok_or(EngineError::MissingParameterSet("PPS"))?;
    let set = |s: &[u8]| {
        heapless::Vec::from_slice(s).map_err(|_| EngineError::ParameterSetTooLong(s.len()))
    };
    Ok(VideoParams {
        codec: VideoCodec::H264,
        sps: set(sps)?,
        pps: set(pps)?,
        width: config.width,
        height: config.height,
        fps: config.fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(keyframe_interval: Duration) -> EngineConfig {
        EngineConfig {
            width: 160,
            height: 96,
            keyframe_interval,
            encoder: EncoderKind::Software,
            ..EngineConfig::default()
        }
    }

    fn video_keyframes(out: &[EngineOutput]) -> impl Iterator<Item = i64> + '_ {
        out.iter().filter_map(|o| match o {
            EngineOutput::Media(m) if m.track == Track::Video && m.keyframe => Some(m.pts),
            _ => None,
        })
    }

    #[test]
    fn keyframes_keep_their_interval_in_time_when_frames_are_skipped() {
        let t0 = Instant::now();
        let mut engine = Engine::new(small(Duration::from_secs(1)), t0).unwrap();
        let mut keyframes = Vec::new();
        // A machine far behind: each poll finds about six frames due and renders one.
        for k in 1..=25 {
            let out = engine.poll(t0 + k * Duration::from_millis(200)).unwrap();
            keyframes.extend(video_keyframes(&out));
        }
        assert_eq!(keyframes[0], 0);
        assert!(keyframes.len() >= 5, "keyframes at {keyframes:?}");
        for gap in keyframes.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap <= PTS_HZ as i64 + 6 * 3000,
                "keyframes at {keyframes:?}"
            );
        }
    }

    #[test]
    fn a_requested_keyframe_comes_next_and_restarts_the_interval() {
        let t0 = Instant::now();
        let mut engine = Engine::new(small(Duration::from_secs(2)), t0).unwrap();
        let frame = Duration::from_nanos(1_000_000_000 / 30);
        let delay = EngineConfig::default().delay;
        let mut keyframes = Vec::new();
        for i in 1..=150u32 {
            if i == 40 {
                engine.force_keyframe();
            }
            let out = engine
                .poll(t0 + delay + frame * i + Duration::from_millis(1))
                .unwrap();
            keyframes.extend(video_keyframes(&out));
        }
        // Frame 40 on request, then 60 frames (2 s) later, not at frame 60.
        assert_eq!(keyframes, [0, 40 * 3000, 100 * 3000]);
    }

    #[test]
    fn h264_and_vp8_participants_fill_their_tiles_and_an_undecodable_one_is_a_placeholder() {
        use crate::link::frame::text;
        use crate::media::codec::Codec;
        use crate::media::codec::VideoFormat;
        use crate::mixer::layout;
        use crate::sfu::control::StreamInfo;
        use crate::synth::video::rgb_to_yuv;
        use crate::synth::{PatternCodec, PatternSource, PatternSpec, PALETTE};

        let t0 = Instant::now();
        let config = EngineConfig {
            width: 320,
            height: 180,
            fps: 10,
            encoder: EncoderKind::Software,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, t0).unwrap();
        let stream = |ssrc| StreamInfo {
            ssrc,
            payload_type: 96,
            port: 5004,
        };
        for (n, codec) in [
            (1, Codec::H264),
            (2, Codec::Vp8),
            (3, Codec::from_name("vp9")),
        ] {
            engine.join(ParticipantInfo {
                id: text(&format!("p{n}")),
                name: text(&format!("P{n}")),
                audio: stream(n * 10),
                video: stream(n * 10 + 1),
                video_codec: codec,
            });
        }
        let source = |rgb, codec| {
            PatternSource::new(PatternSpec {
                width: 160,
                height: 90,
                fps: 10,
                rgb,
                codec,
                ..PatternSpec::default()
            })
            .unwrap()
        };
        let mut h264 = source(PALETTE[1], PatternCodec::H264);
        let mut vp8 = source(PALETTE[2], PatternCodec::Vp8);
        let frame = |ssrc, k: i64, data, keyframe| Frame {
            ssrc,
            kind: MediaKind::Video,
            ts: k * 9000,
            data,
            keyframe,
            wallclock_us: None,
        };
        let mut last = None;
        let mut decoder = VideoDecoder::new(VideoFormat::H264).unwrap();
        for k in 0..20i64 {
            let now = t0 + Duration::from_millis(k as u64 * 100);
            let h = h264.next_frame().unwrap();
            let mut out = engine.on_frame(frame(11, k, h.data, h.keyframe), now);
            let v = vp8.next_frame().unwrap();
            out.extend(engine.on_frame(frame(21, k, v.data, v.keyframe), now));
            // Frames of the undecodable codec (were any to arrive) are passed over.
            out.extend(engine.on_frame(frame(31, k, vec![0x10, 0, 0], true), now));
            assert!(out.is_empty(), "no keyframe requests: {out:?}");
            for o in engine.poll(now).unwrap() {
                if let EngineOutput::Media(m) = o {
                    if m.track == Track::Video {
                        if let Ok(Some(p)) = decoder.decode(&m.data) {
                            last = Some(p);
                        }
                    }
                }
            }
        }
        let picture = last.expect("pictures of the mix");
        let tiles = layout::tiles(3, 320, 180).unwrap();
        let placeholder = CompositorConfig::default().placeholder;
        for (tile, want) in
            tiles
                .iter()
                .zip([rgb_to_yuv(PALETTE[1]), rgb_to_yuv(PALETTE[2]), placeholder])
        {
            let got = picture.pixel(tile.x + tile.width / 8, tile.y + tile.height / 8);
            let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 10);
            assert!(close, "tile at {tile:?} is {got:?}, not {want:?}");
        }
        let counters: Vec<ParticipantCounters> = engine.participants().map(|(_, c)| c).collect();
        assert!(counters[0].video_frames >= 15 && counters[1].video_frames >= 15);
        assert_eq!(
            counters[2].video_frames + counters[2].video_decode_errors,
            0
        );
    }

    /// An engine with one H.264 participant (video SSRC 11), and its first `n` video
    /// frames at 30 fps (a keyframe, then none).
    fn one_video_participant(n: usize) -> (Instant, Engine, Vec<Frame>) {
        use crate::link::frame::text;
        use crate::media::codec::Codec;
        use crate::sfu::control::StreamInfo;
        use crate::synth::{PatternSource, PatternSpec};

        let t0 = Instant::now();
        let mut engine = Engine::new(small(Duration::from_secs(2)), t0).unwrap();
        let stream = |ssrc| StreamInfo {
            ssrc,
            payload_type: 96,
            port: 5004,
        };
        engine.join(ParticipantInfo {
            id: text("p1"),
            name: text("P1"),
            audio: stream(10),
            video: stream(11),
            video_codec: Codec::H264,
        });
        let mut source = PatternSource::new(PatternSpec {
            width: 160,
            height: 96,
            ..PatternSpec::default()
        })
        .unwrap();
        let frames = (0..n)
            .map(|k| {
                let f = source.next_frame().unwrap();
                Frame {
                    ssrc: 11,
                    kind: MediaKind::Video,
                    ts: k as i64 * 3000,
                    data: f.data,
                    keyframe: f.keyframe,
                    wallclock_us: None,
                }
            })
            .collect();
        (t0, engine, frames)
    }

    #[test]
    fn video_waits_coded_and_a_backlog_holds_one_picture() {
        let (t0, mut engine, frames) = one_video_participant(40);
        let frame = |k: usize| frames[k].clone();
        let frame_time = Duration::from_nanos(1_000_000_000 / 30);
        // On time: each frame arrives as it is sent, and is rendered 80 ms later.
        for k in 0..10 {
            let now = t0 + frame_time * k as u32;
            assert!(engine.on_frame(frame(k), now).is_empty());
            engine.poll(now).unwrap();
            let p = &engine.participants[0];
            // The frames of the delay wait coded, and only the picture the next
            // render shows (frame k - 2, 80 ms on) is decoded: not every frame as
            // it arrives.
            assert!(p.coded.len() <= 3, "{} frames wait", p.coded.len());
            let next_shown = k.saturating_sub(2).max(1) as u64;
            assert!(
                p.counters.video_frames <= next_shown + 1,
                "{} decoded by frame {k}",
                p.counters.video_frames
            );
        }
        // The engine stalled for a second: 30 frames arrive in a burst, long after
        // their time, before the next render. Each is decoded as it comes, as the
        // next render passes over all but the last of them; only the two frames
        // still ahead of that render wait.
        let late = t0 + frame_time * 40;
        for k in 10..40 {
            assert!(engine.on_frame(frame(k), late).is_empty());
            let p = &engine.participants[0];
            assert!(p.coded.len() <= 2, "{} frames wait", p.coded.len());
        }
        engine.poll(late).unwrap();
        let p = &engine.participants[0];
        assert_eq!(p.counters.video_frames + p.coded.len() as u64, 40);
        assert_eq!(p.counters.pictures_late, 0);
    }

    #[test]
    fn frames_that_came_before_a_loss_still_decode() {
        let (t0, mut engine, frames) = one_video_participant(8);
        let frame_time = Duration::from_nanos(1_000_000_000 / 30);
        // Frames 0 to 4 arrive in one burst, then a loss is seen, then frame 5 (not a
        // keyframe). Most of the burst is still coded when the loss comes.
        for f in &frames[..5] {
            engine.on_frame(f.clone(), t0);
        }
        assert!(!engine.participants[0].coded.is_empty());
        engine.on_lost(11);
        engine.on_frame(frames[5].clone(), t0);
        for k in 0..12 {
            engine.poll(t0 + frame_time * k).unwrap();
        }
        let p = &engine.participants[0];
        assert!(p.coded.is_empty());
        assert_eq!(p.counters.video_frames, 5, "the frames before the loss");
        assert_eq!(p.counters.video_decode_errors, 0);
        assert!(p.video.as_ref().unwrap().awaiting_keyframe());
    }

    use crate::mixer::audio_encoder::FRAME_SAMPLES;
    use crate::mixer::tone::tone_power;

    const FRAME: Duration = Duration::from_millis(20);

    /// Frame `k` of a stereo tone at `freq`.
    fn tone_frame(k: usize, freq: f32) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .flat_map(|i| {
                let t = (k * FRAME_SAMPLES + i) as f32 / 48_000.0;
                let s = (8000.0 * (std::f32::consts::TAU * freq * t).sin()) as i16;
                [s, s]
            })
            .collect()
    }

    fn local_engine(start: Instant) -> Engine {
        let config = EngineConfig {
            width: 160,
            height: 90,
            fps: 5,
            encoder: EncoderKind::Software,
            ..EngineConfig::default()
        };
        Engine::new(config, start).unwrap()
    }

    /// Gives the engine frame `k` of a 1 kHz tone, captured at `captured`, and polls
    /// it then; returns the Opus packets of the mix that came out.
    fn local_frame(engine: &mut Engine, k: usize, captured: Instant, first: bool) -> Vec<Vec<u8>> {
        engine.on_local_audio(&LocalFrame {
            pcm: tone_frame(k, 1000.0),
            captured,
            first,
        });
        let mut packets = Vec::new();
        for out in engine.poll(captured).unwrap() {
            if let EngineOutput::Media(m) = out {
                if m.track == Track::Audio {
                    packets.push(m.data);
                }
            }
        }
        packets
    }

    #[test]
    fn local_audio_is_mixed_by_when_it_was_captured() {
        let start = Instant::now();
        let mut engine = local_engine(start);
        assert_eq!(engine.local_audio_stats(), None, "no local audio yet");
        let mut decoder = OpusDecoder::new().unwrap();
        let mut left = Vec::new();
        for k in 0..100 {
            let captured = start + FRAME * (k as u32 + 1);
            for packet in local_frame(&mut engine, k, captured, k == 0) {
                left.extend(decoder.decode(&packet).unwrap().iter().step_by(2));
            }
        }
        // Mixed 80 ms behind the clock: 96 frames out by the 100th captured.
        assert_eq!(left.len(), 96 * FRAME_SAMPLES);
        let p = tone_power(&left[48_000..], 48_000, 1000.0);
        assert!(p > 0.04, "tone power {p}");
        let stats = engine.local_audio_stats().unwrap();
        assert_eq!((stats.late, stats.overflowed), (0, 0), "{stats:?}");
        assert_eq!(stats.mixed, 96 * FRAME_SAMPLES as u64);
    }

    #[test]
    fn a_microphone_opened_again_is_mixed_from_its_first_frame() {
        let start = Instant::now();
        let mut engine = local_engine(start);
        let at = |k: usize| start + FRAME * (k as u32 + 1);
        for k in 0..50 {
            local_frame(&mut engine, k, at(k), k == 0);
        }
        // Unplugged for two seconds, the mix going on without it.
        for k in 50..150 {
            engine.poll(at(k)).unwrap();
        }
        for k in 150..200 {
            local_frame(&mut engine, k, at(k), k == 150);
        }
        let stats = engine.local_audio_stats().unwrap();
        // Placed after the frame before the gap, every one would be two seconds late.
        assert_eq!((stats.late, stats.overflowed), (0, 0), "{stats:?}");
        assert!(stats.mixed >= 90 * FRAME_SAMPLES as u64, "{stats:?}");
        assert!(stats.silent_frames >= 99, "the gap is silence: {stats:?}");
    }
}
