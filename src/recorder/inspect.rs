//! `recbox inspect DIR`: what a recording directory holds and whether its parts
//! agree, without changing anything (use recovery for that).

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::index::{IndexError, IndexFile, IndexRecord};
use super::integrity::{verify_file, Verification};
use super::layout::{
    parse_chain, segment_of_dir, ChainEntry, CHAIN_FILE, INDEX_FILE, MP4_FILE, PLAYLIST_FILE,
};
use super::playlist;
use crate::media::mp4::{self, fourcc_str, ReadError, TornTail, TrackInfo, MOVIE_TIMESCALE};

#[derive(Debug, Error)]
pub enum InspectError {
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a readable recording: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
}

/// How the index compares with the index rebuilt from the recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexHealth {
    Missing,
    Unreadable(String),
    Checked {
        /// Readable records.
        records: usize,
        /// Fragments in the file the index lacks.
        missing: usize,
        /// Torn or damaged bytes after the last good record.
        ignored_bytes: u64,
        /// First record that differs from the file.
        first_mismatch: Option<usize>,
    },
}

impl IndexHealth {
    pub fn is_consistent(&self) -> bool {
        matches!(
            self,
            IndexHealth::Checked {
                missing: 0,
                ignored_bytes: 0,
                first_mismatch: None,
                ..
            }
        )
    }
}

#[derive(Debug, Clone)]
pub struct Inspection {
    dir: PathBuf,
    tracks: Vec<TrackInfo>,
    pub(crate) fragments: usize,
    keyframe_fragments: usize,
    /// Media time span of the whole fragments.
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    /// Duration `mvhd` declares (0 until the recording is finished or recovered).
    declared_duration_us: u64,
    pub(crate) file_bytes: u64,
    pub(crate) torn: Option<TornTail>,
    torn_bytes: u64,
    pub(crate) index_bytes: Option<u64>,
    pub index: IndexHealth,
    /// What checking each indexed fragment against its checksum found (`None`:
    /// no readable index to check against).
    pub(crate) verification: Option<Verification>,
    /// The playlist is ended: the recording was finished (or recovered).
    finished: bool,
    /// Every segment of the recording, in order, when it has more than one
    /// (from `recording.chain`); a segment on storage that is gone is an error.
    pub chain: Vec<(ChainEntry, Result<Inspection, String>)>,
}

impl Inspection {
    /// Nothing to repair.
    pub(crate) fn is_healthy(&self) -> bool {
        self.torn.is_none() && self.index.is_consistent() && self.finished && !self.is_damaged()
    }

    /// Some fragment's bytes are not the ones written.
    pub(crate) fn is_damaged(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(|v| !v.damaged.is_empty())
    }

    /// The health line of `recbox inspect`.
    pub(crate) fn health_text(&self) -> &'static str {
        if self.is_damaged() {
            return "DAMAGED: fragments do not hold the bytes written (listed above); `recbox repair` cannot restore them";
        }
        match (self.finished, self.is_healthy()) {
            (_, true) => "finished cleanly",
            (true, false) => "finished, but damaged since: run `recbox repair`",
            (false, _) => "NOT finished: run `recbox repair`",
        }
    }
}

/// Inspects a recording directory and, if it is one segment of several, every
/// segment its chain lists that is reachable.
pub fn inspect(dir: &Path) -> Result<Inspection, InspectError> {
    let mut inspection = inspect_segment(dir)?;
    let chain = match fs::read_to_string(dir.join(CHAIN_FILE)) {
        Ok(text) => parse_chain(&text).map_err(|e| e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    };
    match chain {
        Ok(entries) => {
            inspection.chain = entries
                .into_iter()
                .map(|e| {
                    let segment = inspect_segment(&e.dir).map_err(|err| err.to_string());
                    (e, segment)
                })
                .collect();
        }
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "segment chain unreadable"),
    }
    Ok(inspection)
}

/// One segment alone (its chain not followed).
pub(crate) fn inspect_segment(dir: &Path) -> Result<Inspection, InspectError> {
    let path = dir.join(MP4_FILE);
    let io = |source| InspectError::Io {
        path: path.clone(),
        source,
    };
    let segment = segment_of_dir(dir);
    let mut file = File::open(&path).map_err(io)?;
    let file_bytes = file.metadata().map_err(io)?.len();
    let scan = mp4::scan(&mut file, file_bytes).map_err(|e| match e {
        ReadError::Io(source) => InspectError::Io {
            path: path.clone(),
            source,
        },
        source => InspectError::Format {
            path: path.clone(),
            source,
        },
    })?;
    let records: Vec<IndexRecord> = scan
        .fragments
        .iter()
        .map(|f| {
            IndexRecord::derive(&scan.init, &f.moof, f.offset, f.len)
                .map(|r| IndexRecord { segment, ..r })
        })
        .collect::<Result<_, _>>()
        .map_err(|source| InspectError::Format {
            path: path.clone(),
            source,
        })?;

    let mut declared = [0; 8];
    let declared_units = match scan.init.mvhd_duration_at {
        Some(at) => file
            .read_exact_at(&mut declared, at)
            .map(|_| u64::from_be_bytes(declared))
            .map_err(io)?,
        None => 0,
    };

    let index_path = dir.join(INDEX_FILE);
    let index_bytes = fs::metadata(&index_path).ok().map(|m| m.len());
    let contents = IndexFile::open(&index_path).and_then(|mut f| f.read_all());
    let verification = match &contents {
        Ok(c) => Some(verify_file(&file, file_bytes, &c.records).map_err(io)?),
        Err(_) => None,
    };
    let index = match contents {
        Err(IndexError::Io(e)) if e.kind() == io::ErrorKind::NotFound => IndexHealth::Missing,
        Err(e) => IndexHealth::Unreadable(e.to_string()),
        Ok(contents) => IndexHealth::Checked {
            records: contents.records.len(),
            missing: records.len().saturating_sub(contents.records.len()),
            ignored_bytes: contents.ignored_bytes,
            // The checksum is not derived from the file: it is checked above.
            first_mismatch: contents
                .records
                .iter()
                .enumerate()
                .position(|(i, r)| !records.get(i).is_some_and(|d| d.same_fragment(r))),
        },
    };
    let finished =
        fs::read_to_string(dir.join(PLAYLIST_FILE)).is_ok_and(|t| playlist::is_ended(&t));

    Ok(Inspection {
        dir: dir.to_owned(),
        tracks: scan.init.tracks.clone(),
        fragments: records.len(),
        keyframe_fragments: records.iter().filter(|r| r.keyframe()).count(),
        start_us: records.first().map_or(0, |r| r.start_us),
        end_us: records.iter().map(IndexRecord::end_us).max().unwrap_or(0),
        declared_duration_us: declared_units.saturating_mul(1_000_000 / u64::from(MOVIE_TIMESCALE)),
        file_bytes,
        torn_bytes: scan.file_len - scan.valid_len,
        torn: scan.torn,
        index_bytes,
        index,
        verification,
        finished,
        chain: Vec::new(),
    })
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "recording  {}", self.dir.display())?;
        for t in &self.tracks {
            let codec = fourcc_str(&t.codec);
            match &t.handler {
                b"vide" => writeln!(
                    f,
                    "  video    {} ({codec}) {}x{}, timescale {}",
                    if &t.codec == b"avc1" {
                        "H.264"
                    } else {
                        "unknown codec"
                    },
                    t.width,
                    t.height,
                    t.timescale
                )?,
                b"soun" => writeln!(
                    f,
                    "  audio    {codec} {} ch, {} Hz input, timescale {}",
                    t.channels, t.sample_rate, t.timescale
                )?,
                h => writeln!(
                    f,
                    "  track    {codec} ({}), timescale {}",
                    fourcc_str(h),
                    t.timescale
                )?,
            }
        }
        writeln!(
            f,
            "  media    {} fragments ({} start with a keyframe), {:.3} s .. {:.3} s",
            self.fragments,
            self.keyframe_fragments,
            secs(self.start_us),
            secs(self.end_us)
        )?;
        writeln!(
            f,
            "  file     {} bytes, declared duration {:.3} s",
            self.file_bytes,
            secs(self.declared_duration_us)
        )?;
        if let Some(torn) = &self.torn {
            writeln!(
                f,
                "  TORN     {} bytes after the last whole fragment ({torn:?})",
                self.torn_bytes
            )?;
        }
        let size = self
            .index_bytes
            .map_or_else(|| "-".to_owned(), |b| format!("{b} bytes"));
        match &self.index {
            IndexHealth::Missing => writeln!(f, "  index    MISSING")?,
            IndexHealth::Unreadable(e) => writeln!(f, "  index    {size}, UNREADABLE: {e}")?,
            IndexHealth::Checked {
                records,
                missing,
                ignored_bytes,
                first_mismatch,
            } => {
                write!(f, "  index    {size}, {records} records")?;
                if self.index.is_consistent() {
                    write!(f, ", consistent with the file")?;
                }
                if *missing > 0 {
                    write!(f, ", {missing} fragments not indexed")?;
                }
                if *ignored_bytes > 0 {
                    write!(f, ", {ignored_bytes} torn/damaged bytes")?;
                }
                if let Some(i) = first_mismatch {
                    write!(f, ", record {i} DIFFERS from the file")?;
                }
                writeln!(f)?;
            }
        }
        match &self.verification {
            Some(v) if v.not_checksummed > 0 => writeln!(
                f,
                "  checksum {} fragments not checksummed (index version 1, written before fragment checksums)",
                v.not_checksummed
            )?,
            Some(v) => writeln!(
                f,
                "  checksum {} of {} fragments hold the bytes written",
                v.checked - v.damaged.len(),
                v.checked
            )?,
            None => writeln!(f, "  checksum -, no index to check the fragments against")?,
        }
        for d in self.verification.iter().flat_map(|v| &v.damaged) {
            writeln!(f, "  DAMAGED  {d}")?;
        }
        writeln!(f, "  health   {}", self.health_text())?;
        if self.chain.is_empty() {
            return Ok(());
        }
        writeln!(f, "  chain    {} segments", self.chain.len())?;
        let (mut fragments, mut bytes, mut end) = (0, 0, 0);
        for (entry, segment) in &self.chain {
            write!(
                f,
                "    #{} {} from {:.3} s  {}: ",
                entry.segment,
                entry.state,
                secs(entry.first_us),
                entry.dir.display()
            )?;
            match segment {
                Ok(s) => {
                    fragments += s.fragments;
                    bytes += s.file_bytes;
                    end = end.max(s.end_us);
                    writeln!(
                        f,
                        "{} fragments, {:.3} s .. {:.3} s, {} bytes, {}",
                        s.fragments,
                        secs(s.start_us),
                        secs(s.end_us),
                        s.file_bytes,
                        if s.is_healthy() {
                            "healthy"
                        } else {
                            "NEEDS REPAIR"
                        }
                    )?;
                }
                Err(e) => writeln!(f, "UNREACHABLE: {e}")?,
            }
        }
        writeln!(
            f,
            "  total    {fragments} fragments, {bytes} bytes, up to {:.3} s",
            secs(end)
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::frame::{Media, Track};
    use crate::recorder::fragmenter::tests::start_params;
    use crate::recorder::recording::{RecordingWriter, WriterOptions};
    use std::io::Write;
    use std::time::SystemTime;

    /// Pushes `n` video frames of 30 fps, a keyframe every second.
    pub(crate) fn frames(w: &mut RecordingWriter, n: i64) {
        for i in 0..n {
            let nal = if i % 30 == 0 { 0x65 } else { 0x41 };
            let data = vec![0, 0, 1, nal, 0x88, 1, 2, 3];
            let m = Media {
                track: Track::Video,
                pts: i * 3000,
                dts: i * 3000,
                keyframe: i % 30 == 0,
                data,
            };
            w.push(&m).unwrap();
        }
    }

    #[test]
    fn reports_finished_and_unfinished_recordings() {
        let root = tempfile::tempdir().unwrap();
        let mut w = RecordingWriter::create(
            root.path(),
            &start_params(),
            SystemTime::now(),
            WriterOptions::default(),
        )
        .unwrap();
        frames(&mut w, 90);
        let dir = w.dir().to_owned();
        w.finish().unwrap();
        let i = inspect(&dir).unwrap();
        assert!(i.is_healthy(), "{i}");
        assert_eq!(
            (
                i.fragments,
                i.keyframe_fragments,
                i.end_us,
                i.declared_duration_us
            ),
            (3, 3, 3_000_000, 3_000_000)
        );
        let text = i.to_string();
        assert!(
            text.contains("H.264 (avc1) 320x240") && text.contains("Opus 1 ch"),
            "{text}"
        );
        assert!(
            text.contains("consistent with the file") && text.contains("finished cleanly"),
            "{text}"
        );

        let mut w = RecordingWriter::create(
            root.path(),
            &start_params(),
            SystemTime::UNIX_EPOCH,
            WriterOptions::default(),
        )
        .unwrap();
        frames(&mut w, 61);
        let dir = w.dir().to_owned();
        drop(w);
        let mut mp4 = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(MP4_FILE))
            .unwrap();
        mp4.write_all(b"junk").unwrap();
        fs::remove_file(dir.join(INDEX_FILE)).unwrap();
        let i = inspect(&dir).unwrap();
        assert!(!i.is_healthy() && !i.finished);
        assert_eq!(
            (i.index.clone(), i.fragments, i.torn_bytes),
            (IndexHealth::Missing, 2, 4)
        );
        assert!(i.to_string().contains("NOT finished"), "{i}");
    }
}
