//! Benchmark folders in the SwinIR / EDSR layout:
//! `<dir>/HR/<name>.png` and `<dir>/LR_bicubic/X<s>/<name>x<s>.png`. Without the LR
//! folder of a scale (or with the HR images directly in `<dir>`), the LR images are made
//! from the HR ones the way the benchmark LR files were made.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::bicubic::downscale_matlab;
use super::image_io::{is_image_file, load_rgb, load_rgb_u8, RgbImage, RgbU8};
use super::metrics::min_scored_lr_side;

/// One HR image and its LR partner for a given scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub name: String,
    pub hr: PathBuf,
    pub lr: LrSource,
}

/// Where a pair's LR image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LrSource {
    /// The set's own LR file.
    File(PathBuf),
    /// No LR folder for this scale: the HR image downscaled by this factor with MATLAB's
    /// bicubic after `modcrop`, as the benchmark LR files are made.
    FromHr(usize),
}

impl Pair {
    /// The HR image as 8-bit RGB and the LR image in 0..=1 (a 16-bit LR file keeps its
    /// precision), checked to be a ×`s` pair that can be scored. The HR file is decoded
    /// once, also when the LR is made from it.
    pub fn load_hr_lr(&self, s: usize) -> Result<(RgbU8, RgbImage)> {
        self.load_pair(s, |path| load_rgb(path), |lr| lr.to_f32(), |lr| (lr.width, lr.height))
    }

    /// [`Pair::load_hr_lr`] with the LR image as 8-bit RGB.
    pub fn load_hr_lr_u8(&self, s: usize) -> Result<(RgbU8, RgbU8)> {
        self.load_pair(s, |path| load_rgb_u8(path), |lr| lr, |lr| (lr.width, lr.height))
    }

    /// The HR image and the LR image: from its file by `load`, or made from the HR image
    /// and converted by `made`; `size` gives its width and height.
    fn load_pair<L>(&self, s: usize, load: fn(&Path) -> Result<L>, made: fn(RgbU8) -> L, size: fn(&L) -> (usize, usize)) -> Result<(RgbU8, L)> {
        let hr = load_rgb_u8(&self.hr)?;
        let lr = match &self.lr {
            LrSource::File(path) => load(path)?,
            &LrSource::FromHr(by) => made(downscale_checked(&hr, &self.hr, by)?),
        };
        self.check_sizes(&hr, size(&lr), s)?;
        Ok((hr, lr))
    }

    /// An error unless `hr` is s times the LR image of `w`×`h` (up to s − 1 pixels more,
    /// which `modcrop` cut before downscaling) and the SR image is large enough to score.
    fn check_sizes(&self, hr: &RgbU8, (w, h): (usize, usize), s: usize) -> Result<()> {
        let fits = |hr_side: usize, lr_side: usize| (lr_side * s..(lr_side + 1) * s).contains(&hr_side);
        if !fits(hr.width, w) || !fits(hr.height, h) {
            bail!(
                "{}: HR image {}×{} is not ×{s} its LR image {w}×{h} ({}): expected {}×{}, or up to {} pixels more",
                self.hr.display(),
                hr.width,
                hr.height,
                self.lr_label(),
                w * s,
                h * s,
                s - 1
            );
        }
        let min = min_scored_lr_side(s);
        if w < min || h < min {
            bail!(
                "{}: LR image {w}×{h} is too small to score at ×{s}: SSIM's 11×11 window must fit in the SR image less its {s}-pixel border, which needs at least {min}×{min}",
                self.lr_label()
            );
        }
        Ok(())
    }

    /// The LR image's name in messages.
    pub fn lr_label(&self) -> String {
        match &self.lr {
            LrSource::File(path) => path.display().to_string(),
            LrSource::FromHr(s) => format!("{} downscaled ×{s}", self.hr.display()),
        }
    }
}

/// The HR image file `path` made LR ×`s` the way the benchmark LR files were made
/// (MATLAB's bicubic after `modcrop`).
pub fn load_downscaled(path: &Path, s: usize) -> Result<RgbU8> {
    downscale_checked(&load_rgb_u8(path)?, path, s)
}

/// `hr` (read from `path`) made LR ×`s` as [`load_downscaled`] does.
fn downscale_checked(hr: &RgbU8, path: &Path, s: usize) -> Result<RgbU8> {
    if hr.width < s || hr.height < s {
        bail!("{}: HR image {}×{} is too small to downscale ×{s}", path.display(), hr.width, hr.height);
    }
    Ok(downscale_matlab(hr, s))
}

/// A line saying that the set's LR images are made from its HR images, if they are.
pub fn lr_note(dir: &Path, pairs: &[Pair]) -> Option<String> {
    match pairs.first()?.lr {
        LrSource::File(_) => None,
        LrSource::FromHr(s) => Some(format!(
            "{}: no LR_bicubic/X{s} folder: the LR images are the HR images downscaled ×{s} with MATLAB's bicubic, as the benchmark LR files are made",
            dataset_name(dir)
        )),
    }
}

/// The folder's own name (e.g. "Set5"), used to label results.
pub fn dataset_name(dir: &Path) -> String {
    // `file_name` is None for "..", "/" or "dir/."; canonicalize to still get a name.
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    name.or_else(|| {
        dir.canonicalize()
            .ok()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    })
    .unwrap_or_else(|| dir.display().to_string())
}

/// An image file that folder listings include: hidden files (a leading dot, such as
/// macOS's `._name.png` resource forks) are left out.
fn is_listed_image(p: &Path) -> bool {
    let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
    !hidden && p.is_file() && is_image_file(p)
}

/// Image files directly inside `dir` (hidden ones left out), sorted by file name; an
/// error if there are none.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?;
    let mut files = Vec::new();
    for e in entries {
        let p = e
            .with_context(|| format!("{}: cannot list folder", dir.display()))?
            .path();
        if is_listed_image(&p) {
            files.push(p);
        }
    }
    if files.is_empty() {
        bail!(
            "{}: no image files (png, jpg, jpeg, bmp, tif, tiff)",
            dir.display()
        );
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// HR/LR pairs of a benchmark set at scale `scale`, sorted by name. With an LR folder
/// for the scale, every HR image must have its LR partner `<name>x<s>.<ext>` (same
/// extension as the HR file); without one, or for a plain folder of HR images, the LR
/// images are made from the HR ones ([`LrSource::FromHr`]).
pub fn benchmark_pairs(dir: &Path, scale: usize) -> Result<Vec<Pair>> {
    if !dir.is_dir() {
        let what = if dir.exists() { "is a file, not a dataset folder" } else { "dataset folder not found" };
        bail!("{}: {what}", dir.display());
    }
    let hr_dir = dir.join("HR");
    let lr_root = dir.join("LR_bicubic");
    let lr_dir = lr_root.join(format!("X{scale}"));
    if hr_dir.exists() && !hr_dir.is_dir() {
        bail!("{}: is a file; the HR images go in a folder of that name", hr_dir.display());
    }
    if !hr_dir.is_dir() {
        if lr_root.is_dir() || !has_images(dir) {
            bail!(
                "{}: HR folder missing (expected <set>/HR/<name>.png, or a folder of HR images)",
                hr_dir.display()
            );
        }
        return hr_pairs(dir, |_, _| Ok(LrSource::FromHr(scale)));
    }
    if !lr_dir.is_dir() {
        return hr_pairs(&hr_dir, |_, _| Ok(LrSource::FromHr(scale)));
    }
    list_images(&lr_dir)?; // an empty LR folder gets its own clear error
    hr_pairs(&hr_dir, |hr, name| {
        let ext = hr
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lr = lr_dir.join(format!("{name}x{scale}.{ext}"));
        if !lr.is_file() {
            bail!(
                "{}: HR image has no LR partner {}",
                hr.display(),
                lr.display()
            );
        }
        Ok(LrSource::File(lr))
    })
}

fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| is_listed_image(&e.path()))
    })
}

/// A pair for every image of `hr_dir`, sorted by name, with the LR source `lr` gives.
fn hr_pairs(hr_dir: &Path, lr: impl Fn(&Path, &str) -> Result<LrSource>) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for hr in list_images(hr_dir)? {
        let name = hr
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lr = lr(&hr, &name)?;
        pairs.push(Pair { name, hr, lr });
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pairs)
}
