//! Damaged media never passes as healthy: a bit flipped inside a fragment of a real
//! recording (real H.264 and Opus, written by a real recorder) is named by the
//! `recbox inspect` and `recbox repair` binaries, with its byte range and time span;
//! an undamaged recording still says `finished cleanly`; an index of the previous
//! version (no checksums) is still read.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use recbox::recorder::index::IndexRecord;

/// Records 4 s (four 1-second fragments) and returns the recording directory.
async fn record(storage: &Path) -> PathBuf {
    record_in(storage, "rec-d", 4.0).await
}

fn recbox(command: &str, dir: &Path) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recbox"))
        .arg(command)
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

fn xor_byte(path: &Path, at: u64, mask: u8) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
}

/// A byte in the middle of the media (`mdat` payload) of the fragment `r`.
fn inside_mdat(mp4: &Path, r: &IndexRecord) -> u64 {
    let f = fs::File::open(mp4).unwrap();
    let mut size = [0; 4];
    f.read_exact_at(&mut size, r.offset).unwrap();
    let moof = u64::from(u32::from_be_bytes(size));
    let mut fourcc = [0; 4];
    f.read_exact_at(&mut fourcc, r.offset + moof + 4).unwrap();
    assert_eq!(&fourcc, b"mdat");
    let payload = r.offset + moof + 8;
    payload + (r.end_offset() - payload) / 2
}

/// The line naming fragment `n` as the reports print it.
fn damage_line(n: usize, r: &IndexRecord) -> String {
    format!(
        "DAMAGED  fragment {n} (sequence {}): bytes {}..{}, media {:.3} s .. {:.3} s",
        r.sequence,
        r.offset,
        r.end_offset(),
        r.start_us as f64 / 1e6,
        r.end_us() as f64 / 1e6
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_a_fragment_is_named_by_inspect_and_repair() {
    let storage = tempfile::tempdir().unwrap();
    let dir = record(storage.path()).await;
    let mp4 = dir.join("recording.mp4");
    let records = index_records(&dir);
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.checksum.is_some()));

    let (out, text) = recbox("inspect", &dir);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("4 of 4 fragments hold the bytes written")
            && text.contains("health   finished cleanly"),
        "{text}"
    );

    xor_byte(&mp4, inside_mdat(&mp4, &records[2]), 0x10);
    let want = damage_line(2, &records[2]);
    assert!(want.contains("media 2.000 s .. 3.000 s"), "{want}");

    let (out, text) = recbox("inspect", &dir);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&want)
            && text.contains("3 of 4 fragments hold the bytes written")
            && text.contains("health   DAMAGED")
            && !text.contains("finished cleanly"),
        "{text}"
    );
    assert_eq!(text.matches("DAMAGED  fragment").count(), 1, "{text}");

    let (out, text) = recbox("repair", &dir);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&want) && text.contains("1 damaged fragments kept"),
        "{text}"
    );
    // Repair changed nothing and hid nothing: the index is the one written live.
    assert_eq!(index_records(&dir), records);
    let (_, text) = recbox("inspect", &dir);
    assert!(
        text.contains(&want) && !text.contains("finished cleanly"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_torn_tail_is_cut_and_a_damaged_fragment_is_kept() {
    let storage = tempfile::tempdir().unwrap();
    let dir = record(storage.path()).await;
    let mp4 = dir.join("recording.mp4");
    let records = index_records(&dir);
    // What a crash leaves: the playlist not ended, half a fragment after the last
    // whole one; and, older, a bit flipped in fragment 1.
    let playlist = dir.join("recording.m3u8");
    let text = fs::read_to_string(&playlist).unwrap();
    fs::write(&playlist, text.replace("#EXT-X-ENDLIST\n", "")).unwrap();
    let whole = fs::metadata(&mp4).unwrap().len();
    let mut bytes = fs::read(&mp4).unwrap();
    let last = &records[3];
    let half = bytes[last.offset as usize..][..last.length as usize / 2].to_vec();
    bytes.extend_from_slice(&half);
    fs::write(&mp4, &bytes).unwrap();
    xor_byte(&mp4, inside_mdat(&mp4, &records[1]), 0x01);

    let (out, text) = recbox("repair", &dir);
    assert!(out.status.success(), "{text}");
    let want = damage_line(1, &records[1]);
    assert!(
        text.contains(&format!("{} bytes cut off", half.len())) && text.contains(&want),
        "{text}"
    );
    assert_eq!(fs::metadata(&mp4).unwrap().len(), whole);
    assert_eq!(index_records(&dir), records);
    let (_, text) = recbox("inspect", &dir);
    assert!(
        text.contains(&want) && text.contains("health   DAMAGED") && !text.contains("TORN"),
        "{text}"
    );

    // A break in the file's structure that intact fragments follow is damage too,
    // not a torn tail: nothing after it is cut.
    xor_byte(&mp4, records[2].offset + 4, 0x20);
    let (out, text) = recbox("repair", &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(stderr.contains("nothing cut"), "{stderr}");
    assert_eq!(fs::metadata(&mp4).unwrap().len(), whole);
    let (_, text) = recbox("inspect", &dir);
    assert!(
        text.contains(&damage_line(2, &records[2])) && text.contains(&want),
        "{text}"
    );
}

/// Rewrites `recording.idx` in the layout of index version 1, byte by byte as the
/// recorders before fragment checksums wrote it: the word after the length reserved
/// (zero), the CRC-32 of the first 36 bytes last.
fn write_version_1_index(dir: &Path, records: &[IndexRecord]) -> Vec<u8> {
    let mut out = b"RBXIDX01\x01\x00\x28\x00\x00\x00\x00\x00".to_vec();
    for r in records {
        let mut b = [0u8; 40];
        b[0..4].copy_from_slice(&r.sequence.to_le_bytes());
        b[4..6].copy_from_slice(&r.segment.to_le_bytes());
        b[6] = r.flags;
        b[8..16].copy_from_slice(&r.start_us.to_le_bytes());
        b[16..20].copy_from_slice(&r.duration_us.to_le_bytes());
        b[20..28].copy_from_slice(&r.offset.to_le_bytes());
        b[28..32].copy_from_slice(&r.length.to_le_bytes());
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&b);
    }
    fs::write(dir.join("recording.idx"), &out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_the_previous_version_is_still_read() {
    let storage = tempfile::tempdir().unwrap();
    let dir = record(storage.path()).await;
    let records = index_records(&dir);
    let old = write_version_1_index(&dir, &records);
    let read = index_records(&dir);
    assert!(read.iter().all(|r| r.checksum.is_none()));
    assert!(read.iter().zip(&records).all(|(a, b)| a.same_fragment(b)));

    let (out, text) = recbox("inspect", &dir);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("4 records, consistent with the file")
            && text.contains("4 fragments not checksummed (index version 1")
            && text.contains("health   finished cleanly"),
        "{text}"
    );
    let (out, text) = recbox("repair", &dir);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("nothing to repair") && text.contains("4 fragments not checksummed"),
        "{text}"
    );
    assert_eq!(
        fs::read(dir.join("recording.idx")).unwrap(),
        old,
        "an old index stays as it is"
    );
}
