//! Media ingest: the participants' RTP from the SFU (plain RTP over UDP, as Janus
//! `rtp_forward` or a mediasoup PlainTransport send it) turned into ordered, complete
//! frames for the mixer, with RTCP feedback (receiver reports, keyframe requests)
//! going back.
//!
//! Everything but [`udp`] is sans-IO: datagrams and time go in, frames and RTCP come
//! out.

pub mod depacketize;
pub(crate) mod jitter;
pub(crate) mod keyframe;
pub mod rtcp;
pub mod rtp;
pub(crate) mod source;
pub mod stats;
pub(crate) mod stream;
pub mod udp;

pub use stream::{Demux, Frame, IngestOutput, IngestStream, MediaKind, StreamConfig};
