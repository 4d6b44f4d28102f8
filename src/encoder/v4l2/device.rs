//! The ioctl layer: a real V4L2 memory-to-memory encoder through the `v4l` crate's
//! device handle and kernel bindings. Single- and multi-planar devices both carry
//! one contiguous plane per buffer (YU12, NV12, H264), so one code path serves.

use std::io;
use std::os::raw::c_void;
use std::path::Path;
use std::time::Duration;

use v4l::control::{Control, Value};
use v4l::v4l2::{self as sys_ioctl, vidioc};
use v4l::v4l_sys::*;

use super::abi::*;
use super::negotiate::{multiplanar, ControlRange, DeviceInfo, FrameSizes, Plan};
use super::raw::RawLayout;
use super::{Coded, EncoderCommand, M2mDevice, V4l2Error};

/// The controls negotiation looks at; only these are queried.
const CONTROLS: [u32; 9] = [
    CID_BITRATE,
    CID_GOP_SIZE,
    CID_H264_I_PERIOD,
    CID_HEADER_MODE,
    CID_REPEAT_SEQ_HEADER,
    CID_PREPEND_SPSPPS_TO_IDR,
    CID_FORCE_KEY_FRAME,
    CID_H264_PROFILE,
    CID_H264_LEVEL,
];

/// One memory-mapped buffer.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one `Mapping` and only reached through it.
unsafe impl Send for Mapping {}

impl Mapping {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` bytes until drop.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `allocate` with this length.
        if let Err(e) = unsafe { sys_ioctl::munmap(self.ptr.cast(), self.len) } {
            tracing::warn!(error = %e, "munmap of a V4L2 buffer failed");
        }
    }
}

pub(crate) struct V4lDevice {
    device: v4l::Device,
    info: DeviceInfo,
    output_type: u32,
    capture_type: u32,
    multiplanar: bool,
    outputs: Vec<Mapping>,
    captures: Vec<Mapping>,
    /// Bytes of a raw frame (`sizeimage` of OUTPUT).
    frame_size: u32,
    streaming: bool,
}

impl V4lDevice {
    /// Opens `path` and gathers what negotiation needs: capabilities, formats on
    /// both queues, H.264 frame sizes and the codec controls.
    pub(crate) fn open(path: &Path) -> Result<Self, V4l2Error> {
        let name = path.display().to_string();
        let io_err = |op| {
            let path = name.clone();
            move |source| V4l2Error::Io { path, op, source }
        };
        let device = v4l::Device::with_path(path).map_err(io_err("open"))?;
        let caps = device.query_caps().map_err(io_err("VIDIOC_QUERYCAP"))?;
        let capabilities = caps.capabilities.bits();
        let multiplanar = multiplanar(capabilities).map_err(|source| V4l2Error::Negotiate {
            path: name.clone(),
            source,
        })?;
        let (output_type, capture_type) = if multiplanar {
            (
                v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE,
                v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
            )
        } else {
            (
                v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT,
                v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE,
            )
        };
        let fd = device.handle().fd();
        let info = DeviceInfo {
            path: path.to_path_buf(),
            driver: caps.driver,
            card: caps.card,
            capabilities,
            output_formats: enum_formats(fd, output_type).map_err(io_err("VIDIOC_ENUM_FMT"))?,
            capture_formats: enum_formats(fd, capture_type).map_err(io_err("VIDIOC_ENUM_FMT"))?,
            frame_sizes: frame_sizes(fd, FourCc::H264),
            controls: CONTROLS
                .iter()
                .filter_map(|&id| query_control(fd, id))
                .collect(),
        };
        Ok(Self {
            device,
            info,
            output_type,
            capture_type,
            multiplanar,
            outputs: Vec::new(),
            captures: Vec::new(),
            frame_size: 0,
            streaming: false,
        })
    }

    fn fd(&self) -> i32 {
        self.device.handle().fd()
    }

    fn io_error(&self, op: &'static str) -> impl FnOnce(io::Error) -> V4l2Error {
        let path = self.info.path.display().to_string();
        move |source| V4l2Error::Io { path, op, source }
    }

    /// `VIDIOC_S_FMT` with one plane of `fourcc`; returns (width, height,
    /// bytesperline, sizeimage) as the driver adjusted them.
    fn set_format(
        &self,
        buf_type: u32,
        fourcc: FourCc,
        (width, height): (u32, u32),
        sizeimage: u32,
    ) -> Result<(u32, u32, u32, u32), V4l2Error> {
        // SAFETY: plain C structs, zero is a valid value; the union member used
        // matches `type_`.
        unsafe {
            let mut fmt: v4l2_format = std::mem::zeroed();
            fmt.type_ = buf_type;
            if self.multiplanar {
                let pix = &mut fmt.fmt.pix_mp;
                pix.width = width;
                pix.height = height;
                pix.pixelformat = fourcc.to_u32();
                pix.field = v4l2_field_V4L2_FIELD_NONE;
                pix.num_planes = 1;
                pix.plane_fmt[0].sizeimage = sizeimage;
            } else {
                let pix = &mut fmt.fmt.pix;
                pix.width = width;
                pix.height = height;
                pix.pixelformat = fourcc.to_u32();
                pix.field = v4l2_field_V4L2_FIELD_NONE;
                pix.sizeimage = sizeimage;
            }
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_S_FMT, ptr(&mut fmt))
                .map_err(self.io_error("VIDIOC_S_FMT"))?;
            let (got, planes, answer) = if self.multiplanar {
                let pix = &fmt.fmt.pix_mp;
                let plane = pix.plane_fmt[0];
                (
                    pix.pixelformat,
                    pix.num_planes,
                    (pix.width, pix.height, plane.bytesperline, plane.sizeimage),
                )
            } else {
                let pix = &fmt.fmt.pix;
                (
                    pix.pixelformat,
                    1,
                    (pix.width, pix.height, pix.bytesperline, pix.sizeimage),
                )
            };
            if got != fourcc.to_u32() || planes != 1 {
                return Err(V4l2Error::Layout(format!(
                    "asked for {fourcc} in one plane, the driver set {} in {planes}",
                    FourCc::from_u32(got)
                )));
            }
            Ok(answer)
        }
    }

    /// The frame rate helps the rate control; not every driver takes it.
    fn set_frame_rate(&self, fps: u32) {
        // SAFETY: plain C struct; `output` matches an OUTPUT `type_`.
        let result = unsafe {
            let mut parm: v4l2_streamparm = std::mem::zeroed();
            parm.type_ = self.output_type;
            parm.parm.output.timeperframe = v4l2_fract {
                numerator: 1,
                denominator: fps,
            };
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_S_PARM, ptr(&mut parm))
        };
        if let Err(error) = result {
            tracing::debug!(%error, "VIDIOC_S_PARM not taken");
        }
    }

    /// Encodes only the picture inside a padded (aligned) frame.
    fn set_visible_area(&self, (width, height): (u32, u32)) {
        // SAFETY: plain C struct.
        let result = unsafe {
            let mut crop: v4l2_crop = std::mem::zeroed();
            crop.type_ = self.output_type;
            crop.c.width = width;
            crop.c.height = height;
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_S_CROP, ptr(&mut crop))
        };
        if let Err(error) = result {
            tracing::warn!(%error, "the device takes no crop; the recording has the aligned size");
        }
    }

    fn request_buffers(&mut self, buf_type: u32, count: u32) -> Result<Vec<Mapping>, V4l2Error> {
        // SAFETY: plain C structs; the plane array outlives the ioctls that point
        // at it; each mapping uses the offset and length the driver gave.
        unsafe {
            let mut req: v4l2_requestbuffers = std::mem::zeroed();
            req.count = count;
            req.type_ = buf_type;
            req.memory = v4l2_memory_V4L2_MEMORY_MMAP;
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_REQBUFS, ptr(&mut req))
                .map_err(self.io_error("VIDIOC_REQBUFS"))?;
            let mut maps = Vec::with_capacity(req.count as usize);
            for index in 0..req.count {
                let mut plane: v4l2_plane = std::mem::zeroed();
                let mut buf = self.buffer(buf_type, index, &mut plane);
                sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_QUERYBUF, ptr(&mut buf))
                    .map_err(self.io_error("VIDIOC_QUERYBUF"))?;
                let (offset, len) = if self.multiplanar {
                    (plane.m.mem_offset, plane.length)
                } else {
                    (buf.m.offset, buf.length)
                };
                let addr = sys_ioctl::mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.fd(),
                    libc::off_t::from(offset),
                )
                .map_err(self.io_error("mmap"))?;
                maps.push(Mapping {
                    ptr: addr.cast(),
                    len: len as usize,
                });
            }
            Ok(maps)
        }
    }

    /// A buffer descriptor for `index`, pointing at `plane` when multi-planar.
    fn buffer(&self, buf_type: u32, index: u32, plane: &mut v4l2_plane) -> v4l2_buffer {
        // SAFETY: plain C struct.
        let mut buf: v4l2_buffer = unsafe { std::mem::zeroed() };
        buf.index = index;
        buf.type_ = buf_type;
        buf.memory = v4l2_memory_V4L2_MEMORY_MMAP;
        if self.multiplanar {
            buf.m.planes = plane;
            buf.length = 1;
        }
        buf
    }

    /// Waits up to `timeout` for `events`; true when the device signalled one.
    fn wait(&self, events: i16, timeout: Duration) -> Result<bool, V4l2Error> {
        if timeout.is_zero() {
            return Ok(true);
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let ready = self
            .device
            .handle()
            .poll(events, ms)
            .map_err(self.io_error("poll"))?;
        Ok(ready > 0)
    }

    /// `VIDIOC_DQBUF`: `None` when nothing is ready (the fd is non-blocking).
    fn dequeue(&self, buf_type: u32) -> Result<Option<(v4l2_buffer, v4l2_plane)>, V4l2Error> {
        // SAFETY: plain C structs; `plane` outlives the ioctl.
        unsafe {
            let mut plane: v4l2_plane = std::mem::zeroed();
            let mut buf = self.buffer(buf_type, 0, &mut plane);
            match sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_DQBUF, ptr(&mut buf)) {
                Ok(()) => Ok(Some((buf, plane))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(self.io_error("VIDIOC_DQBUF")(e)),
            }
        }
    }

    fn stream(&self, on: bool) -> Result<(), V4l2Error> {
        let (request, op) = if on {
            (vidioc::VIDIOC_STREAMON, "VIDIOC_STREAMON")
        } else {
            (vidioc::VIDIOC_STREAMOFF, "VIDIOC_STREAMOFF")
        };
        for buf_type in [self.capture_type, self.output_type] {
            let mut t = buf_type;
            // SAFETY: the argument is the buffer type.
            unsafe { sys_ioctl::ioctl(self.fd(), request, ptr(&mut t)) }
                .map_err(self.io_error(op))?;
        }
        Ok(())
    }
}

fn ptr<T>(arg: &mut T) -> *mut c_void {
    (arg as *mut T).cast()
}

fn enum_formats(fd: i32, buf_type: u32) -> io::Result<Vec<FourCc>> {
    let mut formats = Vec::new();
    for index in 0.. {
        // SAFETY: plain C struct.
        let mut desc: v4l2_fmtdesc = unsafe { std::mem::zeroed() };
        desc.index = index;
        desc.type_ = buf_type;
        // SAFETY: `desc` is a valid VIDIOC_ENUM_FMT argument.
        match unsafe { sys_ioctl::ioctl(fd, vidioc::VIDIOC_ENUM_FMT, ptr(&mut desc)) } {
            Ok(()) => formats.push(FourCc::from_u32(desc.pixelformat)),
            // EINVAL ends the list.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => break,
            Err(e) => return Err(e),
        }
    }
    Ok(formats)
}

fn frame_sizes(fd: i32, fourcc: FourCc) -> Option<FrameSizes> {
    let mut discrete = Vec::new();
    for index in 0.. {
        // SAFETY: plain C struct; the union member read matches `type_`.
        unsafe {
            let mut size: v4l2_frmsizeenum = std::mem::zeroed();
            size.index = index;
            size.pixel_format = fourcc.to_u32();
            if sys_ioctl::ioctl(fd, vidioc::VIDIOC_ENUM_FRAMESIZES, ptr(&mut size)).is_err() {
                break;
            }
            if size.type_ == v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE {
                let d = size.__bindgen_anon_1.discrete;
                discrete.push((d.width, d.height));
                continue;
            }
            let s = size.__bindgen_anon_1.stepwise;
            let continuous = size.type_ == v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_CONTINUOUS;
            return Some(FrameSizes::Stepwise {
                min: (s.min_width, s.min_height),
                max: (s.max_width, s.max_height),
                step: if continuous {
                    (1, 1)
                } else {
                    (s.step_width, s.step_height)
                },
            });
        }
    }
    (!discrete.is_empty()).then_some(FrameSizes::Discrete(discrete))
}

/// `VIDIOC_QUERY_EXT_CTRL` for one id (and its menu items); `None` when the
/// device lacks it or has it disabled.
fn query_control(fd: i32, id: u32) -> Option<ControlRange> {
    // SAFETY: plain C structs, valid arguments of their ioctls.
    unsafe {
        let mut q: v4l2_query_ext_ctrl = std::mem::zeroed();
        q.id = id;
        sys_ioctl::ioctl(fd, vidioc::VIDIOC_QUERY_EXT_CTRL, ptr(&mut q)).ok()?;
        if q.flags & V4L2_CTRL_FLAG_DISABLED != 0 {
            return None;
        }
        let mut range = ControlRange::int(id, q.minimum, q.maximum, q.step);
        if q.type_ == v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU {
            // Drivers may skip items between minimum and maximum.
            range.menu = (q.minimum..=q.maximum)
                .filter(|&index| {
                    let mut m: v4l2_querymenu = std::mem::zeroed();
                    m.id = id;
                    m.index = index as u32;
                    sys_ioctl::ioctl(fd, vidioc::VIDIOC_QUERYMENU, ptr(&mut m)).is_ok()
                })
                .collect();
        }
        Some(range)
    }
}

impl M2mDevice for V4lDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn set_formats(&mut self, plan: &Plan) -> Result<RawLayout, V4l2Error> {
        let (w, h) = plan.coded;
        // The coded format first: encoders derive the raw side's limits from it.
        // A bitstream buffer as large as a raw frame holds any sane access unit.
        self.set_format(self.capture_type, FourCc::H264, plan.coded, w * h * 3 / 2)?;
        let (width, height, stride, size) =
            self.set_format(self.output_type, plan.raw.fourcc(), plan.coded, 0)?;
        self.set_frame_rate(plan.fps);
        if plan.coded != plan.visible {
            self.set_visible_area(plan.visible);
        }
        self.frame_size = size;
        Ok(RawLayout {
            format: plan.raw,
            width,
            height,
            stride,
            size,
        })
    }

    fn set_control(&mut self, id: u32, value: i64) -> Result<(), V4l2Error> {
        self.device
            .set_control(Control {
                id,
                value: Value::Integer(value),
            })
            .map_err(self.io_error("VIDIOC_S_EXT_CTRLS"))
    }

    fn allocate(&mut self, outputs: u32, captures: u32) -> Result<(usize, usize), V4l2Error> {
        self.outputs = self.request_buffers(self.output_type, outputs)?;
        self.captures = self.request_buffers(self.capture_type, captures)?;
        Ok((self.outputs.len(), self.captures.len()))
    }

    fn stream_on(&mut self) -> Result<(), V4l2Error> {
        self.stream(true)?;
        self.streaming = true;
        Ok(())
    }

    fn queue_output(
        &mut self,
        index: usize,
        sequence: u64,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), V4l2Error> {
        let mapping = self
            .outputs
            .get_mut(index)
            .ok_or_else(|| V4l2Error::Layout(format!("no OUTPUT buffer {index}")))?;
        let size = (self.frame_size as usize).min(mapping.len);
        fill(&mut mapping.bytes()[..size]);
        // SAFETY: plain C structs; `plane` outlives the ioctl.
        unsafe {
            // The plane is filled before `buf` points at it.
            let mut plane: v4l2_plane = std::mem::zeroed();
            plane.bytesused = size as u32;
            plane.length = mapping_len(&self.outputs, index);
            let mut buf = self.buffer(self.output_type, index as u32, &mut plane);
            buf.field = v4l2_field_V4L2_FIELD_NONE;
            // The device copies the timestamp to the bitstream it makes from
            // this picture: it carries the sequence number back.
            buf.timestamp.tv_sec = (sequence / 1_000_000) as _;
            buf.timestamp.tv_usec = (sequence % 1_000_000) as _;
            if !self.multiplanar {
                buf.bytesused = size as u32;
            }
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_QBUF, ptr(&mut buf))
                .map_err(self.io_error("VIDIOC_QBUF"))
        }
    }

    fn queue_capture(&mut self, index: usize) -> Result<(), V4l2Error> {
        // SAFETY: plain C structs; `plane` outlives the ioctl.
        unsafe {
            let mut plane: v4l2_plane = std::mem::zeroed();
            plane.length = mapping_len(&self.captures, index);
            let mut buf = self.buffer(self.capture_type, index as u32, &mut plane);
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_QBUF, ptr(&mut buf))
                .map_err(self.io_error("VIDIOC_QBUF"))
        }
    }

    fn dequeue_output(&mut self, timeout: Duration) -> Result<Option<usize>, V4l2Error> {
        if !self.wait(libc::POLLOUT, timeout)? {
            return Ok(None);
        }
        Ok(self
            .dequeue(self.output_type)?
            .map(|(buf, _)| buf.index as usize))
    }

    fn dequeue_capture(&mut self, timeout: Duration) -> Result<Option<Coded>, V4l2Error> {
        if !self.wait(libc::POLLIN, timeout)? {
            return Ok(None);
        }
        let Some((buf, plane)) = self.dequeue(self.capture_type)? else {
            return Ok(None);
        };
        let index = buf.index as usize;
        let (offset, used) = if self.multiplanar {
            (plane.data_offset as usize, plane.bytesused as usize)
        } else {
            (0, buf.bytesused as usize)
        };
        let mapping = self
            .captures
            .get_mut(index)
            .ok_or_else(|| V4l2Error::Layout(format!("no CAPTURE buffer {index}")))?;
        let bytes = mapping.bytes();
        let data = bytes[offset.min(bytes.len())..used.min(bytes.len())].to_vec();
        Ok(Some(Coded {
            index,
            data,
            flags: buf.flags,
            sequence: buf.timestamp.tv_sec as u64 * 1_000_000 + buf.timestamp.tv_usec as u64,
        }))
    }

    fn command(&mut self, command: EncoderCommand) -> Result<(), V4l2Error> {
        // SAFETY: plain C struct.
        unsafe {
            let mut cmd: v4l2_encoder_cmd = std::mem::zeroed();
            cmd.cmd = match command {
                EncoderCommand::Stop => V4L2_ENC_CMD_STOP,
                EncoderCommand::Start => V4L2_ENC_CMD_START,
            };
            sys_ioctl::ioctl(self.fd(), vidioc::VIDIOC_ENCODER_CMD, ptr(&mut cmd))
                .map_err(self.io_error("VIDIOC_ENCODER_CMD"))
        }
    }
}

fn mapping_len(maps: &[Mapping], index: usize) -> u32 {
    maps.get(index).map_or(0, |m| m.len as u32)
}

impl Drop for V4lDevice {
    fn drop(&mut self) {
        if self.streaming {
            if let Err(error) = self.stream(false) {
                tracing::warn!(%error, "stopping the V4L2 encoder failed");
            }
        }
    }
}
