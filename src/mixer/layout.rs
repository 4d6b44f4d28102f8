//! Grid layouts of up to 16 participants on the output picture, and fitting a
//! picture of any aspect ratio into a tile. Every coordinate and size is even so
//! that tiles fall on whole chroma samples of an I420 picture.

use thiserror::Error;

/// The most participants a grid shows (4x4).
const MAX_TILES: usize = 16;
/// Output size when nothing else is configured.
pub(crate) const DEFAULT_WIDTH: usize = 1280;
pub(crate) const DEFAULT_HEIGHT: usize = 720;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("{0} participants do not fit a grid of at most {MAX_TILES}")]
    TooMany(usize),
    #[error("output {width}x{height} must be even and at least {min}x{min}")]
    OutputSize {
        width: usize,
        height: usize,
        min: usize,
    },
}

/// An axis-aligned rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    /// The whole of a `width` x `height` picture.
    pub(crate) fn whole(width: usize, height: usize) -> Self {
        Self {
            x: 0,
            y: 0,
            width,
            height,
        }
    }

    pub(crate) fn right(&self) -> usize {
        self.x + self.width
    }

    pub(crate) fn bottom(&self) -> usize {
        self.y + self.height
    }

    #[cfg(test)]
    fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    pub(crate) fn contains(&self, other: &Rect) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.right() <= self.right()
            && other.bottom() <= self.bottom()
    }
}

/// Columns and rows of the grid for `n` participants (1..=16); `None` otherwise.
fn grid(n: usize) -> Option<(usize, usize)> {
    Some(match n {
        1 => (1, 1),
        2 => (2, 1),
        3..=4 => (2, 2),
        5..=6 => (3, 2),
        7..=9 => (3, 3),
        10..=12 => (4, 3),
        13..=16 => (4, 4),
        _ => return None,
    })
}

/// The smallest output every grid fits in with tiles of at least 2x2.
const MIN_OUTPUT: usize = 8;

/// Checks that an output size can hold every grid up to [`MAX_TILES`].
pub(crate) fn check_output(width: usize, height: usize) -> Result<(), LayoutError> {
    if width < MIN_OUTPUT || height < MIN_OUTPUT || width % 2 != 0 || height % 2 != 0 {
        return Err(LayoutError::OutputSize {
            width,
            height,
            min: MIN_OUTPUT,
        });
    }
    Ok(())
}

/// Tiles for `n` participants in display order, row by row, on a `width` x
/// `height` output. The grid is centred; an incomplete last row is centred too.
/// No participants give no tiles.
pub fn tiles(n: usize, width: usize, height: usize) -> Result<Vec<Rect>, LayoutError> {
    check_output(width, height)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let (columns, rows) = grid(n).ok_or(LayoutError::TooMany(n))?;
    let tile_w = even_floor(width / columns);
    let tile_h = even_floor(height / rows);
    let x0 = even_floor((width - columns * tile_w) / 2);
    let y0 = even_floor((height - rows * tile_h) / 2);
    Ok((0..n)
        .map(|i| {
            let (row, column) = (i / columns, i % columns);
            let in_row = (n - row * columns).min(columns);
            let indent = even_floor((columns - in_row) * tile_w / 2);
            Rect {
                x: x0 + indent + column * tile_w,
                y: y0 + row * tile_h,
                width: tile_w,
                height: tile_h,
            }
        })
        .collect())
}

/// Where a `src_w` x `src_h` picture goes inside `tile`: as large as fits with its
/// aspect ratio kept (bars above and below or left and right), centred, even.
pub(crate) fn fit(src_w: usize, src_h: usize, tile: Rect) -> Rect {
    let (sw, sh) = (src_w.max(1) as u64, src_h.max(1) as u64);
    let (tw, th) = (tile.width as u64, tile.height as u64);
    // Rounds the exact size `num / den` to the nearest even number within 2..=max.
    let even_round = |num: u64, den: u64, max: u64| ((num + den) / (2 * den) * 2).clamp(2, max);
    let (w, h) = if sw * th >= sh * tw {
        (tw, even_round(tw * sh, sw, th))
    } else {
        (even_round(th * sw, sh, tw), th)
    };
    let (w, h) = (w as usize, h as usize);
    Rect {
        x: tile.x + even_floor((tile.width - w) / 2),
        y: tile.y + even_floor((tile.height - h) / 2),
        width: w,
        height: h,
    }
}

fn even_floor(v: usize) -> usize {
    v & !1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grid_sizes() {
        let grids: Vec<_> = (1..=16).map(|n| grid(n).unwrap()).collect();
        assert_eq!(grids[0], (1, 1));
        assert_eq!(grids[1], (2, 1));
        assert_eq!(grids[2..4], [(2, 2); 2]);
        assert_eq!(grids[4..6], [(3, 2); 2]);
        assert_eq!(grids[6..9], [(3, 3); 3]);
        assert_eq!(grids[9..12], [(4, 3); 3]);
        assert_eq!(grids[12..16], [(4, 4); 4]);
        assert_eq!(grid(0), None);
        assert_eq!(grid(17), None);
    }

    #[test]
    fn four_fill_the_default_output() {
        let t = tiles(4, DEFAULT_WIDTH, DEFAULT_HEIGHT).unwrap();
        let rect = |x, y| Rect {
            x,
            y,
            width: 640,
            height: 360,
        };
        assert_eq!(
            t,
            vec![rect(0, 0), rect(640, 0), rect(0, 360), rect(640, 360)]
        );
    }

    #[test]
    fn incomplete_last_row_is_centred() {
        // 5 on 3x2: the second row has two tiles, indented by half a tile.
        let t = tiles(5, 1280, 720).unwrap();
        assert_eq!(t[0].width, 426);
        // Grid of 3 x 426 = 1278 centred in 1280 starts at x = 0 (even floor of 1).
        assert_eq!(t[0].x, 0);
        assert_eq!((t[3].x, t[3].y), (212, 360));
        assert_eq!(t[4].x, t[3].x + 426);
        // 3 on 2x2: the last tile sits in the middle.
        let t = tiles(3, 1280, 720).unwrap();
        assert_eq!(t[2].x, 320);
    }

    #[test]
    fn bad_counts_and_outputs_are_refused() {
        assert_eq!(tiles(0, 1280, 720), Ok(vec![]));
        assert_eq!(tiles(17, 1280, 720), Err(LayoutError::TooMany(17)));
        assert!(matches!(
            tiles(1, 1279, 720),
            Err(LayoutError::OutputSize { .. })
        ));
        assert!(matches!(
            tiles(1, 6, 6),
            Err(LayoutError::OutputSize { .. })
        ));
    }

    #[test]
    fn four_by_three_in_sixteen_by_nine_is_pillarboxed() {
        let tile = Rect {
            x: 640,
            y: 360,
            width: 640,
            height: 360,
        };
        assert_eq!(
            fit(640, 480, tile),
            Rect {
                x: 640 + 80,
                y: 360,
                width: 480,
                height: 360
            }
        );
        // And 16:9 in a 4:3 tile is letterboxed.
        let tile = Rect {
            x: 0,
            y: 0,
            width: 480,
            height: 360,
        };
        assert_eq!(
            fit(1280, 720, tile),
            Rect {
                x: 0,
                y: 44,
                width: 480,
                height: 270
            }
        );
    }

    fn even(max: usize) -> impl Strategy<Value = usize> {
        (1..=max / 2).prop_map(|v| v * 2)
    }

    proptest! {
        #[test]
        fn tiles_are_disjoint_even_and_inside(
            n in 1..=MAX_TILES,
            width in even(4096).prop_filter("min", |w| *w >= MIN_OUTPUT),
            height in even(4096).prop_filter("min", |h| *h >= MIN_OUTPUT),
        ) {
            let out = Rect::whole(width, height);
            let t = tiles(n, width, height).unwrap();
            prop_assert_eq!(t.len(), n);
            for (i, a) in t.iter().enumerate() {
                prop_assert!(out.contains(a), "{a:?} outside {out:?}");
                prop_assert!(a.width >= 2 && a.height >= 2);
                prop_assert!([a.x, a.y, a.width, a.height].iter().all(|v| v % 2 == 0));
                for b in &t[i + 1..] {
                    prop_assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
                }
            }
        }

        #[test]
        fn fit_keeps_aspect_inside_the_tile(
            src_w in even(4096),
            src_h in even(4096),
            n in 1..=MAX_TILES,
            index in 0..MAX_TILES,
        ) {
            let t = tiles(n, DEFAULT_WIDTH, DEFAULT_HEIGHT).unwrap();
            let tile = t[index % n];
            let f = fit(src_w, src_h, tile);
            prop_assert!(tile.contains(&f), "{f:?} outside {tile:?}");
            prop_assert!([f.x, f.y, f.width, f.height].iter().all(|v| v % 2 == 0));
            // One side fills the tile; the other is within one even step (2 px)
            // of the exact scaled size.
            prop_assert!(f.width == tile.width || f.height == tile.height);
            let (sw, sh) = (src_w as u64, src_h as u64);
            let (w, h) = (f.width as u64, f.height as u64);
            let err = (w * sh).abs_diff(h * sw);
            prop_assert!(err <= 2 * sw.max(sh), "{src_w}x{src_h} -> {f:?}");
            // Centred: the bars on both sides differ by at most an even step.
            let (left, right) = (f.x - tile.x, tile.right() - f.right());
            let (top, bottom) = (f.y - tile.y, tile.bottom() - f.bottom());
            prop_assert!(left.abs_diff(right) <= 2 && top.abs_diff(bottom) <= 2);
        }
    }
}
