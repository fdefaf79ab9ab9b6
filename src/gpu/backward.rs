//! Launchers of the backward kernels (shaders/backward.wgsl) for phase 2.

use bytemuck::{Pod, Zeroable};

use super::ops::{self, GpuLinear, GpuNorm, Matmul, MatmulInput, QuantRef, LN_EPS};
use super::{grid_1d, grid_groups, Const, Dispatch, GpuBuffer, GpuContext, Shader};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct BackwardParams {
    n: u32,
    c: u32,
    row: u32,
    part0: u32,
    eps: f32,
    n_out: u32,
    act_row: u32,
    chunk: u32,
}

/// The header constants of shaders/backward.wgsl.
#[derive(Clone, Copy, Default)]
struct Flags {
    /// 2^b − 1 of the kernel's quantizer, 0 for none.
    levels: f32,
    accumulate: bool,
    act_quant: bool,
    /// `weight_grad_rows`: the input block's vec4s.
    v: u32,
}

/// A backward.wgsl kernel, or a backward_rows.wgsl one (entries ending in `_rows`).
fn dispatch(ctx: &GpuContext, entry: &'static str, f: Flags, params: BackwardParams, bindings: &[(u32, wgpu::BindingResource<'_>)], groups: [u32; 3]) -> Dispatch {
    let consts = [
        Const::F32("LEVELS", f.levels),
        Const::Bool("ACCUMULATE", f.accumulate),
        Const::Bool("ACT_QUANT", f.act_quant),
        Const::U32("ELEMS", ELEMS as u32),
        Const::U32("V", f.v),
    ];
    let shader = if entry.ends_with("_rows") { Shader::BackwardRows } else { Shader::Backward };
    let pipeline = ctx.pipeline(shader, entry, &consts);
    Dispatch::with_bindings(ctx, pipeline, &params, bindings, groups, entry)
}

/// Elements per invocation of `quant_backward` and `l1_grad`: a workgroup of 256 covers
/// 256·ELEMS elements, so there are fewer workgroup sums (each a chain of barriers) and partials.
const ELEMS: usize = 16;

/// Partial slots (one per workgroup) that `quant_backward` or `l1_grad` writes for n elements.
pub fn quant_partials(n: usize) -> usize {
    n.div_ceil(256 * ELEMS).max(1)
}

/// Through fake quantizer `q` on x (n elements): dx = dy·∂Q/∂x (added to dx when
/// `accumulate`), and the quantizer's (dl, du, dc) sums per 256 elements into
/// `partials` from slot `part0` (`quant_partials(n)` slots; sum them with `reduce_partials`).
pub fn quant_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], n: usize, q: QuantRef<'_>, (partials, part0): (&GpuBuffer, usize), accumulate: bool) -> Dispatch {
    let params = BackwardParams { n: n as u32, row: q.row as u32, part0: part0 as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind()), (4, q.params.bind()), (5, partials.bind())];
    dispatch(ctx, "quant_backward", Flags { levels: q.levels, accumulate, ..Flags::default() }, params, &b, grid_groups(quant_partials(n)))
}

/// Sums `count` partials, every `stride`-th from slot `part0`, in a fixed order into
/// row `row` of `grads` (vec4 rows: dl, du, dc, 0), or adds them to it when `accumulate`.
pub fn reduce_partials(ctx: &GpuContext, (partials, part0, stride): (&GpuBuffer, usize, usize), count: usize, (grads, row): (&GpuBuffer, usize), accumulate: bool) -> Dispatch {
    let params = BackwardParams { n: count as u32, c: stride as u32, row: row as u32, part0: part0 as u32, ..Default::default() };
    let b = [(5, partials.bind()), (6, grads.bind())];
    dispatch(ctx, "reduce_partials", Flags { accumulate, ..Flags::default() }, params, &b, [1, 1, 1])
}

/// dx += dy over n elements.
pub fn add_into(ctx: &GpuContext, [dy, dx]: [&GpuBuffer; 2], n: usize) -> Dispatch {
    let params = BackwardParams { n: n as u32, ..Default::default() };
    dispatch(ctx, "add_into", Flags::default(), params, &[(2, dy.bind()), (3, dx.bind())], grid_1d(n))
}

/// dx = dy·GELU'(x) over n elements.
pub fn gelu_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], n: usize) -> Dispatch {
    let params = BackwardParams { n: n as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind())];
    dispatch(ctx, "gelu_backward", Flags::default(), params, &b, grid_1d(n))
}

/// Input gradient of LayerNorm `norm` over (tokens, C) x, written to dx or added
/// to it when `accumulate` (a residual branch's gradient already there).
pub fn layer_norm_backward(ctx: &GpuContext, [x, dy, dx]: [&GpuBuffer; 3], norm: &GpuNorm, tokens: usize, accumulate: bool) -> Dispatch {
    let params = BackwardParams { n: tokens as u32, c: norm.gamma.len as u32, eps: LN_EPS, ..Default::default() };
    let b = [(1, x.bind()), (2, dy.bind()), (3, dx.bind()), (7, norm.gamma.bind())];
    dispatch(ctx, "layernorm_backward", Flags { accumulate, ..Flags::default() }, params, &b, grid_1d(tokens))
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

/// Partial slots that `weight_quant_grads` writes for an (n_out, k) layer (one per 256 weights).
pub fn weight_partials(n_out: usize, k: usize) -> usize {
    (n_out * k).div_ceil(256)
}

/// Tokens per chunk of the weight gradient's token sum (a workgroup's share: small
/// enough that a batch's chunks keep a GPU busy, large enough to amortise the tile).
const WEIGHT_GRAD_CHUNK: usize = 128;

/// Outputs and inputs per workgroup tile of `weight_grad_tiles` (its TILE: 16×16 invocations of 4×4).
const WEIGHT_GRAD_TILE: usize = 64;

/// Scratch words `weight_quant_grads` needs for a layer over `tokens` tokens.
pub fn weight_grad_words(n_out: usize, k: usize, tokens: usize) -> usize {
    n_out * k * tokens.div_ceil(WEIGHT_GRAD_CHUNK)
}

/// The weight quantizer's (dl, du, dc) partials from dy and the layer's input x,
/// through its input quantizer (parameter row `act_row` of the same table) when
/// given, into `partials` from slot `part0` (`weight_partials` slots); `scratch`
/// holds `weight_grad_words` words.
#[allow(clippy::too_many_arguments)]
pub fn weight_quant_grads(
    ctx: &GpuContext,
    [x, dy]: [&GpuBuffer; 2],
    layer: LinearGrad<'_>,
    act_row: Option<usize>,
    tokens: usize,
    scratch: &GpuBuffer,
    (partials, part0): (&GpuBuffer, usize),
) -> [Dispatch; 2] {
    let q = layer.quant.expect("weight_quant_grads needs the weight quantizer");
    let params = BackwardParams { act_row: act_row.unwrap_or(0) as u32, chunk: WEIGHT_GRAD_CHUNK as u32, ..layer.params(tokens, part0) };
    let flags = Flags { levels: q.levels, act_quant: act_row.is_some(), ..Flags::default() };
    let chunks = [(1, x.bind()), (2, dy.bind()), (4, q.params.bind()), (9, scratch.bind())];
    let sums = [(4, q.params.bind()), (5, partials.bind()), (8, layer.weight.bind()), (9, scratch.bind())];
    let n_chunks = tokens.div_ceil(WEIGHT_GRAD_CHUNK);
    let chunk_sums = if ctx.uniform_reads() {
        // CPU drivers: an output per invocation, blocks of 4·v inputs.
        let quads = layer.k.div_ceil(4);
        let v = quads.min(ctx.rows_lanes());
        assert!(n_chunks <= 65535, "weight gradient over {tokens} tokens: at most {} per batch", 65535 * WEIGHT_GRAD_CHUNK);
        let groups = [layer.n_out.div_ceil(64) as u32, quads.div_ceil(v) as u32, n_chunks as u32];
        dispatch(ctx, "weight_grad_rows", Flags { v: v as u32, ..flags }, params, &chunks, groups)
    } else {
        let tiles = layer.n_out.div_ceil(WEIGHT_GRAD_TILE) * layer.k.div_ceil(WEIGHT_GRAD_TILE);
        dispatch(ctx, "weight_grad_tiles", flags, params, &chunks, grid_groups(tiles * n_chunks))
    };
    [chunk_sums, dispatch(ctx, "weight_quant_grads", flags, params, &sums, grid_1d(layer.n_out * layer.k))]
}

/// The output loss mean|x − target| over n elements: its gradient into dx, and
/// partial sums of |x − target| into `partials` from `part0` (`quant_partials(n)`
/// slots; `reduce_partials` gives the sum in its first component).
pub fn l1_grad(ctx: &GpuContext, [x, target, dx]: [&GpuBuffer; 3], n: usize, (partials, part0): (&GpuBuffer, usize)) -> Dispatch {
    let params = BackwardParams { n: n as u32, part0: part0 as u32, ..Default::default() };
    let b = [(1, x.bind()), (2, target.bind()), (3, dx.bind()), (5, partials.bind())];
    dispatch(ctx, "l1_grad", Flags::default(), params, &b, grid_groups(quant_partials(n)))
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
    let flags = Flags { accumulate, ..Flags::default() };
    [
        dispatch(ctx, "sample_sums", flags, params, &sum_bindings, [samples as u32, 1, 1]),
        dispatch(ctx, "feature_grad", flags, params, &grad_bindings, grid_1d(n)),
    ]
}

/// A linear layer's transposed weight Wᵀ (k, n_out) as a layer of its own, so that
/// its input gradient dx̂ = dy·Q(W) runs as the forward's matmul (tiled on GPUs, rows
/// on CPU drivers); `refresh` fake-quantizes it into the copy that matmul reads.
pub struct TransposedLinear {
    layer: GpuLinear,
    quantized: GpuBuffer,
}

impl TransposedLinear {
    /// From the layer's (n_out, k) weight.
    pub fn new(ctx: &GpuContext, weight: &[f32], n_out: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n_out * k, "transposed linear: weight size");
        let transposed: Vec<f32> = (0..k).flat_map(|i| (0..n_out).map(move |o| weight[o * k + i])).collect();
        let layer = GpuLinear::new(ctx, "weight_t", &transposed, &vec![0.0; k], k);
        let quantized = layer.weight_copy(ctx, "weight_t_q");
        Self { layer, quantized }
    }

    /// Fake-quantizes the weight with `q` (its current parameters; a plain copy
    /// without) for `input_grad`.
    pub fn refresh(&self, ctx: &GpuContext, q: Option<QuantRef<'_>>) -> Dispatch {
        self.layer.copy_weights(ctx, &self.quantized, q)
    }

    /// dx̂ = dy·Q(W) over `tokens` rows, Q(W) as the last `refresh` made it.
    pub fn input_grad(&self, ctx: &GpuContext, [dy, dx]: [&GpuBuffer; 2], tokens: usize) -> Vec<Dispatch> {
        ops::matmul(ctx, Matmul::tokens(dy.operand(), self.layer.weights_with(&self.quantized), dx.bind(), tokens, "backward"))
    }
}

/// A 3×3 convolution's input gradient as a convolution of its own: channels swapped
/// and the kernel flipped, W'[i, o, 8 − tap] = W[o, i, tap] (zero padding both ways).
pub fn transposed_conv(ctx: &GpuContext, weight: &[f32], (c_in, c_out): (usize, usize)) -> GpuLinear {
    assert_eq!(weight.len(), c_out * c_in * 9, "transposed conv: weight size");
    let flipped: Vec<f32> = (0..c_in).flat_map(|i| (0..c_out).flat_map(move |o| (0..9).map(move |tap| weight[(o * c_in + i) * 9 + 8 - tap]))).collect();
    GpuLinear::new(ctx, "conv_t", &flipped, &vec![0.0; c_in], c_in)
}

/// dx of a 3×3 convolution over (b, h, w) tokens from dy, with `transposed` from
/// `transposed_conv`.
pub fn conv3x3_input_grad(ctx: &GpuContext, [dy, dx]: [&GpuBuffer; 2], transposed: &GpuLinear, (b, h, w): (usize, usize, usize)) -> Vec<Dispatch> {
    let mm = Matmul { input: MatmulInput::Conv3x3 { h, w }, ..Matmul::tokens(dy.operand(), transposed.weights(), dx.bind(), b * h * w, "backward") };
    ops::matmul(ctx, mm)
}
