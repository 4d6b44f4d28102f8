//! Telling systemd how the service is doing (`sd_notify`): one datagram per message
//! to the socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). `READY=1` once the roles are up, `STATUS=` lines, `WATCHDOG=1`
//! pings, `STOPPING=1`. Without `NOTIFY_SOCKET` (not run by systemd) nothing is sent.
//!
//! The watchdog interval comes from `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set,
//! must be this process); pinging at half of it leaves room for one late ping.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use thiserror::Error;
use tracing::debug;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotifyEnvError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor @abstract")]
    Socket(String),
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    WatchdogUsec(String),
}

/// What the environment asks for, parsed without touching a socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifyEnv {
    socket: Option<NotifySocket>,
    /// The watchdog's timeout, when it applies to this process.
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifySocket {
    Path(std::path::PathBuf),
    /// In the abstract namespace (`@name` in the variable).
    Abstract(Vec<u8>),
}

impl NotifyEnv {
    /// From the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    fn parse(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Result<Self, NotifyEnvError> {
        let socket = match socket.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(match s.strip_prefix('@') {
                Some(name) if !name.is_empty() => NotifySocket::Abstract(name.as_bytes().to_vec()),
                Some(_) => return Err(NotifyEnvError::Socket(s.to_owned())),
                None if s.starts_with('/') => NotifySocket::Path(s.into()),
                None => return Err(NotifyEnvError::Socket(s.to_owned())),
            }),
        };
        // Meant for another process (a parent that set it for itself).
        let for_us = watchdog_pid.is_none_or(|p| p.trim().parse() == Ok(pid));
        let watchdog = match watchdog_usec.filter(|_| for_us && socket.is_some()) {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(usec) if usec > 0 => Some(Duration::from_micros(usec)),
                _ => return Err(NotifyEnvError::WatchdogUsec(v.to_owned())),
            },
        };
        Ok(Self { socket, watchdog })
    }

    pub fn from_env() -> Result<Self, NotifyEnvError> {
        let var = |name| std::env::var(name).ok();
        Self::parse(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }
}

/// Sends notifications; does nothing when there is nobody to tell.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that tells nobody.
    pub fn none() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    pub fn new(env: &NotifyEnv) -> io::Result<Self> {
        let Some(socket) = &env.socket else {
            return Ok(Self::none());
        };
        let addr = match socket {
            NotifySocket::Path(p) => SocketAddr::from_pathname(p)?,
            NotifySocket::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
        };
        let sock = UnixDatagram::unbound()?;
        // A datagram to a local socket never waits; if its queue is full the message
        // is dropped rather than stall the caller.
        sock.set_nonblocking(true)?;
        Ok(Self {
            target: Some((sock, addr)),
            watchdog: env.watchdog,
        })
    }

    /// How often to ping the watchdog: half its timeout. `None`: no watchdog.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|t| t / 2)
    }

    pub(crate) fn ready(&self) {
        self.send("READY=1");
    }

    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// One line of status for `systemctl status`.
    pub(crate) fn status(&self, status: &str) {
        self.send(&status_message(status));
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                debug!(%message, "sd_notify: {e}");
            }
        }
    }
}

/// `STATUS=…` on one line: a newline would start another assignment.
fn status_message(status: &str) -> String {
    let line: String = status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("STATUS={line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment() {
        assert_eq!(
            NotifyEnv::parse(None, Some("1000000"), None, 7),
            Ok(NotifyEnv::default()),
            "no socket, nobody to ping"
        );
        assert_eq!(
            NotifyEnv::parse(Some("/run/systemd/notify"), Some("30000000"), None, 7),
            Ok(NotifyEnv {
                socket: Some(NotifySocket::Path("/run/systemd/notify".into())),
                watchdog: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(
            NotifyEnv::parse(Some("@sd-notify"), Some("30000000"), Some("7"), 7)
                .unwrap()
                .socket,
            Some(NotifySocket::Abstract(b"sd-notify".to_vec()))
        );
        let other = NotifyEnv::parse(Some("@n"), Some("30000000"), Some("8"), 7).unwrap();
        assert_eq!(other.watchdog, None, "the watchdog of another process");
        assert!(NotifyEnv::parse(Some("relative"), None, None, 7).is_err());
        assert!(NotifyEnv::parse(Some("@"), None, None, 7).is_err());
        assert_eq!(
            NotifyEnv::parse(Some("/n"), Some("0"), None, 7),
            Err(NotifyEnvError::WatchdogUsec("0".into()))
        );
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_message("a\nb"), "STATUS=a b");
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let env = NotifyEnv::parse(
            Some(path.to_str().unwrap()),
            Some("2000000"),
            None,
            std::process::id(),
        )
        .unwrap();
        let n = Notifier::new(&env).unwrap();
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
        n.ready();
        n.status("recording");
        n.watchdog();
        n.stopping();
        assert_eq!(recv(&listener), "READY=1");
        assert_eq!(recv(&listener), "STATUS=recording");
        assert_eq!(recv(&listener), "WATCHDOG=1");
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("recbox-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let env = NotifyEnv::parse(Some(&format!("@{name}")), None, None, 1).unwrap();
        let n = Notifier::new(&env).unwrap();
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        assert_eq!(recv(&listener), "READY=1");
    }

    #[test]
    fn nobody_listening_is_not_an_error() {
        let n = Notifier::new(&NotifyEnv {
            socket: Some(NotifySocket::Path("/nonexistent/notify".into())),
            watchdog: None,
        })
        .unwrap();
        n.ready();
        Notifier::none().ready();
    }
}
