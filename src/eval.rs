//! Benchmark evaluation per SPEC §2: PSNR-Y and SSIM-Y of the clamped, rounded
//! SR output against the HR image, shaving `scale` border pixels.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{psnr_y, ssim_y, Pair, RgbU8};
use crate::upscale::Upscaler;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageScore {
    pub name: String,
    pub psnr_y: f64,
    pub ssim_y: f64,
    /// The side of the overlapping tiles (LR pixels) the image ran in, when it did
    /// (`--tile`, or an image too large for the adapter); not stored.
    #[serde(skip)]
    pub tile: Option<usize>,
}

/// The `--json` shape of `swinq eval`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub dataset: String,
    pub scale: usize,
    pub engine: String,
    pub psnr_y: f64,
    pub ssim_y: f64,
    pub images: Vec<ImageScore>,
    pub seconds: f64,
}

/// Scores one LR/HR pair.
pub fn score_pair(up: &mut Upscaler, pair: &Pair) -> Result<ImageScore> {
    score_pair_sr(up, pair).map(|(score, _)| score)
}

/// Scores one LR/HR pair and also returns the 8-bit SR image that was scored.
pub fn score_pair_sr(up: &mut Upscaler, pair: &Pair) -> Result<(ImageScore, RgbU8)> {
    let scale = up.scale();
    let (hr, lr) = pair.load_hr_lr(scale)?;
    let (sr, tile) = up.upscale(&lr).with_context(|| pair.lr_label())?;
    let sr = sr.to_u8();
    let score = ImageScore { name: pair.name.clone(), psnr_y: psnr_y(&sr, &hr, scale), ssim_y: ssim_y(&sr, &hr, scale), tile };
    Ok((score, sr))
}

/// Scores every pair; `progress` is called after each image.
pub fn evaluate(
    up: &mut Upscaler,
    dataset: &str,
    engine: &str,
    pairs: &[Pair],
    mut progress: impl FnMut(&ImageScore),
) -> Result<EvalReport> {
    evaluate_each(up, dataset, engine, pairs, |_, score, _| progress(score))
}

/// [`evaluate`] that also hands each pair's 8-bit SR image to `each`.
pub fn evaluate_each(
    up: &mut Upscaler,
    dataset: &str,
    engine: &str,
    pairs: &[Pair],
    mut each: impl FnMut(&Pair, &ImageScore, &RgbU8),
) -> Result<EvalReport> {
    let start = Instant::now();
    let mut images = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (score, sr) = score_pair_sr(up, pair)?;
        each(pair, &score, &sr);
        images.push(score);
    }
    let n = images.len().max(1) as f64;
    Ok(EvalReport {
        dataset: dataset.to_string(),
        scale: up.scale(),
        engine: engine.to_string(),
        psnr_y: images.iter().map(|s| s.psnr_y).sum::<f64>() / n,
        ssim_y: images.iter().map(|s| s.ssim_y).sum::<f64>() / n,
        images,
        seconds: start.elapsed().as_secs_f64(),
    })
}
