//! The real `recbox recorder` binary as a child process, listening on a Unix socket
//! of its own; stopped (SIGKILL) when dropped unless it ended before.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use recbox::link::transport::LinkAddr;

/// How long the recorder may take to start listening (recovery runs first).
const START_PATIENCE: Duration = Duration::from_secs(60);

pub struct RecorderProcess {
    child: Child,
    pub addr: LinkAddr,
    _socket_dir: tempfile::TempDir,
}

impl RecorderProcess {
    /// Starts `recbox recorder --storage storage` with `args` (spool, watermarks,
    /// intervals) and the tests' link key, and waits until it listens.
    pub fn spawn(storage: &Path, args: &[&str]) -> Self {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket = socket_dir.path().join("recorder.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_recbox"))
            .arg("recorder")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--storage")
            .arg(storage)
            .args(args)
            .env("RECBOX_LINK_KEY", "test link key")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drained for the whole run, into the test's captured output.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("recorder: {line}");
            }
        });
        let deadline = Instant::now() + START_PATIENCE;
        while !socket.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the recorder exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "the recorder does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            addr: LinkAddr::Unix(socket),
            _socket_dir: socket_dir,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain system call on the pid of our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits up to `patience` for the process to end.
    pub fn wait(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RecorderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
