//! `swinq report`: evaluate the float model and quantized files on benchmark sets and
//! write a report folder people can look at:
//!
//! - `report.md` and `report.json`: PSNR-Y / SSIM-Y per model (rows) and set (columns),
//!   the settings, the per-image scores (JSON), the models' calibration settings;
//! - `psnr_vs_bits.png`: PSNR-Y against bits, one panel per set, one line per method,
//!   the float model as a dashed reference line;
//! - `comparisons/<set>_<image>.png` (`_2`, … for more crops of one image): the same crop
//!   of HR, MATLAB bicubic, FP32 SR and each quantized SR side by side, ×3 nearest
//!   neighbour, labelled as in SR papers.
//!
//! Crops: `--crop NAME:X,Y,SIZE` (HR pixels; NAME is an image name, or SET/NAME when
//! names repeat across sets); `--crop NAME:auto` picks the 96×96 square where the
//! quantized models differ most from FP32 (summed |ΔY|; FP32 against HR when there are no
//! quantized models), `--crop auto` does so for the first image of each set; without
//! `--crop`, the centre 96×96 of the first image of each set (predictable, needs no SR). Every PNG carries a caption line with the settings (swinq version, checkpoint
//! SHA-256 prefix, scale, models, images per set, tiling) drawn under the figure, and
//! the same text plus the full checkpoint hash in PNG `tEXt` chunks.
//!
//! Scores are kept per model and set in `scores/` ([`scores`]): running a report again
//! into the same folder evaluates only the models and sets it has not scored yet
//! (`--recompute` evaluates everything again).
//!
//! The tables are made in `tables.rs`, the figures in `figures.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::data::{
    benchmark_pairs, check_outside, dataset_name, lr_note, psnr_y, save_png_with_text, upscale_matlab, write_atomic, y_channel, Pair,
    RgbU8,
};
use crate::eval::{evaluate_each, score_pair_sr, EvalReport, ImageScore};
use crate::gpu::GpuContext;
use crate::model::checkpoint::sha256_file;
use crate::model::SwinWeights;
use crate::progress;
use crate::quant::file::QuantFile;
use crate::upscale::{Tiling, Upscaler};

mod figures;
pub mod scores;
mod tables;
pub use figures::{compose, draw_text, layout, plot_psnr_vs_bits, text_size, write_plot, zoom_nearest, Layout, Tile, PANEL};
use figures::png_text;
use scores::{images_sha256, sanitize, Lookup, ScoreKey, ScoreStore};
pub use tables::{caption, render_json, render_markdown, score_table};

/// Nearest-neighbour zoom of the comparison crops.
pub const ZOOM: usize = 3;
/// Side of the default crop, in HR pixels.
pub const DEFAULT_CROP: usize = 96;
/// Label of the float model.
pub const FP_LABEL: &str = "FP32";

/// The `swinq report` options besides the model arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ReportOptions {
    /// Quantized model file (from `swinq calibrate`); repeat for several.
    #[arg(long)]
    pub quantized: Vec<PathBuf>,
    /// How the quantized models run [default: int].
    #[arg(long, value_enum)]
    pub engine: Option<crate::model::graph::Engine>,
    /// Benchmark folder holding HR/ and LR_bicubic/X2/ (X3, X4); repeat for several.
    /// Without the LR folder (or for a plain folder of HR images) the LR images are made
    /// from the HR ones with MATLAB's bicubic.
    #[arg(long, required = true)]
    pub dataset: Vec<PathBuf>,
    /// Upscaling factor; must match the checkpoint (default: the checkpoint's).
    #[arg(long)]
    pub scale: Option<usize>,
    /// Evaluate only the first N images (name order) of each set.
    #[arg(long, value_name = "N")]
    pub max_images: Option<usize>,
    /// Comparison crop NAME:X,Y,SIZE in HR pixels (NAME: image name, or SET/NAME); NAME:auto
    /// or auto (first image of each set): the 96×96 square where the quantized models differ
    /// most from FP32. Repeatable. Default: the centre 96×96 of the first image of each set.
    #[arg(long, value_name = "NAME:X,Y,SIZE")]
    pub crop: Vec<String>,
    /// Report title.
    #[arg(long)]
    pub title: Option<String>,
    /// Report folder (created if missing). Scores already in its scores/ folder for the
    /// same models, sets, settings and swinq version are reused, not evaluated again.
    #[arg(short, long, value_name = "REPORT_DIR")]
    pub output: PathBuf,
    /// Evaluate every model again even where REPORT_DIR/scores holds its scores.
    #[arg(long)]
    pub recompute: bool,
}

/// A comparison crop as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CropSpec {
    pub dataset: Option<String>,
    /// None: the first image of each set.
    pub image: Option<String>,
    pub region: Region,
}

/// Where a crop is, in HR pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    At { x: usize, y: usize, size: usize },
    /// The DEFAULT_CROP square where FP32 and the quantized models differ most.
    Auto,
}

impl CropSpec {
    /// Parses `NAME:X,Y,SIZE`, `NAME:auto` (NAME may be `SET/NAME`), or `auto` (the first
    /// image of each set).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || anyhow!("--crop {s}: expected NAME:X,Y,SIZE (HR pixels, e.g. baby:100,120,96), NAME:auto or auto");
        if s == "auto" {
            return Ok(Self { dataset: None, image: None, region: Region::Auto });
        }
        let (name, at) = s.rsplit_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let region = if at == "auto" {
            Region::Auto
        } else {
            let v: Vec<usize> = at.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>().map_err(|_| bad())?;
            let [x, y, size] = v[..] else { return Err(bad()) };
            if size == 0 {
                return Err(bad());
            }
            Region::At { x, y, size }
        };
        let (dataset, image) = match name.rsplit_once('/') {
            Some((d, i)) => (Some(d.to_string()), i.to_string()),
            None => (None, name.to_string()),
        };
        Ok(Self { dataset, image: Some(image), region })
    }
}

/// Top-left corner of the `size`×`size` window with the largest summed Y difference
/// between `reference` and `others` (all the same size; first window on ties).
pub fn most_different(reference: &RgbU8, others: &[&RgbU8], size: usize) -> (usize, usize) {
    let (w, h) = (reference.width, reference.height);
    let size = size.min(w).min(h);
    let r = y_channel(reference);
    let mut diff = vec![0f64; w * h];
    for o in others {
        assert_eq!((o.width, o.height), (w, h), "images of different sizes");
        for (d, (a, b)) in diff.iter_mut().zip(r.iter().zip(y_channel(o))) {
            *d += (a - b).abs();
        }
    }
    // Summed-area table with a zero row and column in front.
    let mut sat = vec![0f64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0.0;
        for x in 0..w {
            row += diff[y * w + x];
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let at = |x: usize, y: usize| sat[y * (w + 1) + x];
    let mut best = (f64::NEG_INFINITY, (0, 0));
    for y in 0..=h - size {
        for x in 0..=w - size {
            let v = at(x + size, y + size) - at(x, y + size) - at(x + size, y) + at(x, y);
            if v > best.0 {
                best = (v, (x, y));
            }
        }
    }
    best.1
}

/// Settings that made a report; every figure carries them.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub title: String,
    pub swinq_version: String,
    pub command: String,
    /// `--weights` as given.
    pub checkpoint: String,
    pub checkpoint_sha256: String,
    pub config: String,
    pub scale: usize,
    /// LR tile size; None for whole images (or automatic tiles when too large).
    pub tile: Option<usize>,
    pub max_images: Option<usize>,
    pub adapter: String,
    /// How the comparison crops were chosen.
    pub crops: String,
}

/// One model's row: the float model (method "fp32", no bits) or a quantized file.
#[derive(Clone, Debug, Serialize)]
pub struct ModelEntry {
    pub label: String,
    pub method: String,
    pub bits: Option<u32>,
    pub file: Option<String>,
    /// SHA-256 of the quantized file.
    pub file_sha256: Option<String>,
    /// The quantized file's calibration settings (patches, seed, …).
    pub calibration: BTreeMap<String, String>,
    /// One per set, in the order of [`Report::datasets`].
    pub results: Vec<EvalReport>,
}

/// One tile of a comparison figure.
#[derive(Clone, Debug, Serialize)]
pub struct TileInfo {
    pub label: String,
    /// PSNR-Y of the whole image (HR tile: None).
    pub psnr_y: Option<f64>,
}

/// One comparison figure.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub dataset: String,
    pub image: String,
    pub x: usize,
    pub y: usize,
    pub size: usize,
    /// Region chosen by `--crop auto`.
    pub auto: bool,
    /// Relative to the report folder.
    pub file: String,
    pub tiles: Vec<TileInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub datasets: Vec<String>,
    pub models: Vec<ModelEntry>,
    pub comparisons: Vec<Comparison>,
}

// ---------------------------------------------------------------- running

/// A comparison crop resolved against a set: the pair, the region, the whole images.
struct CropJob {
    dataset: usize,
    pair: Pair,
    /// The region; for Region::Auto, the size and a placeholder corner until `finish`.
    x: usize,
    y: usize,
    size: usize,
    auto: bool,
    /// Label and whole image (cut to the SR size) per tile: HR, bicubic, then one per model.
    images: Vec<(TileInfo, RgbU8)>,
}

/// A benchmark set as a report evaluates it.
struct PlanSet {
    name: String,
    pairs: Vec<Pair>,
    /// How many pairs are evaluated (the first `--max-images`); crops may use the others.
    evaluated: usize,
    /// Hash of the evaluated pairs' files, for [`ScoreKey`].
    images_sha256: String,
}

impl PlanSet {
    fn evaluated(&self) -> &[Pair] {
        &self.pairs[..self.evaluated]
    }
}

/// Everything checked before the GPU work starts.
pub struct Plan {
    datasets: Vec<PlanSet>,
    crops: Vec<CropJob>,
    scale: usize,
    out: PathBuf,
    store: ScoreStore,
}

/// Checks the sets, the crops and the output folder (so a long run cannot fail at the
/// end), and loads the HR and bicubic images of the comparisons.
pub fn prepare(opts: &ReportOptions, scale: usize) -> Result<Plan> {
    if opts.max_images == Some(0) {
        bail!("--max-images 0: evaluate at least one image per set");
    }
    if opts.engine.is_some() && opts.quantized.is_empty() {
        bail!("--engine chooses how quantized models run; give --quantized");
    }
    let canonical: Vec<PathBuf> = opts.quantized.iter().map(|q| std::fs::canonicalize(q).unwrap_or_else(|_| q.clone())).collect();
    if let Some(i) = (1..canonical.len()).find(|&i| canonical[..i].contains(&canonical[i])) {
        bail!("--quantized {}: given twice", opts.quantized[i].display());
    }
    let inputs: Vec<(&str, &Path)> = opts.dataset.iter().map(|d| ("--dataset folder", d.as_path())).collect();
    check_outside(&opts.output, &inputs)?;
    let mut datasets = Vec::new();
    for dir in &opts.dataset {
        let pairs = benchmark_pairs(dir, scale).with_context(|| format!("--dataset {}", dir.display()))?;
        let name = dataset_name(dir);
        if let Some(note) = lr_note(dir, &pairs) {
            eprintln!("{note}");
        }
        if datasets.iter().any(|d: &PlanSet| d.name == name) {
            bail!("--dataset {}: two sets are both named {name}", dir.display());
        }
        let evaluated = opts.max_images.unwrap_or(usize::MAX).min(pairs.len());
        datasets.push(PlanSet { images_sha256: images_sha256(&pairs[..evaluated])?, name, pairs, evaluated });
    }
    let mut specs: Vec<CropSpec> = opts.crop.iter().map(|c| CropSpec::parse(c)).collect::<Result<_>>()?;
    if specs.is_empty() {
        specs.push(CropSpec { dataset: None, image: None, region: Region::At { x: 0, y: 0, size: 0 } });
    }
    let mut crops = Vec::new();
    for spec in &specs {
        let Some(image) = &spec.image else {
            for (d, set) in datasets.iter().enumerate() {
                crops.push(crop_job(d, &set.pairs[0], spec.region, scale)?);
            }
            continue;
        };
        let found: Vec<(usize, &Pair)> = datasets
            .iter()
            .enumerate()
            .filter(|(_, set)| spec.dataset.as_ref().is_none_or(|d| *d == set.name))
            .flat_map(|(d, set)| set.pairs.iter().filter(|p| p.name == *image).map(move |p| (d, p)))
            .collect();
        match found[..] {
            [(d, pair)] => crops.push(crop_job(d, pair, spec.region, scale)?),
            [] => match &spec.dataset {
                Some(d) if !datasets.iter().any(|set| set.name == *d) => bail!("--crop {d}/{image}: no set named {d} among the --dataset folders"),
                _ => bail!("--crop: no image {image} in the sets given"),
            },
            _ => bail!("--crop: {image} is in several sets; write SET/{image}"),
        }
    }
    let out = opts.output.clone();
    let store = ScoreStore::new(&out, !opts.recompute);
    for dir in [out.join("comparisons"), store.dir().to_path_buf()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create the report folder", dir.display()))?;
    }
    for dir in [out.clone(), out.join("comparisons"), store.dir().to_path_buf()] {
        tempfile::Builder::new()
            .prefix(".swinq-check")
            .tempfile_in(&dir)
            .with_context(|| format!("{}: the report folder is not writable", dir.display()))?;
    }
    Ok(Plan { datasets, crops, scale, out, store })
}

/// `region` At with size 0 stands for the default centre crop.
fn crop_job(dataset: usize, pair: &Pair, region: Region, s: usize) -> Result<CropJob> {
    let (hr, lr) = pair.load_hr_lr_u8(s)?;
    let (w, h) = ((lr.width * s).min(hr.width), (lr.height * s).min(hr.height));
    let fit = DEFAULT_CROP.min(w).min(h);
    let (x, y, size, auto) = match region {
        Region::Auto => (0, 0, fit, true),
        Region::At { size: 0, .. } => ((w - fit) / 2, (h - fit) / 2, fit, false),
        Region::At { x, y, size } => {
            if x.saturating_add(size) > w || y.saturating_add(size) > h {
                bail!("--crop {}:{x},{y},{size}: outside the {w}×{h} image (HR pixels covered by the SR output)", pair.name);
            }
            (x, y, size, false)
        }
    };
    let bicubic = upscale_matlab(&lr, s);
    let images = vec![
        (TileInfo { label: format!("HR ({})", pair.name), psnr_y: None }, hr.crop(0, 0, w, h)),
        (TileInfo { label: "Bicubic".into(), psnr_y: Some(psnr_y(&bicubic, &hr, s)) }, bicubic.crop(0, 0, w, h)),
    ];
    Ok(CropJob { dataset, pair: pair.clone(), x, y, size, auto, images })
}

impl CropJob {
    fn push(&mut self, label: &str, score: &ImageScore, sr: &RgbU8) {
        let (w, h) = (self.images[0].1.width, self.images[0].1.height);
        self.images.push((TileInfo { label: label.into(), psnr_y: Some(score.psnr_y) }, sr.crop(0, 0, w, h)));
    }

    /// The region: as given, or where the quantized models differ most from FP32 (from
    /// HR when there are no quantized models).
    fn region(&self) -> (usize, usize, usize) {
        if !self.auto {
            return (self.x, self.y, self.size);
        }
        let img = |i: usize| &self.images[i].1;
        let (x, y) = if self.images.len() > 3 {
            let others: Vec<&RgbU8> = (3..self.images.len()).map(img).collect();
            most_different(img(2), &others, self.size)
        } else {
            most_different(img(2), &[img(0)], self.size)
        };
        (x, y, self.size)
    }
}

/// Label of a quantized model: `method WbAb`, plus the file stem when two files share it.
fn quant_labels(quants: &[(PathBuf, QuantFile)]) -> Vec<String> {
    let base: Vec<String> = quants.iter().map(|(_, q)| format!("{} W{}A{}", q.method, q.bits, q.bits)).collect();
    base.iter()
        .zip(quants)
        .map(|(l, (p, _))| {
            if base.iter().filter(|b| *b == l).count() > 1 {
                format!("{l} ({})", p.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default())
            } else {
                l.clone()
            }
        })
        .collect()
}

/// The float checkpoint of a report.
pub struct Checkpoint<'a> {
    /// `--weights` as given.
    pub name: String,
    pub sha256: String,
    pub weights: &'a SwinWeights,
}

/// Evaluates every model on every set, then writes report.md, report.json,
/// psnr_vs_bits.png and the comparison figures into the plan's folder.
/// `quants` must already be checked against the checkpoint.
pub fn run(
    ctx: &GpuContext,
    ckpt: &Checkpoint,
    quants: &[(PathBuf, QuantFile)],
    tile: Option<usize>,
    opts: &ReportOptions,
    mut plan: Plan,
) -> Result<Report> {
    let tiling = tile.map_or(Tiling::Auto, Tiling::Tile);
    let settings = report_settings(ctx, ckpt, tile, opts, plan.scale);
    crate::interrupt::set_exit_note(format!(
        "the scores evaluated so far are stored in {}; the same command continues from them",
        plan.store.dir().display()
    ));
    let labels = quant_labels(quants);
    let mut models = Vec::new();
    for m in 0..=quants.len() {
        let mut up = Upscaler::new(ctx, ckpt.weights, tiling)?;
        let entry = match m.checked_sub(1).map(|q| &quants[q]) {
            None => ModelEntry {
                label: FP_LABEL.into(),
                method: "fp32".into(),
                bits: None,
                file: None,
                file_sha256: None,
                calibration: BTreeMap::new(),
                results: vec![],
            },
            Some((path, q)) => {
                up = up.quantized(q.bits, &q.params, opts.engine.unwrap_or_default());
                quant_entry(labels[m - 1].clone(), path, q)?
            }
        };
        let key = ScoreKey {
            swinq_version: settings.swinq_version.clone(),
            adapter: settings.adapter.clone(),
            checkpoint_sha256: ckpt.sha256.clone(),
            model_sha256: entry.file_sha256.clone(),
            engine: up.engine().to_string(),
            tile,
            scale: plan.scale,
            dataset: String::new(),
            images_sha256: String::new(),
        };
        let results = evaluate_model(&mut up, m, &entry.label, &mut plan, &key)?;
        models.push(ModelEntry { results, ..entry });
    }
    finish(settings, models, &plan)
}

/// The settings every figure of this report carries.
fn report_settings(ctx: &GpuContext, ckpt: &Checkpoint, tile: Option<usize>, opts: &ReportOptions, scale: usize) -> Settings {
    Settings {
        // One line: the title heads report.md.
        title: opts.title.as_deref().map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|t| !t.is_empty()).unwrap_or_else(|| format!("swinq report: SwinIR x{scale}")),
        swinq_version: env!("CARGO_PKG_VERSION").into(),
        command: command_line(),
        checkpoint: ckpt.name.clone(),
        checkpoint_sha256: ckpt.sha256.clone(),
        config: ckpt.weights.config.describe(),
        scale,
        tile,
        max_images: opts.max_images,
        adapter: ctx.describe(),
        crops: if opts.crop.is_empty() {
            format!("centre {DEFAULT_CROP}×{DEFAULT_CROP} of the first image of each set")
        } else {
            format!(
                "--crop {} (auto: the {DEFAULT_CROP}×{DEFAULT_CROP} square with the largest summed |Y| difference between FP32 and the quantized models)",
                opts.crop.join(" ")
            )
        },
    }
}

/// A quantized model's row, before its results.
fn quant_entry(label: String, path: &Path, q: &QuantFile) -> Result<ModelEntry> {
    Ok(ModelEntry {
        label,
        method: q.method.clone(),
        bits: Some(q.bits),
        file: Some(path.display().to_string()),
        file_sha256: Some(sha256_file(path)?),
        calibration: q.settings.clone(),
        results: vec![],
    })
}

/// One model on every set, or its stored scores (`key`: the model's, without the set);
/// also fills its comparison tiles.
fn evaluate_model(up: &mut Upscaler, model: usize, label: &str, plan: &mut Plan, key: &ScoreKey) -> Result<Vec<EvalReport>> {
    let engine = up.engine();
    let mut results = Vec::new();
    for (d, set) in plan.datasets.iter().enumerate() {
        let key = ScoreKey { dataset: set.name.clone(), images_sha256: set.images_sha256.clone(), ..key.clone() };
        let stored = plan.store.path(label, &set.name);
        let report = match plan.store.lookup(label, &key) {
            Lookup::Found(report) => {
                eprintln!("{label} {}: stored in {} (--recompute evaluates it again)", set.name, stored.display());
                report
            }
            found => {
                if let Lookup::Stale = found {
                    eprintln!("{label} {}: {} was made with other settings; evaluating again", set.name, stored.display());
                }
                let pairs = set.evaluated();
                let bar = progress::bar(pairs.len(), &format!("{label} · {}", set.name));
                let crops = &mut plan.crops;
                let report = evaluate_each(up, &set.name, engine, pairs, |pair, score, sr| {
                    for job in crops.iter_mut().filter(|j| j.dataset == d && j.pair.name == pair.name) {
                        job.push(label, score, sr);
                    }
                    if let Some(t) = score.tile {
                        bar.suspend(|| eprintln!("{label} {} {}: processed in overlapping {t}×{t} tiles", set.name, pair.name));
                    }
                    bar.inc(1);
                    // Without a terminal (no bar drawn) a line per image shows progress in logs.
                    if bar.is_hidden() {
                        eprintln!("{label} {} {}/{}: {} {:.4} dB", set.name, bar.position(), pairs.len(), pair.name, score.psnr_y);
                    }
                })?;
                bar.finish_and_clear();
                plan.store.save(label, &key, &report)?;
                report
            }
        };
        eprintln!("{label} {}: PSNR-Y {:.4} dB, SSIM-Y {:.4} ({})", set.name, report.psnr_y, report.ssim_y, progress::count(report.images.len(), "image", "images"));
        results.push(report);
    }
    // Comparison images outside the evaluated ones: HR, bicubic and one tile per model so far.
    let want = 2 + model + 1;
    for job in plan.crops.iter_mut().filter(|j| j.images.len() < want) {
        let (score, sr) = score_pair_sr(up, &job.pair)?;
        job.push(label, &score, &sr);
    }
    Ok(results)
}

/// Writes the figures and the two documents; returns the report.
fn finish(settings: Settings, models: Vec<ModelEntry>, plan: &Plan) -> Result<Report> {
    let earlier = earlier_comparisons(&plan.out);
    let mut report = Report {
        settings,
        datasets: plan.datasets.iter().map(|d| d.name.clone()).collect(),
        models,
        comparisons: vec![],
    };
    let cap = caption(&report);
    for job in &plan.crops {
        let dataset = &plan.datasets[job.dataset].name;
        let stem = format!("comparisons/{}_{}", sanitize(dataset), sanitize(&job.pair.name));
        let taken = |f: &String| report.comparisons.iter().any(|c| c.file == *f);
        let file = (1..).map(|k| if k == 1 { format!("{stem}.png") } else { format!("{stem}_{k}.png") }).find(|f| !taken(f)).expect("a free name");
        let (x, y, size) = job.region();
        let title = format!(
            "{dataset} / {}: crop ({x}, {y}) {size}x{size} HR px{}, x{ZOOM} nearest; PSNR-Y of the whole image",
            job.pair.name,
            if job.auto { " (auto: largest quantized vs FP32 difference)" } else { "" }
        );
        let tiles: Vec<Tile> = job
            .images
            .iter()
            .map(|(info, img)| Tile {
                image: zoom_nearest(&img.crop(x, y, size, size), ZOOM),
                label: std::iter::once(info.label.clone())
                    .chain(info.psnr_y.map(|p| format!("{p:.2} dB")))
                    .collect(),
            })
            .collect();
        let img = compose(&tiles, &title, &cap)?;
        save_png_with_text(&img, plan.out.join(&file), &png_text(&report, &title, &cap))?;
        report.comparisons.push(Comparison {
            dataset: dataset.clone(),
            image: job.pair.name.clone(),
            x,
            y,
            size,
            auto: job.auto,
            file,
            tiles: job.images.iter().map(|(i, _)| i.clone()).collect(),
        });
    }
    write_plot(&report, &plan.out)?;
    write_atomic(plan.out.join("report.json"), render_json(&report)?.as_bytes())?;
    write_atomic(plan.out.join("report.md"), render_markdown(&report).as_bytes())?;
    remove_stale(&plan.out, earlier, &report);
    Ok(report)
}

/// The comparison figures that the report already in `dir` (its report.json) lists.
fn earlier_comparisons(dir: &Path) -> Vec<String> {
    let Some(json) = std::fs::read(dir.join("report.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else {
        return vec![];
    };
    let is_figure = |f: &&str| f.strip_prefix("comparisons/").is_some_and(|name| name.ends_with(".png") && !name.contains(['/', '\\']) && !name.starts_with('.'));
    json["comparisons"].as_array().into_iter().flatten().filter_map(|c| c["file"].as_str()).filter(is_figure).map(String::from).collect()
}

/// Removes the `earlier` report's comparison figures that `report` does not make
/// again, so that the folder holds this report's figures only.
fn remove_stale(dir: &Path, earlier: Vec<String>, report: &Report) {
    let stale: Vec<String> = earlier.into_iter().filter(|f| !report.comparisons.iter().any(|c| c.file == *f)).collect();
    let removed = stale.iter().filter(|f| std::fs::remove_file(dir.join(f)).is_ok()).count();
    if removed > 0 {
        eprintln!("removed {} of the earlier report in {} that this one does not make", crate::progress::count(removed, "comparison figure", "comparison figures"), dir.display());
    }
}

/// This process's command line, shell-quoted where needed.
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args.next().map(|p| Path::new(&p).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(p));
    prog.into_iter()
        .chain(args.map(|a| {
            if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:,=+@".contains(c)) {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}
