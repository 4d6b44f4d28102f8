//! The box's own web page inside `recbox run` (`[web]`): live status over
//! server-sent events, the recordings (every segment playable in the page and
//! downloadable with byte ranges, the HLS playlist, a failed-over recording as one
//! file when that is valid), start, stop and safe stop, and the JSON API behind it
//! (docs/guide/web.md).
//!
//! - [`status`]: the status folded from the appliance's events (sans-IO);
//! - [`auth`]: the admin password and session tokens (sans-IO);
//! - [`range`]: HTTP byte ranges (sans-IO);
//! - [`recordings`]: the listing of the storage and spool roots, and joined bodies;
//! - `server`: the axum routes, thin shells over the above, and the connection cap.

pub(crate) mod auth;
pub mod range;
pub(crate) mod recordings;
mod server;
pub(crate) mod status;

use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::appliance::{Command, Event};
use crate::config::Config;
use crate::panel::PanelState;
use status::{BoxStatus, StatusView};

/// How often the free space of the storage is read while no stats come.
const FREE_SPACE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum WebError {
    #[error("web page: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("reading the password: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// What the server serves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The storage root, then the spool's.
    roots: Vec<PathBuf>,
    admin_password_hash: Option<String>,
    max_connections: usize,
    max_request_body: usize,
    header_timeout: Duration,
}

impl Settings {
    pub fn of(config: &Config) -> Self {
        let mut roots = vec![config.recorder.storage.clone()];
        roots.extend(config.recorder.spool.clone());
        Self {
            roots,
            admin_password_hash: config.web.admin_password_hash.clone(),
            max_connections: config.web.max_connections as usize,
            max_request_body: config.web.max_request_body as usize,
            header_timeout: config.web.header_timeout,
        }
    }
}

/// The web page, listening.
pub struct Web {
    listener: TcpListener,
    settings: Settings,
}

impl Web {
    pub async fn bind(addr: SocketAddr, settings: Settings) -> Result<Self, WebError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind { addr, source })?;
        if !addr.ip().is_loopback() && settings.admin_password_hash.is_none() {
            warn!(%addr, "web page open beyond this machine without an admin password: only the status is served");
        }
        Ok(Self { listener, settings })
    }

    /// Serves until the appliance's events end. `commands` and `events` come from
    /// the appliance's handle (not the handle itself, so the events end with it),
    /// `panel` from the front.
    pub fn spawn(
        self,
        commands: mpsc::UnboundedSender<Command>,
        events: broadcast::Receiver<Event>,
        panel: watch::Receiver<PanelState>,
    ) -> JoinHandle<()> {
        let (status_tx, status) = watch::channel(Arc::new(BoxStatus::default().view()));
        let storage = self.settings.roots[0].clone();
        let follow = tokio::spawn(follow(events, panel, storage, status_tx));
        if let Ok(addr) = self.listener.local_addr() {
            info!(%addr, "web page listening");
        }
        let serve = server::serve(self.listener, self.settings, commands, status);
        tokio::spawn(async move {
            tokio::select! {
                _ = follow => {}
                result = serve => if let Err(e) = result {
                    warn!("web page stopped: {e}");
                },
            }
        })
    }
}

/// Folds the appliance's events and the panel's state into the published status,
/// until the events end.
async fn follow(
    mut events: broadcast::Receiver<Event>,
    mut panel: watch::Receiver<PanelState>,
    storage: PathBuf,
    status_tx: watch::Sender<Arc<StatusView>>,
) {
    let mut status = BoxStatus::default();
    let mut poll = tokio::time::interval(FREE_SPACE_POLL);
    let mut panel_open = true;
    status.on_panel(*panel.borrow_and_update());
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => status.on_event(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "web page fell behind the box's events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = panel.changed(), if panel_open => match changed {
                Ok(()) => status.on_panel(*panel.borrow_and_update()),
                Err(_) => panel_open = false,
            },
            _ = poll.tick() => {
                let dir = storage.clone();
                // A dead disk can hang statvfs: off the async threads, bounded.
                let read = tokio::task::spawn_blocking(move || crate::storage::space::statvfs(&dir));
                if let Ok(Ok(Ok(space))) = tokio::time::timeout(Duration::from_secs(2), read).await {
                    status.on_free_space(space.free_bytes);
                }
            }
        }
        let view = status.view();
        if **status_tx.borrow() != view {
            status_tx.send_replace(Arc::new(view));
        }
    }
}

/// `recbox web hash-password`: the PHC string of the password on the first line of
/// `input`, for `web.admin_password_hash`.
pub fn hash_password_from(input: impl BufRead) -> Result<String, WebError> {
    let line = input
        .lines()
        .next()
        .transpose()
        .map_err(WebError::Read)?
        .unwrap_or_default();
    Ok(auth::hash_password(&line, rand::random())?)
}
