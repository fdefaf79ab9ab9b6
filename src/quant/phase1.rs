//! Phase 1: one FP forward over the calibration patches in which every quantizer
//! searches its bounds (and, with bias correction, its bias c) on its own input,
//! on the GPU.

use anyhow::Result;

use super::calib::Patches;
use super::search::Method;
use super::QParams;
use crate::gpu::GpuContext;
use crate::model::graph::{Calibration, Capture, GpuModel, Mode, Plan};

/// Bounds and bias of every quantizer for `bits`-bit quantization (c = 0 unless
/// the method corrects the bias; weights get theirs from the same search).
pub fn calibrate(ctx: &GpuContext, model: &GpuModel, patches: &Patches, method: Method, bits: u32) -> Result<Vec<QParams>> {
    let dims = (patches.n, patches.size, patches.size);
    let cal = Calibration::new(ctx, model, method, bits, dims)?;
    cal.search_weights(ctx, model);
    let plan = Plan::with_mode(ctx, model, dims, Capture::Nothing, Mode::Calibrate(&cal))?;
    plan.forward(ctx, &patches.data, None);
    Ok(cal.read_params(ctx))
}
