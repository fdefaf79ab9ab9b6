//! Plain f32 CPU reference of the SwinIR forward, used by tests to check the GPU kernels.
