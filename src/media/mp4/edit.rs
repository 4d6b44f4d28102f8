//! In-place edits of a written init segment: durations patched when a segment is
//! closed, the Opus pre-skip cleared in later segments.

use super::reader::{read_init, InitInfo, ReadError};
use super::{ticks_to_us, MOVIE_TIMESCALE};

fn movie_units(ticks: u64, timescale: u32) -> u64 {
    // Round up so the reported duration never cuts off the last sample.
    let scaled = u128::from(ticks) * u128::from(MOVIE_TIMESCALE);
    scaled.div_ceil(u128::from(timescale.max(1))) as u64
}

/// The bytes to write over the duration fields so that `mvhd`, every `tkhd` and
/// `mehd` report `track_ends` (track units). Fixed-size fields: no byte moves.
pub fn duration_patches(init: &InitInfo, track_ends: &[(u32, u64)]) -> Vec<(u64, [u8; 8])> {
    let mut patches = Vec::new();
    let mut movie = 0;
    for t in &init.tracks {
        let end = track_ends
            .iter()
            .find(|(id, _)| *id == t.track_id)
            .map_or(0, |e| e.1);
        let units = movie_units(end, t.timescale);
        movie = movie.max(units);
        if let Some(at) = t.tkhd_duration_at {
            patches.push((at, units.to_be_bytes()));
        }
    }
    for at in [init.mvhd_duration_at, init.mehd_duration_at]
        .into_iter()
        .flatten()
    {
        patches.push((at, movie.to_be_bytes()));
    }
    patches
}

/// An init segment with its duration fields zeroed: equal for two segments of one
/// recording (durations are patched when each is closed), different when the codec
/// configuration, size or tracks differ.
pub fn stream_configuration(init: &[u8]) -> Result<Vec<u8>, ReadError> {
    let info = read_init(&mut std::io::Cursor::new(init), init.len() as u64)?;
    let mut bytes = init[..(info.len as usize).min(init.len())].to_vec();
    for (at, zero) in duration_patches(&info, &[]) {
        if let Some(field) = bytes.get_mut(at as usize..at as usize + zero.len()) {
            field.copy_from_slice(&zero);
        }
    }
    zero_pre_skip(&info, &mut bytes);
    Ok(bytes)
}

/// The init segment for the segments of a recording after its first: the Opus
/// `PreSkip` is 0. The encoder's warm-up samples are at the very start of the
/// recording only; players drop `PreSkip` samples at the start of every file (ffmpeg
/// and the browsers built on it do), which would cut real audio from each later
/// segment. Same length and layout as `init`, so one [`InitInfo`] serves both.
pub fn continuation_init(init: &[u8]) -> Result<Vec<u8>, ReadError> {
    let info = read_init(&mut std::io::Cursor::new(init), init.len() as u64)?;
    let mut bytes = init.to_vec();
    zero_pre_skip(&info, &mut bytes);
    Ok(bytes)
}

fn zero_pre_skip(info: &InitInfo, bytes: &mut [u8]) {
    for at in info.tracks.iter().filter_map(|t| t.pre_skip_at) {
        if let Some(field) = bytes.get_mut(at as usize..at as usize + 2) {
            field.fill(0);
        }
    }
}

/// Movie duration in microseconds for the given track ends.
pub fn movie_duration_us(init: &InitInfo, track_ends: &[(u32, u64)]) -> u64 {
    track_ends
        .iter()
        .filter_map(|(id, end)| init.timescale(*id).map(|ts| ticks_to_us(*end, ts)))
        .max()
        .unwrap_or(0)
}
