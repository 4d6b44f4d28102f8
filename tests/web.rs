//! The box's web page against `recbox run` as a real process, over real sockets:
//! the JSON API and its authentication, byte ranges with `curl -r`, path traversal
//! refused, a live server-sent status event when a real storage fault is injected
//! (the recording file removed under the recorder), and headless Chromium (Debian's,
//! driven over the DevTools protocol) showing the state and the fault and playing a
//! finished recording in the page's `<video>`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Recbox;
use futures_util::{SinkExt, StreamExt};
use recbox::recorder::layout::MP4_FILE;
use recbox::testbed::scratch::Mounted;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Generous: the machine is shared and busy.
const PATIENCE: Duration = Duration::from_secs(120);
const PASSWORD: &str = "room 4 admin";
const MAX_CONNECTIONS: usize = 16;

/// `recbox run` with the configuration at `config`.
fn spawn(config: &Path) -> Recbox {
    Recbox::spawn("recbox", |cmd| {
        cmd.args(["run", "--config", config.to_str().unwrap()]);
    })
}

/// The web page's address, once it listens.
fn web_addr(recbox: &mut Recbox) -> String {
    recbox
        .wait_line("web page listening")
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap()
        .to_owned()
}

fn hash_password() -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .args(["web", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// One curl call: status, headers, body.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let (body, headers) = (dir.path().join("body"), dir.path().join("headers"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Reply {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(headers).unwrap_or_default(),
        body: std::fs::read(body).unwrap_or_default(),
    }
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Server-sent events of `/api/events`, read from a raw socket.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: &str) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        Self { reader }
    }

    /// The next status event's data.
    fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "events ended"
            );
            // Chunked framing lines are not `data:` lines.
            if let Some(data) = line.trim().strip_prefix("data:") {
                return serde_json::from_str(data.trim()).unwrap();
            }
        }
    }
}

/// Headless Chromium over the DevTools protocol, one page.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
}

impl Chromium {
    async fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,1400",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium (tests/run installs it)");
        let port_file = profile.path().join("DevToolsActivePort");
        let text = until("DevToolsActivePort", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .filter(|t| t.lines().count() >= 2)
        });
        let mut lines = text.lines();
        let (port, path) = (lines.next().unwrap(), lines.next().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        let mut me = Self {
            child,
            _profile: profile,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = me
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = me
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        me.session = attached["sessionId"].as_str().unwrap().to_owned();
        me
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
        loop {
            let reply = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of `expression` in the page, or the exception it threw.
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self.try_eval(expression).await;
        r.unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Logs in through the page's own form; returns once the recordings are listed.
    async fn log_in(&mut self) {
        self.eval(&format!(
            "document.getElementById('password').value = {}; \
             document.getElementById('login').requestSubmit(); true",
            json!(PASSWORD)
        ))
        .await;
        self.wait_for(
            "the recordings",
            "document.querySelectorAll('#list tr').length > 0",
        )
        .await;
    }

    /// Plays `src` muted in the page's player until it is past `past` seconds:
    /// `[currentTime, duration, videoWidth, videoHeight]` then, or the media error.
    async fn play_past(&mut self, what: &str, src: &str, past: f64) -> Value {
        self.eval(&format!(
            "const v = document.getElementById('player'); v.muted = true; \
             v.src = {}; v.play(); true",
            json!(src)
        ))
        .await;
        self.wait_for(
            what,
            &format!(
                "(() => {{ const v = document.getElementById('player'); \
                   if (v.error) return 'error ' + v.error.code + ' ' + v.error.message; \
                   return v.currentTime > {past} \
                     ? [v.currentTime, v.duration, v.videoWidth, v.videoHeight] : null; }})()"
            ),
        )
        .await
    }

    /// Until `expression` is truthy; exceptions count as not yet (the page may
    /// still be loading).
    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.try_eval(expression).await;
            match v {
                Ok(v) if v != Value::Null && v != json!(false) => return v,
                Ok(_) => {}
                Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
            }
            assert!(Instant::now() < deadline, "page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `recbox run`'s configuration, recording to `storage` with `[recorder]` lines
/// `recorder` added.
fn config(dir: &Path, storage: &Path, recorder: &str, sfu: &str, hash: &str) -> PathBuf {
    let path = dir.join("recbox.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[link]
socket = "{dir}/run/link.sock"
[recorder]
storage = "{storage}"
spool = "{dir}/spool"
stats_interval = "500ms"
{recorder}
[mixer]
ingest = "127.0.0.1:0"
room = "room-1"
size = "1280x720"
fps = 10
encoder = "software"
[sfu]
url = "{sfu}"
[recording]
autostart = false
[panel]
backend = "none"
[audio]
chime = false
[web]
listen = "127.0.0.1:0"
admin_password_hash = "{hash}"
max_connections = {MAX_CONNECTIONS}
header_timeout = "2s"
"#,
            dir = dir.display(),
            storage = storage.display(),
        ),
    )
    .unwrap();
    path
}

fn current_file(storage: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(storage.join("room-1"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join(MP4_FILE)))
        .filter(|f| f.is_file())
        .collect();
    files.sort();
    files.pop()
}

#[test]
fn the_web_page_serves_status_recordings_and_commands() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sfu = rt.block_on(common::start_sfu());
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let mut recbox = spawn(&config(dir.path(), &storage, "", &sfu, &hash_password()));
    let addr = web_addr(&mut recbox);
    let url = |path: &str| format!("http://{addr}{path}");

    // Slow clients holding every connection (half a request line, then nothing)
    // are closed after web.header_timeout; a real request meanwhile is answered.
    let stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/sta").unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s
        })
        .collect();
    assert_eq!(curl(&[&url("/api/status")]).status, 200);
    for mut s in stalled {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("closed by the server, not timed out here");
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "half a request is never answered"
        );
    }

    // The status is open to all; the rest needs a session.
    let status = curl(&[&url("/api/status")]);
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["state"], "idle");
    assert_eq!(status.json()["panel"], "ready");
    assert_eq!(curl(&[&url("/")]).status, 200);
    let refused = curl(&[&url("/api/recordings")]);
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    let start = r#"{"command":"start"}"#;
    let json_type = "Content-Type: application/json";
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "-H",
            json_type,
            "-d",
            start,
            &url("/api/commands")
        ])
        .status,
        401
    );
    assert_eq!(
        curl(&["-H", "Authorization: Bearer 00ff", &url("/api/recordings")]).status,
        401
    );
    let wrong = curl(&[
        "-H",
        json_type,
        "-d",
        r#"{"password":"guess"}"#,
        &url("/api/login"),
    ]);
    assert_eq!(wrong.status, 401);
    let big = format!(r#"{{"password":"{}"}}"#, "x".repeat(64 << 10));
    assert_eq!(
        curl(&["-H", json_type, "-d", &big, &url("/api/login")]).status,
        413,
        "bodies are bounded"
    );
    let login = curl(&[
        "-H",
        json_type,
        "-d",
        &json!({ "password": PASSWORD }).to_string(),
        &url("/api/login"),
    ]);
    assert_eq!(login.status, 200);
    assert!(login.header("set-cookie").unwrap().contains("HttpOnly"));
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Authorization: Bearer {token}");
    let authed = |path: &str, extra: &[&str]| {
        let mut args = vec!["-H", bearer.as_str()];
        args.extend_from_slice(extra);
        let u = url(path);
        args.push(&u);
        curl(&args)
    };
    assert_eq!(authed("/api/recordings", &[]).json(), json!([]));

    // The page, live.
    let mut browser = rt.block_on(Chromium::launch());
    rt.block_on(async {
        browser
            .call("Page.navigate", json!({ "url": url("/") }))
            .await;
        browser
            .wait_for(
                "the idle state",
                "document.getElementById('state').textContent === 'idle'",
            )
            .await;
    });

    // A command starts recording, as the panel's button does.
    let accepted = authed("/api/commands", &["-H", json_type, "-d", start]);
    assert_eq!(
        accepted.status,
        202,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    assert_eq!(accepted.json()["accepted"], "start");
    let mut events = Events::open(&addr);
    until("recording with stats", || {
        let s = events.next();
        (s["state"] == "recording" && s["bytes"].as_u64().is_some_and(|b| b > 0)).then_some(())
    });
    rt.block_on(browser.wait_for(
        "the recording state",
        "document.getElementById('state').textContent.startsWith('recording')",
    ));
    std::thread::sleep(Duration::from_secs(2));

    // A real storage fault: the recording file removed under the recorder.
    let file = current_file(&storage).expect("a recording file");
    std::fs::remove_file(&file).unwrap();
    let fault = until("a fault event", || {
        let s = events.next();
        let faults = s["faults"].as_array().cloned().unwrap_or_default();
        faults
            .into_iter()
            .find(|f| f["kind"] == "file_write_failed")
    });
    assert!(
        fault["text"].as_str().unwrap().contains("recording file"),
        "{fault}"
    );
    assert!(
        fault["detail"].as_str().unwrap().contains("removed"),
        "{fault}"
    );
    rt.block_on(browser.wait_for(
        "the fault",
        "document.querySelector('#faults li[data-kind=file_write_failed]') !== null",
    ));
    drop(events);
    // Back on the storage, then long enough for a segment to play past 3 s.
    until("recovered", || {
        let s = curl(&[&url("/api/status")]).json();
        (s["faults"].as_array().unwrap().is_empty() && s["panel"] == "recording").then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    let stop = authed(
        "/api/commands",
        &["-H", json_type, "-d", r#"{"command":"stop"}"#],
    );
    assert_eq!(stop.status, 202);
    until("idle", || {
        (curl(&[&url("/api/status")]).json()["state"] == "idle").then_some(())
    });

    // The recording, every segment listed with its health.
    let list = authed("/api/recordings", &[]).json();
    let rec = &list[0];
    let segments = rec["segments"].as_array().unwrap();
    assert!(segments.len() >= 3, "storage, spool, storage again: {rec}");
    assert_eq!(segments[1]["root"], "spool");
    assert!(
        segments[0]["health"]
            .as_str()
            .unwrap()
            .contains("cannot be inspected"),
        "its file was removed: {}",
        segments[0]
    );
    let last = segments.last().unwrap();
    assert_eq!(last["health"], "finished cleanly", "{last}");
    assert!(rec["whole"].is_null(), "segment 0 lost its file: {rec}");
    assert!(
        rec["whole_unavailable"]
            .as_str()
            .unwrap()
            .contains("segment 0"),
        "{rec}"
    );
    let id = rec["id"].as_str().unwrap();
    let one = authed(&format!("/api/recordings/{id}"), &[]);
    assert_eq!(one.json()["id"], id);

    // Byte ranges.
    let mp4 = last["mp4"].as_str().unwrap();
    let whole = authed(mp4, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges").as_deref(), Some("bytes"));
    let len = whole.body.len();
    let part = authed(mp4, &["-r", "100-199"]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[100..200]);
    assert_eq!(
        part.header("content-range").unwrap(),
        format!("bytes 100-199/{len}")
    );
    let tail = authed(mp4, &["-r", "-50"]);
    assert_eq!(
        (tail.status, &tail.body[..]),
        (206, &whole.body[len - 50..])
    );
    let beyond = authed(mp4, &["-r", &format!("{len}-")]);
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range").unwrap(),
        format!("bytes */{len}")
    );
    let local = dir.path().join("downloaded.mp4");
    std::fs::write(&local, &whole.body).unwrap();
    assert_eq!(common::stream_codecs(&local), ["h264", "opus"]);
    // A later segment has no Opus pre-skip: decoded, none of its audio is dropped
    // (players drop the pre-skip at the start of every file).
    assert_eq!(
        decoded_samples(&local),
        common::packet_counts(&local)[1] * 960,
        "20 ms packets at 48 kHz"
    );
    let playlist = authed(last["playlist"].as_str().unwrap(), &[]);
    assert_eq!(playlist.status, 200);
    assert!(String::from_utf8_lossy(&playlist.body).contains("#EXT-X-ENDLIST"));
    assert_eq!(curl(&[&url(mp4)]).status, 401, "media needs a session too");

    // Nothing outside the listing can be named.
    for path in [
        "/recordings/..%2F..%2F..%2Fetc%2Fpasswd/0/recording.mp4",
        "/recordings/room-1~..%2F..%2Fetc/0/recording.m3u8",
        "/recordings/%2Fetc%2Fpasswd/recording.mp4",
        "/recordings/../../../etc/passwd",
        "/api/recordings/..%2F..",
    ] {
        let r = authed(path, &["--path-as-is"]);
        assert!(
            r.status == 404 || r.status == 400,
            "{path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{path}"
        );
    }

    // The page plays the finished segment, logged in through its own form.
    let mp4 = mp4.to_owned();
    rt.block_on(async {
        browser.log_in().await;
        let played = browser
            .play_past("the video playing past 3 s", &mp4, 3.0)
            .await;
        assert!(played.is_array(), "media error: {played}");
        assert_eq!(played[2], 1280, "{played}");
        assert_eq!(played[3], 720, "{played}");
    });
    drop(recbox);
}

/// Logs in through the API; the session token.
fn log_in(addr: &str) -> String {
    let login = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        &json!({ "password": PASSWORD }).to_string(),
        &format!("http://{addr}/api/login"),
    ]);
    assert_eq!(login.status, 200);
    login.json()["token"].as_str().unwrap().to_owned()
}

/// A recording that failed over to the spool and came back (the storage filled up
/// and was freed: segment 0 stays whole) is downloaded as one file, which ffmpeg
/// decodes without an error, holds every packet of its segments and lasts as long
/// as they do together, and which the page's `<video>` plays past its first segment.
/// With `RECBOX_WEB_SCREENSHOT=FILE` the page is captured (docs/guide/web.png).
#[test]
fn a_failed_over_recording_downloads_as_one_file() {
    let Some(disk) = common::tmpfs("64m") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sfu = rt.block_on(common::start_sfu());
    let dir = tempfile::tempdir().unwrap();
    let storage = disk.path().join("storage");
    let watermarks = "low_space = \"24M\"\nfull_space = \"16M\"\nstorage_poll = \"100ms\"";
    let mut recbox = spawn(&config(
        dir.path(),
        &storage,
        watermarks,
        &sfu,
        &hash_password(),
    ));
    let addr = web_addr(&mut recbox);
    let url = |path: &str| format!("http://{addr}{path}");
    let bearer = format!("Authorization: Bearer {}", log_in(&addr));
    let authed = |path: &str| curl(&["-H", &bearer, &url(path)]);
    let command = |name: &str| {
        let body = json!({ "command": name }).to_string();
        let args = ["-H", "Content-Type: application/json", "-d", &body];
        let mut all = vec!["-H", bearer.as_str()];
        all.extend_from_slice(&args);
        let u = url("/api/commands");
        all.push(&u);
        assert_eq!(curl(&all).status, 202);
    };
    let status = || curl(&[&url("/api/status")]).json();

    command("start");
    until("recording", || {
        let s = status();
        (s["state"] == "recording" && s["bytes"].as_u64().is_some_and(|b| b > 0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    // Fill the storage below full_space: the recording moves to the spool.
    let filler = disk.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    for _ in 0..56 {
        if file.write_all(&[0x55; 1 << 20]).is_err() {
            break;
        }
    }
    drop(file);
    until("spooling", || {
        (status()["panel"] == "spooling").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&filler).unwrap();
    until("back on the storage", || {
        let s = status();
        (s["faults"].as_array().unwrap().is_empty() && s["panel"] == "recording").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    command("stop");
    until("idle", || (status()["state"] == "idle").then_some(()));

    let list = authed("/api/recordings").json();
    let rec = &list[0];
    let segments = rec["segments"].as_array().unwrap();
    assert!(segments.len() >= 3, "storage, spool, storage again: {rec}");
    assert_eq!(segments[1]["root"], "spool", "{rec}");
    let whole_url = rec["whole"]
        .as_str()
        .unwrap_or_else(|| panic!("one file: {rec}"));
    let whole = dir.path().join("whole.mp4");
    std::fs::write(&whole, authed(whole_url).body).unwrap();
    let mut packets = [0, 0];
    let mut seconds = 0.0;
    for (i, segment) in segments.iter().enumerate() {
        let file = dir.path().join(format!("segment-{i}.mp4"));
        std::fs::write(&file, authed(segment["mp4"].as_str().unwrap()).body).unwrap();
        for (sum, n) in packets.iter_mut().zip(common::packet_counts(&file)) {
            *sum += n;
        }
        seconds += segment["end_s"].as_f64().unwrap() - segment["start_s"].as_f64().unwrap();
    }

    assert_eq!(common::stream_codecs(&whole), ["h264", "opus"]);
    assert_eq!(
        common::packet_counts(&whole),
        packets,
        "every segment's packets"
    );
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&whole)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "decodes cleanly: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let duration = common::format_duration_s(&whole);
    assert!(seconds > 8.0, "three segments of about 3 s: {rec}");
    assert!(
        (duration - seconds).abs() < 0.5,
        "the file lasts {duration} s, its segments {seconds} s together: {rec}"
    );
    assert!(
        (duration - rec["duration_s"].as_f64().unwrap()).abs() < 0.5,
        "{rec}"
    );

    // The page plays the one file past the end of its first segment.
    let past_first =
        segments[0]["end_s"].as_f64().unwrap() - segments[0]["start_s"].as_f64().unwrap() + 1.0;
    rt.block_on(async {
        let mut browser = Chromium::launch().await;
        browser
            .call("Page.navigate", json!({ "url": url("/") }))
            .await;
        browser
            // The script has run (the state comes from it): the form is its own.
            .wait_for(
                "the idle state",
                "document.getElementById('state').textContent.startsWith('idle')",
            )
            .await;
        browser.log_in().await;
        let played = browser
            .play_past(
                "the whole recording playing into its second segment",
                whole_url,
                past_first,
            )
            .await;
        assert!(played.is_array(), "media error: {played}");
        assert!(
            (played[1].as_f64().unwrap() - duration).abs() < 0.5,
            "the page sees the whole duration: {played}"
        );
        // The README's picture: a real failed-over recording, its segments listed.
        if let Ok(path) = std::env::var("RECBOX_WEB_SCREENSHOT") {
            browser
                .eval("document.getElementById('player').pause(); true")
                .await;
            let shot = browser
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            std::fs::write(path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
        }
    });
    drop(recbox);
}

/// Audio samples (48 kHz, mono) ffmpeg decodes from `file`.
fn decoded_samples(file: &Path) -> u64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "48000", "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len() as u64 / 2
}

/// Standard base64 (the screenshot DevTools sends).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
