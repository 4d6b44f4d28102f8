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
