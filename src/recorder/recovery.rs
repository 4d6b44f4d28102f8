//! Recovery of recordings that were not finished cleanly (power loss, crash,
//! storage removed): the MP4 is the source of truth, everything else is rebuilt
//! from it.
//!
//! - a torn tail of `recording.mp4` (partial box, `moof` without its `mdat`,
//!   unparsable `moof`) is cut back to the end of the last whole fragment. A break
//!   that intact indexed fragments follow is damage, not a torn write (a fragment is
//!   durable before its record is written): nothing is cut and recovery fails with
//!   [`RecoveryError::DamagedInside`];
//! - `recording.idx` is rebuilt from the file; every record field but the checksum
//!   is derived from the MP4, and the checksum of a fragment the old index recorded
//!   is kept from it (a fragment it lacks gets the checksum of its bytes, synced just
//!   before the crash), so the rebuilt index is byte-identical to what the live writer
//!   wrote, and damage since stays visible. A torn, damaged or missing index all end
//!   up the same; a version 1 index stays version 1 (there are no checksums to
//!   keep). It is replaced atomically (temp file, fsync, rename, fsync directory) and
//!   only if it differs;
//! - fragments whose bytes no longer match their checksum are reported, and kept:
//!   a few flipped bits spoil the pictures up to the next keyframe, while cutting the
//!   fragment would lose all of it and, in the middle of a file, every one after it;
//! - a segment left without any fragment (a crash between its creation and its first
//!   fragment, or all of it handed over) holds an init segment alone, which no player
//!   opens: its directory is removed, and the chain in the other segments no longer
//!   lists it;
//! - fragments that a later segment of the chain holds too (see
//!   [`super::resume`]) are cut off: the later copy counts;
//! - the playlist is regenerated (ended) and the `moov` durations are patched.
//!
//! Running it again on a recovered (or cleanly finished) recording changes nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::index::{encode_index_with, IndexFile, IndexHeader, IndexRecord};
use super::integrity::{self, DamagedFragment};
use super::layout::{
    encode_chain, parse_chain, remove_dir_synced, replace_file, segment_of_dir, FileOpError,
    CHAIN_FILE, DEFAULT_MAX_FRAGMENT, INDEX_FILE, MP4_FILE, PLAYLIST_FILE,
};
use super::playlist;
use crate::media::mp4::{self, FileScan, ReadError, TornTail};

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} cannot be recovered: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{}: the fragment at byte {offset} is damaged ({torn:?}), but {intact_after} intact indexed fragments follow it: nothing cut (`recbox inspect` names the damage)", path.display())]
    DamagedInside {
        path: PathBuf,
        offset: u64,
        torn: TornTail,
        intact_after: usize,
    },
}

impl From<FileOpError> for RecoveryError {
    fn from(e: FileOpError) -> Self {
        RecoveryError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecoveryError + 'a {
    move |source| RecoveryError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn format_err(path: &Path) -> impl FnOnce(ReadError) -> RecoveryError + '_ {
    move |source| match source {
        ReadError::Io(source) => RecoveryError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        },
        source => RecoveryError::Format {
            path: path.to_owned(),
            source,
        },
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    dir: PathBuf,
    /// Whole fragments kept in the recording file.
    pub fragments: usize,
    /// Why the file had a torn tail, if it had one.
    torn: Option<TornTail>,
    /// Whole fragments cut off because the next segment of the chain holds them.
    pub handed_over: usize,
    /// Bytes cut off the end of the recording file.
    pub truncated_bytes: u64,
    /// Readable records in the old index (`None`: missing or unreadable header).
    pub old_index_records: Option<usize>,
    /// Old records that did not survive: torn/damaged tail, or pointing at data that
    /// was cut off or never written.
    pub index_records_dropped: usize,
    /// Records added that the old index lacked.
    pub index_records_added: usize,
    pub index_rewritten: bool,
    playlist_rewritten: bool,
    pub durations_patched: bool,
    /// Fragments whose bytes are not the ones written (kept).
    damaged: Vec<DamagedFragment>,
    /// Fragments without a checksum to check (a version 1 index).
    not_checksummed: usize,
    /// The segment held no fragment: its directory was removed.
    pub(crate) removed_empty: bool,
    /// The playlist was already ended: the recording had finished cleanly.
    pub was_finished: bool,
    pub media_duration_us: u64,
}

impl RecoveryReport {
    /// True when nothing had to be changed.
    pub fn was_clean(&self) -> bool {
        self.truncated_bytes == 0
            && !self.index_rewritten
            && !self.playlist_rewritten
            && !self.durations_patched
            && !self.removed_empty
    }
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "recording {}", self.dir.display())?;
        if self.removed_empty {
            return write!(
                f,
                "  no fragment: an init segment alone, which no player opens; directory removed"
            );
        }
        if self.was_clean() {
            writeln!(f, "  nothing to repair")?;
        }
        writeln!(
            f,
            "  {} whole fragments, {:.3} s of media",
            self.fragments,
            self.media_duration_us as f64 / 1e6
        )?;
        if let Some(torn) = &self.torn {
            writeln!(
                f,
                "  torn tail: {torn:?}; {} bytes cut off",
                self.truncated_bytes
            )?;
        }
        if self.handed_over > 0 {
            writeln!(
                f,
                "  {} fragments cut off: the next segment holds them",
                self.handed_over
            )?;
        }
        match self.old_index_records {
            Some(n) => writeln!(f, "  old index: {n} readable records")?,
            None => writeln!(f, "  old index: missing or unreadable")?,
        }
        if self.index_rewritten {
            writeln!(
                f,
                "  index rebuilt from the file: {} records dropped, {} added",
                self.index_records_dropped, self.index_records_added
            )?;
        }
        if self.playlist_rewritten {
            writeln!(f, "  playlist regenerated")?;
        }
        if self.durations_patched {
            writeln!(f, "  durations in the file header patched")?;
        }
        if self.not_checksummed > 0 {
            writeln!(
                f,
                "  {} fragments not checksummed (index version 1): their bytes cannot be checked",
                self.not_checksummed
            )?;
        }
        for d in &self.damaged {
            writeln!(f, "  DAMAGED  {d}")?;
        }
        if !self.damaged.is_empty() {
            writeln!(
                f,
                "  {} damaged fragments kept: they play, with errors up to their next keyframe; nothing can restore them",
                self.damaged.len()
            )?;
        }
        write!(
            f,
            "  {}",
            if self.was_finished {
                "had been finished cleanly"
            } else {
                "had not been finished (now closed)"
            }
        )
    }
}

fn scan_file(file: &mut File, path: &Path) -> Result<FileScan, RecoveryError> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    mp4::scan(file, len).map_err(format_err(path))
}

/// The index records of the whole fragments of `path`, the MP4 of `segment`.
fn records_of(
    scan: &FileScan,
    path: &Path,
    segment: u16,
) -> Result<Vec<IndexRecord>, RecoveryError> {
    scan.fragments
        .iter()
        .map(|f| {
            IndexRecord::derive(&scan.init, &f.moof, f.offset, f.len)
                .map(|r| IndexRecord { segment, ..r })
        })
        .collect::<Result<_, _>>()
        .map_err(format_err(path))
}

/// Gives every record a checksum: the one `old` (the index as it was) holds for the
/// fragment at the same place, else that of the bytes the file holds now.
fn fill_checksums(
    records: &mut [IndexRecord],
    old: &[IndexRecord],
    file: &File,
    file_len: u64,
    path: &Path,
) -> Result<(), RecoveryError> {
    for r in records {
        // Offset and length alone: any other field may come from a damaged `moof`.
        let recorded = old
            .binary_search_by_key(&r.offset, |o| o.offset)
            .ok()
            .map(|i| old[i])
            .filter(|o| o.length == r.length)
            .and_then(|o| o.checksum);
        r.checksum = match recorded {
            Some(c) => Some(c),
            None => Some(integrity::checksum_of(file, file_len, r).map_err(io_err("read", path))?),
        };
    }
    Ok(())
}

/// The index records for the whole fragments of an MP4 (a torn tail is ignored),
/// with the checksums of their bytes as they are now; the segment number comes from
/// the name of its directory.
pub fn index_from_file(mp4: &Path) -> Result<Vec<IndexRecord>, RecoveryError> {
    let mut file = File::open(mp4).map_err(io_err("open", mp4))?;
    let scan = scan_file(&mut file, mp4)?;
    let segment = mp4.parent().map_or(0, segment_of_dir);
    let mut records = records_of(&scan, mp4, segment)?;
    fill_checksums(&mut records, &[], &file, scan.file_len, mp4)?;
    Ok(records)
}

/// Refuses to cut at a break in the file that intact fragments the index recorded
/// follow (before `until`, where a later segment takes over): those were durable,
/// so the break is damage, not a torn write.
fn check_break(
    scan: &FileScan,
    old: &[IndexRecord],
    until: Option<u64>,
    file: &File,
    path: &Path,
) -> Result<(), RecoveryError> {
    let Some(torn) = &scan.torn else {
        return Ok(());
    };
    let after: Vec<IndexRecord> = old
        .iter()
        .filter(|r| {
            r.offset > torn.offset()
                && r.end_offset() <= scan.file_len
                && until.is_none_or(|t| r.start_us < t)
        })
        .copied()
        .collect();
    if after.is_empty() {
        return Ok(());
    }
    let v = integrity::verify_file(file, scan.file_len, &after).map_err(io_err("read", path))?;
    let intact_after = after.len() - v.damaged.len();
    if intact_after == 0 {
        return Ok(());
    }
    Err(RecoveryError::DamagedInside {
        path: path.to_owned(),
        offset: torn.offset(),
        torn: torn.clone(),
        intact_after,
    })
}

/// Removes a segment directory that holds no fragment, after taking it out of the
/// chain of every other segment (so a crash in between leaves a directory that is
/// found and removed again, never a chain naming a directory that is gone).
fn remove_empty_segment(dir: &Path, segment: u16) -> Result<(), RecoveryError> {
    let chain = fs::read_to_string(dir.join(CHAIN_FILE))
        .ok()
        .and_then(|text| parse_chain(&text).ok())
        .unwrap_or_default();
    for other in chain.iter().filter(|e| e.segment != segment) {
        let Ok(text) = fs::read_to_string(other.dir.join(CHAIN_FILE)) else {
            continue;
        };
        let Ok(mut entries) = parse_chain(&text) else {
            continue;
        };
        entries.retain(|e| e.segment != segment);
        if let Err(error) = replace_file(&other.dir, CHAIN_FILE, encode_chain(&entries).as_bytes())
        {
            tracing::warn!(dir = %other.dir.display(), %error, "chain not updated: it still lists an empty segment");
        }
    }
    remove_dir_synced(dir).map_err(|e| RecoveryError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })?;
    tracing::info!(dir = %dir.display(), "segment without any fragment removed");
    Ok(())
}

/// Where the media of the later segments of the chain in `dir` begins: the first
/// whole fragment any later segment holds. A later segment that is empty or cannot
/// be read is passed over: what no readable segment holds is never cut. `None` for
/// a recording of one segment, or the last one.
fn later_segments_start(dir: &Path, segment: u16) -> Option<u64> {
    let text = fs::read_to_string(dir.join(CHAIN_FILE)).ok()?;
    let chain = parse_chain(&text)
        .inspect_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "chain unreadable"))
        .ok()?;
    chain
        .iter()
        .filter(|e| e.segment > segment)
        .find_map(|e| match index_from_file(&e.dir.join(MP4_FILE)) {
            Ok(records) => records.first().map(|r| r.start_us),
            Err(error) => {
                tracing::warn!(dir = %e.dir.display(), %error, "later segment unreadable: nothing cut for it");
                None
            }
        })
}

/// Recovers one recording directory (see the module docs).
pub fn recover(dir: &Path) -> Result<RecoveryReport, RecoveryError> {
    let mp4_path = dir.join(MP4_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mp4_path)
        .map_err(io_err("open", &mp4_path))?;
    let mut scan = scan_file(&mut file, &mp4_path)?;
    let segment = segment_of_dir(dir);
    let mut records = records_of(&scan, &mp4_path, segment)?;

    let index_path = dir.join(INDEX_FILE);
    let old = match IndexFile::open(&index_path).and_then(|mut f| f.read_all()) {
        Ok(contents) => Some(contents),
        Err(e) => {
            tracing::warn!(path = %index_path.display(), error = %e, "index unreadable, rebuilding");
            None
        }
    };
    let old_records = old.as_ref().map_or(&[][..], |c| &c.records[..]);
    let header = old.as_ref().map_or_else(IndexHeader::default, |c| c.header);

    // A fragment whose write was reported failed went on in the next segment, but
    // the failing disk may have kept it after all; a resumed recording replays its
    // last group of pictures into the next segment: the later copy counts.
    let next = later_segments_start(dir, segment);
    check_break(&scan, old_records, next, &file, &mp4_path)?;
    let handed_over = next
        .and_then(|next| records.iter().position(|r| r.start_us >= next))
        .map_or(0, |k| {
            scan.valid_len = records[k].offset;
            scan.fragments.truncate(k);
            records.drain(k..).count()
        });
    let truncated_bytes = scan.file_len - scan.valid_len;
    if truncated_bytes > 0 {
        tracing::warn!(path = %mp4_path.display(), torn = ?scan.torn, handed_over, truncated_bytes, "cutting the tail");
        file.set_len(scan.valid_len)
            .map_err(io_err("truncate", &mp4_path))?;
        file.sync_all().map_err(io_err("sync", &mp4_path))?;
    }

    if records.is_empty() {
        remove_empty_segment(dir, segment)?;
        return Ok(RecoveryReport {
            dir: dir.to_owned(),
            fragments: 0,
            torn: scan.torn,
            handed_over,
            truncated_bytes,
            old_index_records: old.as_ref().map(|c| c.records.len()),
            index_records_dropped: old_records.len(),
            index_records_added: 0,
            index_rewritten: false,
            playlist_rewritten: false,
            durations_patched: false,
            damaged: Vec::new(),
            not_checksummed: 0,
            removed_empty: true,
            was_finished: false,
            media_duration_us: 0,
        });
    }

    // The index.
    if header.has_checksums() {
        fill_checksums(&mut records, old_records, &file, scan.valid_len, &mp4_path)?;
    }
    let verification = integrity::verify_file(&file, scan.valid_len, &records)
        .map_err(io_err("read", &mp4_path))?;
    for d in &verification.damaged {
        tracing::warn!(path = %mp4_path.display(), damage = %d, "damaged fragment kept");
    }
    let kept = old_records
        .iter()
        .zip(&records)
        .take_while(|(a, b)| a == b)
        .count();
    let new_index = encode_index_with(header, &records);
    let index_rewritten = fs::read(&index_path).map_or(true, |bytes| bytes != new_index);
    if index_rewritten {
        replace_file(dir, INDEX_FILE, &new_index)?;
    }

    // Durations in moov.
    let track_ends = scan.track_ends();
    let mut durations_patched = false;
    for (at, bytes) in mp4::duration_patches(&scan.init, &track_ends) {
        let mut current = [0; 8];
        file.read_exact_at(&mut current, at)
            .map_err(io_err("read", &mp4_path))?;
        if current != bytes {
            file.write_all_at(&bytes, at)
                .map_err(io_err("write", &mp4_path))?;
            durations_patched = true;
        }
    }
    if durations_patched {
        file.sync_data().map_err(io_err("sync", &mp4_path))?;
    }

    // The playlist: keep its target duration unless a fragment needs more.
    let playlist_path = dir.join(PLAYLIST_FILE);
    let old_playlist = fs::read_to_string(&playlist_path).ok();
    let was_finished = old_playlist.as_deref().is_some_and(playlist::is_ended);
    let target = old_playlist
        .as_deref()
        .and_then(playlist::parse_target_duration)
        .unwrap_or_else(|| playlist::target_duration_secs(DEFAULT_MAX_FRAGMENT))
        .max(playlist::covering_target_duration(&records));
    let text = playlist::playlist(target, scan.init.len, &records, true);
    let playlist_rewritten = old_playlist.as_deref() != Some(text.as_str());
    if playlist_rewritten {
        replace_file(dir, PLAYLIST_FILE, text.as_bytes())?;
    }

    let report = RecoveryReport {
        dir: dir.to_owned(),
        fragments: records.len(),
        torn: scan.torn,
        handed_over,
        truncated_bytes,
        old_index_records: old.as_ref().map(|c| c.records.len()),
        index_records_dropped: old_records.len() - kept,
        index_records_added: records.len() - kept,
        index_rewritten,
        playlist_rewritten,
        durations_patched,
        damaged: verification.damaged,
        not_checksummed: verification.not_checksummed,
        removed_empty: false,
        was_finished,
        media_duration_us: mp4::movie_duration_us(&scan.init, &track_ends),
    };
    if report.was_clean() {
        tracing::debug!(dir = %dir.display(), "recording is clean");
    } else {
        tracing::info!(?report, "recording recovered");
    }
    Ok(report)
}

/// Recording directories under `<storage_root>/<room>/` that were not finished
/// cleanly: they hold a recording file but their playlist is missing or not ended.
pub fn find_unfinished(storage_root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for room in read_dirs(storage_root) {
        for dir in read_dirs(&room) {
            if !dir.join(MP4_FILE).is_file() {
                continue;
            }
            let ended =
                fs::read_to_string(dir.join(PLAYLIST_FILE)).is_ok_and(|t| playlist::is_ended(&t));
            if !ended {
                found.push(dir);
            }
        }
    }
    found.sort();
    found
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list directory");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::fragmenter::tests::start_params;
    use crate::recorder::index::RECORD_SIZE;
    use crate::recorder::inspect::{inspect, tests::frames};
    use crate::recorder::integrity::FragmentCheck;
    use crate::recorder::recording::{RecordingWriter, WriterOptions};
    use std::time::SystemTime;

    /// A finished recording of three one-second fragments, and its index records.
    fn recording(root: &Path) -> (PathBuf, Vec<IndexRecord>) {
        let mut w = RecordingWriter::create(
            root,
            &start_params(),
            SystemTime::now(),
            WriterOptions::default(),
        )
        .unwrap();
        frames(&mut w, 90);
        let dir = w.dir().to_owned();
        w.finish().unwrap();
        let records = IndexFile::open(&dir.join(INDEX_FILE))
            .unwrap()
            .read_all()
            .unwrap()
            .records;
        assert_eq!(records.len(), 3);
        (dir, records)
    }

    fn flip(path: &Path, at: u64, mask: u8) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ mask], at).unwrap();
    }

    #[test]
    fn a_damaged_fragment_is_reported_and_kept_and_stays_visible() {
        let root = tempfile::tempdir().unwrap();
        let (dir, records) = recording(root.path());
        let mp4 = dir.join(MP4_FILE);
        // The last byte of fragment 1 is media (a sample in its `mdat`).
        flip(&mp4, records[1].end_offset() - 1, 0x08);
        let before = fs::read(&mp4).unwrap();
        for _ in 0..2 {
            let report = recover(&dir).unwrap();
            let damaged: Vec<_> = report.damaged.iter().map(|d| (d.number, d.check)).collect();
            assert_eq!(damaged, [(1, FragmentCheck::Damaged)], "{report}");
            assert_eq!(report.damaged[0].record, records[1]);
            assert!(report.was_clean(), "nothing else to do: {report}");
            let text = report.to_string();
            assert!(
                text.contains("DAMAGED  fragment 1 (sequence 2): bytes")
                    && text.contains("media 1.000 s .. 2.000 s"),
                "{text}"
            );
            // The checksum written live is kept: the damage is not laundered.
            assert_eq!(fs::read(&mp4).unwrap(), before);
            let index = IndexFile::open(&dir.join(INDEX_FILE)).unwrap().read_all();
            assert_eq!(index.unwrap().records, records);
        }
        let i = inspect(&dir).unwrap();
        assert!(i.is_damaged() && !i.is_healthy(), "{i}");
        let text = i.to_string();
        assert!(
            text.contains("2 of 3 fragments hold the bytes written")
                && text.contains("DAMAGED  fragment 1 (sequence 2)")
                && !text.contains("finished cleanly"),
            "{text}"
        );
    }

    #[test]
    fn a_break_that_intact_indexed_fragments_follow_is_not_cut() {
        let root = tempfile::tempdir().unwrap();
        let (dir, records) = recording(root.path());
        let mp4 = dir.join(MP4_FILE);
        // The `moof` fourcc of fragment 1: the file no longer parses past it.
        flip(&mp4, records[1].offset + 4, 0x20);
        let before = fs::read(&mp4).unwrap();
        match recover(&dir) {
            Err(RecoveryError::DamagedInside {
                offset,
                intact_after,
                ..
            }) => assert_eq!((offset, intact_after), (records[1].offset, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&mp4).unwrap(), before, "nothing cut");
        let i = inspect(&dir).unwrap();
        let damaged: Vec<_> = i
            .verification
            .as_ref()
            .unwrap()
            .damaged
            .iter()
            .map(|d| d.number)
            .collect();
        assert_eq!(damaged, [1]);
        assert!(i.torn.is_some() && !i.is_healthy(), "{i}");
    }

    #[test]
    fn a_torn_tail_is_still_cut_and_an_unindexed_fragment_gets_its_checksum() {
        let root = tempfile::tempdir().unwrap();
        let (dir, records) = recording(root.path());
        // A crash after fragment 2 was synced, before its record was: then the next
        // fragment was half written.
        let index = fs::read(dir.join(INDEX_FILE)).unwrap();
        fs::write(dir.join(INDEX_FILE), &index[..index.len() - RECORD_SIZE]).unwrap();
        let mp4 = dir.join(MP4_FILE);
        let mut bytes = fs::read(&mp4).unwrap();
        let fragment = bytes[records[0].offset as usize..records[0].end_offset() as usize].to_vec();
        bytes.extend_from_slice(&fragment[..fragment.len() / 2]);
        fs::write(&mp4, &bytes).unwrap();
        let report = recover(&dir).unwrap();
        assert!(
            report.torn.is_some() && report.damaged.is_empty(),
            "{report}"
        );
        assert_eq!(report.index_records_added, 1);
        assert_eq!(fs::read(dir.join(INDEX_FILE)).unwrap(), index);
    }

    #[test]
    fn a_segment_without_fragments_is_removed_and_leaves_the_chain() {
        let root = tempfile::tempdir().unwrap();
        let spool = tempfile::tempdir().unwrap();
        // A crash right after the start: an init segment alone.
        let w = RecordingWriter::create(
            root.path(),
            &start_params(),
            SystemTime::now(),
            WriterOptions::default(),
        )
        .unwrap();
        let dir = w.dir().to_owned();
        drop(w);
        let report = recover(&dir).unwrap();
        assert!(report.removed_empty && !report.was_clean(), "{report}");
        assert!(!dir.exists());

        // A crash right after a failover: segment 1 on the spool holds nothing.
        let mut w = RecordingWriter::create(
            root.path(),
            &start_params(),
            SystemTime::UNIX_EPOCH,
            WriterOptions::default(),
        )
        .unwrap();
        frames(&mut w, 60);
        let first = w.dir().to_owned();
        w.fail_over(spool.path()).unwrap();
        let second = w.dir().to_owned();
        drop(w);
        let listed = |dir: &Path| -> Vec<u16> {
            parse_chain(&fs::read_to_string(dir.join(CHAIN_FILE)).unwrap())
                .unwrap()
                .iter()
                .map(|e| e.segment)
                .collect()
        };
        assert_eq!(listed(&first), [0, 1]);
        assert!(recover(&second).unwrap().removed_empty);
        assert!(!second.exists());
        assert_eq!(listed(&first), [0]);
        let report = recover(&first).unwrap();
        assert_eq!(report.fragments, 1, "{report}");
        let i = inspect(&first).unwrap();
        assert!(
            i.is_healthy() && i.chain.iter().all(|(_, s)| s.is_ok()),
            "{i}"
        );
    }
}
