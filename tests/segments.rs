//! A recording that continues on the spool when the primary storage fails and moves
//! back when it returns: real files, real ENOSPC from a small tmpfs (when this
//! process may mount one), every frame in exactly one segment.

mod common;
mod fixture;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::segments::{check_segments, segment_contents};
use fixture::{frames, start};
use recbox::link::frame::{Media, Track};
use recbox::recorder::index::{encode_index, IndexFile};
use recbox::recorder::inspect::inspect;
use recbox::recorder::layout::{parse_chain, SegmentState, CHAIN_FILE, INDEX_FILE, MP4_FILE};
use recbox::recorder::recording::{RecordingWriter, WriteError, WriterOptions};
use recbox::recorder::recovery::{find_unfinished, recover};
use recbox::testbed::scratch::Mounted;

fn create(primary: &Path, opts: WriterOptions) -> RecordingWriter {
    let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    RecordingWriter::create(primary, &start("rec-1"), at, opts).unwrap()
}

/// Pushed media per track.
fn counts(media: &[Media]) -> (u64, u64) {
    let video = media.iter().filter(|m| m.track == Track::Video).count() as u64;
    (video, media.len() as u64 - video)
}

#[test]
fn switching_keeps_every_frame_in_exactly_one_segment() {
    let primary = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let media = frames(12);
    let mut w = create(primary.path(), WriterOptions::default());
    let seg0 = w.dir().to_owned();
    for (i, m) in media.iter().enumerate() {
        // Mid-GOP, with a fragment open in the fragmenter.
        if i == 300 {
            let s = w.fail_over(spool.path()).unwrap();
            assert!(s.error.is_none(), "{:?}", s.error);
            assert_eq!((s.from.as_path(), s.segment), (seg0.as_path(), 1));
            assert_eq!(w.location(), spool.path());
            assert_eq!(
                s.to,
                spool.path().join("room-a/20240229T123456Z-rec-1.seg1")
            );
        }
        if i == 700 {
            let s = w.move_back(primary.path()).unwrap();
            assert!(s.error.is_none(), "{:?}", s.error);
            assert_eq!((w.segment(), w.location()), (2, primary.path()));
        }
        w.push(m).unwrap();
    }
    let segments = w.segments();
    let dirs: Vec<PathBuf> = segments.iter().map(|s| s.dir.clone()).collect();
    assert_eq!(
        segments
            .iter()
            .map(|s| (s.spool, s.state))
            .collect::<Vec<_>>(),
        [
            (false, SegmentState::Closed),
            (true, SegmentState::Closed),
            (false, SegmentState::Open)
        ]
    );
    let summary = w.finish().unwrap();
    assert_eq!(summary.media_ms, 12_000);
    let sizes: u64 = dirs
        .iter()
        .map(|d| fs::metadata(d.join(MP4_FILE)).unwrap().len())
        .sum();
    assert_eq!(summary.file_bytes, sizes);
    assert_eq!(check_segments(&dirs), counts(&media));
    assert_eq!(summary.fragments, 12);
    let chain = parse_chain(&fs::read_to_string(dirs[0].join(CHAIN_FILE)).unwrap()).unwrap();
    assert!(chain.iter().all(|e| e.state == SegmentState::Closed));

    let shown = inspect(&dirs[1]).unwrap();
    assert_eq!(shown.chain.len(), 3);
    let text = shown.to_string();
    assert!(text.contains("chain    3 segments"), "{text}");
    assert!(text.contains("#1 closed from 3.000 s"), "{text}");
    assert!(text.contains("total    12 fragments"), "{text}");

    // A fragment that a failing disk kept although its write was reported failed
    // (so it went on in the next segment) is cut from the earlier segment.
    let clean = fs::read(dirs[0].join(MP4_FILE)).unwrap();
    let next = fs::read(dirs[1].join(MP4_FILE)).unwrap();
    let (_, _, records) = segment_contents(&dirs[1]);
    let first = records[0];
    let copy = &next[first.offset as usize..(first.offset + u64::from(first.length)) as usize];
    OpenOptions::new()
        .append(true)
        .open(dirs[0].join(MP4_FILE))
        .unwrap()
        .write_all(copy)
        .unwrap();
    let report = recover(&dirs[0]).unwrap();
    assert_eq!(report.handed_over, 1, "{report}");
    assert_eq!(fs::read(dirs[0].join(MP4_FILE)).unwrap(), clean);
    assert_eq!(check_segments(&dirs), counts(&media));

    // A segment whose storage is gone is shown as such.
    drop(spool);
    let text = inspect(&dirs[2]).unwrap().to_string();
    assert!(text.contains("UNREACHABLE"), "{text}");
}

#[test]
fn a_full_primary_fails_over_and_the_recording_moves_back() {
    let Some(primary) = common::tmpfs("256k") else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let media = frames(30);
    let mut w = create(primary.path(), WriterOptions::default());
    let mut failed_at = None;
    for (i, m) in media.iter().enumerate() {
        if let Err(e) = w.push(m) {
            assert_eq!(
                e.io_error().and_then(|e| e.raw_os_error()),
                Some(libc::ENOSPC)
            );
            assert!(failed_at.is_none(), "the spool takes everything: {e}");
            failed_at = Some(i);
            let queued = w.queued_fragments();
            let s = w.fail_over(spool.path()).unwrap();
            assert!(s.error.is_none(), "{:?}", s.error);
            assert!(s.moved_fragments <= queued && s.moved_fragments >= 1);
            assert_eq!(w.queued_fragments(), 0);
        }
        if failed_at.is_some_and(|f| i == f + 200) {
            assert!(primary.remount("size=8m"));
            w.move_back(primary.path()).unwrap();
        }
    }
    assert!(failed_at.is_some(), "256k must fill up");
    let dirs: Vec<PathBuf> = w.segments().iter().map(|s| s.dir.clone()).collect();
    assert_eq!(dirs.len(), 3);
    w.finish().unwrap();
    // The first segment may have been left unclosed on the full disk.
    recover(&dirs[0]).unwrap();
    assert_eq!(check_segments(&dirs), counts(&media));
}

#[test]
fn the_memory_bound_drops_the_oldest_fragments_and_counts_them() {
    let Some(primary) = common::tmpfs("256k") else {
        return;
    };
    let opts = WriterOptions {
        max_queued_bytes: 100_000,
        ..WriterOptions::default()
    };
    let media = frames(30);
    let mut w = create(primary.path(), opts);
    let dir = w.dir().to_owned();
    let mut reported = recbox::recorder::recording::DropCounts::default();
    let mut errors = 0;
    for (i, m) in media.iter().enumerate() {
        if i == 1200 {
            assert!(primary.remount("size=8m"));
        }
        match w.push(m) {
            Ok(outcome) => {
                if let Some(d) = outcome.dropped {
                    add(&mut reported, d);
                }
            }
            Err(e) => {
                errors += 1;
                if let Some(d) = e.dropped() {
                    assert!(matches!(e, WriteError::Dropped { .. }));
                    add(&mut reported, d);
                }
                assert_eq!(
                    e.io_error().and_then(|e| e.raw_os_error()),
                    Some(libc::ENOSPC)
                );
                assert!(w.queued_fragments() > 0);
            }
        }
    }
    assert!(errors > 0);
    assert_eq!(w.dropped(), reported);
    assert!(reported.fragments > 0 && reported.video_frames % 30 == 0);
    w.finish().unwrap();
    recover(&dir).unwrap();
    let (video, audio, records) = segment_contents(&dir);
    let (pushed_video, pushed_audio) = counts(&media);
    assert_eq!(video + reported.video_frames, pushed_video);
    assert_eq!(audio + reported.audio_frames, pushed_audio);
    assert_eq!(
        fs::read(dir.join(INDEX_FILE)).unwrap(),
        encode_index(&records)
    );
    assert_eq!(records.len() as u64 + reported.fragments, 30);
}

fn add(
    total: &mut recbox::recorder::recording::DropCounts,
    d: recbox::recorder::recording::DropCounts,
) {
    total.fragments += d.fragments;
    total.video_frames += d.video_frames;
    total.audio_frames += d.audio_frames;
    total.bytes += d.bytes;
}

#[test]
fn the_spool_bound_is_a_full_disk() {
    let primary = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        spool_max_bytes: 100_000,
        ..WriterOptions::default()
    };
    let media = frames(10);
    let mut w = create(primary.path(), opts);
    // A fragment on the primary first: a segment without any is not listed.
    let mut rest = media.iter();
    for m in rest.by_ref() {
        if w.push(m).unwrap().durable.is_some() {
            break;
        }
    }
    w.fail_over(spool.path()).unwrap();
    let mut full = false;
    for m in rest {
        match w.push(m) {
            Ok(_) => {}
            Err(e) if !full => {
                assert_eq!(
                    e.io_error().and_then(|e| e.raw_os_error()),
                    Some(libc::ENOSPC)
                );
                assert!(
                    e.to_string().contains(&spool.path().display().to_string()),
                    "{e}"
                );
                let s = w.move_back(primary.path()).unwrap();
                assert!(s.error.is_none() && s.moved_fragments > 0);
                full = true;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full);
    let segments = w.segments();
    assert!(segments[1].file_bytes + segments[1].index_bytes <= 100_000);
    let dirs: Vec<PathBuf> = segments.iter().map(|s| s.dir.clone()).collect();
    w.finish().unwrap();
    assert_eq!(check_segments(&dirs), counts(&media));
}

#[test]
fn a_torn_spool_segment_is_recovered() {
    let primary = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut w = create(primary.path(), WriterOptions::default());
    let media = frames(6);
    let mut live = Vec::new();
    for (i, m) in media.iter().enumerate() {
        if i == 200 {
            w.fail_over(spool.path()).unwrap();
        }
        live.extend(w.push(m).unwrap().durable);
    }
    let dir = w.dir().to_owned();
    drop(w); // a crash
    let mut mp4 = OpenOptions::new()
        .append(true)
        .open(dir.join(MP4_FILE))
        .unwrap();
    mp4.write_all(b"\0\0\x01\0moof torn").unwrap();
    let index = dir.join(INDEX_FILE);
    let len = fs::metadata(&index).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    assert_eq!(find_unfinished(spool.path()), std::slice::from_ref(&dir));
    let report = recover(&dir).unwrap();
    assert_eq!(report.truncated_bytes, 13);
    let records = IndexFile::open(&index).unwrap().read_all().unwrap().records;
    let live: Vec<_> = live.into_iter().filter(|r| r.segment == 1).collect();
    assert_eq!(records, live, "rebuilt index equals the live one");
    assert!(records.iter().all(|r| r.segment == 1));
    assert!(recover(&dir).unwrap().was_clean());
    assert!(inspect(&dir).unwrap().index.is_consistent());
}
