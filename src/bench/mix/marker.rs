//! The latency marker: participant 1's video carries a number in a row of black and
//! white blocks that changes every few frames. The output frame that first shows a
//! number is matched with the input frame that first carried it, so the latency is
//! measured on the pictures themselves, whatever either mixer does to timestamps.
//!
//! The number is Gray-coded: from one state to the next only one block changes, so a
//! frame caught half-way (a block neither black nor white) reads as undecided rather
//! than as some other number.

use crate::media::picture::Picture;
use crate::mixer::layout::Rect;

/// Blocks in the row: 256 states, 25.6 s at 3 frames each before a number repeats.
const BITS: usize = 8;
/// Input frames that carry the same number.
pub(crate) const FRAMES_PER_STATE: u64 = 3;
const STATES: u64 = 1 << BITS;

const WHITE: u8 = 235;
const BLACK: u8 = 16;
/// A block's mean luma must be clearly one or the other; between, the frame is undecided.
const ONE_ABOVE: u32 = 170;
const ZERO_BELOW: u32 = 80;

/// The Gray code of state `n` (modulo the states the row can show).
pub(crate) fn gray(n: u64) -> u8 {
    let n = (n % STATES) as u8;
    n ^ (n >> 1)
}

/// The marker state input frame `frame` carries.
pub(crate) fn state_of_frame(frame: u64) -> u64 {
    frame / FRAMES_PER_STATE
}

/// Where the blocks are on the participant's own picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MarkerLayout {
    width: usize,
    height: usize,
    x0: usize,
    y0: usize,
    /// From one block's left edge to the next one's.
    stride: usize,
    block: usize,
}

impl MarkerLayout {
    /// Blocks along the top of a `width` x `height` picture, clear of the pattern's
    /// sweeping square (which runs through the middle).
    pub(crate) fn for_size(width: usize, height: usize) -> Self {
        let stride = (width / 10).max(4) & !1;
        let block = (stride * 3 / 4).max(2) & !1;
        let margin = (stride / 2) & !1;
        Self {
            width,
            height,
            x0: margin,
            y0: margin,
            stride,
            block,
        }
    }

    /// Draws the blocks of `code` (bit 0 leftmost) into `picture`.
    pub(crate) fn draw(&self, picture: &mut Picture, code: u8) {
        let width = picture.width();
        let (y, u, v) = picture.planes_mut();
        for bit in 0..BITS {
            let luma = if code >> bit & 1 == 1 { WHITE } else { BLACK };
            let x = self.x0 + bit * self.stride;
            for row in self.y0..self.y0 + self.block {
                y[row * width + x..][..self.block].fill(luma);
            }
            for plane in [&mut *u, &mut *v] {
                for row in self.y0 / 2..(self.y0 + self.block) / 2 {
                    plane[row * width / 2 + x / 2..][..self.block / 2].fill(128);
                }
            }
        }
    }

    /// Where to read the blocks on an output picture that shows the participant's
    /// picture scaled into `target`.
    pub(crate) fn reader(&self, target: Rect) -> MarkerReader {
        let sx = |x: usize| target.x + x * target.width / self.width;
        let sy = |y: usize| target.y + y * target.height / self.height;
        let crop_x = sx(self.x0) & !1;
        let crop_y = sy(self.y0) & !1;
        let last = self.x0 + (BITS - 1) * self.stride + self.block;
        let crop = Rect {
            x: crop_x,
            y: crop_y,
            width: (sx(last) - crop_x + 1) & !1,
            height: (sy(self.y0 + self.block) - crop_y + 1) & !1,
        };
        // The middle half of each block: clear of the edges the scaler and the
        // encoder blur.
        let (q, h) = (self.block / 4, self.block * 3 / 4);
        let samples = (0..BITS)
            .map(|bit| {
                let x = self.x0 + bit * self.stride;
                let (x0, x1) = (sx(x + q), sx(x + h).max(sx(x + q) + 1));
                let (y0, y1) = (sy(self.y0 + q), sy(self.y0 + h).max(sy(self.y0 + q) + 1));
                Rect {
                    x: x0 - crop.x,
                    y: y0 - crop.y,
                    width: x1 - x0,
                    height: y1 - y0,
                }
            })
            .collect();
        MarkerReader { crop, samples }
    }
}

/// Reads the marker off the luma of one output frame, cropped to [`crop`](Self::crop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkerReader {
    /// The part of the output picture that holds the blocks (even-aligned).
    pub(crate) crop: Rect,
    /// Where each block is sampled, relative to the crop.
    samples: Vec<Rect>,
}

impl MarkerReader {
    /// The code shown, or `None` when a block is neither clearly black nor white
    /// (or `luma` is not a whole crop).
    pub(crate) fn read(&self, luma: &[u8]) -> Option<u8> {
        let width = self.crop.width;
        if luma.len() != width * self.crop.height {
            return None;
        }
        let mut code = 0u8;
        for (bit, r) in self.samples.iter().enumerate() {
            let mut sum = 0u32;
            for row in r.y..r.bottom() {
                sum += luma[row * width + r.x..][..r.width]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            let mean = sum / (r.width * r.height) as u32;
            if mean > ONE_ABOVE {
                code |= 1 << bit;
            } else if mean >= ZERO_BELOW {
                return None;
            }
        }
        Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::picture::AsPlanes;
    use crate::mixer::layout::{fit, tiles};
    use crate::mixer::scale::Scaler;

    #[test]
    fn successive_states_differ_in_one_block() {
        for n in 0..STATES * 2 {
            let (a, b) = (gray(n), gray(n + 1));
            assert_eq!((a ^ b).count_ones(), 1, "{n}");
        }
        let all: std::collections::HashSet<u8> = (0..STATES).map(gray).collect();
        assert_eq!(all.len(), STATES as usize);
        assert_eq!(state_of_frame(FRAMES_PER_STATE * 5 + 2), 5);
    }

    /// Crops the reader's rectangle out of an output picture's luma.
    fn crop(picture: &Picture, r: Rect) -> Vec<u8> {
        let w = picture.width();
        (r.y..r.bottom())
            .flat_map(|row| picture.y()[row * w + r.x..][..r.width].to_vec())
            .collect()
    }

    #[test]
    fn codes_survive_scaling_onto_a_grid_tile() {
        // 320x240 participants onto the 2x2 and 3x3 grids of a 1280x720 output,
        // scaled the way the compositor scales them.
        for n in [4, 9] {
            let layout = MarkerLayout::for_size(320, 240);
            let tile = tiles(n, 1280, 720).unwrap()[0];
            let target = fit(320, 240, tile);
            let reader = layout.reader(target);
            assert!(Rect::whole(1280, 720).contains(&reader.crop));
            assert!(tile.contains(&reader.crop), "{n}: {:?}", reader.crop);
            for code in [0u8, 1, 0x80, 0x5a, 0xff] {
                let mut source = Picture::filled(320, 240, [82, 90, 240]).unwrap();
                layout.draw(&mut source, code);
                let mut output = Picture::filled(1280, 720, [16, 128, 128]).unwrap();
                Scaler::new(320, 240, target.width, target.height)
                    .unwrap()
                    .scale(source.planes(), &mut output, target)
                    .unwrap();
                assert_eq!(reader.read(&crop(&output, reader.crop)), Some(code));
            }
        }
    }

    #[test]
    fn a_grey_block_is_undecided() {
        let layout = MarkerLayout::for_size(320, 240);
        let reader = layout.reader(Rect::whole(320, 240));
        let mut picture = Picture::filled(320, 240, [16, 128, 128]).unwrap();
        layout.draw(&mut picture, 0b10);
        assert_eq!(reader.read(&crop(&picture, reader.crop)), Some(0b10));
        // Half-way between two codes: block 0 caught grey.
        let mut luma = crop(&picture, reader.crop);
        let s = reader.samples[0];
        for row in s.y..s.bottom() {
            luma[row * reader.crop.width + s.x..][..s.width].fill(125);
        }
        assert_eq!(reader.read(&luma), None);
        assert_eq!(reader.read(&luma[1..]), None);
    }
}
