//! The conference-control platform's webhook: every notice the mixer relays (faults,
//! their clearing, stats, ingest counters) is POSTed to it as one JSON object per
//! request, whatever the SFU. The mixer only ever pushes onto a bounded [`Queue`]
//! under a short lock; a task of its own does the HTTP, one request at a time with a
//! short timeout, retrying with growing delays, so a slow or dead platform never
//! holds the mixer back. A full queue drops its oldest notice, logged and counted;
//! the platform sees the gap in `seq`.
//!
//! With a secret configured, each request carries `X-Recbox-Signature:
//! sha256=<hex HMAC-SHA256 of the body>`, so the platform can tell the box's notices
//! from anyone else's.

mod queue;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::Sha256;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::queue::{Loss, Outcome, Queue};
use super::notice::{Announcement, Notice};

/// Notices held while the platform cannot be reached: with the default stats
/// intervals (recorder and mixer, 10 s each), about twenty minutes of them.
const DEFAULT_CAPACITY: usize = 256;
/// One request, connection included: a platform slower than this is retried later.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The header carrying the body's signature.
const SIGNATURE_HEADER: &str = "x-recbox-signature";

/// Where the notices go and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub target: Target,
    /// Signs every body (HMAC-SHA256) when given.
    pub secret: Option<String>,
    pub timeout: Duration,
    pub capacity: usize,
}

impl WebhookConfig {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            secret: None,
            timeout: DEFAULT_TIMEOUT,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// An `http://HOST[:PORT]/PATH` URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    uri: Uri,
    host: String,
    port: u16,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("not an http:// URL (example: http://control.example:8080/recbox)")]
    NotHttp,
    #[error("https:// is not supported (the box has no TLS client): use http:// on a trusted network, with sfu.webhook_secret")]
    Https,
    #[error("the URL names no host")]
    NoHost,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let uri: Uri = url.parse().map_err(|_| TargetError::NotHttp)?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(TargetError::Https),
            _ => return Err(TargetError::NotHttp),
        }
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(TargetError::NoHost),
        };
        Ok(Self {
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(80),
            uri,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

/// What the platform receives: the announcement the terminals and the SFU see, with
/// who sent it and its number.
#[derive(Serialize)]
struct Body<'a> {
    /// Counts up from 0 from the start of the mixer: a gap is a lost notice.
    seq: u64,
    /// The mixer's name and its room.
    mixer: &'a str,
    room: &'a str,
    #[serde(flatten)]
    announcement: Announcement,
}

struct Shared {
    queue: Mutex<Queue>,
    /// A notice was pushed.
    pushed: Notify,
    /// The queue became empty.
    idle: Notify,
    mixer: String,
    room: String,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it leaves a consistent queue: nothing to repair.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The mixer's end: [`Webhook::post`] never waits for the network.
pub struct Webhook {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Webhook {
    /// Starts delivering; notices say they come from `mixer` in `room`.
    pub fn spawn(config: WebhookConfig, mixer: &str, room: &str) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(config.capacity)),
            pushed: Notify::new(),
            idle: Notify::new(),
            mixer: mixer.to_owned(),
            room: room.to_owned(),
        });
        info!(url = %config.target, "notices go to the control platform's webhook");
        let task = tokio::spawn(deliver(config, shared.clone()));
        Self { shared, task }
    }

    /// Queues a notice for the platform.
    pub fn post(&self, notice: &Notice) {
        let shared = &self.shared;
        let mut queue = shared.queue();
        let body = Body {
            seq: queue.next_seq(),
            mixer: &shared.mixer,
            room: &shared.room,
            announcement: Announcement::new(notice),
        };
        let body = serde_json::to_string(&body).expect("a notice always serialises");
        if let Some(loss) = queue.push(body) {
            log_loss(loss, queue.lost());
        }
        drop(queue);
        shared.pushed.notify_one();
    }

    /// Waits (at most `patience`) until every queued notice is delivered or lost,
    /// then stops delivering.
    pub async fn finish(self, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let left = self.shared.queue().len();
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                warn!(
                    left,
                    "the control platform's webhook did not take every notice before the stop"
                );
                break;
            }
        }
        self.task.abort();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn log_loss(loss: Loss, total: u64) {
    match loss {
        Loss::Overflow { seq } => {
            warn!(
                seq,
                lost = total,
                "webhook queue full: the oldest notice is dropped"
            )
        }
        Loss::Refused { seq } => {
            warn!(
                seq,
                lost = total,
                "the control platform refused a notice: dropped"
            )
        }
    }
}

/// The delivery task: one POST at a time, as the queue allows.
async fn deliver(config: WebhookConfig, shared: Arc<Shared>) {
    let mut failing = false;
    loop {
        let (delivery, wake) = {
            let mut queue = shared.queue();
            (
                queue.next_delivery(Instant::now().into_std()),
                queue.next_wake(),
            )
        };
        let Some(delivery) = delivery else {
            match wake {
                Some(at) => tokio::select! {
                    _ = shared.pushed.notified() => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                },
                None => shared.pushed.notified().await,
            }
            continue;
        };
        let outcome = match tokio::time::timeout(config.timeout, post(&config, &delivery.body))
            .await
        {
            Ok(Ok(status)) => outcome_of(status),
            Ok(Err(e)) => {
                if !failing {
                    warn!(url = %config.target, "webhook: {e}; retrying");
                }
                Outcome::Retry
            }
            Err(_) => {
                if !failing {
                    warn!(url = %config.target, "webhook: no answer within {:?}; retrying", config.timeout);
                }
                Outcome::Retry
            }
        };
        match outcome {
            Outcome::Delivered if failing => {
                info!(url = %config.target, "the control platform's webhook takes notices again")
            }
            Outcome::Delivered => debug!(seq = delivery.seq, "notice delivered to the webhook"),
            _ => {}
        }
        failing = outcome == Outcome::Retry;
        let mut queue = shared.queue();
        if let Some(loss) = queue.answered(delivery.seq, outcome, Instant::now().into_std()) {
            log_loss(loss, queue.lost());
        }
        if queue.len() == 0 {
            shared.idle.notify_waiters();
        }
    }
}

fn outcome_of(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        warn!(%status, "webhook: the control platform cannot take the notice now; retrying");
        Outcome::Retry
    } else {
        warn!(%status, "webhook: the control platform refused the notice");
        Outcome::Refused
    }
}

#[derive(Debug, Error)]
enum PostError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the connection closed before the answer")]
    Closed,
}

/// One POST on a connection of its own (notices are a few a minute), answered with
/// its status; the body of the answer is not read.
async fn post(config: &WebhookConfig, body: &str) -> Result<StatusCode, PostError> {
    let target = &config.target;
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(PostError::Connect)?;
    // The whole notice goes out at once.
    let _ = stream.set_nodelay(true);
    let (mut sender, mut connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let path = target
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = match target.uri.port() {
        Some(port) => format!("{}:{port}", target.uri.host().unwrap_or_default()),
        None => target.uri.host().unwrap_or_default().to_owned(),
    };
    let mut request = Request::post(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("recbox/", env!("CARGO_PKG_VERSION")));
    if let Some(secret) = &config.secret {
        request = request.header(SIGNATURE_HEADER, signature(secret, body));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request of checked parts");
    // The connection is driven here, next to the request: nothing outlives the timeout.
    tokio::select! {
        response = sender.send_request(request) => Ok(response?.status()),
        ended = &mut connection => {
            ended?;
            Err(PostError::Closed)
        }
    }
}

/// `sha256=` and the HMAC-SHA256 of `body` in lower-case hex.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_plain_http_with_a_host() {
        let t = Target::parse("http://10.0.0.9:8080/hooks/recbox?box=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.9", 8080));
        assert_eq!(t.to_string(), "http://10.0.0.9:8080/hooks/recbox?box=1");
        let t = Target::parse("http://[::1]/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(Target::parse("https://a/"), Err(TargetError::Https));
        assert_eq!(Target::parse("ws://a/"), Err(TargetError::NotHttp));
        assert_eq!(Target::parse("control:8080"), Err(TargetError::NotHttp));
        assert_eq!(Target::parse("not a url"), Err(TargetError::NotHttp));
        assert_eq!(Target::parse("/hooks"), Err(TargetError::NotHttp));
    }

    #[test]
    fn answers_decide_between_done_retry_and_refused() {
        assert_eq!(outcome_of(StatusCode::OK), Outcome::Delivered);
        assert_eq!(outcome_of(StatusCode::NO_CONTENT), Outcome::Delivered);
        assert_eq!(outcome_of(StatusCode::SERVICE_UNAVAILABLE), Outcome::Retry);
        assert_eq!(outcome_of(StatusCode::TOO_MANY_REQUESTS), Outcome::Retry);
        assert_eq!(outcome_of(StatusCode::REQUEST_TIMEOUT), Outcome::Retry);
        assert_eq!(outcome_of(StatusCode::BAD_REQUEST), Outcome::Refused);
        assert_eq!(outcome_of(StatusCode::MOVED_PERMANENTLY), Outcome::Refused);
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_body_is_the_announcement_with_its_number_and_sender() {
        let notice = Notice::Cleared {
            kind: crate::link::frame::FaultKind::DiskFull,
            target: crate::link::frame::FaultTarget::Storage,
            at: 5,
        };
        let body = Body {
            seq: 3,
            mixer: "box-1",
            room: "room-a",
            announcement: Announcement::new(&notice),
        };
        let v: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq": 3, "mixer": "box-1", "room": "room-a",
                "to": "terminals", "kind": "cleared",
                "text": "Resolved: the recording disk is no longer full.",
                "fault": "disk_full", "target": "storage", "at": 5})
        );
    }
}
