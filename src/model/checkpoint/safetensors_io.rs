//! safetensors reading (any float or int dtype, widened to f32 / i64) and atomic writing.

use anyhow::{anyhow, bail, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::model::tensor::{StateDict, Tensor, TensorData};

/// Parses a whole safetensors file (errors name the problem, not the file).
pub(crate) fn parse_safetensors(bytes: &[u8]) -> Result<StateDict> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("not a valid safetensors file: {e}"))?;
    let mut sd = StateDict::new();
    for (name, view) in st.iter() {
        let data = convert(name, &view)?;
        sd.insert(name.to_string(), Tensor { shape: view.shape().to_vec(), data });
    }
    Ok(sd)
}

/// Widens one tensor's raw little-endian bytes to the StateDict's f32 / i64.
fn convert(name: &str, view: &TensorView<'_>) -> Result<TensorData> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => {
            TensorData::F32(d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        Dtype::F64 => TensorData::F32(d.chunks_exact(8).map(|c| f64::from_le_bytes(arr8(c)) as f32).collect()),
        Dtype::F16 => {
            TensorData::F32(d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        Dtype::BF16 => {
            TensorData::F32(d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        Dtype::I64 => TensorData::I64(d.chunks_exact(8).map(|c| i64::from_le_bytes(arr8(c))).collect()),
        Dtype::U8 => TensorData::U8(d.to_vec()),
        Dtype::I32 => TensorData::I64(
            d.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        ),
        other => bail!("tensor `{name}` has dtype {other:?}; only F32/F16/BF16/F64/I32/I64/U8 are read"),
    })
}

fn arr8(c: &[u8]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(c);
    b
}

/// Writes F32/I64/U8 tensors and string metadata as safetensors. The bytes go to a
/// temporary file in the same directory that is then renamed over `path`, so a
/// reader never sees a half-written file, even if we are killed mid-write.
pub fn save_safetensors(sd: &StateDict, metadata: &BTreeMap<String, String>, path: &Path) -> Result<()> {
    let bytes = serialize(sd, metadata).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    crate::data::write_atomic(path, &bytes)
}

fn serialize(sd: &StateDict, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let raw: Vec<(&str, Dtype, &[usize], Vec<u8>)> = sd
        .iter()
        .map(|(k, t)| {
            let (dtype, bytes) = match &t.data {
                TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::U8(v) => (Dtype::U8, v.clone()),
            };
            (k.as_str(), dtype, t.shape.as_slice(), bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for (k, dtype, shape, bytes) in &raw {
        let view = TensorView::new(*dtype, shape.to_vec(), bytes)
            .map_err(|e| anyhow!("tensor `{k}`: shape {shape:?} does not match its data ({e})"))?;
        views.push((*k, view));
    }
    let info: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let mut bytes = safetensors::serialize(views, info).map_err(|e| anyhow!("cannot serialize: {e}"))?;
    sort_header_keys(&mut bytes)?;
    Ok(bytes)
}

/// The crate writes the metadata in HashMap order, which changes from run to run;
/// rewriting the JSON header with sorted keys (same entries, same length) makes the
/// same tensors and metadata always give the same bytes, and so the same SHA-256.
fn sort_header_keys(bytes: &mut [u8]) -> Result<()> {
    let n = u64::from_le_bytes(arr8(&bytes[..8])) as usize;
    let header = &mut bytes[8..8 + n];
    let text = std::str::from_utf8(header)?.trim_end();
    let sorted = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(text)?)?;
    anyhow::ensure!(sorted.len() == text.len(), "safetensors header changed length when sorted");
    header[..sorted.len()].copy_from_slice(&sorted);
    Ok(())
}

/// The string metadata (`__metadata__`) of a safetensors file; empty if it has none.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    Ok(meta.metadata().clone().unwrap_or_default().into_iter().collect())
}
