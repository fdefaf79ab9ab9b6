//! `cargo bench --bench backward`: GPU time of the two heaviest kernels of a DQC
//! iteration's gradient at SwinIR-light x2 shapes, for a batch of 64×64 patches:
//! the window-attention backward of one block (W4 quantizers) and the weight
//! quantizers' gradients of each linear shape (q/k/v/proj 60→60, fc1 60→120,
//! fc2 120→60, with the input quantizer), and the input quantizers' STE
//! (`quant_backward`) over each linear's input, then all scaled to the 24 blocks of
//! one iteration. Median of SWINQ_BENCH_REPEATS runs (default 5) after one warm-up, from
//! timestamp queries. SWINQ_BENCH_BATCH (default 16) and WGPU_ADAPTER_NAME adjust it.

use rand::{Rng, SeedableRng};
use swinq::bench::{env_or, median};
use swinq::gpu::attention_backward::{partial_words, window_attention_backward};
use swinq::gpu::backward::{quant_backward, quant_partials, weight_grad_words, weight_partials, weight_quant_grads, LinearGrad};
use swinq::gpu::ops::{attention_table, AttnShape, QuantRef};
use swinq::gpu::profiler::Profiler;
use swinq::gpu::{run_profiled, AdapterChoice, Dispatch, GpuBuffer, GpuContext};
use swinq::quant::{levels, QParams};

const SHAPE: AttnShape = AttnShape { window: 8, heads: 6, head_dim: 10, shift: 4 };
const BLOCKS: f64 = 24.0;

fn random(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Median GPU milliseconds of the dispatches over `repeats` runs after a warm-up.
fn gpu_ms(ctx: &GpuContext, dispatches: &[Dispatch], repeats: usize) -> f64 {
    let mut prof = Profiler::new(ctx, 64).expect("this bench needs timestamp queries");
    run_profiled(ctx, dispatches, None);
    let samples: Vec<f64> = (0..repeats)
        .map(|_| {
            run_profiled(ctx, dispatches, Some(&mut prof));
            prof.take(ctx).values().sum()
        })
        .collect();
    median(&samples)
}

fn main() {
    // `cargo test` runs bench targets with --bench absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ctx = &GpuContext::new(&AdapterChoice::from_cli(None)).expect("GPU adapter");
    let batch: usize = env_or("SWINQ_BENCH_BATCH", 16);
    let repeats: usize = env_or("SWINQ_BENCH_REPEATS", 5).max(1);
    let tokens = batch * 64 * 64;
    let c = SHAPE.heads * SHAPE.head_dim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    println!("DQC gradient kernels, batch {batch} of 64×64 (SwinIR-light x2, W4), on {}", ctx.describe());

    let q = |lower, upper| QParams { lower, upper, bias: 0.0, _pad: 0.0 };
    let params = GpuBuffer::from_slice(ctx, "qparams", &[q(-0.6, 0.7), q(-1.2, 1.0), q(-1.0, 1.3), q(0.003, 0.25)]);
    let quant = QuantRef { params: &params, row: 0, levels: levels(4) };

    let [qb, kb, vb, d_out] = [(); 4].map(|_| GpuBuffer::from_slice(ctx, "activations", &random(&mut rng, tokens * c)));
    let [dq, dk, dv] = [(); 3].map(|_| GpuBuffer::zeros(ctx, "gradients", tokens * c));
    let table = attention_table(ctx, &random(&mut rng, (2 * SHAPE.window - 1).pow(2) * SHAPE.heads));
    let partials = GpuBuffer::zeros(ctx, "partials", partial_words(tokens / 64 * SHAPE.heads));
    let attention = window_attention_backward(ctx, [&qb, &kb, &vb], &table, &d_out, [&dq, &dk, &dv], &partials, (batch, 64, 64), SHAPE, Some(quant));
    let attention_ms = gpu_ms(ctx, &attention, repeats);
    println!("attention backward, one block: {attention_ms:.2} ms");

    let mut weight_ms = 0.0;
    let mut ste_ms = 0.0;
    for (name, k, n_out, per_block) in [("q/k/v/proj 60→60", c, c, 4.0), ("fc1 60→120", c, 2 * c, 1.0), ("fc2 120→60", 2 * c, c, 1.0)] {
        let x = GpuBuffer::from_slice(ctx, "x", &random(&mut rng, tokens * k));
        let dy = GpuBuffer::from_slice(ctx, "dy", &random(&mut rng, tokens * n_out));
        let weight = GpuBuffer::from_slice(ctx, "weight", &random(&mut rng, n_out * k));
        let layer = LinearGrad { weight: &weight, n_out, k, quant: Some(quant) };
        let scratch = GpuBuffer::zeros(ctx, "scratch", weight_grad_words(n_out, k, tokens));
        let partials = GpuBuffer::zeros(ctx, "partials", 4 * weight_partials(n_out, k));
        let ms = gpu_ms(ctx, &weight_quant_grads(ctx, [&x, &dy], layer, Some(1), tokens, &scratch, (&partials, 0)), repeats);
        println!("weight-quantizer gradient {name}: {ms:.2} ms");
        weight_ms += per_block * ms;
        let dx = GpuBuffer::zeros(ctx, "dx", tokens * k);
        let ste_partials = GpuBuffer::zeros(ctx, "partials", 4 * quant_partials(tokens * k));
        let ms = gpu_ms(ctx, &[quant_backward(ctx, [&x, &x, &dx], tokens * k, quant, (&ste_partials, 0), false)], repeats);
        println!("input-quantizer STE {name}: {ms:.2} ms");
        ste_ms += per_block * ms;
    }
    println!(
        "per DQC iteration (24 blocks): attention backward {:.1} ms, weight-quantizer gradients {:.1} ms, input-quantizer STE {:.1} ms",
        BLOCKS * attention_ms,
        BLOCKS * weight_ms,
        BLOCKS * ste_ms
    );
}
