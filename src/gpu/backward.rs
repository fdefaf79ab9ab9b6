//! Launchers of the backward kernels (shaders/backward.wgsl) for phase 2.

use bytemuck::{Pod, Zeroable};

use super::ops::{GpuNorm, QuantRef, LN_EPS};
use super::{grid_1d, Const, Dispatch, GpuBuffer, GpuContext, Shader};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct BackwardParams {
    n: u32,
    c: u32,
    row: u32,
    part0: u32,
    eps: f32,
    _pad: [u32; 3],
}

fn dispatch(ctx: &GpuContext, entry: &str, consts: &[Const], params: BackwardParams, bindings: &[(u32, wgpu::BindingResource<'_>)], groups: [u32; 3]) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Backward, entry, consts);
    Dispatch::with_bindings(ctx, pipeline, &params, bindings, groups, "backward")
}

/// Partial slots (one per 256 elements) that `quant_backward` writes for n elements.
pub fn quant_partials(n: usize) -> usize {
    n.div_ceil(256).max(1)
}

/// Through fake quantizer `q` on x (n elements): dx = dy·∂Q/∂x, and the
/// quantizer's (dl, du, dc) sums per 256 elements into `partials` from slot `part0`
/// (`quant_partials(n)` slots; sum them with `reduce_partials`).
pub fn quant_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], n: usize, q: QuantRef<'_>, (partials, part0): (&GpuBuffer, usize)) -> Dispatch {
    let params = BackwardParams { n: n as u32, row: q.row as u32, part0: part0 as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind()), (4, q.params.bind()), (5, partials.bind())];
    dispatch(ctx, "quant_backward", &[Const::F32("LEVELS", q.levels), Const::Bool("ACCUMULATE", false)], params, &b, grid_1d(n))
}

/// Sums `count` partials from slot `part0` in a fixed order into row `row` of
/// `grads` (vec4 rows: dl, du, dc, 0), or adds them to it when `accumulate`.
pub fn reduce_partials(ctx: &GpuContext, (partials, part0): (&GpuBuffer, usize), count: usize, (grads, row): (&GpuBuffer, usize), accumulate: bool) -> Dispatch {
    let params = BackwardParams { n: count as u32, row: row as u32, part0: part0 as u32, ..Default::default() };
    let b = [(5, partials.bind()), (6, grads.bind())];
    dispatch(ctx, "reduce_partials", &[Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", accumulate)], params, &b, [1, 1, 1])
}

/// dx = dy·GELU'(x) over n elements.
pub fn gelu_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], n: usize) -> Dispatch {
    let params = BackwardParams { n: n as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind())];
    dispatch(ctx, "gelu_backward", &[Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", false)], params, &b, grid_1d(n))
}

/// Input gradient of LayerNorm `norm` over (tokens, C) x, written to dx or added
/// to it when `accumulate` (a residual branch's gradient already there).
pub fn layer_norm_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], norm: &GpuNorm, tokens: usize, accumulate: bool) -> Dispatch {
    let params = BackwardParams { n: tokens as u32, c: norm.gamma.len as u32, eps: LN_EPS, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind()), (7, norm.gamma.bind())];
    dispatch(ctx, "layernorm_backward", &[Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", accumulate)], params, &b, grid_1d(tokens))
}
