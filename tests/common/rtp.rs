//! A real RTP ingest on loopback UDP for the tests that send it media, and an H.264
//! decoder to check what comes out.

use std::net::SocketAddr;
use std::time::Duration;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use recbox::ingest::udp::{IngestCommand, UdpIngest};
use recbox::ingest::{Demux, Frame, IngestOutput, MediaKind, StreamConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// SSRC of the ingest in the RTCP it sends.
pub const INGEST_SSRC: u32 = 0xfeed;

/// How long any test waits for media before failing: far beyond what loopback needs,
/// so a loaded machine only makes the test slower.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// An ingest bound to a loopback port, not yet running: add streams first.
pub async fn bind() -> UdpIngest {
    UdpIngest::bind("127.0.0.1:0".parse().unwrap(), Demux::new(INGEST_SSRC))
        .await
        .unwrap()
}

pub fn stream(ssrc: u32, kind: MediaKind, pt: u8, playout_delay: Duration) -> StreamConfig {
    let mut config = StreamConfig::new(ssrc, kind, pt);
    config.jitter.playout_delay = playout_delay;
    config
}

pub struct Ingest {
    pub addr: SocketAddr,
    pub outputs: mpsc::Receiver<Vec<IngestOutput>>,
    pub commands: mpsc::UnboundedSender<IngestCommand>,
    task: JoinHandle<Demux>,
}

impl Ingest {
    pub fn run(ingest: UdpIngest) -> Self {
        let addr = ingest.local_addr().unwrap();
        let (tx, outputs) = mpsc::channel(4096);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ingest.run(tx, commands_rx));
        Self {
            addr,
            outputs,
            commands,
            task,
        }
    }

    /// Collects outputs until `done` holds for the outputs so far.
    pub async fn collect_until(
        &mut self,
        out: &mut Vec<IngestOutput>,
        done: impl Fn(&[IngestOutput]) -> bool,
    ) {
        let wait = async {
            while !done(out) {
                out.extend(self.outputs.recv().await.expect("ingest stopped"));
            }
        };
        timeout(PATIENCE, wait)
            .await
            .expect("ingest output did not arrive in time");
    }

    pub async fn finish(self) -> Demux {
        drop(self.commands);
        self.task.await.unwrap()
    }
}

pub fn frames(out: &[IngestOutput], ssrc: u32) -> Vec<&Frame> {
    out.iter()
        .filter_map(|o| match o {
            IngestOutput::Frame(f) if f.ssrc == ssrc => Some(f),
            _ => None,
        })
        .collect()
}

/// Packets reported lost for `ssrc`.
pub fn lost(out: &[IngestOutput], ssrc: u32) -> u64 {
    out.iter()
        .map(|o| match o {
            IngestOutput::Lost { ssrc: s, packets } if *s == ssrc => *packets,
            _ => 0,
        })
        .sum()
}

/// Decodes access units in order with openh264; for each, the (Y, U, V) of the
/// picture's top-left pixel. Panics if one does not decode to a picture.
pub fn decode<'a>(access_units: impl IntoIterator<Item = &'a [u8]>) -> Vec<[u8; 3]> {
    let mut decoder = Decoder::new().unwrap();
    access_units
        .into_iter()
        .enumerate()
        .map(|(i, au)| {
            let picture = decoder
                .decode(au)
                .unwrap_or_else(|e| panic!("access unit {i} does not decode: {e}"))
                .unwrap_or_else(|| panic!("access unit {i} gave no picture"));
            [picture.y()[0], picture.u()[0], picture.v()[0]]
        })
        .collect()
}
