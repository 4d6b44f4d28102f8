//! A TCP proxy between the mixer and the recorder that a test can cut (connections
//! reset, new ones refused) or freeze (connections stay open, nothing moves), to
//! break the media link the way a network does.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Freeze,
    Cut,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watch) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() == Mode::Cut {
                    continue; // dropped: the connection is closed at once
                }
                let Ok(server) = TcpStream::connect(to).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, watch.clone()));
            }
        });
        Self { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn relay(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        if *mode.borrow() == Mode::Freeze {
            // Nothing moves until the mode changes; the sockets stay open.
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        if *mode.borrow() == Mode::Cut {
            // Dropping the halves resets both connections.
            return;
        }
        tokio::select! {
            n = cr.read(&mut up) => match n {
                Ok(n) if n > 0 => if sw.write_all(&up[..n]).await.is_err() { return },
                _ => return,
            },
            n = sr.read(&mut down) => match n {
                Ok(n) if n > 0 => if cw.write_all(&down[..n]).await.is_err() { return },
                _ => return,
            },
            _ = mode.changed() => {}
        }
    }
}
