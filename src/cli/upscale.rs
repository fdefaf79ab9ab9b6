//! `swinq upscale`: which images to read and where their outputs go, then the run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use swinq::data::{self, RgbU8};
use swinq::progress;
use swinq::upscale::Upscaler;

use super::args::{load_model, ModelArgs, QuantArgs};

/// Every input image: files as given, folders expanded in name order.
fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            files.extend(data::list_images(p)?);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(files)
}

/// Where each output goes: `output` itself for one input and a .png name, else
/// `<output>/<stem>_x<s>.png` (the folder is made later, when the model is ready).
/// Returns the inputs to upscale with their outputs: inputs that are the outputs of
/// other inputs (an earlier run into the same folder made them) are left out.
fn output_paths(files: Vec<PathBuf>, output: &Path, scale: usize) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let ext = output.extension().map(|e| e.to_string_lossy().to_lowercase());
    if let Some(ext) = ext.filter(|_| !output.is_dir()) {
        if ext != "png" {
            bail!("{}: outputs are written as PNG; name the file .png or give a folder", output.display());
        }
        if files.len() != 1 {
            bail!("{}: {} input images need an output folder, not a file name", output.display(), files.len());
        }
        data::check_output_file(output)?;
        data::check_not_an_input(&[output], &[("input image", &files[0])])?;
        return Ok((files, vec![output.to_path_buf()]));
    }
    if output.exists() && !output.is_dir() {
        bail!("{}: is a file; give an output folder (or a .png name for one input image)", output.display());
    }
    let out_of = |f: &Path| {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        output.join(format!("{stem}_x{scale}.png"))
    };
    let files = without_earlier_outputs(files, &out_of);
    let mut seen = HashSet::new();
    let outs = files
        .iter()
        .map(|f| {
            let out = out_of(f);
            if !seen.insert(out.clone()) {
                bail!("{}: two inputs would both be written to {}", f.display(), out.display());
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>>>()?;
    // What is left of the outputs among the inputs is the user's own.
    let inputs: HashSet<PathBuf> = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
    for (f, out) in files.iter().zip(&outs) {
        if std::fs::canonicalize(out).is_ok_and(|c| inputs.contains(&c)) {
            bail!(
                "{}: is an input image that swinq upscale did not make, and {}'s output would replace it; move it or give another output folder",
                out.display(),
                f.display()
            );
        }
    }
    Ok((files, outs))
}

/// `files` without the outputs of an earlier `swinq upscale` of another input (`out_of`),
/// marked so in their PNG text, as when a folder is upscaled into itself a second time;
/// this run writes them again. The user's own images of those names stay inputs, which
/// `output_paths` then refuses to overwrite.
fn without_earlier_outputs(files: Vec<PathBuf>, out_of: &dyn Fn(&Path) -> PathBuf) -> Vec<PathBuf> {
    let made: HashMap<PathBuf, String> =
        files.iter().filter_map(|f| Some((std::fs::canonicalize(out_of(f)).ok()?, f.file_name()?.to_string_lossy().into_owned()))).collect();
    if made.is_empty() {
        return files;
    }
    let earlier_output = |f: &PathBuf| {
        let source = std::fs::canonicalize(f).ok().and_then(|c| made.get(&c));
        source.is_some_and(|s| data::png_has_text(f, (data::UPSCALE_SOURCE, s)))
    };
    let (earlier, inputs): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(earlier_output);
    if !earlier.is_empty() {
        eprintln!("note: left out {} that an earlier swinq upscale made from other inputs here", progress::count(earlier.len(), "image", "images"));
    }
    inputs
}

/// `swinq upscale`: every input image upscaled into `output` (a folder, or a .png file
/// for one input).
pub fn upscale(model: &ModelArgs, quant: &QuantArgs, inputs: &[PathBuf], output: &Path) -> Result<()> {
    let (weights, q) = load_model(&model.source, quant.quantized.as_deref())?;
    let (files, outs) = output_paths(collect_inputs(inputs)?, output, weights.config.scale)?;
    // Every input's header is read first, so that a file that is not an image stops the
    // run before any work.
    let losses = files.iter().map(|f| data::output_losses(f)).collect::<Result<Vec<_>>>()?;
    let ctx = model.gpu.context()?;
    let mut up = quant.apply(Upscaler::new(&ctx, &weights, model.tiling())?, q.as_ref())?;
    if outs != [output] {
        std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create the output folder", output.display()))?;
    }
    let bar = progress::bar(files.len(), "upscaling");
    // An image that cannot be decoded (e.g. truncated after a valid header) or run (e.g.
    // too large for a --tile) does not stop the others; an output that cannot be
    // written stops the run.
    let mut failed = Vec::new();
    for (i, (file, out)) in files.iter().zip(&outs).enumerate() {
        let written = i - failed.len();
        swinq::interrupt::set_exit_note(format!("{written} of {} written (each one whole) to {}", progress::count(files.len(), "image", "images"), output.display()));
        match data::load_rgb(file).and_then(|img| upscaled(&mut up, file, &img, &bar)) {
            Ok(sr) => {
                let source = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                data::save_png_with_text(&sr, out, &[("Software", "swinq"), (data::UPSCALE_SOURCE, &source)])?;
                super::log_line(&bar, &format!("{} → {}", file.display(), out.display()));
            }
            Err(e) if files.len() == 1 => return Err(e),
            Err(e) => {
                bar.suspend(|| eprintln!("failed: {e:#}"));
                failed.push(file.display().to_string());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let with_alpha = losses.iter().filter(|l| l.alpha).count();
    let deep = losses.iter().filter(|l| l.depth).count();
    let engine = up.engine();
    if with_alpha > 0 {
        eprintln!("note: {} had an alpha channel; the model upscales RGB, so the outputs have none", progress::count(with_alpha, "input", "inputs"));
    }
    if deep > 0 {
        eprintln!("note: {} had 16-bit samples; they are upscaled at full precision and written as 8-bit PNG", progress::count(deep, "input", "inputs"));
    }
    let done = files.len() - failed.len();
    eprintln!("{} upscaled ×{} ({engine}) on {} → {}", progress::count(done, "image", "images"), weights.config.scale, ctx.describe(), output.display());
    if !failed.is_empty() {
        bail!("{} of {} images failed: {}", failed.len(), files.len(), failed.join(", "));
    }
    Ok(())
}

/// The image `img` of `file`, upscaled.
fn upscaled(up: &mut Upscaler, file: &Path, img: &data::RgbImage, bar: &ProgressBar) -> Result<RgbU8> {
    let (out, tile) = up.upscale(img).with_context(|| file.display().to_string())?;
    if let Some(t) = tile {
        bar.suspend(|| eprintln!("{}: processed in overlapping {t}×{t} tiles", file.display()));
    }
    Ok(out.to_u8())
}
