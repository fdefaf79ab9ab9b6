//! Phase 2 (DQC, SPEC §5): the quantizers' bounds (and, for 2DQuant+, their bias c)
//! trained by distillation from the float model with Adam and a cosine schedule,
//! entirely on the GPU.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bytemuck::{Pod, Zeroable};

use super::calib::PatchSampler;
use super::student::StudentGrad;
use crate::gpu::profiler::Profiler;
use crate::interrupt::Interrupted;
use crate::gpu::{grid_1d, largest_fitting, run_now, OutOfGpuMemory, Const, Dispatch, GpuBuffer, GpuContext, Shader};
use crate::model::graph::{fits_exactly, Capture, Engine, GpuModel, Mode, Plan, QuantModel};
use crate::model::checkpoint::{load_state_dict, read_safetensors_metadata, save_safetensors};
use crate::model::{StateDict, SwinConfig, Tensor};
use crate::quant::file::QuantFile;
use crate::quant::{QParams, PER_BLOCK};

/// Phase 2 settings (SPEC §5 defaults).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DqcOptions {
    pub iters: usize,
    pub batch: usize,
    /// LR patch side.
    pub patch: usize,
    pub lr: f32,
    /// Weight λ of the feature loss.
    pub lambda: f32,
    /// How the learning rate changes over the iterations.
    pub schedule: Schedule,
    pub seed: u64,
    /// Whether c trains (2DQuant+) or stays as phase 1 left it.
    pub train_bias: bool,
    /// Time one iteration's GPU work per stage (timestamp queries, where the adapter has them).
    pub profile: bool,
}

impl Default for DqcOptions {
    fn default() -> Self {
        Self { iters: 3000, batch: 32, patch: super::calib::PATCH, lr: 1e-2, lambda: 5.0, schedule: Schedule::Cosine, seed: 0, train_bias: false, profile: false }
    }
}

/// Phase 2's learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine decay from the learning rate to 0 over the iterations (SPEC §5).
    #[default]
    Cosine,
    /// The learning rate throughout.
    Constant,
}

impl Schedule {
    /// The learning rate of iteration `iter` of `total` from `base`.
    pub fn lr(self, base: f32, iter: usize, total: usize) -> f32 {
        match self {
            Schedule::Cosine => cosine_lr(base, iter, total),
            Schedule::Constant => base,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Cosine => "cosine",
            Schedule::Constant => "constant",
        }
    }
}

pub const ADAM_BETAS: (f32, f32) = (0.9, 0.999);
pub const ADAM_EPS: f32 = 1e-8;

/// Cosine decay from `base` at iteration 0 to 0 after `total` iterations.
pub fn cosine_lr(base: f32, iter: usize, total: usize) -> f32 {
    let t = iter as f64 / total.max(1) as f64;
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    rows: u32,
    step: u32,
    train_bias: u32,
    _pad: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

/// Adam's moment buffers for the quantizer parameter rows.
pub struct Adam {
    rows: usize,
    m1: GpuBuffer,
    m2: GpuBuffer,
    train_bias: bool,
}

impl Adam {
    pub fn new(ctx: &GpuContext, rows: usize, train_bias: bool) -> Self {
        Self { rows, m1: GpuBuffer::zeros(ctx, "adam.m1", 4 * rows), m2: GpuBuffer::zeros(ctx, "adam.m2", 4 * rows), train_bias }
    }

    /// Adam with its moments as a checkpoint left them.
    fn resumed(ctx: &GpuContext, rows: usize, train_bias: bool, [m1, m2]: &[Vec<f32>; 2]) -> Self {
        let adam = Self::new(ctx, rows, train_bias);
        adam.m1.write(ctx, m1);
        adam.m2.write(ctx, m2);
        adam
    }

    /// Step `step` (1-based) with learning rate `lr`: `params` (vec4 rows l, u, c, 0)
    /// from `grads` (dl, du, dc, 0).
    pub fn step(&self, ctx: &GpuContext, params: &GpuBuffer, grads: &GpuBuffer, step: usize, lr: f32) -> Dispatch {
        let p = AdamParams {
            rows: self.rows as u32,
            step: step as u32,
            train_bias: self.train_bias as u32,
            _pad: 0,
            lr,
            beta1: ADAM_BETAS.0,
            beta2: ADAM_BETAS.1,
            eps: ADAM_EPS,
        };
        let pipeline = ctx.pipeline(Shader::Adam, "main", &[] as &[Const]);
        let b = [(1, params.bind()), (2, grads.bind()), (3, self.m1.bind()), (4, self.m2.bind())];
        Dispatch::with_bindings(ctx, pipeline, &p, &b, grid_1d(self.rows), "adam")
    }
}

/// The same Adam step on the CPU (reference for tests): moments as [l, u, c] rows.
pub fn adam_reference(params: &mut [QParams], grads: &[[f32; 3]], moments: &mut [[[f64; 3]; 2]], step: usize, lr: f32, train_bias: bool) {
    let (b1, b2) = (ADAM_BETAS.0 as f64, ADAM_BETAS.1 as f64);
    for ((p, g), [m, v]) in params.iter_mut().zip(grads).zip(moments.iter_mut()) {
        let mut theta = [p.lower, p.upper, p.bias];
        for i in 0..3 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i] as f64;
            v[i] = b2 * v[i] + (1.0 - b2) * (g[i] as f64).powi(2);
            let m_hat = m[i] / (1.0 - b1.powi(step as i32));
            let v_hat = v[i] / (1.0 - b2.powi(step as i32));
            if i < 2 || train_bias {
                theta[i] -= (lr as f64 * m_hat / (v_hat.sqrt() + ADAM_EPS as f64)) as f32;
            }
        }
        [p.lower, p.upper, p.bias] = theta;
    }
}

/// Whether a batch's largest activation fits one storage binding of the adapter.
fn batch_fits(ctx: &GpuContext, cfg: &SwinConfig, batch: usize, patch: usize) -> bool {
    fits_exactly(ctx, cfg, batch, patch, patch) && (batch * patch * patch * cfg.mlp_hidden * 4) as u64 <= ctx.max_binding()
}

/// Refuses a batch whose activations exceed the adapter's storage-binding limit, or
/// whose buffers the adapter cannot hold beside `model` (tried by allocating them
/// for a stand-in quantization at `bits`), naming the largest batch that fits.
/// Returns the bytes that the batch's buffers take.
pub fn check_batch(ctx: &GpuContext, model: &GpuModel, bits: u32, o: &DqcOptions) -> Result<u64> {
    if o.batch == 0 || o.iters == 0 {
        bail!("phase 2 needs --batch and --phase2-iters of at least 1");
    }
    let cfg = &model.config;
    let p = o.patch;
    if !batch_fits(ctx, cfg, o.batch, p) {
        let largest = (1..o.batch).rev().find(|&b| batch_fits(ctx, cfg, b, p)).unwrap_or(0);
        bail!(
            "a DQC batch of {} patches of {p}×{p} needs activations above this adapter's {} MiB storage-binding limit; the largest batch that fits is {largest}",
            o.batch,
            ctx.max_binding() >> 20
        );
    }
    // Distinct parameters, so that the plans fuse no more than trained ones would.
    let params: Vec<QParams> = (0..PER_BLOCK * cfg.num_blocks()).map(|i| QParams { lower: -1.0 - i as f32 * 1e-3, upper: 1.0, ..Default::default() }).collect();
    let quant = QuantModel::new(ctx, model, bits, &params, &[Engine::Fake]);
    // The bytes a batch's buffers take, or the out-of-memory error making them gave.
    let bytes = |batch: usize| -> Result<std::result::Result<u64, OutOfGpuMemory>> {
        let before = ctx.held_bytes();
        match Buffers::new(ctx, model, &quant, (batch, p), o.lambda) {
            Ok(buffers) => {
                let bytes = ctx.held_bytes() - before;
                drop(buffers);
                Ok(Ok(bytes))
            }
            Err(e) => e.downcast::<OutOfGpuMemory>().map(Err),
        }
    };
    let mut full = match bytes(o.batch)? {
        Ok(held) => return Ok(held),
        Err(e) => e,
    };
    full.what = match largest_fitting(o.batch, |b| Ok(bytes(b)?.is_ok()))? {
        0 => format!("a DQC batch of {} patches of {p}×{p} (none fits beside the model)", o.batch),
        largest => format!("a DQC batch of {} patches of {p}×{p} (the largest batch that fits is {largest})", o.batch),
    };
    Err(full.into())
}

/// Phase 2's GPU state beside the model and its quantization: the teacher's and the
/// student's plans and the gradient's buffers.
struct Buffers {
    teacher: Plan,
    student: Plan,
    grad: StudentGrad,
}

impl Buffers {
    fn new(ctx: &GpuContext, model: &GpuModel, quant: &QuantModel, (batch, patch): (usize, usize), lambda: f32) -> Result<Self> {
        let dims = (batch, patch, patch);
        ctx.allocating(&format!("a DQC batch of {batch} patches of {patch}×{patch} (a smaller --batch needs less)"), || {
            let teacher = Plan::with_mode(ctx, model, dims, Capture::Distill { block_inputs: false }, Mode::Float)?;
            // They run one after the other, so the student uses the teacher's scratch.
            let student = teacher.taking_turns(ctx, model, Capture::Distill { block_inputs: true }, Mode::Fake(quant))?;
            let grad = StudentGrad::new(ctx, model, quant, &teacher, &student, lambda)?;
            Ok(Self { teacher, student, grad })
        })
    }
}

/// One iteration's losses: L1, the summed feature losses, and L1 + λ·features.
#[derive(Clone, Copy, Debug)]
pub struct Losses {
    pub l1: f64,
    pub feature: f64,
    pub total: f64,
}

/// Phase 2 interrupted: the quantization so far (settings included) with Adam's
/// moments and the next iteration, in a safetensors file beside the output.
pub struct DqcState {
    pub file: QuantFile,
    pub moments: [Vec<f32>; 2],
    pub next_iter: usize,
    /// The losses of the iterations done, and the seconds they took.
    pub losses: Vec<Losses>,
    pub seconds: f64,
}

const STATE_FORMAT: &str = "swinq-dqc-state-1";

impl DqcState {
    /// The state file of a phase 2 writing `output`.
    pub fn path_for(output: &Path) -> std::path::PathBuf {
        output.with_extension("dqc-state.safetensors")
    }

    pub fn save(&self, cfg: &SwinConfig, path: &Path) -> Result<()> {
        let mut sd = StateDict::new();
        self.file.insert_params(cfg, "", &mut sd)?;
        for (name, m) in ["adam.m1", "adam.m2"].iter().zip(&self.moments) {
            sd.insert(name.to_string(), Tensor::f32(vec![m.len()], m.clone()));
        }
        let losses = self.losses.iter().flat_map(|l| [l.l1, l.feature, l.total].map(|v| v as f32)).collect();
        sd.insert("losses".into(), Tensor::f32(vec![self.losses.len(), 3], losses));
        let own = [("next_iter", self.next_iter.to_string()), ("seconds", format!("{:.1}", self.seconds))];
        save_safetensors(&sd, &self.file.metadata(cfg, STATE_FORMAT, &own), path)
    }

    pub fn load(cfg: &SwinConfig, path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{}: no phase 2 state to resume (none was saved for this output)", path.display());
        }
        let meta = read_safetensors_metadata(path)?;
        if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            bail!("{}: not a swinq phase 2 state", path.display());
        }
        let sd = load_state_dict(path)?;
        let file = QuantFile::from_parts(path, &meta, &sd, cfg, "", &["next_iter", "seconds"])?;
        let rows = 4 * file.params.len();
        let moment = |name: &str| -> Result<Vec<f32>> {
            let m = sd.get(name).and_then(|t| t.as_f32()).with_context(|| format!("{}: `{name}` missing", path.display()))?;
            if m.len() != rows {
                bail!("{}: `{name}` has {} values, not {rows}", path.display(), m.len());
            }
            Ok(m.to_vec())
        };
        let next_iter = meta.get("next_iter").and_then(|v| v.parse().ok()).with_context(|| format!("{}: `next_iter` missing", path.display()))?;
        // States saved by earlier builds lack the losses and the time: none, and 0 s.
        let (losses, seconds) = match sd.get("losses").and_then(|t| t.as_f32()).filter(|l| l.len() == 3 * next_iter) {
            Some(l) => (l.chunks_exact(3).map(|l| Losses { l1: l[0].into(), feature: l[1].into(), total: l[2].into() }).collect(), meta.get("seconds").and_then(|v| v.parse().ok()).unwrap_or(0.0)),
            None => (Vec::new(), 0.0),
        };
        Ok(Self { moments: [moment("adam.m1")?, moment("adam.m2")?], file, next_iter, losses, seconds })
    }
}

/// Where and how often `train` saves its state (every `every` iterations), with
/// the quantization's description (`file.params` is filled in at each save).
pub struct Checkpointing<'a> {
    pub path: &'a Path,
    pub every: usize,
    pub cfg: &'a SwinConfig,
    pub file: QuantFile,
}

/// GPU milliseconds per stage of one iteration's parts (teacher, student, gradient).
pub type IterationProfile = Vec<(&'static str, BTreeMap<&'static str, f64>)>;

/// What `train` returns: every iteration's losses and, when asked, one iteration's profile.
pub struct Trained {
    /// Every iteration's losses, those before a resume included.
    pub losses: Vec<Losses>,
    pub profile: Option<IterationProfile>,
    /// The seconds phase 2 took, those before a resume included.
    pub seconds: f64,
}

/// Runs DQC: trains `quant`'s parameters in place against the float `model` on
/// batches from `sampler`, from iteration 0 or from `resume` (whose parameters
/// `quant` must already hold, and whose batches `sampler` must have skipped);
/// `progress` sees each iteration's losses.
pub fn train(
    ctx: &GpuContext,
    model: &GpuModel,
    quant: &QuantModel,
    sampler: &mut PatchSampler,
    o: &DqcOptions,
    (resume, mut checkpoint): (Option<&DqcState>, Option<Checkpointing<'_>>),
    mut progress: impl FnMut(usize, Losses),
) -> Result<Trained> {
    // Phase 2's time, setup included, and that of the run before a resume.
    let started = std::time::Instant::now();
    let seconds = |resume: Option<&DqcState>| resume.map_or(0.0, |s| s.seconds) + started.elapsed().as_secs_f64();
    let Buffers { teacher, student, grad } = Buffers::new(ctx, model, quant, (o.batch, o.patch), o.lambda)?;
    let rows = quant.params.len / 4;
    let adam = match resume {
        Some(state) => Adam::resumed(ctx, rows, o.train_bias, &state.moments),
        None => Adam::new(ctx, rows, o.train_bias),
    };
    let start = resume.map_or(0, |s| s.next_iter);
    let mut history = resume.map_or_else(Vec::new, |s| s.losses.clone());
    let mut profile = None;
    for it in start..o.iters {
        let batch = sampler.batch(o.batch);
        // The second iteration is timed: the first one warms caches and allocations up.
        let mut profiler = (o.profile && it == start + 1).then(|| Profiler::new(ctx, 2048)).flatten();
        let mut parts = Vec::new();
        for (name, plan) in [("teacher", &teacher), ("student", &student)] {
            plan.set_input(ctx, &batch.data);
            plan.execute(ctx, profiler.as_mut());
            parts.extend(profiler.as_mut().map(|p| (name, p.take(ctx))));
        }
        grad.run(ctx, profiler.as_mut());
        parts.extend(profiler.as_mut().map(|p| ("gradient", p.take(ctx))));
        if !parts.is_empty() {
            profile = Some(parts);
        }
        let (l1, feature, total) = grad.loss(ctx);
        if !total.is_finite() {
            bail!("DQC iteration {}: the loss is {total}; phase 2 diverged (a smaller --lr may help)", it + 1);
        }
        run_now(ctx, &[adam.step(ctx, &quant.params, &grad.grads, it + 1, o.schedule.lr(o.lr, it, o.iters))]);
        quant.requantize_fake_weights(ctx, model);
        let losses = Losses { l1, feature, total };
        progress(it, losses);
        history.push(losses);
        let stop = crate::interrupt::stop_requested() && it + 1 < o.iters;
        if let Some(c) = checkpoint.as_mut().filter(|c| ((it + 1) % c.every == 0 || stop) && it + 1 < o.iters) {
            c.file.params = quant.read_params(ctx);
            let (moments, losses) = ([adam.m1.read(ctx), adam.m2.read(ctx)], history.clone());
            let state = DqcState { file: c.file.clone(), moments, next_iter: it + 1, losses, seconds: seconds(resume) };
            state.save(c.cfg, c.path)?;
        }
        if stop {
            let saved = checkpoint.as_ref().map_or(String::new(), |c| format!("; its state is saved in {}: the same command with --resume continues", c.path.display()));
            return Err(Interrupted(format!("interrupted after DQC iteration {} of {}{saved}", it + 1, o.iters)).into());
        }
    }
    // The integer weights follow the trained parameters once, at the end.
    quant.requantize_weights(ctx, model);
    Ok(Trained { losses: history, profile, seconds: seconds(resume) })
}
