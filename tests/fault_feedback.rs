//! Fault feedback end to end, as the meeting sees it: a real recorder on a small real
//! disk that is broken mid-meeting, the mixer relaying what the recorder says, the
//! simulated SFU showing it on every participant's terminal and to the control
//! platform. Each fault is announced once, then its end; stats come every interval
//! with exactly the bytes that are on disk. The simulated front panel shows the same
//! as the terminals are told.

mod common;

use std::time::Duration;

use recbox::demo::{self, DemoConfig, DemoError, DiskFault, FaultPlan};
use recbox::mixer::engine::EngineConfig;
use recbox::panel::PanelState;
use recbox::recorder::index::{HEADER_SIZE, RECORD_SIZE};
use recbox::recorder::layout::{parse_chain, CHAIN_FILE, MP4_FILE};
use recbox::recorder::recovery::recover;
use serde_json::Value;

fn small(duration: Duration, fault: Option<FaultPlan>) -> DemoConfig {
    DemoConfig {
        duration,
        storage: tempfile::tempdir().unwrap().keep(),
        participants: 2,
        // Small and slow pictures: what is tested here is not the video.
        engine: EngineConfig {
            width: 320,
            height: 180,
            fps: 10,
            ..EngineConfig::default()
        },
        fault,
        stats_interval: Duration::from_millis(500),
        ..DemoConfig::default()
    }
}

/// Runs a small demo of `duration` with `plan`: its outcome, what it printed and its
/// storage; `None` where no loop disk can be mounted (not root), said so.
async fn fault_demo(
    duration: Duration,
    plan: FaultPlan,
) -> Option<(demo::DemoOutcome, String, std::path::PathBuf)> {
    let config = small(duration, Some(plan));
    let storage = config.storage.clone();
    let mut out = Vec::new();
    let outcome = match demo::run(config, &mut out).await {
        Err(DemoError::NoScratchDisk) => {
            eprintln!("SKIPPED: cannot mount a loop disk here (needs root)");
            return None;
        }
        other => other.unwrap(),
    };
    let out = String::from_utf8_lossy(&out).into_owned();
    eprintln!("{out}");
    Some((outcome, out, storage))
}

/// The announcements as JSON values.
fn announced(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a demo with `fault` and checks that `kind` on `target` is announced once to
/// both terminals, and later its clearing (`cleared`) or the move back (`recovered`).
async fn fault_is_announced_then_cleared(fault: DiskFault, kind: &str, target: &str) {
    fault_is_announced_then_over(fault, kind, target, true).await
}

/// [`fault_is_announced_then_cleared`], for a fault the recording fails over for or not.
async fn fault_is_announced_then_over(
    fault: DiskFault,
    kind: &str,
    target: &str,
    fails_over: bool,
) {
    let plan = FaultPlan {
        fault,
        at: Duration::from_secs(2),
        lasts: Duration::from_secs(3),
    };
    let Some((outcome, _, storage)) = fault_demo(Duration::from_secs(8), plan).await else {
        return;
    };
    let all = announced(&outcome.announcements);
    let raised: Vec<&Value> = all
        .iter()
        .filter(|a| a["to"] == "terminals" && a["kind"] == kind)
        .collect();
    assert_eq!(raised.len(), 1, "{kind} announced once: {all:#?}");
    let raised = raised[0];
    assert_eq!(raised["target"], target);
    assert_eq!(raised["terminals"], serde_json::json!(["p1", "p2"]));
    let text = raised["text"].as_str().unwrap();
    assert!(
        text.starts_with("Recording problem") || text.starts_with("Recording warning"),
        "{text}"
    );
    let at = raised["at"].as_u64().unwrap();
    let ended = all.iter().any(|a| {
        a["at"].as_u64().unwrap() >= at
            && a["to"] == "terminals"
            && ((a["kind"] == "cleared" && a["fault"] == kind) || a["kind"] == "recovered")
    });
    assert!(ended, "{kind} is announced as over: {all:#?}");
    // Nothing was lost: the recording continued on the spool and came back, or
    // (only a warning) stayed where it was.
    if fails_over {
        assert!(outcome.segments.len() >= 2, "{:?}", outcome.segments);
        check_kept_segments(&outcome);
    } else {
        assert_eq!(outcome.segments.len(), 1, "{:?}", outcome.segments);
    }
    assert!(outcome.summary.media_ms >= 7_000, "{:?}", outcome.summary);
    if fails_over {
        panel_followed_the_failover(&outcome.panel, &all);
    } else {
        use PanelState::*;
        assert_eq!(
            outcome.panel,
            [Ready, Starting, Recording, Warning, Recording, Stopping, Ready],
            "a warning while the fault lasted"
        );
    }
    let _ = std::fs::remove_dir_all(storage);
}

/// Kept off the demo's disk, the segments name each other where they are now, are
/// all closed or recovered, and hold every fragment the recording reported.
fn check_kept_segments(outcome: &demo::DemoOutcome) {
    for dir in &outcome.segments {
        if let Ok(text) = std::fs::read_to_string(dir.join(CHAIN_FILE)) {
            let listed: Vec<_> = parse_chain(&text)
                .unwrap()
                .into_iter()
                .map(|e| e.dir)
                .collect();
            assert_eq!(listed, outcome.segments, "chain of {}", dir.display());
        }
        assert!(
            recover(dir).unwrap().was_clean(),
            "{} was repaired",
            dir.display()
        );
    }
    let fragments: usize = outcome
        .segments
        .iter()
        .map(|d| common::segments::segment_contents(d).2.len())
        .sum();
    assert_eq!(
        fragments, outcome.summary.fragments as usize,
        "{:?}",
        outcome.segments
    );
}

/// A fault that lasts past the end of the demo is repaired then, and what the
/// broken disk held is kept (recovered where it could not be closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_the_demo_outlasts_is_repaired_and_every_segment_kept() {
    let plan = FaultPlan {
        fault: DiskFault::ReadOnly,
        at: Duration::from_secs(2),
        lasts: Duration::from_secs(60),
    };
    let Some((outcome, out, storage)) = fault_demo(Duration::from_secs(5), plan).await else {
        return;
    };
    assert!(out.contains("fault repaired after the recording"), "{out}");
    // The broken disk's segment is kept, unless it held no fragment yet when the
    // fault hit (then there is nothing to keep, and no player would open it).
    assert!(
        outcome.segments.len() >= 2 || out.contains("held no fragment when the fault hit: removed"),
        "{:?}",
        outcome.segments
    );
    assert!(
        outcome.segments.iter().all(|d| d.starts_with(&storage)),
        "kept under the demo's storage: {:?}",
        outcome.segments
    );
    check_kept_segments(&outcome);
    let _ = std::fs::remove_dir_all(storage);
}

/// The front panel showed what the terminals were told: recording; spooling while
/// the recording was on the spool (a warning may come first, for the moment between
/// the fault and the failover, or a fault if that moment outlasted the panel's grace);
/// recording again once it was back (a warning may come first, until the last of the
/// fault clears); ready after the stop.
fn panel_followed_the_failover(panel: &[PanelState], all: &[Value]) {
    use PanelState::*;
    let told = |kind: &str| {
        all.iter()
            .filter(|a| a["to"] == "terminals" && a["kind"] == kind)
            .count()
    };
    assert_eq!((told("failover"), told("recovered")), (1, 1), "{all:#?}");
    let spooling: Vec<usize> = (0..panel.len()).filter(|&k| panel[k] == Spooling).collect();
    assert_eq!(spooling.len(), 1, "one spell of spooling: {panel:?}");
    let (s, end) = (spooling[0], panel.len().saturating_sub(3));
    assert!(s >= 3 && end > s, "{panel:?}");
    assert_eq!(panel[..3], [Ready, Starting, Recording], "{panel:?}");
    assert!(
        panel[3..s].iter().all(|p| matches!(p, Warning | Fault)),
        "{panel:?}"
    );
    assert!(
        panel[s + 1..end]
            .iter()
            .all(|p| matches!(p, Warning | Recording)),
        "{panel:?}"
    );
    assert_eq!(panel[end..], [Recording, Stopping, Ready], "{panel:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_reaches_every_terminal_once_then_clears() {
    fault_is_announced_then_cleared(DiskFault::DiskFull, "disk_full", "storage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reaches_every_terminal_once_then_clears() {
    fault_is_announced_then_cleared(DiskFault::ReadOnly, "read_only", "storage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_offline_reaches_every_terminal_once_then_clears() {
    fault_is_announced_then_cleared(DiskFault::DiskOffline, "disk_offline", "storage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_write_failure_reaches_every_terminal_once_then_clears() {
    fault_is_announced_then_cleared(DiskFault::IndexIo, "index_write_failed", "index").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_error_reaches_every_terminal_once_then_clears() {
    // The file system shut down: the recording's next write gets EIO.
    fault_is_announced_then_cleared(DiskFault::IoError, "io_error", "storage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_space_is_a_warning_that_clears_without_failover() {
    fault_is_announced_then_over(DiskFault::LowSpace, "low_space", "storage", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reach_the_control_platform_every_interval_with_the_bytes_on_disk() {
    let config = small(Duration::from_secs(5), None);
    let storage = config.storage.clone();
    let interval_ms = config.stats_interval.as_millis() as u64;
    let mut out = Vec::new();
    let outcome = demo::run(config, &mut out).await.unwrap();
    // No fault: the panel only followed the recording.
    use PanelState::*;
    assert_eq!(
        outcome.panel,
        [Ready, Starting, Recording, Stopping, Ready],
        "{}",
        String::from_utf8_lossy(&out)
    );
    let stats: Vec<Value> = announced(&outcome.announcements)
        .into_iter()
        .filter(|a| a["kind"] == "stats")
        .collect();
    // 5 s at 500 ms; a loaded machine may make the first come late, never none.
    assert!(stats.len() >= 4, "{} stats: {stats:#?}", stats.len());
    for s in &stats {
        assert_eq!(s["to"], "control");
        assert!(
            s.get("terminals").is_none(),
            "stats are for the control platform"
        );
    }
    let ats: Vec<u64> = stats.iter().map(|s| s["at"].as_u64().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[1] >= w[0] + interval_ms / 2),
        "{ats:?}"
    );

    // Bytes are durable bytes: always the file up to a fragment's end, and the index
    // up to that fragment's record, exactly.
    assert_eq!(outcome.segments.len(), 1);
    let dir = &outcome.segments[0];
    let (_, _, records) = common::segments::segment_contents(dir);
    let init_len = records.first().map_or(0, |r| r.offset);
    let boundaries: Vec<(u64, u64)> = std::iter::once((init_len, HEADER_SIZE as u64))
        .chain(records.iter().enumerate().map(|(k, r)| {
            (
                r.offset + u64::from(r.length),
                (HEADER_SIZE + (k + 1) * RECORD_SIZE) as u64,
            )
        }))
        .collect();
    for s in &stats {
        let bytes = (
            s["stats"]["file_bytes"].as_u64().unwrap(),
            s["stats"]["index_bytes"].as_u64().unwrap(),
        );
        assert!(
            boundaries.contains(&bytes),
            "{bytes:?} not in {boundaries:?}"
        );
    }
    let last = stats.last().unwrap();
    assert!(last["stats"]["file_bytes"].as_u64().unwrap() > init_len);
    let on_disk = std::fs::metadata(dir.join(MP4_FILE)).unwrap().len();
    assert_eq!(boundaries.last().unwrap().0, on_disk);
    let _ = std::fs::remove_dir_all(storage);
}
