//! What the mixer tells the SFU about the recording (faults, their clearing, periodic
//! stats), and how an SFU announces it to the people in the meeting and the
//! conference-control platform. The payloads are the media link's own types, relayed
//! unchanged.

use serde::{Deserialize, Serialize};

use crate::ingest::stats::StreamStats;
use crate::ingest::MediaKind;
use crate::link::frame::{Fault, FaultKind, FaultTarget, Stats, UnixMillis};
use crate::link::session::MixerEvent;

/// One report for the SFU.
// A few a minute: boxing the fault (bounded text, ~300 bytes) would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// Recording went wrong (or moved storage: `Failover`, `Recovered`).
    Fault(Fault),
    /// A fault no longer applies.
    Cleared {
        kind: FaultKind,
        target: FaultTarget,
        at: UnixMillis,
    },
    /// Recorded bytes and duration so far, and the faults that still apply.
    Stats {
        #[serde(flatten)]
        stats: Stats,
        #[serde(default)]
        faults: Vec<FaultKind>,
    },
    /// How well the mixer receives each participant's streams (the mixer's own
    /// counters, every stats interval).
    Ingest {
        streams: Vec<StreamReport>,
        at: UnixMillis,
    },
    /// A participant's video is in a codec the box cannot decode (told once, when
    /// it joins): its tile shows a placeholder, its audio is recorded.
    UnsupportedCodec {
        participant: String,
        codec: String,
        at: UnixMillis,
    },
}

/// The ingest counters of one participant's stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub(crate) participant: String,
    pub(crate) kind: MediaKind,
    pub ssrc: u32,
    #[serde(flatten)]
    pub counters: StreamStats,
}

/// Keeps the list of faults that still apply in step with `notice`: a fault is added
/// once and its clearing removes it; dropped media and the move back from the spool
/// are events, not conditions; stats carry the whole list.
pub(crate) fn track_active(active: &mut Vec<FaultKind>, notice: &Notice) {
    match notice {
        Notice::Fault(f) => match f.kind {
            FaultKind::MediaDropped => {}
            FaultKind::Recovered => active.retain(|&k| k != FaultKind::Failover),
            kind => {
                if !active.contains(&kind) {
                    active.push(kind);
                }
            }
        },
        Notice::Cleared { kind, .. } => active.retain(|k| k != kind),
        // Empty when they come straight from the recorder: only the mixer's link
        // knows the whole list.
        Notice::Stats { faults, .. } if !faults.is_empty() => active.clone_from(faults),
        Notice::Stats { .. } => {}
        // The mixer's own; the recorder never sends them.
        Notice::Ingest { .. } | Notice::UnsupportedCodec { .. } => {}
    }
}

impl Notice {
    /// The notice to relay for what the recorder sent back on the media link, if any.
    pub(crate) fn from_recorder(event: &MixerEvent) -> Option<Self> {
        match event {
            MixerEvent::Fault(f) => Some(Notice::Fault(f.clone())),
            &MixerEvent::Cleared { kind, target, at } => Some(Notice::Cleared { kind, target, at }),
            MixerEvent::Stats(s) => Some(Notice::Stats {
                stats: *s,
                faults: Vec::new(),
            }),
            _ => None,
        }
    }
}

/// Who is shown an announcement.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Audience {
    /// The meeting's terminals (and the control platform, which sees everything).
    Terminals,
    /// Only the conference-control platform (bookkeeping such as sizes).
    Control,
}

/// A notice as the terminals and the control platform see it: a participant-facing
/// text plus the facts it is based on.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub(crate) to: Audience,
    /// The fault kind, `cleared` or `stats`.
    pub kind: String,
    pub text: String,
    /// For `cleared`: the fault kind that no longer applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fault: Option<FaultKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<FaultTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
    /// For `stats`: the faults that still apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    faults: Vec<FaultKind>,
    /// For `ingest`: the counters of every stream the mixer receives.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamReport>,
    /// For `unsupported_codec`: whose video it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<String>,
    pub(crate) at: UnixMillis,
    /// The terminals (participant ids) it was shown on, as the SFU fills it in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terminals: Vec<String>,
}

impl Announcement {
    pub fn new(notice: &Notice) -> Self {
        let base = |to, kind: String, text: String, at| Announcement {
            to,
            kind,
            text,
            fault: None,
            recording: None,
            target: None,
            detail: None,
            stats: None,
            faults: Vec::new(),
            streams: Vec::new(),
            participant: None,
            at,
            terminals: Vec::new(),
        };
        match notice {
            Notice::Fault(f) => Announcement {
                recording: Some(f.recording.to_string()),
                target: Some(f.target),
                detail: Some(f.detail.to_string()),
                ..base(
                    Audience::Terminals,
                    kind_name(f.kind),
                    fault_text(f.kind).to_owned(),
                    f.at,
                )
            },
            Notice::Cleared { kind, target, at } => Announcement {
                fault: Some(*kind),
                target: Some(*target),
                ..base(
                    Audience::Terminals,
                    "cleared".to_owned(),
                    format!("Resolved: {}.", condition(*kind)),
                    *at,
                )
            },
            Notice::Stats { stats, faults } => Announcement {
                stats: Some(*stats),
                faults: faults.clone(),
                ..base(
                    Audience::Control,
                    "stats".to_owned(),
                    stats_text(stats, faults),
                    stats.at,
                )
            },
            Notice::Ingest { streams, at } => Announcement {
                streams: streams.clone(),
                ..base(
                    Audience::Control,
                    "ingest".to_owned(),
                    ingest_text(streams),
                    *at,
                )
            },
            Notice::UnsupportedCodec {
                participant,
                codec,
                at,
            } => Announcement {
                participant: Some(participant.clone()),
                detail: Some(codec.clone()),
                ..base(
                    Audience::Control,
                    "unsupported_codec".to_owned(),
                    format!(
                        "Participant {participant} sends video as {codec}, which the box cannot \
                         decode: its tile shows a placeholder; its audio is recorded."
                    ),
                    *at,
                )
            },
        }
    }

    /// One line of JSON, no trailing newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an announcement always serialises")
    }
}

/// The JSON name of a fault kind (`disk_full`).
fn kind_name(kind: FaultKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

/// What the people in the meeting are told when a fault occurs.
pub(crate) fn fault_text(kind: FaultKind) -> &'static str {
    use FaultKind::*;
    match kind {
        DiskFull => "Recording problem: the recording disk is full.",
        LowSpace => "Recording warning: the recording disk is almost full.",
        DiskOffline => "Recording problem: the recording disk is not available.",
        ReadOnly => "Recording problem: the recording disk cannot be written to.",
        IoError => "Recording problem: the recording disk reports read or write errors.",
        FsError => "Recording problem: the file system of the recording disk reports errors.",
        FileWriteFailed => "Recording problem: the recording file could not be written.",
        IndexWriteFailed => {
            "Recording problem: the recording index could not be written; it can be rebuilt from the recording."
        }
        Failover => "Recording problem: the recording disk failed. Recording continues on the backup storage.",
        Recovered => "Recording is back on the recording disk.",
        MediaDropped => "Recording problem: part of the meeting could not be recorded.",
        RecorderUnreachable => {
            "Recording problem: the recorder cannot be reached. The meeting is held back and recorded when it returns."
        }
    }
}

/// The condition a fault describes, for the message that it is over.
fn condition(kind: FaultKind) -> &'static str {
    use FaultKind::*;
    match kind {
        DiskFull => "the recording disk is no longer full",
        LowSpace => "the recording disk has enough free space again",
        DiskOffline => "the recording disk is available again",
        ReadOnly => "the recording disk can be written to again",
        IoError => "the recording disk no longer reports errors",
        FsError => "the file system of the recording disk no longer reports errors",
        FileWriteFailed => "the recording file is written again",
        IndexWriteFailed => "the recording index is written again",
        Failover => "recording no longer depends on the backup storage",
        Recovered => "recording storage is back to normal",
        MediaDropped => "the whole meeting is recorded again",
        RecorderUnreachable => "the recorder can be reached again",
    }
}

fn stats_text(s: &Stats, faults: &[FaultKind]) -> String {
    let secs = s.duration_ms / 1000;
    let mut text = format!(
        "Recording: {}:{:02}:{:02} recorded, {:.1} MB.",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        (s.file_bytes + s.index_bytes) as f64 / 1e6
    );
    if !faults.is_empty() {
        let names: Vec<String> = faults.iter().map(|&k| kind_name(k)).collect();
        text.push_str(&format!(" Faults: {}.", names.join(", ")));
    }
    text
}

fn ingest_text(streams: &[StreamReport]) -> String {
    let mut participants: Vec<&str> = streams.iter().map(|s| s.participant.as_str()).collect();
    participants.sort_unstable();
    participants.dedup();
    let sum = |f: fn(&StreamStats) -> u64| streams.iter().map(|s| f(&s.counters)).sum::<u64>();
    let mut text = format!(
        "Receiving {} streams of {} participants: {} packets, {} lost, {} late, {} reordered, {} keyframe requests.",
        streams.len(),
        participants.len(),
        sum(|c| c.packets),
        sum(|c| c.lost),
        sum(|c| c.late),
        sum(|c| c.reordered),
        sum(|c| c.keyframe_requests),
    );
    let spoofed = sum(|c| c.spoofed);
    if spoofed > 0 {
        text.push_str(&format!(
            " {spoofed} packets of these streams from other addresses than the SFU's dropped."
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::text;

    fn disk_full() -> Fault {
        Fault {
            recording: text("rec-1"),
            kind: FaultKind::DiskFull,
            target: FaultTarget::Storage,
            detail: text("No space left on device (os error 28)"),
            at: 1_700_000_000_000,
        }
    }

    #[test]
    fn fault_line_carries_participant_text_and_facts() {
        let line = Announcement::new(&Notice::Fault(disk_full())).to_json_line();
        assert_eq!(
            line,
            r#"{"to":"terminals","kind":"disk_full","text":"Recording problem: the recording disk is full.","recording":"rec-1","target":"storage","detail":"No space left on device (os error 28)","at":1700000000000}"#
        );
    }

    #[test]
    fn an_undecodable_codec_is_told_to_the_control_platform() {
        let a = Announcement::new(&Notice::UnsupportedCodec {
            participant: "7".into(),
            codec: "vp9".into(),
            at: 5,
        });
        assert_eq!(a.to, Audience::Control);
        assert_eq!(
            a.to_json_line(),
            r#"{"to":"control","kind":"unsupported_codec","text":"Participant 7 sends video as vp9, which the box cannot decode: its tile shows a placeholder; its audio is recorded.","detail":"vp9","participant":"7","at":5}"#
        );
    }

    #[test]
    fn cleared_and_stats_lines() {
        let cleared = Notice::Cleared {
            kind: FaultKind::ReadOnly,
            target: FaultTarget::Storage,
            at: 5,
        };
        assert_eq!(
            Announcement::new(&cleared).to_json_line(),
            r#"{"to":"terminals","kind":"cleared","text":"Resolved: the recording disk can be written to again.","fault":"read_only","target":"storage","at":5}"#
        );
        let mut stats = Notice::Stats {
            stats: Stats {
                file_bytes: 12_300_000,
                index_bytes: 400,
                duration_ms: 3_725_500,
                free_bytes: 9,
                at: 7,
            },
            faults: Vec::new(),
        };
        let a = Announcement::new(&stats);
        assert_eq!((a.to, a.kind.as_str()), (Audience::Control, "stats"));
        assert_eq!(a.text, "Recording: 1:02:05 recorded, 12.3 MB.");
        let v: serde_json::Value = serde_json::from_str(&a.to_json_line()).unwrap();
        assert_eq!(v["stats"]["duration_ms"], 3_725_500);
        assert_eq!(v["at"], 7);
        assert!(v.get("faults").is_none());
        if let Notice::Stats { faults, .. } = &mut stats {
            faults.extend([FaultKind::Failover, FaultKind::LowSpace]);
        }
        let a = Announcement::new(&stats);
        assert_eq!(
            a.text,
            "Recording: 1:02:05 recorded, 12.3 MB. Faults: failover, low_space."
        );
        let v: serde_json::Value = serde_json::from_str(&a.to_json_line()).unwrap();
        assert_eq!(v["faults"], serde_json::json!(["failover", "low_space"]));
    }

    #[test]
    fn ingest_line_sums_the_streams_for_the_control_platform() {
        let report = |participant: &str, kind, lost| StreamReport {
            participant: participant.to_owned(),
            kind,
            ssrc: 7,
            counters: StreamStats {
                packets: 100,
                lost,
                keyframe_requests: 1,
                ..Default::default()
            },
        };
        let notice = Notice::Ingest {
            streams: vec![
                report("p1", MediaKind::Audio, 0),
                report("p1", MediaKind::Video, 3),
                report("p2", MediaKind::Video, 2),
            ],
            at: 9,
        };
        let a = Announcement::new(&notice);
        assert_eq!(
            (a.to, a.kind.as_str(), a.at),
            (Audience::Control, "ingest", 9)
        );
        assert_eq!(
            a.text,
            "Receiving 3 streams of 2 participants: 300 packets, 5 lost, 0 late, 0 reordered, 3 keyframe requests."
        );
        let v: serde_json::Value = serde_json::from_str(&a.to_json_line()).unwrap();
        assert_eq!(v["streams"][1]["participant"], "p1");
        assert_eq!(v["streams"][1]["kind"], "video");
        assert_eq!(v["streams"][1]["lost"], 3);
        assert_eq!(v["streams"][1]["spoofed"], 0);
        // What the SFU receives parses back to the same notice.
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
    }

    #[test]
    fn ingest_line_tells_of_spoofed_packets() {
        let counters = StreamStats {
            packets: 100,
            spoofed: 40,
            ..Default::default()
        };
        let notice = Notice::Ingest {
            streams: vec![StreamReport {
                participant: "p1".to_owned(),
                kind: MediaKind::Video,
                ssrc: 7,
                counters,
            }],
            at: 9,
        };
        let a = Announcement::new(&notice);
        assert!(
            a.text.ends_with(
                " 40 packets of these streams from other addresses than the SFU's dropped."
            ),
            "{}",
            a.text
        );
        let v: serde_json::Value = serde_json::from_str(&a.to_json_line()).unwrap();
        assert_eq!(v["streams"][0]["spoofed"], 40);
        // A notice of an older mixer, without the counter, still parses.
        let mut json = serde_json::to_value(&notice).unwrap();
        json["streams"][0]
            .as_object_mut()
            .unwrap()
            .remove("spoofed");
        let old: Notice = serde_json::from_value(json).unwrap();
        let Notice::Ingest { streams, .. } = old else {
            panic!("{old:?}")
        };
        assert_eq!(streams[0].counters.spoofed, 0);
    }

    #[test]
    fn every_fault_kind_has_a_sentence_and_a_json_name() {
        for kind in FaultKind::ALL {
            let name = kind_name(kind);
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(fault_text(kind).ends_with('.'));
            assert!(!condition(kind).is_empty());
        }
    }

    #[test]
    fn recorder_events_become_notices() {
        let f = disk_full();
        assert_eq!(
            Notice::from_recorder(&MixerEvent::Fault(f.clone())),
            Some(Notice::Fault(f))
        );
        assert_eq!(Notice::from_recorder(&MixerEvent::Pong { seq: 1 }), None);
    }
}
