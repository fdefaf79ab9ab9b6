//! CPU reference of the backward pass of the fake-quantized student (phase 2, SPEC §5):
//! gradients of activations and of the quantizers' (l, u, c) (the STE's, SPEC §3);
//! weights, the bias table and the mask are frozen. f64 accumulation; the GPU kernels
//! of shaders/backward.wgsl and shaders/attention_backward.wgsl are checked against
//! these. The window attention's part is a reference of attention.wgsl's `main` on
//! window-ordered q, k, v and of its gradients.

use super::cpu::erf;
use super::weights::{Conv3x3, LayerNorm};
use crate::gpu::ops::AttnShape;
use crate::model::cpu::{mask_label, MASK_VALUE};
use crate::model::weights::relative_position_index;
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

/// The matmul inputs, each with its fake quantizer (qparams rows in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// q·scale.
    Q,
    K,
    V,
    /// The softmax output.
    P,
}

/// One attention layer over (b, h, w) tokens: its shape, relative-position bias table
/// (((2·window − 1)², heads) row-major) and optional quantizers of q·scale, k, v and P
/// with their levels 2^b − 1.
pub struct WindowAttention<'a> {
    pub dims: (usize, usize, usize),
    pub shape: AttnShape,
    pub table: &'a [f32],
    pub quant: Option<([QParams; 4], f32)>,
}

/// Gradients of a loss w.r.t. window-ordered q (before the scale), k and v, and the
/// sums over each matmul quantizer's elements of its [∂l, ∂u, ∂c] (in `Operand` order).
pub struct AttnGrads {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
    pub quant: [[f64; 3]; 4],
}

/// One slice's quantized q·scale, k, v (NT × HD) and its probabilities P before and
/// after P's quantizer (NT × NT), row-major.
struct SliceForward {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    p: Vec<f64>,
    p_hat: Vec<f64>,
}

/// A stand-in for the fake quantizers: (operand, element, x) → Q(x). Elements are
/// window-order indices for q, k, v and (slice·NT + i)·NT + j for P_ij.
pub type Quantize<'a> = &'a dyn Fn(Operand, usize, f64) -> f64;

impl WindowAttention<'_> {
    fn tokens(&self) -> usize {
        self.shape.window * self.shape.window
    }

    fn slices(&self) -> usize {
        let (b, h, w) = self.dims;
        b * h * w / self.tokens() * self.shape.heads
    }

    fn channels(&self) -> usize {
        self.shape.heads * self.shape.head_dim
    }

    /// SCALE as the GPU has it (an f32): q·scale in f64 then rounds to the GPU's f32 product.
    fn scale(&self) -> f64 {
        (self.shape.head_dim as f64).powf(-0.5) as f32 as f64
    }

    /// Token i of `slice`: its index in the original (unshifted) layout and shift-mask label.
    fn token(&self, slice: usize, i: usize) -> (usize, usize) {
        let ((_, h, w), ws, shift) = (self.dims, self.shape.window, self.shape.shift);
        let (win, nwx) = (slice / self.shape.heads, w / ws);
        let per_image = h / ws * nwx;
        let (bi, wy, wx) = (win / per_image, win % per_image / nwx, win % nwx);
        let (sy, sx) = (wy * ws + i / ws, wx * ws + i % ws);
        let tok = (bi * h + (sy + shift) % h) * w + (sx + shift) % w;
        let label = if shift > 0 { mask_label(sy, sx, h, w, ws, shift) } else { 0 };
        (tok, label)
    }

    /// The real fake quantizers (in f32, as on the GPU), or the identity for a float model.
    fn fake_quant(&self, op: Operand, x: f64) -> f64 {
        match self.quant {
            Some((params, levels)) => fake_quant(x as f32, &params[op as usize], levels) as f64,
            None => x,
        }
    }

    /// STE partials [∂Q/∂x, ∂Q/∂l, ∂Q/∂u, ∂Q/∂c] of `op`'s quantizer at x.
    fn ste(&self, op: Operand, x: f64) -> [f64; 4] {
        match self.quant {
            Some((params, levels)) => fake_quant_grads(x as f32, &params[op as usize], levels).map(|g| g as f64),
            None => [1.0, 0.0, 0.0, 0.0],
        }
    }

    fn slice_forward(&self, [q, k, v]: [&[f64]; 3], slice: usize, quant: Quantize<'_>) -> SliceForward {
        let (n, hd, heads) = (self.tokens(), self.shape.head_dim, self.shape.heads);
        let first = slice * n * hd;
        let operand = |op, x: &[f64], mult: f64| -> Vec<f64> { (first..first + n * hd).map(|e| quant(op, e, x[e] * mult)).collect() };
        let (q, k, v) = (operand(Operand::Q, q, self.scale()), operand(Operand::K, k, 1.0), operand(Operand::V, v, 1.0));
        let labels: Vec<usize> = (0..n).map(|i| self.token(slice, i).1).collect();
        let mut p = vec![0.0; n * n];
        for (i, row) in p.chunks_exact_mut(n).enumerate() {
            for (j, s) in row.iter_mut().enumerate() {
                let dot: f64 = (0..hd).map(|d| q[i * hd + d] * k[j * hd + d]).sum();
                let mask = if labels[i] != labels[j] { MASK_VALUE as f64 } else { 0.0 };
                *s = dot + self.table[relative_position_index(self.shape.window, i, j) * heads + slice % heads] as f64 + mask;
            }
            softmax(row);
        }
        let p_hat = p.iter().enumerate().map(|(e, &x)| quant(Operand::P, slice * n * n + e, x)).collect();
        SliceForward { q, k, v, p, p_hat }
    }

    /// The forward output (tokens × C, original layout) with the real fake quantizers.
    pub fn forward(&self, qkv: [&[f32]; 3]) -> Vec<f64> {
        let qkv = qkv.map(|x| x.iter().map(|&v| v as f64).collect::<Vec<f64>>());
        self.forward_with([&qkv[0], &qkv[1], &qkv[2]], &|op, _, x| self.fake_quant(op, x))
    }

    /// The forward output with `quant` in place of the fake quantizers (finite
    /// differences of the STE surrogate).
    pub fn forward_with(&self, qkv: [&[f64]; 3], quant: Quantize<'_>) -> Vec<f64> {
        let (n, hd, c) = (self.tokens(), self.shape.head_dim, self.channels());
        let (b, h, w) = self.dims;
        let mut out = vec![0.0; b * h * w * c];
        for slice in 0..self.slices() {
            let f = self.slice_forward(qkv, slice, quant);
            for i in 0..n {
                let o = self.token(slice, i).0 * c + slice % self.shape.heads * hd;
                for j in 0..n {
                    for d in 0..hd {
                        out[o + d] += f.p_hat[i * n + j] * f.v[j * hd + d];
                    }
                }
            }
        }
        out
    }

    /// Gradients given `d_out`, the loss's gradient at the forward output (tokens × C).
    pub fn backward(&self, qkv: [&[f32]; 3], d_out: &[f32]) -> AttnGrads {
        let (n, hd, c) = (self.tokens(), self.shape.head_dim, self.channels());
        let x: [Vec<f64>; 3] = qkv.map(|x| x.iter().map(|&v| v as f64).collect());
        let mut sums = [[0.0; 3]; 4];
        // Gradients at the quantizers' outputs q̂, k̂, v̂, slice after slice.
        let mut hats: [Vec<f64>; 3] = Default::default();
        for slice in 0..self.slices() {
            let f = self.slice_forward([&x[0], &x[1], &x[2]], slice, &|op, _, x| self.fake_quant(op, x));
            let d_o: Vec<f64> = (0..n)
                .flat_map(|i| {
                    let o = self.token(slice, i).0 * c + slice % self.shape.heads * hd;
                    d_out[o..o + hd].iter().map(|&g| g as f64)
                })
                .collect();
            for (all, g) in hats.iter_mut().zip(self.slice_backward(&f, &d_o, &mut sums[Operand::P as usize])) {
                all.extend(g);
            }
        }
        let [gq, gk, gv] = hats;
        let dq = self.input_grad(Operand::Q, &x[0], &gq, self.scale(), &mut sums);
        let dk = self.input_grad(Operand::K, &x[1], &gk, 1.0, &mut sums);
        let dv = self.input_grad(Operand::V, &x[2], &gv, 1.0, &mut sums);
        AttnGrads { dq, dk, dv, quant: sums }
    }

    /// One slice's gradients at q̂, k̂, v̂ given its dO (NT × HD); adds P's quantizer's to `p_sums`.
    fn slice_backward(&self, f: &SliceForward, d_o: &[f64], p_sums: &mut [f64; 3]) -> [Vec<f64>; 3] {
        let (n, hd) = (self.tokens(), self.shape.head_dim);
        let [mut gq, mut gk, mut gv] = [(); 3].map(|_| vec![0.0; n * hd]);
        for i in 0..n {
            // dP̂_ij = dO_i·v̂_j, dP = STE(dP̂), dS = P ⊙ (dP − rowsum(dP ⊙ P)).
            let mut dp = vec![0.0; n];
            for (j, dpj) in dp.iter_mut().enumerate() {
                let dp_hat: f64 = (0..hd).map(|d| d_o[i * hd + d] * f.v[j * hd + d]).sum();
                let ste = self.ste(Operand::P, f.p[i * n + j]);
                *dpj = dp_hat * ste[0];
                add_scaled(p_sums, dp_hat, &ste);
                for d in 0..hd {
                    gv[j * hd + d] += f.p_hat[i * n + j] * d_o[i * hd + d];
                }
            }
            let rowsum: f64 = dp.iter().zip(&f.p[i * n..][..n]).map(|(a, b)| a * b).sum();
            for (j, dpj) in dp.iter().enumerate() {
                let ds = f.p[i * n + j] * (dpj - rowsum);
                for d in 0..hd {
                    gq[i * hd + d] += ds * f.k[j * hd + d];
                    gk[j * hd + d] += ds * f.q[i * hd + d];
                }
            }
        }
        [gq, gk, gv]
    }

    /// The gradient `g` at Q(x·mult) taken to x through `op`'s STE; adds the quantizer's to `sums`.
    fn input_grad(&self, op: Operand, x: &[f64], g: &[f64], mult: f64, sums: &mut [[f64; 3]; 4]) -> Vec<f64> {
        let mut grad = Vec::with_capacity(x.len());
        for (&x, &g) in x.iter().zip(g) {
            let ste = self.ste(op, x * mult);
            add_scaled(&mut sums[op as usize], g, &ste);
            grad.push(g * ste[0] * mult);
        }
        grad
    }
}

/// sums += g·[∂Q/∂l, ∂Q/∂u, ∂Q/∂c] from STE partials [∂x, ∂l, ∂u, ∂c].
fn add_scaled(sums: &mut [f64; 3], g: f64, ste: &[f64; 4]) {
    for (s, d) in sums.iter_mut().zip(&ste[1..]) {
        *s += g * d;
    }
}

/// In-place softmax of one row.
fn softmax(row: &mut [f64]) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}
