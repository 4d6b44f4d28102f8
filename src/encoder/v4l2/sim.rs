//! A simulated stateful m2m encoder: reports capabilities, formats, sizes and
//! control ranges like a board's codec, takes pictures in its (padded) raw
//! layout, and returns openh264 bitstream with keyframe flags one picture late,
//! as hardware pipelines do. It lets the V4L2 path run end to end on hosts.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use super::abi::*;
use super::negotiate::{ControlRange, DeviceInfo, FrameSizes, Plan};
use super::raw::{read_frame, RawLayout};
use super::{Coded, EncoderCommand, M2mDevice, V4l2Error};
use crate::encoder::{EncoderConfig, EncoderKind, SoftwareEncoder};

/// What the simulated device claims to be.
#[derive(Debug, Clone)]
pub(crate) struct SimOptions {
    pub(crate) path: PathBuf,
    pub(crate) capabilities: u32,
    pub(crate) output_formats: Vec<FourCc>,
    pub(crate) capture_formats: Vec<FourCc>,
    pub(crate) frame_sizes: Option<FrameSizes>,
    pub(crate) force_key_frame: bool,
}

impl Default for SimOptions {
    /// Like a Raspberry Pi's `bcm2835-codec` encoder.
    fn default() -> Self {
        Self {
            path: PathBuf::from("/dev/video11"),
            capabilities: CAP_VIDEO_M2M | CAP_STREAMING,
            output_formats: vec![FourCc::YU12, FourCc::NV12],
            capture_formats: vec![FourCc::H264],
            frame_sizes: Some(FrameSizes::Stepwise {
                min: (32, 32),
                max: (1920, 1920),
                step: (2, 2),
            }),
            force_key_frame: true,
        }
    }
}

impl SimOptions {
    pub(crate) fn info(&self) -> DeviceInfo {
        let mut controls = vec![
            ControlRange::int(CID_BITRATE, 25_000, 25_000_000, 1),
            ControlRange::int(CID_H264_I_PERIOD, 1, 2047, 1),
            ControlRange::int(CID_REPEAT_SEQ_HEADER, 0, 1, 1),
            ControlRange::menu(CID_H264_PROFILE, &[0, 1, 2, 4]),
            ControlRange::menu(CID_H264_LEVEL, &(0..=15).collect::<Vec<_>>()),
        ];
        if self.force_key_frame {
            controls.push(ControlRange::int(CID_FORCE_KEY_FRAME, 0, 0, 0));
        }
        DeviceInfo {
            path: self.path.clone(),
            driver: "recbox-sim".into(),
            card: "simulated encoder".into(),
            capabilities: self.capabilities,
            output_formats: self.output_formats.clone(),
            capture_formats: self.capture_formats.clone(),
            frame_sizes: self.frame_sizes.clone(),
            controls,
        }
    }
}

/// A queued picture not encoded yet.
struct Pending {
    index: usize,
    sequence: u64,
    force_keyframe: bool,
}

/// Encoded bitstream waiting for a CAPTURE buffer.
struct Encoded {
    data: Vec<u8>,
    flags: u32,
    sequence: u64,
}

pub(crate) struct SimDevice {
    info: DeviceInfo,
    plan: Option<Plan>,
    layout: Option<RawLayout>,
    bitrate: i64,
    gop: i64,
    encoder: Option<SoftwareEncoder>,
    outputs: Vec<Vec<u8>>,
    captures: usize,
    pending: VecDeque<Pending>,
    done_outputs: VecDeque<usize>,
    queued_captures: VecDeque<usize>,
    results: VecDeque<Encoded>,
    force_next: bool,
    draining: bool,
    stopped: bool,
}

fn sim_error(what: impl Into<String>) -> V4l2Error {
    V4l2Error::Sim(what.into())
}

impl SimDevice {
    pub(crate) fn new(options: SimOptions) -> Self {
        Self {
            info: options.info(),
            plan: None,
            layout: None,
            bitrate: 1_000_000,
            gop: 30,
            encoder: None,
            outputs: Vec::new(),
            captures: 0,
            pending: VecDeque::new(),
            done_outputs: VecDeque::new(),
            queued_captures: VecDeque::new(),
            results: VecDeque::new(),
            force_next: false,
            draining: false,
            stopped: false,
        }
    }

    /// Encodes the oldest queued picture.
    fn encode_one(&mut self) -> Result<(), V4l2Error> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        let (plan, layout) = self
            .plan
            .as_ref()
            .zip(self.layout.as_ref())
            .ok_or_else(|| sim_error("not set up"))?;
        let (w, h) = plan.visible;
        let picture = read_frame(&self.outputs[p.index], layout, w, h);
        let encoder = self
            .encoder
            .as_mut()
            .ok_or_else(|| sim_error("not streaming"))?;
        let frame = encoder
            .encode_now(&picture, 0, p.force_keyframe)
            .map_err(|e| sim_error(e.to_string()))?;
        self.done_outputs.push_back(p.index);
        self.results.push_back(Encoded {
            data: frame.data,
            flags: if frame.keyframe { BUF_FLAG_KEYFRAME } else { 0 },
            sequence: p.sequence,
        });
        Ok(())
    }

    /// A client that waits gives the device time to finish what it holds.
    fn settle(&mut self, timeout: Duration) -> Result<(), V4l2Error> {
        if timeout > Duration::ZERO || self.draining {
            while !self.pending.is_empty() {
                self.encode_one()?;
            }
        }
        Ok(())
    }
}

impl M2mDevice for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Rows padded to 32 bytes and height to 16 lines, as codec hardware wants.
    fn set_formats(&mut self, plan: &Plan) -> Result<RawLayout, V4l2Error> {
        let (w, h) = plan.coded;
        let (stride, height) = (w.next_multiple_of(32), h.next_multiple_of(16));
        let layout = RawLayout {
            format: plan.raw,
            width: w,
            height,
            stride,
            size: stride * height * 3 / 2,
        };
        self.plan = Some(plan.clone());
        self.layout = Some(layout);
        Ok(layout)
    }

    fn set_control(&mut self, id: u32, value: i64) -> Result<(), V4l2Error> {
        let range = self
            .info
            .controls
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| sim_error(format!("no control {id:#x}")))?;
        if id != CID_FORCE_KEY_FRAME && !(range.min..=range.max).contains(&value) {
            return Err(sim_error(format!(
                "control {id:#x} value {value} out of range"
            )));
        }
        match id {
            CID_BITRATE => self.bitrate = value,
            CID_H264_I_PERIOD => self.gop = value,
            CID_FORCE_KEY_FRAME => self.force_next = true,
            _ => {}
        }
        Ok(())
    }

    fn allocate(&mut self, outputs: u32, captures: u32) -> Result<(usize, usize), V4l2Error> {
        let layout = self
            .layout
            .ok_or_else(|| sim_error("buffers before formats"))?;
        self.outputs = vec![vec![0; layout.size as usize]; outputs as usize];
        self.captures = captures as usize;
        Ok((self.outputs.len(), self.captures))
    }

    fn stream_on(&mut self) -> Result<(), V4l2Error> {
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| sim_error("streaming before formats"))?;
        let config = EncoderConfig {
            width: plan.visible.0,
            height: plan.visible.1,
            fps: plan.fps,
            bitrate_bps: self.bitrate as u32,
            gop_frames: self.gop as u32,
            kind: EncoderKind::Software,
        };
        self.encoder = Some(SoftwareEncoder::new(&config).map_err(|e| sim_error(e.to_string()))?);
        Ok(())
    }

    fn queue_output(
        &mut self,
        index: usize,
        sequence: u64,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), V4l2Error> {
        if self.stopped || self.draining {
            return Err(sim_error("picture queued while stopped"));
        }
        let buf = self
            .outputs
            .get_mut(index)
            .ok_or_else(|| sim_error(format!("no OUTPUT buffer {index}")))?;
        fill(buf);
        self.pending.push_back(Pending {
            index,
            sequence,
            force_keyframe: std::mem::take(&mut self.force_next),
        });
        // One picture of latency: a picture is encoded when the next arrives.
        while self.pending.len() > 1 {
            self.encode_one()?;
        }
        Ok(())
    }

    fn queue_capture(&mut self, index: usize) -> Result<(), V4l2Error> {
        if index >= self.captures || self.queued_captures.contains(&index) {
            return Err(sim_error(format!(
                "CAPTURE buffer {index} cannot be queued"
            )));
        }
        self.queued_captures.push_back(index);
        Ok(())
    }

    fn dequeue_output(&mut self, timeout: Duration) -> Result<Option<usize>, V4l2Error> {
        self.settle(timeout)?;
        Ok(self.done_outputs.pop_front())
    }

    fn dequeue_capture(&mut self, timeout: Duration) -> Result<Option<Coded>, V4l2Error> {
        self.settle(timeout)?;
        if self.queued_captures.is_empty() {
            return Ok(None);
        }
        if let Some(result) = self.results.pop_front() {
            let index = self.queued_captures.pop_front().expect("checked");
            return Ok(Some(Coded {
                index,
                data: result.data,
                flags: result.flags,
                sequence: result.sequence,
            }));
        }
        if self.draining {
            // Everything is out: an empty buffer marks the end.
            self.draining = false;
            self.stopped = true;
            let index = self.queued_captures.pop_front().expect("checked");
            return Ok(Some(Coded {
                index,
                data: Vec::new(),
                flags: BUF_FLAG_LAST,
                sequence: 0,
            }));
        }
        Ok(None)
    }

    fn command(&mut self, command: EncoderCommand) -> Result<(), V4l2Error> {
        match command {
            EncoderCommand::Stop => self.draining = true,
            EncoderCommand::Start => self.stopped = false,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::software::check::{assert_stream, config, picture, run};
    use crate::encoder::v4l2::raw::RawFormat;
    use crate::encoder::v4l2::M2mEncoder;
    use crate::encoder::VideoEncoder;

    #[test]
    fn v4l2_path_over_the_simulated_device_keeps_every_property() {
        let config = config(10);
        let mut encoder = M2mEncoder::new(SimDevice::new(SimOptions::default()), &config).unwrap();
        assert_eq!(encoder.name(), "v4l2 simulated encoder (/dev/video11)");
        assert_eq!(encoder.plan().raw, RawFormat::Yu12);
        let out = run(&mut encoder, &config, 25, &[13]);
        // A forced IDR starts a new GOP.
        assert_stream(&config, &out, &[0, 10, 13, 23]);
    }

    #[test]
    fn frames_come_out_one_picture_late_and_flush_empties_the_device() {
        let config = config(10);
        let mut encoder = M2mEncoder::new(SimDevice::new(SimOptions::default()), &config).unwrap();
        let pic = picture(&config, 0);
        assert!(encoder.encode(&pic, 0, false).unwrap().is_empty());
        let out = encoder.encode(&pic, 3000, false).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].pts == 0 && out[0].keyframe);
        let rest = encoder.flush().unwrap();
        assert_eq!(rest.len(), 1);
        assert!(rest[0].pts == 3000 && !rest[0].keyframe);
        assert!(encoder.flush().unwrap().is_empty());
    }

    #[test]
    fn nv12_and_aligned_sizes_round_trip_and_flush_restarts() {
        let config = EncoderConfig {
            width: 150,
            height: 90,
            ..config(8)
        };
        let options = SimOptions {
            output_formats: vec![FourCc::NV12],
            frame_sizes: Some(FrameSizes::Stepwise {
                min: (32, 32),
                max: (1920, 1088),
                step: (16, 16),
            }),
            ..SimOptions::default()
        };
        let mut encoder = M2mEncoder::new(SimDevice::new(options), &config).unwrap();
        assert_eq!(encoder.plan().raw, RawFormat::Nv12);
        assert_eq!(encoder.plan().coded, (160, 96));
        let out = run(&mut encoder, &config, 12, &[3]);
        assert_stream(&config, &out, &[0, 3, 11]);
        // After a flush the encoder takes pictures again.
        let again = run(&mut encoder, &config, 2, &[]);
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn without_a_force_control_requests_wait_for_the_gop() {
        let config = config(6);
        let options = SimOptions {
            force_key_frame: false,
            ..SimOptions::default()
        };
        let mut encoder = M2mEncoder::new(SimDevice::new(options), &config).unwrap();
        let out = run(&mut encoder, &config, 13, &[4]);
        assert_stream(&config, &out, &[0, 6, 12]);
    }
}
