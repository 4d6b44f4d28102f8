//! The box as one process: the recorder and the mixer (`recbox run`, the two
//! connected over a local Unix socket), or the mixer alone (`recbox mixer`, the
//! recorder elsewhere).
//!
//! The main loop runs the recorder's accept loop, starts and stops recording runs
//! as the [`Controller`] decides (start-up, [`Command`]s from the panel), tells
//! systemd how it is doing ([`Notifier`]: ready, status, watchdog pings while
//! [`Liveness`] finds both roles alive, stopping), and publishes every state change
//! and mixer report as an [`Event`] for the panel and the chime.
//!
//! Hooks: [`Handle::commands`] takes [`Command`]s (short press: `Toggle`, long
//! press: `SafeStop`); [`Handle::subscribe`] gives the [`Event`]s.

pub(crate) mod controller;
pub mod front;
pub(crate) mod liveness;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

pub use controller::{Command, Controller, RecordingState};
pub(crate) use liveness::Liveness;

use crate::config::Config;
use crate::link::frame::{now_millis, Summary};
use crate::link::handshake::LinkKey;
use crate::link::transport::LinkAddr;
use crate::mixer::service::{self as mixer, MixerConfig, MixerError, MixerReport};
use crate::mixer::status::RecordingStatus;
use crate::recorder::service::{self as recorder, RecorderConfig, StartError};
use crate::sfu::janus::JanusConfig;
use crate::sfu::webhook::{Webhook, WebhookConfig};
use crate::storage::health::HealthEvent;
use crate::systemd::Notifier;
use controller::{Action, Ended};

/// How long joining the meeting may take before the run counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The mixer may hand no media to the link this long before it counts as wedged.
const MIXER_STALL_LIMIT: Duration = Duration::from_secs(20);
/// A recorder in this process may leave the link unanswered this long (a storage
/// failing over can hold it a while).
const RECORDER_STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long the last notices may take to reach the webhook when the box stops.
const WEBHOOK_PATIENCE: Duration = Duration::from_secs(3);
/// Events kept for a slow subscriber before it misses some.
const EVENT_BACKLOG: usize = 256;

/// The recorder role, when this process runs it.
#[derive(Debug, Clone)]
struct RecorderRole {
    listen: LinkAddr,
    config: RecorderConfig,
}

/// What the process runs.
#[derive(Debug, Clone)]
pub struct Plan {
    recorder: Option<RecorderRole>,
    /// The mixer, its link pointing at the recorder; every run gets its own
    /// recording id.
    mixer: MixerConfig,
    /// The SFU's control channel.
    sfu_url: String,
    /// The Janus room, when the SFU is Janus (else the box's own protocol).
    janus: Option<JanusConfig>,
    /// The mixer's name at the SFU.
    name: String,
    /// The control platform's webhook, which gets every notice the mixer relays.
    webhook: Option<WebhookConfig>,
    /// Record from the start.
    autostart: bool,
}

impl Plan {
    /// The box (`recbox run`): both roles, over the local socket.
    pub fn both(config: &Config, key: LinkKey) -> Self {
        let link = config.local_link();
        Self {
            recorder: Some(RecorderRole {
                listen: link.clone(),
                config: config.recorder_config(key.clone()),
            }),
            ..Self::mixer_only(config, link, key)
        }
    }

    /// The mixer alone (`recbox mixer`), sending to the recorder at `recorder`.
    pub fn mixer_only(config: &Config, recorder: LinkAddr, key: LinkKey) -> Self {
        Self {
            recorder: None,
            mixer: config.mixer_config(recorder, key),
            sfu_url: config.sfu.url.clone(),
            janus: config.janus_config(),
            name: config.mixer.name.clone(),
            webhook: config.webhook_config(),
            autostart: config.recording.autostart,
        }
    }
}

/// What the panel and the chime follow.
#[derive(Debug, Clone)]
pub enum Event {
    State(RecordingState),
    /// A recording run began with this id.
    Recording(String),
    /// Shared: every subscriber gets the same report.
    Mixer(Arc<MixerReport>),
    /// A safe stop flushed the storage: the disk can be pulled (or why not).
    Synced(Result<(), String>),
    /// The storage monitor's finding, recording or not (the faults active at
    /// start-up come first, as such events).
    Storage(HealthEvent),
}

#[derive(Debug, Error)]
pub enum ApplianceError {
    #[error("recorder: {0}")]
    RecorderStart(#[from] StartError),
    #[error("the recorder stopped: its accept loop ended")]
    RecorderEnded,
    #[error("the recorder stopped: {0}")]
    RecorderPanicked(#[from] tokio::task::JoinError),
}

/// Where commands go in and events come out.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
}

impl Handle {
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

pub struct Appliance {
    plan: Plan,
    notifier: Notifier,
    handle: Handle,
    commands: mpsc::UnboundedReceiver<Command>,
}

/// The recording run in progress.
struct Running {
    generation: u64,
    recording: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Option<Summary>, MixerError>>,
}

impl Appliance {
    pub fn new(plan: Plan, notifier: Notifier) -> (Self, Handle) {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let handle = Handle {
            commands: commands_tx,
            events,
        };
        (
            Self {
                plan,
                notifier,
                handle: handle.clone(),
                commands,
            },
            handle,
        )
    }

    /// Runs until `shutdown` completes and the recording is closed, or until the
    /// recorder fails.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ApplianceError> {
        let mut recorder_task = None;
        let mut roots = Vec::new();
        let mut storage = None;
        if let Some(role) = &self.plan.recorder {
            let listener = recorder::open(&role.listen, &role.config).await?;
            roots.push(role.config.storage.clone());
            roots.extend(role.config.spool.clone());
            let monitor = recorder::storage_monitor(&role.config);
            storage = Some(monitor.subscribe());
            // Subscribed first, so nothing falls between these and the events.
            for event in monitor.active_faults() {
                let _ = self.handle.events.send(Event::Storage(event));
            }
            recorder_task = Some(tokio::spawn(recorder::serve_monitored(
                listener,
                Arc::new(role.config.clone()),
                monitor,
                std::future::pending(),
            )));
        }
        let recorder_limit = self.plan.recorder.as_ref().map(|_| RECORDER_STALL_LIMIT);
        let mut shell = Shell {
            liveness: Liveness::new(MIXER_STALL_LIMIT, recorder_limit),
            status: RecordingStatus::default(),
            running: None,
            generation: 0,
            last_status: String::new(),
            last_state: None,
        };
        let webhook = self
            .plan
            .webhook
            .clone()
            .map(|config| Webhook::spawn(config, &self.plan.name, &self.plan.mixer.link.room));
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let (joined_tx, mut joined) = mpsc::unbounded_channel();
        let (mut controller, actions) = Controller::new(self.plan.autostart);
        let mut sync_task: Option<JoinHandle<Result<(), String>>> = None;
        self.notifier.ready();
        info!(
            recorder = ?self.plan.recorder.as_ref().map(|r| r.listen.to_string()),
            sfu = %self.plan.sfu_url,
            "recbox is up"
        );
        let mut ctx = Ctx {
            plan: &self.plan,
            reports: &reports_tx,
            joined: &joined_tx,
            roots: &roots,
            sync_task: &mut sync_task,
        };
        shell.perform(actions, &mut ctx);
        shell.publish(&controller, &self.plan, &self.notifier, &self.handle.events);

        let mut watchdog = self.notifier.watchdog_interval().map(tokio::time::interval);
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        while !controller.is_done() {
            let mut ctx = Ctx {
                plan: &self.plan,
                reports: &reports_tx,
                joined: &joined_tx,
                roots: &roots,
                sync_task: &mut sync_task,
            };
            let retry = controller.next_deadline();
            let actions = tokio::select! {
                _ = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    info!("stopping");
                    self.notifier.stopping();
                    controller.shutdown()
                }
                Some(command) = self.commands.recv() => {
                    info!(?command, "command");
                    controller.command(command)
                }
                Some(report) = reports.recv() => {
                    if let (Some(webhook), MixerReport::Relayed(notice)) = (&webhook, &report) {
                        webhook.post(notice);
                    }
                    shell.liveness.on_report(&report, Instant::now().into_std());
                    shell.status.update(&report);
                    let _ = self.handle.events.send(Event::Mixer(Arc::new(report)));
                    Vec::new()
                }
                Some(generation) = joined.recv() => {
                    if shell.running.as_ref().is_some_and(|r| r.generation == generation) {
                        let now = Instant::now().into_std();
                        controller.joined(now);
                        shell.liveness.run_started(now);
                    }
                    Vec::new()
                }
                ended = wait(shell.running.as_mut().map(|r| &mut r.task)) => {
                    let run = shell.running.take().expect("waited on a running task");
                    shell.liveness.run_ended();
                    let ended = match ended {
                        Ok(Ok(summary)) => {
                            match &summary {
                                Some(s) => info!(recording = %run.recording, fragments = s.fragments, bytes = s.file_bytes, "recording stopped"),
                                None => warn!(recording = %run.recording, "recording stopped without the recorder's confirmation"),
                            }
                            Ended::Stopped
                        }
                        Ok(Err(e)) => {
                            warn!(recording = %run.recording, "recording run ended: {e}");
                            Ended::Failed(e.into())
                        }
                        Err(e) => {
                            error!(recording = %run.recording, "recording run failed: {e}");
                            Ended::Failed(e.into())
                        }
                    };
                    controller.ended(ended, Instant::now().into_std())
                }
                _ = sleep_until(retry.map_or_else(Instant::now, Instant::from_std)), if retry.is_some() => {
                    controller.poll(Instant::now().into_std())
                }
                synced = wait(ctx.sync_task.as_mut()) => {
                    *ctx.sync_task = None;
                    let synced = synced.unwrap_or_else(|e| Err(e.to_string()));
                    match &synced {
                        Ok(()) => info!("storage synced: the disk can be removed"),
                        Err(e) => warn!("syncing the storage: {e}"),
                    }
                    let _ = self.handle.events.send(Event::Synced(synced));
                    Vec::new()
                }
                event = storage_event(storage.as_mut()) => {
                    let _ = self.handle.events.send(Event::Storage(event));
                    Vec::new()
                }
                _ = tick(watchdog.as_mut()) => {
                    match shell.liveness.check(Instant::now().into_std()) {
                        Ok(()) => self.notifier.watchdog(),
                        Err(wedged) => error!("not pinging the watchdog: {wedged}"),
                    }
                    Vec::new()
                }
                stopped = wait(recorder_task.as_mut()) => {
                    return Err(match stopped {
                        Ok(()) => ApplianceError::RecorderEnded,
                        Err(e) => e.into(),
                    });
                }
            };
            shell.perform(actions, &mut ctx);
            shell.publish(&controller, &self.plan, &self.notifier, &self.handle.events);
        }
        // The recording is closed (Stop and Stopped exchanged): what the recorder
        // still runs is idle.
        if let Some(task) = recorder_task {
            task.abort();
        }
        if let Some(webhook) = webhook {
            // The last run's final notices may still be on their way here.
            while let Ok(report) = reports.try_recv() {
                if let MixerReport::Relayed(notice) = &report {
                    webhook.post(notice);
                }
            }
            webhook.finish(WEBHOOK_PATIENCE).await;
        }
        Ok(())
    }
}

/// Borrowed by [`Shell::perform`].
struct Ctx<'a> {
    plan: &'a Plan,
    reports: &'a mpsc::UnboundedSender<MixerReport>,
    joined: &'a mpsc::UnboundedSender<u64>,
    roots: &'a [PathBuf],
    sync_task: &'a mut Option<JoinHandle<Result<(), String>>>,
}

struct Shell {
    liveness: Liveness,
    status: RecordingStatus,
    running: Option<Running>,
    generation: u64,
    last_status: String,
    last_state: Option<RecordingState>,
}

impl Shell {
    fn perform(&mut self, actions: Vec<Action>, ctx: &mut Ctx) {
        for action in actions {
            match action {
                Action::Launch => self.launch(ctx),
                Action::Stop => {
                    if let Some(stop) = self.running.as_mut().and_then(|r| r.stop.take()) {
                        let _ = stop.send(());
                    }
                }
                Action::Sync => {
                    let roots = ctx.roots.to_vec();
                    *ctx.sync_task = Some(tokio::task::spawn_blocking(move || sync_all(&roots)));
                }
            }
        }
    }

    fn launch(&mut self, ctx: &Ctx) {
        self.generation += 1;
        let generation = self.generation;
        let recording = format!("rec-{}-{:04x}", now_millis(), rand::random::<u16>());
        let mut config = ctx.plan.mixer.clone();
        config.link.recording = recording.clone();
        let (stop_tx, stop) = oneshot::channel();
        let (url, name) = (ctx.plan.sfu_url.clone(), ctx.plan.name.clone());
        let janus = ctx.plan.janus.clone();
        let (reports, joined) = (ctx.reports.clone(), ctx.joined.clone());
        info!(%recording, %url, "joining the meeting to record");
        let task = tokio::spawn(async move {
            record(config, url, name, janus, reports, stop, || {
                let _ = joined.send(generation);
            })
            .await
        });
        self.status = RecordingStatus::default();
        self.running = Some(Running {
            generation,
            recording,
            stop: Some(stop_tx),
            task,
        });
    }

    /// Tells systemd and the subscribers what changed.
    fn publish(
        &mut self,
        controller: &Controller,
        plan: &Plan,
        notifier: &Notifier,
        events: &broadcast::Sender<Event>,
    ) {
        let state = controller.state();
        if self.last_state.as_ref() != Some(&state) {
            info!(?state, "recording state");
            if let (RecordingState::Joining, Some(run)) = (&state, &self.running) {
                let _ = events.send(Event::Recording(run.recording.clone()));
            }
            let _ = events.send(Event::State(state.clone()));
            self.last_state = Some(state.clone());
        }
        let line = status_line(
            &state,
            &self.status,
            self.running.as_ref().map(|r| r.recording.as_str()),
            &plan.sfu_url,
        );
        if line != self.last_status {
            notifier.status(&line);
            self.last_status = line;
        }
    }
}

/// One line for `systemctl status`.
fn status_line(
    state: &RecordingState,
    status: &RecordingStatus,
    recording: Option<&str>,
    sfu: &str,
) -> String {
    match state {
        RecordingState::Idle => "Not recording".into(),
        RecordingState::Joining => format!("Joining the meeting at {sfu}"),
        RecordingState::Stopping => "Stopping the recording".into(),
        RecordingState::Waiting { reason } => {
            format!("Not in the meeting ({reason}); trying again")
        }
        RecordingState::Recording => format!(
            "Recording {}: {}, {} participants, faults: {}",
            recording.unwrap_or("-"),
            status.recorded_text().unwrap_or_else(|| "starting".into()),
            status.participants,
            status.faults_text()
        ),
    }
}

/// One recording run: join the meeting, then mix and record until `stop`.
async fn record(
    config: MixerConfig,
    url: String,
    name: String,
    janus: Option<JanusConfig>,
    reports: mpsc::UnboundedSender<MixerReport>,
    mut stop: oneshot::Receiver<()>,
    joined: impl FnOnce(),
) -> Result<Option<Summary>, MixerError> {
    let Some(janus) = janus else {
        let join = tokio::time::timeout(JOIN_TIMEOUT, mixer::join_sfu(&config, &url, &name));
        let (ingest, adapter) = tokio::select! {
            joined = join => match joined {
                Ok(joined) => joined?,
                Err(_) => {
                    return Err(MixerError::JoinTimeout {
                        what: "no welcome",
                        url,
                        limit: JOIN_TIMEOUT,
                    })
                }
            },
            _ = &mut stop => return Ok(None),
        };
        joined();
        return mixer::run(config, ingest, adapter, reports, stop).await;
    };
    let join = tokio::time::timeout(JOIN_TIMEOUT, mixer::join_janus(&config, janus));
    let (ingest, adapter) = tokio::select! {
        joined = join => match joined {
            Ok(joined) => joined?,
            Err(_) => {
                return Err(MixerError::JoinTimeout {
                    what: "not in the Janus room",
                    url,
                    limit: JOIN_TIMEOUT,
                })
            }
        },
        _ = &mut stop => return Ok(None),
    };
    joined();
    mixer::run(config, ingest, adapter, reports, stop).await
}

/// Flushes every file system holding recordings (`syncfs`), so the disk can go.
fn sync_all(roots: &[PathBuf]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    for root in roots {
        let dir = std::fs::File::open(root).map_err(|e| format!("{}: {e}", root.display()))?;
        // SAFETY: syncfs takes a valid open descriptor, which `dir` keeps open.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("syncfs {}: {e}", root.display()));
        }
    }
    Ok(())
}

/// The task's outcome; never resolves without a task.
async fn wait<T>(task: Option<&mut JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// The storage monitor's next event; never resolves without a monitor, or once it
/// is gone.
async fn storage_event(events: Option<&mut broadcast::Receiver<HealthEvent>>) -> HealthEvent {
    let Some(events) = events else {
        return std::future::pending().await;
    };
    loop {
        match events.recv().await {
            Ok(event) => return event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "storage events missed: the panel may show an old state"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
