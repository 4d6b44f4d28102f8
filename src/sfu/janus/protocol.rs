//! The Janus WebSocket API (subprotocol `janus-protocol`), as much of it as the
//! mixer uses: requests built as JSON text, and what Janus sends parsed into typed
//! messages. Sans-IO; parsing never panics and bounds what it accepts.
//!
//! Requests carry a `transaction` that Janus echoes in its answers: `ack` first for
//! asynchronous plugin requests (`join`), then an `event` with the plugin's answer;
//! synchronous ones (`rtp_forward`, `announcement`) get a `success` with the plugin
//! data at once. Events without a transaction (`publishers`, `unpublished`,
//! `leaving`) are the room's news.

use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// Largest message from Janus accepted (a `joined` with 16 publishers is ~4 kB).
pub(crate) const MAX_MESSAGE: usize = 256 * 1024;

pub(crate) const VIDEOROOM: &str = "janus.plugin.videoroom";
pub(crate) const TEXTROOM: &str = "janus.plugin.textroom";

#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("Janus message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLong(usize),
    #[error("malformed Janus message: {0}")]
    Json(#[from] serde_json::Error),
}

/// One request to Janus, before its transaction is given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Create,
    Keepalive {
        session: u64,
    },
    Attach {
        session: u64,
        plugin: &'static str,
    },
    /// A plugin request on a handle (`body` is the plugin's JSON).
    Message {
        session: u64,
        handle: u64,
        body: Value,
    },
    Destroy {
        session: u64,
    },
}

impl Request {
    /// The request's JSON text with `transaction`.
    pub(crate) fn to_json(&self, transaction: &str) -> String {
        let v = match self {
            Request::Create => json!({"janus": "create", "transaction": transaction}),
            Request::Keepalive { session } => {
                json!({"janus": "keepalive", "session_id": session, "transaction": transaction})
            }
            Request::Attach { session, plugin } => json!({
                "janus": "attach", "session_id": session, "plugin": plugin,
                "transaction": transaction
            }),
            Request::Message {
                session,
                handle,
                body,
            } => json!({
                "janus": "message", "session_id": session, "handle_id": handle,
                "transaction": transaction, "body": body
            }),
            Request::Destroy { session } => {
                json!({"janus": "destroy", "session_id": session, "transaction": transaction})
            }
        };
        v.to_string()
    }
}

/// Room credentials: Janus wants both for `rtp_forward` when the room has a secret
/// and the plugin `lock_rtp_forward`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub(crate) secret: Option<String>,
    pub(crate) admin_key: Option<String>,
}

impl Credentials {
    fn add_to(&self, body: &mut Value) {
        if let Some(s) = &self.secret {
            body["secret"] = json!(s);
        }
        if let Some(k) = &self.admin_key {
            body["admin_key"] = json!(k);
        }
    }
}

/// Join the VideoRoom as a participant with a name that never publishes.
pub(crate) fn join(room: u64, display: &str) -> Value {
    json!({"request": "join", "ptype": "publisher", "room": room, "display": display})
}

/// One stream of a forward: the publisher's `mid` to `port`, rewritten to `ssrc`
/// and `pt` so the mixer knows in advance what arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardStream {
    pub(crate) mid: String,
    pub(crate) port: u16,
    pub(crate) ssrc: u32,
    pub(crate) pt: u8,
    /// Where Janus expects RTCP feedback from (video: PLI for keyframes).
    pub(crate) rtcp_port: Option<u16>,
}

pub(crate) fn rtp_forward(
    room: u64,
    publisher: u64,
    host: &str,
    streams: &[ForwardStream],
    creds: &Credentials,
) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            let mut v = json!({"mid": s.mid, "port": s.port, "ssrc": s.ssrc, "pt": s.pt});
            if let Some(p) = s.rtcp_port {
                v["rtcp_port"] = json!(p);
            }
            v
        })
        .collect();
    let mut body = json!({
        "request": "rtp_forward", "room": room, "publisher_id": publisher, "host": host,
        "streams": streams
    });
    creds.add_to(&mut body);
    body
}

pub(crate) fn stop_rtp_forward(
    room: u64,
    publisher: u64,
    stream_id: u64,
    creds: &Credentials,
) -> Value {
    let mut body = json!({
        "request": "stop_rtp_forward", "room": room, "publisher_id": publisher,
        "stream_id": stream_id
    });
    creds.add_to(&mut body);
    body
}

pub(crate) fn list_forwarders(room: u64, creds: &Credentials) -> Value {
    let mut body = json!({"request": "listforwarders", "room": room});
    creds.add_to(&mut body);
    body
}

/// A TextRoom announcement: every joined terminal's data channel gets `text`.
pub(crate) fn announcement(room: u64, text: &str, secret: Option<&str>) -> Value {
    let mut body = json!({"request": "announcement", "room": room, "text": text});
    if let Some(s) = secret {
        body["secret"] = json!(s);
    }
    body
}

/// What Janus sends, as far as the mixer cares.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub(crate) transaction: Option<String>,
    /// The handle it concerns (`sender`).
    sender: Option<u64>,
    pub(crate) kind: IncomingKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IncomingKind {
    /// Request received; the answer comes as an event.
    Ack,
    /// `create` / `attach` answered: the new session or handle id.
    Created(u64),
    /// A plugin's answer or news (synchronous `success` or asynchronous `event`).
    Plugin(PluginData),
    /// Success without data (`destroy`, `detach`).
    Success,
    Error {
        code: i64,
        reason: String,
    },
    /// The session timed out at Janus: it is gone.
    Timeout,
    /// Something else (`webrtcup`, `media`, `detached`, ...): nothing for the mixer.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PluginData {
    VideoRoom(VideoRoomData),
    /// A TextRoom answer: `Ok` or the plugin's error.
    TextRoom(Result<(), PluginError>),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub(crate) code: i64,
    pub(crate) reason: String,
}

/// A publisher as the VideoRoom describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Publisher {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) display: Option<String>,
    #[serde(default)]
    pub(crate) streams: Vec<PublisherStream>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PublisherStream {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) mid: String,
    #[serde(default)]
    pub(crate) codec: Option<String>,
    #[serde(default)]
    pub(crate) disabled: bool,
}

/// One forwarder Janus created or lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Forwarder {
    pub(crate) stream_id: u64,
    #[serde(default)]
    pub(crate) host: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<u16>,
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) local_rtcp_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PublisherForwarders {
    pub(crate) publisher_id: u64,
    #[serde(default)]
    pub(crate) forwarders: Vec<Forwarder>,
}

/// The VideoRoom's answers and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VideoRoomData {
    /// The answer to `join`: who already publishes.
    Joined {
        id: u64,
        publishers: Vec<Publisher>,
    },
    /// New or changed publishers.
    Publishers(Vec<Publisher>),
    Unpublished(u64),
    Leaving(u64),
    Forwarded {
        publisher: u64,
        forwarders: Vec<Forwarder>,
    },
    ForwardStopped(u64),
    Forwarders(Vec<PublisherForwarders>),
    Error(PluginError),
    /// An event of no interest (`joining`, `configured`, our own `leaving: "ok"`).
    Other,
}

#[derive(Deserialize)]
struct RawMessage {
    janus: String,
    #[serde(default)]
    transaction: Option<String>,
    #[serde(default)]
    sender: Option<u64>,
    #[serde(default)]
    data: Option<RawId>,
    #[serde(default)]
    plugindata: Option<RawPluginData>,
    #[serde(default)]
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawId {
    id: u64,
}

#[derive(Deserialize)]
struct RawPluginData {
    plugin: String,
    data: Value,
}

#[derive(Deserialize)]
struct RawError {
    code: i64,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawVideoRoom {
    videoroom: String,
    id: Option<u64>,
    publishers: Option<Value>,
    unpublished: Option<Value>,
    leaving: Option<Value>,
    publisher_id: Option<u64>,
    forwarders: Option<Vec<Forwarder>>,
    stream_id: Option<u64>,
    error_code: Option<i64>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTextRoom {
    textroom: String,
    error_code: Option<i64>,
    error: Option<String>,
}

/// Parses one text frame from Janus.
pub fn parse(text: &str) -> Result<Incoming, ProtocolError> {
    if text.len() > MAX_MESSAGE {
        return Err(ProtocolError::TooLong(text.len()));
    }
    let raw: RawMessage = serde_json::from_str(text)?;
    let kind = match raw.janus.as_str() {
        "ack" => IncomingKind::Ack,
        "timeout" => IncomingKind::Timeout,
        "error" => {
            let e = raw.error.unwrap_or(RawError {
                code: 0,
                reason: String::new(),
            });
            IncomingKind::Error {
                code: e.code,
                reason: e.reason,
            }
        }
        "success" | "event" => match (raw.plugindata, raw.data) {
            (Some(p), _) => IncomingKind::Plugin(plugin_data(p)?),
            (None, Some(d)) => IncomingKind::Created(d.id),
            (None, None) => IncomingKind::Success,
        },
        other => IncomingKind::Other(other.to_owned()),
    };
    Ok(Incoming {
        transaction: raw.transaction,
        sender: raw.sender,
        kind,
    })
}

fn plugin_data(p: RawPluginData) -> Result<PluginData, ProtocolError> {
    Ok(match p.plugin.as_str() {
        VIDEOROOM => PluginData::VideoRoom(video_room(serde_json::from_value(p.data)?)?),
        TEXTROOM => {
            let t: RawTextRoom = serde_json::from_value(p.data)?;
            PluginData::TextRoom(match (t.textroom.as_str(), t.error_code) {
                (_, Some(code)) => Err(PluginError {
                    code,
                    reason: t.error.unwrap_or_default(),
                }),
                ("error", None) => Err(PluginError {
                    code: 0,
                    reason: t.error.unwrap_or_default(),
                }),
                _ => Ok(()),
            })
        }
        other => PluginData::Unknown(other.to_owned()),
    })
}

fn video_room(v: RawVideoRoom) -> Result<VideoRoomData, ProtocolError> {
    if let Some(code) = v.error_code {
        return Ok(VideoRoomData::Error(PluginError {
            code,
            reason: v.error.unwrap_or_default(),
        }));
    }
    let publishers = |p: Option<Value>| -> Result<Vec<Publisher>, ProtocolError> {
        Ok(p.map(serde_json::from_value)
            .transpose()?
            .unwrap_or_default())
    };
    Ok(match v.videoroom.as_str() {
        "joined" => VideoRoomData::Joined {
            id: v.id.unwrap_or(0),
            publishers: publishers(v.publishers)?,
        },
        "rtp_forward" => VideoRoomData::Forwarded {
            publisher: v.publisher_id.unwrap_or(0),
            forwarders: v.forwarders.unwrap_or_default(),
        },
        "stop_rtp_forward" => VideoRoomData::ForwardStopped(v.stream_id.unwrap_or(0)),
        // Here `publishers` are forwarder lists, not the room's publishers.
        "forwarders" => VideoRoomData::Forwarders(
            v.publishers
                .map(serde_json::from_value)
                .transpose()?
                .unwrap_or_default(),
        ),
        "event" => {
            // Our own unpublish/leave answers say "ok" instead of an id.
            if let Some(id) = v.unpublished.as_ref().and_then(Value::as_u64) {
                VideoRoomData::Unpublished(id)
            } else if let Some(id) = v.leaving.as_ref().and_then(Value::as_u64) {
                VideoRoomData::Leaving(id)
            } else if v.publishers.is_some() {
                VideoRoomData::Publishers(publishers(v.publishers)?)
            } else {
                VideoRoomData::Other
            }
        }
        _ => VideoRoomData::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_are_as_janus_documents_them() {
        let creds = Credentials {
            secret: Some("adminpwd".into()),
            admin_key: Some("key".into()),
        };
        let streams = [
            ForwardStream {
                mid: "video0".into(),
                port: 5002,
                ssrc: 7,
                pt: 96,
                rtcp_port: Some(5003),
            },
            ForwardStream {
                mid: "audio1".into(),
                port: 5002,
                ssrc: 8,
                pt: 111,
                rtcp_port: None,
            },
        ];
        let body = rtp_forward(1234, 99, "127.0.0.1", &streams, &creds);
        assert_eq!(
            body,
            json!({"request": "rtp_forward", "room": 1234, "publisher_id": 99, "host": "127.0.0.1",
                   "secret": "adminpwd", "admin_key": "key",
                   "streams": [{"mid": "video0", "port": 5002, "ssrc": 7, "pt": 96, "rtcp_port": 5003},
                               {"mid": "audio1", "port": 5002, "ssrc": 8, "pt": 111}]})
        );
        let m = Request::Message {
            session: 1,
            handle: 2,
            body: join(1234, "recbox"),
        };
        let v: Value = serde_json::from_str(&m.to_json("t1")).unwrap();
        assert_eq!(v["janus"], "message");
        assert_eq!(v["handle_id"], 2);
        assert_eq!(v["transaction"], "t1");
        assert_eq!(v["body"]["ptype"], "publisher");
        assert_eq!(
            announcement(1234, "hi", None),
            json!({"request": "announcement", "room": 1234, "text": "hi"})
        );
        assert_eq!(
            stop_rtp_forward(1, 2, 3, &Credentials::default()),
            json!({"request": "stop_rtp_forward", "room": 1, "publisher_id": 2, "stream_id": 3})
        );
    }

    #[test]
    fn parses_what_janus_1_1_sends() {
        let created = parse(r#"{"janus":"success","transaction":"a","data":{"id":42}}"#).unwrap();
        assert_eq!(created.kind, IncomingKind::Created(42));
        assert_eq!(created.transaction.as_deref(), Some("a"));
        let joined = parse(
            r#"{"janus":"event","session_id":1,"transaction":"j","sender":5,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"joined","room":1234,"id":77,"private_id":1,"publishers":[{"id":6862643080778317,"display":"dave","video_codec":"h264","audio_codec":"opus","streams":[{"type":"video","mindex":0,"mid":"video0","codec":"h264"},{"type":"audio","mindex":1,"mid":"audio1","codec":"opus","stereo":true}]}],"attendees":[]}}}"#,
        )
        .unwrap();
        let IncomingKind::Plugin(PluginData::VideoRoom(VideoRoomData::Joined { id, publishers })) =
            joined.kind
        else {
            panic!("{joined:?}")
        };
        assert_eq!(id, 77);
        assert_eq!(publishers[0].display.as_deref(), Some("dave"));
        assert_eq!(publishers[0].streams[1].codec.as_deref(), Some("opus"));
        let ev = |data: &str| {
            let text = format!(
                r#"{{"janus":"event","sender":5,"plugindata":{{"plugin":"janus.plugin.videoroom","data":{data}}}}}"#
            );
            match parse(&text).unwrap().kind {
                IncomingKind::Plugin(PluginData::VideoRoom(v)) => v,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            ev(r#"{"videoroom":"event","room":1234,"unpublished":9}"#),
            VideoRoomData::Unpublished(9)
        );
        assert_eq!(
            ev(r#"{"videoroom":"event","room":1234,"leaving":9}"#),
            VideoRoomData::Leaving(9)
        );
        assert_eq!(
            ev(r#"{"videoroom":"event","leaving":"ok"}"#),
            VideoRoomData::Other
        );
        assert_eq!(
            ev(r#"{"videoroom":"event","room":1,"joining":{"id":3,"display":"x"}}"#),
            VideoRoomData::Other
        );
        assert_eq!(
            ev(r#"{"videoroom":"event","error_code":426,"error":"No such room (1)"}"#),
            VideoRoomData::Error(PluginError {
                code: 426,
                reason: "No such room (1)".into()
            })
        );
        let fwd = ev(
            r#"{"videoroom":"rtp_forward","room":1234,"publisher_id":3,"forwarders":[{"stream_id":20,"host":"127.0.0.1","port":5002,"type":"video","local_rtcp_port":39778,"remote_rtcp_port":5003},{"stream_id":30,"host":"127.0.0.1","port":5004,"type":"audio"}]}"#,
        );
        let VideoRoomData::Forwarded {
            publisher,
            forwarders,
        } = fwd
        else {
            panic!()
        };
        assert_eq!(publisher, 3);
        assert_eq!(forwarders[0].local_rtcp_port, Some(39778));
        assert_eq!(forwarders[1].kind.as_deref(), Some("audio"));
        let err = parse(r#"{"janus":"error","transaction":"x","error":{"code":458,"reason":"No such session"}}"#)
            .unwrap();
        assert_eq!(
            err.kind,
            IncomingKind::Error {
                code: 458,
                reason: "No such session".into()
            }
        );
        let tr = parse(r#"{"janus":"success","transaction":"t","sender":3,"plugindata":{"plugin":"janus.plugin.textroom","data":{"textroom":"success"}}}"#).unwrap();
        assert_eq!(tr.kind, IncomingKind::Plugin(PluginData::TextRoom(Ok(()))));
        let list = r#"{"janus":"success","transaction":"l","sender":5,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"forwarders","room":1234,"publishers":[{"publisher_id":3,"display":"a","forwarders":[{"stream_id":20,"host":"127.0.0.1","port":5002,"type":"video"}]}]}}}"#;
        let IncomingKind::Plugin(PluginData::VideoRoom(VideoRoomData::Forwarders(list))) =
            parse(list).unwrap().kind
        else {
            panic!()
        };
        assert_eq!(
            (list[0].publisher_id, list[0].forwarders[0].stream_id),
            (3, 20)
        );
        assert_eq!(
            parse(r#"{"janus":"webrtcup","session_id":1}"#)
                .unwrap()
                .kind,
            IncomingKind::Other("webrtcup".into())
        );
    }

    #[test]
    fn refuses_junk_and_floods() {
        assert!(parse("{").is_err());
        assert!(parse(r#"{"janus":"event","plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","publishers":[{"id":"x"}]}}}"#).is_err());
        assert!(matches!(
            parse(&" ".repeat(MAX_MESSAGE + 1)),
            Err(ProtocolError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = parse(&s);
        }
    }
}
