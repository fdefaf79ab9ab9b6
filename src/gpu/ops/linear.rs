//! Linears and 3×3 convolutions (matmul.wgsl, matmul_rows.wgsl): weight layouts,
//! the float and integer matmul launchers (output in token or window order), activation
//! codes, and the LayerNorm weights (`GpuNorm`) and attention bias tables they sit beside.

use bytemuck::{Pod, Zeroable};

use super::AttnShape;
use crate::gpu::{grid_1d, run_now, Const, Dispatch, GpuBuffer, GpuContext, MatmulKind, Operand, Shader, WINDOW_WORDS};
use crate::model::weights::{Conv3x3, LayerNorm, Linear};

/// How a matmul's weights are laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// (n, k) as PyTorch stores it: the tiled matmul (`IntWeights`: one block of all
    /// columns, for `main_int`).
    Dense,
    /// The `rows` matmul's column blocks: block b holds Wᵀ of columns 4·v·b.. as
    /// (k, 4·v), starting at word b·slot (`IntWeights`: likewise for `rows_int`).
    Blocks { v: usize, blocks: usize, slot: usize },
}

impl WeightLayout {
    /// The layout for an (out_dim, k) weight on this device: as few column blocks
    /// of at most 32 columns (k weights and a bias each) as fit the uniform block,
    /// or dense for the tiled matmul (also when one column would not fit).
    pub fn for_layer(ctx: &GpuContext, kind: MatmulKind, out_dim: usize, k: usize) -> Self {
        match column_blocks(ctx, out_dim, k + 1) {
            Some((v, blocks, slot)) if kind == MatmulKind::Rows => Self::Blocks { v, blocks, slot },
            _ => Self::Dense,
        }
    }

    /// Words the laid-out weight of `elems` values takes (the last block's binding
    /// spans a whole uniform block).
    pub fn words(self, elems: usize) -> usize {
        match self {
            Self::Dense => elems,
            Self::Blocks { blocks, slot, .. } => (blocks - 1) * slot + WINDOW_WORDS,
        }
    }
}

/// Column blocks of a `rows`/`rows_int` weight layout with `words_per_col` words per
/// column: as few blocks of 4·v ≤ 32 columns as fit a uniform window, as (v, blocks,
/// slot words between block starts); None when one column does not fit.
fn column_blocks(ctx: &GpuContext, out_dim: usize, words_per_col: usize) -> Option<(usize, usize, usize)> {
    let v_max = (WINDOW_WORDS / (4 * words_per_col)).min(ctx.rows_lanes());
    if v_max == 0 {
        return None;
    }
    let blocks = out_dim.div_ceil(4 * v_max);
    let v = out_dim.div_ceil(4 * blocks);
    Some((v, blocks, (4 * v * words_per_col).next_multiple_of(ctx.uniform_align_words())))
}

/// A linear layer or 3×3 convolution on the GPU: weight (out, in·taps) and bias,
/// and the weight in the layout its matmul reads when that differs.
pub struct GpuLinear {
    pub weight: GpuBuffer,
    pub bias: GpuBuffer,
    pub out_dim: usize,
    /// Inner dimension of the matmul (in, or in·9 for a convolution).
    pub k: usize,
    pub layout: WeightLayout,
    laid_out: Option<GpuBuffer>,
}

impl GpuLinear {
    pub fn new(ctx: &GpuContext, label: &str, weight: &[f32], bias: &[f32], out_dim: usize) -> Self {
        Self::with_kind(ctx, ctx.matmul, label, weight, bias, out_dim)
    }

    /// A layer for a given matmul strategy (the tests run both).
    pub fn with_kind(ctx: &GpuContext, kind: MatmulKind, label: &str, weight: &[f32], bias: &[f32], out_dim: usize) -> Self {
        let k = weight.len() / out_dim;
        let layout = WeightLayout::for_layer(ctx, kind, out_dim, k);
        let weight = GpuBuffer::from_slice_windowed(ctx, label, weight);
        let bias = GpuBuffer::from_slice(ctx, label, bias);
        let laid_out = (layout != WeightLayout::Dense).then(|| {
            let dst = GpuBuffer::zeros(ctx, label, layout.words(weight.len));
            run_now(ctx, &[lay_out_weights(ctx, [&weight, &bias], &dst, k, layout, None)]);
            dst
        });
        Self { weight, bias, out_dim, k, layout, laid_out }
    }

    pub fn linear(ctx: &GpuContext, label: &str, l: &Linear) -> Self {
        Self::new(ctx, label, &l.weight, &l.bias, l.out_dim)
    }

    pub fn conv(ctx: &GpuContext, label: &str, c: &Conv3x3) -> Self {
        Self::new(ctx, label, &c.weight, &c.bias, c.out_ch)
    }
}

pub struct GpuNorm {
    pub gamma: GpuBuffer,
    pub beta: GpuBuffer,
}

impl GpuNorm {
    pub fn new(ctx: &GpuContext, label: &str, ln: &LayerNorm) -> Self {
        Self { gamma: GpuBuffer::from_slice(ctx, label, &ln.weight), beta: GpuBuffer::from_slice(ctx, label, &ln.bias) }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    w_quant: u32,
    img_h: u32,
    img_w: u32,
    cin: u32,
    act_quant: u32,
    col0: u32,
    out_window: u32,
    out_shift: u32,
    out_heads: u32,
    out_quant: u32,
    row0: u32,
    slot4: u32,
    a_delta: u32,
    a_above: u32,
    a_below: u32,
    _pad: [u32; 2],
}

/// What the matmul's A operand is.
#[derive(Clone, Copy, Debug)]
pub enum MatmulInput {
    /// Token rows (m, k).
    Tokens,
    /// An NHWC image of size h×w per batch item, read through 3×3 im2col.
    Conv3x3 { h: usize, w: usize },
}

/// Fake quantization of a kernel's inputs: the parameter table, the first row
/// to use, and the levels 2^b − 1.
#[derive(Clone, Copy)]
pub struct QuantRef<'a> {
    pub params: &'a GpuBuffer,
    pub row: usize,
    pub levels: f32,
}

/// A matmul's weights (in `layout`): the layer's own, or a fake-quantized copy.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    pub weight: &'a GpuBuffer,
    pub bias: &'a GpuBuffer,
    pub out_dim: usize,
    pub k: usize,
    pub layout: WeightLayout,
}

impl GpuLinear {
    pub fn weights(&self) -> Weights<'_> {
        let weight = self.laid_out.as_ref().unwrap_or(&self.weight);
        Weights { weight, bias: &self.bias, out_dim: self.out_dim, k: self.k, layout: self.layout }
    }

    /// The same layer with another weight tensor already in its layout.
    pub fn weights_with<'a>(&'a self, weight: &'a GpuBuffer) -> Weights<'a> {
        Weights { weight, ..self.weights() }
    }

    /// A zeroed buffer for a copy of the weights in this layer's layout.
    pub fn weight_copy(&self, ctx: &GpuContext, label: &str) -> GpuBuffer {
        GpuBuffer::zeros(ctx, label, self.layout.words(self.weight.len))
    }

    /// Writes the (optionally fake-quantized) weights into `dst` in this layer's layout.
    pub fn copy_weights(&self, ctx: &GpuContext, dst: &GpuBuffer, quant: Option<QuantRef<'_>>) -> Dispatch {
        lay_out_weights(ctx, [&self.weight, &self.bias], dst, self.k, self.layout, quant)
    }
}

/// One matmul: out[m, n] = x·Wᵀ + b (+GELU) (+residual), x optionally fake-quantized.
pub struct Matmul<'a> {
    pub x: Operand<'a>,
    pub layer: Weights<'a>,
    pub out: wgpu::BindingResource<'a>,
    pub m: usize,
    pub input: MatmulInput,
    pub gelu: bool,
    pub residual: Option<wgpu::BindingResource<'a>>,
    pub quant: Option<QuantRef<'a>>,
    /// Write the output in the attention's window order instead of row-major.
    pub windows: Option<WindowOrder>,
    /// The integer engine: x is then unused (the codes replace it) and `quant`
    /// names the input's quantizer.
    pub int: Option<IntOperands<'a>>,
    pub stage: &'static str,
}

/// The integer engine's operands of one linear: the input's codes (`pack_codes`)
/// and the layer's integer weights, made with weight quantizer row `w_row`.
#[derive(Clone)]
pub struct IntOperands<'a> {
    pub codes: Operand<'a>,
    pub weights: &'a IntWeights,
    pub w_row: usize,
    /// Write the output as codes of quantizer row `.1` into `.0` (the next linear's
    /// input) instead of f32 into `out`.
    pub emit: Option<(wgpu::BindingResource<'a>, usize)>,
}

/// A linear's weights for the integer engine (quant.wgsl `int_weights`): per column
/// the u8 codes (four k per word) and the constant term. `Blocks` for `rows_int`
/// (CPU drivers: column blocks of 4·v columns at multiples of `slot` words, each read
/// as a uniform window), `Dense` for `main_int` (GPUs: one block of all columns,
/// read from storage).
pub struct IntWeights {
    pub buffer: GpuBuffer,
    pub layout: WeightLayout,
    /// How the input's codes are laid out (the weight codes follow it).
    pub input: CodeLayout,
}

impl IntWeights {
    /// Room for the integer weights of a linear with `out_dim` columns on inputs laid
    /// out as `input`, on this device.
    pub fn new(ctx: &GpuContext, out_dim: usize, input: CodeLayout) -> Self {
        Self::with_kind(ctx, ctx.matmul, out_dim, input)
    }

    /// The same for a given matmul strategy (the tests run both). `Rows` falls back
    /// to the dense layout when one column does not fit a uniform window.
    pub fn with_kind(ctx: &GpuContext, kind: MatmulKind, out_dim: usize, input: CodeLayout) -> Self {
        let words_per_col = input.row_words() + 1;
        match column_blocks(ctx, out_dim, words_per_col) {
            Some((v, blocks, slot)) if kind == MatmulKind::Rows => {
                let buffer = GpuBuffer::zeros(ctx, "int_weights", (blocks - 1) * slot + WINDOW_WORDS);
                Self { buffer, layout: WeightLayout::Blocks { v, blocks, slot }, input }
            }
            _ => Self { buffer: GpuBuffer::zeros(ctx, "int_weights", words_per_col * out_dim), layout: WeightLayout::Dense, input },
        }
    }

    /// Fills them from `layer`'s float weights with weight quantizer row `w_row`
    /// and the input's quantizer `q`.
    pub fn fill(&self, ctx: &GpuContext, layer: &GpuLinear, q: QuantRef<'_>, w_row: usize) -> Dispatch {
        assert_eq!(self.input.k, layer.k, "integer weights made for another input width");
        let pipeline = ctx.pipeline(Shader::Quant, "int_weights", &[Const::F32("LEVELS", q.levels)]);
        let (block_cols, slot) = match self.layout {
            WeightLayout::Blocks { v, slot, .. } => (4 * v, slot),
            // One block: the block index col / n is always 0.
            WeightLayout::Dense => (layer.out_dim, 0),
        };
        let params = LayOutParams {
            n: layer.out_dim as u32,
            quantizer: w_row as u32 + 1,
            k: layer.k as u32,
            block_cols: block_cols as u32,
            slot: slot as u32,
            total: 0,
            act_quantizer: q.row as u32 + 1,
            mult: 1.0,
            group: self.input.group as u32,
            _pad: [0; 3],
        };
        let b = [(1, layer.weight.bind()), (2, q.params.bind()), (4, layer.bias.bind()), (5, self.buffer.bind())];
        Dispatch::with_bindings(ctx, pipeline, &params, &b, [layer.out_dim.div_ceil(64) as u32, 1, 1], "quant")
    }
}

/// Words of the codes of m rows of k values (four per word).
pub fn code_words(m: usize, k: usize) -> usize {
    CodeLayout::dense(k).words(m)
}

/// How a row of k activation codes packs into words (quant.wgsl `code_source`): four
/// per word, and with `group` > 0 each group of `group` values (an attention head)
/// starting a new word, so the integer attention writes proj's input codes head by
/// head. Padding positions hold code 0, which adds nothing to the integer sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeLayout {
    pub k: usize,
    pub group: usize,
}

impl CodeLayout {
    pub fn dense(k: usize) -> Self {
        Self { k, group: 0 }
    }

    /// k values in heads of `head_dim`, each starting a new word.
    pub fn heads(k: usize, head_dim: usize) -> Self {
        assert!(k.is_multiple_of(head_dim), "{k} values do not split into heads of {head_dim}");
        Self { k, group: head_dim }
    }

    /// Words per row.
    pub fn row_words(&self) -> usize {
        match self.group {
            0 => self.k.div_ceil(4),
            g => self.k / g * g.div_ceil(4),
        }
    }

    /// Words of m rows.
    pub fn words(&self, m: usize) -> usize {
        m * self.row_words()
    }

    /// Which value position `e` of a row's words holds (None: padding).
    pub fn source(&self, e: usize) -> Option<usize> {
        match self.group {
            0 => (e < self.k).then_some(e),
            g => {
                let g4 = g.div_ceil(4) * 4;
                let d = e % g4;
                (d < g).then_some(e / g4 * g + d)
            }
        }
    }
}

/// The integer engine's activation codes of x (m rows, laid out as `layout`) with
/// quantizer `q`.
pub fn pack_codes(ctx: &GpuContext, x: wgpu::BindingResource<'_>, codes: wgpu::BindingResource<'_>, m: usize, layout: CodeLayout, q: QuantRef<'_>) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Quant, "pack_codes", &[Const::F32("LEVELS", q.levels)]);
    let params = LayOutParams {
        n: m as u32,
        quantizer: q.row as u32 + 1,
        k: layout.k as u32,
        block_cols: 0,
        slot: 0,
        total: 0,
        act_quantizer: 0,
        mult: 1.0,
        group: layout.group as u32,
        _pad: [0; 3],
    };
    Dispatch::with_bindings(ctx, pipeline, &params, &[(1, x), (2, q.params.bind()), (5, codes)], grid_1d(layout.words(m)), "quant")
}

impl<'a> Matmul<'a> {
    /// A plain token matmul; set the other fields with struct update syntax.
    pub fn tokens(x: Operand<'a>, layer: Weights<'a>, out: wgpu::BindingResource<'a>, m: usize, stage: &'static str) -> Self {
        Self { x, layer, out, m, input: MatmulInput::Tokens, gelu: false, residual: None, quant: None, windows: None, int: None, stage }
    }
}

/// The layout `window_attention` reads q, k and v in: (window, head, token in
/// window, d) of the shifted window partition of an h×w token grid (per image).
#[derive(Clone, Copy, Debug)]
pub struct WindowOrder {
    pub h: usize,
    pub w: usize,
    pub shape: AttnShape,
}

/// A relative-position bias table on the GPU, padded to whole vec4s so it can
/// also be bound as a uniform array.
pub fn attention_table(ctx: &GpuContext, table: &[f32]) -> GpuBuffer {
    let mut padded = table.to_vec();
    padded.resize(table.len().next_multiple_of(4), 0.0);
    GpuBuffer::from_slice(ctx, "bias_table", &padded)
}



/// The matmul's dispatches: one for the tiled strategy (`main`, `main_int`); for the
/// `rows*` kernels one per uniform window of weight blocks and, where A is read
/// through uniform windows, per window of rows.
pub fn matmul<'a>(ctx: &'a GpuContext, a: Matmul<'a>) -> Vec<Dispatch> {
    let (consts, params) = matmul_setup(&a);
    // Without a residual the slot is filled with the (read-only) bias buffer.
    let residual = a.residual.clone().unwrap_or_else(|| a.layer.bias.bind());
    let qparams = a.quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    match &a.int {
        Some(int) => int_matmul(ctx, &a, int, (&consts, params), [residual, qparams]),
        None => float_matmul(ctx, &a, (&consts, params), [residual, qparams]),
    }
}

/// The header constants and parameters of a matmul.
fn matmul_setup(a: &Matmul<'_>) -> ([Const; 7], MatmulParams) {
    let (mode, img_h, img_w) = match (a.input, a.windows) {
        (MatmulInput::Tokens, None) => (0, 0, 0),
        (MatmulInput::Tokens, Some(o)) => (0, o.h, o.w),
        (MatmulInput::Conv3x3 { h, w }, None) => (1, h, w),
        (MatmulInput::Conv3x3 { .. }, Some(_)) => panic!("window-ordered output is for token matmuls"),
    };
    let l = &a.layer;
    let consts = [
        Const::U32("A_MODE", mode),
        Const::Bool("GELU", a.gelu),
        Const::F32("LEVELS", a.quant.map_or(0.0, |q| q.levels)),
        Const::U32("V", vectors_per_column(a) as u32),
        Const::Bool("RESIDUAL", a.residual.is_some()),
        Const::Bool("OUT_WINDOWS", a.windows.is_some()),
        Const::Bool("OUT_CODES", a.int.as_ref().is_some_and(|i| i.emit.is_some())),
    ];
    let params = MatmulParams {
        m: a.m as u32,
        n: l.out_dim as u32,
        k: l.k as u32,
        w_quant: a.int.as_ref().map_or(0, |i| i.w_row as u32 + 1),
        img_h: img_h as u32,
        img_w: img_w as u32,
        cin: if mode == 1 { (l.k / 9) as u32 } else { 0 },
        act_quant: a.quant.map_or(0, |q| q.row as u32 + 1),
        col0: 0,
        out_window: a.windows.map_or(0, |o| o.shape.window as u32),
        out_shift: a.windows.map_or(0, |o| o.shape.shift as u32),
        out_heads: a.windows.map_or(1, |o| o.shape.heads as u32),
        out_quant: a.int.as_ref().and_then(|i| i.emit.as_ref()).map_or(0, |e| e.1 as u32 + 1),
        row0: 0,
        slot4: 0,
        a_delta: 0,
        a_above: 0,
        a_below: 0,
        _pad: [0; 2],
    };
    (consts, params)
}

/// The weights' vec4s per column block (1 for dense weights), in the layout that picks
/// the kernel: the integer weights' for the integer engine.
fn vectors_per_column(a: &Matmul<'_>) -> usize {
    match a.int.as_ref().map_or(a.layer.layout, |i| i.weights.layout) {
        WeightLayout::Dense => 1,
        WeightLayout::Blocks { v, .. } => v,
    }
}

/// The integer engine's matmul on the input's codes (`main_int` or `rows_int*`).
fn int_matmul<'a>(
    ctx: &'a GpuContext,
    a: &Matmul<'a>,
    int: &IntOperands<'a>,
    (consts, params): (&[Const], MatmulParams),
    [residual, qparams]: [wgpu::BindingResource<'a>; 2],
) -> Vec<Dispatch> {
    assert!(int.emit.is_none() || (a.residual.is_none() && a.windows.is_none()), "codes are emitted without residual or window order");
    let (l, w) = (&a.layer, int.weights);
    // The integer kernels use k only for the words per row of codes.
    let params = MatmulParams { k: 4 * w.input.row_words() as u32, ..params };
    let emit = int.emit.clone().map_or_else(|| ctx.sink(), |e| e.0);
    let shared = [(4, residual), (5, a.out.clone()), (6, qparams), (10, emit)];
    match w.layout {
        WeightLayout::Dense => {
            let pipeline = ctx.pipeline(Shader::Matmul, "main_int", consts);
            let row_groups = a.m.div_ceil(64);
            assert!(row_groups <= 65535, "integer matmul over {} rows: split the input", a.m);
            let groups = [l.out_dim.div_ceil(64) as u32, row_groups as u32, 1];
            let mut bindings = shared.to_vec();
            bindings.extend([(8, int.codes.bind()), (11, w.buffer.bind())]);
            vec![Dispatch::with_bindings(ctx, pipeline, &params, &bindings, groups, a.stage)]
        }
        WeightLayout::Blocks { v, blocks, slot } => {
            // The codes as binding `x` (8: storage, 15: uniform window), then the rest.
            let bindings = |x: (u32, wgpu::BindingResource<'a>), start: usize| {
                let mut bindings = shared.to_vec();
                bindings.extend([x, (9, w.buffer.bind_window(start))]);
                bindings
            };
            let codes = (int.codes, a.m, a_windows(ctx, int.codes, a.m, w.input.row_words()));
            rows_dispatches(ctx, consts, params, (v, blocks, slot), codes, a.stage, [("rows_int", 8), ("rows_int_windowed", 15)], bindings)
        }
    }
}

/// The float (and fake-quantized) matmul: `main` on GPUs, the `rows*` kernels on CPU
/// drivers, with a 3×3 convolution's image rows through uniform windows where they fit.
fn float_matmul<'a>(
    ctx: &'a GpuContext,
    a: &Matmul<'a>,
    (consts, params): (&[Const], MatmulParams),
    [residual, qparams]: [wgpu::BindingResource<'a>; 2],
) -> Vec<Dispatch> {
    let l = &a.layer;
    match l.layout {
        WeightLayout::Dense => {
            let pipeline = ctx.pipeline(Shader::Matmul, "main", consts);
            let groups = [l.out_dim.div_ceil(64) as u32, a.m.div_ceil(64) as u32, 1];
            let bindings = [a.x.bind(), l.weight.bind(), l.bias.bind(), residual, a.out.clone(), qparams];
            vec![Dispatch::new(ctx, pipeline, &params, &bindings, groups, a.stage)]
        }
        WeightLayout::Blocks { v, blocks, slot } => {
            // A as binding `x` (1: storage, 12: uniform window), then the rest.
            let bindings = |x: (u32, wgpu::BindingResource<'a>), start: usize| {
                vec![x, (4, residual.clone()), (5, a.out.clone()), (6, qparams.clone()), (7, l.weight.bind_window(start))]
            };
            if let MatmulInput::Conv3x3 { w: img_w, .. } = a.input {
                if let Some(windows) = conv_windows(ctx, a.x, img_w, a.m, l.k / 9) {
                    return windows
                        .into_iter()
                        .flat_map(|(rows, [above, at, below], [a_above, a_delta, a_below])| {
                            let params = MatmulParams { a_above, a_delta, a_below, ..params };
                            column_block_dispatches(ctx, ("conv_windowed", consts), params, (v, blocks, slot), rows, a.stage, |start| {
                                let mut b = bindings((12, at.clone()), start);
                                b.extend([(13, above.clone()), (14, below.clone())]);
                                b
                            })
                        })
                        .collect();
                }
            }
            let windows = if let MatmulInput::Tokens = a.input { a_windows(ctx, a.x, a.m, l.k) } else { None };
            rows_dispatches(ctx, consts, params, (v, blocks, slot), (a.x, a.m, windows), a.stage, [("rows", 1), ("rows_windowed", 12)], bindings)
        }
    }
}

/// A `rows*` matmul over A's m rows: through its uniform `windows` (`a_windows`) when
/// there are any (`windowed`: entry and the window's binding), else from storage
/// (`storage`); `bindings(A's binding, weight window start)`.
#[allow(clippy::too_many_arguments)]
fn rows_dispatches<'a>(
    ctx: &GpuContext,
    consts: &[Const],
    params: MatmulParams,
    layout: (usize, usize, usize),
    (x, m, windows): (Operand<'a>, usize, Option<AWindows<'a>>),
    stage: &'static str,
    [storage, windowed]: [(&str, u32); 2],
    bindings: impl Fn((u32, wgpu::BindingResource<'a>), usize) -> Vec<(u32, wgpu::BindingResource<'a>)>,
) -> Vec<Dispatch> {
    let Some(windows) = windows else {
        return column_block_dispatches(ctx, (storage.0, consts), params, layout, 0..m, stage, |start| bindings((storage.1, x.bind()), start));
    };
    windows
        .into_iter()
        .flat_map(|(rows, window, delta)| {
            let params = MatmulParams { a_delta: delta as u32, ..params };
            column_block_dispatches(ctx, (windowed.0, consts), params, layout, rows, stage, |start| bindings((windowed.1, window.clone()), start))
        })
        .collect()
}

/// Ranges of whole workgroups of rows that one uniform window holds, with `halo`
/// rows more, over m rows of `row_words` words. None when not even one workgroup fits.
fn window_row_ranges(ctx: &GpuContext, m: usize, row_words: usize, halo: usize) -> Option<Vec<std::ops::Range<usize>>> {
    let per = ((WINDOW_WORDS - ctx.uniform_align_words()) / row_words).checked_sub(halo)? / 64 * 64;
    (per > 0).then(|| (0..m).step_by(per).map(|r0| r0..(r0 + per).min(m)).collect())
}

/// Row ranges of A with the uniform window of each and where the range starts in it.
type AWindows<'a> = Vec<(std::ops::Range<usize>, wgpu::BindingResource<'a>, usize)>;

/// The row ranges of A (m rows of k words) for `rows_windowed`, with the window of
/// each and where the range starts in it. None when a window cannot hold a
/// workgroup's rows, or A's buffer a window.
fn a_windows<'a>(ctx: &GpuContext, x: Operand<'a>, m: usize, k: usize) -> Option<AWindows<'a>> {
    let align = ctx.uniform_align_words();
    window_row_ranges(ctx, m, k, 0)?
        .into_iter()
        .map(|rows| x.window(rows.start * k, rows.len() * k, align).map(|(window, delta)| (rows, window, delta)))
        .collect()
}

/// The uniform windows `conv_windowed` reads a 3×3 convolution's input (m pixels of
/// cin channels, image rows of w pixels) through: whole workgroups of output pixels, and for
/// each the windows of the pixels one image row above, at and below them (±1 pixel)
/// with the base of each (i32 bits: pixel q's channel 0 at word base + q·cin of its
/// window). None when a window cannot hold a workgroup's pixels, or the input a window.
#[allow(clippy::type_complexity)]
fn conv_windows<'a>(ctx: &GpuContext, x: Operand<'a>, w: usize, m: usize, cin: usize) -> Option<Vec<(std::ops::Range<usize>, [wgpu::BindingResource<'a>; 3], [u32; 3])>> {
    let align = ctx.uniform_align_words();
    window_row_ranges(ctx, m, cin, 2)?
        .into_iter()
        .map(|rows| {
            let window = |dy: isize| {
                // Pixels rows.start + dy·w − 1 .. rows.end + dy·w + 1, clipped to the input
                // (at least one pixel: taps outside the input are never read).
                let clip = |q: isize| q.clamp(0, m as isize - 1) as usize;
                let lo = clip(rows.start as isize + dy * w as isize - 1);
                let hi = clip(rows.end as isize + dy * w as isize).max(lo);
                x.window(lo * cin, (hi + 1 - lo) * cin, align).map(|(b, delta)| (b, (delta as i64 - (lo * cin) as i64) as i32 as u32))
            };
            let (above, at, below) = (window(-1)?, window(0)?, window(1)?);
            Some((rows, [above.0, at.0, below.0], [above.1, at.1, below.1]))
        })
        .collect()
}

/// A `rows*` or `conv_windowed` matmul (`entry` with its constants) over `rows`: one
/// dispatch per uniform window of whole weight blocks (block b: columns
/// 4·v·b.., from word b·slot), a row of workgroups per block, with the bindings
/// `bindings(the window's first word)`.
#[allow(clippy::too_many_arguments)]
fn column_block_dispatches<'a>(
    ctx: &GpuContext,
    (entry, consts): (&str, &[Const]),
    params: MatmulParams,
    (v, blocks, slot): (usize, usize, usize),
    rows: std::ops::Range<usize>,
    stage: &'static str,
    bindings: impl Fn(usize) -> Vec<(u32, wgpu::BindingResource<'a>)>,
) -> Vec<Dispatch> {
    let row_groups = rows.len().div_ceil(64);
    assert!(row_groups <= 65535, "{entry} matmul over {} rows: split the input", rows.len());
    let pipeline = ctx.pipeline(Shader::MatmulRows, entry, consts);
    let per_window = (WINDOW_WORDS / slot).max(1);
    (0..blocks)
        .step_by(per_window)
        .map(|b| {
            let params = MatmulParams { col0: (4 * v * b) as u32, row0: rows.start as u32, slot4: (slot / 4) as u32, ..params };
            let groups = [row_groups as u32, per_window.min(blocks - b) as u32, 1];
            Dispatch::with_bindings(ctx, pipeline.clone(), &params, &bindings(b * slot), groups, stage)
        })
        .collect()
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct LayOutParams {
    pub n: u32,
    pub quantizer: u32,
    pub k: u32,
    pub block_cols: u32,
    pub slot: u32,
    pub total: u32,
    pub act_quantizer: u32,
    pub mult: f32,
    pub group: u32,
    pub _pad: [u32; 3],
}

/// dst = weight (n, k) in `layout` (blocks also carry the bias), the weight
/// fake-quantized with parameter row `quant.row` if given.
fn lay_out_weights(
    ctx: &GpuContext,
    [src, bias]: [&GpuBuffer; 2],
    dst: &GpuBuffer,
    k: usize,
    layout: WeightLayout,
    quant: Option<QuantRef<'_>>,
) -> Dispatch {
    let levels = quant.map_or(0.0, |q| q.levels);
    let pipeline = ctx.pipeline(Shader::Quant, "main", &[Const::F32("LEVELS", levels)]);
    let (block_cols, slot, total) = match layout {
        WeightLayout::Dense => (0, 0, src.len),
        WeightLayout::Blocks { v, slot, .. } => (4 * v, slot, src.len + bias.len),
    };
    let params = LayOutParams {
        n: src.len as u32,
        quantizer: quant.map_or(0, |q| q.row as u32 + 1),
        k: k as u32,
        block_cols: block_cols as u32,
        slot: slot as u32,
        total: total as u32,
        act_quantizer: 0,
        mult: 1.0,
        group: 0,
        _pad: [0; 3],
    };
    let qparams = quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    Dispatch::new(ctx, pipeline, &params, &[src.bind(), qparams, dst.bind(), bias.bind()], grid_1d(total), "quant")
}
