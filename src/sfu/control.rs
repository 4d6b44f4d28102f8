//! The SFU control channel: JSON messages over a WebSocket, one message per text
//! frame, each an object with a `"type"`. The mixer connects to the SFU's control URL.
//! Sans-IO: this module only encodes, decodes and validates.
//!
//! mixer → SFU:
//! - `{"type":"hello","version":1,"name":"recbox mixer","audio_port":5004,"video_port":5006}`
//!   first message; the UDP ports the mixer receives audio and video RTP on (they may
//!   be the same port: streams are told apart by SSRC). A port left out (or `null`)
//!   asks the SFU to use the port configured on its side.
//! - `{"type":"forward","id":"p1"}`: start sending participant `p1`'s RTP (after the
//!   mixer is ready for its SSRCs).
//! - `{"type":"keyframe_request","id":"p1"}`: ask `p1`'s sender for a keyframe (the
//!   same as an RTCP PLI on the RTP port).
//! - `{"type":"notice","notice":"fault","recording":"rec-1","kind":"disk_full","target":"storage","detail":"...","at":1700000000000}`,
//!   `{"type":"notice","notice":"cleared","kind":"disk_full","target":"storage","at":...}`,
//!   `{"type":"notice","notice":"stats","file_bytes":...,"index_bytes":...,"duration_ms":...,"free_bytes":...,"at":...}`:
//!   the recorder's reports, relayed (times in Unix milliseconds).
//!
//! SFU → mixer:
//! - `{"type":"welcome","version":1,"sfu":"recbox sfu-sim"}`: answer to `hello`.
//! - `{"type":"join","participant":{"id":"p1","name":"Participant 1","audio":{"ssrc":...,"payload_type":111,"port":5004},"video":{"ssrc":...,"payload_type":96,"port":5006},"video_codec":"vp8"}}`
//!   (`video_codec` may be left out: H.264)
//! - `{"type":"leave","id":"p1"}`
//!
//! RTP goes to the announced ports with RTCP multiplexed on them (RFC 5761); RTCP
//! feedback (receiver reports, PLI) goes back to the address the RTP comes from.
//! Each stream is locked to the address its first packet came from
//! ([`crate::ingest::source`]); a stream sent from a new address is announced anew.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::notice::Notice;
use crate::link::frame::Text;
use crate::media::codec::Codec;

/// Version of the control protocol spoken by this build.
pub const CONTROL_VERSION: u16 = 1;

/// Largest control message accepted, in bytes (a join is about 250).
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;

/// A participant's identifier at the SFU.
pub(crate) type ParticipantId = Text<64>;

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control message of {len} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLong { len: usize },
    #[error("malformed control message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid control message: {0}")]
    Invalid(String),
}

/// Where and how one RTP stream of a participant arrives.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamInfo {
    pub ssrc: u32,
    pub payload_type: u8,
    /// The mixer's UDP port the stream is sent to.
    pub port: u16,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    /// Display name.
    pub name: Text<128>,
    pub audio: StreamInfo,
    pub video: StreamInfo,
    /// The video's codec; H.264 when the SFU names none.
    #[serde(default)]
    pub(crate) video_codec: Codec,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub version: u16,
    /// The mixer's name, for the SFU's logs.
    pub name: Text<64>,
    #[serde(default)]
    pub audio_port: Option<u16>,
    #[serde(default)]
    pub video_port: Option<u16>,
}

/// SFU → mixer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuMessage {
    Welcome { version: u16, sfu: Text<64> },
    Join { participant: ParticipantInfo },
    Leave { id: ParticipantId },
}

/// mixer → SFU.
// Rare messages: a notice's size (~300 bytes) inline costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MixerMessage {
    Hello(Hello),
    Forward { id: ParticipantId },
    KeyframeRequest { id: ParticipantId },
    Notice(Notice),
}

/// A message that can check its own values beyond what its types express.
pub trait Validate {
    fn validate(&self) -> Result<(), ControlError>;
}

impl Validate for SfuMessage {
    fn validate(&self) -> Result<(), ControlError> {
        match self {
            SfuMessage::Join { participant: p } => {
                check_id(&p.id)?;
                check_stream("audio", &p.audio)?;
                check_stream("video", &p.video)?;
                if p.audio.ssrc == p.video.ssrc {
                    return invalid(format!(
                        "participant {}: audio and video share SSRC {:#010x}",
                        p.id, p.audio.ssrc
                    ));
                }
                Ok(())
            }
            SfuMessage::Leave { id } => check_id(id),
            SfuMessage::Welcome { .. } => Ok(()),
        }
    }
}

impl Validate for MixerMessage {
    fn validate(&self) -> Result<(), ControlError> {
        match self {
            MixerMessage::Hello(h) => {
                if h.audio_port == Some(0) || h.video_port == Some(0) {
                    return invalid("port 0 in hello (leave the port out to use the SFU's)");
                }
                Ok(())
            }
            MixerMessage::Forward { id } | MixerMessage::KeyframeRequest { id } => check_id(id),
            MixerMessage::Notice(_) => Ok(()),
        }
    }
}

fn invalid<T>(why: impl Into<String>) -> Result<T, ControlError> {
    Err(ControlError::Invalid(why.into()))
}

fn check_id(id: &str) -> Result<(), ControlError> {
    if id.is_empty() {
        return invalid("empty participant id");
    }
    Ok(())
}

fn check_stream(kind: &str, s: &StreamInfo) -> Result<(), ControlError> {
    if s.payload_type > 0x7f {
        return invalid(format!(
            "{kind} payload type {} is not a 7-bit value",
            s.payload_type
        ));
    }
    if s.port == 0 {
        return invalid(format!("{kind} port 0"));
    }
    Ok(())
}

/// Parses and validates one control message; never panics on any input.
pub fn decode<T: DeserializeOwned + Validate>(text: &str) -> Result<T, ControlError> {
    if text.len() > MAX_MESSAGE {
        return Err(ControlError::TooLong { len: text.len() });
    }
    let message: T = serde_json::from_str(text)?;
    message.validate()?;
    Ok(message)
}

/// One control message as the text of a WebSocket frame.
pub fn encode<T: Serialize>(message: &T) -> Result<String, ControlError> {
    Ok(serde_json::to_string(message)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{text, Fault, FaultKind, FaultTarget, Stats};
    use proptest::prelude::*;

    fn join() -> SfuMessage {
        SfuMessage::Join {
            participant: ParticipantInfo {
                id: text("p1"),
                name: text("Participant 1"),
                audio: StreamInfo {
                    ssrc: 0x5100_0012,
                    payload_type: 111,
                    port: 5004,
                },
                video: StreamInfo {
                    ssrc: 0x5100_0011,
                    payload_type: 96,
                    port: 5006,
                },
                video_codec: Codec::Vp8,
            },
        }
    }

    #[test]
    fn wire_form_is_as_documented() {
        assert_eq!(
            encode(&join()).unwrap(),
            r#"{"type":"join","participant":{"id":"p1","name":"Participant 1","audio":{"ssrc":1358954514,"payload_type":111,"port":5004},"video":{"ssrc":1358954513,"payload_type":96,"port":5006},"video_codec":"vp8"}}"#
        );
        let fault = MixerMessage::Notice(Notice::Fault(Fault {
            recording: text("rec-1"),
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            detail: text("ENOSPC"),
            at: 9,
        }));
        assert_eq!(
            encode(&fault).unwrap(),
            r#"{"type":"notice","notice":"fault","recording":"rec-1","kind":"disk_full","target":"storage","detail":"ENOSPC","at":9}"#
        );
        assert_eq!(
            decode::<MixerMessage>(r#"{"type":"hello","version":1,"name":"m"}"#).unwrap(),
            MixerMessage::Hello(Hello {
                version: 1,
                name: text("m"),
                audio_port: None,
                video_port: None
            })
        );
    }

    #[test]
    fn round_trips_every_message() {
        let mixer = [
            MixerMessage::Hello(Hello {
                version: CONTROL_VERSION,
                name: text("mixer"),
                audio_port: Some(5004),
                video_port: None,
            }),
            MixerMessage::Forward { id: text("p2") },
            MixerMessage::KeyframeRequest { id: text("p2") },
            MixerMessage::Notice(Notice::Cleared {
                kind: FaultKind::LowSpace,
                target: FaultTarget::Storage,
                at: 1,
            }),
            MixerMessage::Notice(Notice::Stats {
                stats: Stats {
                    file_bytes: 1,
                    index_bytes: 2,
                    duration_ms: 3,
                    free_bytes: 4,
                    at: 5,
                },
                faults: vec![FaultKind::DiskFull],
            }),
        ];
        for m in mixer {
            assert_eq!(decode::<MixerMessage>(&encode(&m).unwrap()).unwrap(), m);
        }
        let sfu = [
            SfuMessage::Welcome {
                version: 1,
                sfu: text("sim"),
            },
            join(),
            SfuMessage::Leave { id: text("p1") },
        ];
        for m in sfu {
            assert_eq!(decode::<SfuMessage>(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn rejects_bad_messages_with_reasons() {
        let err = |s: &str| decode::<SfuMessage>(s).unwrap_err().to_string();
        assert!(err(r#"{"type":"dance"}"#).contains("unknown variant"));
        assert!(err(r#"{"type":"leave","id":""}"#).contains("empty participant id"));
        let mut bad = encode(&join()).unwrap();
        bad = bad.replace("\"payload_type\":96", "\"payload_type\":200");
        assert!(err(&bad).contains("video payload type 200"));
        let same = encode(&join()).unwrap().replace("1358954513", "1358954514");
        assert!(err(&same).contains("share SSRC"));
        let long_id = format!(r#"{{"type":"leave","id":"{}"}}"#, "x".repeat(65));
        assert!(err(&long_id).contains("malformed"));
        assert!(matches!(
            decode::<SfuMessage>(&" ".repeat(MAX_MESSAGE + 1)),
            Err(ControlError::TooLong { .. })
        ));
        let port0 = r#"{"type":"hello","version":1,"name":"m","video_port":0}"#;
        assert!(decode::<MixerMessage>(port0).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = decode::<SfuMessage>(&s);
            let _ = decode::<MixerMessage>(&s);
        }

        #[test]
        fn ports_and_ssrcs_round_trip(a in any::<u32>(), v in any::<u32>(), port in 1u16..) {
            prop_assume!(a != v);
            let mut m = join();
            if let SfuMessage::Join { participant } = &mut m {
                participant.audio.ssrc = a;
                participant.video.ssrc = v;
                participant.video.port = port;
            }
            prop_assert_eq!(decode::<SfuMessage>(&encode(&m).unwrap()).unwrap(), m);
        }
    }
}
