//! LayerNorm (layernorm.wgsl, layernorm_rows.wgsl).

use bytemuck::{Pod, Zeroable};

use super::{GpuNorm, QuantRef};
use crate::gpu::{grid_groups, Const, Dispatch, GpuContext, Shader};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    tokens: u32,
    c: u32,
    eps: f32,
    quant: u32,
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
    let params = NormParams { tokens: tokens as u32, c: norm.gamma.len as u32, eps: LN_EPS, quant: 0 };
    // Both variants bind every slot the file declares (the unused ones get dummies).
    let b = [(1, x), (2, norm.gamma.bind()), (3, norm.beta.bind()), (4, out), (5, ctx.sink()), (6, ctx.empty())];
    layer_norm_dispatch(ctx, params, None, &b, stage)
}

/// LayerNorm whose output goes straight to the integer engine as codes of quantizer `q`.
pub fn layer_norm_codes(ctx: &GpuContext, x: wgpu::BindingResource<'_>, norm: &GpuNorm, codes: wgpu::BindingResource<'_>, tokens: usize, q: QuantRef<'_>) -> Dispatch {
    let params = NormParams { tokens: tokens as u32, c: norm.gamma.len as u32, eps: LN_EPS, quant: q.row as u32 + 1 };
    let b = [(1, x), (2, norm.gamma.bind()), (3, norm.beta.bind()), (4, ctx.sink()), (5, codes), (6, q.params.bind())];
    layer_norm_dispatch(ctx, params, Some(q.levels), &b, "layernorm")
}

/// Tokens each subgroup of the CPU drivers' LayerNorm (`rows`) normalizes.
const LN_ROW_TOKENS: usize = 8;

/// Words of the staged LayerNorm's tile: at most this many, whole tokens.
const LN_TILE_WORDS: usize = 8192;

/// The LayerNorm entry for this device (`staged` on GPUs, `rows`, a subgroup per token,
/// on CPU drivers) with its constants; `levels` for the codes variant.
fn layer_norm_dispatch(ctx: &GpuContext, params: NormParams, levels: Option<f32>, b: &[(u32, wgpu::BindingResource<'_>)], stage: &'static str) -> Dispatch {
    let c = params.c as usize;
    let tokens_per_group = (LN_TILE_WORDS / c).clamp(1, 64);
    let consts = [
        Const::Bool("CODES", levels.is_some()),
        Const::F32("LEVELS", levels.unwrap_or(0.0)),
        Const::U32("TOKENS", tokens_per_group as u32),
        Const::U32("TILE", (tokens_per_group * c) as u32),
    ];
    let tokens = params.tokens as usize;
    if ctx.uniform_reads() {
        // Quads per lane for the smallest subgroups, workgroups for the largest.
        let (min_lanes, max_lanes) = (ctx.rows_lanes(), (ctx.info.subgroup_max_size as usize).clamp(1, 64));
        let row = [Const::U32("GROUPS", c.div_ceil(4).div_ceil(min_lanes) as u32), Const::U32("ROW_TOKENS", LN_ROW_TOKENS as u32)];
        let pipeline = ctx.pipeline(Shader::LayerNormRows, "rows", &[&consts[..], &row].concat());
        let groups = tokens.div_ceil(LN_ROW_TOKENS * (64 / max_lanes));
        return Dispatch::with_bindings(ctx, pipeline, &params, b, grid_groups(groups), stage);
    }
    let pipeline = ctx.pipeline(Shader::LayerNorm, "staged", &consts);
    Dispatch::with_bindings(ctx, pipeline, &params, b, grid_groups(tokens.div_ceil(tokens_per_group)), stage)
}
