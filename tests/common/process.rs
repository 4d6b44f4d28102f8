//! The real `recbox` binary as a child process: its log (stderr) is teed into the
//! test's captured output and kept for [`Recbox::wait_line`]; killed when dropped
//! unless it ended before. [`RecorderProcess`] is `recbox recorder` on a Unix
//! socket of its own.

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use recbox::link::transport::LinkAddr;

/// How long a child may take to log a line a test waits for, or to exit.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Recbox {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines already taken by [`Recbox::wait_line`].
    seen: Vec<String>,
}

impl Recbox {
    /// Starts `recbox`, set up by `configure` (arguments, environment), logging at
    /// info level, not under systemd unless `configure` says so; its log lines are
    /// printed with `label` in front.
    pub fn spawn(label: &'static str, configure: impl FnOnce(&mut Command)) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recbox"));
        cmd.env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        // Drained for the whole run, whether or not the test reads it.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
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

    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// The next line it logs that contains `text`.
    pub fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("recbox never logged {text:?}"));
            self.seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Its exit status, if it ends within `patience`.
    pub fn wait_for(&mut self, patience: Duration) -> Option<ExitStatus> {
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

    /// Its exit status; it must end within the patience of every wait here.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_for(PATIENCE).expect("recbox did not exit")
    }

    /// Every line it logged, once it has exited.
    pub fn log(&self) -> Vec<String> {
        self.seen.iter().cloned().chain(self.lines.iter()).collect()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }
}

impl Drop for Recbox {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `recbox recorder` with the tests' link key, listening on a Unix socket.
pub struct RecorderProcess {
    process: Recbox,
    pub addr: LinkAddr,
    _socket_dir: tempfile::TempDir,
}

impl RecorderProcess {
    /// Starts `recbox recorder --storage storage` with `args` (spool, watermarks,
    /// intervals), and waits until it listens (recovery runs first).
    pub fn spawn(storage: &Path, args: &[&str]) -> Self {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket = socket_dir.path().join("recorder.sock");
        let mut process = Recbox::spawn("recorder", |cmd| {
            cmd.arg("recorder")
                .arg("--listen")
                .arg(format!("unix:{}", socket.display()))
                .arg("--storage")
                .arg(storage)
                .args(args)
                .env("RECBOX_LINK_KEY", "test link key");
        });
        let deadline = Instant::now() + PATIENCE;
        while !socket.exists() {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("the recorder exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "the recorder does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            process,
            addr: LinkAddr::Unix(socket),
            _socket_dir: socket_dir,
        }
    }
}

impl Deref for RecorderProcess {
    type Target = Recbox;
    fn deref(&self) -> &Recbox {
        &self.process
    }
}

impl DerefMut for RecorderProcess {
    fn deref_mut(&mut self) -> &mut Recbox {
        &mut self.process
    }
}
