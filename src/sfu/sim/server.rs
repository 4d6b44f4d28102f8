//! The simulated SFU's IO shell: a TCP listener for the mixers' control channel (one
//! mixer at a time, one after another), one UDP socket per session that sends all RTP
//! and receives the mixer's RTCP, and tokio timers pacing the [`SimSession`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use super::session::{SimOutput, SimSession};
use super::{SimConfig, SimError, SimEvent};
use crate::ingest::rtp::DEFAULT_MAX_PACKET;
use crate::sfu::channel::{self, ws_config};
use crate::sfu::control::MixerMessage;

pub struct SfuSim {
    listener: TcpListener,
    config: SimConfig,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
    let what = what.into();
    move |source| SimError::Io { what, source }
}

impl SfuSim {
    /// Checks `config` and listens for the control channel on `addr`.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(io(format!("listening on {addr}")))?;
        Ok(Self { listener, config })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, SimError> {
        self.listener.local_addr().map_err(io("listener address"))
    }

    /// Serves mixers one after another, reporting to `events`, until `events` closes.
    /// A session that fails is logged and ends only itself.
    pub async fn run(self, events: mpsc::UnboundedSender<SimEvent>) -> Result<(), SimError> {
        info!(addr = %self.local_addr()?, "simulated SFU listening for the control channel");
        while !events.is_closed() {
            let (tcp, peer) = self.listener.accept().await.map_err(io("accepting"))?;
            info!(%peer, "mixer connected");
            match self.session(tcp, peer, &events).await {
                Ok(()) => info!(%peer, "mixer gone"),
                Err(e) => warn!(%peer, "session ended: {e}"),
            }
        }
        Ok(())
    }

    async fn session(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        events: &mpsc::UnboundedSender<SimEvent>,
    ) -> Result<(), SimError> {
        // Control messages are small and each is due at once.
        tcp.set_nodelay(true)
            .map_err(io("setting TCP_NODELAY on the control channel"))?;
        let ws = accept_async_with_config(tcp, Some(ws_config()))
            .await
            .map_err(|e| SimError::Channel(e.into()))?;
        let (mut sink, mut stream) = ws.split();
        let hello = match channel::recv::<MixerMessage, _>(&mut stream).await? {
            Some(MixerMessage::Hello(hello)) => hello,
            Some(other) => return Err(SimError::NoHello(format!("{other:?}"))),
            None => return Ok(()),
        };
        let host = self.config.rtp_host.unwrap_or(peer.ip());
        let any = match host {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind((any, 0))
            .await
            .map_err(io("binding the RTP socket"))?;
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let rng = StdRng::seed_from_u64(self.config.seed);
        let started = SimSession::new(
            &self.config,
            &hello,
            rng,
            Instant::now().into_std(),
            unix_now,
        );
        let (mut sim, out) = match started {
            Ok(s) => s,
            Err(e) => {
                // Tell the mixer why before hanging up.
                let close = CloseFrame {
                    code: CloseCode::Policy,
                    reason: crate::link::frame::text::<120>(&e.to_string())
                        .as_str()
                        .into(),
                };
                let _ = futures_util::SinkExt::send(&mut sink, Message::Close(Some(close))).await;
                return Err(e);
            }
        };
        info!(
            mixer = %hello.name,
            %host,
            audio_port = sim.ports().audio,
            video_port = sim.ports().video,
            rtp_from = ?socket.local_addr().ok(),
            "session started"
        );
        let mut out = out;
        let mut buf = vec![0u8; DEFAULT_MAX_PACKET];
        loop {
            for o in out.drain(..) {
                match o {
                    SimOutput::Control(m) => channel::send(&mut sink, &m).await?,
                    SimOutput::Datagram(d) => {
                        if let Err(e) = socket.send_to(&d.data, (host, d.port)).await {
                            // E.g. ICMP port unreachable before the mixer's socket is up.
                            warn!(port = d.port, "RTP send: {e}");
                        }
                    }
                    SimOutput::Event(e) => {
                        let _ = events.send(e);
                    }
                }
            }
            let wake = sim.next_wakeup().map(Instant::from_std);
            out = tokio::select! {
                message = channel::recv::<MixerMessage, _>(&mut stream) => match message? {
                    Some(m) => sim.on_message(m, Instant::now().into_std()),
                    None => return Ok(()),
                },
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, _)) => sim.on_rtcp(&buf[..n]),
                    Err(e) => {
                        warn!("RTCP receive: {e}");
                        Vec::new()
                    }
                },
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    sim.poll(Instant::now().into_std())?
                }
            };
        }
    }
}
