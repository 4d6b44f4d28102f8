//! A control platform's webhook receiver: a real HTTP server (axum) on a socket the
//! test bound, answering with the statuses the test scripts and handing every
//! request's signature header and JSON body to the test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::mpsc;

/// One POST as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub signature: Option<String>,
    pub body: String,
    pub json: serde_json::Value,
}

#[derive(Clone)]
struct Script {
    /// Statuses for the next requests; 200 once it is empty.
    statuses: Arc<Mutex<VecDeque<StatusCode>>>,
    received: mpsc::UnboundedSender<Received>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    statuses: Arc<Mutex<VecDeque<StatusCode>>>,
    received: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    /// Serves on 127.0.0.1 at a port of its own.
    pub async fn start() -> Self {
        Self::serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serves on `listener` (bound wherever the test needs it, a namespace too).
    pub fn serve(listener: std::net::TcpListener) -> Self {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, received) = mpsc::unbounded_channel();
        let script = Script {
            statuses: statuses.clone(),
            received: tx,
        };
        let app = Router::new()
            .route("/{*path}", post(take))
            .with_state(script);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            statuses,
            received,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests are answered with these statuses.
    pub fn answer(&self, statuses: &[u16]) {
        let mut s = self.statuses.lock().unwrap();
        s.extend(statuses.iter().map(|&c| StatusCode::from_u16(c).unwrap()));
    }

    /// The next request (whatever it was answered), within `patience`.
    pub async fn next(&mut self, patience: Duration) -> Option<Received> {
        tokio::time::timeout(patience, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every request that has arrived so far.
    pub fn drain(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.received.try_recv().ok()).collect()
    }
}

async fn take(
    State(script): State<Script>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let status = script
        .statuses
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(StatusCode::OK);
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let _ = script.received.send(Received {
        path: uri.path().to_owned(),
        signature: headers
            .get("x-recbox-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        json,
    });
    status
}
