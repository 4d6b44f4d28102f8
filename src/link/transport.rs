//! The tokio shell of the media link: moves frames over TCP or a Unix socket, full
//! duplex, encrypted and authenticated (the Noise handshake of [`super::handshake`],
//! then the records of [`super::record`]) on both kinds of socket alike. Reading and writing are independent: a [`FrameReader`] owns the read
//! half, a spawned writer task owns the write half and is fed by [`FrameSender`]s.
//!
//! The writer has two queues. Media and the frames that must stay in order with it
//! (`Start`, `Stop`) go through the bounded stream queue, which gives backpressure;
//! every other frame (faults, stats, ping/pong, handshake) goes through the control
//! queue, which the writer always drains first, so a fault never waits behind video.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::codec::{encode, CodecError, FrameDecoder};
use super::frame::Frame;
use super::handshake::{
    banner_len, check_banner, message_len, HandshakeError, Initiator, KeyId, KeyRing, LinkKey,
    Responder, BANNER, PREAMBLE_LEN,
};
use super::record::{self, Opener, RecordError, Sealer, MAX_PLAINTEXT};

pub use super::record::PREAUTH_MAX_RECORD;
/// Room made in the receive buffer for each read of the socket.
const READ_CHUNK: usize = 64 * 1024;
/// Frames of the stream queue (media) before `send` waits.
const STREAM_QUEUE: usize = 64;
/// Frames of the control queue before `send` waits; bounded so a peer that floods
/// pings but never reads cannot grow it without limit.
const CONTROL_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid link address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: &'static str },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: LinkAddr, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: LinkAddr, source: io::Error },
    #[error("media link i/o: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the peer closed the link in the middle of a frame ({buffered} bytes received)")]
    Truncated { buffered: usize },
    #[error("the link is closed: it was closed by this side")]
    Closed,
    #[error("the link is closed: its writer failed: {0}")]
    WriteFailed(#[source] Arc<io::Error>),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Where a link listens or connects: `tcp:HOST:PORT`, `unix:/path/sock`, or a bare
/// `HOST:PORT` (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAddr {
    /// `HOST:PORT`, as given to the resolver.
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for LinkAddr {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TransportError::BadAddress {
            addr: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            return Ok(LinkAddr::Unix(path.into()));
        }
        let host_port = s.strip_prefix("tcp:").unwrap_or(s);
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return Err(bad("expected tcp:HOST:PORT, unix:PATH or HOST:PORT"));
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if port.parse::<u16>().is_err() {
            return Err(bad("the port is not a number from 0 to 65535"));
        }
        Ok(LinkAddr::Tcp(host_port.to_owned()))
    }
}

impl fmt::Display for LinkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkAddr::Tcp(host_port) => write!(f, "tcp:{host_port}"),
            LinkAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub struct LinkListener {
    listener: Listener,
    local: LinkAddr,
}

impl LinkListener {
    /// Listens on `addr`. A Unix socket file left by a dead process is replaced; one
    /// that a live process still listens on, or a path that is not a socket, is not.
    pub async fn bind(addr: &LinkAddr) -> Result<Self, TransportError> {
        let bind_err = |source| TransportError::Bind {
            addr: addr.clone(),
            source,
        };
        let (listener, local) = match addr {
            LinkAddr::Tcp(host_port) => {
                let listener = TcpListener::bind(host_port.as_str())
                    .await
                    .map_err(bind_err)?;
                // Resolved here so that port 0 reports the port actually bound.
                let local = listener.local_addr().map_err(bind_err)?;
                (Listener::Tcp(listener), LinkAddr::Tcp(local.to_string()))
            }
            LinkAddr::Unix(path) => {
                remove_stale_socket(path).map_err(bind_err)?;
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                (Listener::Unix(listener), addr.clone())
            }
        };
        debug!(%local, "media link listening");
        Ok(Self { listener, local })
    }

    pub fn local_addr(&self) -> LinkAddr {
        self.local.clone()
    }

    /// Waits for the next connection, not yet authenticated.
    pub async fn accept(&self) -> io::Result<Incoming> {
        let incoming = match &self.listener {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Incoming {
                    stream: Stream::Tcp(stream),
                    peer: format!("tcp:{peer}"),
                }
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                let peer = match stream.peer_cred() {
                    Ok(cred) => match cred.pid() {
                        Some(pid) => format!("unix peer pid {pid} uid {}", cred.uid()),
                        None => format!("unix peer uid {}", cred.uid()),
                    },
                    Err(_) => "unix peer".to_owned(),
                };
                Incoming {
                    stream: Stream::Unix(stream),
                    peer,
                }
            }
        };
        debug!(peer = %incoming.peer, "media link accepted");
        Ok(incoming)
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// An accepted connection whose peer has proven nothing yet.
pub struct Incoming {
    stream: Stream,
    /// Who connected, for logs.
    pub peer: String,
}

/// An authenticated link: its two ends and the key the mixer used.
pub struct Authenticated {
    pub reader: FrameReader,
    pub sender: FrameSender,
    pub(crate) key: KeyId,
}

impl Incoming {
    /// Runs the recorder's side of the handshake, reading at most a few hundred bytes
    /// and one record of [`PREAUTH_MAX_RECORD`] until the mixer has proven the key.
    /// The caller bounds the time it may take.
    pub async fn authenticate(
        self,
        keys: &KeyRing,
        max_frame: usize,
    ) -> Result<Authenticated, TransportError> {
        match self.stream {
            Stream::Tcp(mut stream) => {
                let (opener, sealer, key) = respond(&mut stream, keys).await?;
                let (read, write) = stream.into_split();
                let (reader, sender) = spawn_link(read, write, max_frame, opener, sealer);
                Ok(Authenticated {
                    reader,
                    sender,
                    key,
                })
            }
            Stream::Unix(mut stream) => {
                let (opener, sealer, key) = respond(&mut stream, keys).await?;
                let (read, write) = stream.into_split();
                let (reader, sender) = spawn_link(read, write, max_frame, opener, sealer);
                Ok(Authenticated {
                    reader,
                    sender,
                    key,
                })
            }
        }
    }
}

/// The recorder's handshake; returns the opener holding the mixer's first record,
/// decrypted (what proves the mixer), in its plaintext.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &KeyRing,
) -> Result<(FirstOpener, Sealer, KeyId), TransportError> {
    stream.write_all(BANNER).await?;
    let mut preamble = [0; PREAMBLE_LEN];
    stream.read_exact(&mut preamble).await?;
    let responder = Responder::new(keys, &preamble)?;
    let msg1 = read_message(stream).await?;
    let (msg2, state, key) = responder.respond(&msg1)?;
    stream.write_all(&msg2).await?;
    let (sealer, mut opener) = record::split(state, PREAUTH_MAX_RECORD);
    let mut prefix = [0; 2];
    stream.read_exact(&mut prefix).await?;
    opener.push(&prefix);
    let len = opener.next_len()?.expect("the prefix is in");
    let mut first = vec![0; len];
    stream.read_exact(&mut first).await?;
    opener.push(&first);
    let mut plain = Vec::new();
    opener.open(&mut plain)?;
    opener.authenticated();
    Ok((FirstOpener { opener, plain }, sealer, key))
}

/// An opener and the plaintext it already decrypted.
struct FirstOpener {
    opener: Opener,
    plain: Vec<u8>,
}

async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, TransportError> {
    let mut prefix = [0; 2];
    stream.read_exact(&mut prefix).await?;
    let mut msg = vec![0; message_len(prefix)?];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

/// The mixer's handshake: nothing is sent but the handshake until the recorder has
/// proven the key.
async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &LinkKey,
) -> Result<(FirstOpener, Sealer), TransportError> {
    let steps = async {
        let mut prefix = [0; 4];
        stream.read_exact(&mut prefix).await?;
        let mut banner = vec![0; banner_len(prefix)?];
        stream.read_exact(&mut banner).await?;
        check_banner(&banner)?;
        let (initiator, out) = Initiator::start(key)?;
        stream.write_all(&out).await?;
        let msg2 = read_message(stream).await?;
        Ok::<_, TransportError>(initiator.finish(&msg2)?)
    };
    let state = steps.await.map_err(|e| match e {
        TransportError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            HandshakeError::RecorderClosed {
                key: key.id(),
                source: e,
            }
            .into()
        }
        other => other,
    })?;
    let (sealer, opener) = record::split(state, record::MAX_RECORD);
    Ok((
        FirstOpener {
            opener,
            plain: Vec::new(),
        },
        sealer,
    ))
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if !meta.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        )),
        // Connecting tells a live listener from a stale file; it does not block on
        // a Unix socket.
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is listening on this socket",
            )),
            Err(_) => {
                debug!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path)
            }
        },
    }
}

/// Connects to a listening link and authenticates both ends with `key`.
pub async fn connect(
    addr: &LinkAddr,
    key: &LinkKey,
    max_frame: usize,
) -> Result<(FrameReader, FrameSender), TransportError> {
    let connect_err = |source| TransportError::Connect {
        addr: addr.clone(),
        source,
    };
    let link = match addr {
        LinkAddr::Tcp(host_port) => {
            let mut stream = TcpStream::connect(host_port.as_str())
                .await
                .map_err(connect_err)?;
            // Control frames are small and urgent; do not let Nagle hold them back.
            stream.set_nodelay(true).map_err(connect_err)?;
            let (opener, sealer) = initiate(&mut stream, key).await?;
            let (read, write) = stream.into_split();
            spawn_link(read, write, max_frame, opener, sealer)
        }
        LinkAddr::Unix(path) => {
            let mut stream = UnixStream::connect(path).await.map_err(connect_err)?;
            let (opener, sealer) = initiate(&mut stream, key).await?;
            let (read, write) = stream.into_split();
            spawn_link(read, write, max_frame, opener, sealer)
        }
    };
    debug!(%addr, "media link connected and authenticated");
    Ok(link)
}

fn spawn_link<R, W>(
    read: R,
    write: W,
    max_frame: usize,
    first: FirstOpener,
    sealer: Sealer,
) -> (FrameReader, FrameSender)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (stream_tx, stream_rx) = mpsc::channel(STREAM_QUEUE);
    let shared = Arc::new(Shared {
        max_frame,
        end: OnceLock::new(),
    });
    tokio::spawn(run_writer(
        write,
        sealer,
        control_rx,
        stream_rx,
        shared.clone(),
    ));
    let mut decoder = FrameDecoder::new(max_frame);
    decoder.push(&first.plain);
    let reader = FrameReader {
        read: Box::new(read),
        opener: first.opener,
        decoder,
    };
    let sender = FrameSender {
        control: control_tx,
        stream: stream_tx,
        shared,
    };
    (reader, sender)
}

/// The receiving end of a link.
pub struct FrameReader {
    read: Box<dyn AsyncRead + Unpin + Send>,
    opener: Opener,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer closed the link between frames.
    ///
    /// Cancel-safe: dropping the future loses no bytes, so it can sit in a `select!`.
    /// After an error the link is unusable and every call repeats the error.
    pub async fn next(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            // Records are decrypted straight into the decoder's buffer, and read
            // straight into the opener's: no copies beyond the decryption.
            let opener = &mut self.opener;
            match self.decoder.append_with(|buf| opener.open(buf)) {
                Some(Ok(true)) => continue,
                Some(Ok(false)) => {}
                Some(Err(e)) => return Err(e.into()),
                // The decoder failed: the next `next_frame` says why.
                None => continue,
            }
            let n = self
                .read
                .read_buf(self.opener.receive_buffer(READ_CHUNK))
                .await?;
            if n == 0 {
                self.opener.at_eof()?;
                return match self.decoder.buffered() {
                    0 => Ok(None),
                    buffered => Err(TransportError::Truncated { buffered }),
                };
            }
        }
    }
}

#[derive(Debug)]
enum StreamItem {
    Frame(Vec<u8>),
    /// Flush, shut down the write half, then answer.
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Shared {
    max_frame: usize,
    /// Why the writer stopped: `Ok` for a local close, `Err` with the I/O error
    /// (shared: every clone of the sender reports it).
    end: OnceLock<Result<(), Arc<io::Error>>>,
}

/// The sending end of a link; clone it freely. When the last clone is dropped the
/// writer flushes what is queued, shuts the write half down and ends.
#[derive(Debug, Clone)]
pub struct FrameSender {
    control: mpsc::Sender<Vec<u8>>,
    stream: mpsc::Sender<StreamItem>,
    shared: Arc<Shared>,
}

impl FrameSender {
    /// Queues `frame`, waiting while the queue for its kind is full.
    ///
    /// A frame larger than the link's maximum is refused here rather than making the
    /// peer drop the link. A write error is reported by the send after it happened
    /// (the frames queued in between are lost with the connection).
    pub async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        if self.shared.end.get().is_some() {
            return Err(self.closed());
        }
        // Media dominates: size its buffer so encoding never reallocates.
        let mut bytes = Vec::with_capacity(match &frame {
            Frame::Media(media) => media.data.len() + 32,
            _ => 256,
        });
        encode(&frame, &mut bytes)?;
        let len = bytes.len() - 4;
        if len > self.shared.max_frame {
            return Err(CodecError::TooLarge {
                len,
                max: self.shared.max_frame,
            }
            .into());
        }
        let queued = if matches!(frame, Frame::Media(_) | Frame::Start(_) | Frame::Stop) {
            self.stream.send(StreamItem::Frame(bytes)).await.is_ok()
        } else {
            self.control.send(bytes).await.is_ok()
        };
        if queued {
            Ok(())
        } else {
            Err(self.closed())
        }
    }

    /// Whether a media frame would be queued at once: a sender that must not wait on
    /// a stalled peer checks this before [`send`](Self::send).
    pub(crate) fn has_room(&self) -> bool {
        self.stream.capacity() > 0
    }

    /// Sends everything queued so far, shuts the write half down and waits for it.
    /// Other clones get [`TransportError::Closed`] afterwards.
    pub async fn close(self) -> Result<(), TransportError> {
        let (done_tx, done_rx) = oneshot::channel();
        if self.stream.send(StreamItem::Close(done_tx)).await.is_ok() {
            // An error here means the writer ended on its own; `end` says why.
            let _ = done_rx.await;
        }
        match self.shared.end.get() {
            Some(Err(cause)) => Err(TransportError::WriteFailed(cause.clone())),
            _ => Ok(()),
        }
    }

    fn closed(&self) -> TransportError {
        match self.shared.end.get() {
            Some(Err(cause)) => TransportError::WriteFailed(cause.clone()),
            _ => TransportError::Closed,
        }
    }
}

async fn run_writer<W: AsyncWrite + Unpin>(
    mut write: W,
    sealer: Sealer,
    mut control: mpsc::Receiver<Vec<u8>>,
    mut stream: mpsc::Receiver<StreamItem>,
    shared: Arc<Shared>,
) {
    let mut out = Records {
        sealer,
        pending: Vec::new(),
        sealed: Vec::new(),
    };
    let (result, done) = match pump(&mut write, &mut out, &mut control, &mut stream).await {
        Ok(done) => (write.shutdown().await, done),
        Err(e) => (Err(e), None),
    };
    if let Err(e) = &result {
        warn!(error = %e, "media link writer failed");
    }
    // Recorded before the queues close, so a sender that finds them closed sees why.
    let _ = shared.end.set(result.map_err(Arc::new));
    drop((control, stream));
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// The writer's records: frames queued together are sealed together, so small
/// frames share records (one tag, one write) instead of one record each.
struct Records {
    sealer: Sealer,
    /// Plaintext of frames not yet sealed, less than a full record.
    pending: Vec<u8>,
    /// Reused for the ciphertext of each write.
    sealed: Vec<u8>,
}

impl Records {
    /// Takes one encoded frame; writes the full records it completes.
    async fn push<W: AsyncWrite + Unpin>(&mut self, write: &mut W, frame: &[u8]) -> io::Result<()> {
        if self.pending.is_empty() && frame.len() >= MAX_PLAINTEXT {
            // Large (video): sealed from where it is, not copied first.
            return write_sealed(&mut self.sealer, &mut self.sealed, write, frame).await;
        }
        self.pending.extend_from_slice(frame);
        if self.pending.len() >= MAX_PLAINTEXT {
            self.flush(write).await?;
        }
        Ok(())
    }

    /// Seals and writes what is pending.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, write: &mut W) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = write_sealed(&mut self.sealer, &mut self.sealed, write, &self.pending).await;
        self.pending.clear();
        result
    }
}

async fn write_sealed<W: AsyncWrite + Unpin>(
    sealer: &mut Sealer,
    sealed: &mut Vec<u8>,
    write: &mut W,
    plain: &[u8],
) -> io::Result<()> {
    sealed.clear();
    sealer.seal(plain, sealed).map_err(io::Error::other)?;
    write.write_all(sealed).await
}

/// Writes queued frames until every sender is gone (`Ok(None)`) or one asks to close
/// (`Ok(Some(answer))`).
async fn pump<W: AsyncWrite + Unpin>(
    write: &mut W,
    out: &mut Records,
    control: &mut mpsc::Receiver<Vec<u8>>,
    stream: &mut mpsc::Receiver<StreamItem>,
) -> io::Result<Option<oneshot::Sender<()>>> {
    loop {
        // Take what is already queued without waiting, control first, so that
        // consecutive frames are coalesced into few records and writes.
        let item = match control.try_recv() {
            Ok(bytes) => StreamItem::Frame(bytes),
            Err(_) => match stream.try_recv() {
                Ok(item) => item,
                Err(_) => {
                    // Nothing more to coalesce: put it on the wire, then wait.
                    out.flush(write).await?;
                    tokio::select! {
                        biased;
                        Some(bytes) = control.recv() => StreamItem::Frame(bytes),
                        Some(item) = stream.recv() => item,
                        else => return Ok(None),
                    }
                }
            },
        };
        match item {
            StreamItem::Frame(bytes) => out.push(write, &bytes).await?,
            StreamItem::Close(done) => {
                out.flush(write).await?;
                return Ok(Some(done));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::codec::DEFAULT_MAX_FRAME;
    use crate::link::frame::{Media, Track};

    #[test]
    fn addresses_parse_and_display() {
        let cases = [
            ("tcp:127.0.0.1:7000", LinkAddr::Tcp("127.0.0.1:7000".into())),
            ("tcp:[::1]:7000", LinkAddr::Tcp("[::1]:7000".into())),
            (
                "recorder.local:7000",
                LinkAddr::Tcp("recorder.local:7000".into()),
            ),
            (
                "unix:/run/recbox/link.sock",
                LinkAddr::Unix("/run/recbox/link.sock".into()),
            ),
        ];
        for (text, addr) in cases {
            let parsed: LinkAddr = text.parse().unwrap();
            assert_eq!(parsed, addr, "{text}");
            assert_eq!(parsed.to_string().parse::<LinkAddr>().unwrap(), addr);
        }
        assert_eq!(LinkAddr::Tcp("h:1".into()).to_string(), "tcp:h:1");
        assert_eq!(LinkAddr::Unix("/s".into()).to_string(), "unix:/s");
    }

    #[test]
    fn bad_addresses_are_explained() {
        for text in [
            "",
            "localhost",
            "tcp:localhost",
            ":7000",
            "h:port",
            "h:70000",
            "unix:",
        ] {
            let err = text.parse::<LinkAddr>().unwrap_err();
            assert!(
                matches!(&err, TransportError::BadAddress { addr, .. } if addr == text),
                "{text}: {err}"
            );
        }
    }

    /// Both ends of an authenticated link over an in-memory stream (mixer's first).
    async fn secure_pair(
        max_frame: usize,
    ) -> ((FrameReader, FrameSender), (FrameReader, FrameSender)) {
        let key: LinkKey = "k".parse().unwrap();
        let keys = KeyRing::single(key.clone());
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mixer = async {
            let (opener, sealer) = initiate(&mut a, &key).await.unwrap();
            // The recorder's handshake ends only with the mixer's first record.
            let (reader, sender) = {
                let (read, write) = tokio::io::split(a);
                spawn_link(read, write, max_frame, opener, sealer)
            };
            sender.send(Frame::Ping { seq: 0 }).await.unwrap();
            (reader, sender)
        };
        let recorder = async {
            let (opener, sealer, _) = respond(&mut b, &keys).await.unwrap();
            let (read, write) = tokio::io::split(b);
            spawn_link(read, write, max_frame, opener, sealer)
        };
        let (m, mut r) = tokio::join!(mixer, recorder);
        assert_eq!(r.0.next().await.unwrap(), Some(Frame::Ping { seq: 0 }));
        (m, r)
    }

    #[tokio::test]
    async fn secure_links_run_over_any_stream() {
        let ((mut a_reader, a_sender), (mut b_reader, b_sender)) =
            secure_pair(DEFAULT_MAX_FRAME).await;
        let media = Frame::Media(Media {
            track: Track::Audio,
            pts: 0,
            dts: 0,
            keyframe: true,
            data: vec![9; 200_000],
        });
        a_sender.send(media.clone()).await.unwrap();
        b_sender.send(Frame::Pong { seq: 3 }).await.unwrap();
        assert_eq!(b_reader.next().await.unwrap(), Some(media));
        assert_eq!(a_reader.next().await.unwrap(), Some(Frame::Pong { seq: 3 }));
        a_sender.close().await.unwrap();
        assert_eq!(b_reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_by_the_sender() {
        let ((_reader, sender), _recorder) = secure_pair(100).await;
        let media = Frame::Media(Media {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe: true,
            data: vec![0; 100],
        });
        assert!(matches!(
            sender.send(media).await,
            Err(TransportError::Codec(CodecError::TooLarge { max: 100, .. }))
        ));
        sender.send(Frame::Stop).await.unwrap();
    }
}
