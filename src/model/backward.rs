//! CPU reference of the backward pass of the fake-quantized student (phase 2, SPEC §5):
//! gradients of activations and of the quantizers' (l, u, c); weights are frozen.
//! f64 accumulation; the GPU kernels in shaders/backward.wgsl are checked against these.

use super::cpu::erf;
use super::weights::{Conv3x3, LayerNorm};
use crate::quant::{fake_quant, fake_quant_grads, QParams};

/// Through a fake quantizer: dx = dy·∂Q/∂x, and Σ dy·∂Q/∂l, Σ dy·∂Q/∂u, Σ dy·∂Q/∂c.
pub fn quant_backward(x: &[f32], dy: &[f32], q: &QParams, levels: f32) -> (Vec<f32>, [f64; 3]) {
    let mut sums = [0.0f64; 3];
    let dx = x
        .iter()
        .zip(dy)
        .map(|(&v, &d)| {
            let g = fake_quant_grads(v, q, levels);
            for (s, gi) in sums.iter_mut().zip(&g[1..]) {
                *s += d as f64 * *gi as f64;
            }
            d * g[0]
        })
        .collect();
    (dx, sums)
}

/// GELU'(x) = Φ(x) + x·φ(x) of the exact (erf) GELU.
pub fn gelu_grad(x: f32) -> f64 {
    let x = x as f64;
    let cdf = 0.5 * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    cdf + x * pdf
}

pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter().zip(dy).map(|(&v, &d)| (d as f64 * gelu_grad(v)) as f32).collect()
}

/// Input gradient of LayerNorm over the last axis of (tokens, C):
/// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ.
pub fn layer_norm_backward(x: &[f32], dy: &[f32], c: usize, ln: &LayerNorm, eps: f32) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    for ((src, d), out) in x.chunks(c).zip(dy.chunks(c)).zip(dx.chunks_mut(c)) {
        let mean = src.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let xhat: Vec<f64> = src.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let g: Vec<f64> = d.iter().zip(&ln.weight).map(|(&a, &b)| a as f64 * b as f64).collect();
        let g_mean = g.iter().sum::<f64>() / c as f64;
        let gx_mean = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for i in 0..c {
            out[i] = (rstd * (g[i] - g_mean - xhat[i] * gx_mean)) as f32;
        }
    }
    dx
}

/// A weight (n_out, k) through its optional quantizer.
fn weight_used(w: &[f32], q: Option<(&QParams, f32)>) -> Vec<f32> {
    w.iter().map(|&v| q.map_or(v, |(q, lv)| fake_quant(v, q, lv))).collect()
}

/// dx = dy·Ŵ for y = x·Ŵᵀ + b: (tokens, n_out) → (tokens, k).
pub fn linear_input_grad(dy: &[f32], w: &[f32], (n_out, k): (usize, usize), q: Option<(&QParams, f32)>) -> Vec<f32> {
    let wq = weight_used(w, q);
    dy.chunks(n_out)
        .flat_map(|d| (0..k).map(|i| d.iter().enumerate().map(|(o, &g)| g as f64 * wq[o * k + i] as f64).sum::<f64>() as f32).collect::<Vec<_>>())
        .collect()
}

/// The weight quantizer's (dl, du, dc) from ∂L/∂Ŵ = dyᵀ·x.
pub fn weight_quant_grads(x: &[f32], dy: &[f32], w: &[f32], (n_out, k): (usize, usize), q: &QParams, levels: f32) -> [f64; 3] {
    let tokens = x.len() / k;
    let mut sums = [0.0f64; 3];
    for o in 0..n_out {
        for i in 0..k {
            let g: f64 = (0..tokens).map(|t| dy[t * n_out + o] as f64 * x[t * k + i] as f64).sum();
            let d = fake_quant_grads(w[o * k + i], q, levels);
            for (s, di) in sums.iter_mut().zip(&d[1..]) {
                *s += g * *di as f64;
            }
        }
    }
    sums
}

/// dx of a 3×3 convolution (zero padding 1) on (b, h, w, in) tokens from dy (b, h, w, out).
pub fn conv3x3_input_grad(dy: &[f32], (b, h, w): (usize, usize, usize), conv: &Conv3x3) -> Vec<f32> {
    let (cin, cout) = (conv.in_ch, conv.out_ch);
    let mut dx = vec![0.0f32; b * h * w * cin];
    for (t, out) in dx.chunks_mut(cin).enumerate() {
        let (image, y, x) = (t / (h * w), (t / w) % h, t % w);
        let mut acc = vec![0.0f64; cin];
        for (ky, kx) in (0..3).flat_map(|ky| (0..3).map(move |kx| (ky, kx))) {
            let (oy, ox) = ((y + 1).wrapping_sub(ky), (x + 1).wrapping_sub(kx));
            if oy >= h || ox >= w {
                continue;
            }
            let d = &dy[((image * h + oy) * w + ox) * cout..][..cout];
            for (i, a) in acc.iter_mut().enumerate() {
                *a += d.iter().enumerate().map(|(o, &g)| g as f64 * conv.weight[(o * cin + i) * 9 + ky * 3 + kx] as f64).sum::<f64>();
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = *a as f32;
        }
    }
    dx
}

/// The output loss mean|x − t| and its gradient.
pub fn l1_loss(x: &[f32], t: &[f32]) -> (f64, Vec<f32>) {
    let n = x.len() as f64;
    let loss = x.iter().zip(t).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / n;
    let grad = x.iter().zip(t).map(|(a, b)| ((*a as f64 - *b as f64).signum() / n) as f32).collect();
    (loss, grad)
}

/// The feature loss mean((x/‖x‖ − t/‖t‖)²) over all elements, norms per sample of
/// `per_sample` elements (SPEC §5, as the paper describes it), and its gradient.
pub fn feature_loss(x: &[f32], t: &[f32], per_sample: usize) -> (f64, Vec<f64>) {
    let n = x.len() as f64;
    let mut loss = 0.0;
    let mut grad = Vec::with_capacity(x.len());
    for (xs, ts) in x.chunks(per_sample).zip(t.chunks(per_sample)) {
        let norm = |v: &[f32]| v.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
        let (nx, nt) = (norm(xs), norm(ts));
        let xhat: Vec<f64> = xs.iter().map(|&a| a as f64 / nx).collect();
        let e: Vec<f64> = xhat.iter().zip(ts).map(|(a, &b)| a - b as f64 / nt).collect();
        let xhat_e: f64 = xhat.iter().zip(&e).map(|(a, b)| a * b).sum();
        loss += e.iter().map(|v| v * v).sum::<f64>() / n;
        grad.extend(xhat.iter().zip(&e).map(|(a, b)| 2.0 / (n * nx) * (b - a * xhat_e)));
    }
    (loss, grad)
}
