//! `recbox bench soak`: one long meeting through the mixer and the recorder, to
//! see that nothing grows with the recording's length.
//!
//! The recbox side of `bench mix` (`recbox bench-mix-side`: mixer service and
//! recorder in one process, writing the recording to disk) is fed N participants
//! for `--minutes`: ten recorded seconds of each one's H.264 and Opus (five groups
//! of pictures) replayed as RTP lap after lap, sequence numbers and timestamps
//! going on, so the meeting is as long as asked without holding it in memory.
//! Every `--sample` (a minute) the process is sampled from outside: RSS
//! (`/proc/PID/status`), CPU time (`/proc/PID/stat`), bytes written to storage
//! (`/proc/PID/io`), and the recording's files (media, index, playlist sizes; the
//! index's last record says how much media is durable). Each row is printed when
//! it is taken; at the end the rows go to `soak.csv` and a plot to `soak.png`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::mix::inputs::{InputError, Inputs};
use super::mix::measure::{cpu_time, has_exited, parse_status_field, wait_child};
use super::mix::recbox_side::{parse_side_line, SideLine};
use super::mix::replay::{replay_for, Destination};
use crate::encoder::EncoderKind;
use crate::recorder::index::{IndexHeader, IndexRecord, HEADER_SIZE, RECORD_SIZE};
use crate::recorder::layout::{INDEX_FILE, MP4_FILE, PLAYLIST_FILE};
use crate::sfu::sim::CodecMix;
use crate::synth::PatternSpec;

/// One lap of the inputs: a whole number of the pattern's 2 s groups of pictures.
const LAP: Duration = Duration::from_secs(10);
/// How long the side may take to be ready, and to stop.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum SoakError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error("the recbox side {what} (its log: {log})")]
    Side { what: String, log: PathBuf },
    #[error("plot: {0}")]
    Plot(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SoakError {
    let what = what.into();
    move |e| SoakError::Io(what, e)
}

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub minutes: u32,
    pub participants: u8,
    /// The output video's encoder: software, or none (as with the box's hardware one).
    pub encoder: EncoderKind,
    /// How often the side is sampled (a minute; shorter for a quick look).
    pub sample: Duration,
    /// Where the inputs' roster, the recording, the log, the CSV and the plot go.
    pub dir: PathBuf,
    /// The participants' video codecs.
    pub codecs: CodecMix,
}

/// The side and its recording at one instant, counted from the start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sample {
    elapsed: Duration,
    rss_bytes: u64,
    cpu: Duration,
    /// Bytes the process caused to be written to storage so far.
    written_bytes: u64,
    mp4_bytes: u64,
    index_bytes: u64,
    playlist_bytes: u64,
    /// Durable media: the end of the index's last record.
    media_us: u64,
    fragments: u64,
}

/// What changed from one sample to the next, as the table and the plot show it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    minute: f64,
    rss_mb: f64,
    /// CPU seconds per second of durable output since the sample before.
    cpu_per_output_s: f64,
    fragments: u64,
    index_kb: f64,
    playlist_kb: f64,
    mp4_mb: f64,
    /// Written to storage since the sample before, per minute.
    written_mb_per_min: f64,
}

fn rows(samples: &[Sample]) -> Vec<Row> {
    samples
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let output_s = b.media_us.saturating_sub(a.media_us) as f64 / 1e6;
            let minutes = (b.elapsed - a.elapsed).as_secs_f64() / 60.0;
            Row {
                minute: b.elapsed.as_secs_f64() / 60.0,
                rss_mb: b.rss_bytes as f64 / 1e6,
                cpu_per_output_s: if output_s > 0.0 {
                    (b.cpu.saturating_sub(a.cpu)).as_secs_f64() / output_s
                } else {
                    f64::NAN
                },
                fragments: b.fragments,
                index_kb: b.index_bytes as f64 / 1e3,
                playlist_kb: b.playlist_bytes as f64 / 1e3,
                mp4_mb: b.mp4_bytes as f64 / 1e6,
                written_mb_per_min: b.written_bytes.saturating_sub(a.written_bytes) as f64
                    / 1e6
                    / minutes.max(1e-9),
            }
        })
        .collect()
}

const TABLE_HEADER: &str =
    "minute    RSS MB  CPU s/s  fragments  index KB  playlist KB  recording MB  written MB/min";

fn table_line(r: &Row) -> String {
    format!(
        "{:>6.1} {:>9.1} {:>8.3} {:>10} {:>9.1} {:>12.1} {:>13.1} {:>15.2}",
        r.minute,
        r.rss_mb,
        r.cpu_per_output_s,
        r.fragments,
        r.index_kb,
        r.playlist_kb,
        r.mp4_mb,
        r.written_mb_per_min
    )
}

/// Whether the cost stayed flat: the last third of the rows against the first
/// (after the first row, which holds the start-up), mean CPU per output second and
/// RSS; `None` with fewer than four rows.
fn verdict(rows: &[Row]) -> Option<String> {
    let steady = rows.get(1..).filter(|r| r.len() >= 3)?;
    let third = steady.len() / 3;
    let (first, last) = (
        &steady[..third.max(1)],
        &steady[steady.len() - third.max(1)..],
    );
    let mean = |rows: &[Row], f: fn(&Row) -> f64| {
        let v: Vec<f64> = rows.iter().map(f).filter(|v| v.is_finite()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let cpu = (
        mean(first, |r| r.cpu_per_output_s),
        mean(last, |r| r.cpu_per_output_s),
    );
    let rss = (mean(first, |r| r.rss_mb), mean(last, |r| r.rss_mb));
    let written = (
        mean(first, |r| r.written_mb_per_min),
        mean(last, |r| r.written_mb_per_min),
    );
    Some(format!(
        "first third vs last third of minutes {:.0}-{:.0}: CPU s/s {:.3} -> {:.3} ({:+.1}%), \
         RSS {:.1} -> {:.1} MB ({:+.1} MB), written {:.2} -> {:.2} MB/min",
        steady[0].minute,
        steady[steady.len() - 1].minute,
        cpu.0,
        cpu.1,
        (cpu.1 / cpu.0 - 1.0) * 100.0,
        rss.0,
        rss.1,
        rss.1 - rss.0,
        written.0,
        written.1,
    ))
}

pub fn run(out: &mut dyn Write, config: &SoakConfig) -> Result<(), SoakError> {
    let mut say = |line: String| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(io("stdout"))
    };
    let total = Duration::from_secs(u64::from(config.minutes) * 60);
    let video = PatternSpec::default();
    say(format!(
        "== soak: {} participants for {} min through mixer + recorder (encoder {}), sampled every {:?} (files under {}) ==",
        config.participants,
        config.minutes,
        config.encoder,
        config.sample,
        config.dir.display()
    ))?;
    say(format!(
        "inputs: {}x{} @ {} fps H.264 + Opus per participant, {} s recorded once and replayed as RTP lap after lap",
        video.width,
        video.height,
        video.fps,
        LAP.as_secs()
    ))?;
    let inputs = Inputs::record(config.participants, LAP, video, config.codecs, 1)?;
    std::fs::create_dir_all(&config.dir)
        .map_err(io(format!("creating {}", config.dir.display())))?;
    let roster = config.dir.join("roster.json");
    let json = serde_json::to_string_pretty(&inputs.roster()).expect("a roster serializes");
    std::fs::write(&roster, json).map_err(io(format!("writing {}", roster.display())))?;
    let storage = config.dir.join("recbox");
    let _ = std::fs::remove_dir_all(&storage);
    let log = config.dir.join("recbox.log");
    let log_file =
        std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let exe = std::env::current_exe().map_err(io("finding the recbox binary"))?;
    let mut child = Command::new(exe)
        .arg("bench-mix-side")
        .arg("--roster")
        .arg(&roster)
        .arg("--storage")
        .arg(&storage)
        .arg("--encoder")
        .arg(config.encoder.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(io("starting the recbox side"))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(l) = parse_side_line(&line) {
                let _ = lines_tx.send(l);
            }
        }
    });
    let side_error = |what: &str| SoakError::Side {
        what: what.into(),
        log: log.clone(),
    };
    let (mut port, mut recording) = (None, None);
    let deadline = Instant::now() + PATIENCE;
    while port.is_none() || recording.is_none() {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(SideLine::Ready(p)) => port = Some(p),
            Ok(SideLine::Recording(dir)) => recording = Some(dir),
            Ok(SideLine::Stopped) => {}
            Err(_) => {
                drop(stdin);
                stop(pid);
                return Err(side_error("did not get ready"));
            }
        }
    }
    let (port, recording) = (port.expect("set"), recording.expect("set"));
    let start = Instant::now();
    let mut samples = vec![sample(pid, &recording, Duration::ZERO)];
    say(TABLE_HEADER.into())?;
    let checkpoints: Vec<Duration> = (1..)
        .map(|k| config.sample * k)
        .take_while(|&c| c <= total)
        .collect();
    let to = Destination::Muxed(([127, 0, 0, 1], port).into());
    replay_for(&inputs, to, total, &checkpoints, &mut |_| {
        samples.push(sample(pid, &recording, start.elapsed()));
        if let Some(row) = rows(&samples[samples.len() - 2..]).first() {
            // Shown as it comes: a three-hour run is watched, not waited for.
            let _ = say(table_line(row));
        }
    })
    .map_err(io("replaying the inputs"))?;
    drop(stdin);
    let exit = reap(pid).map_err(io("waiting for the recbox side"))?;
    if exit.code != Some(0) {
        return Err(side_error(&format!("ended with {:?}", exit.code)));
    }
    let rows = rows(&samples);
    if let Some(v) = verdict(&rows) {
        say(v)?;
    }
    say(format!(
        "peak RSS {:.1} MB (wait4); recording {}",
        exit.peak_rss_bytes as f64 / 1e6,
        recording.display()
    ))?;
    let csv = config.dir.join("soak.csv");
    std::fs::write(&csv, csv_text(&rows)).map_err(io(format!("writing {}", csv.display())))?;
    let png = config.dir.join("soak.png");
    plot(&rows, &png, config)?;
    say(format!("table: {}, plot: {}", csv.display(), png.display()))
}

fn stop(pid: u32) {
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let _ = wait_child(pid);
}

fn reap(pid: u32) -> std::io::Result<super::mix::measure::Exit> {
    let deadline = Instant::now() + PATIENCE;
    while !has_exited(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !has_exited(pid) {
        // SAFETY: as in `stop`.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    wait_child(pid)
}

/// The side and its recording now.
fn sample(pid: u32, recording: &Path, elapsed: Duration) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let io_text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let size = |name: &str| std::fs::metadata(recording.join(name)).map_or(0, |m| m.len());
    let index_bytes = size(INDEX_FILE);
    let (media_us, fragments) = last_record(&recording.join(INDEX_FILE), index_bytes)
        .map_or((0, 0), |(r, n)| (r.end_us(), n));
    Sample {
        elapsed,
        rss_bytes: parse_status_field(&status, "VmRSS").unwrap_or(0) * 1024,
        cpu: cpu_time(pid).unwrap_or_default(),
        written_bytes: parse_io_field(&io_text, "write_bytes").unwrap_or(0),
        mp4_bytes: size(MP4_FILE),
        index_bytes,
        playlist_bytes: size(PLAYLIST_FILE),
        media_us,
        fragments,
    }
}

/// The index's last whole record and how many there are (one read, however long
/// the recording).
fn last_record(path: &Path, len: u64) -> Option<(IndexRecord, u64)> {
    let records = len.checked_sub(HEADER_SIZE as u64)? / RECORD_SIZE as u64;
    let at = HEADER_SIZE as u64 + records.checked_sub(1)? * RECORD_SIZE as u64;
    let mut bytes = [0u8; RECORD_SIZE];
    std::fs::File::open(path)
        .ok()?
        .read_exact_at(&mut bytes, at)
        .ok()?;
    Some((
        IndexRecord::decode(&bytes, IndexHeader::default()).ok()?,
        records,
    ))
}

/// A value of `/proc/PID/io`, e.g. `write_bytes`.
fn parse_io_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

fn csv_text(rows: &[Row]) -> String {
    let mut s = String::from(
        "minute,rss_mb,cpu_per_output_s,fragments,index_kb,playlist_kb,recording_mb,written_mb_per_min\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{:.2},{:.2},{:.4},{},{:.2},{:.2},{:.2},{:.3}\n",
            r.minute,
            r.rss_mb,
            r.cpu_per_output_s,
            r.fragments,
            r.index_kb,
            r.playlist_kb,
            r.mp4_mb,
            r.written_mb_per_min
        ));
    }
    s
}

/// Four panels against the minute: RSS, CPU per output second, write volume per
/// minute, index and playlist sizes.
fn plot(rows: &[Row], path: &Path, config: &SoakConfig) -> Result<(), SoakError> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Display| SoakError::Plot(e.to_string());
    // Once per process; a second registration of the same face changes nothing.
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "recbox soak: {} participants, {} min, encoder {}",
        config.participants, config.minutes, config.encoder
    );
    let root = root.titled(&title, ("sans-serif", 22)).map_err(|x| e(&x))?;
    let x_end = rows.last().map_or(1.0, |r| r.minute).max(1.0);
    type Series<'a> = (&'a str, fn(&Row) -> f64, RGBColor);
    let panels: [(&str, Vec<Series>); 4] = [
        ("RSS (MB)", vec![("RSS", |r| r.rss_mb, BLUE)]),
        (
            "CPU s per output s",
            vec![("CPU", |r| r.cpu_per_output_s, RED)],
        ),
        (
            "written to storage (MB/min)",
            vec![("written", |r| r.written_mb_per_min, GREEN)],
        ),
        (
            "index and playlist (KB)",
            vec![
                ("index", |r| r.index_kb, MAGENTA),
                ("playlist", |r| r.playlist_kb, CYAN),
            ],
        ),
    ];
    for (area, (name, series)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let values = || {
            series
                .iter()
                .flat_map(|(_, f, _)| rows.iter().map(f))
                .filter(|v| v.is_finite())
        };
        let top = values().fold(0.0f64, f64::max) * 1.15;
        let top = if top > 0.0 { top } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_end, 0f64..top)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("minute")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|x| e(&x))?;
        for (label, f, colour) in series {
            let points = rows
                .iter()
                .map(|r| (r.minute, f(r)))
                .filter(|(_, v)| v.is_finite());
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: u64, cpu_s: f64, media_s: u64, written: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(minute * 60),
            rss_bytes: 40_000_000,
            cpu: Duration::from_secs_f64(cpu_s),
            written_bytes: written,
            mp4_bytes: written,
            index_bytes: 16 + 40 * media_s / 2,
            playlist_bytes: 100 + 30 * media_s / 2,
            media_us: media_s * 1_000_000,
            fragments: media_s / 2,
        }
    }

    #[test]
    fn rows_are_the_changes_between_samples() {
        let samples = [
            sample(0, 0.5, 0, 0),
            sample(1, 6.5, 60, 3_000_000),
            sample(2, 12.5, 120, 6_000_000),
        ];
        let rows = rows(&samples);
        assert_eq!(rows.len(), 2);
        assert!((rows[0].cpu_per_output_s - 0.1).abs() < 1e-9);
        assert!((rows[1].written_mb_per_min - 3.0).abs() < 1e-9);
        assert_eq!(rows[1].fragments, 60);
        assert!((rows[1].minute - 2.0).abs() < 1e-9);
        // No media between two samples: no CPU figure rather than infinity.
        let stalled = super::rows(&[sample(0, 0.0, 10, 0), sample(1, 1.0, 10, 0)]);
        assert!(stalled[0].cpu_per_output_s.is_nan());
        assert!(table_line(&rows[0]).starts_with("   1.0      40.0    0.100         30"));
    }

    #[test]
    fn the_verdict_compares_the_last_third_with_the_first() {
        let mut samples = vec![sample(0, 0.0, 0, 0)];
        for m in 1..=7u64 {
            // CPU per minute grows from 6 s to 12 s over the run.
            let cpu: f64 = (1..=m).map(|k| 6.0 + k as f64).sum();
            samples.push(sample(m, cpu, m * 60, m * 1_000_000));
        }
        let rows = rows(&samples);
        let v = verdict(&rows).unwrap();
        assert!(
            v.starts_with("first third vs last third of minutes 2-7"),
            "{v}"
        );
        assert!(v.contains("CPU s/s 0.142 -> 0.208 (+47.1%)"), "{v}");
        assert!(verdict(&rows[..3]).is_none());
    }

    #[test]
    fn io_fields_and_the_last_index_record() {
        let io = "rchar: 10\nwchar: 20\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_field(io, "write_bytes"), Some(4096));
        assert_eq!(parse_io_field(io, "read_bytes"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        assert!(last_record(&path, 0).is_none());
        let record = |sequence, start_us| IndexRecord {
            sequence,
            segment: 0,
            flags: 1,
            start_us,
            duration_us: 2_000_000,
            offset: 0,
            length: 10,
            checksum: Some(0),
        };
        let mut bytes = vec![0u8; HEADER_SIZE];
        bytes.extend(record(1, 0).encode());
        bytes.extend(record(2, 2_000_000).encode());
        // A torn record at the end is not counted.
        bytes.extend([0u8; 7]);
        std::fs::write(&path, &bytes).unwrap();
        let (last, n) = last_record(&path, bytes.len() as u64).unwrap();
        assert_eq!((last.sequence, last.end_us(), n), (2, 4_000_000, 2));
    }
}
