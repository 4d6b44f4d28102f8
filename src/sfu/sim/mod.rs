//! A simulated SFU for tests and demos (`recbox sfu-sim`). It listens for the
//! mixer's control channel and, once a mixer has said hello, announces N
//! participants and sends each one's media as real RTP over UDP: H.264, VP8 or VP9
//! (chosen per participant, [`CodecMix`]) of a moving test pattern in the
//! participant's colour and Opus of a tone at the participant's pitch, at real-time
//! pace, with RTCP sender reports. Network loss, reordering and
//! jitter can be added (seeded, so runs repeat), participants can join and leave on
//! a [`Schedule`], keyframe requests (RTCP PLI or the control channel) are answered
//! with a keyframe, and every notice the mixer sends is turned into the
//! [`Announcement`](crate::sfu::Announcement) the meeting would see.
//!
//! [`session::SimSession`] is the sans-IO core; [`server::SfuSim`] the tokio shell.

pub(crate) mod codecs;
pub(crate) mod impairment;
pub(crate) mod packetizer;
pub(crate) mod participant;
pub(crate) mod schedule;
pub(crate) mod server;
pub(crate) mod session;

use std::net::IpAddr;

use thiserror::Error;

use crate::ingest::depacketize::h264::H264Error;
use crate::ingest::MediaKind;
use crate::sfu::channel::ChannelError;
use crate::sfu::notice::Announcement;
use crate::synth::audio::AudioError;
use crate::synth::video::PatternError;
use crate::synth::PatternSpec;

pub use codecs::{CodecMix, CodecMixError, ParticipantList};
pub use impairment::{ImpairmentConfig, ImpairmentError};
pub use schedule::{Schedule, ScheduleError, MAX_PARTICIPANTS};
pub use server::SfuSim;

/// RTP payload types the simulated SFU uses (the common dynamic ones).
pub(crate) const VIDEO_PAYLOAD_TYPE: u8 = 96;
pub(crate) const AUDIO_PAYLOAD_TYPE: u8 = 111;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("--participants must be 1..={MAX_PARTICIPANTS}, got {0}")]
    Participants(u8),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Impairment(#[from] ImpairmentError),
    #[error("RTP payload size {0} is outside 100..=1400 bytes")]
    MaxPayload(usize),
    #[error("the mixer gave no {0} port and none is configured (--{0}-port)")]
    NoPort(&'static str),
    #[error("the mixer speaks control protocol version {0}, this SFU version {v}", v = crate::sfu::control::CONTROL_VERSION)]
    Version(u16),
    #[error("the mixer sent {0} before its hello")]
    NoHello(String),
    #[error(transparent)]
    Video(#[from] PatternError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("H.264 packetizer: {0}")]
    Packetizer(#[from] H264Error),
    #[error("control channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Participants 1..=N are in the meeting when the mixer connects.
    pub participants: u8,
    pub schedule: Schedule,
    pub impairment: ImpairmentConfig,
    /// Seeds SSRC-independent choices: first sequence numbers and timestamps, and
    /// the impairment of every stream.
    pub seed: u64,
    /// Size, frame rate, keyframe interval and bitrate of every participant's video
    /// (the colour and the codec are the participant's).
    pub video: PatternSpec,
    /// Each participant's video codec.
    pub codecs: CodecMix,
    /// Largest RTP payload; H.264 access units are split to fit.
    pub max_payload: usize,
    /// Ports used when the mixer's hello leaves them out.
    pub audio_port: Option<u16>,
    pub video_port: Option<u16>,
    /// Where RTP goes; by default the address the mixer's control connection comes from.
    pub rtp_host: Option<IpAddr>,
    /// Report every media frame sent ([`SimEvent::Sent`]), for comparisons in tests.
    pub report_sent: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            participants: 4,
            schedule: Schedule::default(),
            impairment: ImpairmentConfig::default(),
            seed: 1,
            video: PatternSpec::default(),
            codecs: CodecMix::default(),
            max_payload: 1200,
            audio_port: None,
            video_port: None,
            rtp_host: None,
            report_sent: false,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        if !(1..=MAX_PARTICIPANTS).contains(&self.participants) {
            return Err(SimError::Participants(self.participants));
        }
        self.schedule.check(self.participants)?;
        self.impairment.validate()?;
        self.video.validate()?;
        if !(100..=1400).contains(&self.max_payload) {
            return Err(SimError::MaxPayload(self.max_payload));
        }
        Ok(())
    }
}

/// What caused a keyframe to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeCause {
    /// An RTCP PLI on the RTP port.
    Pli,
    /// A `keyframe_request` on the control channel.
    Control,
}

/// One media frame as the simulated SFU sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMedia {
    /// Participant number.
    participant: u8,
    pub ssrc: u32,
    pub kind: MediaKind,
    /// RTP timestamp.
    pub ts: u32,
    /// Video: the frame as encoded (H.264: the Annex B access unit); audio: the Opus
    /// packet.
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// RTP packets it went out in, and how many of them the simulated network dropped.
    pub packets: usize,
    pub dropped: usize,
}

/// What the simulated SFU reports to whoever runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A mixer said hello.
    MixerConnected { name: String },
    /// The mixer sent a notice: what the terminals and control platform see.
    Announcement(Announcement),
    KeyframeForced {
        participant: u8,
        cause: KeyframeCause,
    },
    /// Only with [`SimConfig::report_sent`].
    Sent(SentMedia),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_option() {
        let bad = |f: fn(&mut SimConfig)| {
            let mut c = SimConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.participants = 0),
            "--participants must be 1..=16, got 0"
        );
        assert!(bad(|c| c.participants = 17).contains("got 17"));
        assert!(bad(|c| c.schedule = "join 2@1s".parse().unwrap()).contains("already in"));
        assert!(bad(|c| c.impairment.reorder = -0.1).contains("reorder probability"));
        assert!(bad(|c| c.max_payload = 20).contains("RTP payload size 20"));
        assert!(bad(|c| c.video.width = 321).contains("321x240 must be even"));
        assert!(SimConfig::default().validate().is_ok());
    }
}
