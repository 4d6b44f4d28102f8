//! The mixer as a running service: the SFU's roster decides whose RTP the ingest
//! receives, the [`Engine`] mixes on a thread of its own (decoding and encoding are
//! CPU work that must not stall the sockets), media goes to the recorder over the
//! [`RecorderLink`], and everything the recorder says comes back out to the SFU at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::engine::{Engine, EngineConfig, EngineError, EngineOutput, LocalFrame};
use super::link::{LinkConfig, LinkReport, RecorderLink};
use crate::audio::Microphone;
use crate::ingest::stats::StreamStats;
use crate::ingest::udp::{IngestCommand, UdpError, UdpIngest};
use crate::ingest::{Demux, IngestOutput, MediaKind, StreamConfig};
use crate::link::frame::{now_millis, text, Summary, Track};
use crate::sfu::control::{Hello, ParticipantInfo, CONTROL_VERSION};
use crate::sfu::janus::{JanusAdapter, JanusConfig, JanusError};
use crate::sfu::notice::StreamReport;
use crate::sfu::ws_adapter::WsAdapterError;
use crate::sfu::{Notice, RosterEvent, SfuAdapter, WsSfuAdapter};

/// SSRC of the mixer in the RTCP it sends to the SFU.
const MIXER_SSRC: u32 = 0x6d69_7872;
/// Batches of the ingest's outputs waiting for the engine: one a poll tick of the
/// ingest (5 ms), so some 2.5 s of media.
const INGEST_QUEUE: usize = 512;
/// How long a stop waits for the recorder to take the last media and confirm.
pub const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// How often [`MixerReport::Output`] is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// Where participants' RTP arrives (one port for all streams).
    pub ingest: SocketAddr,
    /// Jitter buffer depth of every stream.
    pub playout_delay: Duration,
    pub engine: EngineConfig,
    pub link: LinkConfig,
    /// How often per-stream ingest counters are logged and reported to the SFU.
    pub stats_interval: Duration,
    /// The room microphone: an ALSA capture device (e.g. `hw:1,0`) mixed in as one
    /// more audio input, without a tile. One that cannot be opened, or fails while
    /// recording, is logged and the mix goes on without it.
    pub microphone: Option<String>,
}

#[derive(Debug, Error)]
pub enum MixerError {
    #[error(transparent)]
    Ingest(#[from] UdpError),
    #[error("mixing engine: {0}")]
    Engine(#[from] EngineError),
    #[error("SFU adapter: {0}")]
    Sfu(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{what} at {url} within {limit:?}")]
    JoinTimeout {
        what: &'static str,
        url: String,
        limit: std::time::Duration,
    },
    #[error(transparent)]
    SfuConnect(#[from] WsAdapterError),
    #[error(transparent)]
    JanusConnect(#[from] JanusError),
    #[error("ingest address: {0}")]
    IngestAddress(#[source] std::io::Error),
    #[error("the SFU closed the control channel")]
    SfuGone,
    #[error("the mixing engine stopped")]
    EngineStopped,
}

/// What the mixer did, for progress displays (the demo, the panel).
#[derive(Debug, Clone)]
pub enum MixerReport {
    Participants(usize),
    /// Media handed to the recorder link since the start, every second: the engine
    /// is alive while these grow.
    Output {
        video_frames: u64,
        audio_frames: u64,
    },
    /// A notice was relayed to the SFU.
    Relayed(Notice),
    Link(LinkReport),
}

enum EngineInput {
    Join(Box<ParticipantInfo>),
    /// Produce what is due up to this instant, then end.
    Stop(Instant),
    Leave(String),
    /// What the ingest released in one poll tick.
    Ingest(Vec<IngestOutput>),
    Local(LocalFrame),
}

/// Binds the ingest socket first, so its port can go in the SFU hello.
pub(crate) async fn bind_ingest(config: &MixerConfig) -> Result<UdpIngest, MixerError> {
    Ok(UdpIngest::bind(config.ingest, Demux::new(MIXER_SSRC)).await?)
}

/// Binds the ingest and joins the meeting on the SFU's control channel at `url`,
/// saying hello as `name` with the ingest's port for every stream.
pub async fn join_sfu(
    config: &MixerConfig,
    url: &str,
    name: &str,
) -> Result<(UdpIngest, WsSfuAdapter), MixerError> {
    let ingest = bind_ingest(config).await?;
    let port = ingest
        .local_addr()
        .map_err(MixerError::IngestAddress)?
        .port();
    let hello = Hello {
        version: CONTROL_VERSION,
        name: text(name),
        audio_port: Some(port),
        video_port: Some(port),
    };
    let adapter = WsSfuAdapter::connect(url, hello).await?;
    Ok((ingest, adapter))
}

/// Binds the ingest and joins the Janus room, its forwards aimed at the ingest's port.
pub(crate) async fn join_janus(
    config: &MixerConfig,
    janus: JanusConfig,
) -> Result<(UdpIngest, JanusAdapter), MixerError> {
    let ingest = bind_ingest(config).await?;
    let port = ingest
        .local_addr()
        .map_err(MixerError::IngestAddress)?
        .port();
    let adapter = JanusAdapter::connect(janus, port).await?;
    Ok((ingest, adapter))
}

/// Runs until `stop` fires or the SFU goes away; then stops the recording and returns
/// the recorder's summary (if it confirmed the stop).
pub async fn run<A: SfuAdapter>(
    config: MixerConfig,
    ingest: UdpIngest,
    mut adapter: A,
    reports: mpsc::UnboundedSender<MixerReport>,
    mut stop: oneshot::Receiver<()>,
) -> Result<Option<Summary>, MixerError> {
    let engine = Engine::new(config.engine.clone(), Instant::now())?;
    let start = engine.start_params(&config.link.recording, &config.link.room);
    let (link_reports_tx, mut link_reports) = mpsc::unbounded_channel();
    let mut link = RecorderLink::new(config.link.clone(), start, link_reports_tx);

    let (ingest_tx, mut ingest_rx) = mpsc::channel(INGEST_QUEUE);
    let (ingest_cmd, ingest_cmd_rx) = mpsc::unbounded_channel();
    let ingest_task = tokio::spawn(ingest.run(ingest_tx, ingest_cmd_rx));
    let (engine_tx, engine_rx) = std::sync::mpsc::channel();
    let (out_tx, mut engine_out) = mpsc::unbounded_channel();
    let engine_thread = std::thread::Builder::new()
        .name("mixer-engine".into())
        .spawn(move || drive_engine(engine, engine_rx, out_tx))
        .expect("spawning the engine thread");
    let microphone = config
        .microphone
        .as_deref()
        .and_then(Microphone::open)
        .map(|mic| {
            let engine_tx = engine_tx.clone();
            mic.start(move |frame| engine_tx.send(EngineInput::Local(frame)).is_ok())
        });

    let mut stats = tokio::time::interval(config.stats_interval);
    stats.tick().await;
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    let (mut video_frames, mut audio_frames) = (0u64, 0u64);
    let mut participants = 0usize;
    // Whose stream each SSRC is, for the ingest counters the SFU is told.
    let mut streams: HashMap<u32, (String, MediaKind)> = HashMap::new();
    let outcome = loop {
        tokio::select! {
            event = adapter.next_event() => match event {
                Ok(Some(RosterEvent::Joined(p))) => {
                    let format = p.video_codec.format();
                    if format.is_none() {
                        unsupported_codec(&adapter, &reports, &p);
                    }
                    let audio = Some((p.audio, MediaKind::Audio, None));
                    let video = format.map(|f| (p.video, MediaKind::Video, Some(f)));
                    for (s, kind, format) in [audio, video].into_iter().flatten() {
                        let mut stream = StreamConfig::new(s.ssrc, kind, s.payload_type);
                        if let Some(format) = format {
                            stream.format = format;
                        }
                        stream.jitter.playout_delay = config.playout_delay;
                        let _ = ingest_cmd.send(IngestCommand::AddStream(stream));
                        streams.insert(s.ssrc, (p.id.to_string(), kind));
                    }
                    if let Err(e) = adapter.forward(&p.id) {
                        break Err(MixerError::Sfu(Box::new(e)));
                    }
                    participants += 1;
                    let _ = reports.send(MixerReport::Participants(participants));
                    let _ = engine_tx.send(EngineInput::Join(Box::new(p)));
                }
                Ok(Some(RosterEvent::Left(p))) => {
                    for ssrc in [p.audio.ssrc, p.video.ssrc] {
                        let _ = ingest_cmd.send(IngestCommand::RemoveStream(ssrc));
                        streams.remove(&ssrc);
                    }
                    participants = participants.saturating_sub(1);
                    let _ = reports.send(MixerReport::Participants(participants));
                    let _ = engine_tx.send(EngineInput::Leave(p.id.to_string()));
                }
                Ok(Some(RosterEvent::Renewed(p))) => {
                    for ssrc in [p.audio.ssrc, p.video.ssrc] {
                        let _ = ingest_cmd.send(IngestCommand::RenewStream(ssrc));
                    }
                }
                Ok(None) => break Err(MixerError::SfuGone),
                // An inconsistent announcement leaves the roster as it was.
                Err(e) => warn!("SFU: {e}"),
            },
            Some(batch) = ingest_rx.recv() => {
                let _ = engine_tx.send(EngineInput::Ingest(batch));
            }
            output = engine_out.recv() => match output {
                Some(Ok(EngineOutput::Media(media))) => {
                    match media.track {
                        Track::Video => video_frames += 1,
                        Track::Audio => audio_frames += 1,
                    }
                    link.send(media).await
                }
                Some(Ok(EngineOutput::KeyframeRequest(id))) => {
                    if let Err(e) = adapter.request_keyframe(&id) {
                        warn!(%id, "keyframe request to the SFU: {e}");
                    }
                }
                Some(Err(e)) => break Err(e.into()),
                None => break Err(MixerError::EngineStopped),
            },
            Some(report) = link_reports.recv() => relay(&adapter, &reports, report),
            wake = link.wait() => link.on_wake(wake).await,
            _ = progress.tick() => {
                let _ = reports.send(MixerReport::Output { video_frames, audio_frames });
            }
            _ = stats.tick() => {
                let (tx, rx) = oneshot::channel();
                let _ = ingest_cmd.send(IngestCommand::Stats(tx));
                if let Ok(all) = rx.await {
                    let notice = ingest_notice(&streams, all);
                    if let Err(e) = adapter.send_notice(notice.clone()) {
                        warn!("cannot send the ingest counters to the SFU: {e}");
                    }
                    let _ = reports.send(MixerReport::Relayed(notice));
                }
            }
            _ = &mut stop => break Ok(()),
        }
    };

    drop(microphone);
    // Whatever the engine has up to now goes out before the Stop.
    let _ = engine_tx.send(EngineInput::Stop(Instant::now()));
    drop(engine_tx);
    while let Some(Ok(EngineOutput::Media(media))) = engine_out.recv().await {
        link.send(media).await;
    }
    let _ = engine_thread.join();
    drop(ingest_cmd);
    let _ = ingest_task.await;
    let summary = link.stop(STOP_PATIENCE).await;
    while let Ok(report) = link_reports.try_recv() {
        relay(&adapter, &reports, report);
    }
    adapter.close().await;
    outcome.map(|()| summary)
}

/// Logs every stream's counters and gathers them, with whose stream it is, for the SFU.
fn ingest_notice(
    streams: &HashMap<u32, (String, MediaKind)>,
    counters: Vec<(u32, StreamStats)>,
) -> Notice {
    let mut reports: Vec<StreamReport> = counters
        .into_iter()
        .filter_map(|(ssrc, counters)| {
            let (participant, kind) = streams.get(&ssrc)?;
            info!(ssrc, participant, ?kind, "ingest: {counters}");
            Some(StreamReport {
                participant: participant.clone(),
                kind: *kind,
                ssrc,
                counters,
            })
        })
        .collect();
    reports.sort_by(|a, b| (&a.participant, a.ssrc).cmp(&(&b.participant, b.ssrc)));
    Notice::Ingest {
        streams: reports,
        at: now_millis(),
    }
}

/// Tells the SFU (for the control platform) that a participant's video cannot be
/// decoded; the engine shows a placeholder in its tile.
fn unsupported_codec<A: SfuAdapter>(
    adapter: &A,
    reports: &mpsc::UnboundedSender<MixerReport>,
    p: &ParticipantInfo,
) {
    let codec = p.video_codec.name();
    warn!(id = %p.id, codec, "video codec the box cannot decode: placeholder tile");
    let notice = Notice::UnsupportedCodec {
        participant: p.id.to_string(),
        codec: codec.to_owned(),
        at: now_millis(),
    };
    if let Err(e) = adapter.send_notice(notice.clone()) {
        warn!("cannot tell the SFU about the codec: {e}");
    }
    let _ = reports.send(MixerReport::Relayed(notice));
}

/// Relays the link's notices to the SFU, and reports what happened on the link.
fn relay<A: SfuAdapter>(
    adapter: &A,
    reports: &mpsc::UnboundedSender<MixerReport>,
    report: LinkReport,
) {
    if let LinkReport::Notice(notice) = &report {
        // The heart of the product: the meeting hears of it at once.
        if let Err(e) = adapter.send_notice(notice.clone()) {
            warn!("cannot relay {notice:?} to the SFU: {e}");
        }
        let _ = reports.send(MixerReport::Relayed(notice.clone()));
    }
    let _ = reports.send(MixerReport::Link(report));
}

/// The engine's thread: inputs as they come, output whenever it is due. Inputs are
/// taken first even when output is late, so a stop is never stuck behind a backlog;
/// inside one batch of the ingest's, an output frame that comes due goes first.
fn drive_engine(
    mut engine: Engine,
    inputs: std::sync::mpsc::Receiver<EngineInput>,
    outputs: mpsc::UnboundedSender<Result<EngineOutput, EngineError>>,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let emit = |out: Result<Vec<EngineOutput>, EngineError>| match out {
        Ok(out) => out.into_iter().all(|o| outputs.send(Ok(o)).is_ok()),
        Err(e) => {
            let _ = outputs.send(Err(e));
            false
        }
    };
    loop {
        let input = match inputs.try_recv() {
            Ok(input) => Some(input),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                let deadline = engine.next_deadline();
                if deadline <= now {
                    if !emit(engine.poll(now)) {
                        return;
                    }
                    continue;
                }
                match inputs.recv_timeout(deadline - now) {
                    Ok(input) => Some(input),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let out = match input {
            None => continue,
            Some(EngineInput::Stop(at)) => {
                // Everything up to the stop, and nothing after it.
                emit(engine.poll(at));
                return;
            }
            Some(EngineInput::Join(p)) => {
                engine.join(*p);
                Vec::new()
            }
            Some(EngineInput::Leave(id)) => {
                engine.leave(&id);
                Vec::new()
            }
            Some(EngineInput::Ingest(batch)) => {
                let mut out = Vec::new();
                for output in batch {
                    // A burst (every participant's first keyframe at once, a
                    // backlog) must not hold back an output frame that is due.
                    let now = Instant::now();
                    if engine.next_deadline() <= now && !emit(engine.poll(now)) {
                        return;
                    }
                    match output {
                        IngestOutput::Frame(frame) => out.extend(engine.on_frame(frame, now)),
                        IngestOutput::Lost { ssrc, packets } => {
                            debug!(ssrc, packets, "packets lost");
                            engine.on_lost(ssrc);
                        }
                        // The ingest has sent the PLI itself.
                        IngestOutput::KeyframeRequest { .. } => {}
                    }
                }
                out
            }
            Some(EngineInput::Local(frame)) => {
                engine.on_local_audio(&frame);
                Vec::new()
            }
        };
        if !emit(Ok(out)) {
            return;
        }
    }
}
