//! Benchmark folders in the SwinIR / EDSR layout:
//! `<dir>/HR/<name>.png` and `<dir>/LR_bicubic/X<s>/<name>x<s>.png`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::image_io::is_image_file;

/// One HR image and its LR partner for a given scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub name: String,
    pub hr: PathBuf,
    pub lr: PathBuf,
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

/// Image files directly inside `dir`, sorted by file name; an error if there are none.
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
        if p.is_file() && is_image_file(&p) {
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

/// HR/LR pairs of a benchmark set at scale `scale`, sorted by name. Every HR image must
/// have its LR partner `<name>x<s>.<ext>` (same extension as the HR file).
pub fn benchmark_pairs(dir: &Path, scale: usize) -> Result<Vec<Pair>> {
    if !dir.is_dir() {
        bail!("{}: dataset folder not found", dir.display());
    }
    let hr_dir = dir.join("HR");
    let lr_dir = dir.join("LR_bicubic").join(format!("X{scale}"));
    if !hr_dir.is_dir() {
        bail!(
            "{}: HR folder missing (expected <set>/HR/<name>.png)",
            hr_dir.display()
        );
    }
    if !lr_dir.is_dir() {
        bail!(
            "{}: no LR images for x{scale} (expected <set>/LR_bicubic/X{scale}/<name>x{scale}.png)",
            lr_dir.display()
        );
    }
    list_images(&lr_dir)?; // an empty LR folder gets its own clear error
    let mut pairs = Vec::new();
    for hr in list_images(&hr_dir)? {
        let name = hr
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
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
        pairs.push(Pair { name, hr, lr });
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pairs)
}
