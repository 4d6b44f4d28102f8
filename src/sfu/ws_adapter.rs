//! [`SfuAdapter`] over the WebSocket control channel ([`super::control`]): the mixer
//! connects to the SFU's control URL, says hello with its RTP ports, and from then on
//! reads roster changes while notices and requests go out through a writer task, so
//! sending never waits for the roster.

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};
use tracing::{debug, info};

use super::adapter::SfuAdapter;
use super::channel::{self, ws_config, ChannelError};
use super::control::{Hello, MixerMessage, ParticipantId, SfuMessage, CONTROL_VERSION};
use super::notice::Notice;
use super::roster::{Roster, RosterError, RosterEvent};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Error)]
pub enum WsAdapterError {
    #[error("cannot connect to the SFU control channel at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: WsError,
    },
    #[error("SFU control channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("the SFU speaks control protocol version {0}, this mixer version {CONTROL_VERSION}")]
    Version(u16),
    #[error("the SFU sent {0} before its welcome")]
    NoWelcome(String),
    /// The SFU announced something inconsistent; the roster is unchanged and the
    /// channel still usable.
    #[error("SFU roster: {0}")]
    Roster(#[from] RosterError),
    #[error("the SFU control channel is closed")]
    Closed,
}

pub struct WsSfuAdapter {
    reader: SplitStream<Ws>,
    out: mpsc::UnboundedSender<MixerMessage>,
    roster: Roster,
    sfu: String,
}

impl WsSfuAdapter {
    /// Connects to `url` (`ws://host:port/...`), sends `hello` and waits for the
    /// SFU's welcome.
    pub async fn connect(url: &str, hello: Hello) -> Result<Self, WsAdapterError> {
        // Nagle off: a notice is one small frame that must go out at once, not wait
        // for the acknowledgement of the one before.
        let disable_nagle = true;
        let (ws, _) = connect_async_with_config(url, Some(ws_config()), disable_nagle)
            .await
            .map_err(|source| WsAdapterError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let (mut sink, mut reader) = ws.split();
        channel::send(&mut sink, &MixerMessage::Hello(hello)).await?;
        let sfu = match channel::recv::<SfuMessage, _>(&mut reader).await? {
            Some(SfuMessage::Welcome { version, sfu }) if version == CONTROL_VERSION => sfu,
            Some(SfuMessage::Welcome { version, .. }) => {
                return Err(WsAdapterError::Version(version))
            }
            Some(other) => return Err(WsAdapterError::NoWelcome(format!("{other:?}"))),
            None => return Err(WsAdapterError::Closed),
        };
        info!(%url, sfu = %sfu, "SFU control channel open");
        let (out, mut queue) = mpsc::unbounded_channel();
        // Ends once the adapter is dropped and what it queued is written.
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if let Err(e) = channel::send(&mut sink, &message).await {
                    debug!("SFU control channel write: {e}");
                    return;
                }
            }
        });
        Ok(Self {
            reader,
            out,
            roster: Roster::default(),
            sfu: sfu.to_string(),
        })
    }

    /// The SFU's name from its welcome.
    pub fn sfu(&self) -> &str {
        &self.sfu
    }

    /// The participants currently in the meeting.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    fn queue(&self, message: MixerMessage) -> Result<(), WsAdapterError> {
        self.out.send(message).map_err(|_| WsAdapterError::Closed)
    }
}

impl SfuAdapter for WsSfuAdapter {
    type Error = WsAdapterError;

    async fn next_event(&mut self) -> Result<Option<RosterEvent>, WsAdapterError> {
        loop {
            let Some(message) = channel::recv::<SfuMessage, _>(&mut self.reader).await? else {
                return Ok(None);
            };
            if let Some(event) = self.roster.apply(message)? {
                return Ok(Some(event));
            }
        }
    }

    fn forward(&self, participant: &ParticipantId) -> Result<(), WsAdapterError> {
        self.queue(MixerMessage::Forward {
            id: participant.clone(),
        })
    }

    fn request_keyframe(&self, participant: &ParticipantId) -> Result<(), WsAdapterError> {
        self.queue(MixerMessage::KeyframeRequest {
            id: participant.clone(),
        })
    }

    fn send_notice(&self, notice: Notice) -> Result<(), WsAdapterError> {
        self.queue(MixerMessage::Notice(notice))
    }
}
