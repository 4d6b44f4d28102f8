//! Raw frames in a device's buffer layout: I420 pictures written as YU12 or NV12
//! with the device's row stride and coded (aligned) size, and read back.

#[cfg(feature = "v4l2")]
use super::abi::FourCc;
use super::V4l2Error;
use crate::media::picture::Picture;

/// The raw formats the encoder can feed, both one contiguous buffer per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawFormat {
    /// Planar I420: what pictures already are.
    Yu12,
    /// Luma plane then interleaved Cb/Cr rows: needs a conversion.
    Nv12,
}

impl RawFormat {
    #[cfg(feature = "v4l2")]
    pub(crate) fn fourcc(self) -> FourCc {
        match self {
            Self::Yu12 => FourCc::YU12,
            Self::Nv12 => FourCc::NV12,
        }
    }
}

/// How the device wants one raw frame laid out (what `S_FMT` answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawLayout {
    pub(crate) format: RawFormat,
    /// Coded size: at least the picture's, rounded up to the device's alignment.
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Bytes per luma row.
    pub(crate) stride: u32,
    /// Bytes of one frame buffer.
    pub(crate) size: u32,
}

impl RawLayout {
    /// Bytes per chroma row (of each plane for YU12, of the interleaved plane for NV12).
    fn chroma_stride(&self) -> usize {
        match self.format {
            RawFormat::Yu12 => self.stride as usize / 2,
            RawFormat::Nv12 => self.stride as usize,
        }
    }

    /// Bytes the frame occupies in the buffer.
    fn frame_bytes(&self) -> usize {
        let (stride, h) = (self.stride as usize, self.height as usize);
        stride * h + self.chroma_stride() * h / 2 * self.chroma_planes()
    }

    fn chroma_planes(&self) -> usize {
        match self.format {
            RawFormat::Yu12 => 2,
            RawFormat::Nv12 => 1,
        }
    }

    /// Refuses a layout that cannot hold a `width` x `height` picture, so that
    /// writing and reading frames cannot go out of bounds.
    pub(crate) fn check(&self, width: u32, height: u32) -> Result<(), V4l2Error> {
        let ok = self.width >= width
            && self.height >= height
            && self.width % 2 == 0
            && self.height % 2 == 0
            && self.stride >= self.width
            && self.stride % 2 == 0
            && self.frame_bytes() <= self.size as usize;
        if ok {
            Ok(())
        } else {
            Err(V4l2Error::Layout(format!(
                "{self:?} cannot hold a {width}x{height} picture"
            )))
        }
    }
}

/// Writes `picture` into `buf` in `layout` (checked with [`RawLayout::check`]),
/// converting I420 to NV12 if asked. The area beyond the picture (alignment
/// padding) repeats the edge pixels, so the encoder spends no bits on a hard edge.
pub(crate) fn write_frame(picture: &Picture, layout: &RawLayout, buf: &mut [u8]) {
    let (w, h) = (picture.width(), picture.height());
    let (cw, ch) = (layout.width as usize, layout.height as usize);
    let (stride, cstride) = (layout.stride as usize, layout.chroma_stride());
    let (luma, chroma) = buf.split_at_mut(stride * ch);
    copy_padded(picture.y(), (w, h), luma, stride, (cw, ch));
    match layout.format {
        RawFormat::Yu12 => {
            let (u, v) = chroma.split_at_mut(cstride * ch / 2);
            copy_padded(picture.u(), (w / 2, h / 2), u, cstride, (cw / 2, ch / 2));
            copy_padded(picture.v(), (w / 2, h / 2), v, cstride, (cw / 2, ch / 2));
        }
        RawFormat::Nv12 => {
            for row in 0..ch / 2 {
                let src = row.min(h / 2 - 1) * (w / 2);
                let dst = &mut chroma[row * cstride..][..cw];
                for (x, pair) in dst.chunks_exact_mut(2).enumerate() {
                    let s = src + x.min(w / 2 - 1);
                    pair[0] = picture.u()[s];
                    pair[1] = picture.v()[s];
                }
            }
        }
    }
}

fn copy_padded(
    src: &[u8],
    (w, h): (usize, usize),
    dst: &mut [u8],
    stride: usize,
    (cw, ch): (usize, usize),
) {
    for row in 0..ch {
        let s = &src[row.min(h - 1) * w..][..w];
        let d = &mut dst[row * stride..][..cw];
        d[..w].copy_from_slice(s);
        d[w..].fill(s[w - 1]);
    }
}

#[cfg(test)]
/// Reads the top-left `width` x `height` picture of a frame in `layout` (checked).
pub(crate) fn read_frame(buf: &[u8], layout: &RawLayout, width: u32, height: u32) -> Picture {
    let (w, h) = (width as usize, height as usize);
    let (stride, cstride) = (layout.stride as usize, layout.chroma_stride());
    let (luma, chroma) = buf.split_at(stride * layout.height as usize);
    let cheight = layout.height as usize / 2;
    let picture = match layout.format {
        RawFormat::Yu12 => {
            let (u, v) = chroma.split_at(cstride * cheight);
            Picture::from_strided(w, h, (luma, u, v), (stride, cstride, cstride))
        }
        RawFormat::Nv12 => {
            let (mut u, mut v) = (Vec::new(), Vec::new());
            for row in 0..h / 2 {
                for pair in chroma[row * cstride..][..w].chunks_exact(2) {
                    u.push(pair[0]);
                    v.push(pair[1]);
                }
            }
            Picture::from_strided(w, h, (luma, &u, &v), (stride, w / 2, w / 2))
        }
    };
    picture.expect("layout checked against the picture size")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(format: RawFormat, width: u32, height: u32) -> RawLayout {
        RawLayout {
            format,
            width,
            height,
            stride: width,
            size: width * height * 3 / 2,
        }
    }

    /// 4x2 picture: luma 1..=8, chroma U = [20, 21], V = [30, 31].
    fn tiny() -> Picture {
        Picture::from_planes(4, 2, (1..=8).collect(), vec![20, 21], vec![30, 31]).unwrap()
    }

    #[test]
    fn i420_to_nv12_interleaves_chroma() {
        let layout = packed(RawFormat::Nv12, 4, 2);
        layout.check(4, 2).unwrap();
        let mut buf = vec![0; layout.size as usize];
        write_frame(&tiny(), &layout, &mut buf);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 20, 30, 21, 31]);
        assert_eq!(read_frame(&buf, &layout, 4, 2), tiny());
    }

    #[test]
    fn yu12_is_copied_with_stride_and_edge_padding() {
        // Coded 6x4 with luma rows of 8 bytes: two columns and two rows of padding.
        let layout = RawLayout {
            format: RawFormat::Yu12,
            width: 6,
            height: 4,
            stride: 8,
            size: 8 * 4 + 2 * 4 * 2,
        };
        layout.check(4, 2).unwrap();
        let mut buf = vec![0; layout.size as usize];
        write_frame(&tiny(), &layout, &mut buf);
        #[rustfmt::skip]
        let want = [
            1, 2, 3, 4, 4, 4, 0, 0,
            5, 6, 7, 8, 8, 8, 0, 0,
            5, 6, 7, 8, 8, 8, 0, 0,
            5, 6, 7, 8, 8, 8, 0, 0,
            20, 21, 21, 0, 20, 21, 21, 0,
            30, 31, 31, 0, 30, 31, 31, 0,
        ];
        assert_eq!(buf, want);
        assert_eq!(read_frame(&buf, &layout, 4, 2), tiny());
    }

    #[test]
    fn nv12_round_trips_with_padding() {
        let layout = RawLayout {
            format: RawFormat::Nv12,
            width: 8,
            height: 4,
            stride: 10,
            size: 10 * 6,
        };
        layout.check(4, 2).unwrap();
        let mut buf = vec![0; layout.size as usize];
        write_frame(&tiny(), &layout, &mut buf);
        assert_eq!(&buf[40..50], &[20, 30, 21, 31, 21, 31, 21, 31, 0, 0]);
        assert_eq!(read_frame(&buf, &layout, 4, 2), tiny());
    }

    #[test]
    fn layouts_too_small_are_refused() {
        let packed = packed(RawFormat::Yu12, 4, 2);
        assert!(packed.check(6, 2).is_err());
        assert!(RawLayout { size: 11, ..packed }.check(4, 2).is_err());
        assert!(RawLayout {
            stride: 3,
            ..packed
        }
        .check(4, 2)
        .is_err());
    }
}
