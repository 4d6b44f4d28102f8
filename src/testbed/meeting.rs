//! A meeting on this machine over loopback, as the demo and the end-to-end fault
//! bench run it: the simulated SFU (or a Janus room of the lab's), the mixer and the
//! recorder, each a task.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::link::frame::Summary;
use crate::link::transport::LinkAddr;
use crate::mixer::engine::EngineConfig;
use crate::mixer::link::LinkConfig;
use crate::mixer::service::{self as mixer, MixerConfig, MixerError, MixerReport};
use crate::recorder::service::{self as recorder, RecorderConfig, StartError};
use crate::sfu::janus::JanusConfig;
use crate::sfu::sim::{CodecMix, SfuSim, SimConfig, SimError, SimEvent};

/// The room every meeting of the lab records.
pub(crate) const ROOM: &str = "demo-room";

#[derive(Debug, Error)]
pub enum MeetingError {
    #[error("recorder: {0}")]
    Recorder(#[from] StartError),
    #[error("simulated SFU: {0}")]
    Sfu(#[from] SimError),
    #[error("mixer: {0}")]
    Mixer(#[from] MixerError),
}

/// The SFU of a [`Meeting`].
#[derive(Debug, Clone)]
pub(crate) enum MeetingSfu {
    /// The simulated SFU, started with the meeting, with this many participants,
    /// each sending video in its codec.
    Sim { participants: u8, codecs: CodecMix },
    /// A Janus room that runs already: its publishers are the participants.
    Janus(JanusConfig),
}

/// What a [`Meeting`] runs.
#[derive(Debug, Clone)]
pub(crate) struct MeetingConfig {
    /// The recorder; its fragment duration is also the mixer's keyframe interval.
    pub(crate) recorder: RecorderConfig,
    pub(crate) sfu: MeetingSfu,
    pub(crate) engine: EngineConfig,
    pub(crate) recording: String,
    /// ALSA capture device mixed in as the room microphone.
    pub(crate) microphone: Option<String>,
}

/// A meeting on this machine over loopback, running: the simulated SFU sending the
/// participants as RTP (or Janus forwarding its publishers), the mixer (with the
/// SFU's control channel through a [`WsSfuAdapter`], or a [`JanusAdapter`]) and the
/// recorder. The simulated SFU and the recorder stop when it is dropped.
///
/// [`WsSfuAdapter`]: crate::sfu::WsSfuAdapter
/// [`JanusAdapter`]: crate::sfu::janus::JanusAdapter
pub(crate) struct Meeting {
    /// Everything the simulated SFU reports, the announcements to the meeting among
    /// it (nothing with Janus, whose terminals hear the announcements).
    pub(crate) sim_events: mpsc::UnboundedReceiver<SimEvent>,
    /// What the mixer did.
    pub(crate) reports: mpsc::UnboundedReceiver<MixerReport>,
    /// Ends after [`stop`](Self::stop) with the recorder's summary.
    pub(crate) mixer: JoinHandle<Result<Option<Summary>, MixerError>>,
    stop: Option<oneshot::Sender<()>>,
    sim: Option<JoinHandle<Result<(), SimError>>>,
    recorder: JoinHandle<()>,
}

impl Meeting {
    pub(crate) async fn start(config: MeetingConfig) -> Result<Self, MeetingError> {
        let MeetingConfig {
            recorder: rec,
            sfu,
            engine,
            recording,
            microphone,
        } = config;
        let key = rec.keys.current.clone();
        let listener = recorder::open(&LinkAddr::Tcp("127.0.0.1:0".into()), &rec).await?;
        let recorder_addr = listener.local_addr();
        let (fragment, stats_interval) = (rec.writer.max_fragment, rec.stats_interval);
        let recorder = tokio::spawn(recorder::serve(listener, Arc::new(rec)));

        let mixer_config = MixerConfig {
            ingest: "127.0.0.1:0".parse().expect("an address"),
            playout_delay: Duration::from_millis(100),
            engine: EngineConfig {
                keyframe_interval: fragment,
                ..engine
            },
            link: LinkConfig::new(recorder_addr, key, &recording, ROOM),
            stats_interval,
            microphone,
        };
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let (sim_tx, sim_events) = mpsc::unbounded_channel();
        let (mixer, sim) = match sfu {
            MeetingSfu::Sim {
                participants,
                codecs,
            } => {
                let sim = SfuSim::bind(
                    "127.0.0.1:0".parse().expect("an address"),
                    SimConfig {
                        participants,
                        codecs,
                        ..SimConfig::default()
                    },
                )
                .await?;
                let url = format!("ws://{}/", sim.local_addr()?);
                let sim = tokio::spawn(sim.run(sim_tx));
                let (ingest, adapter) =
                    mixer::join_sfu(&mixer_config, &url, "recbox demo mixer").await?;
                let run = mixer::run(mixer_config, ingest, adapter, reports_tx, stop_rx);
                (tokio::spawn(run), Some(sim))
            }
            MeetingSfu::Janus(janus) => {
                let (ingest, adapter) = mixer::join_janus(&mixer_config, janus).await?;
                let run = mixer::run(mixer_config, ingest, adapter, reports_tx, stop_rx);
                (tokio::spawn(run), None)
            }
        };
        Ok(Self {
            sim_events,
            reports,
            mixer,
            stop: Some(stop),
            sim,
            recorder,
        })
    }

    /// Asks the mixer to stop the recording (once; later calls do nothing).
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.is_none()
    }
}

impl Drop for Meeting {
    fn drop(&mut self) {
        if let Some(sim) = &self.sim {
            sim.abort();
        }
        self.recorder.abort();
    }
}
