//! Recorder write throughput: `RecordingWriter` fed synthetic media against a plain
//! sequential write of the same bytes with an fdatasync at the same cadence (once
//! per fragment), on the same filesystem. The gap is the recorder's own cost:
//! Annex B parsing, fragment building, index and playlist writes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::link::frame::{
    AudioCodec, AudioParams, Media, StartParams, Track, VideoCodec, VideoParams,
};
use crate::recorder::index::IndexFile;
use crate::recorder::layout::INDEX_FILE;
use crate::recorder::recording::{RecordingWriter, WriterOptions};
use crate::synth::filler;

const SECONDS: i64 = 20;
const FPS: i64 = 30;
const GOP: i64 = 60;
const FRAME_BYTES: usize = 50_000;
const KEYFRAME_BYTES: usize = 150_000;
const OPUS_BYTES: usize = 160;

fn frames() -> Vec<Media> {
    let mut out = Vec::new();
    let mut packet = 0i64;
    for n in 0..SECONDS * FPS {
        let video_dts = n * 90_000 / FPS;
        while packet * 960 * 90_000 / 48_000 <= video_dts {
            let data = filler(packet as u64, OPUS_BYTES);
            out.push(Media {
                track: Track::Audio,
                pts: packet * 960,
                dts: packet * 960,
                keyframe: true,
                data,
            });
            packet += 1;
        }
        let keyframe = n % GOP == 0;
        let mut data = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }];
        data.extend(filler(
            n as u64 + 1_000_000,
            if keyframe {
                KEYFRAME_BYTES
            } else {
                FRAME_BYTES
            },
        ));
        out.push(Media {
            track: Track::Video,
            pts: video_dts,
            dts: video_dts,
            keyframe,
            data,
        });
    }
    out
}

fn start() -> StartParams {
    StartParams {
        recording: "bench".try_into().expect("fits"),
        room: "bench".try_into().expect("fits"),
        video: VideoParams {
            codec: VideoCodec::H264,
            sps: heapless::Vec::from_slice(&[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01]).expect("fits"),
            pps: heapless::Vec::from_slice(&[0x68, 0xce, 0x3c, 0x80]).expect("fits"),
            width: 1280,
            height: 720,
            fps: FPS as u16,
        },
        audio: AudioParams {
            codec: AudioCodec::Opus,
            sample_rate: 48_000,
            channels: 1,
            pre_skip: 312,
        },
    }
}

fn mb_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
}

pub fn run(out: &mut dyn Write, dir: &Path) -> io::Result<()> {
    let work = dir.join(format!("recbox-bench-writer-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let result = measure(out, &work);
    let cleanup = fs::remove_dir_all(&work);
    result.and(cleanup)
}

fn measure(out: &mut dyn Write, work: &Path) -> io::Result<()> {
    let media = frames();
    let media_bytes: usize = media.iter().map(|m| m.data.len()).sum();

    // Creating a recording syncs three new files and two directories once; that
    // one-off cost is reported apart from the steady-state writing it precedes.
    let created = Instant::now();
    let mut writer =
        RecordingWriter::create(work, &start(), SystemTime::now(), WriterOptions::default())
            .map_err(io::Error::other)?;
    let create_time = created.elapsed();
    let begin = Instant::now();
    for m in &media {
        writer.push(m).map_err(io::Error::other)?;
    }
    let rec_dir = writer.dir().to_owned();
    let summary = writer.finish().map_err(io::Error::other)?;
    let recorder_time = begin.elapsed();
    let recorder_bytes = summary.file_bytes + summary.index_bytes;

    // The same bytes, synced once per fragment like the recorder does.
    let chunks: Vec<u64> = IndexFile::open(&rec_dir.join(INDEX_FILE))
        .and_then(|mut f| f.read_all())
        .map_err(io::Error::other)?
        .records
        .iter()
        .map(|r| u64::from(r.length))
        .collect();
    let init = summary.file_bytes - chunks.iter().sum::<u64>();
    let buf = filler(
        7,
        chunks.iter().copied().max().unwrap_or(0).max(init) as usize,
    );
    let plain_path = work.join("plain.bin");
    let begin = Instant::now();
    let mut plain = File::create(&plain_path)?;
    for len in std::iter::once(init).chain(chunks.iter().copied()) {
        plain.write_all(&buf[..len as usize])?;
        plain.sync_data()?;
    }
    let plain_time = begin.elapsed();

    let recorder_rate = mb_per_s(recorder_bytes, recorder_time);
    let plain_rate = mb_per_s(summary.file_bytes, plain_time);
    writeln!(
        out,
        "recorder write: {SECONDS} s of {FPS} fps video (~{} KB frames, {} KB keyframes every {GOP}) + 20 ms Opus, \
         {} MB of media",
        FRAME_BYTES / 1000,
        KEYFRAME_BYTES / 1000,
        media_bytes / 1_000_000
    )?;
    writeln!(
        out,
        "  recorder  {:>8.1} MB in {:>7.3} s = {recorder_rate:>8.1} MB/s ({} fragments, {:.0}x real time)",
        recorder_bytes as f64 / 1e6,
        recorder_time.as_secs_f64(),
        summary.fragments,
        SECONDS as f64 / recorder_time.as_secs_f64().max(1e-9)
    )?;
    writeln!(
        out,
        "  (creating the recording, once: {:.1} ms)",
        create_time.as_secs_f64() * 1e3
    )?;
    writeln!(
        out,
        "  plain     {:>8.1} MB in {:>7.3} s = {plain_rate:>8.1} MB/s (write + fdatasync per fragment)",
        summary.file_bytes as f64 / 1e6,
        plain_time.as_secs_f64()
    )?;
    writeln!(
        out,
        "  ratio     {:.2} (recorder / plain)",
        recorder_rate / plain_rate.max(1e-9)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_both_rates() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        run(&mut out, dir.path()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("recorder") && text.contains("plain") && text.contains("ratio"),
            "{text}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "cleans up");
    }
}
