//! The frames of the media link. Every field is bounded: text and small lists are
//! `heapless`, and the one open-ended field (`Media::data`) is bounded by the
//! codec's maximum frame length, checked before any allocation.

use serde::{Deserialize, Serialize};

/// Bounded text of at most `N` bytes.
pub(crate) type Text<const N: usize> = heapless::String<N>;

/// Identifies one recording across sessions and segments (chosen by the mixer).
pub(crate) type RecordingId = Text<64>;

/// Milliseconds since the Unix epoch (wall clock of the sender).
pub type UnixMillis = u64;

/// The wall clock now, as sent in frames.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// `Start` carries the parameter sets inline (bounded, ~600 bytes); boxing it would
// only save a copy of that size per frame moved, which is noise next to media.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    // --- session opening, inside the authenticated transport ---
    /// mixer -> recorder, first frame of every session: the recording it is for.
    Hello {
        recording: RecordingId,
    },
    /// recorder -> mixer: session accepted.
    Accept,
    /// either side: the session is refused or closed because of `reason`.
    Reject {
        reason: Text<128>,
    },

    // --- mixer -> recorder ---
    Start(StartParams),
    Media(Media),
    Stop,
    Ping {
        seq: u64,
    },

    // --- recorder -> mixer ---
    Pong {
        seq: u64,
    },
    Started {
        recording: RecordingId,
        path: Text<256>,
    },
    Stopped {
        summary: Summary,
    },
    Fault(Fault),
    Cleared {
        kind: FaultKind,
        target: FaultTarget,
        at: UnixMillis,
    },
    Stats(Stats),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StartParams {
    pub recording: RecordingId,
    pub room: Text<64>,
    pub video: VideoParams,
    pub audio: AudioParams,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    pub codec: VideoCodec,
    /// Sequence parameter set, without start code or length prefix.
    pub sps: heapless::Vec<u8, 256>,
    /// Picture parameter set, without start code or length prefix.
    pub pps: heapless::Vec<u8, 256>,
    pub width: u16,
    pub height: u16,
    /// Nominal frames per second (the real timing is in `Media::pts`/`dts`).
    pub fps: u16,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Opus,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    pub codec: AudioCodec,
    pub sample_rate: u32,
    pub channels: u8,
    /// Opus pre-skip in 48 kHz samples (encoder lookahead).
    pub pre_skip: u16,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

impl Track {
    /// Media time units per second: 90 kHz for video (as RTP), 48 kHz for Opus.
    pub fn timescale(self) -> u32 {
        match self {
            Track::Video => 90_000,
            Track::Audio => 48_000,
        }
    }
}

/// One access unit (video: Annex B H.264 with start codes; audio: one Opus packet).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Media {
    pub track: Track,
    /// Presentation time in `track.timescale()` units since the recording start.
    pub pts: i64,
    /// Decode time in `track.timescale()` units since the recording start.
    pub dts: i64,
    pub keyframe: bool,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("track", &self.track)
            .field("pts", &self.pts)
            .field("dts", &self.dts)
            .field("keyframe", &self.keyframe)
            .field("len", &self.data.len())
            .finish()
    }
}

// snake_case names are for the JSON control channel to the SFU; postcard encodes
// variant indexes, so the media link is unaffected.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    DiskFull,
    LowSpace,
    DiskOffline,
    ReadOnly,
    IoError,
    FsError,
    FileWriteFailed,
    IndexWriteFailed,
    /// Writing to the spool because the primary storage failed.
    Failover,
    /// The primary storage is back and recording moved back to it.
    Recovered,
    /// Media was dropped because neither primary nor spool could take it.
    MediaDropped,
    /// The mixer lost the media link to the recorder (never sent by a recorder: it
    /// cannot, by definition).
    RecorderUnreachable,
}

impl FaultKind {
    /// Every kind, so what handles each one (sentences, encodings) can be checked.
    #[cfg(test)]
    pub(crate) const ALL: [FaultKind; 12] = [
        FaultKind::DiskFull,
        FaultKind::LowSpace,
        FaultKind::DiskOffline,
        FaultKind::ReadOnly,
        FaultKind::IoError,
        FaultKind::FsError,
        FaultKind::FileWriteFailed,
        FaultKind::IndexWriteFailed,
        FaultKind::Failover,
        FaultKind::Recovered,
        FaultKind::MediaDropped,
        FaultKind::RecorderUnreachable,
    ];
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    File,
    Index,
    Storage,
    /// The recorder itself, as seen from the mixer.
    Recorder,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub recording: RecordingId,
    pub kind: FaultKind,
    pub target: FaultTarget,
    pub detail: Text<200>,
    pub at: UnixMillis,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Size on disk of the recording file(s) at `at`.
    pub file_bytes: u64,
    /// Size on disk of the index file(s) at `at`.
    pub index_bytes: u64,
    /// Wall-clock time since the recording started, in milliseconds.
    pub duration_ms: u64,
    /// Free bytes on the storage being written.
    pub free_bytes: u64,
    pub at: UnixMillis,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub(crate) recording: RecordingId,
    pub fragments: u32,
    pub file_bytes: u64,
    pub(crate) index_bytes: u64,
    /// Media duration written, in milliseconds.
    pub media_ms: u64,
}

/// Copies `s` into bounded text, cutting at a character boundary if it is too long,
/// so a long OS error message can never fail a fault report.
pub fn text<const N: usize>(s: &str) -> Text<N> {
    let mut out = Text::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cuts_at_char_boundary() {
        let t: Text<4> = text("aéé");
        assert_eq!(t.as_str(), "aé");
    }
}
