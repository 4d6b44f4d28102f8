//! The mixer's life in a Janus VideoRoom, sans-IO: Janus's messages, the mixer's
//! requests and time go in; text frames to send, roster events and PLIs to send come
//! out.
//!
//! Setup: `create` a session, `attach` the VideoRoom (and the TextRoom for notices),
//! `join` the room as a participant that never publishes, then `listforwarders` and
//! stop every forward that still points at this mixer's ingest (left by an earlier
//! run or by the connection before a reconnection), and only then forward. A
//! publisher becomes a participant with SSRCs the mixer chose, kept across
//! reconnections, so the ingest's streams stay valid while the forwards are renewed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, warn};

use super::protocol::{
    self, Credentials, ForwardStream, Incoming, IncomingKind, PluginData, PluginError, Publisher,
    PublisherForwarders, Request, VideoRoomData, TEXTROOM, VIDEOROOM,
};
use crate::link::frame::text;
use crate::media::codec::Codec;
use crate::sfu::control::{ParticipantId, ParticipantInfo, StreamInfo};
use crate::sfu::notice::{Announcement, Audience, Notice};
use crate::sfu::roster::RosterEvent;

/// Keepalives well under Janus's default `session_timeout` of 60 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// A request without an answer by then has failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of one forward before the publisher is given up (logged).
const FORWARD_ATTEMPTS: u32 = 3;
/// Delay before a refused forward is tried again.
const FORWARD_RETRY: Duration = Duration::from_secs(1);
/// Notices held while Janus is away (oldest dropped first, with a warning).
const HELD_NOTICES: usize = 64;
/// Payload types the forwards rewrite to, so the mixer knows them in advance
/// whatever the browser negotiated (GStreamer 96, Chromium 108 for H.264).
const AUDIO_PT: u8 = 111;
const VIDEO_PT: u8 = 96;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("Janus refused {request}: {} (code {})", .error.reason, .error.code)]
    Refused {
        request: &'static str,
        error: PluginError,
    },
    #[error("no answer from Janus to {0} within {ANSWER_TIMEOUT:?}")]
    NoAnswer(&'static str),
    #[error("the Janus session timed out")]
    SessionLost,
}

/// Who the mixer is in the room and where its media goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub room: u64,
    pub display: String,
    pub creds: Credentials,
    /// The TextRoom (same secret as the VideoRoom) that carries notices.
    pub textroom: Option<u64>,
    /// The mixer's address as Janus reaches it.
    pub forward_host: String,
    pub ingest_port: u16,
    /// Where Janus's video forwarders expect RTCP from (the mixer's PLI socket).
    pub rtcp_port: u16,
}

/// What the IO shell does next.
// A roster event (a participant, ~350 bytes) inline: a few per meeting, not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(String),
    Roster(RosterEvent),
    /// An RTCP PLI for `media_ssrc` to Janus's forwarder at `rtcp_port`.
    Pli {
        rtcp_port: u16,
        media_ssrc: u32,
    },
    /// In the room, stale forwards gone: the mixer's forwards can start.
    Ready,
    /// The session is unusable (the shell reconnects, or gives up before the first
    /// `Ready`).
    Failed(SessionError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Create,
    AttachVideoRoom,
    AttachTextRoom,
    Join,
    ListForwarders,
    Forward(u64),
    StopForward,
    Announcement,
    Keepalive,
    Destroy,
}

impl Pending {
    fn name(&self) -> &'static str {
        match self {
            Pending::Create => "create",
            Pending::AttachVideoRoom => "attach videoroom",
            Pending::AttachTextRoom => "attach textroom",
            Pending::Join => "join",
            Pending::ListForwarders => "listforwarders",
            Pending::Forward(_) => "rtp_forward",
            Pending::StopForward => "stop_rtp_forward",
            Pending::Announcement => "announcement",
            Pending::Keepalive => "keepalive",
            Pending::Destroy => "destroy",
        }
    }

    /// Failing these leaves the mixer outside the room.
    fn is_setup(&self) -> bool {
        matches!(
            self,
            Pending::Create
                | Pending::AttachVideoRoom
                | Pending::AttachTextRoom
                | Pending::Join
                | Pending::ListForwarders
        )
    }
}

/// A publisher of the room.
#[derive(Debug, Clone)]
struct Member {
    info: ParticipantInfo,
    audio_mid: Option<String>,
    /// The video's mid, when its codec is one the mixer decodes.
    video_mid: Option<String>,
    wanted: bool,
    forwards: Vec<u64>,
    video_rtcp: Option<u16>,
    attempts: u32,
    retry_at: Option<Instant>,
    /// Forwarded before: a new forward (after a reconnection) is a renewal.
    forwarded: bool,
}

pub struct Session {
    settings: Settings,
    session: Option<u64>,
    videoroom: Option<u64>,
    textroom: Option<u64>,
    ready: bool,
    pending: HashMap<String, (Pending, Instant)>,
    next_transaction: u64,
    last_keepalive: Instant,
    members: BTreeMap<u64, Member>,
    next_ssrc: u32,
    held: VecDeque<String>,
    out: VecDeque<Output>,
}

impl Session {
    /// `ssrc_base` (random) starts the SSRCs the mixer gives the forwards.
    pub fn new(settings: Settings, ssrc_base: u32, now: Instant) -> Self {
        Self {
            settings,
            session: None,
            videoroom: None,
            textroom: None,
            ready: false,
            pending: HashMap::new(),
            next_transaction: 0,
            last_keepalive: now,
            members: BTreeMap::new(),
            next_ssrc: ssrc_base,
            held: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// A new connection to Janus: everything starts again from `create`; the
    /// publishers known so far stay until the new `joined` says who is still there.
    pub fn connected(&mut self, now: Instant) {
        self.session = None;
        self.videoroom = None;
        self.textroom = None;
        self.ready = false;
        self.pending.clear();
        for m in self.members.values_mut() {
            m.forwards.clear();
            m.video_rtcp = None;
            m.attempts = 0;
            m.retry_at = None;
        }
        self.last_keepalive = now;
        self.request(Request::Create, Pending::Create, now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    #[cfg(test)]
    fn is_ready(&self) -> bool {
        self.ready
    }

    /// One text frame from Janus.
    pub fn on_message(&mut self, text: &str, now: Instant) {
        let incoming = match protocol::parse(text) {
            Ok(i) => i,
            Err(e) => {
                warn!("Janus: {e}");
                return;
            }
        };
        let Incoming {
            transaction, kind, ..
        } = incoming;
        if kind == IncomingKind::Timeout {
            self.fail(SessionError::SessionLost);
            return;
        }
        // Acks keep a request pending, its answer comes as an event; but the ack
        // is all Janus answers to a keepalive.
        if kind == IncomingKind::Ack {
            if let Some(t) = transaction.as_deref() {
                if self
                    .pending
                    .get(t)
                    .is_some_and(|(p, _)| *p == Pending::Keepalive)
                {
                    self.pending.remove(t);
                }
            }
            return;
        }
        let (pending, sent) = transaction
            .as_deref()
            .and_then(|t| self.pending.remove(t))
            .unzip();
        match (pending, kind) {
            (Some(p), IncomingKind::Error { code, reason }) => {
                self.refused(p, PluginError { code, reason }, now)
            }
            (Some(p), IncomingKind::Plugin(PluginData::VideoRoom(VideoRoomData::Error(e)))) => {
                self.refused(p, e, now)
            }
            (Some(p), IncomingKind::Plugin(PluginData::TextRoom(Err(e)))) => {
                self.refused(p, e, now)
            }
            (Some(Pending::Create), IncomingKind::Created(id)) => {
                self.session = Some(id);
                self.request(
                    Request::Attach {
                        session: id,
                        plugin: VIDEOROOM,
                    },
                    Pending::AttachVideoRoom,
                    now,
                );
                if self.settings.textroom.is_some() {
                    self.request(
                        Request::Attach {
                            session: id,
                            plugin: TEXTROOM,
                        },
                        Pending::AttachTextRoom,
                        now,
                    );
                }
            }
            (Some(Pending::AttachVideoRoom), IncomingKind::Created(id)) => {
                self.videoroom = Some(id);
                let body = protocol::join(self.settings.room, &self.settings.display);
                self.message(id, body, Pending::Join, now);
            }
            (Some(Pending::AttachTextRoom), IncomingKind::Created(id)) => {
                self.textroom = Some(id);
                while let Some(text) = self.held.pop_front() {
                    self.announce(&text, now);
                }
            }
            (Some(Pending::Join), IncomingKind::Plugin(PluginData::VideoRoom(v))) => {
                if let VideoRoomData::Joined { id, publishers } = v {
                    info!(room = self.settings.room, id, "joined the Janus VideoRoom");
                    self.reconcile(publishers);
                    let body = protocol::list_forwarders(self.settings.room, &self.settings.creds);
                    self.video_message(body, Pending::ListForwarders, now);
                } else {
                    // An event that happens to carry the transaction before the answer.
                    debug!("Janus: {v:?} before the join answer");
                }
            }
            (
                Some(Pending::ListForwarders),
                IncomingKind::Plugin(PluginData::VideoRoom(VideoRoomData::Forwarders(list))),
            ) => {
                self.stop_stale(&list, now);
                self.ready = true;
                self.out.push_back(Output::Ready);
                let wanted: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.wanted)
                    .map(|(&id, _)| id)
                    .collect();
                for id in wanted {
                    self.send_forward(id, now);
                }
            }
            (
                Some(Pending::Forward(publisher)),
                IncomingKind::Plugin(PluginData::VideoRoom(VideoRoomData::Forwarded {
                    forwarders,
                    ..
                })),
            ) => self.forwarded(publisher, &forwarders, now),
            (Some(Pending::Announcement), IncomingKind::Plugin(PluginData::TextRoom(Ok(())))) => {
                let took = sent.map(|at| now.saturating_duration_since(at));
                debug!(?transaction, ?took, "the TextRoom took the announcement");
            }
            (Some(p), kind) if p.is_setup() => {
                warn!("Janus answered {} with {kind:?}", p.name());
                self.fail(SessionError::NoAnswer(p.name()));
            }
            (Some(_), _) => {}
            (None, IncomingKind::Plugin(PluginData::VideoRoom(v))) => self.on_room_event(v, now),
            (None, _) => {}
        }
    }

    fn on_room_event(&mut self, event: VideoRoomData, now: Instant) {
        match event {
            VideoRoomData::Publishers(list) => {
                for p in list {
                    self.add(p);
                }
            }
            VideoRoomData::Unpublished(id) | VideoRoomData::Leaving(id) => self.remove(id, now),
            _ => {}
        }
    }

    /// After `joined`: who left while the mixer was away goes, who came is added.
    fn reconcile(&mut self, publishers: Vec<Publisher>) {
        let present: Vec<u64> = publishers.iter().map(|p| p.id).collect();
        let gone: Vec<u64> = self
            .members
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(m) = self.members.remove(&id) {
                self.out
                    .push_back(Output::Roster(RosterEvent::Left(m.info)));
            }
        }
        for p in publishers {
            self.add(p);
        }
    }

    /// A publisher, once: repeats of `publishers` change nothing.
    fn add(&mut self, p: Publisher) {
        if self.members.contains_key(&p.id) {
            return;
        }
        let live = |kind: &str| p.streams.iter().find(|s| s.kind == kind && !s.disabled);
        let audio_mid = live("audio").map(|s| s.mid.clone());
        let video = live("video");
        let video_codec = video
            .and_then(|s| s.codec.as_deref())
            .map(Codec::from_name)
            .unwrap_or_default();
        let video_mid = match video {
            Some(s) if video_codec.format().is_some() => Some(s.mid.clone()),
            Some(_) => {
                warn!(
                    publisher = p.id,
                    codec = video_codec.name(),
                    "video codec the mixer cannot decode: recording the audio only"
                );
                None
            }
            None => None,
        };
        if audio_mid.is_none() && video.is_none() {
            return;
        }
        let port = self.settings.ingest_port;
        let audio = StreamInfo {
            ssrc: self.ssrc(),
            payload_type: AUDIO_PT,
            port,
        };
        let video = StreamInfo {
            ssrc: self.ssrc(),
            payload_type: VIDEO_PT,
            port,
        };
        let id: ParticipantId = text(&p.id.to_string());
        let name = p.display.as_deref().unwrap_or("");
        let info = ParticipantInfo {
            id,
            name: text(name),
            audio,
            video,
            video_codec,
        };
        info!(publisher = p.id, name, "publisher in the Janus room");
        self.out
            .push_back(Output::Roster(RosterEvent::Joined(info.clone())));
        self.members.insert(
            p.id,
            Member {
                info,
                audio_mid,
                video_mid,
                wanted: false,
                forwards: Vec::new(),
                video_rtcp: None,
                attempts: 0,
                retry_at: None,
                forwarded: false,
            },
        );
    }

    fn remove(&mut self, id: u64, now: Instant) {
        let Some(m) = self.members.remove(&id) else {
            return;
        };
        for stream in &m.forwards {
            self.stop_forward(id, *stream, now);
        }
        self.out
            .push_back(Output::Roster(RosterEvent::Left(m.info)));
    }

    fn ssrc(&mut self) -> u32 {
        loop {
            let ssrc = self.next_ssrc;
            self.next_ssrc = self.next_ssrc.wrapping_add(1);
            if ssrc != 0 && !self.members.values().any(|m| uses(m, ssrc)) {
                return ssrc;
            }
        }
    }

    /// The mixer is ready for this participant's SSRCs.
    pub fn forward(&mut self, participant: &str, now: Instant) {
        let Some((&id, m)) = self
            .members
            .iter_mut()
            .find(|(_, m)| m.info.id == participant)
        else {
            debug!(participant, "forward of a publisher no longer in the room");
            return;
        };
        m.wanted = true;
        if self.ready {
            self.send_forward(id, now);
        }
    }

    fn send_forward(&mut self, id: u64, now: Instant) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        m.attempts += 1;
        m.retry_at = None;
        let mut streams = Vec::new();
        if let Some(mid) = &m.video_mid {
            streams.push(ForwardStream {
                mid: mid.clone(),
                port: m.info.video.port,
                ssrc: m.info.video.ssrc,
                pt: VIDEO_PT,
                rtcp_port: Some(self.settings.rtcp_port),
            });
        }
        if let Some(mid) = &m.audio_mid {
            streams.push(ForwardStream {
                mid: mid.clone(),
                port: m.info.audio.port,
                ssrc: m.info.audio.ssrc,
                pt: AUDIO_PT,
                rtcp_port: None,
            });
        }
        let body = protocol::rtp_forward(
            self.settings.room,
            id,
            &self.settings.forward_host,
            &streams,
            &self.settings.creds,
        );
        self.video_message(body, Pending::Forward(id), now);
    }

    fn forwarded(&mut self, publisher: u64, forwarders: &[protocol::Forwarder], now: Instant) {
        let Some(m) = self.members.get_mut(&publisher) else {
            // It left meanwhile: its forwards go too.
            for f in forwarders {
                self.stop_forward(publisher, f.stream_id, now);
            }
            return;
        };
        m.forwards = forwarders.iter().map(|f| f.stream_id).collect();
        m.video_rtcp = forwarders
            .iter()
            .find(|f| f.kind.as_deref() == Some("video"))
            .and_then(|f| f.local_rtcp_port);
        m.attempts = 0;
        debug!(publisher, streams = ?m.forwards, "forwarding");
        // Janus may send from other ports now (it restarted): the ingest learns them.
        if std::mem::replace(&mut m.forwarded, true) {
            self.out
                .push_back(Output::Roster(RosterEvent::Renewed(m.info.clone())));
        }
        // The decoder cannot start before a keyframe; ask at once.
        if let Some(rtcp_port) = m.video_rtcp {
            self.out.push_back(Output::Pli {
                rtcp_port,
                media_ssrc: m.info.video.ssrc,
            });
        }
    }

    fn stop_stale(&mut self, list: &[PublisherForwarders], now: Instant) {
        for p in list {
            for f in &p.forwarders {
                let ours = f.host.as_deref() == Some(self.settings.forward_host.as_str())
                    && f.port == Some(self.settings.ingest_port);
                if ours {
                    debug!(
                        publisher = p.publisher_id,
                        stream = f.stream_id,
                        "stale forward"
                    );
                    self.stop_forward(p.publisher_id, f.stream_id, now);
                }
            }
        }
    }

    fn stop_forward(&mut self, publisher: u64, stream: u64, now: Instant) {
        let body =
            protocol::stop_rtp_forward(self.settings.room, publisher, stream, &self.settings.creds);
        self.video_message(body, Pending::StopForward, now);
    }

    pub fn request_keyframe(&mut self, participant: &str) {
        if let Some(m) = self.members.values().find(|m| m.info.id == participant) {
            if let Some(rtcp_port) = m.video_rtcp {
                self.out.push_back(Output::Pli {
                    rtcp_port,
                    media_ssrc: m.info.video.ssrc,
                });
            }
        }
    }

    /// The participant-facing sentence, then the announcement as one JSON line for
    /// clients that read it. Control-only notices (stats, ingest) stay off the
    /// terminals.
    pub(crate) fn notice(&mut self, notice: &Notice, now: Instant) {
        let a = Announcement::new(notice);
        if a.to != Audience::Terminals || self.settings.textroom.is_none() {
            return;
        }
        let text = announcement_text(&a);
        if self.textroom.is_some() && self.session.is_some() {
            self.announce(&text, now);
        } else {
            if self.held.len() == HELD_NOTICES {
                warn!("Janus away: dropping the oldest held notice");
                self.held.pop_front();
            }
            self.held.push_back(text);
        }
    }

    fn announce(&mut self, text: &str, now: Instant) {
        let (Some(room), Some(handle)) = (self.settings.textroom, self.textroom) else {
            return;
        };
        let body = protocol::announcement(room, text, self.settings.creds.secret.as_deref());
        self.message(handle, body, Pending::Announcement, now);
        debug!(
            transaction = self.next_transaction,
            "announcement to the TextRoom"
        );
    }

    /// The mixer stops: its forwards go, then the session.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        let forwards: Vec<(u64, u64)> = self
            .members
            .iter()
            .flat_map(|(&id, m)| m.forwards.iter().map(move |&s| (id, s)))
            .collect();
        for (id, stream) in forwards {
            self.stop_forward(id, stream, now);
        }
        for m in self.members.values_mut() {
            m.forwards.clear();
            m.wanted = false;
        }
    }

    /// Stops still awaiting an answer.
    pub(crate) fn stops_pending(&self) -> bool {
        self.pending
            .values()
            .any(|(p, _)| *p == Pending::StopForward)
    }

    pub(crate) fn destroy(&mut self, now: Instant) {
        if let Some(session) = self.session {
            self.request(Request::Destroy { session }, Pending::Destroy, now);
        }
    }

    /// Keepalives, answers overdue, forwards to retry.
    pub fn tick(&mut self, now: Instant) {
        if let Some(session) = self.session {
            if now.duration_since(self.last_keepalive) >= KEEPALIVE_INTERVAL {
                self.last_keepalive = now;
                self.request(Request::Keepalive { session }, Pending::Keepalive, now);
            }
        }
        let overdue: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= ANSWER_TIMEOUT)
            .map(|(t, _)| t.clone())
            .collect();
        for t in overdue {
            let Some((p, _)) = self.pending.remove(&t) else {
                continue;
            };
            match p {
                p if p.is_setup() => return self.fail(SessionError::NoAnswer(p.name())),
                Pending::Keepalive => return self.fail(SessionError::NoAnswer("keepalive")),
                Pending::Forward(id) => self.retry_forward(id, now),
                p => warn!("no answer from Janus to {}", p.name()),
            }
        }
        let due: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.retry_at.is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        if self.ready {
            for id in due {
                self.send_forward(id, now);
            }
        }
    }

    fn retry_forward(&mut self, id: u64, now: Instant) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if m.attempts >= FORWARD_ATTEMPTS {
            warn!(
                publisher = id,
                "gave up forwarding after {} attempts", m.attempts
            );
            return;
        }
        m.retry_at = Some(now + FORWARD_RETRY);
    }

    fn refused(&mut self, p: Pending, error: PluginError, now: Instant) {
        match p {
            Pending::Forward(id) => {
                warn!(
                    publisher = id,
                    "Janus refused the forward: {}", error.reason
                );
                self.retry_forward(id, now);
            }
            // Janus drops a leaving publisher's forwards itself.
            Pending::StopForward => debug!("Janus refused stop_rtp_forward: {}", error.reason),
            p if p.is_setup() => self.fail(SessionError::Refused {
                request: p.name(),
                error,
            }),
            p => warn!("Janus refused {}: {}", p.name(), error.reason),
        }
    }

    fn fail(&mut self, e: SessionError) {
        self.ready = false;
        self.session = None;
        self.out.push_back(Output::Failed(e));
    }

    fn video_message(&mut self, body: serde_json::Value, pending: Pending, now: Instant) {
        if let Some(handle) = self.videoroom {
            self.message(handle, body, pending, now);
        }
    }

    fn message(&mut self, handle: u64, body: serde_json::Value, pending: Pending, now: Instant) {
        let Some(session) = self.session else {
            return;
        };
        self.request(
            Request::Message {
                session,
                handle,
                body,
            },
            pending,
            now,
        );
    }

    fn request(&mut self, request: Request, pending: Pending, now: Instant) {
        self.next_transaction += 1;
        let transaction = format!("rb{}", self.next_transaction);
        self.out
            .push_back(Output::Send(request.to_json(&transaction)));
        self.pending.insert(transaction, (pending, now));
    }
}

fn uses(m: &Member, ssrc: u32) -> bool {
    m.info.audio.ssrc == ssrc || m.info.video.ssrc == ssrc
}

/// What a terminal's data channel shows: the sentence for people, then the same
/// notice as one JSON line for programs.
fn announcement_text(a: &Announcement) -> String {
    format!("{}\n{}", a.text, a.to_json_line())
}

/// How long to wait before reconnection attempt `attempt` (0-based): 0.5 s doubling
/// up to 8 s.
pub(crate) fn reconnect_delay(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt.min(4))
}

#[cfg(test)]
mod tests;
