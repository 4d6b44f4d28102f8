//! Composites participants' decoded pictures into one output picture on a grid.
//!
//! Sans-IO: pictures and the time come in as arguments. Each tile shows the newest
//! picture of its participant, scaled with its aspect ratio kept. A participant that
//! sends nothing new keeps its last picture on screen for `hold`, then gets a
//! placeholder: a dark grey tile with a lighter grey head-and-shoulders figure in
//! the middle, so that nobody mistakes a frozen or missing participant for a live
//! one. The output picture is kept between renders and a tile is redrawn only when
//! its participant sent a new picture, it changed between picture and placeholder,
//! or the grid changed: participants that send nothing cost nothing.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::layout::{self, fit, LayoutError, Rect};
use super::scale::{ScaleError, Scaler};
use crate::media::picture::{AsPlanes, Picture, PictureError};

#[derive(Debug, Error)]
pub enum CompositorError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("output picture: {0}")]
    Picture(#[from] PictureError),
    #[error("source {0} is listed twice")]
    DuplicateSource(String),
}

#[derive(Debug, Clone)]
pub struct CompositorConfig {
    pub width: usize,
    pub height: usize,
    /// How long the last picture of a participant that sends nothing new stays on
    /// screen before the placeholder replaces it.
    pub hold: Duration,
    /// (Y, U, V) of the bars beside pictures, of what no tile covers, and of the
    /// whole picture when nobody is there.
    pub background: [u8; 3],
    /// (Y, U, V) of a placeholder tile.
    pub placeholder: [u8; 3],
    /// (Y, U, V) of the figure on a placeholder tile.
    pub figure: [u8; 3],
}

impl Default for CompositorConfig {
    fn default() -> Self {
        Self {
            width: layout::DEFAULT_WIDTH,
            height: layout::DEFAULT_HEIGHT,
            hold: Duration::from_secs(1),
            background: [16, 128, 128],
            placeholder: [48, 128, 128],
            figure: [110, 128, 128],
        }
    }
}

/// A participant's newest picture and when it arrived.
struct Held<P> {
    picture: P,
    at: Instant,
}

/// What a tile shows on the output picture as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Picture,
    Placeholder,
}

struct Tile<Id, P> {
    id: Id,
    rect: Rect,
    held: Option<Held<P>>,
    /// Kept across pictures of the same size: making one computes filter tables.
    scaler: Option<Scaler>,
    /// `None` when the tile must be redrawn.
    shown: Option<Shown>,
    /// Where the picture went when its bars were last filled: pictures of the same
    /// size go to the same place, and their bars are left as they are.
    barred: Option<Rect>,
}

/// Composites the pictures (of type `P`: pictures of its own, or decoders' frames)
/// of sources identified by `Id` (e.g. an SSRC).
pub struct Compositor<Id, P = Picture> {
    config: CompositorConfig,
    output: Picture,
    tiles: Vec<Tile<Id, P>>,
}

impl<Id: Copy + Eq + std::fmt::Debug, P: AsPlanes> Compositor<Id, P> {
    /// A compositor with no sources: renders the background.
    pub fn new(config: CompositorConfig) -> Result<Self, CompositorError> {
        layout::check_output(config.width, config.height)?;
        let output = Picture::filled(config.width, config.height, config.background)?;
        Ok(Self {
            config,
            output,
            tiles: Vec::new(),
        })
    }

    /// Sets the sources in display order. A new list lays the grid out again; the
    /// sources that stay keep their pictures.
    pub fn set_sources(&mut self, ids: &[Id]) -> Result<(), CompositorError> {
        if self.tiles.iter().map(|t| t.id).eq(ids.iter().copied()) {
            return Ok(());
        }
        let rects = layout::tiles(ids.len(), self.config.width, self.config.height)?;
        if let Some(id) = ids
            .iter()
            .enumerate()
            .find_map(|(i, id)| ids[..i].contains(id).then_some(id))
        {
            return Err(CompositorError::DuplicateSource(format!("{id:?}")));
        }
        let mut old = std::mem::take(&mut self.tiles);
        self.tiles = ids
            .iter()
            .zip(rects)
            .map(|(&id, rect)| {
                let previous = old.iter_mut().find(|t| t.id == id);
                let (held, scaler) =
                    previous.map_or((None, None), |t| (t.held.take(), t.scaler.take()));
                Tile {
                    id,
                    rect,
                    held,
                    scaler,
                    shown: None,
                    barred: None,
                }
            })
            .collect();
        let whole = Rect::whole(self.config.width, self.config.height);
        fill(&mut self.output, whole, self.config.background);
        tracing::info!(sources = ids.len(), "video grid laid out");
        Ok(())
    }

    /// The newest decoded picture of source `id`, arrived at `now`. Gives back the
    /// picture it no longer holds (the one replaced, or this one for a source not on
    /// the grid), for its memory to be used again.
    pub(crate) fn push(&mut self, id: Id, picture: P, now: Instant) -> Option<P> {
        match self.tiles.iter_mut().find(|t| t.id == id) {
            Some(tile) => {
                tile.shown = None;
                tile.held
                    .replace(Held { picture, at: now })
                    .map(|h| h.picture)
            }
            None => {
                tracing::trace!(source = ?id, "picture of a source not on the grid dropped");
                Some(picture)
            }
        }
    }

    /// The output picture at `now`.
    pub fn render(&mut self, now: Instant) -> &Picture {
        let config = &self.config;
        for tile in &mut self.tiles {
            let live = tile
                .held
                .as_ref()
                .filter(|h| now.saturating_duration_since(h.at) < config.hold);
            let want = if live.is_some() {
                Shown::Picture
            } else {
                Shown::Placeholder
            };
            if tile.shown == Some(want) {
                continue;
            }
            if tile.shown == Some(Shown::Picture) {
                tracing::debug!(source = ?tile.id, hold = ?config.hold, "no new picture, placeholder shown");
            }
            let drawn = match live {
                Some(held) => {
                    let out = &mut self.output;
                    let (rect, scaler, barred) = (tile.rect, &mut tile.scaler, &mut tile.barred);
                    match draw_picture(out, config, rect, scaler, barred, &held.picture) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(source = ?tile.id, error = %e, "picture not scaled, placeholder shown");
                            false
                        }
                    }
                }
                None => false,
            };
            if !drawn {
                draw_placeholder(&mut self.output, config, tile.rect);
                tile.barred = None;
            }
            tile.shown = Some(if drawn {
                Shown::Picture
            } else {
                Shown::Placeholder
            });
        }
        &self.output
    }
}

/// Scales `picture` into `rect` with its aspect ratio kept, bars in the background
/// colour; `barred` is where the last picture went, whose bars are there already.
fn draw_picture(
    output: &mut Picture,
    config: &CompositorConfig,
    rect: Rect,
    scaler: &mut Option<Scaler>,
    barred: &mut Option<Rect>,
    picture: &impl AsPlanes,
) -> Result<(), ScaleError> {
    let picture = picture.planes();
    let (w, h) = (picture.width(), picture.height());
    let target = fit(w, h, rect);
    if *barred != Some(target) {
        // Only the bars: the picture covers the rest.
        for bar in bars(rect, target) {
            fill(output, bar, config.background);
        }
        *barred = Some(target);
    }
    let scaler = match scaler {
        Some(s)
            if s.source_size() == (w, h) && s.target_size() == (target.width, target.height) =>
        {
            s
        }
        _ => scaler.insert(Scaler::new(w, h, target.width, target.height)?),
    };
    scaler.scale(picture, output, target)
}

/// The parts of `rect` outside `inner` (centred in it, as `fit` places it): up to
/// two bars on the sides or above and below.
fn bars(rect: Rect, inner: Rect) -> impl Iterator<Item = Rect> {
    let left = Rect {
        width: inner.x - rect.x,
        ..rect
    };
    let right = Rect {
        x: inner.right(),
        width: rect.right() - inner.right(),
        ..rect
    };
    let top = Rect {
        height: inner.y - rect.y,
        ..rect
    };
    let bottom = Rect {
        y: inner.bottom(),
        height: rect.bottom() - inner.bottom(),
        ..rect
    };
    [left, right, top, bottom]
        .into_iter()
        .filter(|r| r.width > 0 && r.height > 0)
}

/// A placeholder tile: a head above shoulders, centred, in units of an eighth of
/// the tile's shorter side.
fn draw_placeholder(output: &mut Picture, config: &CompositorConfig, rect: Rect) {
    fill(output, rect, config.placeholder);
    let unit = (rect.width.min(rect.height) / 8) & !1;
    if unit == 0 {
        return;
    }
    let cx = rect.x + ((rect.width / 2) & !1);
    let cy = rect.y + ((rect.height / 2) & !1);
    let head = Rect {
        x: cx - unit,
        y: cy - 3 * unit,
        width: 2 * unit,
        height: 2 * unit,
    };
    let shoulders = Rect {
        x: cx - 2 * unit,
        y: cy,
        width: 4 * unit,
        height: 2 * unit,
    };
    fill(output, head, config.figure);
    fill(output, shoulders, config.figure);
}

/// Fills an even-aligned rectangle inside `picture` with one colour.
fn fill(picture: &mut Picture, rect: Rect, [y, u, v]: [u8; 3]) {
    let width = picture.width();
    let (luma, cb, cr) = picture.planes_mut();
    for row in rect.y..rect.bottom() {
        luma[row * width + rect.x..][..rect.width].fill(y);
    }
    for (plane, value) in [(cb, u), (cr, v)] {
        for row in rect.y / 2..rect.bottom() / 2 {
            plane[row * width / 2 + rect.x / 2..][..rect.width / 2].fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::video::rgb_to_yuv;
    use crate::synth::PALETTE;

    fn compositor() -> (Compositor<u32>, CompositorConfig) {
        let cfg = CompositorConfig::default();
        (Compositor::new(cfg.clone()).unwrap(), cfg)
    }

    fn solid(width: usize, height: usize, id: u32) -> Picture {
        Picture::filled(width, height, rgb_to_yuv(PALETTE[id as usize])).unwrap()
    }

    fn centre(r: Rect) -> (usize, usize) {
        (r.x + r.width / 2, r.y + r.height / 2)
    }

    fn assert_colour(out: &Picture, (x, y): (usize, usize), want: [u8; 3]) {
        let got = out.pixel(x, y);
        let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 2);
        assert!(close, "({x}, {y}) is {got:?}, want {want:?}");
    }

    /// Each source `ids[i]` shows its palette colour in tile `i` of an `n`-tile grid.
    fn assert_grid(out: &Picture, n: usize, ids: &[u32]) {
        let rects = layout::tiles(n, out.width(), out.height()).unwrap();
        for (&id, rect) in ids.iter().zip(rects) {
            assert_colour(out, centre(rect), rgb_to_yuv(PALETTE[id as usize]));
        }
    }

    #[test]
    fn sources_join_and_leave() {
        let (mut c, cfg) = compositor();
        let t0 = Instant::now();
        c.set_sources(&[0, 1, 2, 3]).unwrap();
        for id in 0..4 {
            c.push(id, solid(640, 360, id), t0);
        }
        assert_grid(c.render(t0), 4, &[0, 1, 2, 3]);

        // A fifth joins: 3x2, and it has no picture yet.
        c.set_sources(&[0, 1, 2, 3, 4]).unwrap();
        let out = c.render(t0);
        assert_grid(out, 5, &[0, 1, 2, 3]);
        let fifth = layout::tiles(5, 1280, 720).unwrap()[4];
        assert_colour(out, centre(fifth), cfg.figure);
        c.push(4, solid(320, 240, 4), t0);
        assert_grid(c.render(t0), 5, &[0, 1, 2, 3, 4]);

        // One leaves: 2x2 again, with the last row of one centred.
        c.set_sources(&[0, 2, 4]).unwrap();
        let out = c.render(t0);
        assert_grid(out, 3, &[0, 2, 4]);
        assert_colour(out, (0, 719), cfg.background);
    }

    #[test]
    fn stalled_source_is_held_then_replaced() {
        let (mut c, cfg) = compositor();
        let t0 = Instant::now();
        let hold = cfg.hold;
        c.set_sources(&[7, 8]).unwrap();
        assert_eq!(c.push(7, solid(640, 360, 7), t0), None);
        c.push(8, solid(640, 360, 8), t0);
        let almost = t0 + hold - Duration::from_millis(1);
        // The picture it replaces comes back, for its memory to be used again.
        assert_eq!(
            c.push(8, solid(640, 360, 8), almost),
            Some(solid(640, 360, 8))
        );
        assert_grid(c.render(almost), 2, &[7, 8]);

        let rects = layout::tiles(2, 1280, 720).unwrap();
        let out = c.render(t0 + hold);
        assert_colour(out, centre(rects[0]), cfg.figure);
        assert_colour(out, (rects[0].x + 4, rects[0].y + 4), cfg.placeholder);
        assert_colour(out, centre(rects[1]), rgb_to_yuv(PALETTE[8]));

        // 7 is back with a new picture; now 8 has stalled.
        let later = t0 + hold * 2;
        c.push(7, solid(640, 360, 7), later);
        let out = c.render(later);
        assert_colour(out, centre(rects[0]), rgb_to_yuv(PALETTE[7]));
        assert_colour(out, centre(rects[1]), cfg.figure);
    }

    #[test]
    fn four_by_three_is_pillarboxed_in_a_wide_tile() {
        let (mut c, cfg) = compositor();
        let t0 = Instant::now();
        c.set_sources(&[2]).unwrap();
        c.push(2, solid(640, 480, 2), t0);
        let out = c.render(t0);
        // 960x720 centred in 1280x720: bars 160 wide on both sides.
        let colour = rgb_to_yuv(PALETTE[2]);
        let bg = cfg.background;
        for (x, want) in [(158, bg), (160, colour), (1119, colour), (1120, bg)] {
            assert_colour(out, (x, 360), want);
        }
        assert_colour(out, (640, 0), colour);
        assert_colour(out, (640, 719), colour);
    }

    #[test]
    fn bars_are_filled_again_only_when_the_picture_moves_or_was_covered() {
        let (mut c, cfg) = compositor();
        let t0 = Instant::now();
        let bg = cfg.background;
        c.set_sources(&[2]).unwrap();
        let bar = (80, 360);
        c.push(2, solid(640, 480, 2), t0);
        assert_colour(c.render(t0), bar, bg);
        // Marked behind the compositor's back: a bar filled again would lose it.
        let marked = |c: &mut Compositor<u32>| c.output.planes_mut().0[360 * 1280 + 80] = 200;
        marked(&mut c);
        c.push(2, solid(640, 480, 3), t0);
        let out = c.render(t0);
        assert_eq!(
            out.pixel(bar.0, bar.1)[0],
            200,
            "same place: bars left as they are"
        );
        assert_colour(out, (640, 360), rgb_to_yuv(PALETTE[3]));
        // A wide picture covers the bars; the next 4:3 one needs them again.
        c.push(2, solid(1280, 720, 4), t0);
        assert_colour(c.render(t0), bar, rgb_to_yuv(PALETTE[4]));
        c.push(2, solid(640, 480, 2), t0);
        assert_colour(c.render(t0), bar, bg);
        // So after a placeholder.
        let later = t0 + cfg.hold;
        assert_colour(c.render(later), bar, cfg.placeholder);
        c.push(2, solid(640, 480, 2), later);
        assert_colour(c.render(later), bar, bg);
        marked(&mut c);
        // And after the grid was laid out again.
        c.set_sources(&[2, 5]).unwrap();
        c.push(2, solid(640, 480, 2), later);
        let rect = layout::tiles(2, 1280, 720).unwrap()[0];
        let inner = fit(640, 480, rect);
        let out = c.render(later);
        assert_colour(out, (rect.x + 2, rect.y + 2), bg);
        assert_colour(out, centre(inner), rgb_to_yuv(PALETTE[2]));
    }

    #[test]
    fn nobody_gives_the_background() {
        let (mut c, cfg) = compositor();
        let bg = Picture::filled(1280, 720, cfg.background).unwrap();
        assert_eq!(c.render(Instant::now()), &bg);
        c.set_sources(&[1]).unwrap();
        c.push(1, solid(64, 36, 1), Instant::now());
        c.render(Instant::now());
        c.set_sources(&[]).unwrap();
        assert_eq!(c.render(Instant::now()), &bg);
    }

    #[test]
    fn bad_source_lists_are_refused() {
        let (mut c, cfg) = compositor();
        assert!(matches!(
            c.set_sources(&[1, 2, 1]),
            Err(CompositorError::DuplicateSource(_))
        ));
        let many: Vec<u32> = (0..17).collect();
        assert!(matches!(
            c.set_sources(&many),
            Err(CompositorError::Layout(LayoutError::TooMany(17)))
        ));
        // A picture of a source not on the grid changes nothing and is given back.
        let back = c.push(5, solid(64, 36, 5), Instant::now());
        assert_eq!(back, Some(solid(64, 36, 5)));
        let bg = Picture::filled(1280, 720, cfg.background).unwrap();
        assert_eq!(c.render(Instant::now()), &bg);
    }

    #[test]
    fn sixteen_sources_fill_a_four_by_four_grid() {
        let (mut c, _) = compositor();
        let t0 = Instant::now();
        let ids: Vec<u32> = (0..16).collect();
        c.set_sources(&ids).unwrap();
        for &id in &ids {
            c.push(id, solid(640, 360, id), t0);
        }
        assert_grid(c.render(t0), ids.len(), &ids);
    }
}
