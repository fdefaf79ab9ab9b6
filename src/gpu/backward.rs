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
    n_out: u32,
    h: u32,
    w: u32,
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

/// A linear layer's frozen weight (n_out, k) and its quantizer, for the backward.
#[derive(Clone, Copy)]
pub struct LinearGrad<'a> {
    pub weight: &'a GpuBuffer,
    pub n_out: usize,
    pub k: usize,
    pub quant: Option<QuantRef<'a>>,
}

impl LinearGrad<'_> {
    fn params(&self, tokens: usize, part0: usize) -> BackwardParams {
        let row = self.quant.map_or(0, |q| q.row as u32);
        BackwardParams { n: tokens as u32, c: self.k as u32, row, part0: part0 as u32, n_out: self.n_out as u32, ..Default::default() }
    }
}

/// dx = dy·Ŵ over `tokens` rows (y = x·Ŵᵀ + b), added to dx when `accumulate`.
pub fn linear_input_grad(ctx: &GpuContext, [dy, dx]: [&GpuBuffer; 2], layer: LinearGrad<'_>, tokens: usize, accumulate: bool) -> Dispatch {
    let qparams = layer.quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    let b = [(2, dy.bind()), (3, dx.bind()), (4, qparams), (8, layer.weight.bind())];
    let levels = layer.quant.map_or(0.0, |q| q.levels);
    let consts = [Const::F32("LEVELS", levels), Const::Bool("ACCUMULATE", accumulate)];
    dispatch(ctx, "linear_input_grad", &consts, layer.params(tokens, 0), &b, grid_1d(tokens * layer.k))
}

/// Partial slots that `weight_quant_grads` writes for a layer.
pub fn weight_partials(layer: &LinearGrad<'_>) -> usize {
    quant_partials(layer.n_out * layer.k)
}

/// The weight quantizer's (dl, du, dc) partials from dy and the layer's input x (as
/// the forward used it), into `partials` from slot `part0` (`weight_partials` slots).
pub fn weight_quant_grads(ctx: &GpuContext, [x, dy]: [&GpuBuffer; 2], layer: LinearGrad<'_>, tokens: usize, (partials, part0): (&GpuBuffer, usize)) -> Dispatch {
    let q = layer.quant.expect("weight_quant_grads needs the weight quantizer");
    let b = [(1, x.bind()), (2, dy.bind()), (4, q.params.bind()), (5, partials.bind()), (8, layer.weight.bind())];
    let consts = [Const::F32("LEVELS", q.levels), Const::Bool("ACCUMULATE", false)];
    dispatch(ctx, "weight_quant_grads", &consts, layer.params(tokens, part0), &b, grid_1d(layer.n_out * layer.k))
}

/// dx of a 3×3 convolution (zero padding) with frozen weights `weight` (n_out, c, 3, 3)
/// over (b, h, w, c) tokens, from dy (b, h, w, n_out); added to dx when `accumulate`.
pub fn conv3x3_input_grad(ctx: &GpuContext, [dy, dx]: [&GpuBuffer; 2], weight: &GpuBuffer, (b, h, w): (usize, usize, usize), (c, n_out): (usize, usize), accumulate: bool) -> Dispatch {
    let tokens = b * h * w;
    let params = BackwardParams { n: tokens as u32, c: c as u32, n_out: n_out as u32, h: h as u32, w: w as u32, ..Default::default() };
    let bindings = [(2, dy.bind()), (3, dx.bind()), (8, weight.bind())];
    let consts = [Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", accumulate)];
    dispatch(ctx, "conv3x3_input_grad", &consts, params, &bindings, grid_1d(tokens * c))
}

/// The output loss mean|x − target| over n elements: its gradient into dx, and
/// partial sums of |x − target| into `partials` from `part0` (`quant_partials(n)`
/// slots; `reduce_partials` gives the sum in its first component).
pub fn l1_grad(ctx: &GpuContext, [x, target, dx]: [&GpuBuffer; 3], n: usize, (partials, part0): (&GpuBuffer, usize)) -> Dispatch {
    let params = BackwardParams { n: n as u32, part0: part0 as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, target.bind()), (3, dx.bind()), (5, partials.bind())];
    dispatch(ctx, "l1_grad", &[Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", false)], params, &b, grid_1d(n))
}

/// The feature loss λ·mean((x/‖x‖ − t/‖t‖)²) of `samples` samples of `per_sample`
/// elements (norms per sample): per-sample sums into `sums` (slots `slot`..+samples,
/// vec4: ‖x‖², ‖t‖², x·t, 0), then its gradient added to dx when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn feature_grad(
    ctx: &GpuContext,
    [x, target, dx]: [&GpuBuffer; 3],
    (samples, per_sample): (usize, usize),
    lambda: f32,
    (sums, slot): (&GpuBuffer, usize),
    accumulate: bool,
) -> [Dispatch; 2] {
    let n = samples * per_sample;
    let params = BackwardParams { n: n as u32, c: per_sample as u32, part0: slot as u32, eps: lambda, ..Default::default() };
    let sum_bindings = [(1, x.bind()), (2, target.bind()), (5, sums.bind())];
    let grad_bindings = [(1, x.bind()), (2, target.bind()), (3, dx.bind()), (5, sums.bind())];
    let consts = [Const::F32("LEVELS", 0.0), Const::Bool("ACCUMULATE", accumulate)];
    [
        dispatch(ctx, "sample_sums", &consts, params, &sum_bindings, [samples as u32, 1, 1]),
        dispatch(ctx, "feature_grad", &consts, params, &grad_bindings, grid_1d(n)),
    ]
}
