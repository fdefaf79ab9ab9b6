//! Backward kernels of phase 2 (shaders/backward.wgsl): the CPU reference against
//! finite differences, the GPU kernels against the CPU reference, on odd sizes.

mod common;

use common::{assert_close, gpu, random, rng};
use swinq::gpu::backward::{gelu_backward, layer_norm_backward, quant_backward, quant_partials, reduce_partials};
use swinq::gpu::ops::{GpuNorm, QuantRef, LN_EPS};
use swinq::gpu::{run_now, GpuBuffer};
use swinq::model::backward as cpu;
use swinq::model::cpu::erf;
use swinq::model::weights::LayerNorm;
use swinq::quant::{levels, QParams};

/// Central difference of f at x along every coordinate.
fn numeric_gradient(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] = x[i] + h;
            let up = f(&p);
            p[i] = x[i] - h;
            (up - f(&p)) / (2.0 * h)
        })
        .collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn layer_norm_f64(x: &[f64], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    let c = gamma.len();
    x.chunks(c)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / c as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            row.iter().enumerate().map(move |(i, v)| (v - mean) * rstd * gamma[i] as f64 + beta[i] as f64).collect::<Vec<_>>()
        })
        .collect()
}

fn random_norm(seed: u64, c: usize) -> LayerNorm {
    let mut r = rng(seed);
    LayerNorm { weight: random(&mut r, c, 0.5, 1.5), bias: random(&mut r, c, -0.2, 0.2) }
}

#[test]
fn cpu_gelu_and_layer_norm_gradients_match_finite_differences() {
    let mut r = rng(1);
    let x = random(&mut r, 37, -4.0, 4.0);
    let gelu = |v: f64| 0.5 * v * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2));
    for &v in &x {
        let fd = (gelu(v as f64 + 1e-6) - gelu(v as f64 - 1e-6)) / 2e-6;
        assert!((cpu::gelu_grad(v) - fd).abs() < 1e-7, "GELU' at {v}: {} vs {fd}", cpu::gelu_grad(v));
    }

    let (tokens, c) = (3, 7);
    let norm = random_norm(2, c);
    let x = random(&mut r, tokens * c, -2.0, 2.0);
    let w = random(&mut r, tokens * c, -1.0, 1.0);
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let loss = |x: &[f64]| layer_norm_f64(x, &norm.weight, &norm.bias, LN_EPS as f64).iter().zip(&w).map(|(y, &w)| y * w as f64).sum::<f64>();
    let fd = numeric_gradient(&xd, 1e-6, loss);
    let got: Vec<f64> = cpu::layer_norm_backward(&x, &w, c, &norm, LN_EPS).iter().map(|&v| v as f64).collect();
    let err = max_abs_diff(&got, &fd);
    eprintln!("LayerNorm backward vs finite differences: max abs error {err:.2e}");
    assert!(err < 1e-5, "LayerNorm backward vs finite differences: {err:.2e}");
}

#[test]
fn quantizer_backward_and_reduction() {
    let ctx = gpu();
    let mut r = rng(3);
    let n = 70_001;
    let x = random(&mut r, n, -1.3, 1.6);
    let dy = random(&mut r, n, -1.0, 1.0);
    let rows = [QParams { lower: -0.9, upper: 1.1, bias: 0.02, _pad: 0.0 }, QParams { lower: -0.4, upper: 0.7, bias: 0.0, _pad: 0.0 }];
    let params = GpuBuffer::from_slice(ctx, "qparams", &rows);
    let [xb, dyb, dxb] = [&x, &dy, &vec![0.0; n]].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    let parts = quant_partials(n);
    let partials = GpuBuffer::zeros(ctx, "partials", 4 * (parts + 5));
    let grads = GpuBuffer::zeros(ctx, "grads", 4 * 3);
    for bits in [2, 4] {
        let lv = levels(bits);
        let q = QuantRef { params: &params, row: 1, levels: lv };
        // Row 2 is written, then accumulated into: twice the sums.
        run_now(
            ctx,
            &[
                quant_backward(ctx, [&xb, &dyb, &dxb], n, q, (&partials, 5)),
                reduce_partials(ctx, (&partials, 5), parts, (&grads, 2), false),
                reduce_partials(ctx, (&partials, 5), parts, (&grads, 2), true),
            ],
        );
        let (want_dx, want_sums) = cpu::quant_backward(&x, &dy, &rows[1], lv);
        assert_close(&format!("W{bits} quantizer dx"), &dxb.read(ctx), &want_dx, 1e-7);
        let got = grads.read::<f32>(ctx);
        // Cancellation makes the sums small: compare against the sum of magnitudes.
        let scale: f64 = dy.iter().map(|d| d.abs() as f64).sum();
        for (i, name) in ["dl", "du", "dc"].iter().enumerate() {
            let err = (got[8 + i] as f64 - 2.0 * want_sums[i]).abs() / scale;
            eprintln!("W{bits} quantizer {name}: GPU {} CPU {} (error {err:.1e} of Σ|dy|)", got[8 + i], 2.0 * want_sums[i]);
            assert!(err < 1e-6, "W{bits} quantizer {name}: {err:.1e}");
        }
    }
}

#[test]
fn gelu_and_layer_norm_backward_match_cpu() {
    let ctx = gpu();
    let mut r = rng(4);
    let n = 1237;
    let x = random(&mut r, n, -5.0, 5.0);
    let dy = random(&mut r, n, -1.0, 1.0);
    let [xb, dyb, dxb] = [&x, &dy, &vec![0.0; n]].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    run_now(ctx, &[gelu_backward(ctx, [&xb, &dyb, &dxb], n)]);
    assert_close("GELU backward", &dxb.read(ctx), &cpu::gelu_backward(&x, &dy), 1e-6);

    let (tokens, c) = (203, 60);
    let ln = random_norm(5, c);
    let norm = GpuNorm::new(ctx, "ln", &ln);
    let x = random(&mut r, tokens * c, -3.0, 3.0);
    let dy = random(&mut r, tokens * c, -1.0, 1.0);
    let prior = random(&mut r, tokens * c, -1.0, 1.0);
    let [xb, dyb, dxb] = [&x, &dy, &prior].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    let want = cpu::layer_norm_backward(&x, &dy, c, &ln, LN_EPS);
    run_now(ctx, &[layer_norm_backward(ctx, [&xb, &dyb, &dxb], &norm, tokens, true)]);
    let want_sum: Vec<f32> = want.iter().zip(&prior).map(|(a, b)| a + b).collect();
    assert_close("LayerNorm backward, accumulated", &dxb.read(ctx), &want_sum, 1e-6);
    run_now(ctx, &[layer_norm_backward(ctx, [&xb, &dyb, &dxb], &norm, tokens, false)]);
    assert_close("LayerNorm backward", &dxb.read(ctx), &want, 1e-6);
}
