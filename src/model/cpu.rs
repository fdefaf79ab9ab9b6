//! Plain f32 CPU reference of the SwinIR forward, used by tests to check the GPU kernels.
//!
//! Everything here follows SPEC §1 literally and favours readability over speed; the
//! only concessions to speed are a weight repacking in the convolution and plain
//! `std::thread::scope` parallelism over rows (tokens / windows). Dot products and
//! normalisation statistics are accumulated in f64, so this reference is at least as
//! accurate as PyTorch's float32 CPU code it is compared against.
//!
//! Layout conventions (shared with the GPU engine):
//! - images are planar (B, C, H, W), row-major;
//! - token features are (B, H, W, C) row-major, i.e. (B·H·W tokens, C) with token
//!   index (b·H + y)·W + x.

use std::collections::BTreeMap;

use super::config::RGB_MEAN;
use super::weights::{relative_position_index, Block, Conv3x3, LayerNorm, Linear, SwinWeights};
use crate::quant::{code, step, QParams};

/// LayerNorm epsilon of SwinIR (PyTorch's default).
pub const LN_EPS: f32 = 1e-5;

/// Value added to attention logits between tokens of different regions in shifted windows.
pub const MASK_VALUE: f32 = -100.0;

// ---------------------------------------------------------------------------------------
// Parallel helper
// ---------------------------------------------------------------------------------------

/// Calls `f(row_index, row)` for every `row_len`-long row of `out`, splitting the rows
/// into contiguous chunks over the available cores (single-threaded for small jobs).
fn par_rows<F>(out: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if row_len == 0 || out.is_empty() {
        return;
    }
    debug_assert_eq!(out.len() % row_len, 0);
    let rows = out.len() / row_len;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16);
    // Below a few thousand values per thread, spawning costs more than it saves.
    let threads = threads.min(out.len() / 4096).max(1).min(rows);
    if threads <= 1 {
        for (i, row) in out.chunks_mut(row_len).enumerate() {
            f(i, row);
        }
        return;
    }
    let rows_per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(rows_per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, row) in chunk.chunks_mut(row_len).enumerate() {
                    f(ci * rows_per + i, row);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------------------

/// Tokens (B, H, W, C) → planar (B, C, H, W).
pub fn tokens_to_planar(x: &[f32], b: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    assert_eq!(x.len(), b * h * w * c, "tokens_to_planar: length mismatch");
    let mut out = vec![0.0f32; x.len()];
    for bi in 0..b {
        for p in 0..h * w {
            let src = &x[(bi * h * w + p) * c..][..c];
            for (ci, &v) in src.iter().enumerate() {
                out[(bi * c + ci) * h * w + p] = v;
            }
        }
    }
    out
}

/// Planar (B, C, H, W) → tokens (B, H, W, C).
pub fn planar_to_tokens(x: &[f32], b: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), b * h * w * c, "planar_to_tokens: length mismatch");
    let mut out = vec![0.0f32; x.len()];
    for bi in 0..b {
        for ci in 0..c {
            let src = &x[(bi * c + ci) * h * w..][..h * w];
            for (p, &v) in src.iter().enumerate() {
                out[(bi * h * w + p) * c + ci] = v;
            }
        }
    }
    out
}

/// Source index along an axis of length `n` for padded position `i` under mirror
/// concatenation (SPEC §1 step 1): the axis is extended by its flipped copy, i.e. with
/// period 2n, position n+k reads n−1−k ("flip", so row n repeats row n−1).
fn mirror_index(i: usize, n: usize) -> usize {
    let m = i % (2 * n);
    if m < n {
        m
    } else {
        2 * n - 1 - m
    }
}

/// Mirror-pads a planar (B, C, H, W) image to (B, C, Hp, Wp), Hp ≥ H, Wp ≥ W, by flip
/// concatenation (periodic with period 2H / 2W if more than H / W rows are needed).
pub fn mirror_pad_planar(img: &[f32], b: usize, c: usize, h: usize, w: usize, hp: usize, wp: usize) -> Vec<f32> {
    assert_eq!(img.len(), b * c * h * w, "mirror_pad_planar: input length mismatch");
    assert!(hp >= h && wp >= w && h > 0 && w > 0, "mirror_pad_planar: bad sizes");
    let mut out = vec![0.0f32; b * c * hp * wp];
    for plane in 0..b * c {
        let src = &img[plane * h * w..][..h * w];
        let dst = &mut out[plane * hp * wp..][..hp * wp];
        for y in 0..hp {
            let sy = mirror_index(y, h);
            for x in 0..wp {
                dst[y * wp + x] = src[sy * w + mirror_index(x, w)];
            }
        }
    }
    out
}

/// SPEC §1 steps 1–2: planar (B, 3, H, W) image in [0, 1] → mirror-padded to multiples of
/// `window`, mean-subtracted, × `img_range`, as tokens (B, Hp, Wp, 3). Returns (tokens, Hp, Wp).
pub fn prepare_input(img: &[f32], b: usize, h: usize, w: usize, window: usize, img_range: f32) -> (Vec<f32>, usize, usize) {
    let hp = h.div_ceil(window) * window;
    let wp = w.div_ceil(window) * window;
    let mut padded = mirror_pad_planar(img, b, 3, h, w, hp, wp);
    for bi in 0..b {
        for (ci, &mean) in RGB_MEAN.iter().enumerate() {
            for v in &mut padded[(bi * 3 + ci) * hp * wp..][..hp * wp] {
                *v = (*v - mean) * img_range;
            }
        }
    }
    (planar_to_tokens(&padded, b, 3, hp, wp), hp, wp)
}

// ---------------------------------------------------------------------------------------
// Basic ops
// ---------------------------------------------------------------------------------------

/// 3×3 convolution with zero padding 1 and bias: tokens (B, H, W, Cin) → tokens (B, H, W, Cout).
pub fn conv3x3(x: &[f32], b: usize, h: usize, w: usize, conv: &Conv3x3) -> Vec<f32> {
    let (cin, cout) = (conv.in_ch, conv.out_ch);
    assert_eq!(x.len(), b * h * w * cin, "conv3x3: input length mismatch");
    // Repack (out, in, 3, 3) → (3, 3, in, out) so the innermost loop runs over outputs.
    let mut wr = vec![0.0f32; 9 * cin * cout];
    for o in 0..cout {
        for i in 0..cin {
            for k in 0..9 {
                wr[(k * cin + i) * cout + o] = conv.weight[(o * cin + i) * 9 + k];
            }
        }
    }
    let mut out = vec![0.0f32; b * h * w * cout];
    par_rows(&mut out, cout, |t, row| {
        let bi = t / (h * w);
        let (y, xx) = ((t / w) % h, t % w);
        let mut acc: Vec<f64> = conv.bias.iter().map(|&v| v as f64).collect();
        for ky in 0..3 {
            let sy = y as isize + ky as isize - 1;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for kx in 0..3 {
                let sx = xx as isize + kx as isize - 1;
                if sx < 0 || sx >= w as isize {
                    continue;
                }
                let src = &x[((bi * h + sy as usize) * w + sx as usize) * cin..][..cin];
                let wk = &wr[(ky * 3 + kx) * cin * cout..][..cin * cout];
                for (i, &xv) in src.iter().enumerate() {
                    let xv = xv as f64;
                    for (a, &wv) in acc.iter_mut().zip(&wk[i * cout..(i + 1) * cout]) {
                        *a += xv * wv as f64;
                    }
                }
            }
        }
        for (r, a) in row.iter_mut().zip(&acc) {
            *r = *a as f32;
        }
    });
    out
}

/// LayerNorm over the last axis of (tokens, C); mean and biased variance in f64 (two-pass).
pub fn layer_norm(x: &[f32], c: usize, ln: &LayerNorm, eps: f32) -> Vec<f32> {
    assert!(x.len().is_multiple_of(c), "layer_norm: length not a multiple of C");
    assert_eq!(ln.weight.len(), c, "layer_norm: weight length");
    let mut out = vec![0.0f32; x.len()];
    par_rows(&mut out, c, |t, row| {
        let src = &x[t * c..][..c];
        let mean = src.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (i, r) in row.iter_mut().enumerate() {
            *r = ((src[i] as f64 - mean) * inv * ln.weight[i] as f64 + ln.bias[i] as f64) as f32;
        }
    });
    out
}

/// y = x·Wᵀ + b: (tokens, in) → (tokens, out).
pub fn linear(x: &[f32], l: &Linear) -> Vec<f32> {
    let (din, dout) = (l.in_dim, l.out_dim);
    assert_eq!(x.len() % din, 0, "linear: length not a multiple of in_dim");
    let n = x.len() / din;
    let mut out = vec![0.0f32; n * dout];
    par_rows(&mut out, dout, |t, row| {
        let src = &x[t * din..][..din];
        for (o, r) in row.iter_mut().enumerate() {
            let wrow = &l.weight[o * din..][..din];
            let mut acc = l.bias[o] as f64;
            for (&a, &b) in src.iter().zip(wrow) {
                acc += a as f64 * b as f64;
            }
            *r = acc as f32;
        }
    });
    out
}

/// The error function in double precision, accurate to ~1e-15 relative.
///
/// - |x| < 2.5: Abramowitz & Stegun 7.1.6,
///   erf x = (2/√π) · e^(−x²) · Σ_{n≥0} 2ⁿ x^(2n+1) / (1·3·5···(2n+1)),
///   whose terms all have the sign of x, so the sum has no cancellation and is exact
///   to a few ulps (the main error is e^(−x²) with x² rounded). Terms are added until
///   they no longer change the sum (≈ 40 terms at |x| = 2.5).
/// - 2.5 ≤ |x| < 6: erf x = ±(1 − erfc |x|), with erfc from its continued fraction
///   (A&S 7.1.14), erfc z = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + …))))),
///   evaluated with the modified Lentz algorithm; erfc is then accurate to ~1e-15
///   relative, so 1 − erfc is correctly rounded or nearly so.
/// - |x| ≥ 6: erfc 6 ≈ 2e-17 is below half an ulp of 1, so ±1 is returned.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return x.signum();
    }
    if ax >= 2.5 {
        return (1.0 - erfc_cf(ax)).copysign(x);
    }
    let x2 = ax * ax;
    let mut term = ax; // 2ⁿ x^(2n+1) / (2n+1)!!
    let mut sum = ax;
    let mut n = 0u32;
    loop {
        n += 1;
        term *= 2.0 * x2 / (2 * n + 1) as f64;
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
    }
    (std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum).copysign(x)
}

/// erfc z for z ≥ 2.5 by the continued fraction A&S 7.1.14 (modified Lentz):
/// f = b₀ + a₁/(b₁ + a₂/(b₂ + …)) with b_n = z, a_n = n/2; erfc z = e^(−z²)/(√π·f).
fn erfc_cf(z: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut f = z;
    let mut c = f;
    let mut d = 0.0f64;
    for n in 1..1000 {
        let a = n as f64 * 0.5;
        d = z + a * d;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        c = z + a / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-z * z).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// Exact (erf) GELU: 0.5·x·(1 + erf(x/√2)), evaluated in f64 and rounded to f32.
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

// ---------------------------------------------------------------------------------------
// Window attention
// ---------------------------------------------------------------------------------------

/// Region label (0..9) of a pixel of the shifted layout for the shifted-window mask.
pub(crate) fn mask_label(y: usize, x: usize, h: usize, w: usize, window: usize, shift: usize) -> usize {
    let band = |p: usize, n: usize| {
        if p < n - window {
            0
        } else if p < n - shift {
            1
        } else {
            2
        }
    };
    band(y, h) * 3 + band(x, w)
}

/// Tokens (B, H, W, C) rearranged into the attention's window order: (window,
/// head, token in window, d) of the partition shifted by −`shift`, windows
/// numbered batch-major (the layout the q/k/v matmuls write on the GPU).
pub fn window_order(x: &[f32], (b, h, w): (usize, usize, usize), c: usize, heads: usize, window: usize, shift: usize) -> Vec<f32> {
    assert_eq!(x.len(), b * h * w * c, "window_order: length mismatch");
    let hd = c / heads;
    let n = window * window;
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for y in 0..h {
            for xx in 0..w {
                let (sy, sx) = ((y + h - shift) % h, (xx + w - shift) % w);
                let win = (bi * (h / window) + sy / window) * (w / window) + sx / window;
                let token = (sy % window) * window + sx % window;
                let src = ((bi * h + y) * w + xx) * c;
                for col in 0..c {
                    out[((win * heads + col / hd) * n + token) * hd + col % hd] = x[src + col];
                }
            }
        }
    }
    out
}

/// (W)-MSA / SW-MSA core of SPEC §1, without the output projection.
///
/// `qkv`: tokens (B, H, W, 3C) in the original (unshifted) layout, channels q | k | v,
/// each split into `heads` heads of C/heads. The layout is rolled by (−shift, −shift),
/// partitioned into `window`×`window` windows; per window and head,
/// softmax(q·scale·kᵀ + `bias_table[rel_index]` + mask)·v with scale = head_dim^−½ and
/// the 9-region −100 mask when shift > 0; heads are concatenated, windows reversed and
/// the roll undone. `bias_table` is ((2w−1)², heads) row-major. Returns tokens
/// (B, H, W, C) in the original layout. H and W must be multiples of `window`.
#[allow(clippy::too_many_arguments)]
pub fn window_attention(
    qkv: &[f32],
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    heads: usize,
    window: usize,
    shift: usize,
    bias_table: &[f32],
) -> Vec<f32> {
    attend_windows(qkv, (b, h, w), c, (heads, window, shift), bias_table, float_head)
}

/// The integer engine's window attention (SPEC §6) on [`window_attention`]'s input:
/// q·scale, k, v and P become codes of the quantizers `quant` = [q·scale, k, v, P] at
/// `levels` (2^b − 1), every product of codes is summed exactly in integers and the
/// expansion l_a·l_b + … of each matmul is taken in f64. It equals the attention of
/// the fake-quantized operands, up to a P code that the float rounding of the softmax
/// moves across a code boundary.
#[allow(clippy::too_many_arguments)]
pub fn window_attention_int(
    qkv: &[f32],
    (b, h, w): (usize, usize, usize),
    c: usize,
    heads: usize,
    window: usize,
    shift: usize,
    bias_table: &[f32],
    (quant, levels): (&[QParams; 4], f32),
) -> Vec<f32> {
    attend_windows(qkv, (b, h, w), c, (heads, window, shift), bias_table, |wh| int_head(wh, quant, levels))
}

/// One window of one head: q·scale, k and v of its n tokens (n × hd, row-major) and,
/// per (query, key) pair (n × n), the relative-position bias and whether the shift
/// mask separates them.
struct WindowHead<'a> {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    bias: Vec<f64>,
    masked: &'a [bool],
    n: usize,
    hd: usize,
}

impl WindowHead<'_> {
    /// The logit of query i and key j whose q·k is `dot`: plus bias, plus mask.
    fn logit(&self, i: usize, j: usize, dot: f64) -> f64 {
        let a = dot + self.bias[i * self.n + j];
        if self.masked[i * self.n + j] {
            a + MASK_VALUE as f64
        } else {
            a
        }
    }
}

/// Softmax of `logits`, relative to their maximum.
fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// softmax(q·kᵀ + bias + mask)·v of one window and head, in f64 (n × hd).
fn float_head(wh: &WindowHead) -> Vec<f64> {
    let (n, hd) = (wh.n, wh.hd);
    let mut out = vec![0.0f64; n * hd];
    for i in 0..n {
        let q = &wh.q[i * hd..][..hd];
        let logits: Vec<f64> = (0..n).map(|j| wh.logit(i, j, q.iter().zip(&wh.k[j * hd..][..hd]).map(|(&a, &b)| a as f64 * b as f64).sum())).collect();
        for (j, p) in softmax(&logits).into_iter().enumerate() {
            for (o, &v) in out[i * hd..][..hd].iter_mut().zip(&wh.v[j * hd..][..hd]) {
                *o += p * v as f64;
            }
        }
    }
    out
}

/// [`float_head`] on codes (SPEC §6): with every operand l + s·r (c folded into l),
/// Σ_d a_d·b_d = s_a·s_b·Σ r_a r_b + s_a·l_b·Σ r_a + s_b·l_a·Σ r_b + d·l_a·l_b.
fn int_head(wh: &WindowHead, quant: &[QParams; 4], levels: f32) -> Vec<f64> {
    let (n, hd) = (wh.n, wh.hd);
    let codes = |x: &[f32], q: &QParams| x.iter().map(|&v| code(v, q, levels)).collect::<Vec<u32>>();
    let (rq, rk, rv) = (codes(&wh.q, &quant[0]), codes(&wh.k, &quant[1]), codes(&wh.v, &quant[2]));
    let [(sq, lq), (sk, lk), (sv, lv), (sp, lp)] = quant.map(|q| (step(&q, levels) as f64, (q.lower + q.bias) as f64));
    let sum = |r: &[u32]| r.iter().map(|&x| x as u64).sum::<u64>() as f64;
    // Σ_j r_v[j, d] per d.
    let v_sums: Vec<f64> = (0..hd).map(|d| (0..n).map(|j| rv[j * hd + d] as u64).sum::<u64>() as f64).collect();
    let mut out = vec![0.0f64; n * hd];
    for i in 0..n {
        let q = &rq[i * hd..][..hd];
        let logits: Vec<f64> = (0..n)
            .map(|j| {
                let k = &rk[j * hd..][..hd];
                let dot: u64 = q.iter().zip(k).map(|(&a, &b)| (a * b) as u64).sum();
                wh.logit(i, j, sq * sk * dot as f64 + sq * lk * sum(q) + sk * lq * sum(k) + hd as f64 * lq * lk)
            })
            .collect();
        let rp: Vec<u32> = softmax(&logits).into_iter().map(|p| code(p as f32, &quant[3], levels)).collect();
        for d in 0..hd {
            let dot: u64 = (0..n).map(|j| (rp[j] * rv[j * hd + d]) as u64).sum();
            out[i * hd + d] = sp * sv * dot as f64 + sp * lv * sum(&rp) + sv * lp * v_sums[d] + n as f64 * lp * lv;
        }
    }
    out
}

/// SPEC §1's window partition around `attend`, which maps one window and head to its
/// output (n × hd): gathers q·scale, k, v, the biases and the mask of each window and
/// head of the layout rolled by −shift, and puts the outputs back at their tokens.
fn attend_windows(
    qkv: &[f32],
    (b, h, w): (usize, usize, usize),
    c: usize,
    (heads, window, shift): (usize, usize, usize),
    bias_table: &[f32],
    attend: impl Fn(&WindowHead) -> Vec<f64> + Sync,
) -> Vec<f32> {
    assert_eq!(qkv.len(), b * h * w * 3 * c, "window_attention: qkv length mismatch");
    assert!(h.is_multiple_of(window) && w.is_multiple_of(window), "window_attention: H, W must be multiples of the window");
    assert!(heads > 0 && c.is_multiple_of(heads), "window_attention: C not divisible by heads");
    assert!(shift < window, "window_attention: shift must be < window");
    assert_eq!(bias_table.len(), (2 * window - 1) * (2 * window - 1) * heads, "window_attention: bias table size");
    let hd = c / heads;
    let n = window * window;
    let (nwy, nwx) = (h / window, w / window);
    let scale = (hd as f32).powf(-0.5);

    // Original-layout token index of token i of window (bi, wy, wx) in the shifted layout:
    // shifted[y] = original[(y + shift) mod H].
    let token_of = |bi: usize, wy: usize, wx: usize, i: usize| -> usize {
        let ys = wy * window + i / window;
        let xs = wx * window + i % window;
        let y = (ys + shift) % h;
        let x = (xs + shift) % w;
        (bi * h + y) * w + x
    };

    // Attention output in window-partitioned layout (B·nW, n, C).
    let mut win_out = vec![0.0f32; b * nwy * nwx * n * c];
    par_rows(&mut win_out, n * c, |widx, out| {
        let bi = widx / (nwy * nwx);
        let (wy, wx) = ((widx / nwx) % nwy, widx % nwx);
        let toks: Vec<usize> = (0..n).map(|i| token_of(bi, wy, wx, i)).collect();
        let label = |i: usize| if shift > 0 { mask_label(wy * window + i / window, wx * window + i % window, h, w, window, shift) } else { 0 };
        let labels: Vec<usize> = (0..n).map(label).collect();
        let masked: Vec<bool> = (0..n * n).map(|ij| labels[ij / n] != labels[ij % n]).collect();
        for head in 0..heads {
            // q is scaled before the product, as in the official code.
            let rows = |part: usize, mult: f32| -> Vec<f32> { toks.iter().flat_map(|&t| qkv[t * 3 * c + part * c + head * hd..][..hd].iter().map(move |&x| x * mult)).collect() };
            let bias = (0..n * n).map(|ij| bias_table[relative_position_index(window, ij / n, ij % n) * heads + head] as f64).collect();
            let wh = WindowHead { q: rows(0, scale), k: rows(1, 1.0), v: rows(2, 1.0), bias, masked: &masked, n, hd };
            for (i, o) in attend(&wh).chunks(hd).enumerate() {
                for (d, &x) in o.iter().enumerate() {
                    out[i * c + head * hd + d] = x as f32;
                }
            }
        }
    });

    // Window reverse and roll back.
    let mut out = vec![0.0f32; b * h * w * c];
    for widx in 0..b * nwy * nwx {
        let bi = widx / (nwy * nwx);
        let (wy, wx) = ((widx / nwx) % nwy, widx % nwx);
        for i in 0..n {
            let t = token_of(bi, wy, wx, i);
            out[t * c..(t + 1) * c].copy_from_slice(&win_out[(widx * n + i) * c..][..c]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Blocks and the whole network
// ---------------------------------------------------------------------------------------

/// One Swin transformer block on tokens (B, H, W, C):
/// t + proj(attn(LN1(t))), then t + fc2(gelu(fc1(LN2(t)))).
#[allow(clippy::too_many_arguments)]
pub fn swin_block(t: &[f32], b: usize, h: usize, w: usize, blk: &Block, heads: usize, window: usize, shift: usize) -> Vec<f32> {
    let c = blk.proj.out_dim;
    let a = layer_norm(t, c, &blk.norm1, LN_EPS);
    let qkv = linear(&a, &blk.qkv);
    let o = window_attention(&qkv, b, h, w, c, heads, window, shift, &blk.bias_table);
    let o = linear(&o, &blk.proj);
    let t1: Vec<f32> = t.iter().zip(&o).map(|(x, y)| x + y).collect();
    let m = layer_norm(&t1, c, &blk.norm2, LN_EPS);
    let mut hid = linear(&m, &blk.fc1);
    for v in hid.iter_mut() {
        *v = gelu(*v);
    }
    let m = linear(&hid, &blk.fc2);
    t1.iter().zip(&m).map(|(x, y)| x + y).collect()
}

/// Last conv output tokens (B, Hp, Wp, 3·s²) → PixelShuffle(s) → /img_range + RGB mean →
/// cropped to planar (B, 3, h_out, w_out) (un-clamped).
#[allow(clippy::too_many_arguments)]
pub fn pixel_shuffle_output(
    x: &[f32],
    b: usize,
    hp: usize,
    wp: usize,
    scale: usize,
    h_out: usize,
    w_out: usize,
    img_range: f32,
) -> Vec<f32> {
    let s = scale;
    let cin = 3 * s * s;
    assert_eq!(x.len(), b * hp * wp * cin, "pixel_shuffle_output: input length mismatch");
    assert!(h_out <= hp * s && w_out <= wp * s, "pixel_shuffle_output: crop larger than the image");
    let mut out = vec![0.0f32; b * 3 * h_out * w_out];
    for bi in 0..b {
        for ch in 0..3 {
            for oy in 0..h_out {
                let (y, i) = (oy / s, oy % s);
                for ox in 0..w_out {
                    let (xx, j) = (ox / s, ox % s);
                    let v = x[((bi * hp + y) * wp + xx) * cin + ch * s * s + i * s + j];
                    out[((bi * 3 + ch) * h_out + oy) * w_out + ox] = v / img_range + RGB_MEAN[ch];
                }
            }
        }
    }
    out
}

/// Result of [`forward`]: the SR image and the intermediate features.
pub struct CpuForward {
    /// (B, 3, s·H, s·W) planar, un-clamped.
    pub output: Vec<f32>,
    /// Intermediate features under the golden names (without the `feat.` prefix):
    /// `conv_first` and `conv_after_body` planar (B, C, Hp, Wp); `patch_embed`,
    /// `block0_0`, `block0_1`, `group{r}`, `rstb{r}` tokens (B, Hp·Wp, C).
    pub features: BTreeMap<String, Vec<f32>>,
}

/// The full SwinIR forward (SPEC §1) of a planar (B, 3, H, W) image in [0, 1].
pub fn forward(wts: &SwinWeights, img: &[f32], b: usize, h: usize, w: usize) -> CpuForward {
    let cfg = &wts.config;
    assert_eq!(cfg.in_chans, 3, "forward: only RGB models are supported");
    assert_eq!(img.len(), b * 3 * h * w, "forward: image length mismatch");
    let c = cfg.embed_dim;
    let window = cfg.window;
    let mut features = BTreeMap::new();

    let (x, hp, wp) = prepare_input(img, b, h, w, window, cfg.img_range);
    let f0 = conv3x3(&x, b, hp, wp, &wts.conv_first);
    features.insert("conv_first".to_string(), tokens_to_planar(&f0, b, hp, wp, c));

    let mut t = layer_norm(&f0, c, &wts.patch_norm, LN_EPS);
    features.insert("patch_embed".to_string(), t.clone());

    for (r, group) in wts.groups.iter().enumerate() {
        let u = t.clone();
        for (j, blk) in group.blocks.iter().enumerate() {
            // SwinIR-light's training resolution (64) exceeds the window, so odd blocks
            // are always shifted.
            let shift = if j % 2 == 1 { window / 2 } else { 0 };
            t = swin_block(&t, b, hp, wp, blk, cfg.heads[r], window, shift);
            if r == 0 && j < 2 {
                features.insert(format!("block0_{j}"), t.clone());
            }
        }
        features.insert(format!("group{r}"), t.clone());
        let conv = conv3x3(&t, b, hp, wp, &group.conv);
        t = conv.iter().zip(&u).map(|(a, b)| a + b).collect();
        features.insert(format!("rstb{r}"), t.clone());
    }

    let t = layer_norm(&t, c, &wts.norm, LN_EPS);
    let body = conv3x3(&t, b, hp, wp, &wts.conv_after_body);
    features.insert("conv_after_body".to_string(), tokens_to_planar(&body, b, hp, wp, c));
    let f: Vec<f32> = body.iter().zip(&f0).map(|(a, b)| a + b).collect();

    let y = conv3x3(&f, b, hp, wp, &wts.upsample);
    let s = cfg.scale;
    let output = pixel_shuffle_output(&y, b, hp, wp, s, s * h, s * w, cfg.img_range);
    CpuForward { output, features }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_index_is_flip_concat() {
        // n = 3: 0 1 2 | 2 1 0 | 0 1 2 ...
        let got: Vec<usize> = (0..9).map(|i| mirror_index(i, 3)).collect();
        assert_eq!(got, vec![0, 1, 2, 2, 1, 0, 0, 1, 2]);
    }

    #[test]
    fn erf_basic() {
        assert_eq!(erf(0.0), 0.0);
        assert!((erf(1.0) - 0.8427007929497149).abs() < 1e-15);
        assert_eq!(erf(7.0), 1.0);
        assert_eq!(erf(-7.0), -1.0);
    }
}
