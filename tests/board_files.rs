//! The files under `board/` as the image installs them: the systemd units carry the
//! settings the box relies on and agree with the built-in configuration (paths of
//! the socket, the storage and the spool), the udev rule is well-formed by udev(7)
//! and names what the mount unit mounts. Where `systemd-analyze` is installed, it
//! verifies the units too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use recbox::config::{Config, DEFAULT_PATH};
use recbox::mixer::service::STOP_PATIENCE;

fn board(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("board")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(board(file)).unwrap_or_else(|e| panic!("board/{file}: {e}"))
}

/// A unit file: every `Key=Value` of each section, in order (keys may repeat).
struct Unit(HashMap<String, Vec<(String, String)>>);

impl Unit {
    fn parse(text: &str) -> Self {
        let mut sections: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut current = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(
                !line.ends_with('\\'),
                "line {}: no continuation lines",
                n + 1
            );
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(name.to_owned());
                sections.entry(name.to_owned()).or_default();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("line {}: not Key=Value: {line}", n + 1));
            let section = current
                .clone()
                .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
            sections
                .get_mut(&section)
                .unwrap()
                .push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Self(sections)
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .get(section)
            .unwrap_or_else(|| panic!("no [{section}]"))
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a key set once.
    fn get(&self, section: &str, key: &str) -> &str {
        match self.all(section, key).as_slice() {
            [one] => one,
            other => panic!("[{section}] {key}= set {} times", other.len()),
        }
    }

    /// Space-separated words over every assignment of the key.
    fn words(&self, section: &str, key: &str) -> Vec<&str> {
        self.all(section, key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }
}

/// systemd's seconds: `30s`, `10min`, `2min`.
fn seconds(value: &str) -> u64 {
    if let Some(min) = value.strip_suffix("min") {
        return min.parse::<u64>().unwrap() * 60;
    }
    value.strip_suffix('s').unwrap_or(value).parse().unwrap()
}

/// `systemd-escape --path`: `/srv/recbox` is `srv-recbox`, a `-` is `\x2d`.
fn escape_path(path: &str) -> String {
    let mut out = String::new();
    for (i, part) in path.trim_matches('/').split('/').enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, c) in part.chars().enumerate() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => out.push(c),
                '.' if j > 0 => out.push(c),
                c => out.push_str(&format!("\\x{:02x}", c as u32)),
            }
        }
    }
    out
}

#[test]
fn the_service_is_a_watched_notify_service() {
    let unit = Unit::parse(&read("recbox.service"));
    assert_eq!(unit.get("Service", "Type"), "notify");
    assert_eq!(unit.get("Service", "NotifyAccess"), "main");
    let watchdog = seconds(unit.get("Service", "WatchdogSec"));
    assert!(watchdog >= 10, "pings at half of it from a busy box");
    assert_eq!(unit.get("Service", "Restart"), "on-failure");
    assert!(seconds(unit.get("Service", "RestartSec")) >= 1);
    assert!(seconds(unit.get("Unit", "StartLimitIntervalSec")) >= 60);
    let burst: u32 = unit.get("Unit", "StartLimitBurst").parse().unwrap();
    assert!((2..=10).contains(&burst));
    // The stop waits for the recorder to close the recording.
    assert!(seconds(unit.get("Service", "TimeoutStopSec")) > STOP_PATIENCE.as_secs());
    // The default configuration file, read by `recbox run` without --config.
    let exec = unit.get("Service", "ExecStart");
    assert_eq!(exec, "/usr/bin/recbox run");
    assert_eq!(DEFAULT_PATH, "/etc/recbox/recbox.toml");
    assert_eq!(unit.get("Install", "WantedBy"), "multi-user.target");
}

#[test]
fn the_service_is_hardened_and_can_reach_what_it_needs() {
    let unit = Unit::parse(&read("recbox.service"));
    let s = "Service";
    for (key, value) in [
        ("User", "recbox"),
        ("Group", "recbox"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("DevicePolicy", "closed"),
    ] {
        assert_eq!(unit.get(s, key), value, "{key}");
    }
    let groups = unit.words(s, "SupplementaryGroups");
    for g in ["gpio", "audio", "video"] {
        assert!(groups.contains(&g), "SupplementaryGroups has {g}");
    }
    let devices = unit.all(s, "DeviceAllow");
    for d in ["char-video4linux rw", "char-alsa rw", "char-gpiochip rw"] {
        assert!(devices.contains(&d), "DeviceAllow={d}");
    }
    let families = unit.words(s, "RestrictAddressFamilies");
    for f in ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"] {
        assert!(families.contains(&f), "{f}: sockets, SFU, uevents");
    }

    // The places of the default configuration are writable.
    let c = Config::default();
    let runtime = Path::new("/run").join(unit.get(s, "RuntimeDirectory"));
    assert!(
        c.link.socket.starts_with(&runtime),
        "link.socket {} in RuntimeDirectory {}",
        c.link.socket.display(),
        runtime.display()
    );
    let state = Path::new("/var/lib").join(unit.get(s, "StateDirectory"));
    let spool = c.recorder.spool.as_ref().expect("a spool by default");
    assert!(
        spool.starts_with(&state),
        "recorder.spool in StateDirectory"
    );
    let writable: Vec<&str> = unit
        .words(s, "ReadWritePaths")
        .into_iter()
        .map(|p| p.trim_start_matches('-'))
        .collect();
    assert!(
        writable.contains(&c.recorder.storage.to_str().unwrap()),
        "recorder.storage in ReadWritePaths {writable:?}"
    );
}

#[test]
fn the_disk_is_mounted_where_the_recorder_writes() {
    let storage = Config::default().recorder.storage;
    let storage = storage.to_str().unwrap();
    let mount_file = format!("{}.mount", escape_path(storage));
    assert_eq!(mount_file, "srv-recbox.mount");
    let mount = Unit::parse(&read(&mount_file));
    assert_eq!(mount.get("Mount", "Where"), storage);
    let what = mount.get("Mount", "What");
    assert_eq!(what, "/dev/recbox-storage");
    let device = format!("{}.device", escape_path(what));
    assert_eq!(device, r"dev-recbox\x2dstorage.device");
    assert_eq!(mount.get("Unit", "BindsTo"), device);
    assert!(mount.all("Unit", "After").contains(&device.as_str()));
    let options: Vec<&str> = mount.get("Mount", "Options").split(',').collect();
    for o in ["nodev", "nosuid", "noexec"] {
        assert!(options.contains(&o), "{o}");
    }
    assert_eq!(mount.get("Mount", "LazyUnmount"), "yes");

    // The disk is handed to the service's user once mounted.
    let wants = mount.all("Unit", "Wants");
    assert!(wants.contains(&"recbox-storage.service"));
    let owner = Unit::parse(&read("recbox-storage.service"));
    assert_eq!(owner.get("Unit", "BindsTo"), mount_file);
    let service = Unit::parse(&read("recbox.service"));
    let user = format!(
        "{}:{}",
        service.get("Service", "User"),
        service.get("Service", "Group")
    );
    assert!(
        owner
            .all("Service", "ExecStart")
            .contains(&format!("/bin/chown {user} {storage}").as_str()),
        "chown to {user}"
    );
}

/// One `KEY OP "VALUE"` of a udev rule.
#[derive(Debug, PartialEq)]
struct Item {
    key: String,
    op: String,
    value: String,
}

/// Splits a rule line by udev(7): comma-separated `KEY OP "VALUE"`, the value in
/// double quotes.
fn items(line: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(['=', '!', '+', '-', ':'])
            .unwrap_or_else(|| panic!("no operator in {rest:?}"));
        let key = rest[..key_end].trim().to_owned();
        let after = &rest[key_end..];
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| after.starts_with(op))
            .unwrap_or_else(|| panic!("bad operator in {after:?}"));
        let value_part = after[op.len()..].trim_start();
        assert!(value_part.starts_with('"'), "unquoted value in {line:?}");
        let close = value_part[1..].find('"').expect("closing quote") + 1;
        out.push(Item {
            key,
            op: op.to_owned(),
            value: value_part[1..close].to_owned(),
        });
        rest = value_part[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else {
            assert!(rest.is_empty(), "items are separated by commas: {line:?}");
        }
    }
    out
}

#[test]
fn the_udev_rule_names_the_disk_and_pulls_in_the_mount() {
    let text = read("99-recbox-storage.rules");
    let mut rules = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(items(line));
    }
    let mut gotos = Vec::new();
    let mut labels = Vec::new();
    for item in rules.iter().flatten() {
        let base = item.key.split('{').next().unwrap();
        let matching = matches!(item.op.as_str(), "==" | "!=");
        // udev(7): what each key may do.
        match base {
            "ACTION" | "SUBSYSTEM" | "KERNEL" | "DRIVERS" | "ATTRS" | "KERNELS" => {
                assert!(matching, "{} only matches", item.key)
            }
            "ENV" | "SYMLINK" | "TAG" | "ATTR" => {
                assert!(item.key == base || item.key.ends_with('}'), "{}", item.key)
            }
            "GOTO" => {
                assert_eq!(item.op, "=");
                gotos.push(item.value.clone());
            }
            "LABEL" => {
                assert_eq!(item.op, "=");
                labels.push(item.value.clone());
            }
            other => panic!("key {other} not used by this rule file"),
        }
    }
    for g in &gotos {
        assert!(labels.contains(g), "GOTO {g} has its LABEL");
    }
    let find = |key: &str, op: &str| {
        rules
            .iter()
            .flatten()
            .find(|i| i.key == key && i.op == op)
            .map(|i| i.value.clone())
            .unwrap_or_else(|| panic!("no {key}{op}"))
    };
    assert_eq!(find("ENV{ID_FS_LABEL}", "!="), "RECBOX");
    let mount = Unit::parse(&read("srv-recbox.mount"));
    assert_eq!(
        format!("/dev/{}", find("SYMLINK", "+=")),
        mount.get("Mount", "What")
    );
    assert_eq!(find("ENV{SYSTEMD_WANTS}", "+="), "srv-recbox.mount");
    assert_eq!(find("TAG", "+="), "systemd");
    // Nothing happens on removal: the mount goes with the device.
    assert_eq!(find("ACTION", "=="), "remove");
}

const UNITS: [&str; 3] = [
    "recbox.service",
    "srv-recbox.mount",
    "recbox-storage.service",
];

#[test]
fn systemd_analyze_verifies_the_units() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        // Verified against this build of the binary: verify checks that it exists.
        let text = read(unit).replace("/usr/bin/recbox", env!("CARGO_BIN_EXE_recbox"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(UNITS.map(|u| dir.path().join(u)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    for bad in ["Unknown", "Invalid", "Failed", "ignoring", "not a valid"] {
        assert!(!stderr.contains(bad), "systemd-analyze verify: {stderr}");
    }
}
