//! A network namespace of the lab's own with a veth pair whose both ends are inside
//! it: Janus gathers no loopback ICE candidates, so it and its WebRTC terminals meet
//! on the veth pair, and nothing they send leaves the namespace. Removed on drop.
//! Needs root (`ip netns`).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

use thiserror::Error;

/// Janus's end of the veth pair (its ICE candidates), and the terminals'.
pub(crate) const JANUS_IF: (&str, &str) = ("vj", "10.77.0.1/24");
pub(crate) const TERMINAL_IF: (&str, &str) = ("vc", "10.77.0.2/24");

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
    #[error("entering the network namespace {name}: {source}")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Runs `cmd`; its stderr when it fails.
fn run(cmd: &mut Command) -> Result<(), NetnsError> {
    let command = format!("{cmd:?}");
    let failed = |detail: String| NetnsError::Command { command, detail };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => return Err(failed(e.to_string())),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// A network namespace with `lo` up and the veth pair [`JANUS_IF`]/[`TERMINAL_IF`].
pub struct Netns {
    name: String,
}

impl Netns {
    /// `recbox-<tag>-<pid>`, so that a test and a bench can run at once.
    pub fn create(tag: &str) -> Result<Self, NetnsError> {
        let name = format!("recbox-{tag}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, a failure removes it again.
        let ns = Self { name };
        let ip = |args: &[&str]| run(Command::new("ip").arg("-n").arg(&ns.name).args(args));
        ip(&["link", "set", "lo", "up"])?;
        ip(&[
            "link",
            "add",
            JANUS_IF.0,
            "type",
            "veth",
            "peer",
            "name",
            TERMINAL_IF.0,
        ])?;
        for (dev, addr) in [JANUS_IF, TERMINAL_IF] {
            ip(&["addr", "add", addr, "dev", dev])?;
            ip(&["link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a thread of its own that entered the namespace: the sockets it
    /// makes, and the threads it starts, are inside; this process's other threads
    /// stay where they are.
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        let path = format!("/run/netns/{}", self.name);
        let enter = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).map_err(enter)?;
                // SAFETY: a valid descriptor of a network namespace; it changes this
                // thread only.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(enter(io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port` inside.
    pub fn accepts(&self, port: u16) -> bool {
        self.inside(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
