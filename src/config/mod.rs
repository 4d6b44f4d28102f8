//! The box's configuration: one TOML file (`/etc/recbox/recbox.toml` on the box),
//! every key with a built-in default and documented in `board/recbox.toml`.
//!
//! Loading refuses unknown keys and checks every value, naming the key of each
//! problem: `recorder.stats_interval = "0s": must be more than zero`. The sections
//! map onto the roles' own configurations ([`RecorderConfig`], [`MixerConfig`]);
//! `panel` and `audio` are plain data for the front panel and the local audio.

mod value;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encoder::EncoderKind;
use crate::link::codec::DEFAULT_MAX_FRAME;
use crate::link::handshake::LinkKey;
use crate::link::transport::LinkAddr;
use crate::media::picture::VideoSize;
use crate::mixer::engine::EngineConfig;
use crate::mixer::link::LinkConfig;
use crate::mixer::service::MixerConfig;
use crate::panel::button::ButtonTiming;
use crate::panel::{PanelBackend, PanelPins, PanelTiming};
use crate::path_component::{self, UnsafeName};
use crate::recorder::monitor::MonitorConfig;
use crate::recorder::recording::WriterOptions;
use crate::recorder::service::{check_spool, RecorderConfig, DEFAULT_STATS_INTERVAL};
use crate::sfu::janus::JanusConfig;
use crate::sfu::webhook::{Target, WebhookConfig};
use crate::storage::health::HealthConfig;

/// Where the box reads its configuration.
pub const DEFAULT_PATH: &str = "/etc/recbox/recbox.toml";

/// The documented default configuration, as installed on the box.
pub const DOCUMENTED_DEFAULTS: &str = include_str!("../../board/recbox.toml");

/// Longest name the link's `Start` frame carries (rooms, mixer names).
const MAX_NAME: usize = 64;
/// A frame must hold a keyframe of the output video.
const MIN_MAX_FRAME: u64 = 64 << 10;
/// `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// GPIO lines on the Raspberry Pi's 40-pin header (BCM numbering).
const MAX_HEADER_GPIO: u8 = 27;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub link: LinkSection,
    pub recorder: RecorderSection,
    pub mixer: MixerSection,
    pub sfu: SfuSection,
    pub recording: RecordingSection,
    pub panel: PanelSection,
    pub(crate) audio: AudioSection,
    pub web: WebSection,
}

/// The media link between mixer and recorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSection {
    /// The local Unix socket between the two roles of `recbox run`.
    pub socket: PathBuf,
    /// The pre-shared key inline (better: `key_file`).
    #[serde(with = "value::text_or_empty")]
    key: Option<String>,
    /// A file holding the pre-shared key.
    #[serde(with = "value::path_or_empty")]
    key_file: Option<PathBuf>,
    #[serde(with = "value::size")]
    max_frame: u64,
}

impl Default for LinkSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/recbox/link.sock"),
            key: None,
            key_file: None,
            max_frame: DEFAULT_MAX_FRAME as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderSection {
    pub storage: PathBuf,
    #[serde(with = "value::path_or_empty")]
    pub spool: Option<PathBuf>,
    #[serde(with = "value::size")]
    spool_max: u64,
    #[serde(with = "value::duration")]
    stats_interval: Duration,
    #[serde(with = "value::duration")]
    storage_poll: Duration,
    #[serde(with = "value::size_or_auto")]
    low_space: Option<u64>,
    #[serde(with = "value::size")]
    full_space: u64,
}

impl Default for RecorderSection {
    fn default() -> Self {
        // The roles' own defaults, so there is one place for each.
        let writer = WriterOptions::default();
        let health = HealthConfig::default();
        Self {
            storage: PathBuf::from("/srv/recbox"),
            spool: Some(PathBuf::from("/var/lib/recbox/spool")),
            spool_max: writer.spool_max_bytes,
            stats_interval: DEFAULT_STATS_INTERVAL,
            storage_poll: MonitorConfig::new(PathBuf::new()).poll,
            low_space: health.low_space_bytes,
            full_space: health.full_space_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixerSection {
    /// Where participants' RTP arrives (one UDP port for every stream).
    #[serde(with = "value::string")]
    pub ingest: SocketAddr,
    /// The room: the directory of its recordings under the storage.
    pub room: String,
    /// The mixer's name at the SFU.
    pub name: String,
    #[serde(with = "value::string")]
    pub size: VideoSize,
    pub fps: u16,
    #[serde(with = "value::string")]
    pub encoder: EncoderKind,
    pub video_bitrate: u32,
    audio_bitrate: u32,
    #[serde(with = "value::duration")]
    playout_delay: Duration,
    #[serde(with = "value::duration")]
    stats_interval: Duration,
}

impl Default for MixerSection {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            ingest: SocketAddr::from(([0, 0, 0, 0], 5004)),
            room: "recbox".into(),
            name: "recbox".into(),
            size: VideoSize {
                width: engine.width,
                height: engine.height,
            },
            fps: engine.fps,
            encoder: engine.encoder,
            video_bitrate: engine.video_bitrate_bps,
            audio_bitrate: engine.audio_bitrate_bps,
            playout_delay: Duration::from_millis(100),
            stats_interval: Duration::from_secs(10),
        }
    }
}

/// Which SFU the mixer joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SfuKind {
    /// The box's own control protocol (`recbox sfu-sim`, the demo).
    Recbox,
    /// A Janus VideoRoom over the Janus WebSocket API.
    Janus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuSection {
    kind: SfuKind,
    /// The SFU's control channel (a WebSocket).
    pub url: String,
    /// Janus: the VideoRoom to record.
    room: u64,
    /// Janus: the room's secret and the VideoRoom's admin key (`rtp_forward` needs
    /// both when the plugin has `lock_rtp_forward`).
    #[serde(with = "value::text_or_empty")]
    secret: Option<String>,
    #[serde(with = "value::text_or_empty")]
    admin_key: Option<String>,
    /// Janus: the TextRoom of the meeting's notices (same secret); 0 for none.
    textroom: u64,
    /// Janus: the mixer's name in the room.
    display_name: String,
    /// The control platform's webhook (`http://...`): every notice is POSTed to it.
    #[serde(with = "value::text_or_empty")]
    webhook: Option<String>,
    /// Signs every webhook request (HMAC-SHA256 of the body).
    #[serde(with = "value::text_or_empty")]
    webhook_secret: Option<String>,
}

impl Default for SfuSection {
    fn default() -> Self {
        Self {
            kind: SfuKind::Recbox,
            url: "ws://127.0.0.1:8188/".into(),
            room: 1234,
            secret: None,
            admin_key: None,
            textroom: 1234,
            display_name: "recbox".into(),
            webhook: None,
            webhook_secret: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSection {
    /// Record from start-up (else the button starts it).
    pub autostart: bool,
}

impl Default for RecordingSection {
    fn default() -> Self {
        Self { autostart: true }
    }
}

/// The front panel's wiring, for the panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PanelSection {
    pub(crate) backend: PanelBackend,
    /// BCM GPIO numbers.
    led_pin: u8,
    led_active_low: bool,
    /// A second (red) LED for trouble; none by default.
    #[serde(with = "value::pin_or_empty")]
    fault_led_pin: Option<u8>,
    button_pin: u8,
    button_active_low: bool,
    /// A press at least this long is a safe stop.
    #[serde(with = "value::duration")]
    pub long_press: Duration,
}

impl PanelSection {
    pub(crate) fn pins(&self) -> PanelPins {
        PanelPins {
            led: self.led_pin,
            fault_led: self.fault_led_pin,
            button: self.button_pin,
            led_active_low: self.led_active_low,
            button_active_low: self.button_active_low,
        }
    }

    pub fn timing(&self) -> PanelTiming {
        PanelTiming {
            button: ButtonTiming {
                long: self.long_press,
                ..ButtonTiming::default()
            },
            ..PanelTiming::default()
        }
    }
}

impl Default for PanelSection {
    fn default() -> Self {
        Self {
            backend: PanelBackend::Gpio,
            led_pin: 17,
            led_active_low: false,
            fault_led_pin: None,
            button_pin: 27,
            button_active_low: true,
            long_press: Duration::from_secs(3),
        }
    }
}

/// The box's own speaker and microphone (ALSA device names), for the local audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AudioSection {
    /// A chime on start, stop and fault.
    pub(crate) chime: bool,
    pub(crate) playback: String,
    /// A room microphone mixed into the recording; none by default.
    #[serde(with = "value::text_or_empty")]
    microphone: Option<String>,
}

impl Default for AudioSection {
    fn default() -> Self {
        Self {
            chime: true,
            playback: "default".into(),
            microphone: None,
        }
    }
}

/// The box's web page and its API (`crate::web`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    /// Where the page listens; off by default.
    #[serde(with = "value::addr_or_empty")]
    pub listen: Option<SocketAddr>,
    /// Argon2 PHC string of the admin password (`recbox web hash-password`); without
    /// it only the status is served.
    #[serde(with = "value::text_or_empty")]
    pub(crate) admin_password_hash: Option<String>,
    /// Connections served at once; more wait in the kernel's backlog.
    pub(crate) max_connections: u32,
    /// Largest request body taken.
    #[serde(with = "value::size")]
    pub(crate) max_request_body: u64,
    /// A connection that has not sent a whole request head by then (from its start,
    /// or from the end of its previous answer) is closed.
    #[serde(with = "value::duration")]
    pub(crate) header_timeout: Duration,
}

impl Default for WebSection {
    fn default() -> Self {
        Self {
            listen: None,
            admin_password_hash: None,
            max_connections: 32,
            max_request_body: 16 << 10,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's path, `recorder.stats_interval`.
    key: String,
    /// The value as written in TOML, when there is one.
    value: Option<String>,
    problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} = {v}: {}", self.key, self.problem),
            None => write!(f, "{}: {}", self.key, self.problem),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    // The cause is in the message, not a source: it would be printed twice.
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("not TOML: {0}")]
    Syntax(String),
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

/// A configuration read from a file, and what deserves a warning about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| ConfigError::Invalid(vec![deserialize_problem(&table, &e)]))?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads and checks `path`; warns about a link key that others can read.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let read_err = |error| ConfigError::Read {
            path: path.to_owned(),
            error,
        };
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let config = Self::parse(&text)?;
        let mut warnings = Vec::new();
        if config.link.key.is_some() && world_readable(path) {
            warnings.push(format!(
                "link.key is given inline in {}, which every user can read: put the key in a file \
                 readable only by recbox (link.key_file) or chmod o-r the config",
                path.display()
            ));
        }
        if let Some(file) = &config.link.key_file {
            if world_readable(file) {
                warnings.push(format!(
                    "link.key_file {} can be read by every user: chmod o-r it",
                    file.display()
                ));
            }
        }
        Ok(Loaded { config, warnings })
    }

    /// The effective configuration as a config file. A key or secret is not shown:
    /// a comment says it is set.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let hidden = [
            ("link.key", shown.link.key.take()),
            ("sfu.secret", shown.sfu.secret.take()),
            ("sfu.admin_key", shown.sfu.admin_key.take()),
            ("sfu.webhook_secret", shown.sfu.webhook_secret.take()),
        ];
        let mut text = String::new();
        for (key, _) in hidden.iter().filter(|(_, v)| v.is_some()) {
            text.push_str(&format!("# {key} is set (not shown)\n"));
        }
        text.push_str(
            &toml::to_string(&shown).expect("every value of the configuration has a TOML form"),
        );
        text
    }

    /// The media-link key from `link.key` or `link.key_file`; `None` when neither is set.
    pub fn link_key(&self) -> Result<Option<LinkKey>, ConfigError> {
        let key = match (&self.link.key, &self.link.key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::Invalid(vec![Problem {
                        key: "link.key_file".into(),
                        value: Some(toml_string(&path.to_string_lossy())),
                        problem: format!("cannot read it: {e}"),
                    }])
                })?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        let which = if self.link.key.is_some() {
            "link.key"
        } else {
            "link.key_file"
        };
        LinkKey::new(key).map(Some).map_err(|_| {
            ConfigError::Invalid(vec![Problem {
                key: which.into(),
                value: None,
                problem: "the key is empty".into(),
            }])
        })
    }

    /// The address of the local socket between the roles.
    /// The Janus room to join, when the SFU is Janus.
    pub(crate) fn janus_config(&self) -> Option<JanusConfig> {
        let sfu = &self.sfu;
        (sfu.kind == SfuKind::Janus).then(|| JanusConfig {
            url: sfu.url.clone(),
            room: sfu.room,
            display_name: sfu.display_name.clone(),
            secret: sfu.secret.clone(),
            admin_key: sfu.admin_key.clone(),
            textroom: (sfu.textroom != 0).then_some(sfu.textroom),
        })
    }

    /// The control platform's webhook, when one is configured (and valid).
    pub(crate) fn webhook_config(&self) -> Option<WebhookConfig> {
        let target = Target::parse(self.sfu.webhook.as_deref()?).ok()?;
        Some(WebhookConfig {
            secret: self.sfu.webhook_secret.clone(),
            ..WebhookConfig::new(target)
        })
    }

    pub fn local_link(&self) -> LinkAddr {
        LinkAddr::Unix(self.link.socket.clone())
    }

    /// The recorder role as configured.
    pub(crate) fn recorder_config(&self, key: LinkKey) -> RecorderConfig {
        let r = &self.recorder;
        let mut config = RecorderConfig::new(r.storage.clone(), key);
        config.spool = r.spool.clone();
        config.max_frame = self.max_frame();
        config.stats_interval = r.stats_interval;
        config.storage_poll = r.storage_poll;
        config.writer.spool_max_bytes = r.spool_max;
        config.health = HealthConfig {
            low_space_bytes: r.low_space,
            full_space_bytes: r.full_space,
            ..config.health
        };
        config
    }

    /// The mixer role as configured, sending to the recorder at `recorder`. The
    /// recording id is left empty: each recording gets its own.
    pub(crate) fn mixer_config(&self, recorder: LinkAddr, key: LinkKey) -> MixerConfig {
        let m = &self.mixer;
        let mut link = LinkConfig::new(recorder, key, "", &m.room);
        link.max_frame = self.max_frame();
        MixerConfig {
            ingest: m.ingest,
            playout_delay: m.playout_delay,
            engine: EngineConfig {
                width: m.size.width,
                height: m.size.height,
                fps: m.fps,
                video_bitrate_bps: m.video_bitrate,
                audio_bitrate_bps: m.audio_bitrate,
                // One fragment per group of pictures.
                keyframe_interval: WriterOptions::default().max_fragment,
                encoder: m.encoder.clone(),
                ..EngineConfig::default()
            },
            link,
            stats_interval: m.stats_interval,
            microphone: self.audio.microphone.clone(),
        }
    }

    fn max_frame(&self) -> usize {
        usize::try_from(self.link.max_frame).unwrap_or(usize::MAX)
    }

    /// Everything wrong with the values, each with its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        let link = &self.link;
        let socket = link.socket.to_string_lossy();
        if !link.socket.is_absolute() {
            p.add("link.socket", &socket, "must be an absolute path");
        } else if socket.len() > MAX_SOCKET_PATH {
            p.add(
                "link.socket",
                &socket,
                format!("longer than {MAX_SOCKET_PATH} bytes, too long for a Unix socket"),
            );
        }
        if link.key.is_some() && link.key_file.is_some() {
            p.push("link.key", None, "give link.key or link.key_file, not both");
        }
        if link.max_frame < MIN_MAX_FRAME {
            p.add(
                "link.max_frame",
                &crate::size::format(link.max_frame),
                "must be at least 64K to carry a video keyframe",
            );
        }

        let rec = &self.recorder;
        if rec.storage.as_os_str().is_empty() {
            p.add("recorder.storage", "", "must name a directory");
        }
        if let Some(spool) = &rec.spool {
            if let Err(e) = check_spool(&rec.storage, spool) {
                p.add("recorder.spool", &spool.to_string_lossy(), e.to_string());
            }
        }
        if let Some(low) = rec.low_space {
            if low < rec.full_space {
                p.add(
                    "recorder.low_space",
                    &crate::size::format(low),
                    format!(
                        "must not be below recorder.full_space ({})",
                        crate::size::format(rec.full_space)
                    ),
                );
            }
        }

        let m = &self.mixer;
        if let Err(UnsafeName { reason, .. }) = path_component::check("room", &m.room) {
            p.add(
                "mixer.room",
                &m.room,
                format!("not a directory name: {reason}"),
            );
        }
        for (key, name) in [("mixer.room", &m.room), ("mixer.name", &m.name)] {
            if name.chars().count() > MAX_NAME {
                p.add(key, name, format!("longer than {MAX_NAME} characters"));
            }
        }
        if m.name.trim().is_empty() {
            p.add("mixer.name", &m.name, "must not be empty");
        }
        let VideoSize { width, height } = m.size;
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            p.add(
                "mixer.size",
                &m.size.to_string(),
                "width and height must be even and non-zero",
            );
        } else if width > 3840 || height > 2160 {
            p.add("mixer.size", &m.size.to_string(), "larger than 3840x2160");
        }
        if !(1..=120).contains(&m.fps) {
            p.push("mixer.fps", Some(m.fps.to_string()), "must be 1 to 120");
        }
        if m.video_bitrate < 10_000 {
            p.push(
                "mixer.video_bitrate",
                Some(m.video_bitrate.to_string()),
                "must be at least 10000 bits per second",
            );
        }
        // What Opus can encode.
        if !(6_000..=510_000).contains(&m.audio_bitrate) {
            p.push(
                "mixer.audio_bitrate",
                Some(m.audio_bitrate.to_string()),
                "must be 6000 to 510000 bits per second",
            );
        }
        if m.playout_delay > Duration::from_secs(2) {
            p.add(
                "mixer.playout_delay",
                &crate::duration::format(m.playout_delay),
                "more than 2s would hold every participant back that long",
            );
        }

        if let Err(problem) = check_ws_url(&self.sfu.url) {
            p.add("sfu.url", &self.sfu.url, problem);
        }
        if self.sfu.room == 0 {
            p.add(
                "sfu.room",
                "0",
                "must be a Janus room number, more than zero",
            );
        }
        if self.sfu.display_name.is_empty() {
            p.add("sfu.display_name", "", "must not be empty");
        }
        if let Some(url) = &self.sfu.webhook {
            if let Err(e) = Target::parse(url) {
                p.add("sfu.webhook", url, e.to_string());
            }
        } else if self.sfu.webhook_secret.is_some() {
            p.push(
                "sfu.webhook_secret",
                None,
                "set, but there is no sfu.webhook",
            );
        }

        let panel = &self.panel;
        let pins = [
            ("panel.led_pin", Some(panel.led_pin)),
            ("panel.fault_led_pin", panel.fault_led_pin),
            ("panel.button_pin", Some(panel.button_pin)),
        ];
        for (i, &(key, pin)) in pins.iter().enumerate() {
            let Some(pin) = pin else { continue };
            if pin > MAX_HEADER_GPIO {
                p.push(
                    key,
                    Some(pin.to_string()),
                    format!("not a GPIO of the 40-pin header (0 to {MAX_HEADER_GPIO})"),
                );
            }
            if let Some((other, _)) = pins[..i].iter().find(|(_, p)| *p == Some(pin)) {
                p.push(
                    key,
                    Some(pin.to_string()),
                    format!("the same pin as {other}"),
                );
            }
        }
        let short_max = ButtonTiming::default().short_max;
        if panel.long_press <= short_max {
            p.add(
                "panel.long_press",
                &crate::duration::format(panel.long_press),
                format!(
                    "must be longer than a short press ({})",
                    crate::duration::format(short_max)
                ),
            );
        }

        let audio = &self.audio;
        if audio.chime && audio.playback.trim().is_empty() {
            p.add(
                "audio.playback",
                &audio.playback,
                "must name an ALSA device while audio.chime is on",
            );
        }
        if audio
            .microphone
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            p.add(
                "audio.microphone",
                audio.microphone.as_deref().unwrap_or_default(),
                "must name an ALSA device, or be \"\" for none",
            );
        }
        let web = &self.web;
        if let Some(hash) = &web.admin_password_hash {
            if let Err(e) = crate::web::auth::check_hash(hash) {
                p.push(
                    "web.admin_password_hash",
                    None,
                    format!("{e} (make one with `recbox web hash-password`)"),
                );
            }
        }
        if !(1..=1024).contains(&web.max_connections) {
            p.push(
                "web.max_connections",
                Some(web.max_connections.to_string()),
                "must be 1 to 1024",
            );
        }
        if !(1024..=(1 << 20)).contains(&web.max_request_body) {
            p.add(
                "web.max_request_body",
                &crate::size::format(web.max_request_body),
                "must be 1K to 1M",
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&web.header_timeout) {
            p.add(
                "web.header_timeout",
                &crate::duration::format(web.header_timeout),
                "must be 100ms to 10m",
            );
        }
        p.0
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// A problem with a string value.
    fn add(&mut self, key: &str, value: &str, problem: impl Into<String>) {
        self.push(key, Some(toml_string(value)), problem);
    }

    fn push(&mut self, key: &str, value: Option<String>, problem: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            value,
            problem: problem.into(),
        });
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The SFU's control channel must be plain `ws://HOST[:PORT]/PATH` (the mixer has no
/// TLS).
fn check_ws_url(url: &str) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::http::Uri;
    let not_ws = || "not a ws:// URL (example: ws://sfu.example:8188/)".to_owned();
    let uri: Uri = url.parse().map_err(|_| not_ws())?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err("wss:// is not supported: use ws:// on a trusted network".into()),
        _ => return Err(not_ws()),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("the URL names no host".into()),
    }
}

/// The problem a deserialisation error stands for, with its key and value.
fn deserialize_problem(
    table: &toml::Table,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> Problem {
    let segments: Vec<String> = e
        .path()
        .iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => index.to_string(),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => "?".into(),
        })
        .collect();
    let message = e.inner().message().to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `spol`, expected one of `storage`, `spool`, …"
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let mut key = segments.clone();
        if key.last().map(String::as_str) != Some(name) {
            key.push(name.to_owned());
        }
        let known = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .replace('`', "");
        let section = match key.len() {
            1 => "the sections are".to_owned(),
            _ => format!("the keys of [{}] are", key[..key.len() - 1].join(".")),
        };
        return Problem {
            key: key.join("."),
            value: None,
            problem: format!("unknown key ({section}: {known})"),
        };
    }
    let mut value = Some(toml::Value::Table(table.clone()));
    for s in &segments {
        value = value.and_then(|v| match v {
            toml::Value::Table(mut t) => t.remove(s),
            toml::Value::Array(mut a) => s
                .parse::<usize>()
                .ok()
                .filter(|&i| i < a.len())
                .map(|i| a.swap_remove(i)),
            _ => None,
        });
    }
    let problem = if message.contains("expected struct") {
        format!("must be a section, [{}]", segments.join("."))
    } else {
        message
    };
    Problem {
        key: if segments.is_empty() {
            "(top level)".into()
        } else {
            segments.join(".")
        },
        value: value.map(|v| v.to_string()),
        problem,
    }
}

fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests;
