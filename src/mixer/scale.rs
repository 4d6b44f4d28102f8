//! Scaling an I420 picture into a rectangle of another picture: area averaging when
//! shrinking (no aliasing of fine detail), bilinear when enlarging. Filter taps are
//! computed once per source/target size; scaling itself is integer arithmetic on
//! rows. The gather-heavy horizontal pass runs over the fewer rows: when shrinking,
//! after the vertical pass, over the output rows; when enlarging, first, over the
//! source rows, each once, and the vertical blend then runs over whole output rows
//! in loops the compiler turns into SIMD.

use thiserror::Error;

use super::layout::Rect;
use crate::media::picture::{Picture, Planes};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScaleError {
    #[error("scaler size {width}x{height} must be even and non-zero")]
    BadSize { width: usize, height: usize },
    #[error("source is {got:?}, the scaler was made for {want:?}")]
    SourceSize {
        got: (usize, usize),
        want: (usize, usize),
    },
    #[error("target {rect:?} must be {want:?}, even and inside the {picture:?} picture")]
    Target {
        rect: Rect,
        want: (usize, usize),
        picture: (usize, usize),
    },
}

/// Fraction bits of the filter weights: each output sums weights of exactly `1 << 14`.
const WEIGHT_BITS: u32 = 14;
/// Fraction bits kept between the vertical and the horizontal pass, so that rounding
/// happens once, at the end. 255 << 7 times 1 << 14 still fits a u32.
const MID_BITS: u32 = 7;
/// Fraction bits of the bilinear weights when enlarging: 255 times 1 << 7 fits the
/// u16 lanes of the horizontal pass; the vertical one keeps the high halves of u16
/// products (losing under 1/32 of a step) and rounds once, at the end.
const BILINEAR_BITS: u32 = 7;

/// Filter along one axis: output `i` is the weighted sum of the `taps` source
/// samples from `starts[i]`, weights `weights[i * taps..][..taps]`.
struct Taps {
    taps: usize,
    starts: Vec<usize>,
    weights: Vec<u32>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Self {
        Self::with(src, dst, WEIGHT_BITS, 1)
    }

    /// Weights of `bits` fraction bits, at least `min_taps` per output (padded with
    /// zero weights).
    fn with(src: usize, dst: usize, bits: u32, min_taps: usize) -> Self {
        let scale = src as f64 / dst as f64;
        let last = src - 1;
        // (source index, real weight) pairs of each output sample.
        let contributions: Vec<Vec<(usize, f64)>> = (0..dst)
            .map(|i| {
                if scale >= 1.0 {
                    // Area: how much of each source sample the output footprint covers.
                    let (a, b) = (i as f64 * scale, (i + 1) as f64 * scale);
                    (a.floor() as usize..b.ceil() as usize)
                        .map(|j| (j.min(last), b.min(j as f64 + 1.0) - a.max(j as f64)))
                        .filter(|&(_, w)| w > 1e-9)
                        .collect()
                } else {
                    // Bilinear between the two nearest samples, pixel centres aligned.
                    let c = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, last as f64);
                    let j = c.floor() as usize;
                    let f = c - j as f64;
                    vec![(j, 1.0 - f), ((j + 1).min(last), f)]
                }
            })
            .collect();
        let span = |c: &[(usize, f64)]| {
            let first = c.iter().map(|&(j, _)| j).min().unwrap_or(0);
            let end = c.iter().map(|&(j, _)| j + 1).max().unwrap_or(1);
            (first, end)
        };
        let taps = contributions
            .iter()
            .map(|c| {
                let (first, end) = span(c);
                end - first
            })
            .max()
            .unwrap_or(1)
            .max(min_taps)
            .min(src);
        let mut starts = Vec::with_capacity(dst);
        let mut weights = vec![0u32; dst * taps];
        for (c, out) in contributions.iter().zip(weights.chunks_exact_mut(taps)) {
            // Shifted left at the far edge so the window stays inside the source.
            let start = span(c).0.min(src - taps);
            starts.push(start);
            let total: f64 = c.iter().map(|&(_, w)| w).sum();
            for &(j, w) in c {
                out[j - start] += (w / total * f64::from(1u32 << bits)).round() as u32;
            }
            // Rounding error goes to the largest weight so every output sums to one
            // exactly: a solid colour then stays exactly that colour.
            let sum: u32 = out.iter().sum();
            let largest = (0..taps).max_by_key(|&k| out[k]).unwrap_or(0);
            out[largest] = (out[largest] + (1 << bits)) - sum;
        }
        Self {
            taps,
            starts,
            weights,
        }
    }
}

/// Bilinear enlarging: two taps per output along each axis, `BILINEAR_BITS` weights.
struct Bilinear {
    /// By output column: the left source column, and the weights of it and the next.
    columns: Vec<usize>,
    left_weights: Vec<u16>,
    right_weights: Vec<u16>,
    /// By output row: the upper source row and the two weights.
    rows: Vec<(usize, [u32; 2])>,
}

impl Bilinear {
    fn new(src: (usize, usize), dst: (usize, usize)) -> Self {
        let pairs = |src, dst| {
            let taps = Taps::with(src, dst, BILINEAR_BITS, 2);
            debug_assert_eq!(taps.taps, 2);
            let weights = taps.weights.chunks_exact(2).map(|w| [w[0], w[1]]);
            taps.starts.into_iter().zip(weights).collect::<Vec<_>>()
        };
        let columns = pairs(src.0, dst.0);
        Self {
            left_weights: columns.iter().map(|&(_, [a, _])| a as u16).collect(),
            right_weights: columns.iter().map(|&(_, [_, b])| b as u16).collect(),
            columns: columns.into_iter().map(|(s, _)| s).collect(),
            rows: pairs(src.1, dst.1),
        }
    }

    /// One source row scaled horizontally, `BILINEAR_BITS` fraction bits kept.
    fn row(&self, src: &[u8], (left, right): (&mut [u8], &mut [u8]), out: &mut [u16]) {
        // The gather on its own, so the arithmetic below runs on whole vectors.
        for ((l, r), &s) in left.iter_mut().zip(right.iter_mut()).zip(&self.columns) {
            let pair = &src[s..s + 2];
            (*l, *r) = (pair[0], pair[1]);
        }
        let weights = self.left_weights.iter().zip(&self.right_weights);
        for (((o, &l), &r), (&a, &b)) in out.iter_mut().zip(&*left).zip(&*right).zip(weights) {
            *o = u16::from(l) * a + u16::from(r) * b;
        }
    }
}

/// How one plane is scaled.
enum Plan {
    /// Same size.
    Copy,
    /// Shrinking along at least one axis: vertical pass into scratch rows `src_w`
    /// long, then horizontal.
    Separable {
        vertical: Taps,
        horizontal: Taps,
    },
    Enlarge(Bilinear),
}

/// Scales one plane.
struct PlaneScaler {
    src: (usize, usize),
    dst: (usize, usize),
    plan: Plan,
}

impl PlaneScaler {
    fn new(src: (usize, usize), dst: (usize, usize)) -> Self {
        let plan = if src == dst {
            Plan::Copy
        } else if src.0 <= dst.0 && src.1 <= dst.1 && src.0 >= 2 && src.1 >= 2 {
            Plan::Enlarge(Bilinear::new(src, dst))
        } else {
            Plan::Separable {
                vertical: Taps::new(src.1, dst.1),
                horizontal: Taps::new(src.0, dst.0),
            }
        };
        Self { src, dst, plan }
    }

    /// Length of the scratch rows each plan needs, in samples.
    fn scratch_len(&self) -> usize {
        self.src.0.max(self.dst.0)
    }

    /// Scales `src` (rows `src_stride` apart) into `dst` (a plane `stride` wide) at
    /// (`x`, `y`).
    fn run(
        &self,
        (src, src_stride): (&[u8], usize),
        (dst, stride): (&mut [u8], usize),
        (x, y): (usize, usize),
        scratch: &mut Scratch,
    ) {
        let (src_w, dst_w) = (self.src.0, self.dst.0);
        let row = |r: usize| &src[r * src_stride..][..src_w];
        let (v, h) = match &self.plan {
            Plan::Copy => {
                // Same size, e.g. 640x360 participants on a 2x2 grid at 1280x720.
                for r in 0..self.src.1 {
                    dst[(y + r) * stride + x..][..dst_w].copy_from_slice(row(r));
                }
                return;
            }
            Plan::Enlarge(bilinear) => {
                return enlarge(bilinear, row, (dst, stride), (x, y, dst_w), scratch)
            }
            Plan::Separable {
                vertical,
                horizontal,
            } => (vertical, horizontal),
        };
        let (acc, mid) = (&mut scratch.acc[..src_w], &mut scratch.mid[..src_w]);
        for (oy, weights) in v.weights.chunks_exact(v.taps).enumerate() {
            let start = v.starts[oy];
            let rows = |t: usize| row(start + t);
            // Common tap counts in one pass over the row, without the accumulator.
            match v.taps {
                1 => vertical_fused::<1>(std::array::from_fn(rows), weights, mid),
                2 => vertical_fused::<2>(std::array::from_fn(rows), weights, mid),
                3 => vertical_fused::<3>(std::array::from_fn(rows), weights, mid),
                4 => vertical_fused::<4>(std::array::from_fn(rows), weights, mid),
                taps => vertical((0..taps).map(rows).zip(weights), acc, mid),
            }
            let out = &mut dst[(y + oy) * stride + x..][..dst_w];
            // Common tap counts get their own copy of the loop, unrolled.
            match h.taps {
                1 => horizontal(out, mid, &h.starts, &h.weights, 1),
                2 => horizontal(out, mid, &h.starts, &h.weights, 2),
                3 => horizontal(out, mid, &h.starts, &h.weights, 3),
                4 => horizontal(out, mid, &h.starts, &h.weights, 4),
                5 => horizontal(out, mid, &h.starts, &h.weights, 5),
                taps => horizontal(out, mid, &h.starts, &h.weights, taps),
            }
        }
    }
}

/// Scratch rows shared by the planes of one scaler.
struct Scratch {
    acc: Vec<u32>,
    mid: Vec<u32>,
    left: Vec<u8>,
    right: Vec<u8>,
    /// Two horizontally scaled source rows, and which source rows they are.
    rows: [Vec<u16>; 2],
    held: [Option<usize>; 2],
}

/// Bilinear enlarging: each source row that an output row needs is scaled
/// horizontally once (consecutive output rows share their source rows), then every
/// output row is the blend of two of them.
fn enlarge<'a>(
    b: &Bilinear,
    row: impl Fn(usize) -> &'a [u8],
    (dst, stride): (&mut [u8], usize),
    (x, y, dst_w): (usize, usize, usize),
    s: &mut Scratch,
) {
    s.held = [None, None];
    let shift = 2 * BILINEAR_BITS;
    for (oy, &(top, [wa, wb])) in b.rows.iter().enumerate() {
        // Source row r is kept in slot r % 2, so rows top and top + 1 never collide.
        for r in [top, top + 1] {
            if s.held[r % 2] != Some(r) {
                let (left, right) = (&mut s.left[..dst_w], &mut s.right[..dst_w]);
                b.row(row(r), (left, right), &mut s.rows[r % 2][..dst_w]);
                s.held[r % 2] = Some(r);
            }
        }
        let (upper, lower) = (&s.rows[top % 2][..dst_w], &s.rows[(top + 1) % 2][..dst_w]);
        let out = &mut dst[(y + oy) * stride + x..][..dst_w];
        // Rows hold 255 << 7 at most, weights scaled to at most 1 << 15: the high
        // halves of the products sum to at most 255 << 6.
        let (wa, wb) = ((wa << 8) as u16, (wb << 8) as u16);
        let high = |a: u16, w: u16| ((u32::from(a) * u32::from(w)) >> 16) as u16;
        let shift = shift - 8;
        for ((o, &a), &c) in out.iter_mut().zip(upper).zip(lower) {
            let sum = high(a, wa) + high(c, wb);
            // At most 255.5 before the shift: the cast never truncates.
            *o = ((sum + (1 << (shift - 1))) >> shift) as u8;
        }
    }
}

/// Weighted sum of source rows into `mid`, with `MID_BITS` fraction bits.
fn vertical<'a>(rows: impl Iterator<Item = (&'a [u8], &'a u32)>, acc: &mut [u32], mid: &mut [u32]) {
    acc.fill(0);
    for (row, &w) in rows.filter(|&(_, &w)| w != 0) {
        for (a, &p) in acc.iter_mut().zip(row) {
            *a += w * u32::from(p);
        }
    }
    let shift = WEIGHT_BITS - MID_BITS;
    for (m, &a) in mid.iter_mut().zip(acc.iter()) {
        *m = (a + (1 << (shift - 1))) >> shift;
    }
}

/// [`vertical`] for `T` taps, each of `rows` `mid.len()` long. The same sums, so
/// the same samples.
#[inline(always)]
fn vertical_fused<const T: usize>(rows: [&[u8]; T], weights: &[u32], mid: &mut [u32]) {
    let weights: [u32; T] = std::array::from_fn(|t| weights[t]);
    let shift = WEIGHT_BITS - MID_BITS;
    for (i, m) in mid.iter_mut().enumerate() {
        let mut a = 0u32;
        for t in 0..T {
            a += weights[t] * u32::from(rows[t][i]);
        }
        *m = (a + (1 << (shift - 1))) >> shift;
    }
}

/// One output row from `mid`: `taps` weights per output sample.
#[inline(always)]
fn horizontal(out: &mut [u8], mid: &[u32], starts: &[usize], weights: &[u32], taps: usize) {
    let shift = WEIGHT_BITS + MID_BITS;
    for ((o, &start), w) in out.iter_mut().zip(starts).zip(weights.chunks_exact(taps)) {
        let m = &mid[start..start + taps];
        let sum: u32 = (0..taps).map(|t| w[t] * m[t]).sum();
        // At most 255.5 before the shift: the cast never truncates.
        *o = ((sum + (1 << (shift - 1))) >> shift) as u8;
    }
}

/// Scales pictures of one size to one target size; keep it while sizes stay the
/// same, as making one computes the filter tables and scratch rows.
pub struct Scaler {
    luma: PlaneScaler,
    chroma: PlaneScaler,
    scratch: Scratch,
}

impl Scaler {
    /// A scaler from `src_w` x `src_h` pictures to `dst_w` x `dst_h` rectangles.
    pub fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Result<Self, ScaleError> {
        for (width, height) in [(src_w, src_h), (dst_w, dst_h)] {
            if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
                return Err(ScaleError::BadSize { width, height });
            }
        }
        let luma = PlaneScaler::new((src_w, src_h), (dst_w, dst_h));
        let len = luma.scratch_len();
        Ok(Self {
            chroma: PlaneScaler::new((src_w / 2, src_h / 2), (dst_w / 2, dst_h / 2)),
            luma,
            scratch: Scratch {
                acc: vec![0; len],
                mid: vec![0; len],
                left: vec![0; len],
                right: vec![0; len],
                rows: [vec![0; len], vec![0; len]],
                held: [None, None],
            },
        })
    }

    pub fn source_size(&self) -> (usize, usize) {
        self.luma.src
    }

    pub fn target_size(&self) -> (usize, usize) {
        self.luma.dst
    }

    /// Scales `src` into `rect` of `dst`; pixels of `dst` outside `rect` are untouched.
    pub(crate) fn scale(
        &mut self,
        src: Planes<'_>,
        dst: &mut Picture,
        rect: Rect,
    ) -> Result<(), ScaleError> {
        let got = (src.width(), src.height());
        if got != self.source_size() {
            return Err(ScaleError::SourceSize {
                got,
                want: self.source_size(),
            });
        }
        let picture = (dst.width(), dst.height());
        let inside = Rect::whole(picture.0, picture.1).contains(&rect);
        if (rect.width, rect.height) != self.target_size()
            || !inside
            || rect.x % 2 != 0
            || rect.y % 2 != 0
        {
            return Err(ScaleError::Target {
                rect,
                want: self.target_size(),
                picture,
            });
        }
        let (dst_y, dst_u, dst_v) = dst.planes_mut();
        let scratch = &mut self.scratch;
        self.luma
            .run(src.plane(0), (dst_y, picture.0), (rect.x, rect.y), scratch);
        let at = (rect.x / 2, rect.y / 2);
        let stride = picture.0 / 2;
        for (i, out) in [(1, dst_u), (2, dst_v)] {
            self.chroma.run(src.plane(i), (out, stride), at, scratch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::picture::AsPlanes;

    fn rect(x: usize, y: usize, width: usize, height: usize) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    fn scale_whole(src: &Picture, width: usize, height: usize) -> Picture {
        let mut dst = Picture::filled(width, height, [0; 3]).unwrap();
        Scaler::new(src.width(), src.height(), width, height)
            .unwrap()
            .scale(src.planes(), &mut dst, rect(0, 0, width, height))
            .unwrap();
        dst
    }

    #[test]
    fn solid_colour_stays_exact() {
        let colour = [81, 90, 240];
        for ((sw, sh), (dw, dh)) in [
            ((640, 480), (426, 240)),
            ((1280, 720), (320, 180)),
            ((100, 60), (330, 198)),
            ((2, 2), (64, 36)),
            ((642, 362), (2, 2)),
        ] {
            let src = Picture::filled(sw, sh, colour).unwrap();
            let dst = scale_whole(&src, dw, dh);
            assert_eq!(dst, Picture::filled(dw, dh, colour).unwrap(), "{sw}x{sh}");
        }
    }

    #[test]
    fn padded_rows_scale_as_packed_ones() {
        // A decoder's frame: rows longer than the picture, padding that must not show.
        let (w, h) = (40, 30);
        let src = Picture::from_planes(
            w,
            h,
            (0..w * h).map(|i| (i * 7 % 251) as u8).collect(),
            (0..w * h / 4).map(|i| (i * 3 % 253) as u8).collect(),
            (0..w * h / 4).map(|i| (i * 5 % 241) as u8).collect(),
        )
        .unwrap();
        let pad = |plane: &[u8], width: usize, stride: usize| -> Vec<u8> {
            plane
                .chunks_exact(width)
                .flat_map(|row| {
                    row.iter()
                        .copied()
                        .chain(std::iter::repeat_n(255, stride - width))
                })
                .collect()
        };
        let (y, u, v) = (
            pad(src.y(), w, 64),
            pad(src.u(), w / 2, 32),
            pad(src.v(), w / 2, 32),
        );
        let padded = Planes::new(w, h, [&y, &u, &v], [64, 32, 32]).unwrap();
        // Copy, shrink (fused and not) and enlarge.
        for (dw, dh) in [(40, 30), (20, 16), (8, 6), (64, 48)] {
            let mut want = Picture::filled(dw, dh, [0; 3]).unwrap();
            let mut got = want.clone();
            let mut scaler = Scaler::new(w, h, dw, dh).unwrap();
            scaler
                .scale(src.planes(), &mut want, rect(0, 0, dw, dh))
                .unwrap();
            scaler.scale(padded, &mut got, rect(0, 0, dw, dh)).unwrap();
            assert_eq!(got, want, "{dw}x{dh}");
        }
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        // Luma constant in each 2x2 block except for a checkerboard of +-8 that the
        // average must cancel; chroma a ramp.
        let (w, h) = (16, 12);
        let y: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let block = 10 * (x / 2) + 30 * (y / 2);
                let checker = if (x + y) % 2 == 0 { 8 } else { 0 };
                (block + checker) as u8
            })
            .collect();
        let u: Vec<u8> = (0..w * h / 4).map(|i| (i * 2) as u8).collect();
        let v = vec![128; w * h / 4];
        let src = Picture::from_planes(w, h, y, u, v).unwrap();
        let dst = scale_whole(&src, w / 2, h / 2);
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                assert_eq!(dst.y()[oy * w / 2 + ox], (10 * ox + 30 * oy + 4) as u8);
            }
        }
        // Chroma rows are 8 samples of 0, 2, 4..: the first block is 0, 2, 16, 18.
        assert_eq!(dst.u()[0], 9);
        assert!(dst.v().iter().all(|&v| v == 128));
    }

    #[test]
    fn the_fused_vertical_pass_gives_the_general_one_s_samples() {
        let n = 37;
        let rows: Vec<u8> = (0..4 * n).map(|i| (i * 97 % 256) as u8).collect();
        for taps in 1..=4 {
            let taps_of = Taps::new(taps * 7, 7);
            let weights = &taps_of.weights[..taps_of.taps];
            let rows = &rows[..taps_of.taps * n];
            let (mut acc, mut want, mut got) = (vec![0; n], vec![0; n], vec![0; n]);
            vertical(rows.chunks_exact(n).zip(weights), &mut acc, &mut want);
            let row = |t: usize| &rows[t * n..][..n];
            match taps_of.taps {
                1 => vertical_fused::<1>(std::array::from_fn(row), weights, &mut got),
                2 => vertical_fused::<2>(std::array::from_fn(row), weights, &mut got),
                3 => vertical_fused::<3>(std::array::from_fn(row), weights, &mut got),
                4 => vertical_fused::<4>(std::array::from_fn(row), weights, &mut got),
                t => panic!("{t} taps"),
            }
            assert_eq!(got, want, "{taps} taps");
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let (w, h) = (20, 10);
        let y: Vec<u8> = (0..w * h).map(|i| (i * 37 % 251) as u8).collect();
        let u: Vec<u8> = (0..w * h / 4).map(|i| (i * 11 % 256) as u8).collect();
        let src = Picture::from_planes(w, h, y, u.clone(), u).unwrap();
        assert_eq!(scale_whole(&src, w, h), src);
    }

    #[test]
    fn enlarging_interpolates_between_samples() {
        let y: Vec<u8> = [0, 100].repeat(2);
        let src = Picture::from_planes(2, 2, y, vec![128], vec![128]).unwrap();
        let dst = scale_whole(&src, 8, 2);
        // Edges clamp to the samples, the middle ramps up monotonically.
        let row = &dst.y()[..8];
        assert_eq!((row[0], row[7]), (0, 100));
        assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
        assert!(row[3] > 20 && row[4] < 80, "{row:?}");
    }

    /// Bilinear with pixel centres aligned, in floating point.
    fn bilinear_at(
        plane: &[u8],
        (w, h): (usize, usize),
        (dw, dh): (usize, usize),
        x: usize,
        y: usize,
    ) -> f64 {
        let centre = |i: usize, src: usize, dst: usize| {
            let c = ((i as f64 + 0.5) * src as f64 / dst as f64 - 0.5).clamp(0.0, (src - 1) as f64);
            let j = c.floor() as usize;
            (j, (j + 1).min(src - 1), c - j as f64)
        };
        let (x0, x1, fx) = centre(x, w, dw);
        let (y0, y1, fy) = centre(y, h, dh);
        let p = |x: usize, y: usize| f64::from(plane[y * w + x]);
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    #[test]
    fn enlarging_follows_bilinear_interpolation() {
        let (w, h) = (40, 30);
        let y: Vec<u8> = (0..w * h)
            .map(|i| ((i % w) * 4 + (i / w) * 2 + (i * 7919) % 23) as u8)
            .collect();
        let u: Vec<u8> = (0..w * h / 4)
            .map(|i| ((i % (w / 2)) * 5 + (i / (w / 2)) * 3) as u8)
            .collect();
        let src = Picture::from_planes(w, h, y, u.clone(), u).unwrap();
        for (dw, dh) in [(60, 46), (40, 60), (128, 30), (80, 60)] {
            let dst = scale_whole(&src, dw, dh);
            for (plane, out, (sw, sh), (ow, oh)) in [
                (src.y(), dst.y(), (w, h), (dw, dh)),
                (src.u(), dst.u(), (w / 2, h / 2), (dw / 2, dh / 2)),
            ] {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let want = bilinear_at(plane, (sw, sh), (ow, oh), ox, oy);
                        let got = f64::from(out[oy * ow + ox]);
                        assert!(
                            (got - want).abs() <= 1.0,
                            "{dw}x{dh} ({ox}, {oy}): {got} vs {want:.2}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pixels_outside_the_rect_are_untouched() {
        let src = Picture::filled(40, 30, [200, 60, 70]).unwrap();
        let mut dst = Picture::filled(32, 24, [7, 8, 9]).unwrap();
        let r = rect(6, 4, 10, 8);
        Scaler::new(40, 30, 10, 8)
            .unwrap()
            .scale(src.planes(), &mut dst, r)
            .unwrap();
        for y in 0..24 {
            for x in 0..32 {
                let inside = (r.x..r.right()).contains(&x) && (r.y..r.bottom()).contains(&y);
                let want = if inside { [200, 60, 70] } else { [7, 8, 9] };
                assert_eq!(dst.pixel(x, y), want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let src = Picture::filled(8, 8, [0; 3]).unwrap();
        let mut dst = Picture::filled(16, 16, [0; 3]).unwrap();
        let mut scaler = Scaler::new(8, 8, 4, 4).unwrap();
        assert!(matches!(
            scaler.scale(
                Picture::filled(8, 6, [0; 3]).unwrap().planes(),
                &mut dst,
                rect(0, 0, 4, 4)
            ),
            Err(ScaleError::SourceSize { .. })
        ));
        for bad in [rect(14, 0, 4, 4), rect(1, 0, 4, 4), rect(0, 0, 6, 4)] {
            assert!(matches!(
                scaler.scale(src.planes(), &mut dst, bad),
                Err(ScaleError::Target { .. })
            ));
        }
        assert!(matches!(
            Scaler::new(8, 8, 3, 4),
            Err(ScaleError::BadSize { .. })
        ));
    }
}
