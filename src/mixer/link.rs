//! The mixer's hold on the recorder: one recording over a media link that may break.
//!
//! Media is queued here and handed to the link only while the link takes it without
//! waiting, so a stalled recorder never stalls the mixer. The recorder is pinged; when
//! the link breaks, or no pong comes within the bound, the recorder is reported
//! unreachable (it cannot say so itself), media is held in a bounded buffer and the
//! link is re-established with back-off. On reconnection the same recording is started
//! again — the recorder continues it as a new segment — and the held media follows,
//! starting at the last but one keyframe handed to the link before the break: frames
//! still queued or in flight when it broke are lost with the connection, and those
//! before the last keyframe may be among them.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use super::uplink::{Uplink, UplinkError, UplinkEvent};
use crate::link::frame::{
    now_millis, text, Fault, FaultKind, FaultTarget, Media, StartParams, Summary, Track,
};
use crate::link::handshake::LinkKey;
use crate::link::session::MixerEvent;
use crate::link::transport::LinkAddr;
use crate::sfu::notice::track_active;
use crate::sfu::Notice;

/// How often held media is offered to a link that had no room.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub(crate) addr: LinkAddr,
    key: LinkKey,
    pub(crate) recording: String,
    pub(crate) room: String,
    pub(crate) max_frame: usize,
    pub ping_interval: Duration,
    /// The recorder is unreachable when no pong came this long after a ping.
    pub pong_timeout: Duration,
    /// Most media bytes held while the recorder does not take them; beyond it the
    /// oldest whole groups of pictures are dropped (and reported).
    buffer_max_bytes: usize,
    /// Waits between reconnection attempts: doubling from the first to the second.
    pub reconnect_backoff: (Duration, Duration),
}

impl LinkConfig {
    pub fn new(addr: LinkAddr, key: LinkKey, recording: &str, room: &str) -> Self {
        Self {
            addr,
            key,
            recording: recording.to_owned(),
            room: room.to_owned(),
            max_frame: crate::link::codec::DEFAULT_MAX_FRAME,
            ping_interval: Duration::from_secs(1),
            pong_timeout: Duration::from_secs(3),
            buffer_max_bytes: 64 << 20,
            reconnect_backoff: (Duration::from_millis(200), Duration::from_secs(5)),
        }
    }
}

/// What happened on the link, for the service and progress displays.
#[derive(Debug, Clone)]
pub enum LinkReport {
    /// A notice for the SFU: the recorder's faults, clearings and stats, and the
    /// mixer's own `RecorderUnreachable` (and `MediaDropped`) and their clearing.
    Notice(Notice),
    /// The recorder writes the recording (or its next segment) at `path`.
    Started {
        path: String,
    },
    Stopped(Summary),
    /// The link is back; this many frames went out again or for the first time.
    Resent {
        frames: usize,
    },
}

/// Why [`RecorderLink::wait`] returned; hand it to [`RecorderLink::on_wake`].
// Made a few times a second at most: boxing the recorder's event would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Wake {
    Connected(Result<Uplink, UplinkError>),
    Event(Option<UplinkEvent>),
    Timer,
}

enum State {
    Up {
        uplink: Uplink,
        /// Seq and send time of the oldest unanswered ping.
        awaiting_pong: Option<(u64, Instant)>,
        next_ping: Instant,
    },
    Down {
        next_attempt: Instant,
        backoff: Duration,
        connecting: Option<JoinHandle<Result<Uplink, UplinkError>>>,
    },
}

pub struct RecorderLink {
    config: LinkConfig,
    start: StartParams,
    state: State,
    reports: mpsc::UnboundedSender<LinkReport>,
    /// Media handed to the link since the last but one video keyframe: resent after
    /// a break.
    replay: VecDeque<Media>,
    /// Media not handed to the link yet.
    held: VecDeque<Media>,
    held_bytes: usize,
    /// `RecorderUnreachable` was reported and not cleared yet.
    reported_down: bool,
    /// Faults raised and not cleared, in the order they came.
    active: Vec<FaultKind>,
    dropped: u64,
    ping_seq: u64,
}

impl RecorderLink {
    /// Down at first: the first attempt to connect is made at once.
    pub fn new(
        config: LinkConfig,
        start: StartParams,
        reports: mpsc::UnboundedSender<LinkReport>,
    ) -> Self {
        Self {
            state: State::Down {
                next_attempt: Instant::now(),
                backoff: config.reconnect_backoff.0,
                connecting: None,
            },
            config,
            start,
            reports,
            replay: VecDeque::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            reported_down: false,
            active: Vec::new(),
            dropped: 0,
            ping_seq: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Media bytes waiting to go out.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Queues media; it goes out as soon as the link takes it.
    pub async fn send(&mut self, media: Media) {
        self.held_bytes += media.data.len();
        self.held.push_back(media);
        self.bound_held();
        self.flush().await;
    }

    /// Hands held media to the link while it has room.
    async fn flush(&mut self) {
        let State::Up { uplink, .. } = &self.state else {
            return;
        };
        let mut failed = None;
        while uplink.has_room() {
            let Some(media) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= media.data.len();
            if is_keyframe(&media) {
                // Keep two groups of pictures: drop up to the newest keyframe held,
                // but not the audio just before it, which the recorder files with
                // that keyframe's fragment.
                if let Some(last) = self.replay.iter().rposition(is_keyframe) {
                    let from = self
                        .replay
                        .range(..last)
                        .rposition(|m| m.track == Track::Video);
                    self.replay.drain(..from.map_or(0, |v| v + 1));
                }
            }
            self.replay.push_back(media.clone());
            if let Err(e) = uplink.media(media).await {
                failed = Some(e.to_string());
                break;
            }
        }
        if let Some(reason) = failed {
            self.went_down(reason);
        }
    }

    /// Keeps held media within its bound by dropping the oldest up to a keyframe, so
    /// what stays still decodes.
    fn bound_held(&mut self) {
        let mut dropped = 0u64;
        while self.held_bytes > self.config.buffer_max_bytes {
            let Some(m) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= m.data.len();
            dropped += 1;
            while self.held.front().is_some_and(|m| !is_keyframe(m)) {
                let m = self.held.pop_front().expect("checked");
                self.held_bytes -= m.data.len();
                dropped += 1;
            }
        }
        if dropped == 0 {
            return;
        }
        if self.dropped == 0 {
            self.notice(Notice::Fault(Fault {
                recording: text(&self.config.recording),
                kind: FaultKind::MediaDropped,
                target: FaultTarget::Recorder,
                detail: text("the recorder does not take media and the mixer's buffer is full"),
                at: now_millis(),
            }));
        }
        self.dropped += dropped;
        warn!(dropped, "recorder not taking media: held media dropped");
    }

    fn went_down(&mut self, reason: String) {
        if !self.reported_down {
            warn!("recorder unreachable: {reason}");
            self.reported_down = true;
            self.notice(Notice::Fault(Fault {
                recording: text(&self.config.recording),
                kind: FaultKind::RecorderUnreachable,
                target: FaultTarget::Recorder,
                detail: text(&reason),
                at: now_millis(),
            }));
        }
        let backoff = match &self.state {
            State::Down { backoff, .. } => (*backoff * 2).min(self.config.reconnect_backoff.1),
            State::Up { .. } => {
                // What the recorder may not have written goes again, before the rest.
                let mut replay = std::mem::take(&mut self.replay);
                self.held_bytes += replay.iter().map(|m| m.data.len()).sum::<usize>();
                replay.append(&mut self.held);
                self.held = replay;
                self.config.reconnect_backoff.0
            }
        };
        self.state = State::Down {
            next_attempt: Instant::now() + backoff,
            backoff,
            connecting: None,
        };
    }

    /// Reports a notice, keeping the list of faults that still apply: stats carry it.
    fn notice(&mut self, mut notice: Notice) {
        track_active(&mut self.active, &notice);
        if let Notice::Stats { faults, .. } = &mut notice {
            faults.clone_from(&self.active);
        }
        let _ = self.reports.send(LinkReport::Notice(notice));
    }

    /// Waits for the next thing to do. Cancellation-safe, for a `select!` loop.
    pub async fn wait(&mut self) -> Wake {
        match &mut self.state {
            State::Down {
                next_attempt,
                connecting,
                ..
            } => {
                if connecting.is_none() {
                    sleep_until(*next_attempt).await;
                    let (addr, key) = (self.config.addr.clone(), self.config.key.clone());
                    let (recording, max_frame) =
                        (text(&self.config.recording), self.config.max_frame);
                    // A recorder that accepts but never answers is as unreachable as
                    // one that refuses.
                    let bound = self.config.pong_timeout;
                    *connecting = Some(tokio::spawn(async move {
                        let connect = Uplink::connect(&addr, key, recording, max_frame);
                        tokio::time::timeout(bound, connect)
                            .await
                            .unwrap_or(Err(UplinkError::HandshakeTimeout(bound)))
                    }));
                }
                let task = connecting.as_mut().expect("set above");
                let result = task.await.unwrap_or(Err(UplinkError::Closed));
                Wake::Connected(result)
            }
            State::Up {
                uplink,
                awaiting_pong,
                next_ping,
            } => {
                let mut deadline = match awaiting_pong {
                    Some((_, sent)) => (*sent + self.config.pong_timeout).min(*next_ping),
                    None => *next_ping,
                };
                if !self.held.is_empty() {
                    deadline = deadline.min(Instant::now() + FLUSH_INTERVAL);
                }
                tokio::select! {
                    event = uplink.next_event() => Wake::Event(event),
                    _ = sleep_until(deadline) => Wake::Timer,
                }
            }
        }
    }

    pub async fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Connected(Ok(uplink)) => self.on_connected(uplink).await,
            Wake::Connected(Err(e)) => {
                // `went_down` from Down doubles the back-off.
                self.went_down(e.to_string());
            }
            Wake::Event(event) => self.on_event(event),
            Wake::Timer => self.on_timer().await,
        }
        self.flush().await;
    }

    async fn on_connected(&mut self, uplink: Uplink) {
        if let Err(e) = uplink.start(self.start.clone()).await {
            return self.went_down(e.to_string());
        }
        self.state = State::Up {
            uplink,
            awaiting_pong: None,
            next_ping: Instant::now() + self.config.ping_interval,
        };
        if std::mem::take(&mut self.reported_down) {
            info!(held = self.held.len(), "media link to the recorder is back");
            self.notice(Notice::Cleared {
                kind: FaultKind::RecorderUnreachable,
                target: FaultTarget::Recorder,
                at: now_millis(),
            });
            let _ = self.reports.send(LinkReport::Resent {
                frames: self.held.len(),
            });
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let State::Up {
            uplink,
            awaiting_pong,
            next_ping,
        } = &mut self.state
        else {
            return;
        };
        if let Some((seq, sent)) = *awaiting_pong {
            if now >= sent + self.config.pong_timeout {
                let reason = format!(
                    "no answer to ping {seq} within {:?}",
                    self.config.pong_timeout
                );
                return self.went_down(reason);
            }
        }
        if now >= *next_ping {
            self.ping_seq += 1;
            *next_ping = now + self.config.ping_interval;
            awaiting_pong.get_or_insert((self.ping_seq, now));
            if let Err(e) = uplink.ping(self.ping_seq).await {
                self.went_down(e.to_string());
            }
        }
    }

    fn on_event(&mut self, event: Option<UplinkEvent>) {
        let event = match event {
            Some(UplinkEvent::Recorder(event)) => event,
            Some(UplinkEvent::Closed(reason)) => {
                return self.went_down(
                    reason.map_or_else(|| "the recorder closed the link".into(), |e| e.to_string()),
                )
            }
            None => return self.went_down("the media link is gone".into()),
        };
        if let Some(notice) = Notice::from_recorder(&event) {
            return self.notice(notice);
        }
        match event {
            MixerEvent::Pong { .. } => {
                if let State::Up { awaiting_pong, .. } = &mut self.state {
                    // Any pong shows the recorder is alive.
                    *awaiting_pong = None;
                }
            }
            MixerEvent::Started { path, .. } => {
                let _ = self.reports.send(LinkReport::Started {
                    path: path.to_string(),
                });
            }
            MixerEvent::Stopped(summary) => {
                let _ = self.reports.send(LinkReport::Stopped(summary));
            }
            _ => {}
        }
    }

    /// Hands over what is held (waiting for room, a bounded time), stops the recording
    /// and waits for the recorder's summary.
    pub async fn stop(&mut self, patience: Duration) -> Option<Summary> {
        let deadline = Instant::now() + patience;
        while !self.held.is_empty() && self.is_up() && Instant::now() < deadline {
            self.flush().await;
            tokio::time::sleep(FLUSH_INTERVAL).await;
        }
        let State::Up { uplink, .. } = &mut self.state else {
            warn!(
                held = self.held.len(),
                "stopping while the recorder is unreachable: held media is lost"
            );
            return None;
        };
        if !self.held.is_empty() {
            warn!(
                held = self.held.len(),
                "the recorder did not take the last media in time"
            );
        }
        uplink.stop().await.ok()?;
        let reports = &self.reports;
        let wait = async {
            while let Some(event) = uplink.next_event().await {
                match event {
                    UplinkEvent::Recorder(MixerEvent::Stopped(summary)) => return Some(summary),
                    UplinkEvent::Recorder(event) => {
                        if let Some(notice) = Notice::from_recorder(&event) {
                            let _ = reports.send(LinkReport::Notice(notice));
                        }
                    }
                    UplinkEvent::Closed(_) => return None,
                }
            }
            None
        };
        let summary = tokio::time::timeout_at(deadline, wait).await.ok().flatten();
        if let Some(s) = &summary {
            let _ = self.reports.send(LinkReport::Stopped(s.clone()));
        }
        summary
    }
}

fn is_keyframe(media: &Media) -> bool {
    media.track == Track::Video && media.keyframe
}
