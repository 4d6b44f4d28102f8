//! [`SfuAdapter`] over the Janus WebSocket API: a task owns the connection and the
//! sans-IO [`Session`], and reconnects (with growing delays) when Janus goes away;
//! the mixer's requests reach it over a channel, so they never wait for Janus.
//! PLIs go out from the socket whose port the video forwards name as `rtcp_port`,
//! to the forwarder's `local_rtcp_port`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::protocol::{Credentials, MAX_MESSAGE};
use super::session::{reconnect_delay, Output, Session, SessionError, Settings};
use crate::ingest::rtcp;
use crate::sfu::adapter::SfuAdapter;
use crate::sfu::control::ParticipantId;
use crate::sfu::notice::Notice;
use crate::sfu::roster::RosterEvent;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// SSRC of the mixer in its PLIs.
const MIXER_SSRC: u32 = 0x6d69_7872;
/// How long a stop waits for Janus to confirm the forwards are gone.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(3);

/// Where the Janus room is and who the mixer is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanusConfig {
    /// The Janus WebSocket API (`ws://host:8188/`).
    pub url: String,
    pub room: u64,
    pub display_name: String,
    pub secret: Option<String>,
    pub admin_key: Option<String>,
    /// The TextRoom of the meeting's notices (none: notices go to the webhook only).
    pub textroom: Option<u64>,
}

#[derive(Debug, Error)]
pub enum JanusError {
    #[error("cannot connect to Janus at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: WsError,
    },
    #[error("Janus WebSocket: {0}")]
    WebSocket(#[from] WsError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the mixer's RTCP socket: {0}")]
    Rtcp(#[source] std::io::Error),
    #[error("Janus closed the connection")]
    Closed,
}

// Rare messages: a notice inline (~300 bytes) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Command {
    Forward(ParticipantId),
    Keyframe(ParticipantId),
    Notice(Notice),
    Close(oneshot::Sender<()>),
}

pub struct JanusAdapter {
    events: mpsc::UnboundedReceiver<RosterEvent>,
    commands: mpsc::UnboundedSender<Command>,
}

impl JanusAdapter {
    /// Connects, joins the room and clears stale forwards; forwards go to
    /// `ingest_port` at the address this host has towards Janus.
    pub async fn connect(config: JanusConfig, ingest_port: u16) -> Result<Self, JanusError> {
        let ws = open(&config.url).await?;
        let (local, janus) = match ws.get_ref() {
            MaybeTlsStream::Plain(s) => (
                s.local_addr().map_err(JanusError::Rtcp)?,
                s.peer_addr().map_err(JanusError::Rtcp)?,
            ),
            _ => unreachable!("the client is built without TLS"),
        };
        let rtcp = UdpSocket::bind(SocketAddr::new(local.ip(), 0))
            .await
            .map_err(JanusError::Rtcp)?;
        let settings = Settings {
            room: config.room,
            display: config.display_name.clone(),
            creds: Credentials {
                secret: config.secret.clone(),
                admin_key: config.admin_key.clone(),
            },
            textroom: config.textroom,
            forward_host: local.ip().to_string(),
            ingest_port,
            rtcp_port: rtcp.local_addr().map_err(JanusError::Rtcp)?.port(),
        };
        let mut session = Session::new(settings, rand::random(), Instant::now().into_std());
        session.connected(Instant::now().into_std());
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let driver = Driver {
            session,
            rtcp,
            janus: janus.ip(),
            commands: commands_rx,
            events: events_tx,
            ready: Some(ready_tx),
        };
        tokio::spawn(driver.run(ws, config.url.clone()));
        match ready.await {
            Ok(Ok(())) => {
                info!(url = %config.url, room = config.room, "in the Janus VideoRoom");
                Ok(Self { events, commands })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JanusError::Closed),
        }
    }

    fn queue(&self, command: Command) -> Result<(), JanusError> {
        self.commands.send(command).map_err(|_| JanusError::Closed)
    }
}

async fn open(url: &str) -> Result<Ws, JanusError> {
    let connect = |source| JanusError::Connect {
        url: url.to_owned(),
        source,
    };
    let mut request = url.into_client_request().map_err(connect)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("janus-protocol"),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    // Nagle off: an announcement must go out at once.
    let (ws, _) = connect_async_with_config(request, Some(config), true)
        .await
        .map_err(connect)?;
    Ok(ws)
}

enum End {
    /// The connection or the session is gone.
    Lost(JanusError),
    /// The adapter asked to stop, or went away.
    Stopped,
}

struct Driver {
    session: Session,
    rtcp: UdpSocket,
    janus: IpAddr,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RosterEvent>,
    /// Until the first join: where its outcome goes.
    ready: Option<oneshot::Sender<Result<(), JanusError>>>,
}

impl Driver {
    async fn run(mut self, mut ws: Ws, url: String) {
        let mut attempt = 0;
        loop {
            match self.pump(&mut ws).await {
                End::Stopped => return,
                End::Lost(e) => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(e));
                        return;
                    }
                    warn!("Janus: {e}; reconnecting");
                }
            }
            ws = loop {
                tokio::time::sleep(reconnect_delay(attempt)).await;
                attempt = attempt.saturating_add(1);
                if self.commands.is_closed() {
                    return;
                }
                match open(&url).await {
                    Ok(ws) => break ws,
                    Err(e) => warn!("{e}"),
                }
            };
            info!(%url, "reconnected to Janus");
            attempt = 0;
            self.session.connected(Instant::now().into_std());
        }
    }

    /// Until the connection fails or the mixer stops.
    async fn pump(&mut self, ws: &mut Ws) -> End {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if let Err(e) = self.flush(ws).await {
                return End::Lost(e);
            }
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        self.session.on_message(text.as_str(), Instant::now().into_std())
                    }
                    Some(Ok(Message::Close(_))) | None => return End::Lost(JanusError::Closed),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Lost(e.into()),
                },
                command = self.commands.recv() => {
                    let now = Instant::now().into_std();
                    match command {
                        Some(Command::Forward(id)) => self.session.forward(&id, now),
                        Some(Command::Keyframe(id)) => self.session.request_keyframe(&id),
                        Some(Command::Notice(n)) => self.session.notice(&n, now),
                        Some(Command::Close(done)) => {
                            self.shut_down(ws).await;
                            let _ = done.send(());
                            return End::Stopped;
                        }
                        None => {
                            self.shut_down(ws).await;
                            return End::Stopped;
                        }
                    }
                }
                _ = tick.tick() => self.session.tick(Instant::now().into_std()),
            }
        }
    }

    /// Does what the session asks for.
    async fn flush(&mut self, ws: &mut Ws) -> Result<(), JanusError> {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Send(text) => ws.send(Message::Text(text.into())).await?,
                Output::Roster(event) => {
                    let _ = self.events.send(event);
                }
                Output::Pli {
                    rtcp_port,
                    media_ssrc,
                } => {
                    let pli = rtcp::pli(MIXER_SSRC, media_ssrc).expect("a PLI always encodes");
                    let to = SocketAddr::new(self.janus, rtcp_port);
                    if let Err(e) = self.rtcp.send_to(&pli, to).await {
                        warn!(%to, "PLI to Janus: {e}");
                    }
                }
                Output::Ready => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                Output::Failed(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops the forwards (waiting a little for Janus to confirm), then the session.
    async fn shut_down(&mut self, ws: &mut Ws) {
        self.session.shutdown(Instant::now().into_std());
        let deadline = Instant::now() + SHUTDOWN_PATIENCE;
        while self.session.stops_pending() {
            if self.flush(ws).await.is_err() {
                return;
            }
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => self
                    .session
                    .on_message(text.as_str(), Instant::now().into_std()),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        self.session.destroy(Instant::now().into_std());
        let _ = self.flush(ws).await;
        let _ = ws.close(None).await;
        debug!("left Janus");
    }
}

impl SfuAdapter for JanusAdapter {
    type Error = JanusError;

    async fn next_event(&mut self) -> Result<Option<RosterEvent>, JanusError> {
        Ok(self.events.recv().await)
    }

    fn forward(&self, participant: &ParticipantId) -> Result<(), JanusError> {
        self.queue(Command::Forward(participant.clone()))
    }

    fn request_keyframe(&self, participant: &ParticipantId) -> Result<(), JanusError> {
        self.queue(Command::Keyframe(participant.clone()))
    }

    fn send_notice(&self, notice: Notice) -> Result<(), JanusError> {
        self.queue(Command::Notice(notice))
    }

    async fn close(&mut self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}
