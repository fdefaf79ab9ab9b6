//! Timing the GPU forward: wall time per run (median of repeats after warm-up), a
//! per-stage breakdown from GPU timestamp queries with each compute stage's
//! multiply-adds, the engines compared in one run, and the cost of one kernel launch.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::gpu::profiler::Profiler;
use crate::gpu::ops::GpuLinear;
use crate::gpu::GpuContext;
use crate::model::graph::{Capture, Engine, GpuModel, Mode, Plan};

#[derive(Clone, Debug, Serialize)]
pub struct ForwardTiming {
    /// LR input height and width.
    pub height: usize,
    pub width: usize,
    pub batch: usize,
    pub repeats: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// GPU milliseconds per stage for one forward (empty without timestamp queries).
    pub stages_ms: BTreeMap<String, f64>,
    /// Kernel launches per stage of one forward.
    pub dispatches: BTreeMap<String, usize>,
    /// Multiply-adds per compute stage of one forward ([`stage_macs`]).
    pub stage_macs: BTreeMap<String, f64>,
    /// GPU memory of the forward's activations and scratch, the model aside (MiB).
    pub activations_mib: f64,
}

impl ForwardTiming {
    /// Kernel launches of one forward, all stages.
    pub fn launches(&self) -> usize {
        self.dispatches.values().sum()
    }

    /// The GPU time per stage, with the multiply-adds per second of the compute stages:
    /// "attention 25.08 ms (0.96 TMAC/s), conv ...". Empty without timestamp queries.
    pub fn stage_summary(&self) -> String {
        let stages: Vec<String> = self
            .stages_ms
            .iter()
            .map(|(stage, &ms)| match self.stage_macs.get(stage) {
                Some(&macs) if ms > 0.0 => format!("{stage} {ms:.2} ms ({})", mac_rate(macs / (ms * 1e-3))),
                _ => format!("{stage} {ms:.2} ms"),
            })
            .collect();
        stages.join(", ")
    }
}

/// A rate of multiply-adds per second, in G or T.
fn mac_rate(per_s: f64) -> String {
    if per_s >= 1e12 {
        format!("{:.2} TMAC/s", per_s / 1e12)
    } else {
        format!("{:.1} GMAC/s", per_s / 1e9)
    }
}

/// Multiply-adds per compute stage (the profiler's stage names) of one forward over
/// `tokens` LR tokens (padded to whole windows, as the model runs them): the least
/// arithmetic each stage must do. qkv, proj and mlp are the blocks' linears, conv the
/// 3×3 convolutions (first, per group, after the body, upsampling), attention q·kᵀ and
/// P·v. The integer engine does the same multiply-adds in integers where it quantizes.
pub fn stage_macs(model: &GpuModel, tokens: usize) -> BTreeMap<String, f64> {
    let t = tokens as f64;
    let linear = |l: &GpuLinear| t * (l.k * l.out_dim) as f64;
    let cfg = &model.config;
    let window_tokens = (cfg.window * cfg.window) as f64;
    let mut macs = BTreeMap::new();
    let mut add = |stage: &str, n: f64| *macs.entry(stage.to_string()).or_insert(0.0) += n;
    for blk in model.blocks() {
        add("qkv", blk.qkv.iter().map(linear).sum());
        add("proj", linear(&blk.proj));
        add("mlp", linear(&blk.fc1) + linear(&blk.fc2));
        add("attention", 2.0 * t * window_tokens * cfg.embed_dim as f64);
    }
    add("conv", model.convs().map(linear).sum());
    macs
}

/// The environment variable `key` parsed, else `default` (the benches' settings).
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Median of the samples (upper median for even counts).
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Times `repeats` forwards of a (batch, 3, h, w) input after `warmup` untimed
/// ones, with the model run as `mode` (float, fake-quantized or integer).
pub fn time_forward(
    ctx: &GpuContext,
    model: &GpuModel,
    mode: Mode<'_>,
    (batch, h, w): (usize, usize, usize),
    warmup: usize,
    repeats: usize,
) -> Result<ForwardTiming> {
    let what = format!("a batch of {batch} inputs of {w}×{h}");
    let before = ctx.held_bytes();
    let plan = ctx.allocating(&what, || Plan::with_mode(ctx, model, (batch, h, w), Capture::Nothing, mode))?;
    let activations_mib = (ctx.held_bytes() - before) as f64 / (1 << 20) as f64;
    let input: Vec<f32> = (0..batch * 3 * h * w).map(|i| (i % 251) as f32 / 250.0).collect();
    plan.forward(ctx, &input, None);
    for _ in 0..warmup {
        plan.execute(ctx, None);
    }
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        plan.execute(ctx, None);
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut stages_ms = BTreeMap::new();
    if let Some(mut prof) = Profiler::new(ctx, 2048) {
        plan.execute(ctx, Some(&mut prof));
        stages_ms = prof.take(ctx).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    }
    Ok(ForwardTiming {
        height: h,
        width: w,
        batch,
        repeats: samples.len(),
        median_ms: median(&samples),
        min_ms: samples.iter().cloned().fold(f64::INFINITY, f64::min),
        stages_ms,
        dispatches: plan.dispatch_counts().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        stage_macs: stage_macs(model, plan.tokens()),
        activations_mib,
    })
}

/// Tiny kernels `launch_cost_us` times in one submission.
pub const LAUNCH_PROBES: usize = 2000;

/// Microseconds from submit to completion per launch of a tiny kernel (a 64×4×4
/// matmul), LAUNCH_PROBES of them in one submission: the fixed cost of a dispatch,
/// which every stage pays once per launch.
pub fn launch_cost_us(ctx: &GpuContext) -> f64 {
    use crate::gpu::ops::{matmul, GpuLinear, Matmul};
    use crate::gpu::GpuBuffer;
    let (m, k, n) = (64, 4, 4);
    let x = GpuBuffer::from_slice(ctx, "x", &vec![1.0f32; m * k]);
    let out = GpuBuffer::zeros(ctx, "out", m * n);
    let layer = GpuLinear::new(ctx, "tiny", &vec![0.5f32; n * k], &vec![0.0; n], n);
    let launches: Vec<_> = (0..LAUNCH_PROBES).flat_map(|_| matmul(ctx, Matmul::tokens(x.operand(), layer.weights(), out.bind(), m, "tiny"))).collect();
    crate::gpu::run_now(ctx, &launches[..1]);
    let t = Instant::now();
    crate::gpu::run_now(ctx, &launches);
    t.elapsed().as_secs_f64() * 1e6 / launches.len() as f64
}

/// One engine's timing at one size (`swinq bench`).
#[derive(Clone, Debug, Serialize)]
pub struct EngineTiming {
    pub engine: &'static str,
    #[serde(flatten)]
    pub timing: ForwardTiming,
}

/// Times the float model and, given a quantized model, its engines `engines` (fake
/// quantization, integers), at each LR size, in one run on one adapter.
pub fn compare_engines(
    ctx: &GpuContext,
    model: &GpuModel,
    quant: Option<(&crate::model::graph::QuantModel, &[Engine])>,
    sizes: &[usize],
    (warmup, repeats): (usize, usize),
    mut progress: impl FnMut(&EngineTiming),
) -> Result<Vec<EngineTiming>> {
    let mut modes = vec![("fp32", Mode::Float)];
    if let Some((q, engines)) = quant {
        modes.extend(engines.iter().map(|e| (e.name(), e.mode(q))));
    }
    let mut out = Vec::new();
    for &s in sizes {
        for &(engine, mode) in &modes {
            let timing = time_forward(ctx, model, mode, (1, s, s), warmup, repeats).with_context(|| format!("LR size {s}×{s} (timed whole, without tiles)"))?;
            let t = EngineTiming { engine, timing };
            progress(&t);
            out.push(t);
        }
    }
    Ok(out)
}
