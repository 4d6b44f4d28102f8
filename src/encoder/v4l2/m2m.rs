//! The encoding loop over an [`M2mDevice`]: negotiate, set up, then per picture
//! queue it in a free OUTPUT buffer and collect whatever bitstream is ready.

use std::time::{Duration, Instant};

use super::abi::{BUF_FLAG_ERROR, BUF_FLAG_KEYFRAME, BUF_FLAG_LAST, CID_FORCE_KEY_FRAME};
use super::negotiate::{negotiate, Plan};
use super::queue::BufferQueue;
use super::raw::{write_frame, RawLayout};
use super::{Coded, EncoderCommand, M2mDevice, V4l2Error};
use crate::encoder::{EncodedVideo, EncoderConfig, EncoderError, VideoEncoder};
use crate::media::h264::{nal_type, nal_units, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::media::picture::Picture;

/// How long to wait for the device when it has to give something back.
pub(crate) const WAIT: Duration = Duration::from_secs(2);
/// Slice of that wait between checks of both queues.
const POLL: Duration = Duration::from_millis(10);

/// Buffers asked for on each queue: enough to keep the hardware busy while one
/// picture is being written and one bitstream read.
const OUTPUT_BUFFERS: u32 = 4;
const CAPTURE_BUFFERS: u32 = 4;

pub(crate) struct M2mEncoder<D: M2mDevice> {
    device: D,
    name: String,
    config: EncoderConfig,
    plan: Plan,
    layout: RawLayout,
    queue: BufferQueue,
    headers: HeaderCache,
    warned_no_force: bool,
}

impl<D: M2mDevice> M2mEncoder<D> {
    /// Negotiates `config` with `device` and starts it streaming.
    pub(crate) fn new(mut device: D, config: &EncoderConfig) -> Result<Self, V4l2Error> {
        let info = device.info();
        let path = info.path.display().to_string();
        let name = format!("v4l2 {} ({path})", info.card);
        let plan = negotiate(info, config).map_err(|source| V4l2Error::Negotiate {
            path: path.clone(),
            source,
        })?;
        tracing::debug!(?plan, device = %path, driver = %info.driver, "V4L2 encoder plan");
        let layout = device.set_formats(&plan)?;
        layout.check(plan.visible.0, plan.visible.1)?;
        for &(id, value) in &plan.controls {
            device.set_control(id, value)?;
        }
        let (outputs, captures) = device.allocate(OUTPUT_BUFFERS, CAPTURE_BUFFERS)?;
        let mut queue = BufferQueue::new(outputs, captures);
        device.stream_on()?;
        for index in queue.captures_to_queue() {
            device.queue_capture(index)?;
        }
        Ok(Self {
            device,
            name,
            config: config.clone(),
            plan,
            layout,
            queue,
            headers: HeaderCache::default(),
            warned_no_force: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Takes back every OUTPUT buffer the device is done with; waits up to
    /// `timeout` for the first.
    fn reclaim_outputs(&mut self, mut timeout: Duration) -> Result<(), V4l2Error> {
        while let Some(index) = self.device.dequeue_output(timeout)? {
            self.queue.output_returned(index)?;
            timeout = Duration::ZERO;
        }
        Ok(())
    }

    /// Turns a returned bitstream buffer into a frame (if it holds one) and hands
    /// the buffer back to the device.
    fn take(&mut self, coded: Coded) -> Result<Option<EncodedVideo>, V4l2Error> {
        self.queue.capture_returned(coded.index)?;
        let frame = if coded.flags & BUF_FLAG_ERROR != 0 {
            tracing::warn!(
                sequence = coded.sequence,
                "the encoder flagged a corrupt frame"
            );
            None
        } else {
            // Drivers do not all set the keyframe flag; an IDR slice says it too.
            let keyframe = coded.flags & BUF_FLAG_KEYFRAME != 0
                || nal_units(&coded.data).any(|n| nal_type(n) == NAL_IDR);
            match self.headers.complete(coded.data, keyframe) {
                None => None,
                Some(data) => {
                    let done = self.queue.frame_done(coded.sequence)?;
                    if done.dropped > 0 {
                        tracing::warn!(frames = done.dropped, "the encoder dropped frames");
                    }
                    Some(EncodedVideo {
                        data,
                        keyframe,
                        pts: done.pts,
                    })
                }
            }
        };
        // After LAST the device takes no CAPTURE buffers until it is restarted.
        if coded.flags & BUF_FLAG_LAST == 0 {
            self.requeue_captures()?;
        }
        Ok(frame)
    }

    fn requeue_captures(&mut self) -> Result<(), V4l2Error> {
        for index in self.queue.captures_to_queue() {
            self.device.queue_capture(index)?;
        }
        Ok(())
    }

    fn encode_picture(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedVideo>, V4l2Error> {
        let mut out = Vec::new();
        self.reclaim_outputs(Duration::ZERO)?;
        let deadline = Instant::now() + WAIT;
        let index = loop {
            if let Some(index) = self.queue.free_output() {
                break index;
            }
            if Instant::now() >= deadline {
                return Err(V4l2Error::Timeout("return a picture buffer"));
            }
            // The device is behind. Take its finished bitstream, so that it never
            // stalls for lack of CAPTURE buffers, and wait a little for a picture
            // buffer.
            while let Some(coded) = self.device.dequeue_capture(Duration::ZERO)? {
                out.extend(self.take(coded)?);
            }
            self.reclaim_outputs(POLL)?;
        };
        if force_keyframe {
            if self.plan.force_key_frame {
                self.device.set_control(CID_FORCE_KEY_FRAME, 1)?;
            } else if !self.warned_no_force {
                tracing::warn!("keyframe requested but the device cannot force one");
                self.warned_no_force = true;
            }
        }
        let sequence = self.queue.output_queued(index, pts)?;
        let layout = self.layout;
        self.device.queue_output(index, sequence, &mut |buf| {
            write_frame(picture, &layout, buf)
        })?;
        while let Some(coded) = self.device.dequeue_capture(Duration::ZERO)? {
            out.extend(self.take(coded)?);
        }
        Ok(out)
    }

    /// Stops the device so it encodes what it holds, collects all of it up to the
    /// `LAST` buffer, and starts it again.
    fn drain(&mut self) -> Result<Vec<EncodedVideo>, V4l2Error> {
        let mut out = Vec::new();
        if self.queue.in_flight() == 0 {
            return Ok(out);
        }
        self.device.command(EncoderCommand::Stop)?;
        loop {
            let coded = self
                .device
                .dequeue_capture(WAIT)?
                .ok_or(V4l2Error::Timeout("finish draining"))?;
            let last = coded.flags & BUF_FLAG_LAST != 0;
            out.extend(self.take(coded)?);
            if last {
                break;
            }
        }
        self.reclaim_outputs(Duration::ZERO)?;
        let lost = self.queue.forget_in_flight();
        if lost > 0 {
            tracing::warn!(frames = lost, "frames did not come out of the encoder");
        }
        self.device.command(EncoderCommand::Start)?;
        self.requeue_captures()?;
        Ok(out)
    }
}

impl<D: M2mDevice> VideoEncoder for M2mEncoder<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedVideo>, EncoderError> {
        self.config.check_picture(picture)?;
        Ok(self.encode_picture(picture, pts, force_keyframe)?)
    }

    fn flush(&mut self) -> Result<Vec<EncodedVideo>, EncoderError> {
        Ok(self.drain()?)
    }
}

/// Makes every keyframe carry SPS and PPS: some encoders put them in a buffer of
/// their own, or only before the first IDR.
#[derive(Debug, Default)]
struct HeaderCache {
    /// The latest SPS and PPS, each behind a start code.
    sets: Vec<u8>,
}

impl HeaderCache {
    /// The access unit to hand on, or `None` when `data` held only parameter sets
    /// (kept for the next keyframe).
    fn complete(&mut self, data: Vec<u8>, keyframe: bool) -> Option<Vec<u8>> {
        let mut sets = Vec::new();
        let mut picture = false;
        for nal in nal_units(&data) {
            match nal_type(nal) {
                NAL_SPS | NAL_PPS => {
                    sets.extend_from_slice(&[0, 0, 0, 1]);
                    sets.extend_from_slice(nal);
                }
                1..=5 => picture = true,
                _ => {}
            }
        }
        let has_sets = !sets.is_empty();
        if has_sets {
            self.sets = sets;
        }
        if !picture {
            return None;
        }
        if keyframe && !has_sets && !self.sets.is_empty() {
            let mut au = self.sets.clone();
            au.extend_from_slice(&data);
            return Some(au);
        }
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_are_carried_to_keyframes_that_lack_them() {
        let mut cache = HeaderCache::default();
        let headers = vec![0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2];
        assert_eq!(cache.complete(headers, false), None);
        let idr = vec![0, 0, 0, 1, 0x65, 9];
        assert_eq!(
            cache.complete(idr.clone(), true).unwrap(),
            [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 9]
        );
        let p = vec![0, 0, 0, 1, 0x41, 7];
        assert_eq!(cache.complete(p.clone(), false).unwrap(), p);
        let full = [&[0, 0, 0, 1, 0x67, 3][..], &[0, 0, 1, 0x68, 4], &idr].concat();
        assert_eq!(cache.complete(full.clone(), true).unwrap(), full);
    }
}
