//! Finding the encoder: list the video device nodes and try each until one
//! negotiates. Boards number their codec nodes differently (and cameras or
//! decoders sit beside them), so nothing is assumed about which node it is.

use std::io;
use std::path::{Path, PathBuf};

use super::{M2mDevice, M2mEncoder, V4l2Error};
use crate::encoder::EncoderConfig;

/// The `videoN` nodes in `dev` (normally `/dev`), in number order.
pub(crate) fn video_nodes(dev: &Path) -> io::Result<Vec<PathBuf>> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir(dev)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let number = entry
                .file_name()
                .to_str()?
                .strip_prefix("video")?
                .parse()
                .ok()?;
            Some((number, entry.path()))
        })
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().map(|(_, path)| path).collect())
}

/// Opens each candidate with `open_device` and returns the first that becomes a
/// working encoder for `config`; the error says why each one was not.
pub(crate) fn first_encoder<D, F>(
    candidates: &[PathBuf],
    open_device: F,
    config: &EncoderConfig,
) -> Result<M2mEncoder<D>, V4l2Error>
where
    D: M2mDevice,
    F: Fn(&Path) -> Result<D, V4l2Error>,
{
    let mut reasons = Vec::new();
    for path in candidates {
        match open_device(path).and_then(|device| M2mEncoder::new(device, config)) {
            Ok(encoder) => return Ok(encoder),
            Err(reason) => {
                tracing::debug!(device = %path.display(), %reason, "not an H.264 encoder");
                reasons.push(reason.to_string());
            }
        }
    }
    if reasons.is_empty() {
        return Err(V4l2Error::NoEncoder("no video devices".into()));
    }
    Err(V4l2Error::NoEncoder(reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::super::abi::FourCc;
    use super::super::sim::{SimDevice, SimOptions};
    use super::*;
    use crate::encoder::software::check::config;
    use crate::encoder::VideoEncoder;

    #[test]
    fn nodes_are_listed_in_number_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["video11", "video2", "video10", "media0", "videoX", "video0"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = video_nodes(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["video0", "video2", "video10", "video11"]);
        assert!(video_nodes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_first_device_that_negotiates_is_used() {
        let candidates: Vec<PathBuf> = ["/dev/video0", "/dev/video10", "/dev/video11"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let probe = |path: &Path| {
            let mut options = SimOptions {
                path: path.to_path_buf(),
                ..SimOptions::default()
            };
            match path.to_str() {
                // One that cannot be opened, then a decoder: neither encodes H.264.
                Some("/dev/video0") => return Err(V4l2Error::Sim("permission denied".into())),
                Some("/dev/video10") => options.capture_formats = vec![FourCc(*b"YU12")],
                _ => {}
            }
            Ok(SimDevice::new(options))
        };
        let encoder = first_encoder(&candidates, probe, &config(30)).unwrap();
        assert_eq!(encoder.name(), "v4l2 simulated encoder (/dev/video11)");

        let err = first_encoder(&candidates[..2], probe, &config(30))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("permission denied"), "{err}");
        assert!(
            err.contains("/dev/video10: the device encodes to [YU12], not H.264"),
            "{err}"
        );
        assert!(first_encoder(&[], probe, &config(30)).is_err());
    }
}
