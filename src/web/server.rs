//! The routes, thin over the sans-IO parts, and the accept loop that caps
//! connections and times out slow request heads.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

use super::auth::{self, Sessions};
use super::range::{self, Answer};
use super::recordings::{self, Piece, Recording};
use super::status::StatusView;
use super::Settings;
use crate::appliance::Command;
use crate::recorder::layout::{MP4_FILE, PLAYLIST_FILE};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");
/// Bytes read from a file at a time for a response.
const CHUNK: usize = 64 << 10;

struct App {
    settings: Settings,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Arc<StatusView>>,
    sessions: Mutex<Sessions>,
    /// Password checks (argon2, slow on purpose) run one at a time.
    login: Semaphore,
}

type Shared = State<Arc<App>>;

pub(super) async fn serve(
    listener: TcpListener,
    settings: Settings,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Arc<StatusView>>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let limit = settings.max_request_body;
    let header_timeout = settings.header_timeout;
    let app = Arc::new(App {
        settings,
        commands,
        status,
        sessions: Mutex::new(Sessions::new(auth::SESSION_TTL, auth::MAX_SESSIONS)),
        login: Semaphore::new(1),
    });
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/page.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route("/page.css", get(|| async { asset(STYLE, "text/css") }))
        .route("/api/status", get(status_now))
        .route("/api/events", get(events))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/commands", post(command))
        .route("/api/recordings", get(list))
        .route("/api/recordings/{id}", get(one))
        .route("/recordings/{id}/recording.mp4", get(whole))
        .route("/recordings/{id}/{segment}/recording.mp4", get(segment_mp4))
        .route(
            "/recordings/{id}/{segment}/recording.m3u8",
            get(segment_playlist),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    accept_loop(listener, permits, header_timeout, router).await
}

/// Serves each connection on a task of its own while it holds one of `permits`
/// (the rest wait in the kernel's backlog). hyper closes a connection whose request
/// head has not fully arrived `header_timeout` after it began waiting for one (on
/// connecting, or after the previous answer), so slow or silent clients cannot keep
/// the permits; a streamed answer (the events) is not cut.
async fn accept_loop(
    mut listener: TcpListener,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
    router: Router,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // Errors such as EMFILE are logged and retried after a pause by axum's
        // listener, never returned.
        let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, "web page connection ended: {e}");
            }
            drop(permit);
        });
    }
}

fn asset(text: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// An answer other than the one asked for, with why as JSON.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    /// No valid session.
    #[error("log in first")]
    Unauthorized,
    /// No admin password is configured: nobody may.
    #[error("no admin password is configured (web.admin_password_hash)")]
    NoAdmin,
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The whole recording cannot be one file.
    #[error("not one file: {0}; download it segment by segment")]
    NotJoinable(#[source] recordings::JoinError),
    #[error("range not satisfiable")]
    Unsatisfiable(u64),
    /// The appliance no longer takes commands.
    #[error("the box is stopping")]
    Stopping,
    /// A blocking read of the storage panicked or was cancelled.
    #[error("reading the storage failed: {0}")]
    Blocking(#[source] tokio::task::JoinError),
    #[error("cannot build the response: {0}")]
    Response(#[source] axum::http::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NoAdmin => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotJoinable(_) => StatusCode::CONFLICT,
            ApiError::Unsatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Blocking(_) | ApiError::Response(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unsatisfiable(len) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl App {
    /// Whether the request carries a live admin session.
    fn is_admin(&self, headers: &HeaderMap) -> bool {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        auth::token_of(authorization, cookies).is_some_and(|token| {
            self.sessions
                .lock()
                .expect("sessions lock")
                .is_valid(token, Instant::now())
        })
    }

    fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.settings.admin_password_hash.is_none() {
            Err(ApiError::NoAdmin)
        } else if self.is_admin(headers) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// The recording `id` names in a fresh listing (never a path built from it).
    async fn recording(&self, id: String) -> Result<Recording, ApiError> {
        let roots = self.settings.roots.clone();
        blocking(move || recordings::list(&roots).into_iter().find(|r| r.id == id))
            .await?
            .ok_or(ApiError::NotFound("recording"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::Blocking)
}

async fn status_now(State(app): Shared) -> Json<StatusView> {
    Json(StatusView::clone(&app.status.borrow()))
}

/// Every status change as an `event: status` whose data is the `/api/status` JSON,
/// the current one first.
async fn events(State(app): Shared) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = app.status.clone();
    let updates = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let view = Arc::clone(&rx.borrow_and_update());
        let event = SseEvent::default()
            .event("status")
            .json_data(&*view)
            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable status"));
        Some((Ok(event), (rx, false)))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

#[derive(Serialize)]
struct SessionBody {
    admin: bool,
    /// An admin password is configured, so logging in can work.
    login: bool,
}

async fn session(State(app): Shared, headers: HeaderMap) -> Json<SessionBody> {
    Json(SessionBody {
        admin: app.is_admin(&headers),
        login: app.settings.admin_password_hash.is_some(),
    })
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

#[derive(Serialize)]
struct TokenBody {
    token: String,
}

async fn login(State(app): Shared, Json(body): Json<LoginBody>) -> Result<Response, ApiError> {
    let Some(hash) = app.settings.admin_password_hash.clone() else {
        return Err(ApiError::NoAdmin);
    };
    let _one = app
        .login
        .acquire()
        .await
        .expect("the login semaphore is never closed");
    let good = blocking(move || auth::verify(&hash, &body.password)).await?;
    if !good {
        warn!("web page: wrong admin password");
        return Err(ApiError::Unauthorized);
    }
    info!("web page: admin logged in");
    let token = app
        .sessions
        .lock()
        .expect("sessions lock")
        .issue(rand::random(), Instant::now());
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        auth::COOKIE,
        auth::SESSION_TTL.as_secs()
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(TokenBody { token })).into_response())
}

async fn logout(State(app): Shared, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if let Some(token) = auth::token_of(authorization, cookies) {
        app.sessions.lock().expect("sessions lock").revoke(token);
    }
    let expired = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        auth::COOKIE
    );
    ([(header::SET_COOKIE, expired)], StatusCode::NO_CONTENT).into_response()
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CommandName {
    Start,
    Stop,
    Toggle,
    SafeStop,
}

#[derive(Deserialize)]
struct CommandBody {
    command: CommandName,
}

#[derive(Serialize)]
struct Accepted {
    accepted: CommandName,
}

/// The panel button's commands; a JSON body is required, which also keeps other
/// sites' plain forms out.
async fn command(
    State(app): Shared,
    headers: HeaderMap,
    Json(body): Json<CommandBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    app.admin(&headers)?;
    let command = match body.command {
        CommandName::Start => Command::Start,
        CommandName::Stop => Command::Stop,
        CommandName::Toggle => Command::Toggle,
        CommandName::SafeStop => Command::SafeStop,
    };
    info!(?command, "web page: command");
    app.commands.send(command).map_err(|_| ApiError::Stopping)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: body.command,
        }),
    ))
}

async fn list(
    State(app): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<recordings::RecordingView>>, ApiError> {
    app.admin(&headers)?;
    let roots = app.settings.roots.clone();
    let views = blocking(move || {
        recordings::list(&roots)
            .iter()
            .map(recordings::view)
            .collect()
    })
    .await?;
    Ok(Json(views))
}

async fn one(
    State(app): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<recordings::RecordingView>, ApiError> {
    app.admin(&headers)?;
    let rec = app.recording(id).await?;
    Ok(Json(blocking(move || recordings::view(&rec)).await?))
}

async fn whole(
    State(app): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.admin(&headers)?;
    let rec = app.recording(id).await?;
    let pieces = blocking(move || recordings::joined(&rec))
        .await?
        .map_err(ApiError::NotJoinable)?;
    ranged(&headers, pieces, "video/mp4")
}

async fn segment_mp4(
    State(app): Shared,
    headers: HeaderMap,
    Path((id, segment)): Path<(String, u16)>,
) -> Result<Response, ApiError> {
    app.admin(&headers)?;
    let path = segment_file(&app, id, segment, MP4_FILE).await?;
    // A segment being written grows: served as far as it is now.
    let len = tokio::fs::metadata(&path)
        .await
        .map_err(|_| ApiError::NotFound("recording file"))?
        .len();
    ranged(
        &headers,
        vec![Piece::File {
            path,
            offset: 0,
            len,
        }],
        "video/mp4",
    )
}

async fn segment_playlist(
    State(app): Shared,
    headers: HeaderMap,
    Path((id, segment)): Path<(String, u16)>,
) -> Result<Response, ApiError> {
    app.admin(&headers)?;
    let path = segment_file(&app, id, segment, PLAYLIST_FILE).await?;
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|_| ApiError::NotFound("playlist"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}

async fn segment_file(
    app: &App,
    id: String,
    segment: u16,
    name: &str,
) -> Result<PathBuf, ApiError> {
    let rec = app.recording(id).await?;
    rec.segment(segment)
        .map(|s| s.dir.join(name))
        .ok_or(ApiError::NotFound("segment"))
}

/// The body of `pieces`, whole or the one range asked for.
fn ranged(
    headers: &HeaderMap,
    pieces: Vec<Piece>,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let len: u64 = pieces.iter().map(Piece::len).sum();
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, body, content_range) = match range::answer(asked, len) {
        Answer::Whole => (StatusCode::OK, pieces, None),
        Answer::Part { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            recordings::slice(&pieces, start, end),
            Some(format!("bytes {start}-{}/{len}", end - 1)),
        ),
        Answer::Unsatisfiable => return Err(ApiError::Unsatisfiable(len)),
    };
    let body_len: u64 = body.iter().map(Piece::len).sum();
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, kind)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, body_len)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(range) = content_range {
        response = response.header(header::CONTENT_RANGE, range);
    }
    response
        .body(Body::from_stream(read_pieces(body)))
        .map_err(ApiError::Response)
}

/// The bytes of `pieces`, read a chunk at a time.
fn read_pieces(pieces: Vec<Piece>) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let state = (VecDeque::from(pieces), None::<(tokio::fs::File, u64)>);
    stream::try_unfold(state, |(mut pieces, mut open)| async move {
        loop {
            if let Some((file, left)) = &mut open {
                if *left == 0 {
                    open = None;
                    continue;
                }
                let mut buf = vec![0; (*left).min(CHUNK as u64) as usize];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    // Truncated under us (a repair): end the body short, loudly.
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                }
                buf.truncate(n);
                *left -= n as u64;
                return Ok(Some((Bytes::from(buf), (pieces, open))));
            }
            match pieces.pop_front() {
                None => return Ok(None),
                Some(Piece::Bytes(b)) => return Ok(Some((Bytes::from(b), (pieces, None)))),
                Some(Piece::File { path, offset, len }) => {
                    let mut file = tokio::fs::File::open(&path).await?;
                    file.seek(io::SeekFrom::Start(offset)).await?;
                    open = Some((file, len));
                }
            }
        }
    })
}
