//! Upscaling whole images with the GPU graph: one plan per input size, and
//! overlapping tiles (as the official SwinIR test script does) when asked to, or
//! when an image is too large for the adapter's storage-binding limit or memory.

use anyhow::{bail, Result};

use crate::data::RgbImage;
use crate::gpu::{largest_fitting, GpuContext, OutOfGpuMemory};
use crate::model::graph::{fits_exactly, Capture, Engine, GpuModel, Mode, Plan, QuantModel};
use crate::model::SwinWeights;
use crate::quant::QParams;

/// Overlap between neighbouring tiles, in LR pixels (the official script's default).
pub const TILE_OVERLAP: usize = 32;

/// How an image is split for the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Whole image when it fits (a storage binding and the GPU's memory), else tiles of
    /// the largest size that fits.
    Auto,
    /// Tiles of this LR size (a multiple of the window), overlapping by TILE_OVERLAP.
    Tile(usize),
}

pub struct Upscaler<'a> {
    ctx: &'a GpuContext,
    model: GpuModel,
    /// Present for a quantized model.
    quant: Option<(QuantModel, Engine)>,
    tiling: Tiling,
    /// The last plan, reused while image sizes repeat.
    plan: Option<Plan>,
}

impl<'a> Upscaler<'a> {
    pub fn new(ctx: &'a GpuContext, weights: &SwinWeights, tiling: Tiling) -> Result<Self> {
        if let Tiling::Tile(t) = tiling {
            let win = weights.config.window;
            if t == 0 || t % win != 0 {
                bail!("--tile {t}: the tile size must be a positive multiple of the window size {win}");
            }
            if t <= TILE_OVERLAP {
                bail!("--tile {t}: the tile size must exceed the overlap of {TILE_OVERLAP} pixels");
            }
        }
        Ok(Self { ctx, model: GpuModel::upload(ctx, weights), quant: None, tiling, plan: None })
    }

    /// The quantized model with these parameters (one per quantizer), run by `engine`.
    pub fn quantized(mut self, bits: u32, params: &[QParams], engine: Engine) -> Self {
        self.quant = Some((QuantModel::new(self.ctx, &self.model, bits, params, &[engine]), engine));
        self.plan = None;
        self
    }

    /// "fp32", "fake" or "int".
    pub fn engine(&self) -> &'static str {
        self.quant.as_ref().map_or("fp32", |(_, e)| e.name())
    }

    pub fn scale(&self) -> usize {
        self.model.config.scale
    }

    /// Runs the model on a planar RGB image: the output, un-clamped, (3, s·h, s·w), and
    /// the tile size it ran in (None: whole).
    pub fn upscale(&mut self, img: &RgbImage) -> Result<(RgbImage, Option<usize>)> {
        if img.width == 0 || img.height == 0 {
            bail!("empty image");
        }
        let tile = self.tile_for(img.height, img.width)?;
        let out = match tile {
            None => self.run_whole(img)?,
            Some(t) => self.run_tiled(img, t)?,
        };
        Ok((out, tile))
    }

    /// The tile size for an h×w image, or None for the whole image. Automatic tiling
    /// runs an image whole when its activations fit a storage binding and its plan
    /// fits the GPU's memory (the plan is then made here), else in the largest tiles
    /// that fit both.
    fn tile_for(&mut self, h: usize, w: usize) -> Result<Option<usize>> {
        if let Tiling::Tile(t) = self.tiling {
            return Ok((t < h.max(w)).then_some(t));
        }
        if fits_exactly(self.ctx, &self.model.config, 1, h, w) && self.plan_fits(h, w)? {
            return Ok(None);
        }
        self.largest_tile(h, w).map(Some)
    }

    /// The largest tile, a multiple of the window above the overlap, whose activations
    /// fit a storage binding and whose plan (for an h×w image) fits the GPU's memory.
    fn largest_tile(&mut self, h: usize, w: usize) -> Result<usize> {
        let win = self.model.config.window;
        let mut t = win;
        while fits_exactly(self.ctx, &self.model.config, 1, t + win, t + win) && t < 4096 {
            t += win;
        }
        let smallest = TILE_OVERLAP / win + 1;
        let fits = |up: &mut Self, k: usize| up.plan_fits((k * win).min(h), (k * win).min(w));
        if t / win < smallest || fits(self, t / win)? {
            return Ok(t);
        }
        // Not even the smallest tile fitting is an error, which says why.
        self.plan_for((smallest * win).min(h), (smallest * win).min(w))?;
        let k = largest_fitting(t / win, |k| if k < smallest { Ok(true) } else { fits(self, k) })?;
        Ok(k * win)
    }

    /// Whether a plan for an h×w input fits the GPU's memory (made, and kept, if so).
    fn plan_fits(&mut self, h: usize, w: usize) -> Result<bool> {
        match self.plan_for(h, w) {
            Ok(()) => Ok(true),
            Err(e) if e.is::<OutOfGpuMemory>() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes `self.plan` the plan for an h×w input, unless it is already.
    fn plan_for(&mut self, h: usize, w: usize) -> Result<()> {
        if matches!(&self.plan, Some(p) if p.height == h && p.width == w && p.batch == 1) {
            return Ok(());
        }
        self.plan = None; // free the old activations before allocating new ones
        let mode = self.quant.as_ref().map_or(Mode::Float, |(q, engine)| engine.mode(q));
        let hint = if matches!(self.tiling, Tiling::Tile(_)) { " (a smaller --tile needs less)" } else { "" };
        let what = format!("the activations of a {w}×{h} input{hint}");
        self.plan = Some(self.ctx.allocating(&what, || Plan::with_mode(self.ctx, &self.model, (1, h, w), Capture::Nothing, mode))?);
        Ok(())
    }

    fn run_whole(&mut self, img: &RgbImage) -> Result<RgbImage> {
        let (h, w) = (img.height, img.width);
        self.plan_for(h, w)?;
        let plan = self.plan.as_ref().expect("plan");
        let data = plan.forward(self.ctx, &img.data, None);
        Ok(RgbImage { width: w * self.scale(), height: h * self.scale(), data })
    }

    /// Overlapping tiles, averaged where they overlap (SwinIR's `test` with `--tile`).
    fn run_tiled(&mut self, img: &RgbImage, tile: usize) -> Result<RgbImage> {
        let s = self.scale();
        let (h, w) = (img.height, img.width);
        let (th, tw) = (tile.min(h), tile.min(w));
        let (oh, ow) = (h * s, w * s);
        let mut acc = vec![0f32; 3 * oh * ow];
        let mut weight = vec![0f32; oh * ow];
        for y0 in tile_starts(h, th) {
            for x0 in tile_starts(w, tw) {
                let patch = crop(img, x0, y0, tw, th);
                let out = self.run_whole(&patch)?;
                for c in 0..3 {
                    for y in 0..th * s {
                        let row = ((c * oh) + y0 * s + y) * ow + x0 * s;
                        let src = &out.data[(c * th * s + y) * tw * s..][..tw * s];
                        acc[row..row + tw * s].iter_mut().zip(src).for_each(|(a, v)| *a += v);
                    }
                }
                for y in 0..th * s {
                    let row = (y0 * s + y) * ow + x0 * s;
                    weight[row..row + tw * s].iter_mut().for_each(|v| *v += 1.0);
                }
            }
        }
        for c in 0..3 {
            acc[c * oh * ow..(c + 1) * oh * ow].iter_mut().zip(&weight).for_each(|(a, n)| *a /= n);
        }
        Ok(RgbImage { width: ow, height: oh, data: acc })
    }
}

/// Tile origins along one axis: every (tile − overlap) pixels, plus a last tile flush with the end.
fn tile_starts(n: usize, tile: usize) -> Vec<usize> {
    let stride = tile.saturating_sub(TILE_OVERLAP).max(1);
    let mut v: Vec<usize> = (0..n.saturating_sub(tile)).step_by(stride).collect();
    v.push(n - tile);
    v
}

fn crop(img: &RgbImage, x0: usize, y0: usize, w: usize, h: usize) -> RgbImage {
    let mut data = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        for y in y0..y0 + h {
            let row = (c * img.height + y) * img.width;
            data.extend_from_slice(&img.data[row + x0..row + x0 + w]);
        }
    }
    RgbImage { width: w, height: h, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_axis() {
        assert_eq!(tile_starts(100, 64), vec![0, 32, 36]);
        assert_eq!(tile_starts(64, 64), vec![0]);
        assert_eq!(tile_starts(200, 64), vec![0, 32, 64, 96, 128, 136]);
    }
}
