//! The participants the SFU has announced, kept consistent: joins and leaves in,
//! roster events out. Sans-IO.

use std::collections::BTreeMap;

use thiserror::Error;

use super::control::{ParticipantId, ParticipantInfo, SfuMessage};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("participant {0} joined twice")]
    AlreadyJoined(String),
    #[error("participant {0} left without having joined")]
    NotJoined(String),
    #[error("participant {id} announces SSRC {ssrc:#010x}, already used by {owner}")]
    SsrcInUse {
        id: String,
        ssrc: u32,
        owner: String,
    },
}

/// A change of the meeting's participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterEvent {
    Joined(ParticipantInfo),
    /// The participant as it was announced, so its streams can be torn down.
    Left(ParticipantInfo),
    /// The SFU sends the participant's streams anew (same SSRCs; a forward renewed
    /// after a reconnection), perhaps from another address.
    Renewed(ParticipantInfo),
}

#[derive(Debug, Default)]
pub struct Roster {
    participants: BTreeMap<ParticipantId, ParticipantInfo>,
}

impl Roster {
    /// Applies one SFU message; `Ok(None)` for messages that do not change the roster.
    /// A rejected message leaves the roster as it was.
    pub fn apply(&mut self, message: SfuMessage) -> Result<Option<RosterEvent>, RosterError> {
        match message {
            SfuMessage::Join { participant } => {
                if self.participants.contains_key(&participant.id) {
                    return Err(RosterError::AlreadyJoined(participant.id.to_string()));
                }
                for ssrc in [participant.audio.ssrc, participant.video.ssrc] {
                    if let Some(owner) = self.by_ssrc(ssrc) {
                        return Err(RosterError::SsrcInUse {
                            id: participant.id.to_string(),
                            ssrc,
                            owner: owner.id.to_string(),
                        });
                    }
                }
                self.participants
                    .insert(participant.id.clone(), participant.clone());
                Ok(Some(RosterEvent::Joined(participant)))
            }
            SfuMessage::Leave { id } => match self.participants.remove(&id) {
                Some(p) => Ok(Some(RosterEvent::Left(p))),
                None => Err(RosterError::NotJoined(id.to_string())),
            },
            SfuMessage::Welcome { .. } => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Option<&ParticipantInfo> {
        self.participants.values().find(|p| p.id == id)
    }

    /// The participant one of whose streams has `ssrc` (to turn an ingest keyframe
    /// request into one for the SFU).
    pub fn by_ssrc(&self, ssrc: u32) -> Option<&ParticipantInfo> {
        self.participants
            .values()
            .find(|p| p.audio.ssrc == ssrc || p.video.ssrc == ssrc)
    }

    pub fn participants(&self) -> impl Iterator<Item = &ParticipantInfo> {
        self.participants.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::text;
    use crate::sfu::control::StreamInfo;

    fn p(id: &str, ssrc: u32) -> ParticipantInfo {
        let stream = |ssrc, payload_type| StreamInfo {
            ssrc,
            payload_type,
            port: 5004,
        };
        ParticipantInfo {
            id: text(id),
            name: text(id),
            audio: stream(ssrc, 111),
            video: stream(ssrc + 1, 96),
            video_codec: Default::default(),
        }
    }

    fn join(p: ParticipantInfo) -> SfuMessage {
        SfuMessage::Join { participant: p }
    }

    #[test]
    fn joins_and_leaves_become_events() {
        let mut r = Roster::default();
        assert_eq!(
            r.apply(join(p("a", 10))),
            Ok(Some(RosterEvent::Joined(p("a", 10))))
        );
        r.apply(join(p("b", 20))).unwrap();
        assert_eq!(r.by_ssrc(21).map(|p| p.id.as_str()), Some("b"));
        assert_eq!(r.get("a"), Some(&p("a", 10)));
        assert_eq!(
            r.apply(SfuMessage::Leave { id: text("a") }),
            Ok(Some(RosterEvent::Left(p("a", 10))))
        );
        assert_eq!(r.participants().count(), 1);
        assert_eq!(
            r.apply(SfuMessage::Welcome {
                version: 1,
                sfu: text("x")
            }),
            Ok(None)
        );
    }

    #[test]
    fn inconsistent_announcements_are_refused() {
        let mut r = Roster::default();
        r.apply(join(p("a", 10))).unwrap();
        assert_eq!(
            r.apply(join(p("a", 30))),
            Err(RosterError::AlreadyJoined("a".into()))
        );
        assert_eq!(
            r.apply(join(p("b", 11))),
            Err(RosterError::SsrcInUse {
                id: "b".into(),
                ssrc: 11,
                owner: "a".into()
            })
        );
        assert_eq!(
            r.apply(SfuMessage::Leave { id: text("z") }),
            Err(RosterError::NotJoined("z".into()))
        );
        assert_eq!(r.participants().count(), 1);
    }
}
