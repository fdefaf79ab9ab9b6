//! `cargo bench --bench sort`: keys/s of the GPU radix sort (`RadixSorter::sort_f32`,
//! submit + wait, median of SWINQ_BENCH_REPEATS runs, default 5) against
//! `slice::sort_unstable_by(f32::total_cmp)` on the CPU, on the same random f32
//! data, at 1 Mi and 16 Mi keys (16 Mi only within the storage-binding limit).
//! SWINQ_SORT_SIZES (e.g. "1048576,4194304") and WGPU_ADAPTER_NAME adjust it.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use swinq::bench::{env_or, median};
use swinq::gpu::{AdapterChoice, GpuBuffer, GpuContext};
use swinq::sort::RadixSorter;

fn main() {
    // `cargo test` runs bench targets with --bench absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ctx = GpuContext::new(&AdapterChoice::from_cli(None)).expect("GPU adapter");
    let repeats: usize = env_or("SWINQ_BENCH_REPEATS", 5).max(1);
    let sizes: Vec<usize> = std::env::var("SWINQ_SORT_SIZES")
        .unwrap_or_else(|_| format!("{},{}", 1 << 20, 1 << 24))
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut sorter = RadixSorter::new(&ctx);
    println!("f32 radix sort on {} ({}), median of {repeats}", ctx.describe(), sorter.describe());
    for n in sizes {
        if n as u64 * 4 > ctx.max_binding() {
            println!("{n} keys: skipped ({} bytes exceed the {}-byte storage-binding limit)", n * 4, ctx.max_binding());
            continue;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        // Activation-like values: mostly small, both signs, some duplicates.
        let data: Vec<f32> = (0..n)
            .map(|_| if rng.random_range(0..8) == 0 { rng.random_range(-64..64) as f32 * 0.5 } else { rng.random_range(-6.0f32..6.0) })
            .collect();
        let mut want = data.clone();
        want.sort_unstable_by(f32::total_cmp);

        let buf = GpuBuffer::from_slice(&ctx, "bench.sort", &data);
        let mut gpu_s = Vec::new();
        for rep in 0..=repeats {
            buf.write(&ctx, &data);
            ctx.wait();
            let t = Instant::now();
            sorter.sort_f32(&ctx, &buf, n).expect("sort");
            ctx.wait();
            // The first run compiles the pipelines and grows the scratch buffers.
            if rep > 0 {
                gpu_s.push(t.elapsed().as_secs_f64());
            }
        }
        let got: Vec<f32> = buf.read(&ctx);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "GPU sort disagrees with the CPU sort");

        let mut cpu_s = Vec::new();
        for _ in 0..repeats {
            let mut v = data.clone();
            let t = Instant::now();
            v.sort_unstable_by(f32::total_cmp);
            cpu_s.push(t.elapsed().as_secs_f64());
            std::hint::black_box(&v);
        }
        let gmin = gpu_s.iter().copied().fold(f64::INFINITY, f64::min);
        let (g, c) = (median(&gpu_s), median(&cpu_s));
        println!(
            "{n:>9} keys: GPU {:8.2} ms = {:7.1} M keys/s (best {:.1}) | CPU sort_unstable_by {:8.2} ms = {:7.1} M keys/s | GPU/CPU {:.2}x",
            g * 1e3,
            n as f64 / g / 1e6,
            n as f64 / gmin / 1e6,
            c * 1e3,
            n as f64 / c / 1e6,
            c / g
        );
    }
}
