//! Phase 1: one FP forward over the calibration patches in which every quantizer
//! searches its bounds (and, with bias correction, its bias c) on its own input,
//! on the GPU.

use anyhow::Result;

use super::calib::Patches;
use super::search::Method;
use super::QParams;
use crate::gpu::GpuContext;
use crate::model::graph::{Calibration, Capture, GpuModel, Mode, Plan};

/// What phase 1 found, and what it held on the GPU.
pub struct Calibrated {
    /// Bounds and bias of every quantizer (c = 0 unless the method corrects the bias).
    pub params: Vec<QParams>,
    /// GPU bytes of the pass's activations and search scratch (the model's weights aside).
    pub gpu_bytes: u64,
}

/// Every quantizer's bounds and bias for `bits`-bit quantization (weights get
/// theirs from the same search).
pub fn calibrate(ctx: &GpuContext, model: &GpuModel, patches: &Patches, method: Method, bits: u32) -> Result<Calibrated> {
    calibrate_with_progress(ctx, model, patches, method, bits, |_, _| {})
}

/// [`calibrate`], calling `progress(done, total)` as the pass advances (counted in
/// kernel launches, about a hundred calls).
pub fn calibrate_with_progress(ctx: &GpuContext, model: &GpuModel, patches: &Patches, method: Method, bits: u32, progress: impl FnMut(usize, usize)) -> Result<Calibrated> {
    let dims = (patches.n, patches.size, patches.size);
    let what = format!("phase 1 on {} patches of {s}×{s} (fewer --patches need less)", patches.n, s = patches.size);
    let before = ctx.held_bytes();
    let cal = ctx.allocating(&what, || Calibration::new(ctx, model, method, bits, dims))?;
    cal.search_weights(ctx, model);
    let plan = ctx.allocating(&what, || Plan::with_mode(ctx, model, dims, Capture::Nothing, Mode::Calibrate(&cal)))?;
    let gpu_bytes = ctx.held_bytes() - before;
    plan.execute_in_parts(ctx, &patches.data, 100, progress);
    Ok(Calibrated { params: cal.read_params(ctx), gpu_bytes })
}
