//! The mixer's end of the media link: connects, authenticates both ends (nothing
//! but the handshake goes out before the recorder proved the key), opens the
//! session, then sends Start/Media/Stop while every frame the recorder sends back (faults,
//! stats, acknowledgements) is delivered as an event as soon as it arrives.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::link::frame::{Frame, Media, RecordingId, StartParams};
use crate::link::handshake::LinkKey;
use crate::link::session::{MixerEvent, MixerSession, SessionError};
use crate::link::transport::{connect, FrameReader, FrameSender, LinkAddr, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("media link to {addr}: {source}")]
    Transport {
        addr: String,
        #[source]
        source: TransportError,
    },
    #[error("recorder refused the link: {0}")]
    Rejected(String),
    #[error("link protocol: {0}")]
    Session(#[from] SessionError),
    #[error("the recorder closed the link during the handshake")]
    ClosedInHandshake,
    #[error("the media link is closed")]
    Closed,
    #[error("the recorder did not complete the handshake within {0:?}")]
    HandshakeTimeout(std::time::Duration),
}

/// Why an established link ended other than by the recorder closing it.
#[derive(Debug, thiserror::Error)]
pub enum LinkEnded {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("link protocol: {0}")]
    Session(#[from] SessionError),
}

/// What the recorder said, or what happened to the link.
// A few events a second: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum UplinkEvent {
    Recorder(MixerEvent),
    /// The link ended; `None` for a clean close by the recorder.
    Closed(Option<LinkEnded>),
}

pub struct Uplink {
    sender: FrameSender,
    events: mpsc::UnboundedReceiver<UplinkEvent>,
    reader_task: JoinHandle<()>,
}

impl Uplink {
    /// Connects and completes the handshake for `recording`.
    pub async fn connect(
        addr: &LinkAddr,
        key: LinkKey,
        recording: RecordingId,
        max_frame: usize,
    ) -> Result<Self, UplinkError> {
        let transport = |source| UplinkError::Transport {
            addr: addr.to_string(),
            source,
        };
        let (mut reader, sender) = connect(addr, &key, max_frame).await.map_err(transport)?;
        let (mut session, hello) = MixerSession::new(recording);
        sender.send(hello).await.map_err(transport)?;
        while !session.is_ready() {
            let frame = reader
                .next()
                .await
                .map_err(transport)?
                .ok_or(UplinkError::ClosedInHandshake)?;
            if let MixerEvent::Rejected { reason } = session.on_frame(frame)? {
                return Err(UplinkError::Rejected(reason));
            }
        }
        let (tx, events) = mpsc::unbounded_channel();
        let reader_task = tokio::spawn(forward_events(reader, session, tx));
        Ok(Self {
            sender,
            events,
            reader_task,
        })
    }

    pub async fn start(&self, params: StartParams) -> Result<(), UplinkError> {
        self.send(Frame::Start(params)).await
    }

    pub async fn media(&self, media: Media) -> Result<(), UplinkError> {
        self.send(Frame::Media(media)).await
    }

    pub async fn stop(&self) -> Result<(), UplinkError> {
        self.send(Frame::Stop).await
    }

    pub async fn ping(&self, seq: u64) -> Result<(), UplinkError> {
        self.send(Frame::Ping { seq }).await
    }

    /// Whether media would be queued at once (false while the recorder is not
    /// taking what was sent).
    pub(crate) fn has_room(&self) -> bool {
        self.sender.has_room()
    }

    async fn send(&self, frame: Frame) -> Result<(), UplinkError> {
        self.sender
            .send(frame)
            .await
            .map_err(|_| UplinkError::Closed)
    }

    /// The next event from the recorder; `None` once the link is gone and drained.
    pub async fn next_event(&mut self) -> Option<UplinkEvent> {
        self.events.recv().await
    }

    /// An event if one is waiting, without blocking.
    pub fn try_event(&mut self) -> Option<UplinkEvent> {
        self.events.try_recv().ok()
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

/// Reads frames from the recorder for as long as the link lives, so a fault is seen
/// the moment it arrives, whatever the sending side is doing.
async fn forward_events(
    mut reader: FrameReader,
    mut session: MixerSession,
    tx: mpsc::UnboundedSender<UplinkEvent>,
) {
    let end = loop {
        match reader.next().await {
            Ok(Some(frame)) => match session.on_frame(frame) {
                Ok(event) => {
                    if tx.send(UplinkEvent::Recorder(event)).is_err() {
                        return;
                    }
                }
                Err(e) => break Some(e.into()),
            },
            Ok(None) => break None,
            Err(e) => break Some(e.into()),
        }
    };
    let _ = tx.send(UplinkEvent::Closed(end));
}
