//! SwinIR: configuration, checkpoints, weights, the CPU reference and the GPU graph.

pub mod backward;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod graph;
pub mod tensor;
pub mod weights;

pub use config::SwinConfig;
pub use tensor::{StateDict, Tensor, TensorData};
pub use weights::SwinWeights;
