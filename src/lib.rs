//! swinq: 2DQuant+ low-bit quantization of SwinIR-light, run on the GPU through wgpu.

pub mod bench;
pub mod data;
pub mod eval;
pub mod gpu;
pub mod interrupt;
pub mod model;
pub mod progress;
pub mod quant;
pub mod report;
pub mod sort;
pub mod upscale;
pub mod weights_registry;
