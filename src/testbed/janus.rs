//! A real Janus meeting for the lab: Debian's Janus 1.x started with a configuration
//! of the lab's own (`janus/`: a VideoRoom taking H.264 and VP8, a TextRoom for the
//! notices, the WebSocket API on 127.0.0.1), inside a [`Netns`], and GStreamer
//! `webrtcbin` terminals (`janus/terminal.py`, Debian's `/usr/bin/python3` with
//! python3-gi and python3-websockets): publishers of a solid colour and a tone, and
//! TextRoom terminals that print every announcement on their data channel. The files
//! are carried in the binary and written to a fresh directory at start, removed
//! with the lab. Used by the Janus end-to-end test and the fault bench.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::netns::{Netns, JANUS_IF};
use super::process::{Process, ProcessError};
use super::scratch::fresh_dir;
use crate::sfu::janus::JanusConfig;
use crate::synth::{PALETTE, TONES_HZ};

/// Generous: the machines the lab runs on are shared and busy.
pub const PATIENCE: Duration = Duration::from_secs(40);
/// Janus's WebSocket API inside the namespace.
const WS_PORT: u16 = 8188;
/// The rooms of the configuration below and their keys.
const ROOM: u64 = 1234;
const SECRET: &str = "adminpwd";
const ADMIN_KEY: &str = "recbox-admin-key";
const PYTHON: &str = "/usr/bin/python3";

const MAIN_CONFIG: &str = include_str!("janus/janus.jcfg.in");
/// The other configuration files, as they are.
const CONFIGS: [(&str, &str); 3] = [
    (
        "janus.plugin.videoroom.jcfg",
        include_str!("janus/janus.plugin.videoroom.jcfg"),
    ),
    (
        "janus.plugin.textroom.jcfg",
        include_str!("janus/janus.plugin.textroom.jcfg"),
    ),
    (
        "janus.transport.websockets.jcfg",
        include_str!("janus/janus.transport.websockets.jcfg"),
    ),
];
const TERMINAL: (&str, &str) = ("terminal.py", include_str!("janus/terminal.py"));

#[derive(Debug, Error)]
pub enum LabError {
    #[error("Janus is not installed (Debian package janus: no /usr/lib/<triplet>/janus/plugins/libjanus_videoroom.so)")]
    NotInstalled,
    #[error("writing the lab's Janus files: {0}")]
    Files(#[source] std::io::Error),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("Janus never listened on 127.0.0.1:{WS_PORT} in the namespace within {PATIENCE:?}")]
    NoListen,
    #[error("{name}: {line}")]
    Terminal { name: String, line: String },
    #[error("{name} publishes {got}, not {want}")]
    Codec {
        name: String,
        want: &'static str,
        got: String,
    },
}

/// A publisher's video codec, as Janus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherCodec {
    H264,
    Vp8,
}

impl PublisherCodec {
    fn name(self) -> &'static str {
        match self {
            PublisherCodec::H264 => "h264",
            PublisherCodec::Vp8 => "vp8",
        }
    }

    /// The terminal's `--vcodec`.
    fn encoder(self) -> &'static str {
        match self {
            PublisherCodec::H264 => "x264",
            PublisherCodec::Vp8 => "vp8",
        }
    }
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Janus running in its namespace with the lab's configuration. Janus stops, then
/// the namespace goes, when it is dropped.
pub struct JanusLab {
    _janus: Process,
    dir: Scratch,
    ns: Netns,
}

impl JanusLab {
    /// Writes the configuration and the terminal's script, starts Janus in `ns` and
    /// waits until its WebSocket API listens.
    pub fn start(ns: Netns) -> Result<Self, LabError> {
        let lib = janus_lib().ok_or(LabError::NotInstalled)?;
        let dir = Scratch(fresh_dir("janus").ok_or_else(|| {
            LabError::Files(std::io::Error::other("cannot make a temporary directory"))
        })?);
        let conf = &dir.0;
        let main = main_config(&lib, conf);
        for (name, text) in CONFIGS
            .into_iter()
            .chain([("janus.jcfg", main.as_str()), TERMINAL])
        {
            std::fs::write(conf.join(name), text).map_err(LabError::Files)?;
        }
        let mut cmd = ns.command("janus");
        cmd.arg("-C")
            .arg(conf.join("janus.jcfg"))
            .arg("-F")
            .arg(conf)
            .arg("-o");
        let janus = Process::spawn("janus", cmd)?;
        let deadline = std::time::Instant::now() + PATIENCE;
        while !ns.accepts(WS_PORT) {
            if std::time::Instant::now() >= deadline {
                return Err(LabError::NoListen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            _janus: janus,
            dir,
            ns,
        })
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// How a mixer (`display` in the room) joins this Janus from inside the namespace.
    pub(crate) fn mixer_config(display: &str) -> JanusConfig {
        JanusConfig {
            url: format!("ws://127.0.0.1:{WS_PORT}/"),
            room: ROOM,
            display_name: display.to_owned(),
            secret: Some(SECRET.to_owned()),
            admin_key: Some(ADMIN_KEY.to_owned()),
            textroom: Some(ROOM),
        }
    }

    /// A terminal named `name` with the script's `args`.
    pub fn terminal(&self, name: &str, args: &[&str]) -> Result<Terminal, LabError> {
        let mut cmd = self.ns.command(PYTHON);
        cmd.arg(self.dir.0.join(TERMINAL.0))
            .args(["--name", name])
            .args(args);
        Ok(Terminal(Process::spawn(name, cmd)?))
    }

    /// A terminal in the TextRoom, once it has joined.
    pub fn textroom_terminal(&self, name: &str) -> Result<Terminal, LabError> {
        let mut t = self.terminal(name, &["--textroom"])?;
        t.wait_event("textroom_joined", |_| true)?;
        Ok(t)
    }

    /// A publisher showing `PALETTE[i]` in `codec` and sounding `TONES_HZ[i]`, once
    /// Janus has taken its media.
    pub fn publisher(
        &self,
        name: &str,
        i: usize,
        codec: PublisherCodec,
    ) -> Result<Terminal, LabError> {
        let [r, g, b] = PALETTE[i];
        let rgb = format!("{r:02x}{g:02x}{b:02x}");
        let freq = TONES_HZ[i].to_string();
        let args = [
            "--publish",
            "--vcodec",
            codec.encoder(),
            "--rgb",
            &rgb,
            "--freq",
            &freq,
        ];
        let mut p = self.terminal(name, &args)?;
        let configured = p.wait_event("configured", |_| true)?;
        // Janus says `configured` even when the room refuses the codec.
        for (want, got) in [
            (codec.name(), &configured["video_codec"]),
            ("opus", &configured["audio_codec"]),
        ] {
            if got != want {
                return Err(LabError::Codec {
                    name: name.to_owned(),
                    want,
                    got: got.to_string(),
                });
            }
        }
        p.wait_event("webrtcup", |_| true)?;
        Ok(p)
    }
}

/// Janus's main configuration for its libraries at `lib` and the others at `conf`.
fn main_config(lib: &Path, conf: &Path) -> String {
    MAIN_CONFIG
        .replace("@LIB@", &lib.to_string_lossy())
        .replace("@CONF@", &conf.to_string_lossy())
        .replace("@ICE@", JANUS_IF.0)
}

/// Janus's libraries (`/usr/lib/<triplet>/janus`).
fn janus_lib() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("janus")))
        .find(|p| p.join("plugins/libjanus_videoroom.so").exists())
}

/// A terminal: one JSON event a line on its stdout (`configured`, `webrtcup`,
/// `textroom_joined`, `announcement` with the text and `rx`, its wall-clock time
/// of arrival in seconds; `error`).
pub struct Terminal(Process);

impl Terminal {
    /// The next event `event` that `pred` takes, within [`PATIENCE`]; an `error`
    /// event before it fails.
    pub fn wait_event(
        &mut self,
        event: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, LabError> {
        let line = self.0.wait_line(event, PATIENCE, |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["event"] == "error" || (v["event"] == event && pred(&v)))
        })?;
        let v: Value = serde_json::from_str(&line).expect("taken as JSON");
        if v["event"] == "error" {
            return Err(LabError::Terminal {
                name: self.0.name().to_owned(),
                line,
            });
        }
        Ok(v)
    }

    /// Its event lines from now on, for a caller that reads them as they come.
    pub fn take_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        self.0.take_lines()
    }

    /// Asks it to leave (SIGTERM); its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus, LabError> {
        Ok(self.0.stop(PATIENCE)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_configuration_has_every_place_filled() {
        let text = main_config(Path::new("/usr/lib/x/janus"), Path::new("/tmp/conf"));
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("plugins_folder = \"/usr/lib/x/janus/plugins\""));
        assert!(text.contains("configs_folder = \"/tmp/conf\""));
        assert!(text.contains(&format!("ice_enforce_list = \"{}\"", JANUS_IF.0)));
    }
}
