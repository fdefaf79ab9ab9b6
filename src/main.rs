//! The `swinq` command line: parse arguments, call the library, print. The commands
//! themselves are in `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cli::args::{GpuArg, ModelArgs, Phase2Args, QuantArgs, WeightsArg};
use cli::calibrate::CalibOptions;
use swinq::gpu::adapters_report;
use swinq::report::ReportOptions;
use swinq::model::graph::Engine;

/// Quantize SwinIR-light super-resolution transformers to 2–4 bits (2DQuant+) and run
/// them on any GPU that wgpu reaches (Vulkan, Metal, DX12; lavapipe without a GPU).
#[derive(Parser)]
#[command(name = "swinq", version, long_about = None)]
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
    /// and integer engines, in one run on one adapter (median of repeats after warm-up;
    /// per-stage GPU time from timestamp queries when the adapter has them, with the
    /// multiply-adds per second each compute stage reaches).
    Bench {
        #[command(flatten)]
        source: WeightsArg,
        #[command(flatten)]
        gpu: GpuArg,
        /// Also time this quantized model (from `swinq calibrate`) with both engines.
        #[arg(long)]
        quantized: Option<PathBuf>,
        /// Time only this engine of the quantized model (beside fp32) [default: both]
        #[arg(long, value_enum)]
        engine: Option<Engine>,
        /// LR input sizes (square, ×scale output), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "128,256,512")]
        size: Vec<usize>,
        /// Timed runs per engine and size (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Untimed runs first (after the run that builds the pipelines).
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
        /// Number of calibration patches: 64×64 LR pixels, or (for smaller images) square
        /// patches of the largest multiple of the window that the images allow.
        #[arg(long, default_value_t = 32)]
        patches: usize,
        /// center: the centre crop of the first --patches images (file-name order); random:
        /// random crops.
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
        Command::Convert { input, output } => cli::convert(&input, &output),
        Command::Upscale { model, quant, inputs, output } => cli::upscale::upscale(&model, &quant, &inputs, &output),
        Command::Eval { model, dataset, scale, json, quant } => cli::eval(&model, &dataset, scale, json, &quant),
        Command::Export { source, quantized, output } => cli::export_model(&source, quantized.as_deref(), &output),
        Command::Bench { source, gpu, quantized, engine, size, repeats, warmup, json } => cli::bench((&source, &gpu), (quantized.as_deref(), engine), &size, (warmup, repeats), json),
        Command::Calibrate { source, gpu, calib, calib_hr, scale, bits, method, bias, center, patches, patch_mode, seed, embed_weights, phase2, output } => {
            let opts = CalibOptions { calib, calib_hr, bits, method, bias, center, patches, patch_mode, seed, embed_weights, phase2 };
            cli::calibrate::run((&source, &gpu), scale, &opts, &output)
        }
        Command::Report { model, opts } => cli::report(&model, &opts),
    }
}
