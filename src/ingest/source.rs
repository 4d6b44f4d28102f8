//! Which address a stream's RTP is taken from: the SFU's. RTP is not authenticated,
//! and an SSRC is easily seen or guessed, so anyone who can reach the ingest port
//! could otherwise put pictures and sound into the recording. The first packet of a
//! stream locks it to the address it came from; packets of that SSRC from any other
//! address are dropped and counted. A stream the SFU announces anew (a forward
//! renewed, e.g. after Janus restarted and sends from a new port) learns again.
//! Sans-IO.

use std::net::SocketAddr;

/// What to do with a packet of a stream, by the address it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The stream's first packet since it was (re)announced: its address is the one.
    Learned,
    /// From the address the stream is locked to.
    Locked,
    /// From another address: dropped.
    Spoofed { locked: SocketAddr },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SourceLock {
    source: Option<SocketAddr>,
}

impl SourceLock {
    /// The address the stream is locked to, once it is.
    pub fn source(&self) -> Option<SocketAddr> {
        self.source
    }

    /// Whether a packet from `from` may be taken; the first one locks the stream.
    pub fn admit(&mut self, from: SocketAddr) -> Admission {
        match self.source {
            None => {
                self.source = Some(from);
                Admission::Learned
            }
            Some(locked) if locked == from => Admission::Locked,
            Some(locked) => Admission::Spoofed { locked },
        }
    }

    /// The stream was announced anew: the next packet's address is the one.
    pub fn relearn(&mut self) {
        self.source = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_source_locks_the_stream() {
        let mut lock = SourceLock::default();
        assert_eq!(lock.source(), None);
        assert_eq!(lock.admit(addr("10.0.0.1:4000")), Admission::Learned);
        assert_eq!(lock.admit(addr("10.0.0.1:4000")), Admission::Locked);
        assert_eq!(lock.source(), Some(addr("10.0.0.1:4000")));
    }

    #[test]
    fn another_port_or_host_is_refused() {
        let sfu = addr("10.0.0.1:4000");
        let mut lock = SourceLock::default();
        lock.admit(sfu);
        for other in ["10.0.0.1:4001", "10.0.0.2:4000", "[::1]:4000"] {
            assert_eq!(
                lock.admit(addr(other)),
                Admission::Spoofed { locked: sfu },
                "{other}"
            );
        }
        // Refused packets do not move the lock.
        assert_eq!(lock.admit(sfu), Admission::Locked);
    }

    #[test]
    fn a_renewed_stream_learns_its_new_source() {
        let mut lock = SourceLock::default();
        lock.admit(addr("10.0.0.1:4000"));
        lock.relearn();
        assert_eq!(lock.admit(addr("10.0.0.1:5000")), Admission::Learned);
        assert_eq!(
            lock.admit(addr("10.0.0.1:4000")),
            Admission::Spoofed {
                locked: addr("10.0.0.1:5000")
            }
        );
    }
}
