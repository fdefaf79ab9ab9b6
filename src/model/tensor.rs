//! A named host tensor as read from a checkpoint, before it is given a role in the model.

use std::collections::BTreeMap;

/// Element data of a checkpoint tensor. Float tensors are kept as f32; integer
/// tensors (only `relative_position_index` in SwinIR) as i64; bytes (the packed
/// weight codes of an exported quantized model) as u8.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data: TensorData::F32(data) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_u8(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::U8(v) => Some(v),
            _ => None,
        }
    }

    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            TensorData::F32(_) => "float32",
            TensorData::I64(_) => "int64",
            TensorData::U8(_) => "uint8",
        }
    }
}

/// A checkpoint's state dict: parameter name -> tensor, sorted by name.
pub type StateDict = BTreeMap<String, Tensor>;
