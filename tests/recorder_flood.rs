//! The real recorder binary under a flood of clients that never authenticate: silent
//! ones are closed after the handshake deadline, ones sending large frames cost no
//! memory, and with few file descriptors it survives and a mixer still records.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use recbox::link::transport::LinkAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(120);

struct Recorder {
    child: Child,
    addr: String,
    _storage: tempfile::TempDir,
}

impl Recorder {
    /// `recbox recorder` on a free loopback port, limited to `nofile` descriptors.
    async fn spawn(extra: &[&str], nofile: Option<u64>) -> Self {
        let storage = tempfile::tempdir().unwrap();
        let key_file = storage.path().join("link.key");
        std::fs::write(&key_file, "test link key").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recbox"));
        cmd.args(["recorder", "--listen", &addr, "--storage"])
            .arg(storage.path().join("rec"))
            .arg("--key-file")
            .arg(&key_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(&addr).await.is_err() {
            assert!(Instant::now() < deadline, "the recorder never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            addr,
            _storage: storage,
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the recorder closes the connection.
async fn until_closed(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_after_the_handshake_deadline() {
    let deadline = Duration::from_secs(1);
    let rec = Recorder::spawn(
        &["--handshake-timeout", "1s", "--max-unauthenticated", "1000"],
        None,
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..500 {
        // Before connecting: the recorder's deadline starts later, when it accepts.
        let opened = Instant::now();
        let s = TcpStream::connect(&rec.addr).await.unwrap();
        clients.push(tokio::spawn(async move {
            until_closed(s).await;
            opened.elapsed()
        }));
    }
    for c in clients {
        let held = tokio::time::timeout(PATIENCE, c)
            .await
            .expect("closed after the deadline")
            .unwrap();
        assert!(
            held >= deadline,
            "closed after {held:?}, before the deadline"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unauthenticated_frames_cost_no_memory() {
    let rec = Recorder::spawn(&[], None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rec.rss_kib();
    let mut clients = Vec::new();
    for i in 0..64u8 {
        let mut s = TcpStream::connect(&rec.addr).await.unwrap();
        clients.push(tokio::spawn(async move {
            // Half claim the right protocol and a huge handshake message, half
            // send a v1-style frame length; then 4 MiB.
            let head: Vec<u8> = if i % 2 == 0 {
                [b"RBXL\x02\x00".as_slice(), &[0; 8], &[0xff, 0xff]].concat()
            } else {
                (4u32 << 20).to_le_bytes().to_vec()
            };
            let _ = s.write_all(&head).await;
            let _ = s.write_all(&vec![i; 4 << 20]).await;
            s
        }));
    }
    let mut held = Vec::new();
    for c in clients {
        held.push(c.await.unwrap());
    }
    let flooded = rec.rss_kib();
    assert!(
        flooded < idle + 4 * 1024,
        "RSS went from {idle} KiB idle to {flooded} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_recorder_survives_and_a_mixer_records() {
    // More unauthenticated connections asked for than there are descriptors: the
    // recorder keeps half of them for its recordings and the mixer.
    let mut rec = Recorder::spawn(
        &[
            "--handshake-timeout",
            "2s",
            "--max-unauthenticated",
            "10000",
        ],
        Some(256),
    )
    .await;
    let addr: LinkAddr = rec.addr.parse().unwrap();
    let flood_addr = rec.addr.clone();
    let stop_flood = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = stop_flood.clone();
    let flood = tokio::spawn(async move {
        let mut held = std::collections::VecDeque::new();
        while !flooding.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(s) = TcpStream::connect(&flood_addr).await {
                held.push_back(s);
            }
            if held.len() > 400 {
                held.pop_front();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rec.alive(), "the recorder exited under the flood");

    let deadline = Instant::now() + PATIENCE;
    let mut up = loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            recbox::mixer::uplink::Uplink::connect(
                &addr,
                key(),
                recbox::link::frame::text("rec-f"),
                recbox::link::codec::DEFAULT_MAX_FRAME,
            ),
        )
        .await;
        match attempt {
            Ok(Ok(up)) => break up,
            _ => assert!(Instant::now() < deadline, "the mixer never got in"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut feed = feed();
    up.start(feed.start_params("rec-f", ROOM)).await.unwrap();
    let mut sent = send_media(&up, &mut feed, 1.0).await;
    let summary = stop(&mut up, &mut sent.events).await;
    assert!(
        summary.fragments > 0 && summary.file_bytes > 0,
        "{summary:?}"
    );
    stop_flood.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.await.unwrap();
    assert!(rec.alive(), "the recorder exited");
}
