//! `cargo bench --bench forward`: FP32 SwinIR-light x2 forward at 64², 128², 256² LR,
//! median wall time, the per-stage GPU time from timestamp queries (with each compute
//! stage's multiply-adds per second), the kernel launches per stage and what one launch costs.
//! SWINQ_BENCH_SIZES (e.g. "64,128"), SWINQ_BENCH_REPEATS and WGPU_ADAPTER_NAME adjust it.

use swinq::bench::{env_or, launch_cost_us, time_forward, LAUNCH_PROBES};
use swinq::gpu::{AdapterChoice, GpuContext};
use swinq::model::graph::{GpuModel, Mode};
use swinq::model::{SwinConfig, SwinWeights};

fn main() {
    // `cargo test` runs bench targets with --bench absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ctx = GpuContext::new(&AdapterChoice::from_cli(None)).expect("GPU adapter");
    let sizes: Vec<usize> = std::env::var("SWINQ_BENCH_SIZES")
        .unwrap_or_else(|_| "64,128,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let repeats = env_or("SWINQ_BENCH_REPEATS", 5);
    // Speed does not depend on the weights' values: random SwinIR-light weights.
    let model = GpuModel::upload(&ctx, &SwinWeights::random(&SwinConfig::light(2), 0));
    println!("FP32 SwinIR-light x2 forward on {}", ctx.describe());
    println!("launch cost: {:.1} µs per dispatch ({LAUNCH_PROBES} tiny matmuls in one submission)", launch_cost_us(&ctx));
    for s in sizes {
        let t = time_forward(&ctx, &model, Mode::Float, (1, s, s), 2, repeats).expect("forward");
        let gpu_total: f64 = t.stages_ms.values().sum();
        let launches: Vec<String> = t.dispatches.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "{s}x{s}: median {:.2} ms, min {:.2} ms over {} runs; GPU stages (sum {:.2} ms): {}; dispatches {}: {}",
            t.median_ms,
            t.min_ms,
            t.repeats,
            gpu_total,
            t.stage_summary(),
            t.launches(),
            launches.join(", ")
        );
    }
}
