//! Host-side launchers of the kernels, one file per kernel family: each uploads
//! nothing, binds existing buffers and returns a recorded `Dispatch`.

mod attention;
mod image;
mod linear;
mod norm;

pub use attention::*;
pub use image::*;
pub use linear::*;
pub use norm::*;
