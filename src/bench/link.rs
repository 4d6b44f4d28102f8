//! Media-link throughput: `Media` frames through `FrameSender` and `FrameReader` over
//! loopback TCP and a Unix socket, with small (audio-like) and large (video-like)
//! frames. Counts what the reader received, so queued-but-unsent frames do not count.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::link::codec::DEFAULT_MAX_FRAME;
use crate::link::frame::{Frame, Media, Track};
use crate::link::handshake::{KeyRing, LinkKey};
use crate::link::transport::{connect, LinkAddr, LinkListener, TransportError};

const FRAME_SIZES: [usize; 2] = [1024, 100 * 1024];

pub async fn run(out: &mut dyn Write, seconds_per_case: f64) -> io::Result<()> {
    let duration = Duration::try_from_secs_f64(seconds_per_case).map_err(io::Error::other)?;
    let dir = socket_dir();
    std::fs::create_dir_all(&dir)?;
    let transports = [
        ("tcp", LinkAddr::Tcp("127.0.0.1:0".to_owned())),
        ("unix", LinkAddr::Unix(dir.join("link.sock"))),
    ];
    writeln!(
        out,
        "{:<10} {:>10} {:>12} {:>10}",
        "transport", "frame", "frames/s", "MB/s"
    )?;
    let mut result = Ok(());
    'cases: for (name, addr) in &transports {
        for size in FRAME_SIZES {
            match measure(addr, size, duration).await {
                Ok((frames, elapsed)) => {
                    let secs = elapsed.as_secs_f64();
                    writeln!(
                        out,
                        "{:<10} {:>7} KB {:>12.0} {:>10.1}",
                        name,
                        size / 1024,
                        frames as f64 / secs,
                        (frames * size as u64) as f64 / secs / 1e6
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

/// Sends frames of `size` bytes for `duration`, then closes; returns how many frames
/// the reader got and the time until it got the last one.
async fn measure(
    addr: &LinkAddr,
    size: usize,
    duration: Duration,
) -> Result<(u64, Duration), TransportError> {
    let listener = LinkListener::bind(addr).await?;
    let local = listener.local_addr();
    let key = LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("32 bytes is a valid key");
    let keys = KeyRing::single(key.clone());
    let accepted = tokio::spawn(async move {
        let incoming = listener.accept().await?;
        incoming.authenticate(&keys, DEFAULT_MAX_FRAME).await
    });
    let (_mixer_reader, sender) = connect(&local, &key, DEFAULT_MAX_FRAME).await?;
    // The recorder's side is authenticated by the mixer's first record.
    sender.send(Frame::Ping { seq: 0 }).await?;
    let mut reader = accepted
        .await
        .expect("the accept task does not panic")?
        .reader;
    reader.next().await?;

    let data = vec![0x5a; size];
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut sent = 0u64;
        while start.elapsed() < duration {
            let media = Media {
                track: Track::Video,
                pts: sent as i64,
                dts: sent as i64,
                keyframe: false,
                data: data.clone(),
            };
            sender.send(Frame::Media(media)).await?;
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
    let sent = producer
        .await
        .map_err(|e| TransportError::Io(io::Error::other(e)))??;
    if sent != received {
        return Err(TransportError::Io(io::Error::other(format!(
            "sent {sent} frames but received {received}"
        ))));
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
    }
}
