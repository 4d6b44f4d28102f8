//! Media-link throughput: `Media` frames over loopback TCP and a Unix socket, small
//! (audio-like) and large (video-like), measured two ways in the same run:
//! - `plain`: the frame codec alone over the raw socket, buffered as the link's
//!   writer buffers (the link before it was encrypted; here only as a baseline);
//! - `secure`: the link itself, `FrameSender` and `FrameReader` after the Noise
//!   handshake, every byte in ChaCha20-Poly1305 records.
//!
//! Counts what the reader received, so queued-but-unsent frames do not count.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::link::codec::{encode, CodecError, FrameDecoder, DEFAULT_MAX_FRAME};
use crate::link::frame::{Frame, Media, Track};
use crate::link::handshake::{KeyRing, LinkKey};
use crate::link::transport::{connect, LinkAddr, LinkListener, TransportError};

const FRAME_SIZES: [usize; 2] = [1024, 100 * 1024];
/// As the link's reader and writer.
const IO_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
enum LinkBenchError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("plain link: {0}")]
    Io(#[from] io::Error),
    #[error("the sending task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("sent {sent} frames but received {received}")]
    Lost { sent: u64, received: u64 },
}

#[derive(Clone, Copy)]
enum Kind {
    Tcp,
    Unix,
}

pub async fn run(out: &mut dyn Write, seconds_per_case: f64) -> io::Result<()> {
    let duration = Duration::try_from_secs_f64(seconds_per_case).map_err(io::Error::other)?;
    let dir = socket_dir();
    std::fs::create_dir_all(&dir)?;
    writeln!(
        out,
        "{:<10} {:>7} {:>12} {:>12} {:>13} {:>8}",
        "transport", "frame", "plain MB/s", "secure MB/s", "secure frm/s", "secure"
    )?;
    let mut result = Ok(());
    'cases: for (name, kind) in [("tcp", Kind::Tcp), ("unix", Kind::Unix)] {
        for size in FRAME_SIZES {
            let both = async {
                let plain = measure_plain(kind, &dir, size, duration).await?;
                let secure = measure_secure(kind, &dir, size, duration).await?;
                Ok::<_, LinkBenchError>((plain, secure))
            };
            match both.await {
                Ok((plain, secure)) => {
                    let rate = |(frames, elapsed): (u64, Duration)| {
                        (frames * size as u64) as f64 / elapsed.as_secs_f64() / 1e6
                    };
                    writeln!(
                        out,
                        "{:<10} {:>4} KB {:>12.1} {:>12.1} {:>13.0} {:>7.0}%",
                        name,
                        size / 1024,
                        rate(plain),
                        rate(secure),
                        secure.0 as f64 / secure.1.as_secs_f64(),
                        100.0 * rate(secure) / rate(plain)
                    )?;
                }
                Err(e) => {
                    result = Err(io::Error::other(e));
                    break 'cases;
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;
    result
}

fn socket_dir() -> PathBuf {
    std::env::temp_dir().join(format!("recbox-bench-link-{}", std::process::id()))
}

fn media(n: u64, data: Vec<u8>) -> Frame {
    Frame::Media(Media {
        track: Track::Video,
        pts: n as i64,
        dts: n as i64,
        keyframe: false,
        data,
    })
}

/// The secure link: sends frames of `size` bytes for `duration`, then closes;
/// returns how many frames the reader got and the time until it got the last one.
async fn measure_secure(
    kind: Kind,
    dir: &Path,
    size: usize,
    duration: Duration,
) -> Result<(u64, Duration), LinkBenchError> {
    let addr = match kind {
        Kind::Tcp => LinkAddr::Tcp("127.0.0.1:0".to_owned()),
        Kind::Unix => LinkAddr::Unix(dir.join("secure.sock")),
    };
    let listener = LinkListener::bind(&addr).await?;
    let local = listener.local_addr();
    let key = LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("32 bytes is a valid key");
    let keys = KeyRing::single(key.clone());
    let accepted = tokio::spawn(async move {
        let incoming = listener.accept().await.map_err(TransportError::Io)?;
        incoming.authenticate(&keys, DEFAULT_MAX_FRAME).await
    });
    let (_mixer_reader, sender) = connect(&local, &key, DEFAULT_MAX_FRAME).await?;
    // The recorder's side is authenticated by the mixer's first record.
    sender.send(Frame::Ping { seq: 0 }).await?;
    let mut reader = accepted.await??.reader;
    reader.next().await?;

    let data = vec![0x5a; size];
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut sent = 0u64;
        while start.elapsed() < duration {
            sender.send(media(sent, data.clone())).await?;
            sent += 1;
        }
        sender.close().await?;
        Ok::<_, TransportError>(sent)
    });
    let mut received = 0u64;
    while let Some(frame) = reader.next().await? {
        if matches!(frame, Frame::Media(_)) {
            received += 1;
        }
    }
    let elapsed = start.elapsed();
    let sent = producer.await??;
    if sent != received {
        return Err(LinkBenchError::Lost { sent, received });
    }
    Ok((received, elapsed))
}

/// The baseline: the same frames through the codec over a raw socket pair.
async fn measure_plain(
    kind: Kind,
    dir: &Path,
    size: usize,
    duration: Duration,
) -> Result<(u64, Duration), LinkBenchError> {
    match kind {
        Kind::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let client = TcpStream::connect(listener.local_addr()?).await?;
            let (server, _) = listener.accept().await?;
            for s in [&client, &server] {
                s.set_nodelay(true)?;
            }
            plain_pair(client, server, size, duration).await
        }
        Kind::Unix => {
            let path = dir.join("plain.sock");
            let listener = UnixListener::bind(&path)?;
            let client = UnixStream::connect(&path).await?;
            let (server, _) = listener.accept().await?;
            std::fs::remove_file(&path)?;
            plain_pair(client, server, size, duration).await
        }
    }
}

async fn plain_pair<W, R>(
    write: W,
    mut read: R,
    size: usize,
    duration: Duration,
) -> Result<(u64, Duration), LinkBenchError>
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let data = vec![0x5a; size];
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(IO_CHUNK, write);
        let mut sent = 0u64;
        while start.elapsed() < duration {
            let mut bytes = Vec::with_capacity(size + 32);
            encode(&media(sent, data.clone()), &mut bytes)?;
            out.write_all(&bytes).await?;
            sent += 1;
        }
        out.shutdown().await?;
        Ok::<_, LinkBenchError>(sent)
    });
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut chunk = vec![0; IO_CHUNK];
    let mut received = 0u64;
    loop {
        while let Some(frame) = decoder.next_frame()? {
            if matches!(frame, Frame::Media(_)) {
                received += 1;
            }
        }
        match read.read(&mut chunk).await? {
            0 => break,
            n => decoder.push(&chunk[..n]),
        }
    }
    let elapsed = start.elapsed();
    let sent = producer.await??;
    if sent != received {
        return Err(LinkBenchError::Lost { sent, received });
    }
    Ok((received, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prints_a_row_per_case() {
        let mut out = Vec::new();
        run(&mut out, 0.05).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1 + 2 * FRAME_SIZES.len(), "{text}");
        assert!(text.contains("tcp") && text.contains("unix"), "{text}");
        for row in text.lines().skip(1) {
            let rates: Vec<f64> = row
                .split_whitespace()
                .skip(3)
                .take(2)
                .map(|v| v.parse().unwrap())
                .collect();
            assert!(rates.iter().all(|&r| r > 0.0), "{row}");
        }
    }
}
