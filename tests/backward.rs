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
                quant_backward(ctx, [&xb, &dyb, &dxb], n, q, (&partials, 5), false),
                reduce_partials(ctx, (&partials, 5, 1), parts, (&grads, 2), false),
                reduce_partials(ctx, (&partials, 5, 1), parts, (&grads, 2), true),
            ],
        );
        let (want_dx, want_sums) = cpu::quant_backward(&x, &dy, &rows[1], lv);
        assert_close(&format!("W{bits} quantizer dx"), &dxb.read(ctx), &want_dx, 1e-7);
        run_now(ctx, &[quant_backward(ctx, [&xb, &dyb, &dxb], n, q, (&partials, 5), true)]);
        let twice: Vec<f32> = want_dx.iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("W{bits} quantizer dx, accumulated"), &dxb.read(ctx), &twice, 1e-7);
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

/// The STE surrogate of a quantizer (SPEC §3) with each element's rounding
/// offset r − v frozen at (l, u): smooth in (l, u, c), derivatives = the STE's.
fn surrogate_quant<'a>(w: &'a [f32], q: &QParams, lv: f32) -> impl Fn(f64, f64, f64) -> Vec<f64> + 'a {
    let s0 = ((q.upper - q.lower) / lv) as f64;
    let offsets: Vec<f64> = w
        .iter()
        .map(|&v| {
            let v0 = (v.clamp(q.lower, q.upper) - q.lower) as f64 / s0;
            v0.round_ties_even() - v0
        })
        .collect();
    move |l, u, c| {
        let s = (u - l) / lv as f64;
        // l + s·(v + offset) + c with v = (clip(w) − l)/s.
        w.iter().zip(&offsets).map(|(&v, off)| (v as f64).clamp(l, u) + s * off + c).collect()
    }
}

#[test]
fn linear_gradients_cpu_vs_finite_differences_and_gpu_vs_cpu() {
    use swinq::gpu::backward::{weight_grad_words, weight_partials, weight_quant_grads, LinearGrad, TransposedLinear};
    let ctx = gpu();
    let mut r = rng(6);
    // Over ten token chunks of the weight gradient's sum and 2×2 workgroup tiles.
    let (tokens, k, n_out, bits) = (1203, 67, 71, 3);
    let lv = levels(bits);
    let x = random(&mut r, tokens * k, -1.0, 1.0);
    let w = random(&mut r, n_out * k, -0.5, 0.5);
    let dy = random(&mut r, tokens * n_out, -1.0, 1.0);
    let qp = [QParams { lower: -0.31, upper: 0.37, bias: 0.004, _pad: 0.0 }, QParams { lower: -0.8, upper: 0.9, bias: 0.01, _pad: 0.0 }];

    // CPU: the weight quantizer's gradient is that of L = Σ dy ⊙ (x·Q̃(W)ᵀ).
    let q_of = surrogate_quant(&w, &qp[0], lv);
    let loss = |p: &[f64]| {
        let wq = q_of(p[0], p[1], p[2]);
        (0..tokens).map(|t| (0..n_out).map(|o| dy[t * n_out + o] as f64 * (0..k).map(|i| x[t * k + i] as f64 * wq[o * k + i]).sum::<f64>()).sum::<f64>()).sum::<f64>()
    };
    let fd = numeric_gradient(&[qp[0].lower as f64, qp[0].upper as f64, qp[0].bias as f64], 1e-7, loss);
    let want = cpu::weight_quant_grads(&x, &dy, &w, (n_out, k), &qp[0], lv);
    eprintln!("weight quantizer (dl, du, dc): {want:?}, finite differences {fd:?}");
    for i in 0..3 {
        assert!((want[i] - fd[i]).abs() < 1e-4 * (1.0 + fd[i].abs()), "weight quantizer gradient {i}: {} vs {}", want[i], fd[i]);
    }
    // CPU input gradient: L = Σ dy ⊙ (x·Ŵᵀ) is linear in x.
    let (t0, k0) = (3, 5);
    let small_x: Vec<f64> = x[..t0 * k].iter().map(|&v| v as f64).collect();
    let loss_x = |xs: &[f64]| (0..t0).map(|t| (0..n_out).map(|o| dy[t * n_out + o] as f64 * (0..k).map(|i| xs[t * k + i] * swinq::quant::fake_quant(w[o * k + i], &qp[0], lv) as f64).sum::<f64>()).sum::<f64>()).sum::<f64>();
    let fd_x = numeric_gradient(&small_x, 1e-6, loss_x);
    let dx_cpu = cpu::linear_input_grad(&dy[..t0 * n_out], &w, (n_out, k), Some((&qp[0], lv)));
    for t in 0..t0 {
        for i in 0..k0 {
            assert!((dx_cpu[t * k + i] as f64 - fd_x[t * k + i]).abs() < 1e-5, "linear dx ({t}, {i})");
        }
    }

    // GPU against the CPU.
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let [xb, wb, dyb] = [&x, &w, &dy].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    let dxb = GpuBuffer::zeros(ctx, "dx", tokens * k);
    let transposed = TransposedLinear::new(ctx, &w, n_out, k);
    let layer = LinearGrad { weight: &wb, n_out, k, quant: Some(QuantRef { params: &params, row: 0, levels: lv }) };
    let parts = weight_partials(n_out, k);
    let partials = GpuBuffer::zeros(ctx, "partials", 4 * parts);
    let grads = GpuBuffer::zeros(ctx, "grads", 4);
    let scratch = GpuBuffer::zeros(ctx, "scratch", weight_grad_words(n_out, k, tokens));
    let mut ds = vec![transposed.refresh(ctx, layer.quant)];
    ds.extend(transposed.input_grad(ctx, [&dyb, &dxb], tokens));
    ds.extend(weight_quant_grads(ctx, [&xb, &dyb], layer, None, tokens, &scratch, (&partials, 0)));
    ds.push(reduce_partials(ctx, (&partials, 0, 1), parts, (&grads, 0), false));
    run_now(ctx, &ds);
    let want_dx = cpu::linear_input_grad(&dy, &w, (n_out, k), Some((&qp[0], lv)));
    assert_close("linear input gradient", &dxb.read(ctx), &want_dx, 1e-6);
    let got = grads.read::<f32>(ctx);
    for i in 0..3 {
        let err = (got[i] as f64 - want[i]).abs() / (1.0 + want[i].abs());
        eprintln!("weight quantizer gradient {i}: GPU {} CPU {} (error {err:.1e})", got[i], want[i]);
        assert!(err < 1e-5, "weight quantizer gradient {i}: {err:.1e}");
    }
    // With the input quantizer (row 1) applied to x on the fly.
    let xq: Vec<f32> = x.iter().map(|&v| swinq::quant::fake_quant(v, &qp[1], lv)).collect();
    let want_q = cpu::weight_quant_grads(&xq, &dy, &w, (n_out, k), &qp[0], lv);
    let mut ds = Vec::from(weight_quant_grads(ctx, [&xb, &dyb], layer, Some(1), tokens, &scratch, (&partials, 0)));
    ds.push(reduce_partials(ctx, (&partials, 0, 1), parts, (&grads, 0), false));
    run_now(ctx, &ds);
    let got = grads.read::<f32>(ctx);
    for i in 0..3 {
        let err = (got[i] as f64 - want_q[i]).abs() / (1.0 + want_q[i].abs());
        assert!(err < 1e-5, "weight quantizer gradient {i} with a quantized input: {err:.1e}");
    }
    let mut ds = vec![transposed.refresh(ctx, None)];
    ds.extend(transposed.input_grad(ctx, [&dyb, &dxb], tokens));
    run_now(ctx, &ds);
    assert_close("float linear input gradient", &dxb.read(ctx), &cpu::linear_input_grad(&dy, &w, (n_out, k), None), 1e-6);
}

#[test]
fn conv_input_gradient_cpu_vs_finite_differences_and_gpu_vs_cpu() {
    use swinq::gpu::backward::{conv3x3_input_grad, transposed_conv};
    use swinq::model::cpu::conv3x3;
    use swinq::model::weights::Conv3x3;
    let ctx = gpu();
    let mut r = rng(8);
    let ((b, h, w), (cin, cout)) = ((2, 5, 7), (6, 11));
    let conv = Conv3x3 { weight: random(&mut r, cout * cin * 9, -0.5, 0.5), bias: random(&mut r, cout, -0.1, 0.1), out_ch: cout, in_ch: cin };
    let x = random(&mut r, b * h * w * cin, -1.0, 1.0);
    let dy = random(&mut r, b * h * w * cout, -1.0, 1.0);
    let want = cpu::conv3x3_input_grad(&dy, (b, h, w), &conv);
    // The convolution is linear in x: a finite difference of L = Σ dy ⊙ conv(x) is exact up to rounding.
    let loss = |xs: &[f64]| {
        let xf: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        conv3x3(&xf, b, h, w, &conv).iter().zip(&dy).map(|(y, d)| *y as f64 * *d as f64).sum::<f64>()
    };
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let fd = numeric_gradient(&xd[..40], 1e-2, |head: &[f64]| loss(&[head, &xd[40..]].concat()));
    let got: Vec<f64> = want[..40].iter().map(|&v| v as f64).collect();
    let err = max_abs_diff(&got, &fd);
    eprintln!("conv input gradient vs finite differences: max abs error {err:.1e}");
    assert!(err < 1e-3, "conv input gradient vs finite differences: {err:.1e}");

    let dyb = GpuBuffer::from_slice(ctx, "dy", &dy);
    let dxb = GpuBuffer::zeros(ctx, "dx", x.len());
    let transposed = transposed_conv(ctx, &conv.weight, (cin, cout));
    run_now(ctx, &conv3x3_input_grad(ctx, [&dyb, &dxb], &transposed, (b, h, w)));
    assert_close("conv input gradient", &dxb.read(ctx), &want, 1e-6);
}

#[test]
fn loss_gradients_cpu_vs_finite_differences_and_gpu_vs_cpu() {
    use swinq::gpu::backward::{feature_grad, l1_grad};
    let ctx = gpu();
    let mut r = rng(9);
    let (samples, per_sample) = (3, 301);
    let n = samples * per_sample;
    let x = random(&mut r, n, -1.0, 1.0);
    let t = random(&mut r, n, -1.0, 1.0);

    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let feature = |xs: &[f64]| cpu::feature_loss(&xs.iter().map(|&v| v as f32).collect::<Vec<_>>(), &t, per_sample).0;
    let (_, want) = cpu::feature_loss(&x, &t, per_sample);
    let picks = [0, 17, 300, 301, 650, n - 1];
    for &i in &picks {
        let h = 1e-3;
        let mut p = xd.clone();
        p[i] += h;
        let up = feature(&p);
        p[i] -= 2.0 * h;
        let fd = (up - feature(&p)) / (2.0 * h);
        assert!((want[i] - fd).abs() < 1e-3 * want[i].abs().max(1e-6) + 1e-9, "feature loss gradient {i}: {} vs {fd}", want[i]);
    }

    let [xb, tb] = [&x, &t].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    let prior = random(&mut r, n, -1e-3, 1e-3);
    let dxb = GpuBuffer::from_slice(ctx, "dx", &prior);
    let parts = quant_partials(n);
    let partials = GpuBuffer::zeros(ctx, "partials", 4 * parts.max(samples));
    let grads = GpuBuffer::zeros(ctx, "grads", 4);
    let lambda = 5.0;
    let [sums, grad] = feature_grad(ctx, [&xb, &tb, &dxb], (samples, per_sample), lambda, (&partials, 0), true);
    run_now(ctx, &[sums, grad]);
    let want_dx: Vec<f32> = want.iter().zip(&prior).map(|(g, p)| (lambda as f64 * g) as f32 + p).collect();
    assert_close("feature loss gradient, accumulated", &dxb.read(ctx), &want_dx, 1e-5);

    run_now(ctx, &[l1_grad(ctx, [&xb, &tb, &dxb], n, (&partials, 0)), reduce_partials(ctx, (&partials, 0, 1), parts, (&grads, 0), false)]);
    let (loss, want_l1) = cpu::l1_loss(&x, &t);
    assert_close("L1 loss gradient", &dxb.read(ctx), &want_l1, 1e-7);
    let got = grads.read::<f32>(ctx)[0] as f64 / n as f64;
    assert!((got - loss).abs() < 1e-6 * loss, "L1 loss: GPU {got} CPU {loss}");
}

#[test]
fn finish_backward_is_the_adjoint_of_finish() {
    use swinq::gpu::ops::{finish_backward, ImageShape};
    use swinq::model::cpu::pixel_shuffle_output;
    let ctx = gpu();
    let mut r = rng(10);
    let (b, h, w, scale, window) = (2, 5usize, 7usize, 3, 4);
    let (hp, wp) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
    let shape = ImageShape { b, ch: 3, h, w, hp, wp, scale, img_range: 1.0, mean: [0.4, 0.5, 0.6] };
    let up = random(&mut r, b * hp * wp * 3 * scale * scale, -1.0, 1.0);
    let d_out = random(&mut r, b * 3 * h * scale * w * scale, -1.0, 1.0);
    // finish is affine in up: ⟨finish(up) − finish(0), d_out⟩ = ⟨up, finish_backward(d_out)⟩.
    let shuffle = |x: &[f32]| pixel_shuffle_output(x, b, hp, wp, scale, h * scale, w * scale, 1.0);
    let zero = shuffle(&vec![0.0; up.len()]);
    let lhs: f64 = shuffle(&up).iter().zip(&zero).zip(&d_out).map(|((a, z), d)| (a - z) as f64 * *d as f64).sum();
    let [db, ub] = [&d_out, &vec![0.0; up.len()]].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    run_now(ctx, &[finish_backward(ctx, &db, &ub, &shape)]);
    let got = ub.read::<f32>(ctx);
    let rhs: f64 = got.iter().zip(&up).map(|(g, u)| *g as f64 * *u as f64).sum();
    eprintln!("finish adjoint: {lhs} vs {rhs}");
    assert!((lhs - rhs).abs() < 1e-5 * lhs.abs().max(1.0), "finish backward: {lhs} vs {rhs}");
    // Element by element: ∂⟨finish(up), d_out⟩/∂up_i = ⟨finish(e_i) − finish(0), d_out⟩.
    let want: Vec<f32> = (0..up.len())
        .map(|i| {
            let mut e = vec![0.0; up.len()];
            e[i] = 1.0;
            shuffle(&e).iter().zip(&zero).zip(&d_out).map(|((a, z), d)| (a - z) as f64 * *d as f64).sum::<f64>() as f32
        })
        .collect();
    assert_close("finish backward, element by element", &got, &want, 1e-6);
}

/// The small kernels past one workgroup: `add_into` and `l1_grad` on 70,001 elements
/// (many workgroups, the last partial), `reduce_partials` over 1000 strided partials
/// (each invocation sums several; stride 4, as the student's per-quantizer rows use).
#[test]
fn add_l1_and_reduction_on_many_workgroups() {
    use swinq::gpu::backward::{add_into, l1_grad};
    let ctx = gpu();
    let mut r = rng(11);
    let n = 70_001;
    let (x, t, prior) = (random(&mut r, n, -1.0, 1.0), random(&mut r, n, -1.0, 1.0), random(&mut r, n, -1.0, 1.0));
    let [xb, tb, dxb] = [&x, &t, &prior].map(|v| GpuBuffer::from_slice(ctx, "t", v));
    run_now(ctx, &[add_into(ctx, [&xb, &dxb], n)]);
    let want: Vec<f32> = prior.iter().zip(&x).map(|(p, v)| p + v).collect();
    assert_eq!(dxb.read::<f32>(ctx), want, "add_into");

    let parts = quant_partials(n);
    let partials = GpuBuffer::zeros(ctx, "partials", 4 * parts);
    let grads = GpuBuffer::zeros(ctx, "grads", 4);
    run_now(ctx, &[l1_grad(ctx, [&xb, &tb, &dxb], n, (&partials, 0)), reduce_partials(ctx, (&partials, 0, 1), parts, (&grads, 0), false)]);
    let (loss, want_l1) = cpu::l1_loss(&x, &t);
    assert_close("L1 loss gradient, many workgroups", &dxb.read(ctx), &want_l1, 1e-7);
    let got = grads.read::<f32>(ctx)[0] as f64 / n as f64;
    assert!((got - loss).abs() < 1e-6 * loss, "L1 loss, many workgroups: GPU {got} CPU {loss}");

    let (count, stride, part0) = (1000, 4, 3);
    let values = random(&mut r, 4 * (part0 + count * stride), -1.0, 1.0);
    let partials = GpuBuffer::from_slice(ctx, "partials", &values);
    let grads = GpuBuffer::from_slice(ctx, "grads", &[0.5f32; 8]);
    run_now(ctx, &[reduce_partials(ctx, (&partials, part0, stride), count, (&grads, 1), true)]);
    let got = grads.read::<f32>(ctx);
    assert_eq!(&got[..4], &[0.5; 4], "reduce_partials: row 0 untouched");
    for e in 0..4 {
        let parts = (0..count).map(|i| values[4 * (part0 + i * stride) + e] as f64);
        let (sum, magnitude) = parts.fold((0.5, 0.0), |(s, m), v| (s + v, m + v.abs()));
        let err = (got[4 + e] as f64 - sum).abs() / magnitude;
        assert!(err < 1e-6, "reduce_partials element {e}: GPU {} CPU {sum} ({err:.1e} of Σ|x|)", got[4 + e]);
    }
}
