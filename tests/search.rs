//! Phase 1 bound search on the GPU against the CPU DOBI reference.

mod common;

use common::{gpu, rng};
use rand::Rng;
use swinq::gpu::{run_now, GpuBuffer};
use swinq::quant::search::{dobi_cpu, SearchSpec, Searcher};

/// Heavy-tailed test data: mostly normal-ish, a few large outliers.
fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let v: f32 = (0..4).map(|_| r.random_range(-1.0f32..1.0)).sum();
            if r.random_range(0..1000) == 0 { v * 8.0 } else { v + 0.3 }
        })
        .collect()
}

fn check(x: &[f32], bits: u32, one_dir: bool, slices: usize) {
    let ctx = gpu();
    let xb = GpuBuffer::from_slice(ctx, "x", x);
    let qparams = GpuBuffer::zeros(ctx, "q", 4 * 8);
    let searcher = Searcher::new(ctx, x.len(), bits);
    let spec = SearchSpec { index: 2, count: 3, k: 100, one_dir, mult: 1.0 };
    // Split the tensor into `slices` pieces at multiples of 64 elements.
    let step = (x.len() / slices).div_ceil(64) * 64;
    let pieces: Vec<(usize, usize)> = (0..x.len()).step_by(step).map(|s| (s, step.min(x.len() - s))).collect();
    let mut ds = Vec::new();
    let mut base = 0;
    for &(s, n) in &pieces {
        ds.push(searcher.minmax_pass(ctx, &spec, xb.bind_range(s, n), n, base));
        base += Searcher::groups(n);
    }
    ds.push(searcher.candidates(ctx, &spec, base));
    let mut base2 = 0;
    for &(s, n) in &pieces {
        ds.push(searcher.errors_pass(ctx, &spec, xb.bind_range(s, n), n, base2));
        base2 += Searcher::groups(n);
    }
    ds.push(searcher.pick(ctx, &spec, base, &qparams));
    run_now(ctx, &ds);
    let got: Vec<f32> = qparams.read(ctx);
    let (l, u) = dobi_cpu(x, bits, 100, one_dir);
    eprintln!("n={} bits={bits} one_dir={one_dir} slices={slices}: GPU ({}, {}), CPU ({l}, {u})", x.len(), got[8], got[9]);
    for row in 2..5 {
        assert_eq!((got[4 * row], got[4 * row + 1]), (l, u), "row {row}");
    }
    assert_eq!(got[4], 0.0, "row 1 must be untouched");
}

#[test]
fn dobi_symmetric_matches_cpu() {
    check(&data(1, 100_003), 4, false, 1);
    check(&data(2, 31_337), 2, false, 3);
}

#[test]
fn dobi_one_direction_matches_cpu() {
    let x: Vec<f32> = data(3, 77_777).iter().map(|v| v.abs()).collect();
    check(&x, 4, true, 2);
    check(&x, 3, true, 1);
}
