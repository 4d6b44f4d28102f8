//! What to ask of a V4L2 stateful encoder, decided from what it reports about
//! itself and what the recording wants. Pure: the device layer gathers a
//! [`DeviceInfo`], this module turns it into a [`Plan`] or says why it cannot.

use std::path::PathBuf;

use super::abi::*;
use super::raw::RawFormat;
use crate::encoder::EncoderConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NegotiateError {
    #[error("not a memory-to-memory device (capabilities {0:#010x})")]
    NotM2m(u32),
    #[error("the device cannot stream (no V4L2_CAP_STREAMING)")]
    NoStreaming,
    #[error("the device encodes to {0:?}, not H.264")]
    NoH264(Vec<FourCc>),
    #[error("the device takes {0:?} pictures, neither YU12 nor NV12")]
    NoRawFormat(Vec<FourCc>),
    #[error("{width}x{height} is outside the device's frame sizes ({sizes})")]
    SizeOutOfRange {
        width: u32,
        height: u32,
        sizes: String,
    },
    #[error("the device has no GOP control (H264_I_PERIOD or GOP_SIZE), so keyframes cannot follow the fragment duration")]
    NoGopControl,
    #[error(
        "{width}x{height} at {fps} fps needs H.264 level {needed}, above what the device offers"
    )]
    LevelTooLow {
        width: u32,
        height: u32,
        fps: u32,
        needed: &'static str,
    },
}

/// Frame sizes a device can encode (`VIDIOC_ENUM_FRAMESIZES` on the coded format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameSizes {
    Discrete(Vec<(u32, u32)>),
    /// Continuous sizes are step-wise with step 1.
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// One control as `VIDIOC_QUERY_EXT_CTRL` (and `VIDIOC_QUERYMENU`) describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlRange {
    pub(crate) id: u32,
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) step: u64,
    /// The valid items of a menu control (drivers may skip some); empty otherwise.
    pub(crate) menu: Vec<i64>,
}

impl ControlRange {
    /// An integer control.
    pub(crate) fn int(id: u32, min: i64, max: i64, step: u64) -> Self {
        Self {
            id,
            min,
            max,
            step,
            menu: Vec::new(),
        }
    }

    /// A menu control offering `items`.
    #[cfg(test)]
    pub(crate) fn menu(id: u32, items: &[i64]) -> Self {
        Self {
            id,
            min: items.iter().copied().min().unwrap_or(0),
            max: items.iter().copied().max().unwrap_or(0),
            step: 1,
            menu: items.to_vec(),
        }
    }

    fn offers(&self, value: i64) -> bool {
        if self.menu.is_empty() {
            (self.min..=self.max).contains(&value)
        } else {
            self.menu.contains(&value)
        }
    }

    /// `value` clamped to the range and rounded down onto its step.
    fn clamp(&self, value: i64) -> i64 {
        let v = value.clamp(self.min, self.max);
        let step = self.step.max(1) as i64;
        self.min + (v - self.min) / step * step
    }
}

/// What a device says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    pub(crate) path: PathBuf,
    pub(crate) driver: String,
    pub(crate) card: String,
    /// Device capabilities (`device_caps`).
    pub(crate) capabilities: u32,
    /// Raw formats on the OUTPUT queue (pictures in).
    pub(crate) output_formats: Vec<FourCc>,
    /// Coded formats on the CAPTURE queue (bitstream out).
    pub(crate) capture_formats: Vec<FourCc>,
    /// H.264 frame sizes; `None` when the driver enumerates none.
    pub(crate) frame_sizes: Option<FrameSizes>,
    pub(crate) controls: Vec<ControlRange>,
}

impl DeviceInfo {
    fn control(&self, id: u32) -> Option<&ControlRange> {
        self.controls.iter().find(|c| c.id == id)
    }
}

/// Whether a device with these capabilities uses the multi-planar buffer API.
pub(crate) fn multiplanar(capabilities: u32) -> Result<bool, NegotiateError> {
    if capabilities & CAP_VIDEO_M2M != 0 {
        Ok(false)
    } else if capabilities & CAP_VIDEO_M2M_MPLANE != 0 {
        Ok(true)
    } else {
        Err(NegotiateError::NotM2m(capabilities))
    }
}

/// How to set the device up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) multiplanar: bool,
    pub(crate) raw: RawFormat,
    /// The pictures' size.
    pub(crate) visible: (u32, u32),
    /// The size the device encodes: `visible` rounded up to its step.
    pub(crate) coded: (u32, u32),
    pub(crate) fps: u32,
    /// Controls to set, in order.
    pub(crate) controls: Vec<(u32, i64)>,
    /// Keyframes on request through `FORCE_KEY_FRAME`.
    pub(crate) force_key_frame: bool,
}

/// Decides formats, size and controls for `config` on `device`.
pub(crate) fn negotiate(
    device: &DeviceInfo,
    config: &EncoderConfig,
) -> Result<Plan, NegotiateError> {
    let multiplanar = multiplanar(device.capabilities)?;
    if device.capabilities & CAP_STREAMING == 0 {
        return Err(NegotiateError::NoStreaming);
    }
    if !device.capture_formats.contains(&FourCc::H264) {
        return Err(NegotiateError::NoH264(device.capture_formats.clone()));
    }
    // YU12 is what pictures are; NV12 costs a conversion but is what most
    // hardware encoders take natively.
    let raw = if device.output_formats.contains(&FourCc::YU12) {
        RawFormat::Yu12
    } else if device.output_formats.contains(&FourCc::NV12) {
        RawFormat::Nv12
    } else {
        return Err(NegotiateError::NoRawFormat(device.output_formats.clone()));
    };
    let visible = (config.width, config.height);
    let coded = coded_size(device.frame_sizes.as_ref(), visible)?;
    if coded != visible {
        tracing::info!(?visible, ?coded, "encoding at the device's aligned size");
    }

    let mut controls = Vec::new();
    match device.control(CID_BITRATE) {
        Some(range) => {
            let bitrate = range.clamp(i64::from(config.bitrate_bps));
            if bitrate != i64::from(config.bitrate_bps) {
                tracing::warn!(
                    wanted = config.bitrate_bps,
                    bitrate,
                    min = range.min,
                    max = range.max,
                    "bitrate clamped to the device's range"
                );
            }
            controls.push((CID_BITRATE, bitrate));
        }
        None => tracing::warn!("the device has no bitrate control; it picks its own"),
    }

    let gop_controls: Vec<&ControlRange> = [CID_H264_I_PERIOD, CID_GOP_SIZE]
        .into_iter()
        .filter_map(|id| device.control(id))
        .collect();
    if gop_controls.is_empty() {
        return Err(NegotiateError::NoGopControl);
    }
    // Drivers differ in which of the two they honour: set both when offered.
    for range in gop_controls {
        let gop = range.clamp(i64::from(config.gop_frames));
        if gop != i64::from(config.gop_frames) {
            tracing::warn!(
                wanted = config.gop_frames,
                gop,
                "GOP length clamped to the device's range"
            );
        }
        controls.push((range.id, gop));
    }

    // SPS and PPS with every IDR, in the same buffer, so each fragment decodes alone.
    for (id, value) in [
        (CID_REPEAT_SEQ_HEADER, 1),
        (CID_PREPEND_SPSPPS_TO_IDR, 1),
        (CID_HEADER_MODE, HEADER_MODE_JOINED),
    ] {
        if device.control(id).is_some_and(|c| c.offers(value)) {
            controls.push((id, value));
        }
    }

    if let Some(range) = device.control(CID_H264_PROFILE) {
        let preferred = [
            PROFILE_HIGH,
            PROFILE_MAIN,
            PROFILE_CONSTRAINED_BASELINE,
            PROFILE_BASELINE,
        ];
        match preferred.into_iter().find(|&p| range.offers(p)) {
            Some(profile) => controls.push((CID_H264_PROFILE, profile)),
            None => tracing::warn!(?range, "no known H.264 profile offered; using the default"),
        }
    }
    if let Some(range) = device.control(CID_H264_LEVEL) {
        let bitrate = controls
            .iter()
            .find(|(id, _)| *id == CID_BITRATE)
            .map_or(i64::from(config.bitrate_bps), |&(_, b)| b);
        controls.push((CID_H264_LEVEL, level(range, coded, config.fps, bitrate)?));
    }

    let force_key_frame = device.control(CID_FORCE_KEY_FRAME).is_some();
    if !force_key_frame {
        tracing::warn!("the device cannot force keyframes; requests wait for the next GOP");
    }
    Ok(Plan {
        multiplanar,
        raw,
        visible,
        coded,
        fps: config.fps,
        controls,
        force_key_frame,
    })
}

fn coded_size(
    sizes: Option<&FrameSizes>,
    (w, h): (u32, u32),
) -> Result<(u32, u32), NegotiateError> {
    let out_of_range = |sizes: String| NegotiateError::SizeOutOfRange {
        width: w,
        height: h,
        sizes,
    };
    match sizes {
        None => Ok((w, h)),
        Some(FrameSizes::Stepwise { min, max, step }) => {
            let fit = |v: u32, min: u32, max: u32, step: u32| {
                let step = step.max(1);
                let v = min + (v.max(min) - min).div_ceil(step) * step;
                (v <= max).then_some(v)
            };
            match (fit(w, min.0, max.0, step.0), fit(h, min.1, max.1, step.1)) {
                // Smaller than the minimum would need a different picture, not padding.
                (Some(cw), Some(ch)) if w >= min.0 && h >= min.1 => Ok((cw, ch)),
                _ => Err(out_of_range(format!(
                    "{}x{} to {}x{} in steps of {}x{}",
                    min.0, min.1, max.0, max.1, step.0, step.1
                ))),
            }
        }
        Some(FrameSizes::Discrete(list)) => list
            .iter()
            .filter(|&&(dw, dh)| dw >= w && dh >= h)
            .min_by_key(|&&(dw, dh)| dw * dh)
            .copied()
            .ok_or_else(|| out_of_range(format!("{list:?}"))),
    }
}

/// H.264 levels (Table A-1): V4L2 menu index, name, max macroblocks per second,
/// max frame size in macroblocks, max bitrate in kbit/s (Baseline/Main).
const LEVELS: [(i64, &str, u64, u64, u64); 15] = [
    (0, "1.0", 1_485, 99, 64),
    (2, "1.1", 3_000, 396, 192),
    (3, "1.2", 6_000, 396, 384),
    (4, "1.3", 11_880, 396, 768),
    (5, "2.0", 11_880, 396, 2_000),
    (6, "2.1", 19_800, 792, 4_000),
    (7, "2.2", 20_250, 1_620, 4_000),
    (8, "3.0", 40_500, 1_620, 10_000),
    (9, "3.1", 108_000, 3_600, 14_000),
    (10, "3.2", 216_000, 5_120, 20_000),
    (11, "4.0", 245_760, 8_192, 20_000),
    (12, "4.1", 245_760, 8_192, 50_000),
    (13, "4.2", 522_240, 8_704, 50_000),
    (14, "5.0", 589_824, 22_080, 135_000),
    (15, "5.1", 983_040, 36_864, 240_000),
];

/// The lowest level the device offers that fits size, rate and bitrate.
fn level(
    range: &ControlRange,
    (w, h): (u32, u32),
    fps: u32,
    bitrate: i64,
) -> Result<i64, NegotiateError> {
    let frame_mbs = u64::from(w.div_ceil(16)) * u64::from(h.div_ceil(16));
    let kbps = bitrate.max(0) as u64 / 1000;
    let fits = |&&(_, _, mbps, fs, max_kbps): &&(i64, &str, u64, u64, u64)| {
        frame_mbs <= fs && frame_mbs * u64::from(fps) <= mbps && kbps <= max_kbps
    };
    let needed = LEVELS.iter().find(fits).map_or("above 5.1", |l| l.1);
    LEVELS
        .iter()
        .filter(fits)
        .find(|l| range.offers(l.0))
        .map(|l| l.0)
        .ok_or(NegotiateError::LevelTooLow {
            width: w,
            height: h,
            fps,
            needed,
        })
}

#[cfg(test)]
mod tests {
    use super::super::sim::SimOptions;
    use super::*;
    use crate::encoder::EncoderKind;

    fn want(width: u32, height: u32) -> EncoderConfig {
        EncoderConfig {
            width,
            height,
            fps: 30,
            bitrate_bps: 2_000_000,
            gop_frames: 60,
            kind: EncoderKind::Auto,
        }
    }

    fn info() -> DeviceInfo {
        SimOptions::default().info()
    }

    fn control(plan: &Plan, id: u32) -> Option<i64> {
        plan.controls.iter().find(|c| c.0 == id).map(|c| c.1)
    }

    #[test]
    fn yu12_is_preferred_and_controls_follow_the_config() {
        let plan = negotiate(&info(), &want(1280, 720)).unwrap();
        assert_eq!(plan.raw, RawFormat::Yu12);
        assert!(!plan.multiplanar);
        assert_eq!((plan.visible, plan.coded), ((1280, 720), (1280, 720)));
        assert_eq!(control(&plan, CID_BITRATE), Some(2_000_000));
        assert_eq!(control(&plan, CID_H264_I_PERIOD), Some(60));
        assert_eq!(control(&plan, CID_REPEAT_SEQ_HEADER), Some(1));
        assert_eq!(control(&plan, CID_H264_PROFILE), Some(PROFILE_HIGH));
        // 3600 macroblocks at 30 fps: level 3.1.
        assert_eq!(control(&plan, CID_H264_LEVEL), Some(9));
        assert!(plan.force_key_frame);
    }

    #[test]
    fn nv12_when_there_is_no_yu12_and_mplane_devices() {
        let mut info = info();
        info.output_formats = vec![FourCc(*b"RGB3"), FourCc::NV12];
        info.capabilities = CAP_VIDEO_M2M_MPLANE | CAP_STREAMING;
        let plan = negotiate(&info, &want(640, 480)).unwrap();
        assert_eq!(plan.raw, RawFormat::Nv12);
        assert!(plan.multiplanar);
    }

    #[test]
    fn devices_that_cannot_do_it_are_refused_with_the_reason() {
        let mut no_h264 = info();
        no_h264.capture_formats = vec![FourCc(*b"JPEG")];
        assert_eq!(
            negotiate(&no_h264, &want(640, 480)),
            Err(NegotiateError::NoH264(vec![FourCc(*b"JPEG")]))
        );
        let err = negotiate(&no_h264, &want(640, 480)).unwrap_err();
        assert_eq!(err.to_string(), "the device encodes to [JPEG], not H.264");

        let mut no_raw = info();
        no_raw.output_formats = vec![FourCc(*b"RGB3")];
        assert!(matches!(
            negotiate(&no_raw, &want(640, 480)),
            Err(NegotiateError::NoRawFormat(_))
        ));

        let mut camera = info();
        camera.capabilities = 0x0000_0001 | CAP_STREAMING;
        assert!(matches!(
            negotiate(&camera, &want(640, 480)),
            Err(NegotiateError::NotM2m(_))
        ));

        let mut no_gop = info();
        no_gop.controls.retain(|c| c.id != CID_H264_I_PERIOD);
        assert_eq!(
            negotiate(&no_gop, &want(640, 480)),
            Err(NegotiateError::NoGopControl)
        );
    }

    #[test]
    fn size_is_rounded_to_the_step_or_refused() {
        let mut info = info();
        info.frame_sizes = Some(FrameSizes::Stepwise {
            min: (32, 32),
            max: (1920, 1088),
            step: (16, 16),
        });
        let plan = negotiate(&info, &want(1920, 1080)).unwrap();
        assert_eq!((plan.visible, plan.coded), ((1920, 1080), (1920, 1088)));
        assert_eq!(negotiate(&info, &want(100, 50)).unwrap().coded, (112, 64));
        for (w, h) in [(1936, 1080), (1920, 1090), (16, 64)] {
            let err = negotiate(&info, &want(w, h)).unwrap_err();
            assert!(
                matches!(err, NegotiateError::SizeOutOfRange { .. }),
                "{w}x{h}"
            );
            assert!(err.to_string().contains("in steps of 16x16"), "{err}");
        }

        info.frame_sizes = Some(FrameSizes::Discrete(vec![
            (1920, 1088),
            (640, 480),
            (1280, 720),
        ]));
        assert_eq!(
            negotiate(&info, &want(1280, 720)).unwrap().coded,
            (1280, 720)
        );
        assert_eq!(
            negotiate(&info, &want(800, 600)).unwrap().coded,
            (1280, 720)
        );
        assert_eq!(
            negotiate(&info, &want(1000, 800)).unwrap().coded,
            (1920, 1088)
        );
        assert!(negotiate(&info, &want(2560, 1440)).is_err());
    }

    #[test]
    fn bitrate_and_gop_are_clamped_to_the_controls() {
        let mut config = want(640, 480);
        config.bitrate_bps = 50_000_000;
        config.gop_frames = 5000;
        let plan = negotiate(&info(), &config).unwrap();
        assert_eq!(control(&plan, CID_BITRATE), Some(25_000_000));
        assert_eq!(control(&plan, CID_H264_I_PERIOD), Some(2047));

        let mut stepped = info();
        stepped
            .controls
            .push(ControlRange::int(CID_GOP_SIZE, 1, 300, 1));
        for c in &mut stepped.controls {
            if c.id == CID_BITRATE {
                *c = ControlRange::int(CID_BITRATE, 64_000, 10_000_000, 64_000);
            }
        }
        config.bitrate_bps = 1_000_000;
        config.gop_frames = 60;
        let plan = negotiate(&stepped, &config).unwrap();
        assert_eq!(control(&plan, CID_BITRATE), Some(960_000));
        // Both GOP controls are set when both exist.
        assert_eq!(control(&plan, CID_GOP_SIZE), Some(60));
        assert_eq!(control(&plan, CID_H264_I_PERIOD), Some(60));
    }

    #[test]
    fn missing_optional_controls_are_skipped() {
        let mut bare = info();
        bare.controls.retain(|c| c.id == CID_H264_I_PERIOD);
        let plan = negotiate(&bare, &want(640, 480)).unwrap();
        assert!(!plan.force_key_frame);
        assert_eq!(plan.controls, vec![(CID_H264_I_PERIOD, 60)]);
    }

    #[test]
    fn profile_and_level_come_from_what_the_menus_offer() {
        let mut info = info();
        for c in &mut info.controls {
            match c.id {
                CID_H264_PROFILE => *c = ControlRange::menu(c.id, &[0, 1, 2]),
                // Only 4.0 and above.
                CID_H264_LEVEL => *c = ControlRange::menu(c.id, &[11, 12, 13]),
                _ => {}
            }
        }
        let plan = negotiate(&info, &want(640, 480)).unwrap();
        assert_eq!(control(&plan, CID_H264_PROFILE), Some(PROFILE_MAIN));
        assert_eq!(control(&plan, CID_H264_LEVEL), Some(11));

        for c in &mut info.controls {
            if c.id == CID_H264_LEVEL {
                *c = ControlRange::menu(c.id, &[0, 2, 8]);
            }
        }
        let err = negotiate(&info, &want(1920, 1080)).unwrap_err();
        assert_eq!(
            err,
            NegotiateError::LevelTooLow {
                width: 1920,
                height: 1080,
                fps: 30,
                needed: "4.0"
            }
        );
    }
}
