//! Decoding a recording with ffmpeg to check what is in it: one picture as raw
//! I420, the mixed audio as 48 kHz mono samples, the colour at a point.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs ffmpeg with `args` and returns what it wrote to stdout.
fn ffmpeg(args: &[&str], file: &Path, output: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .arg("-i")
        .arg(file)
        .args(output)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// One decoded `width` x `height` picture at `at` into the recording, as raw I420.
pub fn picture_at(file: &Path, at: Duration, width: usize, height: usize) -> Vec<u8> {
    let picture = ffmpeg(
        &["-ss", &seconds(at)],
        file,
        &[
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ],
    );
    assert_eq!(picture.len(), width * height * 3 / 2);
    picture
}

/// The mixed audio from `from` on (for `len`, or to the end), as 48 kHz mono samples.
pub fn audio_at(file: &Path, from: Duration, len: Option<Duration>) -> Vec<i16> {
    let from = seconds(from);
    let len = len.map(seconds);
    let mut args = vec!["-ss", &from];
    if let Some(len) = &len {
        args.extend(["-t", len]);
    }
    ffmpeg(
        &args,
        file,
        &["-vn", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"],
    )
    .chunks_exact(2)
    .map(|b| i16::from_le_bytes([b[0], b[1]]))
    .collect()
}

/// Y, U and V of the I420 `picture` of `width` x `height` at `(x, y)`.
pub fn yuv_at(picture: &[u8], width: usize, height: usize, x: usize, y: usize) -> [u8; 3] {
    let luma = width * height;
    let c = (y / 2) * (width / 2) + x / 2;
    [
        picture[y * width + x],
        picture[luma + c],
        picture[luma + luma / 4 + c],
    ]
}

/// The picture of `file` 1.5 s before its end, once each tile of its grid of
/// `want.len()` participants is found to show the colour `want` gives it (within 12
/// of each component), half way across and a quarter of the way down: clear of the
/// test pattern's moving square, and on the head of a placeholder's figure.
pub fn late_picture_with_tiles(
    file: &Path,
    width: usize,
    height: usize,
    want: &[[u8; 3]],
) -> Vec<u8> {
    let end = super::format_duration_s(file);
    let picture = picture_at(file, Duration::from_secs_f64(end - 1.5), width, height);
    let tiles = recbox::mixer::layout::tiles(want.len(), width, height).unwrap();
    for (i, (t, &want)) in tiles.iter().zip(want).enumerate() {
        let got = yuv_at(
            &picture,
            width,
            height,
            t.x + t.width / 2,
            t.y + t.height / 4,
        );
        assert!(
            near(got, want, 12),
            "tile {i} (participant {}) is {got:?}, not {want:?}",
            i + 1
        );
    }
    picture
}

/// Whether every component of `got` is within `tolerance` of `want`.
pub fn near(got: [u8; 3], want: [u8; 3], tolerance: u8) -> bool {
    got.iter()
        .zip(want)
        .all(|(g, w)| g.abs_diff(w) <= tolerance)
}

/// Asserts that the mixed audio from `from` on holds the tones of the participants
/// `present` (indices into the palette of tones), the quietest of them far louder
/// than the tone of anyone else.
pub fn assert_tones(file: &Path, from: Duration, present: &[usize]) {
    use recbox::mixer::tone::tone_power;
    use recbox::synth::TONES_HZ;
    let audio = audio_at(file, from, None);
    assert!(audio.len() >= 48_000 * 3, "{} samples", audio.len());
    let powers: Vec<f32> = TONES_HZ
        .iter()
        .map(|&f| tone_power(&audio, 48_000, f))
        .collect();
    let (mut quietest_present, mut loudest_absent) = (f32::MAX, 0.0f32);
    for (i, &p) in powers.iter().enumerate() {
        if present.contains(&i) {
            quietest_present = quietest_present.min(p);
        } else {
            loudest_absent = loudest_absent.max(p);
        }
    }
    assert!(
        quietest_present > 0.01 && quietest_present > 1000.0 * loudest_absent,
        "tone powers {powers:?}, present {present:?}"
    );
}
