//! The `swinq` command line: parse arguments, call the library, print.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::ProgressBar;

use swinq::bench::{compare_engines, launch_cost_us};
use swinq::data::{self, RgbU8};
use swinq::eval::{evaluate, EvalReport};
use swinq::progress;
use swinq::gpu::{adapters_report, AdapterChoice, GpuContext};
use swinq::model::checkpoint::{load_weights, save_safetensors, sha256_file};
use swinq::model::graph::{GpuModel, QuantModel};
use swinq::model::SwinWeights;
use swinq::quant::calib::{load_patches, PatchMode, PatchSampler, PatchSide, PATCH};
use swinq::quant::dqc::{self, Checkpointing, DqcOptions, DqcState};
use swinq::quant::export;
use swinq::quant::file::QuantFile;
use swinq::quant::phase1::calibrate_with_progress;
use swinq::quant::search::{Center, Method};
use swinq::report::ReportOptions;
use swinq::upscale::{Engine, Tiling, Upscaler};
use swinq::weights_registry::{check_named_scale, resolve_weights};

/// Quantize SwinIR-light super-resolution transformers to 2–4 bits (2DQuant+) and run
/// them on any GPU that wgpu reaches (Vulkan, Metal, DX12; lavapipe without a GPU).
#[derive(Parser)]
#[command(name = "swinq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu finds, with their features and limits.
    Info,
    /// Check a checkpoint (.pth or .safetensors) and write a clean safetensors copy.
    Convert {
        /// Input checkpoint: an official SwinIR .pth file or a safetensors file.
        input: PathBuf,
        /// Output safetensors file.
        output: PathBuf,
    },
    /// Upscale images (files or folders) with the float or a quantized model.
    Upscale {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        quant: QuantArgs,
        /// Image files or folders of images (PNG, JPEG, BMP, TIFF). A folder gives the
        /// images directly in it, not those of its subfolders nor hidden files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (each image becomes <name>_x<s>.png there), or an output .png
        /// file when there is a single input image.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// PSNR-Y/SSIM-Y on a benchmark folder (<DIR>/HR, <DIR>/LR_bicubic/X<s>) as SwinIR reports them.
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// Benchmark folder, e.g. ../shared/datasets/Set5: <DIR>/HR and <DIR>/LR_bicubic/X<s>.
        /// Without the LR folder (or for a plain folder of HR images) the LR images are
        /// made from the HR ones with MATLAB's bicubic, as the benchmark LR files are.
        #[arg(long)]
        dataset: PathBuf,
        /// Upscaling factor; must match the checkpoint (default: the checkpoint's).
        #[arg(long)]
        scale: Option<usize>,
        /// Print one JSON object on stdout instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        quant: QuantArgs,
    },
    /// Write the deployable quantized model: the weights' integer codes packed at b bits
    /// each, every quantizer's bounds and bias, and the float layers, in one safetensors
    /// file that `eval`, `upscale` and `bench` take as --weights.
    Export {
        #[command(flatten)]
        source: WeightsArg,
        /// The quantized model (from `swinq calibrate`); not needed when --weights is a
        /// quantized file with embedded weights (`calibrate --embed-weights`).
        #[arg(long)]
        quantized: Option<PathBuf>,
        /// Output file (.safetensors).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Time the forward pass: the float model and, with --quantized, its fake-quantized
    /// and integer engines, in one run on one adapter (median of repeats after warm-up,
    /// per-stage GPU time from timestamp queries when the adapter has them).
    Bench {
        #[command(flatten)]
        source: WeightsArg,
        #[command(flatten)]
        gpu: GpuArg,
        /// Also time this quantized model (from `swinq calibrate`) with both engines.
        #[arg(long)]
        quantized: Option<PathBuf>,
        /// LR input sizes (square, ×scale output), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "128,256,512")]
        size: Vec<usize>,
        /// Timed runs per engine and size (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Print one JSON object on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Quantize: phase 1 searches every quantizer's bounds on calibration patches, phase 2
    /// (DQC, for 2dquant and 2dquant+ or with --phase2-iters) fine-tunes them by
    /// distillation; writes a quantized model file.
    Calibrate {
        #[command(flatten)]
        source: WeightsArg,
        #[command(flatten)]
        gpu: GpuArg,
        /// Folder of LR calibration images, e.g. ../shared/datasets/calib/LR_bicubic/X2
        /// (or of HR images, with --calib-hr). A folder in the benchmark layout (e.g.
        /// ../shared/datasets/calib) stands for its LR_bicubic/X<s>, else its HR folder.
        #[arg(long)]
        calib: PathBuf,
        /// The --calib folder holds HR images (e.g. ../shared/datasets/calib/HR): each is
        /// made LR at the model's scale with the MATLAB-exact bicubic, as the benchmark LR
        /// images are, for phase 1 and (without --phase2-data) phase 2.
        #[arg(long)]
        calib_hr: bool,
        /// Upscaling factor; must match the checkpoint (default: the checkpoint's).
        #[arg(long)]
        scale: Option<usize>,
        /// Bits for weights and activations (2..=8).
        #[arg(long, default_value_t = 4)]
        bits: u32,
        /// Phase 1 method, `BASE[+OPTION]...`. BASE: minmax; dobi (2DQuant's released
        /// code: K = 100 equal value steps, symmetric); dobi-paper (one-direction for the
        /// softmax output and the fc2 input); sorted-uniform, sorted-tail (candidates
        /// at ranks of the tensor sorted on the GPU: clip fractions i/(2K), or log-spaced
        /// from 1/N towards 1/2). OPTIONs: onedir (one-direction for the softmax output
        /// and the fc2 input), center-mean, center-median (dobi: shrink towards the mean
        /// or median instead of the mid-range), bias (bias correction c = mean(x) −
        /// mean(Q(x))). The full methods, phase 1 then phase 2 (DQC, 3000 iterations
        /// unless --phase2-iters says otherwise): 2dquant (dobi + DQC) and 2dquant+
        /// (sorted-tail+onedir+bias + DQC with c trained too). The full name is printed and
        /// stored in the file.
        #[arg(long, default_value = "dobi")]
        method: String,
        /// Add bias correction to the method (same as its +bias option).
        #[arg(long)]
        bias: bool,
        /// Centre of the symmetric value-step search: mid, mean or median (same as the
        /// method's +center-… option; dobi only).
        #[arg(long)]
        center: Option<String>,
        /// Number of 64×64 calibration patches.
        #[arg(long, default_value_t = 32)]
        patches: usize,
        /// center: the centre crop of the first N images (file-name order); random: random crops.
        #[arg(long, default_value = "center")]
        patch_mode: String,
        /// Seed of the random patch mode and of phase 2's random training patches.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also store the float weights in the file, which `upscale`, `eval` and `bench`
        /// then take as --weights alone.
        #[arg(long)]
        embed_weights: bool,
        #[command(flatten)]
        phase2: Phase2Args,
        /// Output quantized model (.safetensors).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Evaluate the float model and quantized files on benchmark sets; write a report
    /// folder: report.md, report.json, psnr_vs_bits.png, comparisons/<set>_<image>.png.
    Report {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        opts: ReportOptions,
    },
}

/// Phase 2 (DQC, SPEC §5): the bounds (and c, for methods with bias correction)
/// trained by distillation from the float model on random calibration patches.
#[derive(Args, Clone)]
struct Phase2Args {
    /// DQC iterations after phase 1 (0: phase 1 only) [default: 3000 for 2dquant and
    /// 2dquant+, else 0]
    #[arg(long)]
    phase2_iters: Option<usize>,
    /// LR patches per DQC batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Side of the DQC patches in LR pixels, a multiple of the window (random crops with
    /// flips and 90° rotations) [default: 64, or the largest multiple of the window that
    /// every training image allows]
    #[arg(long)]
    patch: Option<usize>,
    /// Adam learning rate (cosine decay to 0).
    #[arg(long, default_value_t = 1e-2)]
    lr: f32,
    /// Weight λ of the feature loss on the four residual groups' outputs.
    #[arg(long, default_value_t = 5.0)]
    lambda: f32,
    /// Folders of DQC training images (repeatable; default: the --calib folder, HR with
    /// --calib-hr), LR images unless --phase2-hr says they are HR. A folder in the
    /// benchmark layout stands for its LR_bicubic/X<s> (HR with --phase2-hr), else its HR folder.
    #[arg(long)]
    phase2_data: Vec<PathBuf>,
    /// The --phase2-data folders hold HR images: LR patches are made from them with the
    /// MATLAB-exact bicubic at the model's scale (e.g. ../shared/train/BSDS500_train).
    #[arg(long)]
    phase2_hr: bool,
    /// Save phase 2's state (parameters, Adam moments, iteration) every N iterations
    /// to OUTPUT with the extension .dqc-state.safetensors (removed when phase 2 ends).
    /// Ctrl-C stops phase 2 after the current iteration and saves the state too.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Continue an interrupted phase 2 from that state file (same checkpoint, bits,
    /// method and settings).
    #[arg(long)]
    resume: bool,
    /// Print the GPU time per stage of one DQC iteration (teacher, student, gradient),
    /// from timestamp queries where the adapter has them: the second iteration of the
    /// run, after the one that warms up.
    #[arg(long)]
    phase2_profile: bool,
}

/// The float checkpoint (`--weights`).
#[derive(Args)]
struct WeightsArg {
    /// Checkpoint path (.pth or .safetensors) or a model name: swinir-light-x2, -x3, -x4
    /// (downloaded once into the cache).
    #[arg(long, env = "SWINQ_WEIGHTS")]
    weights: String,
}

/// The GPU adapter (`--adapter`).
#[derive(Args)]
struct GpuArg {
    /// Use the adapter whose name contains this text (default: WGPU_ADAPTER_NAME, else
    /// the high-performance one; WGPU_BACKEND limits the backends).
    #[arg(long)]
    adapter: Option<String>,
}

/// The model, the adapter and the tiling of commands that run whole images.
#[derive(Args)]
struct ModelArgs {
    #[command(flatten)]
    source: WeightsArg,
    #[command(flatten)]
    gpu: GpuArg,
    /// Process images in tiles of N×N LR pixels that overlap by 32: N is a multiple of
    /// the window above 32 (40, 48, 64, ... for SwinIR-light). Without it, images run
    /// whole, or in the largest tiles that fit the adapter.
    #[arg(long, value_name = "N")]
    tile: Option<usize>,
}

impl WeightsArg {
    /// The checkpoint file (a model name resolves to its cached file, fetched once).
    fn path(&self) -> Result<PathBuf> {
        resolve_weights(&self.weights)
    }

    /// The float weights in `path` (this argument's [`WeightsArg::path`]) and the
    /// SHA-256 of that file.
    fn load_with_hash(&self, path: &Path) -> Result<(SwinWeights, String)> {
        Ok((load_float(&self.weights, path)?, sha256_file(path)?))
    }
}

impl GpuArg {
    fn context(&self) -> Result<GpuContext> {
        GpuContext::new(&AdapterChoice::from_cli(self.adapter.clone()))
    }
}

impl ModelArgs {
    fn tiling(&self) -> Tiling {
        self.tile.map_or(Tiling::Auto, Tiling::Tile)
    }
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout or stderr goes away
    // (`swinq ... 2>&1 | head`).
    swinq::interrupt::end_at_closed_pipe(true);
    let cli = Cli::parse();
    match swinq::interrupt::install().and_then(|()| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<swinq::interrupt::Interrupted>() => {
            // The reader of stderr may be gone with the same Ctrl-C: the status still tells.
            swinq::interrupt::end_at_closed_pipe(false);
            swinq::note!("{e:#}");
            ExitCode::from(swinq::interrupt::EXIT_STATUS)
        }
        Err(e) => {
            swinq::note!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => {
            print!("{}", adapters_report()?);
            Ok(())
        }
        Command::Convert { input, output } => convert(&input, &output),
        Command::Upscale { model, quant, inputs, output } => upscale(&model, &quant, &inputs, &output),
        Command::Eval { model, dataset, scale, json, quant } => eval(&model, &dataset, scale, json, &quant),
        Command::Export { source, quantized, output } => export_model(&source, quantized.as_deref(), &output),
        Command::Bench { source, gpu, quantized, size, repeats, warmup, json } => bench((&source, &gpu), quantized.as_deref(), &size, (warmup, repeats), json),
        Command::Calibrate { source, gpu, calib, calib_hr, scale, bits, method, bias, center, patches, patch_mode, seed, embed_weights, phase2, output } => {
            let opts = CalibOptions { calib, calib_hr, bits, method, bias, center, patches, patch_mode, seed, embed_weights, phase2 };
            run_calibrate((&source, &gpu), scale, &opts, &output)
        }
        Command::Report { model, opts } => report(&model, &opts),
    }
}

fn report(model: &ModelArgs, opts: &ReportOptions) -> Result<()> {
    let (weights, hash) = model.source.load_with_hash(&model.source.path()?)?;
    let s = check_scale(&weights, opts.scale)?;
    let quants = opts.quantized.iter().map(|q| Ok((q.clone(), load_quantized(q, &weights, &hash)?))).collect::<Result<Vec<_>>>()?;
    let plan = swinq::report::prepare(opts, s)?;
    let ctx = model.gpu.context()?;
    let ckpt = swinq::report::Checkpoint { name: model.source.weights.clone(), sha256: hash, weights: &weights };
    let r = swinq::report::run(&ctx, &ckpt, &quants, model.tile, opts, plan)?;
    print!("{}", swinq::report::score_table(&r));
    eprintln!("report: {} model(s) × {} set(s) on {} → {}", r.models.len(), r.datasets.len(), ctx.describe(), opts.output.join("report.md").display());
    Ok(())
}

fn convert(input: &Path, output: &Path) -> Result<()> {
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    data::check_not_an_input(&[output], &[("input checkpoint", input)])?;
    let weights = load_weights(input)?;
    let mut meta = BTreeMap::new();
    meta.insert("source".to_string(), input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    meta.insert("source_sha256".to_string(), sha256_file(input)?);
    meta.insert("config".to_string(), weights.config.describe());
    save_safetensors(&weights.to_state_dict(), &meta, output)?;
    eprintln!("{}: {} → {}", weights.config.describe(), input.display(), output.display());
    Ok(())
}

/// A line of results printed above the progress bar: on stdout normally, and with
/// `--json` (stdout holds the JSON) on stderr where no bar is drawn (stderr is not a
/// terminal), so that logs still show progress. Printing through the bar keeps the
/// line when the bar is hidden (its `println` would drop it).
fn result_line(bar: &ProgressBar, json: bool, line: &str) {
    if json {
        log_line(bar, line);
    } else {
        bar.suspend(|| println!("{line}"));
    }
}

/// A progress line on stderr in place of the bar where none is drawn (no terminal).
fn log_line(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    }
}

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
    let mut seen = std::collections::HashSet::new();
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
    let inputs: std::collections::HashSet<PathBuf> = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
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

fn upscale(model: &ModelArgs, quant: &QuantArgs, inputs: &[PathBuf], output: &Path) -> Result<()> {
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
                log_line(&bar, &format!("{} → {}", file.display(), out.display()));
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
    if let Some(t) = up.tile_for(img.height, img.width) {
        bar.suspend(|| eprintln!("{}: processing in overlapping {t}×{t} tiles", file.display()));
    }
    Ok(up.upscale(img).with_context(|| file.display().to_string())?.to_u8())
}

/// The float checkpoint `path` that --weights `spec` resolved to (for a model name, it
/// must be that model).
fn load_float(spec: &str, path: &Path) -> Result<SwinWeights> {
    let weights = load_weights(path)?;
    check_named_scale(spec, path, weights.config.scale)?;
    Ok(weights)
}

fn check_scale(weights: &SwinWeights, scale: Option<usize>) -> Result<usize> {
    let s = weights.config.scale;
    if let Some(want) = scale.filter(|&want| want != s) {
        bail!("--scale {want} does not match the checkpoint, which is a ×{s} model");
    }
    Ok(s)
}

fn eval(model: &ModelArgs, dataset: &Path, scale: Option<usize>, json: bool, quant: &QuantArgs) -> Result<()> {
    let (weights, q) = load_model(&model.source, quant.quantized.as_deref())?;
    let s = check_scale(&weights, scale)?;
    let pairs = data::benchmark_pairs(dataset, s)?;
    if let Some(note) = data::lr_note(dataset, &pairs) {
        eprintln!("{note}");
    }
    let ctx = model.gpu.context()?;
    let mut up = quant.apply(Upscaler::new(&ctx, &weights, model.tiling())?, q.as_ref())?;
    let engine = up.engine();
    let bar = progress::bar(pairs.len(), &data::dataset_name(dataset));
    let report = evaluate(&mut up, &data::dataset_name(dataset), engine, &pairs, |score| {
        result_line(&bar, json, &format!("{:<24} {:>8.4} dB  {:.4}", score.name, score.psnr_y, score.ssim_y));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    print_report(&report, json, &ctx)
}

/// The quantized model of `upscale` and `eval`.
#[derive(clap::Args)]
struct QuantArgs {
    /// Run the quantized model of this file (from `swinq calibrate`) instead of the float one.
    #[arg(long)]
    quantized: Option<PathBuf>,
    /// How the quantized model runs [default: int].
    #[arg(long, value_enum)]
    engine: Option<Engine>,
}

/// The float model and the quantized model to run: from --weights and --quantized,
/// or both from an exported model (`swinq export`) or a quantized file with embedded
/// weights (`calibrate --embed-weights`) given as --weights.
fn load_model(source: &WeightsArg, quantized: Option<&Path>) -> Result<(SwinWeights, Option<QuantFile>)> {
    let path = source.path()?;
    if export::is_exported(&path) {
        if quantized.is_some() {
            bail!("{}: an exported model carries its own quantization; drop --quantized", path.display());
        }
        let (weights, q) = export::load(&path)?;
        return Ok((weights, Some(q)));
    }
    if let Some((weights, q)) = QuantFile::load_with_weights(&path)? {
        if quantized.is_some() {
            bail!("{}: a quantized file with embedded weights carries its own quantization; drop --quantized", path.display());
        }
        return Ok((weights, Some(q)));
    }
    let (weights, hash) = source.load_with_hash(&path)?;
    let q = quantized.map(|q| load_quantized(q, &weights, &hash)).transpose()?;
    Ok((weights, q))
}

impl QuantArgs {
    fn apply<'a>(&self, up: Upscaler<'a>, q: Option<&QuantFile>) -> Result<Upscaler<'a>> {
        match (q, self.engine) {
            (Some(q), engine) => Ok(up.quantized(q.bits, &q.params, engine.unwrap_or_default())),
            (None, Some(_)) => bail!("--engine chooses how a quantized model runs; give --quantized (or an exported model as --weights)"),
            (None, None) => Ok(up),
        }
    }
}

/// A quantized file, checked against the float checkpoint it must belong to.
fn load_quantized(path: &Path, weights: &SwinWeights, hash: &str) -> Result<QuantFile> {
    let file = QuantFile::load(path, &weights.config)?;
    let s = weights.config.scale;
    if file.scale != s {
        bail!("{}: a ×{} quantized model, but --weights is a ×{s} checkpoint; quantize this one with `swinq calibrate`", path.display(), file.scale);
    }
    if !file.made_for(hash, weights) {
        bail!(
            "{}: made for the checkpoint with SHA-256 {}, but --weights has {hash}",
            path.display(),
            file.source_sha256
        );
    }
    Ok(file)
}

#[derive(Clone)]
struct CalibOptions {
    calib: PathBuf,
    calib_hr: bool,
    bits: u32,
    method: String,
    bias: bool,
    center: Option<String>,
    patches: usize,
    patch_mode: String,
    seed: u64,
    embed_weights: bool,
    phase2: Phase2Args,
}

fn run_calibrate((source, gpu): (&WeightsArg, &GpuArg), scale: Option<usize>, o: &CalibOptions, output: &Path) -> Result<()> {
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    let weights_path = source.path()?;
    data::check_not_an_input(&[output], &[("--weights checkpoint", &weights_path)])?;
    if !(2..=8).contains(&o.bits) {
        bail!("--bits {}: only 2 to 8 bits are supported", o.bits);
    }
    check_phase2_args(&o.phase2)?;
    let center = o.center.as_deref().map(Center::parse).transpose().context("--center")?;
    let method = Method::parse(&o.method).and_then(|m| m.with_options(o.bias, center)).context("--method")?;
    let mode = match o.patch_mode.as_str() {
        "center" => PatchMode::Center,
        "random" => PatchMode::Random,
        other => bail!("--patch-mode {other}: choose center or random"),
    };
    let (weights, hash) = source.load_with_hash(&weights_path)?;
    let s = check_scale(&weights, scale)?;
    let o = &calib_folder(o, s);
    let window = weights.config.window;
    let patches = load_patches(&o.calib, o.calib_hr.then_some(s), o.patches, PatchSide::AtMost(PATCH), mode, o.seed, window)?;
    note_smaller_patches(1, "calibration", patches.size);
    let full_method = matches!(o.method.as_str(), "2dquant" | "2dquant+");
    let iters = o.phase2.phase2_iters.unwrap_or(if full_method { DqcOptions::default().iters } else { 0 });
    if iters == 0 && (!o.phase2.phase2_data.is_empty() || o.phase2.phase2_profile) {
        eprintln!("note: --phase2-data and --phase2-profile are not used: no phase 2 (--phase2-iters 0)");
    }
    // Phase 2's images are read before phase 1 runs, so that they are checked first.
    let mut sampler = match iters {
        0 => None,
        _ => {
            let (folders, hr) = phase2_folders(o, s)?;
            let data: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
            let side = o.phase2.patch.map_or(PatchSide::AtMost(PATCH), PatchSide::Exact);
            Some(PatchSampler::new(&data, hr.then_some(s), side, o.seed, window)?)
        }
    };
    let dqc = DqcOptions {
        iters,
        batch: o.phase2.batch,
        patch: sampler.as_ref().map_or(PATCH, PatchSampler::size),
        lr: o.phase2.lr,
        lambda: o.phase2.lambda,
        seed: o.seed,
        train_bias: method.bias,
        profile: o.phase2.phase2_profile,
    };
    if o.phase2.patch.is_none() && iters > 0 {
        note_smaller_patches(2, "training", dqc.patch);
    }
    let mut settings = calib_settings(o, patches.size, &dqc);
    let state_path = DqcState::path_for(output);
    let resume = match o.phase2.resume {
        true if iters == 0 => bail!("--resume continues a phase 2; give --phase2-iters"),
        true => Some(resumable_state(&weights, &state_path, o.bits, &method.name(), &hash, &settings)?),
        false => None,
    };
    if resume.is_none() && iters > 0 && state_path.exists() {
        eprintln!("note: {} holds an interrupted phase 2; this run starts afresh and replaces it (--resume would continue it)", state_path.display());
    }
    // A resumed run skips the batches of the iterations done, so that it trains on
    // those an uninterrupted run would.
    if let (Some(sampler), Some(state)) = (sampler.as_mut(), resume.as_ref()) {
        sampler.skip_batches(state.next_iter, dqc.batch);
    }
    let ctx = gpu.context()?;
    if iters > 0 {
        dqc::check_batch(&ctx, &weights.config, &dqc)?;
    }
    let start = std::time::Instant::now();
    let gpu_model = swinq::model::graph::GpuModel::upload(&ctx, &weights);
    let mut params = match &resume {
        Some(state) => {
            eprintln!("resuming phase 2 after iteration {} of {iters} from {}", state.next_iter, state_path.display());
            state.file.params.clone()
        }
        None => {
            let (name, bits, what, side) = (method.name(), o.bits, progress::count(o.patches, "patch", "patches"), patches.size);
            eprintln!("phase 1: {name} W{bits}A{bits} on {what} of {side}×{side} ({}) on {}", o.patch_mode, ctx.describe());
            let bar = progress::percent_bar("phase 1: calibration forward and bound search");
            // Without a terminal (no bar drawn) a line every half minute shows progress in logs.
            let mut logged = std::time::Instant::now();
            let phase1 = calibrate_with_progress(&ctx, &gpu_model, &patches, method, o.bits, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if bar.is_hidden() && logged.elapsed().as_secs() >= 30 {
                    eprintln!("phase 1: {}% after {:.0} s", 100 * done / total.max(1), start.elapsed().as_secs_f64());
                    logged = std::time::Instant::now();
                }
            })?;
            bar.finish_and_clear();
            eprintln!("phase 1 done in {:.1} s, with {} MiB of GPU memory for activations and search", start.elapsed().as_secs_f64(), phase1.gpu_bytes >> 20);
            phase1.params
        }
    };
    let mut file = QuantFile { bits: o.bits, method: method.name(), scale: s, source_sha256: hash, weights_sha256: Some(weights.content_sha256()), settings: settings.clone(), params: Vec::new() };
    if let Some(sampler) = sampler.as_mut() {
        let checkpoint = Checkpointing { path: &state_path, every: o.phase2.checkpoint_every, cfg: &weights.config, file: file.clone() };
        params = run_phase2(&ctx, &gpu_model, (o.bits, params), sampler, &dqc, (resume.as_ref(), checkpoint), &mut settings)?;
        file.method.push_str("+dqc");
    }
    file.params = params;
    file.settings = settings;
    file.save(&weights.config, o.embed_weights.then_some(&weights), output)?;
    if iters > 0 && state_path.exists() {
        std::fs::remove_file(&state_path).with_context(|| state_path.display().to_string())?;
    }
    eprintln!("done in {:.1} s → {}", start.elapsed().as_secs_f64(), output.display());
    Ok(())
}

/// Says when phase `phase` cuts patches of `side` instead of PATCH from its (`what`)
/// images: the largest whole windows that they allow.
fn note_smaller_patches(phase: u8, what: &str, side: usize) {
    if side < PATCH {
        eprintln!("note: phase {phase} uses patches of {side}×{side} instead of {PATCH}×{PATCH}, the largest in whole windows that the {what} images (LR) allow");
    }
}

/// Refuses phase 2 settings that make no sense, whether or not phase 2 runs.
fn check_phase2_args(p: &Phase2Args) -> Result<()> {
    if !(p.lr.is_finite() && p.lr > 0.0) {
        bail!("--lr {}: the learning rate must be a positive number", p.lr);
    }
    if !(p.lambda.is_finite() && p.lambda >= 0.0) {
        bail!("--lambda {}: the feature-loss weight must be 0 or more", p.lambda);
    }
    if p.batch == 0 {
        bail!("--batch 0: a DQC batch needs at least one patch");
    }
    if p.checkpoint_every == 0 {
        bail!("--checkpoint-every 0: save the state every N ≥ 1 iterations");
    }
    if p.phase2_hr && p.phase2_data.is_empty() {
        bail!("--phase2-hr says the --phase2-data folders hold HR images; give --phase2-data (HR --calib images take --calib-hr)");
    }
    Ok(())
}

/// The settings stored in a quantized file (and checked on --resume); phase 1's
/// patches are `patch`×`patch`.
fn calib_settings(o: &CalibOptions, patch: usize, dqc: &DqcOptions) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = [
        ("patches", o.patches.to_string()),
        ("patch_mode", o.patch_mode.clone()),
        ("patch_size", patch.to_string()),
        ("seed", o.seed.to_string()),
        ("calib", absolute(&o.calib)),
        ("phase2_iters", dqc.iters.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if o.calib_hr {
        settings.insert("calib_hr".into(), "true".into());
    }
    if dqc.iters > 0 {
        for (key, value) in [
            ("phase2_batch", dqc.batch.to_string()),
            ("phase2_patch", dqc.patch.to_string()),
            ("phase2_lr", dqc.lr.to_string()),
            ("phase2_lambda", dqc.lambda.to_string()),
            ("phase2_schedule", "adam-cosine".to_string()),
            ("phase2_train_bias", dqc.train_bias.to_string()),
            ("phase2_data", o.phase2.phase2_data.iter().map(|d| absolute(d)).collect::<Vec<_>>().join(";")),
            ("phase2_hr", o.phase2.phase2_hr.to_string()),
        ] {
            settings.insert(key.into(), value);
        }
    }
    settings
}

/// The folder `dir` as an absolute path with its links resolved (recorded in the
/// settings, so that --resume knows it however it is written).
fn absolute(dir: &Path) -> String {
    data::resolved(dir).display().to_string()
}

/// `o` with a --calib folder in the benchmark layout replaced by the folder of its images
/// at scale `s`: LR_bicubic/X<s>, else HR (made LR, as with --calib-hr).
fn calib_folder(o: &CalibOptions, s: usize) -> CalibOptions {
    let Some((calib, calib_hr)) = benchmark_images(&o.calib, s, o.calib_hr) else {
        return o.clone();
    };
    eprintln!("calibration images: {} ({})", calib.display(), if calib_hr { "HR, made LR" } else { "LR" });
    CalibOptions { calib, calib_hr, ..o.clone() }
}

/// The images a folder in the benchmark layout holds at scale `s`: its LR_bicubic/X<s>
/// folder (LR images) unless `want_hr`, else its HR folder (true: HR images). None for
/// a plain folder of images.
fn benchmark_images(dir: &Path, s: usize, want_hr: bool) -> Option<(PathBuf, bool)> {
    let lr = dir.join("LR_bicubic").join(format!("X{s}"));
    let hr = dir.join("HR");
    match (lr.is_dir() && !want_hr, hr.is_dir()) {
        (true, _) => Some((lr, false)),
        (false, true) => Some((hr, true)),
        (false, false) => None,
    }
}

/// Phase 2's image folders at scale `s` and whether they hold HR images: the
/// --phase2-data folders (those in the benchmark layout replaced by their images, as
/// --calib is), else the calibration folder.
fn phase2_folders(o: &CalibOptions, s: usize) -> Result<(Vec<PathBuf>, bool)> {
    let p = &o.phase2;
    if p.phase2_data.is_empty() {
        return Ok((vec![o.calib.clone()], o.calib_hr));
    }
    let folders: Vec<(PathBuf, bool)> = p.phase2_data.iter().map(|d| benchmark_images(d, s, p.phase2_hr).unwrap_or((d.clone(), p.phase2_hr))).collect();
    if let (Some(lr), Some(hr)) = (folders.iter().find(|f| !f.1), folders.iter().find(|f| f.1)) {
        bail!(
            "--phase2-data: {} holds LR images but {} HR images; give folders of one kind (with --phase2-hr, folders in the benchmark layout give their HR images)",
            lr.0.display(),
            hr.0.display()
        );
    }
    let hr = folders[0].1;
    for ((dir, _), given) in folders.iter().zip(&p.phase2_data) {
        if dir != given {
            eprintln!("phase 2 images: {} ({})", dir.display(), if hr { "HR, made LR" } else { "LR" });
        }
    }
    Ok((folders.into_iter().map(|f| f.0).collect(), hr))
}

/// The saved phase 2 state at `path`, if it was made with the same checkpoint, bits,
/// method and settings as this run.
fn resumable_state(weights: &SwinWeights, path: &Path, bits: u32, method: &str, hash: &str, settings: &BTreeMap<String, String>) -> Result<DqcState> {
    let state = DqcState::load(&weights.config, path)?;
    let f = &state.file;
    let keys: std::collections::BTreeSet<&String> = settings.keys().chain(f.settings.keys()).collect();
    let value = |m: &BTreeMap<String, String>, k: &String| m.get(k).map_or("none", String::as_str).to_string();
    // Folders compare as absolute paths (a state of an earlier build may hold them as written).
    let same = |k: &String| match (settings.get(k), f.settings.get(k)) {
        (Some(a), Some(b)) if matches!(k.as_str(), "calib" | "phase2_data") => a.split(';').map(|d| absolute(Path::new(d))).eq(b.split(';').map(|d| absolute(Path::new(d)))),
        (a, b) => a == b,
    };
    let mut differ: Vec<String> = keys.into_iter().filter(|k| !same(k)).map(|k| format!("{k} {} (saved: {})", value(settings, k), value(&f.settings, k))).collect();
    if f.bits != bits {
        differ.push(format!("bits {bits} (saved: {})", f.bits));
    }
    if f.method != method {
        differ.push(format!("method {method} (saved: {})", f.method));
    }
    if !f.made_for(hash, weights) {
        differ.push("the checkpoint (another SHA-256)".into());
    }
    if !differ.is_empty() {
        bail!("{}: saved by a run with other settings, cannot resume: {}", path.display(), differ.join(", "));
    }
    Ok(state)
}

/// Phase 2 from `params`: returns the trained parameters and adds its losses and
/// time to `settings`.
fn run_phase2(
    ctx: &GpuContext,
    model: &GpuModel,
    (bits, params): (u32, Vec<swinq::quant::QParams>),
    sampler: &mut PatchSampler,
    dqc: &DqcOptions,
    (resume, checkpoint): (Option<&DqcState>, Checkpointing<'_>),
    settings: &mut BTreeMap<String, String>,
) -> Result<Vec<swinq::quant::QParams>> {
    let _first_ctrl_c_stops_after_an_iteration = swinq::interrupt::graceful();
    let start = std::time::Instant::now();
    let quant = QuantModel::new(ctx, model, bits, &params);
    swinq::note!(
        "phase 2 (DQC): {}, batch {} of {}×{}, Adam lr {} (cosine), λ {}, c {}; about {:.0} MiB of GPU memory; {}",
        progress::count(dqc.iters, "iteration", "iterations"),
        dqc.batch,
        dqc.patch,
        dqc.patch,
        dqc.lr,
        dqc.lambda,
        if dqc.train_bias { "trained" } else { "fixed" },
        dqc::memory_bytes(&model.config, dqc.batch, dqc.patch) as f64 / (1 << 20) as f64,
        if checkpoint.every < dqc.iters {
            format!("state saved every {} iterations and at Ctrl-C to {}", checkpoint.every, checkpoint.path.display())
        } else {
            format!("state saved at Ctrl-C only (--checkpoint-every {} ≥ the iterations)", checkpoint.every)
        }
    );
    if ctx.info.device_type == wgpu::DeviceType::Cpu {
        // Measured (benches/RESULTS.md): 22 s per iteration at batch 4, 94 s at batch 16
        // with lavapipe on two cores.
        swinq::note!(
            "note: {} is a CPU driver, where one DQC iteration at batch 16 of 64×64 takes about 1.5 minutes on two cores; \
             the estimate after the first iteration says how long this run takes, --phase2-iters and --batch shorten it",
            ctx.info.name
        );
    }
    let want_profile = dqc.profile;
    let bar = progress::styled(dqc.iters, "DQC [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise} (eta {eta}) {msg}");
    let first_iter = resume.map_or(0, |r| r.next_iter);
    bar.set_position(first_iter as u64);
    // Without a terminal (no bar drawn) a line every half minute shows progress in logs.
    let mut logged = std::time::Instant::now();
    let trained = dqc::train(ctx, model, &quant, sampler, dqc, (resume, Some(checkpoint)), |i, l| {
        let loss = format!("loss {:.5} (L1 {:.5}, features {:.2e})", l.total, l.l1, l.feature);
        // (The first iteration's line gives the time estimate early.)
        if bar.is_hidden() && (logged.elapsed().as_secs() >= 30 || i == first_iter || i + 1 == dqc.iters) {
            let per_iter = start.elapsed() / (i + 1 - first_iter) as u32;
            let left = indicatif::HumanDuration(per_iter * (dqc.iters - i - 1) as u32);
            swinq::note!("DQC iteration {}/{}: {loss}, {:.1} s per iteration, {left} left", i + 1, dqc.iters, per_iter.as_secs_f64());
            logged = std::time::Instant::now();
        }
        bar.set_message(loss);
        bar.inc(1);
    })
    .inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    if want_profile && trained.profile.is_none() {
        swinq::note!("phase 2: no profile: it times the run's second iteration, on an adapter with timestamp queries");
    }
    for (part, stages) in trained.profile.iter().flatten() {
        let total: f64 = stages.values().sum();
        let list: Vec<String> = stages.iter().map(|(s, ms)| format!("{s} {ms:.2}")).collect();
        swinq::note!("phase 2 GPU time of one iteration, {part}: {total:.2} ms ({})", list.join(", "));
    }
    let losses = trained.losses;
    // Batches differ from iteration to iteration: compare the means of the first and last tenth.
    let tenth = (losses.len() / 10).max(1);
    let mean = |ls: &[dqc::Losses]| ls.iter().map(|l| l.total).sum::<f64>() / ls.len() as f64;
    let (first, last) = (mean(&losses[..tenth]), mean(&losses[losses.len() - tenth..]));
    let resumed = match (first_iter, losses.len() == dqc.iters) {
        (0, _) => "",
        (_, true) => " (with the run before --resume)",
        // A state saved by an earlier build has no losses nor time.
        (_, false) => " (since --resume: the state did not record the run before)",
    };
    swinq::note!(
        "phase 2 done in {:.1} s{resumed}: mean loss of the first and last {} {first:.5} → {last:.5}",
        trained.seconds,
        progress::count(tenth, "iteration", "iterations")
    );
    settings.insert("phase2_loss_first".into(), format!("{first:.6}"));
    settings.insert("phase2_loss_last".into(), format!("{last:.6}"));
    settings.insert("phase2_seconds".into(), format!("{:.1}", trained.seconds));
    if losses.len() != dqc.iters {
        settings.insert("phase2_recorded".into(), format!("iterations {} to {} (resumed from a state without losses)", first_iter + 1, dqc.iters));
    }
    Ok(quant.read_params(ctx))
}

fn export_model(source: &WeightsArg, quantized: Option<&Path>, output: &Path) -> Result<()> {
    let path = source.path()?;
    if export::is_exported(&path) {
        bail!("{}: already an exported model; export takes the float checkpoint and a quantized file", path.display());
    }
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    let inputs: Vec<(&str, &Path)> = [("--weights checkpoint", path.as_path())].into_iter().chain(quantized.map(|q| ("--quantized file", q))).collect();
    data::check_not_an_input(&[output], &inputs)?;
    let (weights, q) = load_model(source, quantized)?;
    let q = q.context("--quantized: give the quantized file (from `swinq calibrate`) to export")?;
    let sizes = export::export(&weights, &q, output)?;
    let ckpt_file = std::fs::metadata(&path).with_context(|| path.display().to_string())?.len();
    let params: usize = weights.to_state_dict().values().filter(|t| t.as_f32().is_some()).map(|t| t.numel()).sum();
    let quantized_params = weights.config.num_blocks() * weights.config.embed_dim * (4 * weights.config.embed_dim + 2 * weights.config.mlp_hidden);
    let fp_bits = 32.0 * params as f64;
    let q_bits = fp_bits - quantized_params as f64 * (32.0 - q.bits as f64);
    eprintln!("{} ({} W{b}A{b}) → {}", quantized.unwrap_or(&path).display(), q.method, output.display(), b = q.bits);
    let fp32 = 4 * params as u64;
    eprintln!(
        "file {:.1} KiB (codes {:.1} KiB; float layers, quantizers and header {:.1} KiB) vs {:.1} KiB of FP32 weights: {:.2}× smaller \
         (the checkpoint file itself is {:.1} KiB)",
        sizes.file as f64 / 1024.0,
        sizes.codes as f64 / 1024.0,
        sizes.float as f64 / 1024.0,
        fp32 as f64 / 1024.0,
        fp32 as f64 / sizes.file as f64,
        ckpt_file as f64 / 1024.0
    );
    eprintln!(
        "parameters: {quantized_params} of {params} quantized to {} bits: {:.2}× fewer parameter bits (2DQuant's accounting)",
        q.bits,
        fp_bits / q_bits
    );
    Ok(())
}

fn bench((source, gpu): (&WeightsArg, &GpuArg), quantized: Option<&Path>, sizes: &[usize], runs: (usize, usize), json: bool) -> Result<()> {
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--size needs positive LR sizes, e.g. --size 128,256");
    }
    if runs.1 == 0 {
        bail!("--repeats 0: time at least one run");
    }
    let (weights, q) = load_model(source, quantized)?;
    let ctx = gpu.context()?;
    let gpu = GpuModel::upload(&ctx, &weights);
    let quant = q.as_ref().map(|q| QuantModel::new(&ctx, &gpu, q.bits, &q.params));
    let engines = if quant.is_some() { 3 } else { 1 };
    let bar = progress::bar(sizes.len() * engines, "timing");
    let launch_us = launch_cost_us(&ctx);
    let timings = compare_engines(&ctx, &gpu, quant.as_ref(), sizes, runs, |t| {
        let s = &t.timing;
        result_line(&bar, json, &format!("{}×{} {:<5} median {:>10.2} ms  min {:>10.2} ms", s.height, s.width, t.engine, s.median_ms, s.min_ms));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if json {
        let out = serde_json::json!({ "device": ctx.describe(), "scale": weights.config.scale, "bits": q.as_ref().map(|q| q.bits), "launch_cost_us": launch_us, "timings": timings });
        println!("{out}");
        return Ok(());
    }
    println!("SwinIR x{} forward on {} (a kernel launch costs {launch_us:.1} µs there)", weights.config.scale, ctx.describe());
    for chunk in timings.chunks(engines) {
        let fp = chunk[0].timing.median_ms;
        let line: Vec<String> = chunk
            .iter()
            .map(|t| {
                let speedup = if t.engine == "fp32" { String::new() } else { format!("{:.2}× the speed of fp32, ", fp / t.timing.median_ms) };
                format!("{} {:.2} ms ({speedup}{} launches)", t.engine, t.timing.median_ms, t.timing.launches())
            })
            .collect();
        println!("{}×{}: {}", chunk[0].timing.height, chunk[0].timing.width, line.join(", "));
    }
    Ok(())
}

fn print_report(report: &EvalReport, json: bool, ctx: &GpuContext) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "{} x{} ({}): PSNR-Y {:.4} dB, SSIM-Y {:.4} over {} in {:.1} s on {}",
            report.dataset,
            report.scale,
            report.engine,
            report.psnr_y,
            report.ssim_y,
            progress::count(report.images.len(), "image", "images"),
            report.seconds,
            ctx.describe()
        );
    }
    Ok(())
}
