//! Calibration patches: LR crops from a folder of images.

use std::path::Path;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

use crate::data::{list_images, load_rgb, RgbImage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchMode {
    /// The centre crop of each of the first N images in file-name order.
    Center,
    /// A random crop of a random image (with replacement), from a seed.
    Random,
}

/// A batch of equally sized planar RGB patches, (n, 3, size, size).
pub struct Patches {
    pub n: usize,
    pub size: usize,
    pub data: Vec<f32>,
}

fn crop(img: &RgbImage, x0: usize, y0: usize, size: usize, out: &mut Vec<f32>) {
    for c in 0..3 {
        for y in y0..y0 + size {
            let row = (c * img.height + y) * img.width;
            out.extend_from_slice(&img.data[row + x0..row + x0 + size]);
        }
    }
}

/// Cuts `n` patches of `size`×`size` from the images of `dir`.
pub fn load_patches(dir: &Path, n: usize, size: usize, mode: PatchMode, seed: u64, window: usize) -> Result<Patches> {
    if n == 0 {
        bail!("--patches must be at least 1");
    }
    if size < window {
        bail!("calibration patches of {size}×{size} are smaller than a {window}×{window} window");
    }
    let files = list_images(dir)?;
    let mut data = Vec::with_capacity(n * 3 * size * size);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..n {
        let file = match mode {
            PatchMode::Center if i >= files.len() => {
                bail!("{}: {n} centre patches asked for, but the folder has {} images", dir.display(), files.len())
            }
            PatchMode::Center => &files[i],
            PatchMode::Random => &files[rng.random_range(0..files.len())],
        };
        let img = load_rgb(file)?;
        if img.width < size || img.height < size {
            bail!("{}: {}×{} is smaller than a {size}×{size} calibration patch", file.display(), img.width, img.height);
        }
        let (x0, y0) = match mode {
            PatchMode::Center => ((img.width - size) / 2, (img.height - size) / 2),
            PatchMode::Random => (rng.random_range(0..=img.width - size), rng.random_range(0..=img.height - size)),
        };
        crop(&img, x0, y0, size, &mut data);
    }
    Ok(Patches { n, size, data })
}
