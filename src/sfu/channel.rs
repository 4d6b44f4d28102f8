//! The control channel's framing on a WebSocket: one JSON control message per text
//! frame. Shared by the mixer's adapter and the simulated SFU.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::control::{self, ControlError, Validate, MAX_MESSAGE};

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("WebSocket: {0}")]
    WebSocket(#[from] WsError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("binary WebSocket frame on the JSON control channel")]
    Binary,
}

/// Bounds what the other side can make us buffer.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// The next control message; `Ok(None)` when the peer closed the channel. Pings are
/// answered by the WebSocket layer and skipped here.
pub async fn recv<T, S>(stream: &mut S) -> Result<Option<T>, ChannelError>
where
    T: DeserializeOwned + Validate,
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    while let Some(message) = stream.next().await {
        match message? {
            Message::Text(text) => return Ok(Some(control::decode(text.as_str())?)),
            Message::Binary(_) => return Err(ChannelError::Binary),
            Message::Close(_) => return Ok(None),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    Ok(None)
}

pub async fn send<T, S>(sink: &mut S, message: &T) -> Result<(), ChannelError>
where
    T: Serialize,
    S: Sink<Message, Error = WsError> + Unpin,
{
    let text = control::encode(message)?;
    sink.send(Message::Text(text.into())).await?;
    Ok(())
}
