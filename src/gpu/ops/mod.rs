//! Host-side launchers of the forward's kernels (attention, image ends, linears and
//! convolutions, LayerNorm): the launchers bind existing buffers and return recorded
//! dispatches; the layer types (`GpuLinear`, `GpuNorm`, the bias tables) upload their
//! weights once. Phase 2's gradient kernels are launched from `gpu::backward` and
//! `gpu::attention_backward`, the bound search from `quant::search`, the sort from `sort`.

mod attention;
mod image;
mod linear;
mod norm;

pub use attention::*;
pub use image::*;
pub use linear::*;
pub use norm::*;
