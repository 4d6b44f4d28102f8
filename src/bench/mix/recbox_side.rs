//! The recbox side: a child process (`recbox bench-mix-side`, hidden) running the
//! mixer service and a real recorder over a loopback media link, as on the box, fed
//! by a fixed roster instead of an SFU. It tells its parent on stdout when it can
//! take RTP (`ready PORT`) and where the recording is (`recording DIR`), stops when
//! its stdin closes, and writes when the recorder received each media frame to the
//! tap file, when it is given (`video|audio PTS MONOTONIC_NS` per line).

use std::future::pending;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::measure::monotonic_ns;
use crate::encoder::EncoderKind;
use crate::link::frame::Track;
use crate::link::handshake::LinkKey;
use crate::link::transport::{LinkAddr, LinkListener};
use crate::mixer::engine::EngineConfig;
use crate::mixer::link::{LinkConfig, LinkReport};
use crate::mixer::service::{self as mixer, MixerConfig, MixerReport};
use crate::recorder::service::{self as recorder, MediaReceived, RecorderConfig};
use crate::sfu::control::{ParticipantId, ParticipantInfo};
use crate::sfu::{Notice, RosterEvent, SfuAdapter};

const ROOM: &str = "bench-room";
/// Jitter buffer depth, as the demo runs the mixer.
const PLAYOUT_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum SideError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("roster {0}: {1}")]
    Roster(String, String),
    #[error("mixer: {0}")]
    Mixer(#[from] mixer::MixerError),
    #[error("media link: {0}")]
    Link(String),
}

/// The mixer engine both sides are compared on: recbox's defaults (1280x720 at 30
/// fps, 2.5 Mbit/s H.264, 96 kbit/s Opus) with `encoder` (software, or none) and a
/// keyframe every recorder fragment.
pub fn engine_config(encoder: EncoderKind) -> EngineConfig {
    EngineConfig {
        encoder,
        keyframe_interval: crate::recorder::recording::WriterOptions::default().max_fragment,
        ..EngineConfig::default()
    }
}

/// A roster that never changes: everyone is there from the start.
struct FixedRoster {
    joining: Vec<ParticipantInfo>,
}

impl SfuAdapter for FixedRoster {
    type Error = std::convert::Infallible;

    async fn next_event(&mut self) -> Result<Option<RosterEvent>, Self::Error> {
        if self.joining.is_empty() {
            return pending().await;
        }
        Ok(Some(RosterEvent::Joined(self.joining.remove(0))))
    }

    fn forward(&self, _: &ParticipantId) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A recorded input has no more keyframes than it has.
    fn request_keyframe(&self, id: &ParticipantId) -> Result<(), Self::Error> {
        tracing::info!(%id, "keyframe request (recorded input: not answered)");
        Ok(())
    }

    fn send_notice(&self, notice: Notice) -> Result<(), Self::Error> {
        tracing::info!(?notice, "notice");
        Ok(())
    }
}

pub struct SideConfig {
    pub roster: PathBuf,
    pub encoder: EncoderKind,
    pub storage: PathBuf,
    /// Where to write when each media frame reached the recorder; none for a long
    /// run (the list grows with the recording).
    pub tap: Option<PathBuf>,
}

/// The child's whole life; `out` is its stdout.
pub async fn serve(config: SideConfig, out: &mut (impl Write + Send)) -> Result<(), SideError> {
    let io = |what: String| move |e| SideError::Io(what, e);
    let roster = std::fs::read_to_string(&config.roster)
        .map_err(io(format!("reading {}", config.roster.display())))?;
    let roster: Vec<ParticipantInfo> = serde_json::from_str(&roster)
        .map_err(|e| SideError::Roster(config.roster.display().to_string(), e.to_string()))?;
    let participants = roster.len();
    std::fs::create_dir_all(&config.storage)
        .map_err(io(format!("creating {}", config.storage.display())))?;

    let key = LinkKey::new(rand::random::<[u8; 32]>().to_vec()).expect("32 bytes is a valid key");
    let (tap_tx, mut tap) = mpsc::unbounded_channel();
    let mut rec = RecorderConfig::new(config.storage.clone(), key.clone());
    if config.tap.is_some() {
        rec.media_tap = Some(tap_tx);
    }
    let listener = LinkListener::bind(&LinkAddr::Tcp("127.0.0.1:0".into()))
        .await
        .map_err(|e| SideError::Link(e.to_string()))?;
    let recorder_addr = listener.local_addr();
    let recorder_task = tokio::spawn(recorder::serve(listener, Arc::new(rec)));

    let mixer_config = MixerConfig {
        ingest: "127.0.0.1:0".parse().expect("an address"),
        playout_delay: PLAYOUT_DELAY,
        engine: engine_config(config.encoder.clone()),
        link: LinkConfig::new(recorder_addr, key, "bench-1", ROOM),
        stats_interval: Duration::from_secs(10),
        microphone: None,
    };
    let ingest = mixer::bind_ingest(&mixer_config).await?;
    let port = ingest
        .local_addr()
        .map_err(io("ingest address".into()))?
        .port();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let adapter = FixedRoster { joining: roster };
    let mut mixer_task = tokio::spawn(mixer::run(
        mixer_config,
        ingest,
        adapter,
        reports_tx,
        stop_rx,
    ));
    let mut stdin = tokio::io::stdin();
    let mut byte = [0u8; 64];
    let mut stop = Some(stop_tx);
    let mut received = Vec::new();
    let say =
        |out: &mut dyn Write, line: String| writeln!(out, "{line}").and_then(|()| out.flush());
    let result = loop {
        tokio::select! {
            result = &mut mixer_task => break result,
            Some(report) = reports.recv() => match report {
                MixerReport::Participants(n) if n == participants => {
                    say(out, format!("ready {port}")).map_err(io("stdout".into()))?;
                }
                MixerReport::Link(LinkReport::Started { path }) => {
                    say(out, format!("recording {path}")).map_err(io("stdout".into()))?;
                }
                _ => {}
            },
            Some(m) = tap.recv() => received.push(m),
            n = stdin.read(&mut byte), if stop.is_some() => {
                if matches!(n, Ok(0) | Err(_)) {
                    if let Some(stop) = stop.take() {
                        let _ = stop.send(());
                    }
                }
            }
        }
    };
    recorder_task.abort();
    while let Ok(m) = tap.try_recv() {
        received.push(m);
    }
    if let Some(path) = &config.tap {
        write_tap(path, &received).map_err(io(format!("writing {}", path.display())))?;
    }
    match result {
        Ok(Ok(summary)) => {
            let fragments = summary.map_or(0, |s| s.fragments);
            say(out, format!("stopped {fragments}")).map_err(io("stdout".into()))?;
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(SideError::Link(format!("mixer task: {e}"))),
    }
}

/// One line per frame: track, pts, and the instant in [`monotonic_ns`] time.
fn write_tap(path: &std::path::Path, received: &[MediaReceived]) -> std::io::Result<()> {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    let mut text = String::with_capacity(received.len() * 32);
    for m in received {
        let ns = match m.at.checked_duration_since(now) {
            Some(ahead) => now_ns + ahead.as_nanos() as u64,
            None => now_ns - (now - m.at).as_nanos() as u64,
        };
        let track = match m.track {
            Track::Video => "video",
            Track::Audio => "audio",
        };
        text.push_str(&format!("{track} {} {ns}\n", m.pts));
    }
    std::fs::write(path, text)
}

/// The video lines of a tap file: (pts, instant received), in the order received.
pub(crate) fn parse_tap(text: &str) -> Result<Vec<(i64, u64)>, String> {
    text.lines()
        .filter(|l| l.starts_with("video "))
        .map(|l| {
            let mut f = l.split_whitespace().skip(1);
            let pts = f.next().and_then(|p| p.parse().ok());
            let ns = f.next().and_then(|n| n.parse().ok());
            pts.zip(ns).ok_or_else(|| format!("bad tap line `{l}`"))
        })
        .collect()
}

/// Output frames the mixer skipped (it fell behind): the gaps between the pts of
/// consecutive video frames received, in frames of `frame_ticks`.
pub(crate) fn skipped_frames(video: &[(i64, u64)], frame_ticks: i64) -> u64 {
    video
        .windows(2)
        .map(|w| ((w[1].0 - w[0].0) / frame_ticks - 1).max(0) as u64)
        .sum()
}

/// A line of the child's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SideLine {
    Ready(u16),
    Recording(PathBuf),
    Stopped,
}

pub(crate) fn parse_side_line(line: &str) -> Option<SideLine> {
    let (word, rest) = line.trim_end().split_once(' ')?;
    match word {
        "ready" => rest.parse().ok().map(SideLine::Ready),
        "recording" => Some(SideLine::Recording(PathBuf::from(rest))),
        "stopped" => Some(SideLine::Stopped),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_lines_round_trip() {
        let at = Instant::now();
        let received = [
            MediaReceived {
                track: Track::Video,
                pts: 0,
                at,
            },
            MediaReceived {
                track: Track::Audio,
                pts: 960,
                at,
            },
            MediaReceived {
                track: Track::Video,
                pts: 3000,
                at: at + Duration::from_millis(33),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tap");
        write_tap(&path, &received).unwrap();
        let video = parse_tap(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(video.len(), 2);
        assert_eq!((video[0].0, video[1].0), (0, 3000));
        assert_eq!(video[1].1 - video[0].1, 33_000_000);
        assert!(parse_tap("video x 1\n").is_err());
    }

    #[test]
    fn skipped_frames_are_the_gaps_in_pts() {
        let at = |pts: &[i64]| pts.iter().map(|&p| (p, 0)).collect::<Vec<_>>();
        assert_eq!(skipped_frames(&at(&[]), 3000), 0);
        assert_eq!(skipped_frames(&at(&[0, 3000, 6000, 9000]), 3000), 0);
        assert_eq!(
            skipped_frames(&at(&[0, 3000, 12000, 15000, 21000]), 3000),
            3
        );
    }

    #[test]
    fn side_lines() {
        assert_eq!(parse_side_line("ready 5004\n"), Some(SideLine::Ready(5004)));
        assert_eq!(
            parse_side_line("recording /tmp/a b/c"),
            Some(SideLine::Recording("/tmp/a b/c".into()))
        );
        assert_eq!(parse_side_line("stopped 5"), Some(SideLine::Stopped));
        assert_eq!(parse_side_line("ready soon"), None);
        assert_eq!(parse_side_line("hello"), None);
    }
}
