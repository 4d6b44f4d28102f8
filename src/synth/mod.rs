//! Synthetic participants: real H.264 (openh264), VP8 or VP9 (libvpx) of a moving
//! test pattern and real Opus (libopus) of a tone, for demos, tests and benchmarks.
//! Each participant gets a distinct colour and tone so a composited picture and a
//! mixed track can be checked.

pub(crate) mod audio;
pub(crate) mod feed;
pub mod video;
pub(crate) mod vpx;

pub use audio::{ToneSource, ToneSpec};
pub use feed::SyntheticFeed;
pub use video::{PatternCodec, PatternSource, PatternSpec};

/// Distinct background colours (R, G, B) for up to 16 participants.
pub const PALETTE: [[u8; 3]; 16] = [
    [220, 40, 40],
    [40, 180, 60],
    [40, 80, 220],
    [230, 200, 30],
    [200, 60, 200],
    [40, 200, 200],
    [240, 130, 30],
    [130, 70, 30],
    [120, 120, 120],
    [250, 150, 180],
    [20, 100, 60],
    [100, 40, 160],
    [160, 200, 60],
    [30, 40, 100],
    [200, 160, 110],
    [90, 20, 40],
];

/// Distinct tone frequencies in Hz for up to 16 participants, chosen so that no tone
/// is a harmonic of another below 4 kHz and any two are at least 40 Hz apart.
pub const TONES_HZ: [f32; 16] = [
    300.0, 370.0, 440.0, 510.0, 590.0, 670.0, 730.0, 810.0, 890.0, 970.0, 1050.0, 1130.0, 1230.0,
    1330.0, 1430.0, 1530.0,
];

/// Deterministic pseudo-random bytes without zeros, so they never emulate an H.264
/// start code: stand-in frame payloads where real encoding would only cost time.
pub fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 255) as u8 + 1
        })
        .collect()
}
