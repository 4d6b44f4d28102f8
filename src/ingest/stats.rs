//! Counters of one ingest stream and of the demultiplexer, printable in log lines.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Serialised as it goes to the SFU in the mixer's ingest notices.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// RTP packets received for this stream (any outcome).
    pub packets: u64,
    /// Payload bytes of those packets.
    pub(crate) bytes: u64,
    /// Packets reported lost (never arrived within the playout delay).
    pub lost: u64,
    /// Packets that arrived after their slot was reported lost, or far out of range.
    pub late: u64,
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number and were put back in order.
    pub reordered: u64,
    /// Packets dropped because the jitter buffer was full.
    pub(crate) overflow: u64,
    /// Payloads the depacketizer rejected.
    pub malformed: u64,
    pub(crate) unknown_payload_type: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Frames dropped as damaged or undecodable (video waiting for a keyframe).
    pub frames_dropped: u64,
    pub keyframe_requests: u64,
    /// Packets of this SSRC from another address than the stream's source (the
    /// SFU's), dropped: someone tries to put media into the recording.
    #[serde(default)]
    pub spoofed: u64,
}

impl fmt::Display for StreamStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packets={} bytes={} lost={} late={} dup={} reordered={} overflow={} malformed={} \
             unknown_pt={} frames={} frames_dropped={} keyframe_requests={} spoofed={}",
            self.packets,
            self.bytes,
            self.lost,
            self.late,
            self.duplicates,
            self.reordered,
            self.overflow,
            self.malformed,
            self.unknown_payload_type,
            self.frames,
            self.frames_dropped,
            self.keyframe_requests,
            self.spoofed
        )
    }
}

/// Datagrams that could not be given to any stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DemuxStats {
    /// Datagrams that are neither valid RTP nor valid RTCP.
    pub(crate) malformed: u64,
    pub(crate) unknown_ssrc: u64,
    /// RTCP packets received.
    pub rtcp: u64,
}

impl fmt::Display for DemuxStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed={} unknown_ssrc={} rtcp={}",
            self.malformed, self.unknown_ssrc, self.rtcp
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_counter() {
        let s = StreamStats {
            packets: 10,
            lost: 2,
            keyframe_requests: 1,
            ..Default::default()
        };
        let line = s.to_string();
        assert!(line.starts_with("packets=10 bytes=0 lost=2 "));
        assert!(line.ends_with("keyframe_requests=1 spoofed=0"));
        assert_eq!(line.matches('=').count(), 13);
        assert_eq!(
            DemuxStats {
                unknown_ssrc: 3,
                ..Default::default()
            }
            .to_string(),
            "malformed=0 unknown_ssrc=3 rtcp=0"
        );
    }
}
