use super::*;

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Err(ConfigError::Invalid(p)) => p.iter().map(Problem::to_string).collect(),
        other => panic!("{text:?} gave {other:?}"),
    }
}

fn problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    p.into_iter().next().unwrap()
}

/// `section.key` of every key in a TOML table.
fn keys(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (section, v) in table {
        let t = v.as_table().expect("every top-level key is a section");
        out.extend(t.keys().map(|k| format!("{section}.{k}")));
    }
    out
}

#[test]
fn the_documented_defaults_are_the_built_in_ones() {
    let documented = Config::parse(DOCUMENTED_DEFAULTS).unwrap();
    assert_eq!(documented, Config::default());
    let file: toml::Table = DOCUMENTED_DEFAULTS.parse().unwrap();
    let defaults: toml::Table = Config::default().to_toml().parse().unwrap();
    assert_eq!(
        keys(&file),
        keys(&defaults),
        "every key is documented, in order"
    );
    // And with the same spelling of each value.
    assert_eq!(file, defaults);
}

#[test]
fn every_documented_key_has_its_comment() {
    let mut previous = "";
    for line in DOCUMENTED_DEFAULTS.lines() {
        let line = line.trim();
        if line.contains(" = ") && !line.starts_with('#') {
            assert!(previous.starts_with('#'), "no comment right above `{line}`");
        }
        previous = line;
    }
}

#[test]
fn empty_file_is_the_defaults_and_a_partial_one_keeps_the_rest() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    let c = Config::parse("[mixer]\nsize = \"320x240\"\n[recording]\nautostart = false\n").unwrap();
    assert_eq!(
        c.mixer.size,
        VideoSize {
            width: 320,
            height: 240
        }
    );
    assert!(!c.recording.autostart);
    assert_eq!(c.mixer.fps, 30);
    assert_eq!(c.recorder, RecorderSection::default());
}

#[test]
fn printed_config_reads_back() {
    let mut c = Config::default();
    c.recorder.low_space = Some(2 << 30);
    c.recorder.spool = None;
    c.mixer.encoder = EncoderKind::V4l2 {
        device: Some("/dev/video11".into()),
    };
    c.audio.microphone = Some("plughw:1,0".into());
    c.link.key_file = Some("/etc/recbox/link.key".into());
    let text = c.to_toml();
    assert!(text.contains("low_space = \"2G\""), "{text}");
    assert!(text.contains("spool = \"\""), "{text}");
    assert_eq!(Config::parse(&text).unwrap(), c);
}

#[test]
fn an_inline_key_or_secret_is_not_printed() {
    let c = Config::parse("[link]\nkey = \"s3cret\"\n").unwrap();
    let text = c.to_toml();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.starts_with("# link.key is set (not shown)\n"),
        "{text}"
    );
    assert!(text.contains("key = \"\""), "{text}");
    let c =
        Config::parse("[sfu]\nwebhook = \"http://c/\"\nwebhook_secret = \"hmac-key\"\n").unwrap();
    let text = c.to_toml();
    assert!(!text.contains("hmac-key"), "{text}");
    assert!(
        text.starts_with("# sfu.webhook_secret is set (not shown)\n"),
        "{text}"
    );
    let c = Config::parse(
        "[sfu]\nkind = \"janus\"\nurl = \"ws://10.0.0.1:8188/\"\nroom = 7\nsecret = \"room-pw\"\nadmin_key = \"fwd-pw\"\n",
    )
    .unwrap();
    let text = c.to_toml();
    assert!(
        !text.contains("room-pw") && !text.contains("fwd-pw"),
        "{text}"
    );
    assert!(
        text.starts_with("# sfu.secret is set (not shown)\n# sfu.admin_key is set (not shown)\n"),
        "{text}"
    );
}

#[test]
fn unknown_keys_and_sections_are_named() {
    assert_eq!(
        problem("[recorder]\nspol = \"/x\"\n"),
        "recorder.spol: unknown key (the keys of [recorder] are: storage, spool, spool_max, \
         stats_interval, storage_poll, low_space, full_space)"
    );
    let p = problem("[recordr]\nautostart = true\n");
    assert!(
        p.starts_with("recordr: unknown key (the sections are: link, recorder"),
        "{p}"
    );
    let p = problem("top = 1\n");
    assert!(p.starts_with("top: unknown key"), "{p}");
}

#[test]
fn bad_values_are_named_with_their_key() {
    assert_eq!(
        problem("[recorder]\nstats_interval = \"0s\"\n"),
        r#"recorder.stats_interval = "0s": must be more than zero"#
    );
    assert_eq!(
        problem("[recorder]\nstorage_poll = \"soon\"\n"),
        r#"recorder.storage_poll = "soon": not a duration (examples: 5s, 500ms, 2m)"#
    );
    assert_eq!(
        problem("[sfu]\nurl = \"http//x\"\n"),
        r#"sfu.url = "http//x": not a ws:// URL (example: ws://sfu.example:8188/)"#
    );
    assert_eq!(
        problem("[recorder]\nspool_max = \"1.5G\"\n"),
        r#"recorder.spool_max = "1.5G": not a size (examples: 1048576, 512K, 64M, 2G)"#
    );
    assert_eq!(
        problem("[recorder]\nfull_space = 0\n"),
        "recorder.full_space = 0: must be more than zero bytes"
    );
    let p = problem("[mixer]\nfps = \"thirty\"\n");
    assert!(
        p.starts_with(r#"mixer.fps = "thirty": invalid type"#),
        "{p}"
    );
    let p = problem("[mixer]\nencoder = \"gpu\"\n");
    assert!(p.starts_with(r#"mixer.encoder = "gpu": "#), "{p}");
    let p = problem("[mixer]\ningest = \"0.0.0.0\"\n");
    assert!(p.starts_with(r#"mixer.ingest = "0.0.0.0": "#), "{p}");
    let p = problem("[panel]\nbackend = \"leds\"\n");
    assert!(
        p.starts_with(r#"panel.backend = "leds": unknown variant"#),
        "{p}"
    );
    assert_eq!(
        problem("recording = true\n"),
        "recording = true: must be a section, [recording]"
    );
}

#[test]
fn every_problem_of_the_values_is_listed() {
    let all = problems(
        r#"
[link]
socket = "link.sock"
key = "k"
key_file = "/etc/recbox/link.key"
max_frame = "1K"
[recorder]
storage = "/srv/recbox"
spool = "/srv/recbox/spool"
low_space = "16M"
[mixer]
room = "a/b"
name = ""
size = "1279x720"
fps = 0
video_bitrate = 5
audio_bitrate = 1000000
playout_delay = "5s"
[sfu]
url = "wss://sfu.example/"
[panel]
led_pin = 40
button_pin = 40
fault_led_pin = 17
long_press = "1s"
[audio]
playback = ""
"#,
    );
    let expected = [
        r#"link.socket = "link.sock": must be an absolute path"#,
        "link.key: give link.key or link.key_file, not both",
        r#"link.max_frame = "1K": must be at least 64K to carry a video keyframe"#,
        r#"recorder.spool = "/srv/recbox/spool": the spool"#,
        r#"recorder.low_space = "16M": must not be below recorder.full_space (64M)"#,
        r#"mixer.room = "a/b": not a directory name: contains a path separator"#,
        r#"mixer.name = "": must not be empty"#,
        r#"mixer.size = "1279x720": width and height must be even and non-zero"#,
        "mixer.fps = 0: must be 1 to 120",
        "mixer.video_bitrate = 5: must be at least 10000 bits per second",
        "mixer.audio_bitrate = 1000000: must be 6000 to 510000 bits per second",
        r#"mixer.playout_delay = "5s": more than 2s"#,
        r#"sfu.url = "wss://sfu.example/": wss:// is not supported"#,
        "panel.led_pin = 40: not a GPIO of the 40-pin header (0 to 27)",
        "panel.button_pin = 40: not a GPIO of the 40-pin header (0 to 27)",
        "panel.button_pin = 40: the same pin as panel.led_pin",
        r#"panel.long_press = "1s": must be longer than a short press (1s)"#,
        r#"audio.playback = "": must name an ALSA device while audio.chime is on"#,
    ];
    assert_eq!(all.len(), expected.len(), "{all:#?}");
    for (got, want) in all.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    // All of them in the error's text, one a line.
    let err = Config::parse("[mixer]\nfps = 0\nvideo_bitrate = 1\n").unwrap_err();
    assert_eq!(err.to_string().lines().count(), 2);
}

#[test]
fn the_fault_led_is_a_pin_or_none() {
    let pin = |text: &str| Config::parse(&format!("[panel]\n{text}\n")).map(|c| c.panel.pins());
    assert_eq!(pin("fault_led_pin = 22").unwrap().fault_led, Some(22));
    assert_eq!(pin("fault_led_pin = \"\"").unwrap().fault_led, None);
    assert_eq!(pin("").unwrap().fault_led, None);
    for bad in [
        "fault_led_pin = \"red\"",
        "fault_led_pin = -1",
        "fault_led_pin = 300",
    ] {
        let err = pin(bad).unwrap_err().to_string();
        assert!(err.contains("panel.fault_led_pin"), "{bad}: {err}");
    }
    let err = pin("fault_led_pin = 27").unwrap_err().to_string();
    assert_eq!(
        err,
        "panel.button_pin = 27: the same pin as panel.fault_led_pin"
    );
}

#[test]
fn syntax_errors_say_where() {
    let err = Config::parse("[recorder\nstorage = 1\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax(_)), "{err:?}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn sections_map_onto_the_roles() {
    let c = Config::parse(
        r#"
[link]
max_frame = "8M"
[recorder]
storage = "/data/rec"
spool = ""
stats_interval = "500ms"
low_space = "2G"
full_space = "128M"
spool_max = "512M"
storage_poll = "1s"
[mixer]
room = "Salle 2"
size = "640x360"
fps = 25
encoder = "software"
video_bitrate = 800000
ingest = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let key = LinkKey::new(b"k".to_vec()).unwrap();
    let r = c.recorder_config(key.clone());
    assert_eq!(r.storage, PathBuf::from("/data/rec"));
    assert_eq!(r.spool, None);
    assert_eq!(r.max_frame, 8 << 20);
    assert_eq!(r.stats_interval, Duration::from_millis(500));
    assert_eq!(r.storage_poll, Duration::from_secs(1));
    assert_eq!(r.writer.spool_max_bytes, 512 << 20);
    assert_eq!(r.health.low_space_bytes, Some(2 << 30));
    assert_eq!(r.health.full_space_bytes, 128 << 20);
    assert_eq!(
        r.health.hysteresis_bytes,
        HealthConfig::default().hysteresis_bytes
    );

    let m = c.mixer_config(c.local_link(), key);
    assert_eq!(m.link.addr, LinkAddr::Unix("/run/recbox/link.sock".into()));
    assert_eq!(m.link.room, "Salle 2");
    assert_eq!(m.link.max_frame, 8 << 20);
    assert_eq!(m.ingest, "127.0.0.1:0".parse().unwrap());
    assert_eq!(
        (m.engine.width, m.engine.height, m.engine.fps),
        (640, 360, 25)
    );
    assert_eq!(m.engine.encoder, EncoderKind::Software);
    assert_eq!(m.engine.video_bitrate_bps, 800_000);
    assert_eq!(
        m.engine.keyframe_interval,
        WriterOptions::default().max_fragment
    );
    assert_eq!(m.stats_interval, Duration::from_secs(10));
}

#[test]
fn the_key_comes_from_the_file_or_inline() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    assert!(Config::default().link_key().unwrap().is_none());

    let key_file = dir.path().join("link.key");
    std::fs::write(&key_file, "  s3cret\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let conf = dir.path().join("recbox.toml");
    std::fs::write(
        &conf,
        format!("[link]\nkey_file = \"{}\"\n", key_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = Config::load(&conf).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let key = loaded.config.link_key().unwrap().unwrap();
    assert_eq!(
        format!("{key:?}"),
        format!("{:?}", LinkKey::new(b"s3cret".to_vec()).unwrap())
    );

    // A world-readable key file is worth a warning, and so is an inline key in a
    // world-readable config; neither is refused.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = Config::load(&conf).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("can be read by every user"));
    std::fs::write(&conf, "[link]\nkey = \"s3cret\"\n").unwrap();
    let loaded = Config::load(&conf).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("link.key is given inline"));
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Config::load(&conf).unwrap().warnings.is_empty());

    let missing = Config::parse("[link]\nkey_file = \"/nonexistent/link.key\"\n").unwrap();
    let err = missing.link_key().unwrap_err().to_string();
    assert!(
        err.starts_with(r#"link.key_file = "/nonexistent/link.key": cannot read it: "#),
        "{err}"
    );
    std::fs::write(&key_file, "\n").unwrap();
    let empty = Config::parse(&format!("[link]\nkey_file = \"{}\"\n", key_file.display())).unwrap();
    assert_eq!(
        empty.link_key().unwrap_err().to_string(),
        "link.key_file: the key is empty"
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = Config::load(Path::new("/nonexistent/recbox.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/recbox.toml: "),
        "{err}"
    );
}

#[test]
fn janus_section_names_its_bad_keys() {
    let c = Config::parse(
        "[sfu]\nkind = \"janus\"\nurl = \"ws://10.0.0.1:8188/\"\nroom = 7\nsecret = \"s\"\nadmin_key = \"k\"\ntextroom = 0\n",
    )
    .unwrap();
    let j = c.janus_config().unwrap();
    assert_eq!((j.room, j.textroom), (7, None));
    assert_eq!(
        (j.secret.as_deref(), j.admin_key.as_deref()),
        (Some("s"), Some("k"))
    );
    assert_eq!(j.display_name, "recbox");
    assert!(Config::default().janus_config().is_none());
    let err = |toml: &str| Config::parse(toml).unwrap_err().to_string();
    assert!(err("[sfu]\nkind = \"zoom\"\n").contains("sfu.kind"));
    assert!(err("[sfu]\nroom = 0\n").contains("sfu.room"));
    assert!(err("[sfu]\ndisplay_name = \"\"\n").contains("sfu.display_name"));
}

#[test]
fn the_webhook_is_plain_http_and_its_secret_needs_it() {
    let c =
        Config::parse("[sfu]\nwebhook = \"http://10.0.0.2:9000/hooks\"\nwebhook_secret = \"s3\"\n")
            .unwrap();
    let w = c.webhook_config().unwrap();
    assert_eq!(w.target.to_string(), "http://10.0.0.2:9000/hooks");
    assert_eq!(w.secret.as_deref(), Some("s3"));
    assert!(Config::default().webhook_config().is_none());
    assert_eq!(
        problem("[sfu]\nwebhook = \"https://c.example/\"\n"),
        "sfu.webhook = \"https://c.example/\": https:// is not supported (the box has no TLS \
         client): use http:// on a trusted network, with sfu.webhook_secret"
    );
    assert_eq!(
        problem("[sfu]\nwebhook = \"c.example:80\"\n"),
        "sfu.webhook = \"c.example:80\": not an http:// URL (example: http://control.example:8080/recbox)"
    );
    assert_eq!(
        problem("[sfu]\nwebhook_secret = \"s\"\n"),
        "sfu.webhook_secret: set, but there is no sfu.webhook"
    );
}
