//! Reading checkpoints: official PyTorch `.pth` files (zip + pickle, read safely) and safetensors.

use anyhow::Result;
use std::path::Path;

use super::tensor::StateDict;

/// Reads a `.pth` or `.safetensors` checkpoint into a state dict.
pub fn load_state_dict(_path: &Path) -> Result<StateDict> {
    anyhow::bail!("checkpoint reading not implemented yet")
}
