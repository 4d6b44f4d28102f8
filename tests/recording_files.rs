//! Real recording directories in a temp dir: the live writer's index against the
//! file, recovery from torn files and damaged or missing indexes, and (if ffprobe
//! is installed) container-level checks. Frames are synthetic Annex B bytes.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
mod fixture;

use common::{access_units, ffmpeg};
use fixture::{frames, start};
use recbox::link::frame::{Media, Track};
use recbox::media::h264::{nal_type, NAL_IDR, NAL_PPS, NAL_SPS};
use recbox::recorder::index::{encode_index, IndexFile, IndexRecord, HEADER_SIZE, RECORD_SIZE};
use recbox::recorder::layout::{INDEX_FILE, MP4_FILE, PLAYLIST_FILE};
use recbox::recorder::recording::{RecordingWriter, WriterOptions};
use recbox::recorder::recovery::{find_unfinished, index_from_file, recover};

struct Live {
    dir: PathBuf,
    records: Vec<IndexRecord>,
    index_bytes: Vec<u8>,
}

/// Writes a recording; `finish` decides whether it is closed cleanly.
fn write(root: &Path, id: &str, seconds: i64, finish: bool) -> Live {
    let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    let mut w = RecordingWriter::create(root, &start(id), at, WriterOptions::default()).unwrap();
    let mut records = Vec::new();
    for m in frames(seconds) {
        records.extend(w.push(&m).unwrap().durable);
    }
    let dir = w.dir().to_owned();
    assert_eq!(
        w.index_bytes(),
        (HEADER_SIZE + records.len() * RECORD_SIZE) as u64
    );
    if finish {
        let summary = w.finish().unwrap();
        records = IndexFile::open(&dir.join(INDEX_FILE))
            .unwrap()
            .read_all()
            .unwrap()
            .records;
        assert_eq!(summary.fragments as usize, records.len());
        assert_eq!(summary.media_ms, seconds as u64 * 1000);
        assert_eq!(
            summary.file_bytes,
            fs::metadata(dir.join(MP4_FILE)).unwrap().len()
        );
    } else {
        assert_eq!(
            w.file_bytes(),
            fs::metadata(dir.join(MP4_FILE)).unwrap().len()
        );
        drop(w); // a crash: no finish
    }
    let index_bytes = fs::read(dir.join(INDEX_FILE)).unwrap();
    Live {
        dir,
        records,
        index_bytes,
    }
}

#[test]
fn live_index_matches_the_file() {
    let root = tempfile::tempdir().unwrap();
    let live = write(root.path(), "rec-1", 5, true);
    assert_eq!(
        live.dir,
        root.path().join("room-a").join("20240229T123456Z-rec-1")
    );
    let mp4 = fs::read(live.dir.join(MP4_FILE)).unwrap();

    assert_eq!(live.records.len(), 5);
    let mut expected_offset = live.records[0].offset;
    for (i, r) in live.records.iter().enumerate() {
        assert_eq!(&mp4[r.offset as usize + 4..r.offset as usize + 8], b"moof");
        assert_eq!(r.offset, expected_offset, "fragments are back to back");
        assert_eq!(
            (r.sequence, r.start_us, r.duration_us, r.keyframe()),
            (i as u32 + 1, i as u64 * 1_000_000, 1_000_000, true)
        );
        expected_offset += u64::from(r.length);
    }
    assert_eq!(expected_offset, mp4.len() as u64);
    assert_eq!(
        index_from_file(&live.dir.join(MP4_FILE)).unwrap(),
        live.records
    );
    assert_eq!(live.index_bytes, encode_index(&live.records));

    let mut index = IndexFile::open(&live.dir.join(INDEX_FILE)).unwrap();
    assert_eq!(index.find(2_500_000).unwrap(), Some(2));

    let playlist = fs::read_to_string(live.dir.join(PLAYLIST_FILE)).unwrap();
    assert!(playlist.contains(&format!(
        "#EXT-X-MAP:URI=\"recording.mp4\",BYTERANGE=\"{}@0\"",
        live.records[0].offset
    )));
    assert!(playlist.contains(&format!(
        "#EXT-X-BYTERANGE:{}@{}\n",
        live.records[4].length, live.records[4].offset
    )));
    assert_eq!(playlist.matches("#EXTINF:1.000000,").count(), 5);
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));

    // A cleanly finished recording needs nothing and is not listed as unfinished.
    let report = recover(&live.dir).unwrap();
    assert!(report.was_clean() && report.was_finished, "{report:?}");
    assert!(find_unfinished(root.path()).is_empty());
}

fn check_recovered(live: &Live, surviving: usize) {
    let records = &live.records[..surviving];
    let index = fs::read(live.dir.join(INDEX_FILE)).unwrap();
    assert_eq!(
        index,
        encode_index(records),
        "index equals the live one for the surviving fragments"
    );
    assert_eq!(
        index,
        encode_index(&index_from_file(&live.dir.join(MP4_FILE)).unwrap())
    );
    let end = records.last().map_or(0, |r| r.offset + u64::from(r.length));
    assert_eq!(fs::metadata(live.dir.join(MP4_FILE)).unwrap().len(), end);
    let playlist = fs::read_to_string(live.dir.join(PLAYLIST_FILE)).unwrap();
    assert_eq!(playlist.matches("#EXTINF:").count(), surviving);
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
    // Idempotent.
    assert!(recover(&live.dir).unwrap().was_clean());
}

#[test]
fn a_gap_in_the_media_raises_the_playlist_target_duration() {
    // Five seconds missing after the third (as after a broken link): the last
    // sample before the gap lasts until the media goes on, so its fragment is
    // longer than the two seconds the playlist declared at first.
    let root = tempfile::tempdir().unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    let mut w = RecordingWriter::create(root.path(), &start("rec-1"), at, WriterOptions::default())
        .unwrap();
    let seconds = |m: &Media| match m.track {
        Track::Video => m.dts / 90_000,
        Track::Audio => m.dts / 48_000,
    };
    for m in frames(10).iter().filter(|m| !(3..8).contains(&seconds(m))) {
        w.push(m).unwrap();
    }
    let dir = w.dir().to_owned();
    w.finish().unwrap();
    let playlist = fs::read_to_string(dir.join(PLAYLIST_FILE)).unwrap();
    assert!(playlist.contains("#EXT-X-TARGETDURATION:6\n"), "{playlist}");
    assert!(playlist.contains("#EXTINF:6.000000,\n"), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let report = recover(&dir).unwrap();
    assert!(report.was_clean(), "{report}");
}

#[test]
fn a_recording_stopped_before_its_first_fragment_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    let mut w = RecordingWriter::create(root.path(), &start("rec-1"), at, WriterOptions::default())
        .unwrap();
    let dir = w.dir().to_owned();
    assert!(dir.join(MP4_FILE).exists());
    let summary = w.finish().unwrap();
    assert_eq!((summary.fragments, summary.media_ms), (0, 0));
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(find_unfinished(root.path()).is_empty());
}

#[test]
fn recovers_a_file_torn_mid_fragment() {
    let root = tempfile::tempdir().unwrap();
    let live = write(root.path(), "torn", 4, false);
    let n = live.records.len();
    assert_eq!(n, 3, "the last GOP is still buffered when the writer dies");
    let last = live.records[n - 1];
    let file = OpenOptions::new()
        .write(true)
        .open(live.dir.join(MP4_FILE))
        .unwrap();
    file.set_len(last.offset + u64::from(last.length) / 2)
        .unwrap();

    assert_eq!(find_unfinished(root.path()), vec![live.dir.clone()]);
    let report = recover(&live.dir).unwrap();
    assert_eq!(report.fragments, n - 1);
    assert_eq!(report.truncated_bytes, u64::from(last.length) / 2);
    assert_eq!(
        (report.old_index_records, report.index_records_dropped),
        (Some(n), 1)
    );
    assert!(report.index_rewritten && report.durations_patched && !report.was_finished);
    assert_eq!(report.media_duration_us, 2_000_000);
    check_recovered(&live, n - 1);
    assert!(find_unfinished(root.path()).is_empty());
}

#[test]
fn recovers_a_corrupt_last_index_record() {
    let root = tempfile::tempdir().unwrap();
    let live = write(root.path(), "crc", 4, false);
    let mut index = live.index_bytes.clone();
    let n = index.len();
    index[n - 15] ^= 0x40;
    fs::write(live.dir.join(INDEX_FILE), &index).unwrap();
    let report = recover(&live.dir).unwrap();
    assert_eq!(
        (report.old_index_records, report.index_records_added),
        (Some(2), 1)
    );
    check_recovered(&live, live.records.len());

    // A torn (partial) last record, too.
    let live = write(root.path(), "partial", 4, false);
    fs::write(
        live.dir.join(INDEX_FILE),
        &live.index_bytes[..live.index_bytes.len() - 3],
    )
    .unwrap();
    recover(&live.dir).unwrap();
    check_recovered(&live, live.records.len());
}

#[test]
fn recovers_a_missing_or_garbage_index() {
    let root = tempfile::tempdir().unwrap();
    let live = write(root.path(), "gone", 3, false);
    fs::remove_file(live.dir.join(INDEX_FILE)).unwrap();
    fs::remove_file(live.dir.join(PLAYLIST_FILE)).unwrap();
    let report = recover(&live.dir).unwrap();
    assert_eq!(report.old_index_records, None);
    check_recovered(&live, live.records.len());

    fs::write(live.dir.join(INDEX_FILE), b"garbage").unwrap();
    recover(&live.dir).unwrap();
    check_recovered(&live, live.records.len());
}

#[test]
fn a_recovered_recording_matches_a_finished_one() {
    // Same media, one finished cleanly, one crashed after the same fragments:
    // after recovery both have the same index for the common fragments.
    let root = tempfile::tempdir().unwrap();
    let finished = write(root.path(), "a", 3, true);
    let crashed = write(root.path(), "b", 3, false);
    recover(&crashed.dir).unwrap();
    let n = crashed.records.len();
    assert_eq!(
        encode_index(&finished.records[..n]),
        fs::read(crashed.dir.join(INDEX_FILE)).unwrap()
    );
}

#[test]
fn ffprobe_sees_h264_and_opus() {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("ffprobe not installed, skipping");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let live = write(root.path(), "probe", 4, true);
    let probe = |entries: &str, path: &Path| {
        let out = Command::new("ffprobe")
            .args(["-v", "quiet", "-show_entries", entries, "-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let mp4 = live.dir.join(MP4_FILE);
    let codecs = probe("stream=codec_name", &mp4);
    assert!(
        codecs.contains("h264") && codecs.contains("opus"),
        "{codecs}"
    );
    let duration: f64 = probe("format=duration", &mp4).trim().parse().unwrap();
    assert!((duration - 4.0).abs() < 0.05, "duration {duration}");
    let size = probe("stream=width,height", &mp4);
    assert!(size.contains("320,240"), "{size}");
    // The playlist opens as HLS.
    let codecs = probe("stream=codec_name", &live.dir.join(PLAYLIST_FILE));
    assert!(
        codecs.contains("h264") && codecs.contains("opus"),
        "{codecs}"
    );
}

/// A High-profile stream as a hardware encoder emits it (here x264's, through
/// ffmpeg): its `avcC` must repeat the SPS's chroma format and bit depths, and
/// ffmpeg must decode every frame of the recording.
#[test]
fn a_high_profile_stream_from_x264_is_recorded_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let es = dir.path().join("high.h264");
    ffmpeg(&format!(
        "-f lavfi -i testsrc=size=320x240:rate=30 -frames:v 60 -c:v libx264 -profile:v high \
         -pix_fmt yuv420p -g 30 -bf 0 -x264-params aud=1 -f h264 {}",
        es.display()
    ));
    let stream = fs::read(&es).unwrap();
    let units = access_units(&stream);
    assert_eq!(units.len(), 60);
    let find = |t| *units[0].iter().find(|n| nal_type(n) == t).unwrap();
    let mut params = start("high");
    params.video.sps = heapless::Vec::from_slice(find(NAL_SPS)).unwrap();
    params.video.pps = heapless::Vec::from_slice(find(NAL_PPS)).unwrap();
    assert_eq!(params.video.sps[1], 100, "x264 wrote High profile");

    let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    let mut w = RecordingWriter::create(dir.path(), &params, at, WriterOptions::default()).unwrap();
    for (n, unit) in units.iter().enumerate() {
        let mut data = Vec::new();
        for nal in unit {
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(nal);
        }
        let pts = n as i64 * 3000;
        let keyframe = unit.iter().any(|n| nal_type(n) == NAL_IDR);
        w.push(&Media {
            track: Track::Video,
            pts,
            dts: pts,
            keyframe,
            data,
        })
        .unwrap();
    }
    w.finish().unwrap();
    let mp4 = w.dir().join(MP4_FILE);
    // 4:2:0 at 8 bits after the PPS, reserved bits set: ffmpeg would play it
    // without, stricter players may not.
    let file = fs::read(&mp4).unwrap();
    let at = file.windows(4).position(|w| w == b"avcC").unwrap();
    let size = u32::from_be_bytes(file[at - 4..at].try_into().unwrap()) as usize;
    assert!(file[..at - 4 + size].ends_with(&[0xfd, 0xf8, 0xf8, 0]));

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-count_frames"])
        .args([
            "-show_entries",
            "stream=profile,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&mp4)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && probe.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(text.trim(), "High,60");
}

#[test]
fn unsafe_names_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut s = start("ok");
    s.room = "../escape".try_into().unwrap();
    let err = RecordingWriter::create(root.path(), &s, SystemTime::now(), WriterOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("path separator"), "{err}");
    let mut s = start("..");
    s.room = "room".try_into().unwrap();
    assert!(
        RecordingWriter::create(root.path(), &s, SystemTime::now(), WriterOptions::default())
            .is_err()
    );
    let s = start("rec.seg3");
    assert!(
        RecordingWriter::create(root.path(), &s, SystemTime::now(), WriterOptions::default())
            .is_err()
    );
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
}
