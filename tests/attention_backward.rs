//! The window attention's backward: the CPU reference against finite differences of
//! its forward (the float model, and the STE surrogate of the fake-quantized one),
//! then the GPU kernel against the CPU reference.

mod common;

use std::cell::RefCell;

use common::{assert_close, gpu, random, rng};
use swinq::gpu::attention_backward::{partial_words, sum_partials, window_attention_backward};
use swinq::gpu::ops::{self, AttnExtras, AttnShape, QuantRef};
use swinq::gpu::{run_now, GpuBuffer};
use swinq::model::backward::{AttnGrads, Operand, WindowAttention};
use swinq::quant::{code, fake_quant, levels, step, QParams};

const OPERANDS: [Operand; 4] = [Operand::Q, Operand::K, Operand::V, Operand::P];

/// Bounds that clip some values of each operand at both ends (q·scale, k, v ∈ [−1.5, 1.5)·…).
/// P's lower bound is above 0: masked probabilities (≈ e^−100, denormal or flushed to 0
/// in f32) would otherwise sit exactly on it, where 1[x ≤ l] is discontinuous.
fn quantizers(bits: u32) -> ([QParams; 4], f32) {
    let q = |lower, upper, bias| QParams { lower, upper, bias, _pad: 0.0 };
    ([q(-0.6, 0.7, 0.01), q(-1.2, 1.0, -0.02), q(-1.0, 1.3, 0.03), q(0.003, 0.25, 0.004)], levels(bits))
}

/// Random window-ordered q, k, v, the gradient at the output and the bias table.
struct Case {
    qkv: [Vec<f32>; 3],
    d_out: Vec<f32>,
    table: Vec<f32>,
}

fn case(seed: u64, (b, h, w): (usize, usize, usize), s: AttnShape) -> Case {
    let mut r = rng(seed);
    let n = b * h * w * s.heads * s.head_dim;
    let qkv = [(); 3].map(|_| random(&mut r, n, -1.5, 1.5));
    let d_out = random(&mut r, n, -1.0, 1.0);
    let table = random(&mut r, (2 * s.window - 1).pow(2) * s.heads, -0.5, 0.5);
    Case { qkv, d_out, table }
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

fn grad_quant(g: &AttnGrads) -> Vec<f32> {
    g.quant.iter().flatten().map(|&v| v as f32).collect()
}

/// Σ d_out ⊙ forward: the loss whose gradient `backward(d_out)` is.
fn loss(layer: &WindowAttention<'_>, qkv: [&[f64]; 3], d_out: &[f32], quant: &dyn Fn(Operand, usize, f64) -> f64) -> f64 {
    layer.forward_with(qkv, quant).iter().zip(d_out).map(|(o, &g)| o * g as f64).sum()
}

/// Central differences of `f(x + h·e_i)` for every element i of x.
fn finite_differences(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut y = x.to_vec();
    (0..x.len())
        .map(|i| {
            y[i] = x[i] + h;
            let up = f(&y);
            y[i] = x[i] - h;
            let down = f(&y);
            y[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// ∂loss/∂q, ∂k, ∂v by finite differences with the quantizers `quant`.
fn input_differences(layer: &WindowAttention<'_>, c: &Case, quant: &dyn Fn(Operand, usize, f64) -> f64) -> [Vec<f64>; 3] {
    let x: [Vec<f64>; 3] = c.qkv.clone().map(|v| v.iter().map(|&e| e as f64).collect());
    [0, 1, 2].map(|which| {
        finite_differences(&x[which], |y| {
            let mut qkv = [x[0].as_slice(), x[1].as_slice(), x[2].as_slice()];
            qkv[which] = y;
            loss(layer, qkv, &c.d_out, quant)
        })
    })
}

fn check_inputs(name: &str, g: &AttnGrads, fd: &[Vec<f64>; 3], tol: f64) {
    for (which, (got, want)) in ["dq", "dk", "dv"].iter().zip([&g.dq, &g.dk, &g.dv].iter().zip(fd)) {
        assert_close(&format!("{name} {which} vs finite differences"), &f32s(got), &f32s(want), tol);
    }
}

const TINY: (usize, usize, usize) = (2, 8, 12);
const TINY_SHAPE: AttnShape = AttnShape { window: 4, heads: 2, head_dim: 3, shift: 2 };

#[test]
fn cpu_backward_matches_finite_differences_float() {
    let c = case(1, TINY, TINY_SHAPE);
    let layer = WindowAttention { dims: TINY, shape: TINY_SHAPE, table: &c.table, quant: None };
    let g = layer.backward([&c.qkv[0], &c.qkv[1], &c.qkv[2]], &c.d_out);
    check_inputs("float", &g, &input_differences(&layer, &c, &|_, _, x| x), 1e-6);
}

/// The STE surrogate of the fake quantizers at a base point: each element's
/// rounding offset r − v is held fixed, so Q = clip(x, l, u) + s·(r − v)₀ + c is
/// smooth in x, l, u and c and its derivatives are the STE's (SPEC §3).
struct Surrogate {
    /// Offsets per operand and element, recorded at the base point.
    offsets: RefCell<[Vec<f64>; 4]>,
    levels: f64,
}

impl Surrogate {
    fn record(layer: &WindowAttention<'_>, c: &Case) -> Self {
        let (params, lv) = layer.quant.expect("quantized layer");
        let offsets: RefCell<[Vec<f64>; 4]> = RefCell::new(Default::default());
        let x: [Vec<f64>; 3] = c.qkv.clone().map(|v| v.iter().map(|&e| e as f64).collect());
        layer.forward_with([&x[0], &x[1], &x[2]], &|op, e, x| {
            let q = &params[op as usize];
            let v = (x.clamp(q.lower as f64, q.upper as f64) - q.lower as f64) / step(q, lv) as f64;
            let mut offsets = offsets.borrow_mut();
            let o = &mut offsets[op as usize];
            if o.len() <= e {
                o.resize(e + 1, 0.0);
            }
            o[e] = code(x as f32, q, lv) as f64 - v;
            // The real quantizer's value, so that P sees the quantized q and k.
            fake_quant(x as f32, q, lv) as f64
        });
        Self { offsets, levels: lv as f64 }
    }

    /// Q(x) of element e of `op` with the quantizers' (l, u, c) = `params`.
    fn apply(&self, params: &[[f64; 3]; 4], op: Operand, e: usize, x: f64) -> f64 {
        let [l, u, c] = params[op as usize];
        x.clamp(l, u) + (u - l) / self.levels * self.offsets.borrow()[op as usize][e] + c
    }
}

#[test]
fn cpu_backward_matches_finite_differences_of_the_ste_surrogate() {
    let c = case(2, TINY, TINY_SHAPE);
    let layer = WindowAttention { dims: TINY, shape: TINY_SHAPE, table: &c.table, quant: Some(quantizers(4)) };
    let g = layer.backward([&c.qkv[0], &c.qkv[1], &c.qkv[2]], &c.d_out);
    let sur = Surrogate::record(&layer, &c);
    let base: [[f64; 3]; 4] = layer.quant.unwrap().0.map(|q| [q.lower as f64, q.upper as f64, q.bias as f64]);
    check_inputs("quantized", &g, &input_differences(&layer, &c, &|op, e, x| sur.apply(&base, op, e, x)), 1e-6);

    let x: [Vec<f64>; 3] = c.qkv.clone().map(|v| v.iter().map(|&e| e as f64).collect());
    let flat: Vec<f64> = base.iter().flatten().copied().collect();
    let fd = finite_differences(&flat, |p| {
        let params: [[f64; 3]; 4] = std::array::from_fn(|i| [p[3 * i], p[3 * i + 1], p[3 * i + 2]]);
        loss(&layer, [&x[0], &x[1], &x[2]], &c.d_out, &|op, e, x| sur.apply(&params, op, e, x))
    });
    assert_close("quantizer (l, u, c) gradients vs finite differences", &grad_quant(&g), &f32s(&fd), 1e-6);
    for (i, op) in OPERANDS.iter().enumerate() {
        eprintln!("{op:?}: STE {:?}, finite differences {:?}", g.quant[i], &fd[3 * i..3 * i + 3]);
    }
}

/// The GPU backward against the CPU reference on every combination of shift and quantization.
fn gpu_matches_cpu(seed: u64, dims: (usize, usize, usize), shape: AttnShape, tol: f64) {
    let ctx = gpu();
    let c = case(seed, dims, shape);
    let tb = ops::attention_table(ctx, &c.table);
    let [q, k, v] = c.qkv.each_ref().map(|x| GpuBuffer::from_slice(ctx, "qkv", x));
    let d_out = GpuBuffer::from_slice(ctx, "d_out", &c.d_out);
    let [dq, dk, dv] = [(); 3].map(|_| GpuBuffer::zeros(ctx, "grad", c.d_out.len()));
    let slices = c.d_out.len() / (shape.window * shape.window * shape.head_dim);
    let partials = GpuBuffer::zeros(ctx, "partials", partial_words(slices));
    for shift in [0, shape.shift] {
        for bits in [None, Some(4)] {
            let s = AttnShape { shift, ..shape };
            let quant = bits.map(quantizers);
            let params = GpuBuffer::from_slice(ctx, "qparams", &quant.map_or(vec![QParams::default()], |(p, _)| p.to_vec()));
            let qref = quant.map(|(_, lv)| QuantRef { params: &params, row: 0, levels: lv });
            run_now(ctx, &window_attention_backward(ctx, [&q, &k, &v], &tb, &d_out, [&dq, &dk, &dv], &partials, dims, s, qref));
            let layer = WindowAttention { dims, shape: s, table: &c.table, quant };
            let want = layer.backward([&c.qkv[0], &c.qkv[1], &c.qkv[2]], &c.d_out);
            let name = format!("window {} shift {shift} bits {bits:?}", s.window);
            for (which, (buf, cpu)) in ["dq", "dk", "dv"].iter().zip([(&dq, &want.dq), (&dk, &want.dk), (&dv, &want.dv)]) {
                assert_close(&format!("{name} {which} GPU vs CPU"), &buf.read(ctx), &f32s(cpu), tol);
            }
            let got = sum_partials(&partials.read::<f32>(ctx));
            let got: Vec<f32> = got.iter().flatten().map(|&v| v as f32).collect();
            assert_close(&format!("{name} quantizer gradients GPU vs CPU"), &got, &grad_quant(&want), tol);
        }
    }
}

#[test]
fn gpu_backward_matches_cpu_small_windows() {
    gpu_matches_cpu(3, (2, 12, 20), AttnShape { window: 4, heads: 3, head_dim: 5, shift: 2 }, 1e-5);
}

/// 25 tokens per window: CPU drivers' subgroups share rows 8 (or 4) at a time, so
/// the last group is partial and the workgroup has idle invocations.
#[test]
fn gpu_backward_matches_cpu_partial_lane_groups() {
    gpu_matches_cpu(5, (1, 10, 15), AttnShape { window: 5, heads: 2, head_dim: 3, shift: 2 }, 1e-5);
}

#[test]
fn gpu_backward_matches_cpu_swinir_windows() {
    gpu_matches_cpu(4, (1, 16, 24), AttnShape { window: 8, heads: 6, head_dim: 10, shift: 4 }, 1e-5);
}


/// The CPU reference's forward is the function the GPU forward computes (what the
/// backward differentiates), fake quantizers included.
#[test]
fn cpu_reference_forward_matches_the_gpu_forward() {
    let ctx = gpu();
    let (dims, shape) = ((2, 12, 20), AttnShape { window: 4, heads: 3, head_dim: 5, shift: 2 });
    let c = case(5, dims, shape);
    let tb = ops::attention_table(ctx, &c.table);
    let [q, k, v] = c.qkv.each_ref().map(|x| GpuBuffer::from_slice_windowed(ctx, "qkv", x));
    let out = GpuBuffer::zeros(ctx, "out", c.d_out.len());
    for shift in [0, shape.shift] {
        for bits in [None, Some(4)] {
            let s = AttnShape { shift, ..shape };
            let quant = bits.map(quantizers);
            let params = GpuBuffer::from_slice(ctx, "qparams", &quant.map_or(vec![QParams::default()], |(p, _)| p.to_vec()));
            let extras = AttnExtras { quant: quant.map(|(_, lv)| QuantRef { params: &params, row: 0, levels: lv }), ..Default::default() };
            run_now(ctx, &ops::window_attention(ctx, [&q, &k, &v], &tb, out.bind(), dims, s, extras, "t"));
            let want = WindowAttention { dims, shape: s, table: &c.table, quant }.forward([&c.qkv[0], &c.qkv[1], &c.qkv[2]]);
            assert_close(&format!("forward shift {shift} bits {bits:?} GPU vs CPU reference"), &out.read(ctx), &f32s(&want), 1e-5);
        }
    }
}
