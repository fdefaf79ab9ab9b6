//! swinq: 2DQuant+ low-bit quantization of SwinIR-light, run on the GPU through wgpu.

pub mod data;
pub mod gpu;
pub mod model;
