//! The arguments several commands share (checkpoint, adapter, tiling, quantized model,
//! phase 2 settings) and the models they load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use swinq::gpu::{AdapterChoice, GpuContext};
use swinq::model::checkpoint::{load_weights, sha256_file};
use swinq::model::SwinWeights;
use swinq::quant::dqc::Schedule;
use swinq::quant::export;
use swinq::quant::file::QuantFile;
use swinq::model::graph::Engine;
use swinq::upscale::{Tiling, Upscaler};
use swinq::weights_registry::{check_named_scale, resolve_weights};

/// Phase 2 (DQC, SPEC §5): the bounds (and c, for methods with bias correction)
/// trained by distillation from the float model on random calibration patches.
#[derive(Args, Clone)]
pub struct Phase2Args {
    /// DQC iterations after phase 1 (0: phase 1 only) [default: 3000 for 2dquant and
    /// 2dquant+, else 0]
    #[arg(long)]
    pub phase2_iters: Option<usize>,
    /// LR patches per DQC batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Side of the DQC patches in LR pixels, a multiple of the window (random crops with
    /// flips and 90° rotations) [default: 64, or the largest multiple of the window that
    /// every training image allows]
    #[arg(long)]
    pub patch: Option<usize>,
    /// Adam learning rate (at the start, with --schedule cosine).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f32,
    /// Learning-rate schedule: cosine (decay to 0 over the iterations) or constant.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// Weight λ of the feature loss on the four residual groups' outputs.
    #[arg(long, default_value_t = 5.0)]
    pub lambda: f32,
    /// Folders of DQC training images (repeatable; default: the --calib folder, HR with
    /// --calib-hr), LR images unless --phase2-hr says they are HR. A folder in the
    /// benchmark layout stands for its LR_bicubic/X<s> (HR with --phase2-hr), else its HR folder.
    #[arg(long)]
    pub phase2_data: Vec<PathBuf>,
    /// The --phase2-data folders hold HR images: LR patches are made from them with the
    /// MATLAB-exact bicubic at the model's scale (e.g. ../shared/train/BSDS500_train).
    #[arg(long)]
    pub phase2_hr: bool,
    /// Save phase 2's state (parameters, Adam moments, iteration) every N iterations
    /// to OUTPUT with the extension .dqc-state.safetensors (removed when phase 2 ends).
    /// Ctrl-C stops phase 2 after the current iteration and saves the state too.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Continue an interrupted phase 2 from that state file (same checkpoint, bits,
    /// method and settings).
    #[arg(long)]
    pub resume: bool,
    /// Print the GPU time per stage of one DQC iteration (teacher, student, gradient),
    /// from timestamp queries where the adapter has them: the second iteration of the
    /// run, after the one that warms up.
    #[arg(long)]
    pub phase2_profile: bool,
}

/// The float checkpoint (`--weights`).
#[derive(Args)]
pub struct WeightsArg {
    /// Checkpoint path (.pth or .safetensors) or a model name: swinir-light-x2, -x3, -x4
    /// (downloaded once into the cache). eval, upscale, bench and export also take a
    /// quantized file with embedded weights (`calibrate --embed-weights`), and the first
    /// three an exported model (`swinq export`), which carry their own quantization.
    #[arg(long, env = "SWINQ_WEIGHTS")]
    pub weights: String,
}

/// The GPU adapter (`--adapter`).
#[derive(Args)]
pub struct GpuArg {
    /// Use the adapter whose name contains this text (default: WGPU_ADAPTER_NAME, else a
    /// discrete GPU, then an integrated one, then any other; WGPU_BACKEND limits the backends).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Hold at most this many MiB of GPU memory: images that would need more run in tiles,
    /// other work stops with an error saying so (phase 2 names the largest --batch that
    /// fits). Without it, the limit is what the driver gives (95 % of its budget where it
    /// reports one).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub gpu_memory: Option<u64>,
}

/// The model, the adapter and the tiling of commands that run whole images.
#[derive(Args)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: WeightsArg,
    #[command(flatten)]
    pub gpu: GpuArg,
    /// Process images in tiles of N×N LR pixels that overlap by 32: N is a multiple of
    /// the window above 32 (40, 48, 64, ... for SwinIR-light). Without it, images run
    /// whole, or in the largest tiles that fit the adapter (its storage bindings and memory).
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,
}

impl WeightsArg {
    /// The checkpoint file (a model name resolves to its cached file, fetched once).
    pub fn path(&self) -> Result<PathBuf> {
        resolve_weights(&self.weights)
    }

    /// The float weights in `path` (this argument's [`WeightsArg::path`]) and the
    /// SHA-256 of that file.
    pub fn load_with_hash(&self, path: &Path) -> Result<(SwinWeights, String)> {
        Ok((load_float(&self.weights, path)?, sha256_file(path)?))
    }
}

impl GpuArg {
    pub fn context(&self) -> Result<GpuContext> {
        let ctx = GpuContext::new(&AdapterChoice::from_cli(self.adapter.clone()))?;
        ctx.set_memory_limit(self.gpu_memory.map(|mib| mib << 20));
        Ok(ctx)
    }
}

impl ModelArgs {
    pub fn tiling(&self) -> Tiling {
        self.tile.map_or(Tiling::Auto, Tiling::Tile)
    }
}

/// The float checkpoint `path` that --weights `spec` resolved to (for a model name, it
/// must be that model).
fn load_float(spec: &str, path: &Path) -> Result<SwinWeights> {
    let weights = load_weights(path)?;
    check_named_scale(spec, path, weights.config.scale)?;
    Ok(weights)
}

/// The checkpoint's scale, which `--scale`, when given, must equal.
pub fn check_scale(weights: &SwinWeights, scale: Option<usize>) -> Result<usize> {
    let s = weights.config.scale;
    if let Some(want) = scale.filter(|&want| want != s) {
        bail!("--scale {want} does not match the checkpoint, which is a ×{s} model");
    }
    Ok(s)
}

/// The quantized model of `upscale` and `eval`.
#[derive(Args)]
pub struct QuantArgs {
    /// Run the quantized model of this file (from `swinq calibrate`) instead of the float one.
    #[arg(long)]
    pub quantized: Option<PathBuf>,
    /// How the quantized model runs [default: int].
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
}

/// The float model and the quantized model to run: from --weights and --quantized,
/// or both from an exported model (`swinq export`) or a quantized file with embedded
/// weights (`calibrate --embed-weights`) given as --weights.
pub fn load_model(source: &WeightsArg, quantized: Option<&Path>) -> Result<(SwinWeights, Option<QuantFile>)> {
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
    pub fn apply<'a>(&self, up: Upscaler<'a>, q: Option<&QuantFile>) -> Result<Upscaler<'a>> {
        match (q, self.engine) {
            (Some(q), engine) => Ok(up.quantized(q.bits, &q.params, engine.unwrap_or_default())),
            (None, Some(_)) => bail!("--engine chooses how a quantized model runs; give --quantized (or an exported model as --weights)"),
            (None, None) => Ok(up),
        }
    }
}

/// A quantized file, checked against the float checkpoint it must belong to.
pub fn load_quantized(path: &Path, weights: &SwinWeights, hash: &str) -> Result<QuantFile> {
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
