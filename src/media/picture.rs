//! An uncompressed picture in planar YUV 4:2:0 (I420), the form decoders give,
//! the compositor works on and encoders take.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PictureError {
    #[error("picture size {width}x{height} must be even and non-zero")]
    BadSize { width: usize, height: usize },
    #[error("plane of {got} bytes for a {width}x{height} picture, expected {want}")]
    PlaneSize {
        width: usize,
        height: usize,
        got: usize,
        want: usize,
    },
}

/// A picture size as written on a command line or in the config: `1280x720`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSize {
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a video size (example: 320x240)")]
pub struct VideoSizeError(String);

impl std::str::FromStr for VideoSize {
    type Err = VideoSizeError;

    fn from_str(s: &str) -> Result<Self, VideoSizeError> {
        s.split_once('x')
            .and_then(|(w, h)| {
                Some(Self {
                    width: w.trim().parse().ok()?,
                    height: h.trim().parse().ok()?,
                })
            })
            .ok_or_else(|| VideoSizeError(s.to_owned()))
    }
}

impl std::fmt::Display for VideoSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Tightly packed planes: luma `width * height`, each chroma plane a quarter.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}x{})", self.width, self.height)
    }
}

fn check_size(width: usize, height: usize) -> Result<(), PictureError> {
    if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
        return Err(PictureError::BadSize { width, height });
    }
    Ok(())
}

impl Picture {
    /// A picture filled with one colour given as (Y, U, V).
    pub(crate) fn filled(
        width: usize,
        height: usize,
        [y, u, v]: [u8; 3],
    ) -> Result<Self, PictureError> {
        check_size(width, height)?;
        let chroma = width * height / 4;
        Ok(Self {
            width,
            height,
            y: vec![y; width * height],
            u: vec![u; chroma],
            v: vec![v; chroma],
        })
    }

    /// Takes tightly packed planes.
    #[cfg(test)]
    pub(crate) fn from_planes(
        width: usize,
        height: usize,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<Self, PictureError> {
        check_size(width, height)?;
        for (plane, want) in [
            (&y, width * height),
            (&u, width * height / 4),
            (&v, width * height / 4),
        ] {
            if plane.len() != want {
                return Err(PictureError::PlaneSize {
                    width,
                    height,
                    got: plane.len(),
                    want,
                });
            }
        }
        Ok(Self {
            width,
            height,
            y,
            u,
            v,
        })
    }

    /// Copies planes that may have padding at the end of each row (a device's buffer).
    #[cfg(test)]
    pub(crate) fn from_strided(
        width: usize,
        height: usize,
        planes: (&[u8], &[u8], &[u8]),
        strides: (usize, usize, usize),
    ) -> Result<Self, PictureError> {
        let (y, u, v) = planes;
        let planes = Planes::new(width, height, [y, u, v], [strides.0, strides.1, strides.2])?;
        Ok(Self::copied(planes))
    }

    /// A copy of `planes`, packed.
    pub(crate) fn copied(planes: Planes<'_>) -> Self {
        let mut picture = Self {
            width: 0,
            height: 0,
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
        };
        picture.copy_from(planes);
        picture
    }

    /// Becomes a copy of `planes`, in the buffers it has: a picture used again costs
    /// no allocation.
    pub(crate) fn copy_from(&mut self, planes: Planes<'_>) {
        for (i, out) in [&mut self.y, &mut self.u, &mut self.v]
            .into_iter()
            .enumerate()
        {
            out.clear();
            for row in 0..planes.rows(i) {
                out.extend_from_slice(planes.row(i, row));
            }
        }
        (self.width, self.height) = (planes.width, planes.height);
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn height(&self) -> usize {
        self.height
    }

    pub(crate) fn y(&self) -> &[u8] {
        &self.y
    }

    pub(crate) fn u(&self) -> &[u8] {
        &self.u
    }

    pub(crate) fn v(&self) -> &[u8] {
        &self.v
    }

    /// All three planes, mutable at once (for drawing into).
    pub(crate) fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.y, &mut self.u, &mut self.v)
    }

    /// (Y, U, V) at pixel (x, y).
    #[cfg(test)]
    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        self.planes().pixel(x, y)
    }
}

/// The three planes of a 4:2:0 picture where they lie, each row of plane `i`
/// `strides[i]` bytes after the one before: a [`Picture`]'s own, or a decoder's
/// frame shown without a copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planes<'a> {
    width: usize,
    height: usize,
    data: [&'a [u8]; 3],
    strides: [usize; 3],
}

impl<'a> Planes<'a> {
    /// Checks that every plane holds its rows: `height` rows of `width` bytes for
    /// luma, half as many of half as many for chroma.
    pub(crate) fn new(
        width: usize,
        height: usize,
        data: [&'a [u8]; 3],
        strides: [usize; 3],
    ) -> Result<Self, PictureError> {
        check_size(width, height)?;
        let planes = Self {
            width,
            height,
            data,
            strides,
        };
        for (i, (w, h)) in plane_sizes(width, height).into_iter().enumerate() {
            let want = strides[i] * (h - 1) + w;
            if strides[i] < w || data[i].len() < want {
                return Err(PictureError::PlaneSize {
                    width,
                    height,
                    got: data[i].len(),
                    want,
                });
            }
        }
        Ok(planes)
    }

    /// A decoder's planes, as [`new`](Self::new) checks them. I420 needs even sizes:
    /// an odd size loses its last row or column.
    ///
    /// # Safety
    /// Each of `data` points to `height` rows (the chroma planes to half as many,
    /// rounded up) of its stride's bytes, valid for `'a`.
    pub(crate) unsafe fn from_raw(
        width: usize,
        height: usize,
        data: [*const u8; 3],
        strides: [usize; 3],
    ) -> Result<Self, PictureError> {
        let (width, height) = (width & !1, height & !1);
        check_size(width, height)?;
        let sizes = plane_sizes(width, height);
        let data = [0, 1, 2].map(|i| {
            let (w, rows) = sizes[i];
            // SAFETY: the caller's promise: no more than the rows kept, the last
            // without its padding, and never past `rows` strides (a stride shorter
            // than a row is refused by `new`).
            unsafe {
                std::slice::from_raw_parts(data[i], strides[i] * (rows - 1) + w.min(strides[i]))
            }
        });
        Self::new(width, height, data, strides)
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn height(&self) -> usize {
        self.height
    }

    /// Width and height of plane `i` (0 luma, 1 and 2 chroma).
    fn size(&self, i: usize) -> (usize, usize) {
        plane_sizes(self.width, self.height)[i]
    }

    /// Rows of plane `i`.
    pub(crate) fn rows(&self, i: usize) -> usize {
        self.size(i).1
    }

    /// Row `row` of plane `i`, without its padding.
    pub(crate) fn row(&self, i: usize, row: usize) -> &'a [u8] {
        &self.data[i][row * self.strides[i]..][..self.size(i).0]
    }

    /// Plane `i` and its stride.
    pub(crate) fn plane(&self, i: usize) -> (&'a [u8], usize) {
        (self.data[i], self.strides[i])
    }

    /// (Y, U, V) at pixel (x, y).
    #[cfg(test)]
    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        [(0, x, y), (1, x / 2, y / 2), (2, x / 2, y / 2)].map(|(i, x, y)| self.row(i, y)[x])
    }
}

/// Width and height of each plane of a 4:2:0 picture: luma, then the two chroma.
fn plane_sizes(width: usize, height: usize) -> [(usize, usize); 3] {
    let chroma = (width / 2, height / 2);
    [(width, height), chroma, chroma]
}

/// What can be shown as a 4:2:0 picture.
pub(crate) trait AsPlanes {
    fn planes(&self) -> Planes<'_>;
}

impl AsPlanes for Picture {
    fn planes(&self) -> Planes<'_> {
        let (w, h) = (self.width, self.height);
        Planes {
            width: w,
            height: h,
            data: [&self.y, &self.u, &self.v],
            strides: [w, w / 2, w / 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_planes_are_packed() {
        // 4x2 picture with rows padded to 6 (luma) and 3 (chroma).
        let y = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8];
        let (u, v) = ([9, 10, 0], [11, 12, 0]);
        let p = Picture::from_strided(4, 2, (&y, &u, &v), (6, 3, 3)).unwrap();
        assert_eq!(p.y(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((p.u(), p.v()), (&[9, 10][..], &[11, 12][..]));
        assert_eq!(p.pixel(3, 1), [8, 10, 12]);
        let planes = Planes::new(4, 2, [&y, &u, &v], [6, 3, 3]).unwrap();
        assert_eq!(
            (planes.pixel(3, 1), planes.row(0, 1)),
            ([8, 10, 12], &[5, 6, 7, 8][..])
        );
        assert_eq!(p.planes().pixel(3, 1), [8, 10, 12]);
        // Used again for a smaller picture, and refused a short plane.
        let mut again = p.clone();
        again.copy_from(Planes::new(2, 2, [&[5, 6, 0, 7, 8], &[1], &[2]], [3, 1, 1]).unwrap());
        assert_eq!((again.width(), again.y()), (2, &[5, 6, 7, 8][..]));
        assert_eq!((again.u(), again.v()), (&[1][..], &[2][..]));
        assert!(Planes::new(4, 2, [&[0; 3], &[0; 2], &[0; 2]], [4, 2, 2]).is_err());
        assert_eq!(again.width(), 2);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(
            Picture::filled(3, 2, [0; 3]),
            Err(PictureError::BadSize {
                width: 3,
                height: 2
            })
        );
        assert!(matches!(
            Picture::from_planes(2, 2, vec![0; 4], vec![0; 2], vec![0; 1]),
            Err(PictureError::PlaneSize {
                got: 2,
                want: 1,
                ..
            })
        ));
        assert!(Picture::from_strided(4, 2, (&[0; 7], &[0; 2], &[0; 2]), (4, 2, 2)).is_err());
    }
}
