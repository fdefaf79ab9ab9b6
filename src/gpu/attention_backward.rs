//! The window attention's backward on the GPU (shaders/attention_backward.wgsl) and
//! the host-side sum of its quantizer-gradient partials.

use super::ops::{attention_consts, slice_groups, AttnShape, QuantRef};
use super::{Const, Dispatch, GpuBuffer, GpuContext, Shader};

/// Matmul quantizers of an attention layer: q·scale, k, v and P.
const QUANTIZERS: usize = 4;

/// Words of the partials for `slices` window-head slices: a vec4 per (slice, matmul quantizer).
pub fn partial_words(slices: usize) -> usize {
    slices * QUANTIZERS * 4
}

/// Gradients of `ops::window_attention` (without stored P) given `d_out`, the gradient
/// at its output (tokens × heads·head_dim): dq (w.r.t. q before the scale), dk, dv in
/// q, k, v's window order, and per slice the partials of the matmul quantizers' [∂l,
/// ∂u, ∂c] (`partial_words`; zeros for a float model). Reads everything as storage;
/// one dispatch per up to 65535 slices. CPU drivers (the `rows` strategy) take
/// `main_rows`, which shares row operands across subgroup lanes: the same bits.
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward(
    ctx: &GpuContext,
    [q, k, v]: [&GpuBuffer; 3],
    table: &GpuBuffer,
    d_out: &GpuBuffer,
    [dq, dk, dv]: [&GpuBuffer; 3],
    partials: &GpuBuffer,
    (b, h, w): (usize, usize, usize),
    s: AttnShape,
    quant: Option<QuantRef<'_>>,
) -> Vec<Dispatch> {
    let consts = attention_consts(s, table, quant, false);
    let pipeline = if ctx.uniform_reads() {
        let consts = [&consts[..], &[Const::U32("LANES", ctx.rows_lanes() as u32)]].concat();
        ctx.pipeline(Shader::AttentionBackwardRows, "main_rows", &consts)
    } else {
        ctx.pipeline(Shader::AttentionBackward, "main", &consts)
    };
    let qparams = quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    let slice_words = s.window * s.window * s.head_dim;
    slice_groups(ctx, (h, w), s, 0..b, [slice_words; 2], false)
        .into_iter()
        .map(|g| {
            let bindings = [
                (1, q.bind()),
                (2, k.bind()),
                (3, v.bind()),
                (4, table.bind()),
                (5, d_out.bind()),
                (6, qparams.clone()),
                (7, dq.bind()),
                (8, table.bind()),
                (9, dk.bind()),
                (10, dv.bind()),
                (11, partials.bind()),
            ];
            Dispatch::with_bindings(ctx, pipeline.clone(), &g.params.quantized(quant), &bindings, [g.count as u32, 1, 1], "attention backward")
        })
        .collect()
}

/// Copies window-ordered `src` (as q, k, v and their gradients) of an attention
/// layer over (b, h, w) tokens into token order (tokens × heads·head_dim) in `dst`.
pub fn to_token_order(ctx: &GpuContext, src: &GpuBuffer, dst: &GpuBuffer, (b, h, w): (usize, usize, usize), s: AttnShape, table: &GpuBuffer) -> Vec<Dispatch> {
    let pipeline = ctx.pipeline(Shader::AttentionBackward, "to_tokens", &attention_consts(s, table, None, false));
    let slice_words = s.window * s.window * s.head_dim;
    slice_groups(ctx, (h, w), s, 0..b, [slice_words; 2], false)
        .into_iter()
        .map(|g| Dispatch::with_bindings(ctx, pipeline.clone(), &g.params, &[(1, src.bind()), (7, dst.bind())], [g.count as u32, 1, 1], "attention backward"))
        .collect()
}

/// The partials summed over slices in slice order (in f64, so the result does not
/// depend on how the slices were grouped): [∂l, ∂u, ∂c] of q·scale, k, v and P's quantizers.
pub fn sum_partials(partials: &[f32]) -> [[f64; 3]; QUANTIZERS] {
    let mut sums = [[0.0; 3]; QUANTIZERS];
    for (i, part) in partials.chunks_exact(4).enumerate() {
        for (s, &x) in sums[i % QUANTIZERS].iter_mut().zip(part) {
            *s += x as f64;
        }
    }
    sums
}
