//! The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`), read through tokio.
//!
//! Only the kernel group is joined: events arrive as soon as the kernel emits them,
//! without waiting for udev rules to run. Datagrams from anyone but the kernel are
//! dropped, so a local process cannot fake a device removal.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::uevent::{self, Message, Uevent, MAX_MESSAGE_LEN};

/// Multicast group of the events sent by the kernel (group 2 is udev's).
const KERNEL_GROUP: u32 = 1;
/// Receive buffer asked for: a hotplug storm (a USB hub with several disks) produces
/// hundreds of events at once, and losing them means missing a removal.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("opening the uevent socket: {0}")]
    Open(#[source] io::Error),
    #[error("receiving uevents: {0}")]
    Recv(#[source] io::Error),
    /// The socket buffer overflowed and events were lost: the caller must look at the
    /// device, mounts and space again rather than rely on events it did not see.
    #[error("uevents were lost (receive buffer overrun)")]
    Overrun,
}

/// A bound `NETLINK_KOBJECT_UEVENT` socket.
#[derive(Debug)]
pub struct UeventSocket {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl UeventSocket {
    /// Opens and binds the socket. Must be called inside a tokio runtime. Fails,
    /// without panicking, where netlink is not available (not Linux, seccomp, no
    /// permission).
    pub fn open() -> Result<Self, NetlinkError> {
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(NetlinkError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_receive_buffer(fd.as_raw_fd());

        // SAFETY: all-zero is a valid `sockaddr_nl`.
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = KERNEL_GROUP;
        // SAFETY: `addr` is a valid `sockaddr_nl` and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(NetlinkError::Open(io::Error::last_os_error()));
        }
        // Registering outside a runtime would panic; report it like any other failure.
        tokio::runtime::Handle::try_current()
            .map_err(|e| NetlinkError::Open(io::Error::other(e)))?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open and
        // unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| NetlinkError::Open(e.into()))?;
        Ok(Self {
            fd,
            buf: vec![0; MAX_MESSAGE_LEN],
        })
    }

    /// The next datagram sent by the kernel. A receive-buffer overrun is returned as
    /// the `ENOBUFS` error; the socket stays usable after it.
    async fn recv(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            match guard.try_io(|fd| recv_from_kernel(fd.get_ref().as_raw_fd(), buf)) {
                Ok(Ok(Some(len))) => return Ok(self.buf[..len].to_vec()),
                Ok(Ok(None)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                // Spurious readiness; `try_io` has cleared it.
                Err(_would_block) => {}
            }
        }
    }
}

/// Ask for a large receive buffer: `SO_RCVBUFFORCE` passes the system limit when
/// privileged, `SO_RCVBUF` is capped by `net.core.rmem_max`. Failing both only makes
/// overruns likelier, which are detected, so it is not an error.
fn set_receive_buffer(fd: RawFd) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: the option value is a `c_int` and its length is given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&RECEIVE_BUFFER as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
    tracing::debug!(error = %io::Error::last_os_error(), "cannot enlarge the uevent receive buffer");
}

/// One datagram into `buf`: `Some(len)` if the kernel sent it whole, `None` for
/// datagrams to skip (another sender, too long).
fn recv_from_kernel(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: all-zero is a valid `sockaddr_nl`.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    let mut addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` and `addr` are valid for writes of the lengths given. `MSG_TRUNC`
    // makes the call return the full datagram length, to detect truncation.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            (&mut addr as *mut libc::sockaddr_nl).cast(),
            &mut addr_len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if addr.nl_pid != 0 {
        tracing::debug!(
            sender = addr.nl_pid,
            "ignoring a uevent not sent by the kernel"
        );
        return Ok(None);
    }
    if n > buf.len() {
        tracing::warn!(len = n, "ignoring a truncated uevent");
        return Ok(None);
    }
    Ok(Some(n))
}

/// Parsed kernel uevents.
#[derive(Debug)]
pub struct UeventSource {
    socket: UeventSocket,
}

impl UeventSource {
    /// Must be called inside a tokio runtime.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Self {
            socket: UeventSocket::open()?,
        })
    }

    /// The next kernel uevent. udev's re-broadcasts and malformed messages are skipped
    /// (the latter logged).
    pub async fn recv(&mut self) -> Result<Uevent, NetlinkError> {
        loop {
            let buf = self.socket.recv().await.map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    NetlinkError::Overrun
                } else {
                    NetlinkError::Recv(e)
                }
            })?;
            match uevent::parse(&buf) {
                Ok(Message::Kernel(ev)) => return Ok(ev),
                Ok(Message::Udev) => {}
                Err(e) => {
                    tracing::warn!(error = %e, len = buf.len(), "ignoring a malformed uevent")
                }
            }
        }
    }
}
