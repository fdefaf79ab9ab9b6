//! Host-side launchers of the kernels: each uploads nothing, binds existing
//! buffers and returns a recorded `Dispatch`.

use bytemuck::{Pod, Zeroable};

use super::{grid_1d, Const, Dispatch, GpuBuffer, GpuContext, Shader};
use crate::model::weights::{Conv3x3, LayerNorm, Linear};

/// A linear layer or 3×3 convolution on the GPU: weight (out, in·taps) and bias.
pub struct GpuLinear {
    pub weight: GpuBuffer,
    pub bias: GpuBuffer,
    pub out_dim: usize,
    /// Inner dimension of the matmul (in, or in·9 for a convolution).
    pub k: usize,
}

impl GpuLinear {
    pub fn new(ctx: &GpuContext, label: &str, weight: &[f32], bias: &[f32], out_dim: usize) -> Self {
        Self {
            weight: GpuBuffer::from_slice(ctx, label, weight),
            bias: GpuBuffer::from_slice(ctx, label, bias),
            out_dim,
            k: weight.len() / out_dim,
        }
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
    has_residual: u32,
    img_h: u32,
    img_w: u32,
    cin: u32,
    act_quant: u32,
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

/// A matmul's weights: the layer's own, or a fake-quantized copy of them.
#[derive(Clone, Copy)]
pub struct Weights<'a> {
    pub weight: &'a GpuBuffer,
    pub bias: &'a GpuBuffer,
    pub out_dim: usize,
    pub k: usize,
}

impl GpuLinear {
    pub fn weights(&self) -> Weights<'_> {
        Weights { weight: &self.weight, bias: &self.bias, out_dim: self.out_dim, k: self.k }
    }

    /// The same layer with another weight tensor of the same shape.
    pub fn weights_with<'a>(&'a self, weight: &'a GpuBuffer) -> Weights<'a> {
        Weights { weight, ..self.weights() }
    }
}

/// One matmul: out[m, n] = x·Wᵀ + b (+GELU) (+residual), x optionally fake-quantized.
pub struct Matmul<'a> {
    pub x: wgpu::BindingResource<'a>,
    pub layer: Weights<'a>,
    pub out: wgpu::BindingResource<'a>,
    pub m: usize,
    pub input: MatmulInput,
    pub gelu: bool,
    pub residual: Option<wgpu::BindingResource<'a>>,
    pub quant: Option<QuantRef<'a>>,
    pub stage: &'static str,
}

impl<'a> Matmul<'a> {
    /// A plain token matmul; set the other fields with struct update syntax.
    pub fn tokens(x: wgpu::BindingResource<'a>, layer: Weights<'a>, out: wgpu::BindingResource<'a>, m: usize, stage: &'static str) -> Self {
        Self { x, layer, out, m, input: MatmulInput::Tokens, gelu: false, residual: None, quant: None, stage }
    }
}

pub fn matmul(ctx: &GpuContext, a: Matmul<'_>) -> Dispatch {
    let (mode, img_h, img_w) = match a.input {
        MatmulInput::Tokens => (0, 0, 0),
        MatmulInput::Conv3x3 { h, w } => (1, h, w),
    };
    let levels = a.quant.map_or(0.0, |q| q.levels);
    let consts = [Const::U32("A_MODE", mode), Const::Bool("GELU", a.gelu), Const::F32("LEVELS", levels)];
    let pipeline = ctx.pipeline(Shader::Matmul, "main", &consts);
    let l = a.layer;
    let params = MatmulParams {
        m: a.m as u32,
        n: l.out_dim as u32,
        k: l.k as u32,
        has_residual: a.residual.is_some() as u32,
        img_h: img_h as u32,
        img_w: img_w as u32,
        cin: if mode == 1 { (l.k / 9) as u32 } else { 0 },
        act_quant: a.quant.map_or(0, |q| q.row as u32 + 1),
    };
    // Without a residual the slot is filled with the (read-only) bias buffer.
    let residual = a.residual.unwrap_or_else(|| l.bias.bind());
    let qparams = a.quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    let groups = [l.out_dim.div_ceil(64) as u32, a.m.div_ceil(64) as u32, 1];
    Dispatch::new(ctx, pipeline, &params, &[a.x, l.weight.bind(), l.bias.bind(), residual, a.out, qparams], groups, a.stage)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct QuantParams {
    n: u32,
    quantizer: u32,
    _pad: [u32; 2],
}

/// y = Q(x) elementwise with parameter row `q.row` (the fake-quantized weights).
pub fn fake_quant(ctx: &GpuContext, x: &GpuBuffer, y: &GpuBuffer, q: QuantRef<'_>) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Quant, "main", &[Const::F32("LEVELS", q.levels)]);
    let params = QuantParams { n: x.len as u32, quantizer: q.row as u32, _pad: [0; 2] };
    Dispatch::new(ctx, pipeline, &params, &[x.bind(), q.params.bind(), y.bind()], grid_1d(x.len), "quant")
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    tokens: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

pub const LN_EPS: f32 = 1e-5;

pub fn layer_norm(
    ctx: &GpuContext,
    x: wgpu::BindingResource<'_>,
    norm: &GpuNorm,
    out: wgpu::BindingResource<'_>,
    tokens: usize,
    stage: &'static str,
) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::LayerNorm, "main", &[]);
    let params = NormParams { tokens: tokens as u32, c: norm.gamma.len as u32, eps: LN_EPS, _pad: 0 };
    Dispatch::new(ctx, pipeline, &params, &[x, norm.gamma.bind(), norm.beta.bind(), out], grid_1d(tokens), stage)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttnParams {
    h: u32,
    w: u32,
    windows_x: u32,
    quant: u32,
    write_p: u32,
    b0: u32,
    _pad: [u32; 2],
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

/// Window attention over (b, h, w) tokens of q, k, v (each tokens × heads·head_dim),
/// output before the projection.
#[allow(clippy::too_many_arguments)]
pub fn window_attention(
    ctx: &GpuContext,
    qkv: [wgpu::BindingResource<'_>; 3],
    table: &GpuBuffer,
    out: wgpu::BindingResource<'_>,
    (b, h, w): (usize, usize, usize),
    s: AttnShape,
    extras: AttnExtras<'_>,
    stage: &'static str,
) -> Dispatch {
    let consts = [
        Const::U32("WS", s.window as u32),
        Const::U32("HD", s.head_dim as u32),
        Const::U32("HEADS", s.heads as u32),
        Const::U32("C", (s.heads * s.head_dim) as u32),
        Const::U32("SHIFT", s.shift as u32),
        Const::F32("SCALE", (s.head_dim as f64).powf(-0.5) as f32),
        Const::F32("LEVELS", extras.quant.map_or(0.0, |q| q.levels)),
    ];
    let pipeline = ctx.pipeline(Shader::Attention, "main", &consts);
    let (wy, wx) = (h / s.window, w / s.window);
    let batch = extras.batch.clone().unwrap_or(0..b);
    let params = AttnParams {
        h: h as u32,
        w: w as u32,
        windows_x: wx as u32,
        quant: extras.quant.map_or(0, |q| q.row as u32 + 1),
        write_p: extras.probs.is_some() as u32,
        b0: batch.start as u32,
        _pad: [0; 2],
    };
    let [q, k, v] = qkv;
    let qparams = extras.quant.map_or_else(|| ctx.empty(), |q| q.params.bind());
    let probs = extras.probs.unwrap_or_else(|| ctx.sink());
    let groups = [(wy * wx) as u32, s.heads as u32, batch.len() as u32];
    Dispatch::new(ctx, pipeline, &params, &[q, k, v, table.bind(), out, qparams, probs], groups, stage)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ImageParams {
    b: u32,
    ch: u32,
    h: u32,
    w: u32,
    hp: u32,
    wp: u32,
    scale: u32,
    img_range: f32,
    mean: [f32; 4],
}

/// Geometry of the image at the network's ends.
#[derive(Clone, Copy, Debug)]
pub struct ImageShape {
    pub b: usize,
    pub ch: usize,
    pub h: usize,
    pub w: usize,
    pub hp: usize,
    pub wp: usize,
    pub scale: usize,
    pub img_range: f32,
    pub mean: [f32; 3],
}

impl ImageShape {
    fn params(&self) -> ImageParams {
        ImageParams {
            b: self.b as u32,
            ch: self.ch as u32,
            h: self.h as u32,
            w: self.w as u32,
            hp: self.hp as u32,
            wp: self.wp as u32,
            scale: self.scale as u32,
            img_range: self.img_range,
            mean: [self.mean[0], self.mean[1], self.mean[2], 0.0],
        }
    }
}

/// Planar (b, ch, h, w) image → padded, mean-shifted tokens (b, hp, wp, ch).
pub fn prepare(ctx: &GpuContext, src: &GpuBuffer, dst: &GpuBuffer, s: &ImageShape) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Image, "prepare", &[]);
    let n = s.b * s.hp * s.wp * s.ch;
    Dispatch::new(ctx, pipeline, &s.params(), &[src.bind(), dst.bind()], grid_1d(n), "input")
}

/// Upsampler conv output tokens (b, hp, wp, ch·s²) → cropped planar (b, ch, s·h, s·w).
pub fn finish(ctx: &GpuContext, src: &GpuBuffer, dst: &GpuBuffer, s: &ImageShape) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Image, "finish", &[]);
    let n = s.b * s.ch * s.h * s.scale * s.w * s.scale;
    Dispatch::new(ctx, pipeline, &s.params(), &[src.bind(), dst.bind()], grid_1d(n), "output")
}
