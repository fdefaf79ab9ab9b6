//! Window attention (attention.wgsl, window.wgsl, attention_rows.wgsl): the float and
//! integer launchers, the integer codes of q, k and v, the slice groups of a dispatch.

use bytemuck::{Pod, Zeroable};

use super::linear::LayOutParams;
use super::QuantRef;
use crate::gpu::{grid_1d, Const, Dispatch, GpuBuffer, GpuContext, Shader, WINDOW_WORDS};

/// window.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(in crate::gpu) struct AttnParams {
    h: u32,
    w: u32,
    windows_x: u32,
    quant: u32,
    write_p: u32,
    s0: u32,
    delta: u32,
    p_slice0: u32,
    delta_v: u32,
    out_quant: u32,
    _pad: [u32; 2],
}

impl AttnParams {
    /// With the matmul quantizers at rows `q.row`.. (`quant` is the row + 1, 0 for a float model).
    pub(in crate::gpu) fn quantized(self, quant: Option<QuantRef<'_>>) -> Self {
        Self { quant: quant.map_or(0, |q| q.row as u32 + 1), ..self }
    }
}

/// Shape of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub window: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub shift: usize,
}

/// Optional parts of an attention dispatch: fake quantization of q·scale, k, v
/// and P (rows `row`..`row`+3), and storing P for batch items `batch` (calibration)
/// into `probs`, laid out (batch item, window, head, query, key).
#[derive(Default)]
pub struct AttnExtras<'a> {
    pub quant: Option<QuantRef<'a>>,
    pub probs: Option<wgpu::BindingResource<'a>>,
    pub batch: Option<std::ops::Range<usize>>,
}

/// Window attention over (b, h, w) tokens of q, k, v in window order (windowed
/// buffers, `GpuBuffer::zeros_windowed`), output row-major (tokens × heads·head_dim)
/// before the projection. One dispatch per group of window-head slices that fits a
/// uniform binding.
#[allow(clippy::too_many_arguments)]
pub fn window_attention(
    ctx: &GpuContext,
    [q, k, v]: [&GpuBuffer; 3],
    table: &GpuBuffer,
    out: wgpu::BindingResource<'_>,
    (b, h, w): (usize, usize, usize),
    s: AttnShape,
    extras: AttnExtras<'_>,
    stage: &'static str,
) -> Vec<Dispatch> {
    let pipeline = attention_pipeline(ctx, "main", attention_consts(s, table, extras.quant, ctx.uniform_reads()));
    let slice_words = s.window * s.window * s.head_dim;
    check_attention_fits(ctx, s);
    let batch = extras.batch.clone().unwrap_or(0..b);
    let qparams = extras.quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    let write_p = extras.probs.is_some() as u32;
    let probs = extras.probs.unwrap_or_else(|| ctx.sink());
    slice_groups(ctx, (h, w), s, batch, [slice_words, slice_words], ctx.uniform_reads())
        .into_iter()
        .map(|g| {
            let params = AttnParams { write_p, ..g.params.quantized(extras.quant) };
            let mut bindings = vec![(4, table.bind()), (5, out.clone()), (6, qparams.clone()), (7, probs.clone()), (8, table.bind())];
            bindings.extend(attention_operands(ctx, [q, k, v], (1, 12), g.starts));
            Dispatch::with_bindings(ctx, pipeline.clone(), &params, &bindings, [g.count as u32, 1, 1], stage)
        })
        .collect()
}

/// Words per slice of the integer attention's codes: q and k (per token, the
/// words of four codes and their sum), v (per d, the words of four tokens and their sum).
fn code_slice_words(s: AttnShape) -> [usize; 2] {
    let nt = s.window * s.window;
    [nt * (s.head_dim.div_ceil(4) + 1), s.head_dim * (nt / 4 + 1)]
}

/// Words of the integer attention's q/k codes (`[0]`) and v codes (`[1]`) for
/// `tokens` tokens.
pub fn window_code_words(tokens: usize, s: AttnShape) -> [usize; 2] {
    let slices = tokens / (s.window * s.window) * s.heads;
    code_slice_words(s).map(|w| w * slices)
}

/// Codes of window-ordered q, k or v (`transposed` for v) of `tokens` tokens for
/// the integer attention, with quantizer `q` applied to x·mult.
pub fn pack_window_codes(ctx: &GpuContext, [x, codes]: [&GpuBuffer; 2], tokens: usize, s: AttnShape, transposed: bool, (q, mult): (QuantRef<'_>, f32)) -> Dispatch {
    let nt = s.window * s.window;
    assert!(nt.is_multiple_of(4), "integer attention needs windows of a multiple of 4 tokens");
    let pipeline = ctx.pipeline(Shader::Quant, "pack_window_codes", &[Const::F32("LEVELS", q.levels)]);
    let slices = tokens / nt * s.heads;
    let params = LayOutParams {
        n: slices as u32,
        quantizer: q.row as u32 + 1,
        k: s.head_dim as u32,
        block_cols: nt as u32,
        slot: transposed as u32,
        total: 0,
        act_quantizer: 0,
        mult,
        group: 0,
        _pad: [0; 3],
    };
    let rows = slices * if transposed { s.head_dim } else { nt };
    Dispatch::with_bindings(ctx, pipeline, &params, &[(1, x.bind()), (2, q.params.bind()), (5, codes.bind())], grid_1d(rows), "quant")
}

/// Where the integer attention writes its output (tokens × heads·head_dim).
pub enum IntAttnOut<'a> {
    Floats(wgpu::BindingResource<'a>),
    /// As codes of quantizer row `.1` (proj's input), laid out as
    /// `CodeLayout::heads(heads·head_dim, head_dim)`.
    Codes(wgpu::BindingResource<'a>, usize),
}

/// The integer engine's window attention (`main_int`) on codes from
/// `pack_window_codes`, with the matmul quantizers at rows `quant.row`.. .
#[allow(clippy::too_many_arguments)]
pub fn window_attention_int(
    ctx: &GpuContext,
    [q, k, v]: [&GpuBuffer; 3],
    table: &GpuBuffer,
    out: IntAttnOut<'_>,
    (b, h, w): (usize, usize, usize),
    s: AttnShape,
    quant: QuantRef<'_>,
    stage: &'static str,
) -> Vec<Dispatch> {
    check_attention_fits(ctx, s);
    let pipeline = attention_pipeline(ctx, "main_int", attention_consts(s, table, Some(quant), ctx.uniform_reads()));
    let (floats, codes, out_quant) = match out {
        IntAttnOut::Floats(f) => (f, ctx.sink(), 0),
        IntAttnOut::Codes(c, row) => (ctx.sink(), c, row as u32 + 1),
    };
    slice_groups(ctx, (h, w), s, 0..b, code_slice_words(s), ctx.uniform_reads())
        .into_iter()
        .map(|g| {
            let params = AttnParams { out_quant, ..g.params.quantized(Some(quant)) };
            let mut bindings = vec![(4, table.bind()), (5, floats.clone()), (6, quant.params.bind()), (8, table.bind()), (18, codes.clone())];
            bindings.extend(attention_operands(ctx, [q, k, v], (9, 15), g.starts));
            Dispatch::with_bindings(ctx, pipeline.clone(), &params, &bindings, [g.count as u32, 1, 1], stage)
        })
        .collect()
}

/// The attention kernels' header constants; `uniform`: read operands through uniform windows.
pub(in crate::gpu) fn attention_consts(s: AttnShape, table: &GpuBuffer, quant: Option<QuantRef<'_>>, uniform: bool) -> [Const; 9] {
    [
        Const::U32("WS", s.window as u32),
        Const::U32("HD", s.head_dim as u32),
        Const::U32("HEADS", s.heads as u32),
        Const::U32("C", (s.heads * s.head_dim) as u32),
        Const::U32("SHIFT", s.shift as u32),
        Const::F32("SCALE", (s.head_dim as f64).powf(-0.5) as f32),
        Const::F32("LEVELS", quant.map_or(0.0, |q| q.levels)),
        Const::Bool("UNIFORM_READS", uniform),
        Const::U32("TABLE_VEC4", table.len.div_ceil(4) as u32),
    ]
}

/// The bindings of an attention's q, k and v (or their codes): on CPU drivers the
/// uniform windows from word `starts[0]` (q, k) and `starts[1]` (v) at bindings
/// `uniform`.., read by the `_rows` entries; on GPUs the whole buffers at `storage`...
fn attention_operands<'a>(ctx: &GpuContext, [q, k, v]: [&'a GpuBuffer; 3], (uniform, storage): (u32, u32), starts: [usize; 2]) -> [(u32, wgpu::BindingResource<'a>); 3] {
    if ctx.uniform_reads() {
        [(uniform, q.bind_window(starts[0])), (uniform + 1, k.bind_window(starts[0])), (uniform + 2, v.bind_window(starts[1]))]
    } else {
        [(storage, q.bind()), (storage + 1, k.bind()), (storage + 2, v.bind())]
    }
}

/// The forward attention's pipeline for `entry` (`main` or `main_int`): on CPU drivers
/// its `_rows` version (attention_rows.wgsl), which shares keys across subgroup lanes.
fn attention_pipeline(ctx: &GpuContext, entry: &str, consts: [Const; 9]) -> std::sync::Arc<wgpu::ComputePipeline> {
    if ctx.uniform_reads() {
        let consts = [&consts[..], &[Const::U32("LANES", ctx.rows_lanes() as u32), Const::U32("QL", 1)]].concat();
        return ctx.pipeline(Shader::AttentionRows, &format!("{entry}_rows"), &consts);
    }
    let consts = [&consts[..], &[Const::U32("QL", ctx.attention_lanes)]].concat();
    ctx.pipeline(Shader::Attention, entry, &consts)
}

/// The GPU attention kernels' workgroups (a window of one head, `attention_lanes`
/// invocations per query) fit the device.
fn check_attention_fits(ctx: &GpuContext, s: AttnShape) {
    if ctx.uniform_reads() {
        return;
    }
    let lanes = ctx.attention_lanes as usize;
    let (bytes, invocations) = (attention_workgroup_bytes(s, lanes), s.window * s.window * lanes);
    assert!(
        bytes <= ctx.limits.max_compute_workgroup_storage_size as usize && invocations <= ctx.limits.max_compute_invocations_per_workgroup as usize,
        "attention: window {} with {lanes} invocations per query needs {bytes} bytes of workgroup memory and {invocations} invocations per workgroup, more than the device has",
        s.window
    );
}

/// Workgroup memory of the GPU attention kernels with `lanes` invocations per query:
/// k and v (or their codes), the bias table, the regions and the lanes' partial sums
/// (counted with one lane too: the kernels still declare and reference those arrays).
fn attention_workgroup_bytes(s: AttnShape, lanes: usize) -> usize {
    let nt = s.window * s.window;
    let side = 2 * s.window - 1;
    let staged = (2 * nt * s.head_dim).max(nt * (s.head_dim.div_ceil(4) + 1) + s.head_dim * (nt / 4 + 1));
    let partial = nt * lanes * (2 * s.head_dim + 1);
    4 * (staged + side * side + nt + partial)
}

/// A group of consecutive window-head slices that one dispatch handles: its
/// parameters (geometry and where slice s0 starts in each binding) and the first
/// word of each uniform window (for buffers with `words[i]` words per slice).
pub(in crate::gpu) struct SliceGroup {
    pub params: AttnParams,
    pub count: usize,
    pub starts: [usize; 2],
}

/// The slice groups of batch items `batch`: as many slices as fit a uniform window
/// (`uniform`), else as many as one dispatch's grid holds.
pub(in crate::gpu) fn slice_groups(
    ctx: &GpuContext,
    (h, w): (usize, usize),
    s: AttnShape,
    batch: std::ops::Range<usize>,
    words: [usize; 2],
    uniform: bool,
) -> Vec<SliceGroup> {
    let (wy, wx) = (h / s.window, w / s.window);
    let per_image = wy * wx * s.heads;
    let align = ctx.uniform_align_words();
    let widest = words[0].max(words[1]);
    let per_dispatch = if uniform { (WINDOW_WORDS - align) / widest } else { ctx.limits.max_compute_workgroups_per_dimension as usize };
    assert!(per_dispatch > 0, "attention: one window of one head ({widest} words) exceeds a uniform binding");
    let (first, last) = (batch.start * per_image, batch.end * per_image);
    (first..last)
        .step_by(per_dispatch)
        .map(|s0| {
            let at = words.map(|sw| s0 * sw);
            // Storage reads start at word 0; the uniform windows at the aligned word before s0.
            let starts = if uniform { at.map(|a| a - a % align) } else { [0, 0] };
            let params = AttnParams {
                h: h as u32,
                w: w as u32,
                windows_x: wx as u32,
                quant: 0,
                write_p: 0,
                s0: s0 as u32,
                delta: (at[0] - starts[0]) as u32,
                p_slice0: first as u32,
                delta_v: (at[1] - starts[1]) as u32,
                out_quant: 0,
                _pad: [0; 2],
            };
            SliceGroup { params, count: per_dispatch.min(last - s0), starts }
        })
        .collect()
}
