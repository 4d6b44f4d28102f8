//! A child process of the lab (Janus, a terminal): its stdout lines to the caller,
//! its stderr to this process's with its name in front; SIGTERM, then SIGKILL, on
//! drop.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("starting {name}: {source}")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{name}: no {what} within {patience:?}; got {seen:?}")]
    NoLine {
        name: String,
        what: String,
        patience: Duration,
        seen: Vec<String>,
    },
    #[error("{name} did not exit within {patience:?}")]
    NoExit { name: String, patience: Duration },
    #[error("waiting for {name}: {source}")]
    Wait {
        name: String,
        #[source]
        source: io::Error,
    },
}

pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines already taken by [`wait_line`](Self::wait_line).
    seen: Vec<String>,
}

impl Process {
    /// Starts `cmd` (stdin closed) as `name`.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self, ProcessError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: name.to_owned(),
                source,
            })?;
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let err = BufReader::new(child.stderr.take().expect("piped"));
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next stdout line that `pred` takes, within `patience`.
    pub fn wait_line(
        &mut self,
        what: &str,
        patience: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, ProcessError> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(ProcessError::NoLine {
                        name: self.name.clone(),
                        what: what.to_owned(),
                        patience,
                        seen: self.seen.clone(),
                    })
                }
            }
        }
    }

    /// Its stdout lines from now on, for a caller that reads them itself.
    pub fn take_lines(&mut self) -> mpsc::Receiver<String> {
        std::mem::replace(&mut self.lines, mpsc::channel().1)
    }

    fn terminate(&self) {
        // SAFETY: a plain system call on the pid of our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Asks it to stop (SIGTERM); its exit status.
    pub fn stop(&mut self, patience: Duration) -> Result<ExitStatus, ProcessError> {
        self.terminate();
        let deadline = Instant::now() + patience;
        loop {
            let exited = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.name.clone(),
                source,
            })?;
            if let Some(status) = exited {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::NoExit {
                    name: self.name.clone(),
                    patience,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.terminate();
        for _ in 0..60 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
