//! The box's hardware encoder: a V4L2 memory-to-memory stateful H.264 encoder.
//!
//! Everything that decides (negotiation, buffer queue, raw layout, discovery, the
//! encoding loop in [`M2mEncoder`]) is plain Rust that drives an [`M2mDevice`].
//! The ioctls live in `device` (feature `v4l2`, which needs libclang to build);
//! the tests' `sim` is a device that encodes with openh264, so the whole path runs
//! on hosts. Without the feature only the tests build this module: nothing else
//! could reach it.

pub(crate) mod abi;
#[cfg(feature = "v4l2")]
pub(crate) mod device;
pub(crate) mod discover;
pub(crate) mod m2m;
pub(crate) mod negotiate;
pub(crate) mod queue;
pub(crate) mod raw;
#[cfg(test)]
mod sim;

#[cfg(feature = "v4l2")]
use std::path::Path;
use std::time::Duration;

pub(crate) use m2m::M2mEncoder;
pub(crate) use negotiate::{DeviceInfo, NegotiateError, Plan};
pub(crate) use raw::RawLayout;

use super::EncoderError;
#[cfg(feature = "v4l2")]
use super::{EncoderConfig, VideoEncoder};

#[derive(Debug, thiserror::Error)]
pub(crate) enum V4l2Error {
    #[cfg(feature = "v4l2")]
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Negotiate {
        path: String,
        source: NegotiateError,
    },
    #[error("buffer queue: {0}")]
    Queue(#[from] queue::QueueError),
    #[error("raw frame layout: {0}")]
    Layout(String),
    #[error("the device did not {0} within {t:?}", t = m2m::WAIT)]
    Timeout(&'static str),
    #[error("no usable H.264 encoder: {0}")]
    NoEncoder(String),
    #[cfg(test)]
    #[error("simulated device: {0}")]
    Sim(String),
}

/// A V4L2 error as the rest of the firmware sees it: its message and its sources,
/// not its variants, which nothing outside this module matches on.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HardwareError(#[from] V4l2Error);

impl From<V4l2Error> for EncoderError {
    fn from(e: V4l2Error) -> Self {
        Self::V4l2(e.into())
    }
}

/// A bitstream buffer the device returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coded {
    pub(crate) index: usize,
    pub(crate) data: Vec<u8>,
    /// `V4L2_BUF_FLAG_*`.
    pub(crate) flags: u32,
    /// The sequence number of the picture it encodes (copied timestamp).
    pub(crate) sequence: u64,
}

/// `VIDIOC_ENCODER_CMD` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncoderCommand {
    /// Encode what is queued, then mark the last bitstream buffer `LAST`.
    Stop,
    /// Take pictures again after a stop.
    Start,
}

/// A stateful memory-to-memory encoder, as the encoding loop drives it. Buffers
/// are memory-mapped and addressed by index; OUTPUT carries pictures in, CAPTURE
/// bitstream out.
pub(crate) trait M2mDevice: Send {
    /// What the device reported when it was opened.
    fn info(&self) -> &DeviceInfo;
    /// Sets the coded format on CAPTURE and the raw one on OUTPUT, the frame rate
    /// and the visible area; returns the raw layout the device chose.
    fn set_formats(&mut self, plan: &Plan) -> Result<RawLayout, V4l2Error>;
    fn set_control(&mut self, id: u32, value: i64) -> Result<(), V4l2Error>;
    /// Allocates and maps buffers on both queues; returns how many each got.
    fn allocate(&mut self, outputs: u32, captures: u32) -> Result<(usize, usize), V4l2Error>;
    fn stream_on(&mut self) -> Result<(), V4l2Error>;
    /// Fills OUTPUT buffer `index` through `fill` and queues it stamped `sequence`.
    fn queue_output(
        &mut self,
        index: usize,
        sequence: u64,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), V4l2Error>;
    fn queue_capture(&mut self, index: usize) -> Result<(), V4l2Error>;
    /// An OUTPUT buffer the device has finished reading, waiting up to `timeout`.
    fn dequeue_output(&mut self, timeout: Duration) -> Result<Option<usize>, V4l2Error>;
    /// A finished bitstream buffer, waiting up to `timeout`.
    fn dequeue_capture(&mut self, timeout: Duration) -> Result<Option<Coded>, V4l2Error>;
    fn command(&mut self, command: EncoderCommand) -> Result<(), V4l2Error>;
}

/// Opens the V4L2 encoder at `device`, or the first usable one under `/dev`.
#[cfg(feature = "v4l2")]
pub(crate) fn open(
    config: &EncoderConfig,
    device: Option<&Path>,
) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    let candidates = match device {
        Some(path) => vec![path.to_path_buf()],
        None => discover::video_nodes(Path::new("/dev")).map_err(|source| V4l2Error::Io {
            path: "/dev".into(),
            op: "list video devices",
            source,
        })?,
    };
    let encoder = discover::first_encoder(&candidates, device::V4lDevice::open, config)?;
    Ok(Box::new(encoder))
}
