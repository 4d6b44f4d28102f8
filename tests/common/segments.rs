//! Checks of a recording's segments that tests on the writer and on the whole
//! recorder share.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use recbox::media::mp4;
use recbox::recorder::index::{encode_index, IndexRecord};
use recbox::recorder::layout::{parse_chain, CHAIN_FILE, INDEX_FILE, MP4_FILE, PLAYLIST_FILE};
use recbox::recorder::recovery::{index_from_file, recover};

/// What one segment's mp4 holds: (video samples, audio samples, records).
pub fn segment_contents(dir: &Path) -> (u64, u64, Vec<IndexRecord>) {
    let path = dir.join(MP4_FILE);
    let mut file = File::open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    let scan = mp4::scan(&mut file, len).unwrap();
    assert_eq!(scan.torn, None, "{}", dir.display());
    let (mut video, mut audio) = (0, 0);
    for t in scan.fragments.iter().flat_map(|f| &f.moof.trafs) {
        if scan.init.is_video(t.track_id) {
            video += u64::from(t.sample_count);
        } else {
            audio += u64::from(t.sample_count);
        }
    }
    (video, audio, index_from_file(&path).unwrap())
}

/// Checks the segments of a finished recording: each index equals the one rebuilt
/// from its file, the media times and sequence numbers run on without gap or
/// overlap from one segment to the next, and every chain file lists them all.
/// Returns the samples per track over all segments.
pub fn check_segments(dirs: &[PathBuf]) -> (u64, u64) {
    check_segments_but_a_gap_after(dirs, None)
}

/// [`check_segments`], but media may be missing between the end of segment `gap`
/// and the start of the next (what a disk error took after `fdatasync` had
/// succeeded).
pub fn check_segments_but_a_gap_after(dirs: &[PathBuf], gap: Option<usize>) -> (u64, u64) {
    check_segments_from(dirs, 0, gap)
}

/// [`check_segments_but_a_gap_after`] of the segments from number `from` on, the
/// earlier ones being gone (still listed in the chain).
pub fn check_segments_from(dirs: &[PathBuf], from: usize, gap: Option<usize>) -> (u64, u64) {
    let (mut video, mut audio) = (0, 0);
    let mut previous: Option<IndexRecord> = None;
    for (n, dir) in dirs.iter().enumerate().skip(from) {
        let (v, a, records) = segment_contents(dir);
        video += v;
        audio += a;
        assert_eq!(
            fs::read(dir.join(INDEX_FILE)).unwrap(),
            encode_index(&records),
            "{}",
            dir.display()
        );
        assert!(records.iter().all(|r| usize::from(r.segment) == n));
        if gap.is_some_and(|g| g + 1 == n) {
            previous = None;
        }
        for r in &records {
            if let Some(p) = previous {
                assert_eq!(r.sequence, p.sequence + 1);
                assert_eq!(r.start_us, p.end_us(), "no gap, no overlap");
            }
            previous = Some(*r);
        }
        assert!(
            records.first().is_none_or(IndexRecord::keyframe),
            "{} starts with a keyframe",
            dir.display()
        );
        let written = fs::read_to_string(dir.join(PLAYLIST_FILE)).unwrap_or_default();
        let recovered = recover(dir).unwrap();
        assert!(
            recovered.was_clean(),
            "{recovered}\nthe playlist as written:\n{written}\nrecords: {records:#?}"
        );
        if dirs.len() > 1 {
            let chain = parse_chain(&fs::read_to_string(dir.join(CHAIN_FILE)).unwrap()).unwrap();
            let listed: Vec<_> = chain.iter().map(|e| e.dir.clone()).collect();
            assert_eq!(listed, dirs);
            assert_eq!(chain[n].segment as usize, n);
            if let Some(first) = records.first() {
                assert_eq!(chain[n].first_us, first.start_us);
            }
        }
    }
    if ffprobe_installed() {
        // Packets, not decoded frames: the synthetic payload is not real H.264.
        let (mut v, mut a) = (0, 0);
        for dir in &dirs[from..] {
            // An empty segment has streams without packets.
            let n = super::packet_counts(&dir.join(MP4_FILE));
            v += n[0];
            a += n[1];
        }
        assert_eq!((v, a), (video, audio), "ffprobe counts the same frames");
    }
    (video, audio)
}

pub fn ffprobe_installed() -> bool {
    std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok()
}
