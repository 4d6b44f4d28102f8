//! A meeting on this machine over loopback, as the demo and the end-to-end fault
//! bench run it: the simulated SFU, the mixer and the recorder, each a task.

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

/// What a [`Meeting`] runs.
#[derive(Debug, Clone)]
pub(crate) struct MeetingConfig {
    /// The recorder; its fragment duration is also the mixer's keyframe interval.
    pub(crate) recorder: RecorderConfig,
    pub(crate) participants: u8,
    pub(crate) engine: EngineConfig,
    pub(crate) recording: String,
    /// ALSA capture device mixed in as the room microphone.
    pub(crate) microphone: Option<String>,
    /// Each participant's video codec.
    pub(crate) codecs: CodecMix,
}

/// A meeting on this machine over loopback, running: the simulated SFU sending the
/// participants as RTP, the mixer (with the SFU's control channel through a
/// [`WsSfuAdapter`]) and the recorder. The SFU and the recorder stop when it is
/// dropped.
pub(crate) struct Meeting {
    /// Everything the simulated SFU reports, the announcements to the meeting among it.
    pub(crate) sim_events: mpsc::UnboundedReceiver<SimEvent>,
    /// What the mixer did.
    pub(crate) reports: mpsc::UnboundedReceiver<MixerReport>,
    /// Ends after [`stop`](Self::stop) with the recorder's summary.
    pub(crate) mixer: JoinHandle<Result<Option<Summary>, MixerError>>,
    stop: Option<oneshot::Sender<()>>,
    sim: JoinHandle<Result<(), SimError>>,
    recorder: JoinHandle<()>,
}

impl Meeting {
    pub(crate) async fn start(config: MeetingConfig) -> Result<Self, MeetingError> {
        let MeetingConfig {
            recorder: rec,
            participants,
            engine,
            recording,
            microphone,
            codecs,
        } = config;
        let key = rec.keys.current.clone();
        let listener = recorder::open(&LinkAddr::Tcp("127.0.0.1:0".into()), &rec).await?;
        let recorder_addr = listener.local_addr();
        let (fragment, stats_interval) = (rec.writer.max_fragment, rec.stats_interval);
        let recorder = tokio::spawn(recorder::serve(listener, Arc::new(rec)));

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
        let (sim_tx, sim_events) = mpsc::unbounded_channel();
        let sim = tokio::spawn(sim.run(sim_tx));

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
        let (ingest, adapter) = mixer::join_sfu(&mixer_config, &url, "recbox demo mixer").await?;
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let mixer = tokio::spawn(mixer::run(
            mixer_config,
            ingest,
            adapter,
            reports_tx,
            stop_rx,
        ));
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
        self.sim.abort();
        self.recorder.abort();
    }
}
