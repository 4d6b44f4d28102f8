//! The IO shell of the ingest: one UDP socket receiving every stream's RTP (and
//! multiplexed RTCP), a [`Demux`] doing the work, and RTCP feedback sent back to the
//! address each stream is locked to (its source, see [`super::source`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::stats::StreamStats;
use super::stream::{Demux, IngestOutput, StreamConfig};

/// How often the jitter buffers are polled for due packets and losses.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often receiver reports are sent (RFC 3550 suggests about 5 s at most).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum UdpError {
    #[error("cannot bind the ingest socket: {0}")]
    Bind(#[source] std::io::Error),
}

/// What the owner of a running ingest can ask of it.
#[derive(Debug)]
pub enum IngestCommand {
    /// Receive a stream from now on (a participant joined).
    AddStream(StreamConfig),
    /// Stop receiving a stream (a participant left); its final counters are logged.
    RemoveStream(u32),
    /// The SFU sends the stream anew (a renewed forward), perhaps from another
    /// address: the stream learns its source again.
    RenewStream(u32),
    /// The counters of every stream, by SSRC.
    Stats(oneshot::Sender<Vec<(u32, StreamStats)>>),
}

pub struct UdpIngest {
    socket: UdpSocket,
    demux: Demux,
}

impl UdpIngest {
    pub async fn bind(addr: SocketAddr, demux: Demux) -> Result<Self, UdpError> {
        let socket = UdpSocket::bind(addr).await.map_err(UdpError::Bind)?;
        Ok(Self { socket, demux })
    }

    /// The demultiplexer, to add streams before [`run`](Self::run) (later ones come as
    /// [`IngestCommand::AddStream`]): the port is bound first so that it can be
    /// announced (to an SFU) before the SSRCs are known.
    pub fn demux_mut(&mut self) -> &mut Demux {
        &mut self.demux
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives until every sender of `commands` is dropped or `outputs` is closed,
    /// then hands back the demultiplexer with its final statistics.
    ///
    /// Outputs go out in one batch at each poll tick rather than one by one as
    /// datagrams release them: whoever consumes them (the mixing engine's thread)
    /// then wakes at most once a tick, not once a frame. Keyframe requests are sent
    /// to their streams' senders at once.
    pub async fn run(
        mut self,
        outputs: mpsc::Sender<Vec<IngestOutput>>,
        mut commands: mpsc::UnboundedReceiver<IngestCommand>,
    ) -> Demux {
        // One byte more than allowed, so that oversize datagrams are seen as such.
        let mut buf = vec![0; self.demux.max_packet() + 1];
        let mut poll = interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut report = interval(REPORT_INTERVAL);
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        info!(addr = ?self.socket.local_addr().ok(), "RTP ingest running");
        loop {
            let (out, flush) = tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        let now = Instant::now().into_std();
                        (self.demux.push_datagram(&buf[..len], from, now), false)
                    }
                    Err(e) => {
                        // E.g. ICMP errors surfacing on the socket: not fatal to the ingest.
                        warn!("UDP receive: {e}");
                        continue;
                    }
                },
                _ = poll.tick() => (self.demux.poll(Instant::now().into_std()), true),
                _ = report.tick() => {
                    self.send_reports().await;
                    continue;
                }
                command = commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command);
                        continue;
                    }
                    None => break,
                },
            };
            for o in &out {
                if let IngestOutput::KeyframeRequest { ssrc } = *o {
                    self.send_pli(ssrc).await;
                }
            }
            batch.extend(out);
            if flush && !batch.is_empty() && outputs.send(std::mem::take(&mut batch)).await.is_err()
            {
                debug!("ingest output closed");
                return self.demux;
            }
        }
        if !batch.is_empty() {
            let _ = outputs.send(batch).await;
        }
        for (ssrc, stats) in self.demux.stream_stats() {
            info!(ssrc, "ingest stream stats: {stats}");
        }
        info!("ingest demux stats: {}", self.demux.stats());
        self.demux
    }

    fn on_command(&mut self, command: IngestCommand) {
        match command {
            IngestCommand::AddStream(config) => {
                let ssrc = config.ssrc;
                match self.demux.add_stream(config) {
                    Ok(()) => debug!(ssrc, "ingest stream added"),
                    Err(e) => warn!("cannot add ingest stream: {e}"),
                }
            }
            IngestCommand::RemoveStream(ssrc) => {
                if let Some(s) = self.demux.remove_stream(ssrc) {
                    info!(ssrc, "ingest stream removed; stats: {}", s.stats());
                }
            }
            IngestCommand::RenewStream(ssrc) => {
                if self.demux.relearn_source(ssrc) {
                    info!(ssrc, "ingest stream renewed: learning its source again");
                }
            }
            IngestCommand::Stats(reply) => {
                let _ = reply.send(self.demux.stream_stats());
            }
        }
    }

    async fn send_pli(&self, ssrc: u32) {
        let Some(to) = self.demux.stream(ssrc).and_then(|s| s.source()) else {
            return;
        };
        match self.demux.pli(ssrc) {
            Ok(pli) => self.send(&pli, to).await,
            Err(e) => warn!(ssrc, "cannot build PLI: {e}"),
        }
    }

    async fn send_reports(&mut self) {
        let mut by_sender: HashMap<SocketAddr, Vec<u32>> = HashMap::new();
        for (ssrc, addr) in self.demux.sources() {
            by_sender.entry(addr).or_default().push(ssrc);
        }
        let now = Instant::now().into_std();
        for (to, ssrcs) in by_sender {
            match self.demux.receiver_report(ssrcs, now) {
                Ok(rr) => self.send(&rr, to).await,
                Err(e) => warn!("cannot build receiver report: {e}"),
            }
        }
    }

    async fn send(&self, data: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(data, to).await {
            warn!(%to, "RTCP send: {e}");
        }
    }
}
