//! Quantizers: names and layout (SPEC §3, §6), the fake quantizer, and phase 1's bound search.

pub mod calib;
pub mod export;
pub mod file;
pub mod phase1;
pub mod search;

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
    /// Weight of LINEARS[i].
    Weight(usize),
    /// Input of LINEARS[i].
    Input(usize),
    /// MATMUL_INPUTS[i].
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

/// The fake quantizer on the CPU, in the operation order of 2DQuant's code
/// (division by s, round half to even, multiply, add).
pub fn fake_quant(x: f32, q: &QParams, levels: f32) -> f32 {
    let s = step(q, levels);
    if s == 0.0 {
        return q.lower + q.bias;
    }
    code(x, q, levels) as f32 * s + q.lower + q.bias
}
