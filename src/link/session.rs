//! Session state machines of both link ends. Sans-IO: frames in, events and reply
//! frames out. They run inside the authenticated transport: the peer has proven the
//! link key before the first frame.
//!
//! Every error ends the session: the shell sends [`reject_frame`] for it (unless the
//! peer rejected first) and closes the connection. Later frames get
//! [`SessionError::Closed`].

use super::frame::{
    text, Fault, FaultKind, FaultTarget, Frame, Media, RecordingId, StartParams, Stats, Summary,
    Text, UnixMillis,
};
use crate::path_component;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("expected {expected}, got {got}")]
    UnexpectedFrame {
        expected: &'static str,
        got: &'static str,
    },
    #[error("media before start")]
    MediaBeforeStart,
    #[error("start for recording {got:?}, but the session was opened for {want:?}")]
    RecordingMismatch { got: String, want: String },
    /// Recording ids and rooms name directories on the recorder's disk.
    #[error("{field} {value:?} cannot be used as a directory name: {reason}")]
    UnsafeName {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("rejected by the peer: {reason}")]
    PeerRejected { reason: String },
    #[error("the session has already ended")]
    Closed,
}

/// The `Reject` frame that tells the peer why the session ends.
pub(crate) fn reject_frame(err: &SessionError) -> Frame {
    Frame::Reject {
        reason: text(&err.to_string()),
    }
}

/// Name of a frame's variant, for errors and logs (no payload).
fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Accept => "Accept",
        Frame::Reject { .. } => "Reject",
        Frame::Start(_) => "Start",
        Frame::Media(_) => "Media",
        Frame::Stop => "Stop",
        Frame::Ping { .. } => "Ping",
        Frame::Pong { .. } => "Pong",
        Frame::Started { .. } => "Started",
        Frame::Stopped { .. } => "Stopped",
        Frame::Fault(_) => "Fault",
        Frame::Cleared { .. } => "Cleared",
        Frame::Stats(_) => "Stats",
    }
}

fn unexpected(expected: &'static str, got: &Frame) -> SessionError {
    SessionError::UnexpectedFrame {
        expected,
        got: frame_name(got),
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), SessionError> {
    path_component::check(field, value).map_err(|e| SessionError::UnsafeName {
        field,
        value: e.value,
        reason: e.reason,
    })
}

#[derive(Debug)]
pub(crate) enum RecorderEvent {
    /// The handshake succeeded; send `reply` (an `Accept`).
    Accepted {
        recording: RecordingId,
        reply: Frame,
    },
    Start(StartParams),
    Media(Media),
    Stop,
    /// Send `reply` (the matching `Pong`).
    Ping {
        reply: Frame,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecorderState {
    AwaitHello,
    Idle,
    Recording,
    Closed,
}

/// The recorder's end: takes the `Hello`, then checks the order Start, Media.., Stop.
///
/// A session is bound to the recording id of its `Hello`: every `Start` must carry
/// it, and after `Stop` a new `Start` records that id again.
#[derive(Debug)]
pub(crate) struct RecorderSession {
    state: RecorderState,
    recording: RecordingId,
}

impl Default for RecorderSession {
    fn default() -> Self {
        Self::new()
    }
}

impl RecorderSession {
    pub(crate) fn new() -> Self {
        Self {
            state: RecorderState::AwaitHello,
            recording: RecordingId::new(),
        }
    }

    pub(crate) fn on_frame(&mut self, frame: Frame) -> Result<RecorderEvent, SessionError> {
        let result = self.step(frame);
        if result.is_err() {
            self.state = RecorderState::Closed;
        }
        result
    }

    fn step(&mut self, frame: Frame) -> Result<RecorderEvent, SessionError> {
        use RecorderState::*;
        match (self.state, frame) {
            (Closed, _) => Err(SessionError::Closed),
            (_, Frame::Reject { reason }) => Err(SessionError::PeerRejected {
                reason: reason.to_string(),
            }),
            (AwaitHello, Frame::Hello { recording }) => {
                check_name("recording id", &recording)?;
                self.state = Idle;
                self.recording = recording.clone();
                Ok(RecorderEvent::Accepted {
                    recording,
                    reply: Frame::Accept,
                })
            }
            (AwaitHello, other) => Err(unexpected("Hello", &other)),
            (Idle | Recording, Frame::Ping { seq }) => Ok(RecorderEvent::Ping {
                reply: Frame::Pong { seq },
            }),
            (Idle, Frame::Start(params)) => {
                if params.recording != self.recording {
                    return Err(SessionError::RecordingMismatch {
                        got: params.recording.to_string(),
                        want: self.recording.to_string(),
                    });
                }
                check_name("room", &params.room)?;
                self.state = Recording;
                Ok(RecorderEvent::Start(params))
            }
            (Idle, Frame::Media(_)) => Err(SessionError::MediaBeforeStart),
            (Idle, other) => Err(unexpected("Start or Ping", &other)),
            (Recording, Frame::Media(media)) => Ok(RecorderEvent::Media(media)),
            (Recording, Frame::Stop) => {
                self.state = Idle;
                Ok(RecorderEvent::Stop)
            }
            (Recording, other) => Err(unexpected("Media, Stop or Ping", &other)),
        }
    }
}

// Same trade-off as `Frame`: the bounded text of `Started`/`Fault` is inline, and an
// event is moved once per received frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum MixerEvent {
    Accepted,
    Rejected {
        reason: String,
    },
    Started {
        recording: RecordingId,
        path: Text<256>,
    },
    Stopped(Summary),
    Fault(Fault),
    Cleared {
        kind: FaultKind,
        target: FaultTarget,
        at: UnixMillis,
    },
    Stats(Stats),
    Pong {
        seq: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MixerState {
    AwaitAccept,
    Ready,
    Closed,
}

/// The mixer's end: waits for `Accept`, then turns recorder reports into events.
#[derive(Debug)]
pub(crate) struct MixerSession {
    state: MixerState,
}

impl MixerSession {
    /// The session and the `Hello` to send first.
    pub(crate) fn new(recording: RecordingId) -> (Self, Frame) {
        let session = Self {
            state: MixerState::AwaitAccept,
        };
        (session, Frame::Hello { recording })
    }

    /// True once the recorder accepted the handshake (and has not rejected since).
    pub(crate) fn is_ready(&self) -> bool {
        self.state == MixerState::Ready
    }

    pub(crate) fn on_frame(&mut self, frame: Frame) -> Result<MixerEvent, SessionError> {
        let result = self.step(frame);
        if result.is_err() {
            self.state = MixerState::Closed;
        }
        result
    }

    fn step(&mut self, frame: Frame) -> Result<MixerEvent, SessionError> {
        use MixerState::*;
        match (self.state, frame) {
            (Closed, _) => Err(SessionError::Closed),
            (_, Frame::Reject { reason }) => {
                self.state = Closed;
                Ok(MixerEvent::Rejected {
                    reason: reason.to_string(),
                })
            }
            (AwaitAccept, Frame::Accept) => {
                self.state = Ready;
                Ok(MixerEvent::Accepted)
            }
            (AwaitAccept, other) => Err(unexpected("Accept or Reject", &other)),
            (Ready, Frame::Started { recording, path }) => {
                Ok(MixerEvent::Started { recording, path })
            }
            (Ready, Frame::Stopped { summary }) => Ok(MixerEvent::Stopped(summary)),
            (Ready, Frame::Fault(fault)) => Ok(MixerEvent::Fault(fault)),
            (Ready, Frame::Cleared { kind, target, at }) => {
                Ok(MixerEvent::Cleared { kind, target, at })
            }
            (Ready, Frame::Stats(stats)) => Ok(MixerEvent::Stats(stats)),
            (Ready, Frame::Pong { seq }) => Ok(MixerEvent::Pong { seq }),
            (Ready, other) => Err(unexpected("a recorder report", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::codec::{encode, FrameDecoder, DEFAULT_MAX_FRAME};
    use crate::link::frame::{AudioCodec, AudioParams, Track, VideoCodec, VideoParams};

    fn rec_id() -> RecordingId {
        text("rec-1")
    }

    fn start(recording: &str, room: &str) -> Frame {
        Frame::Start(StartParams {
            recording: text(recording),
            room: text(room),
            video: VideoParams {
                codec: VideoCodec::H264,
                sps: heapless::Vec::from_slice(&[0x67, 0x42]).unwrap(),
                pps: heapless::Vec::from_slice(&[0x68]).unwrap(),
                width: 1280,
                height: 720,
                fps: 30,
            },
            audio: AudioParams {
                codec: AudioCodec::Opus,
                sample_rate: 48_000,
                channels: 2,
                pre_skip: 312,
            },
        })
    }

    fn media(pts: i64) -> Frame {
        Frame::Media(Media {
            track: Track::Video,
            pts,
            dts: pts,
            keyframe: pts == 0,
            data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
        })
    }

    fn hello(recording: &str) -> Frame {
        Frame::Hello {
            recording: text(recording),
        }
    }

    /// A recorder past the handshake.
    fn accepted_recorder() -> RecorderSession {
        let mut rec = RecorderSession::new();
        rec.on_frame(hello("rec-1")).unwrap();
        rec
    }

    /// Sends a frame through the real codec, as the link would.
    fn wire(frame: Frame) -> Frame {
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes).unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&bytes);
        decoder.next_frame().unwrap().unwrap()
    }

    #[test]
    fn happy_path_between_both_machines() {
        let mut rec = RecorderSession::new();
        let (mut mixer, hello) = MixerSession::new(rec_id());
        assert!(!mixer.is_ready());
        let RecorderEvent::Accepted { recording, reply } = rec.on_frame(wire(hello)).unwrap()
        else {
            panic!("recorder must accept");
        };
        assert_eq!(recording, rec_id());
        assert!(matches!(
            mixer.on_frame(wire(reply)).unwrap(),
            MixerEvent::Accepted
        ));
        assert!(mixer.is_ready());

        // Two recordings on the same session.
        for round in 0..2 {
            let RecorderEvent::Start(params) = rec.on_frame(wire(start("rec-1", "room"))).unwrap()
            else {
                panic!("expected Start");
            };
            assert_eq!(params.room.as_str(), "room");
            let started = Frame::Started {
                recording: params.recording,
                path: text("/rec/room/x-rec-1"),
            };
            assert!(matches!(
                mixer.on_frame(wire(started)).unwrap(),
                MixerEvent::Started { recording, .. } if recording == rec_id()
            ));
            for pts in 0..3 {
                assert!(matches!(
                    rec.on_frame(wire(media(pts))).unwrap(),
                    RecorderEvent::Media(m) if m.pts == pts
                ));
            }
            let RecorderEvent::Ping { reply } =
                rec.on_frame(wire(Frame::Ping { seq: round })).unwrap()
            else {
                panic!("expected Ping");
            };
            assert!(matches!(
                mixer.on_frame(wire(reply)).unwrap(),
                MixerEvent::Pong { seq } if seq == round
            ));
            let fault = Fault {
                recording: rec_id(),
                kind: FaultKind::LowSpace,
                target: FaultTarget::Storage,
                detail: text("5% free"),
                at: 1,
            };
            assert!(matches!(
                mixer.on_frame(wire(Frame::Fault(fault.clone()))).unwrap(),
                MixerEvent::Fault(f) if f == fault
            ));
            let cleared = Frame::Cleared {
                kind: FaultKind::LowSpace,
                target: FaultTarget::Storage,
                at: 2,
            };
            assert!(matches!(
                mixer.on_frame(wire(cleared)).unwrap(),
                MixerEvent::Cleared {
                    kind: FaultKind::LowSpace,
                    target: FaultTarget::Storage,
                    at: 2
                }
            ));
            let stats = Stats {
                file_bytes: 10,
                index_bytes: 1,
                duration_ms: 100,
                free_bytes: 1000,
                at: 3,
            };
            assert!(matches!(
                mixer.on_frame(wire(Frame::Stats(stats))).unwrap(),
                MixerEvent::Stats(s) if s == stats
            ));
            assert!(matches!(
                rec.on_frame(wire(Frame::Stop)).unwrap(),
                RecorderEvent::Stop
            ));
            let summary = Summary {
                recording: rec_id(),
                fragments: 1,
                file_bytes: 10,
                index_bytes: 1,
                media_ms: 66,
            };
            assert!(matches!(
                mixer.on_frame(wire(Frame::Stopped { summary: summary.clone() })).unwrap(),
                MixerEvent::Stopped(s) if s == summary
            ));
        }
        assert!(mixer.is_ready());
    }

    #[test]
    fn first_frame_must_be_hello() {
        for frame in [
            Frame::Ping { seq: 1 },
            start("rec-1", "room"),
            media(0),
            Frame::Stop,
        ] {
            let mut rec = RecorderSession::new();
            let got = frame_name(&frame);
            assert_eq!(
                rec.on_frame(frame).unwrap_err(),
                SessionError::UnexpectedFrame {
                    expected: "Hello",
                    got
                }
            );
        }
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for id in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            let mut rec = RecorderSession::new();
            assert!(
                matches!(
                    rec.on_frame(hello(id)),
                    Err(SessionError::UnsafeName {
                        field: "recording id",
                        ..
                    })
                ),
                "{id:?}"
            );
        }
        let mut rec = accepted_recorder();
        assert!(matches!(
            rec.on_frame(start("rec-1", "../etc")),
            Err(SessionError::UnsafeName { field: "room", .. })
        ));
    }

    #[test]
    fn start_must_carry_the_hello_recording() {
        let mut rec = accepted_recorder();
        assert_eq!(
            rec.on_frame(start("rec-2", "room")).unwrap_err(),
            SessionError::RecordingMismatch {
                got: "rec-2".into(),
                want: "rec-1".into()
            }
        );
    }

    #[test]
    fn start_only_once_until_stop() {
        let mut rec = accepted_recorder();
        rec.on_frame(start("rec-1", "room")).unwrap();
        assert_eq!(
            rec.on_frame(start("rec-1", "room")).unwrap_err(),
            SessionError::UnexpectedFrame {
                expected: "Media, Stop or Ping",
                got: "Start"
            }
        );
    }

    #[test]
    fn media_before_start_is_rejected() {
        let mut rec = accepted_recorder();
        assert_eq!(
            rec.on_frame(media(0)).unwrap_err(),
            SessionError::MediaBeforeStart
        );
        // Also after a Stop, until the next Start.
        let mut rec = accepted_recorder();
        rec.on_frame(start("rec-1", "room")).unwrap();
        rec.on_frame(Frame::Stop).unwrap();
        assert_eq!(
            rec.on_frame(media(1)).unwrap_err(),
            SessionError::MediaBeforeStart
        );
    }

    #[test]
    fn stop_without_start_is_rejected() {
        let mut rec = accepted_recorder();
        assert_eq!(
            rec.on_frame(Frame::Stop).unwrap_err(),
            SessionError::UnexpectedFrame {
                expected: "Start or Ping",
                got: "Stop"
            }
        );
    }

    #[test]
    fn recorder_frames_at_the_recorder_are_unexpected() {
        let recorder_frames = [
            Frame::Accept,
            Frame::Pong { seq: 1 },
            Frame::Stats(Stats {
                file_bytes: 0,
                index_bytes: 0,
                duration_ms: 0,
                free_bytes: 0,
                at: 0,
            }),
            Frame::Stopped {
                summary: Summary {
                    recording: rec_id(),
                    fragments: 0,
                    file_bytes: 0,
                    index_bytes: 0,
                    media_ms: 0,
                },
            },
        ];
        for frame in recorder_frames {
            let got = frame_name(&frame);
            let mut rec = accepted_recorder();
            rec.on_frame(start("rec-1", "room")).unwrap();
            assert!(matches!(
                rec.on_frame(frame).unwrap_err(),
                SessionError::UnexpectedFrame { got: g, .. } if g == got
            ));
        }
        let mut rec = accepted_recorder();
        assert!(matches!(
            rec.on_frame(hello("rec-1")),
            Err(SessionError::UnexpectedFrame { got: "Hello", .. })
        ));
    }

    #[test]
    fn errors_end_the_session() {
        let mut rec = accepted_recorder();
        assert!(rec.on_frame(media(0)).is_err());
        assert_eq!(
            rec.on_frame(start("rec-1", "room")).unwrap_err(),
            SessionError::Closed
        );
    }

    #[test]
    fn reject_from_the_mixer_ends_the_recorder_session() {
        let mut rec = accepted_recorder();
        assert_eq!(
            rec.on_frame(Frame::Reject {
                reason: text("shutting down")
            })
            .unwrap_err(),
            SessionError::PeerRejected {
                reason: "shutting down".into()
            }
        );
    }

    #[test]
    fn reject_frame_carries_the_reason() {
        let Frame::Reject { reason } = reject_frame(&SessionError::MediaBeforeStart) else {
            panic!("expected Reject");
        };
        assert_eq!(reason.as_str(), SessionError::MediaBeforeStart.to_string());
        // Long reasons are cut to fit, never fail.
        let long = SessionError::UnsafeName {
            field: "room",
            value: "x/".repeat(250),
            reason: "contains a path separator",
        };
        assert!(matches!(reject_frame(&long), Frame::Reject { reason } if reason.len() == 128));
    }

    #[test]
    fn mixer_reports_rejection() {
        let (mut mixer, _) = MixerSession::new(rec_id());
        let reject = reject_frame(&SessionError::MediaBeforeStart);
        assert!(matches!(
            mixer.on_frame(reject).unwrap(),
            MixerEvent::Rejected { reason } if reason.contains("media before start")
        ));
        assert!(!mixer.is_ready());
        assert_eq!(
            mixer.on_frame(Frame::Accept).unwrap_err(),
            SessionError::Closed
        );
    }

    #[test]
    fn mixer_frames_at_the_mixer_are_unexpected() {
        for frame in [
            start("rec-1", "room"),
            media(0),
            Frame::Stop,
            Frame::Ping { seq: 1 },
        ] {
            let got = frame_name(&frame);
            let (mut mixer, _) = MixerSession::new(rec_id());
            mixer.on_frame(Frame::Accept).unwrap();
            assert_eq!(
                mixer.on_frame(frame).unwrap_err(),
                SessionError::UnexpectedFrame {
                    expected: "a recorder report",
                    got
                }
            );
            assert!(!mixer.is_ready());
        }
    }
}
