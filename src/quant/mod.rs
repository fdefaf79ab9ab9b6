//! Quantizers: names and layout (SPEC §3, §6), the fake quantizer and its STE gradients;
//! phase 1 (calibration patches, bound search), phase 2 (the student's gradient, DQC),
//! the quantized file and the exported model.

pub mod calib;
pub mod dqc;
pub mod export;
pub mod file;
pub mod phase1;
pub mod search;
pub mod student;

use crate::model::weights::block_prefix;
use crate::model::SwinConfig;

/// Quantizers per Swin block: 6 weights, 6 linear inputs, 4 batch-matmul inputs.
pub const PER_BLOCK: usize = 16;

/// The six quantized linears of a block, in slot order.
pub const LINEARS: [&str; 6] = ["attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"];
/// The batch-matmul inputs: q (after scaling), k, v and the softmax output.
pub const MATMUL_INPUTS: [&str; 4] = ["attn.matmul.q", "attn.matmul.k", "attn.matmul.v", "attn.matmul.p"];

/// Slot of a quantizer within its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Weight of `LINEARS[i]`.
    Weight(usize),
    /// Input of `LINEARS[i]`.
    Input(usize),
    /// `MATMUL_INPUTS[i]`.
    Matmul(usize),
}

impl Slot {
    pub fn offset(self) -> usize {
        match self {
            Slot::Weight(i) => i,
            Slot::Input(i) => 6 + i,
            Slot::Matmul(i) => 12 + i,
        }
    }

    pub fn all() -> impl Iterator<Item = Slot> {
        (0..6).map(Slot::Weight).chain((0..6).map(Slot::Input)).chain((0..4).map(Slot::Matmul))
    }
}

/// Index of a quantizer in the flat parameter table.
pub fn index(block: usize, slot: Slot) -> usize {
    block * PER_BLOCK + slot.offset()
}

/// SPEC §6 name, e.g. `layers.0.residual_group.blocks.3.attn.q.weight`.
pub fn name(cfg: &SwinConfig, block: usize, slot: Slot) -> String {
    let (r, j) = group_and_block(cfg, block);
    let p = block_prefix(r, j);
    match slot {
        Slot::Weight(i) => format!("{p}.{}.weight", LINEARS[i]),
        Slot::Input(i) => format!("{p}.{}.input", LINEARS[i]),
        Slot::Matmul(i) => format!("{p}.{}", MATMUL_INPUTS[i]),
    }
}

/// (group, block within group) of a flat block index.
pub fn group_and_block(cfg: &SwinConfig, mut block: usize) -> (usize, usize) {
    for (r, &d) in cfg.depths.iter().enumerate() {
        if block < d {
            return (r, block);
        }
        block -= d;
    }
    panic!("block index out of range")
}

/// All quantizer names in index order.
pub fn all_names(cfg: &SwinConfig) -> Vec<String> {
    (0..cfg.num_blocks()).flat_map(|b| Slot::all().map(move |s| (b, s))).map(|(b, s)| name(cfg, b, s)).collect()
}

/// Bounds and bias of one quantizer: Q(x) = l + s·round((clip(x,l,u) − l)/s) + c.
#[derive(Clone, Copy, Debug, PartialEq, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct QParams {
    pub lower: f32,
    pub upper: f32,
    pub bias: f32,
    pub _pad: f32,
}

/// Levels 2^b − 1 for b bits.
pub fn levels(bits: u32) -> f32 {
    ((1u64 << bits) - 1) as f32
}

/// The step s = (u − l)/(2^b − 1), or 0 for a degenerate quantizer (u ≤ l).
pub fn step(q: &QParams, levels: f32) -> f32 {
    let s = (q.upper - q.lower) / levels;
    if s > 0.0 { s } else { 0.0 }
}

/// The integer code r of x, with fake_quant(x) = (l + c) + s·r (SPEC §6).
pub fn code(x: f32, q: &QParams, levels: f32) -> u32 {
    let s = step(q, levels);
    if s == 0.0 {
        return 0;
    }
    ((x.clamp(q.lower, q.upper) - q.lower) / s).round_ties_even() as u32
}

/// The STE partial derivatives of the fake quantizer at x (SPEC §3), as
/// [∂Q/∂x, ∂Q/∂l, ∂Q/∂u, ∂Q/∂c]; shaders/common.wgsl `fake_quant_grads` on the GPU.
pub fn fake_quant_grads(x: f32, q: &QParams, levels: f32) -> [f32; 4] {
    let s = step(q, levels);
    if s == 0.0 {
        return [0.0, 1.0, 0.0, 1.0];
    }
    let v = (x.clamp(q.lower, q.upper) - q.lower) / s;
    let frac = (v.round_ties_even() - v) / levels;
    let inside = (q.lower..=q.upper).contains(&x) as u8 as f32;
    let below = (x <= q.lower) as u8 as f32;
    let above = (x >= q.upper) as u8 as f32;
    [inside, below - frac, above + frac, 1.0]
}

/// The fake quantizer on the CPU, in the operation order of 2DQuant's code
/// (division by s, round half to even, multiply, add).
pub fn fake_quant(x: f32, q: &QParams, levels: f32) -> f32 {
    let s = step(q, levels);
    if s == 0.0 {
        return q.lower + q.bias;
    }
    code(x, q, levels) as f32 * s + q.lower + q.bias
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The STE surrogate at a base point: round(v) replaced by v + (r₀ − v₀), a
    /// smooth function of (x, l, u, c) whose derivatives the STE formulas are.
    fn surrogate(x: f64, l: f64, u: f64, c: f64, offset: f64, n: f64) -> f64 {
        let s = (u - l) / n;
        let v = (x.clamp(l, u) - l) / s;
        l + s * (v + offset) + c
    }

    #[test]
    fn ste_gradients_match_finite_differences_of_the_surrogate() {
        let q = QParams { lower: -0.7, upper: 1.3, bias: 0.05, _pad: 0.0 };
        let n = levels(3);
        for &x in &[-1.5f32, -0.31, 0.02, 0.4441, 0.97, 2.0] {
            let s = step(&q, n) as f64;
            let v0 = (x.clamp(q.lower, q.upper) - q.lower) as f64 / s;
            let offset = v0.round_ties_even() - v0;
            let (xd, l, u, c) = (x as f64, q.lower as f64, q.upper as f64, q.bias as f64);
            let h = 1e-6;
            let f = |dx: f64, dl: f64, du: f64, dc: f64| surrogate(xd + dx, l + dl, u + du, c + dc, offset, n as f64);
            let fd = [
                (f(h, 0.0, 0.0, 0.0) - f(-h, 0.0, 0.0, 0.0)) / (2.0 * h),
                (f(0.0, h, 0.0, 0.0) - f(0.0, -h, 0.0, 0.0)) / (2.0 * h),
                (f(0.0, 0.0, h, 0.0) - f(0.0, 0.0, -h, 0.0)) / (2.0 * h),
                (f(0.0, 0.0, 0.0, h) - f(0.0, 0.0, 0.0, -h)) / (2.0 * h),
            ];
            let got = fake_quant_grads(x, &q, n);
            for i in 0..4 {
                assert!((got[i] as f64 - fd[i]).abs() < 1e-5, "x {x}, derivative {i}: STE {} vs finite difference {}", got[i], fd[i]);
            }
        }
    }
}
