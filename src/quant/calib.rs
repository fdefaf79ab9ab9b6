//! Calibration patches: LR crops from a folder of images.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

use crate::data::{list_images, load_downscaled, load_rgb, RgbImage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchMode {
    /// The centre crop of each of the first N images in file-name order.
    Center,
    /// A random crop of a random image (with replacement), from a seed.
    Random,
}

/// The side of calibration and training patches (LR pixels) where the images allow it.
pub const PATCH: usize = 64;

/// The side of the patches cut from calibration or training images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchSide {
    /// Exactly this side; a smaller image is an error.
    Exact(usize),
    /// This side, or less where the images are smaller: the largest multiple of the
    /// window they all allow (48 for the calibration crops made LR at ×4).
    AtMost(usize),
}

impl PatchSide {
    /// The side for images whose smallest LR side is `smallest` (None: no image read):
    /// for `AtMost`, a multiple of the window, and at least one window (then an image
    /// smaller than that is named by the caller's size check).
    pub fn resolve(self, smallest: Option<usize>, window: usize) -> usize {
        match self {
            PatchSide::Exact(side) => side,
            PatchSide::AtMost(side) if side < window => side,
            PatchSide::AtMost(side) => (smallest.map_or(side, |m| side.min(m)) / window).max(1) * window,
        }
    }
}

/// A batch of equally sized planar RGB patches, (n, 3, size, size).
#[derive(Clone)]
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

/// An LR image: the file itself, or with `hr_scale` the file as an HR image made LR with
/// the MATLAB-exact bicubic the benchmark LR images were made with (SPEC datasets README).
fn load_lr(file: &Path, hr_scale: Option<usize>) -> Result<RgbImage> {
    match hr_scale {
        Some(s) => Ok(load_downscaled(file, s)?.to_f32()),
        None => load_rgb(file),
    }
}

/// The smallest side of the images `files` in LR (HR sides divided by `hr_scale`), from
/// their headers; None if none can be read (loading them will say why).
fn smallest_lr_side(files: &[PathBuf], hr_scale: Option<usize>) -> Option<usize> {
    files.iter().filter_map(|f| image::image_dimensions(f).ok()).map(|(w, h)| w.min(h) as usize / hr_scale.unwrap_or(1)).min()
}

/// Cuts `n` square patches of side `side` from the images of `dir` (HR images made LR
/// first, with `hr_scale`).
pub fn load_patches(dir: &Path, hr_scale: Option<usize>, n: usize, side: PatchSide, mode: PatchMode, seed: u64, window: usize) -> Result<Patches> {
    if n == 0 {
        bail!("--patches must be at least 1");
    }
    let files = list_images(dir)?;
    let used = match mode {
        PatchMode::Center => &files[..n.min(files.len())],
        PatchMode::Random => &files[..],
    };
    let size = side.resolve(smallest_lr_side(used, hr_scale), window);
    if size < window {
        bail!("calibration patches of {size}×{size} are smaller than a {window}×{window} window");
    }
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
        let img = load_lr(file, hr_scale)?;
        if img.width < size || img.height < size {
            bail!("{}: {}×{} (LR) is smaller than a {size}×{size} calibration patch", file.display(), img.width, img.height);
        }
        let (x0, y0) = match mode {
            PatchMode::Center => ((img.width - size) / 2, (img.height - size) / 2),
            PatchMode::Random => (rng.random_range(0..=img.width - size), rng.random_range(0..=img.height - size)),
        };
        crop(&img, x0, y0, size, &mut data);
    }
    Ok(Patches { n, size, data })
}

/// Random training patches for phase 2: a random crop of a random image, with one of
/// the eight flips and 90° rotations, drawn afresh for every batch.
pub struct PatchSampler {
    images: Vec<RgbImage>,
    size: usize,
    rng: rand::rngs::StdRng,
    /// Hand out the first batch again and again (tests).
    repeat: bool,
    first: Option<Patches>,
}

impl PatchSampler {
    /// Loads every image of the folders `dirs` (each at least as large as a patch, in
    /// LR). With `hr_scale`, the folders hold HR images, made LR as in [`load_patches`].
    pub fn new(dirs: &[&Path], hr_scale: Option<usize>, side: PatchSide, seed: u64, window: usize) -> Result<Self> {
        if let PatchSide::Exact(size) = side {
            if size < window || !size.is_multiple_of(window) {
                bail!("--patch {size}: training patches must be a multiple of the {window}×{window} window");
            }
        }
        let mut images = Vec::new();
        for dir in dirs {
            for file in list_images(dir)? {
                images.push((load_lr(&file, hr_scale)?, file));
            }
        }
        let size = side.resolve(images.iter().map(|(img, _)| img.width.min(img.height)).min(), window);
        if let Some((img, file)) = images.iter().find(|(img, _)| img.width < size || img.height < size) {
            bail!("{}: {}×{} (LR) is smaller than a {size}×{size} training patch", file.display(), img.width, img.height);
        }
        let images = images.into_iter().map(|(img, _)| img).collect();
        Ok(Self { images, size, rng: rand::rngs::StdRng::seed_from_u64(seed), repeat: false, first: None })
    }

    /// The side of the patches.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A sampler that hands out its first batch again and again (tests).
    pub fn fixed(self) -> Self {
        Self { repeat: true, ..self }
    }

    pub fn batch(&mut self, n: usize) -> Patches {
        if let Some(p) = self.first.as_ref().filter(|p| p.n == n) {
            return p.clone();
        }
        let p = self.draw(n);
        if self.repeat {
            self.first = Some(p.clone());
        }
        p
    }

    /// Moves on past `batches` batches of `n` patches, as if they had been drawn: a
    /// resumed phase 2 then trains on the batches an uninterrupted one would.
    pub fn skip_batches(&mut self, batches: usize, n: usize) {
        for _ in 0..batches * n {
            self.next_patch();
        }
    }

    fn draw(&mut self, n: usize) -> Patches {
        let size = self.size;
        let mut data = Vec::with_capacity(n * 3 * size * size);
        for _ in 0..n {
            let (i, x0, y0, which) = self.next_patch();
            let mut patch = Vec::with_capacity(3 * size * size);
            crop(&self.images[i], x0, y0, size, &mut patch);
            data.extend(dihedral(&patch, size, which));
        }
        Patches { n, size, data }
    }

    /// The next patch: its image, corner and symmetry (see [`dihedral`]).
    fn next_patch(&mut self) -> (usize, usize, usize, u32) {
        let i = self.rng.random_range(0..self.images.len());
        let img = &self.images[i];
        let (x0, y0) = (self.rng.random_range(0..=img.width - self.size), self.rng.random_range(0..=img.height - self.size));
        (i, x0, y0, self.rng.random_range(0..8))
    }
}

/// One of the eight symmetries of a square planar (3, size, size) patch: bit 0
/// flips horizontally, bit 1 vertically, bit 2 transposes (with the flips, the
/// 90° rotations).
pub fn dihedral(patch: &[f32], size: usize, which: u32) -> Vec<f32> {
    let mut out = vec![0.0; patch.len()];
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let (mut sy, mut sx) = if which & 4 != 0 { (x, y) } else { (y, x) };
                if which & 1 != 0 {
                    sx = size - 1 - sx;
                }
                if which & 2 != 0 {
                    sy = size - 1 - sy;
                }
                out[(c * size + y) * size + x] = patch[(c * size + sy) * size + sx];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::PatchSide;

    #[test]
    fn patch_sides_fit_the_images_in_whole_windows() {
        assert_eq!(PatchSide::AtMost(64).resolve(Some(96), 8), 64);
        assert_eq!(PatchSide::AtMost(64).resolve(Some(48), 8), 48);
        assert_eq!(PatchSide::AtMost(64).resolve(Some(53), 8), 48);
        assert_eq!(PatchSide::AtMost(64).resolve(None, 8), 64);
        assert_eq!(PatchSide::AtMost(64).resolve(Some(100), 7), 63, "a multiple of a window that does not divide 64");
        assert_eq!(PatchSide::AtMost(64).resolve(Some(5), 8), 8, "one window: the smaller image is then refused");
        assert_eq!(PatchSide::Exact(64).resolve(Some(48), 8), 64);
        assert_eq!(PatchSide::AtMost(4).resolve(Some(48), 8), 4, "under a window: refused by the caller");
    }
}
