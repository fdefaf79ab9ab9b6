//! The GPU: device, buffers, kernels and their host-side launchers, timing.

pub mod backward;
mod buffer;
mod context;
mod kernels;
mod memory;
pub mod attention_backward;
pub mod ops;
pub mod profiler;

pub use buffer::{read_bytes, GpuBuffer, Operand, WINDOW_WORDS};
pub use context::{adapters_report, AdapterChoice, GpuContext, MatmulKind};
pub use memory::{largest_fitting, OutOfGpuMemory};
pub use kernels::{grid_1d, grid_groups, record_passes, run_now, run_profiled, Const, Dispatch, PipelineCache, Shader};
