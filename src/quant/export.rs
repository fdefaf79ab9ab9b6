//! The deployable quantized model (SPEC §6): one safetensors file with the integer
//! codes of the quantized linear weights (b bits each, packed densely per row), every quantizer's
//! bounds and bias, the float tensors the engine keeps (convolutions, LayerNorms,
//! biases, relative-position tables) and the settings. Quantizer data sits under
//! `quant.{name}.…` (SPEC §6 names): `lower`, `upper`, `bias` (f32, shape `[1]`), and for
//! weights `codes` (u8) and `shape` (i64 [out, in]); float tensors keep their
//! checkpoint names. Readable from Python with the safetensors package.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::file::{bits_of, read_params, QuantFile};
use super::{code, index, levels, name, step, Slot, LINEARS};
use crate::model::checkpoint::{load_state_dict, read_safetensors_metadata, save_safetensors};
use crate::model::weights::{block_prefix, Linear};
use crate::model::{StateDict, SwinWeights, Tensor, TensorData};

pub const FORMAT: &str = "swinq-int-2";
/// The first format, still read: codes of b ≤ 4 bits two per byte, wider ones one per byte.
const FORMAT_1: &str = "swinq-int-1";
const QUANT: &str = "quant.";

/// Codes of `width` ≤ 8 bits as a little-endian bit stream: code i holds bits
/// i·width .. (i+1)·width, so 3-bit codes take 3/8 of a byte each.
pub fn pack(codes: &[u32], width: u32) -> Vec<u8> {
    let w = width as usize;
    let mut out = vec![0u8; (codes.len() * w).div_ceil(8)];
    for (i, &c) in codes.iter().enumerate() {
        let (byte, shift) = (i * w / 8, i * w % 8);
        let v = (c as u16) << shift;
        out[byte] |= v as u8;
        if shift + w > 8 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// The first `n` codes of `bytes` (inverse of `pack`); None when `bytes` is too short.
pub fn unpack(bytes: &[u8], n: usize, width: u32) -> Option<Vec<u32>> {
    let w = width as usize;
    if bytes.len() * 8 < n * w {
        return None;
    }
    let byte_at = |i: usize| bytes.get(i).copied().unwrap_or(0) as u16;
    Some((0..n).map(|i| ((byte_at(i * w / 8 + 1) << 8 | byte_at(i * w / 8)) >> (i * w % 8) & ((1 << w) - 1)) as u32).collect())
}

/// Bits per stored code of a file of `format` at `bits`.
fn code_width(format: &str, bits: u32) -> u32 {
    match format {
        FORMAT_1 if bits <= 4 => 4,
        FORMAT_1 => 8,
        _ => bits,
    }
}

/// Linear `i` (q, k, v, proj, fc1, fc2) of block `j` in group `r`, as a weight
/// slice with its (out, in) shape and the checkpoint key of the tensor it lives in.
fn linear_weight(w: &SwinWeights, r: usize, j: usize, i: usize) -> (&[f32], usize, usize) {
    let b = &w.groups[r].blocks[j];
    let c = w.config.embed_dim;
    let l: &Linear = match i {
        0..=2 => return (&b.qkv.weight[i * c * c..(i + 1) * c * c], c, c),
        3 => &b.proj,
        4 => &b.fc1,
        _ => &b.fc2,
    };
    (&l.weight, l.out_dim, l.in_dim)
}

/// Checkpoint key of the tensor holding linear `i`, and the row it starts at.
fn checkpoint_key(prefix: &str, i: usize, out: usize) -> (String, usize) {
    match i {
        0..=2 => (format!("{prefix}.attn.qkv.weight"), i * out),
        _ => (format!("{prefix}.{}.weight", LINEARS[i]), 0),
    }
}

/// Bytes of the parts of an exported model.
#[derive(Clone, Copy, Debug)]
pub struct ExportSizes {
    pub file: u64,
    /// Quantized weights: packed codes.
    pub codes: u64,
    /// Float tensors and quantizer parameters.
    pub float: u64,
}

/// Writes the deployable model of `weights` quantized by `q` to `path` (atomically).
pub fn export(weights: &SwinWeights, q: &QuantFile, path: &Path) -> Result<ExportSizes> {
    let cfg = &weights.config;
    let lv = levels(q.bits);
    let mut sd = weights.to_state_dict();
    // Checks that q has one quantizer per quantizer of the model, before they are indexed.
    q.insert_params(cfg, QUANT, &mut sd)?;
    let mut codes_bytes = 0u64;
    let mut block = 0;
    for (r, g) in weights.groups.iter().enumerate() {
        for j in 0..g.blocks.len() {
            for i in 0..LINEARS.len() {
                let (w, out, inp) = linear_weight(weights, r, j, i);
                let qp = &q.params[index(block, Slot::Weight(i))];
                let packed: Vec<u8> = w.chunks(inp).flat_map(|row| pack(&row.iter().map(|&x| code(x, qp, lv)).collect::<Vec<_>>(), q.bits)).collect();
                codes_bytes += packed.len() as u64;
                let n = name(cfg, block, Slot::Weight(i));
                let row_bytes = packed.len() / out;
                sd.insert(format!("{QUANT}{n}.codes"), Tensor { shape: vec![out, row_bytes], data: TensorData::U8(packed) });
                sd.insert(format!("{QUANT}{n}.shape"), Tensor { shape: vec![2], data: TensorData::I64(vec![out as i64, inp as i64]) });
                sd.remove(&checkpoint_key(&block_prefix(r, j), i, out).0);
            }
            block += 1;
        }
    }
    let codes = format!("{}-bit codes, a little-endian bit stream per row", q.bits);
    save_safetensors(&sd, &q.metadata(cfg, FORMAT, &[("codes", codes)]), path)?;
    let file = std::fs::metadata(path).with_context(|| path.display().to_string())?.len();
    Ok(ExportSizes { file, codes: codes_bytes, float: file - codes_bytes })
}

/// Whether `path` is an exported model (by its metadata).
pub fn is_exported(path: &Path) -> bool {
    read_safetensors_metadata(path).is_ok_and(|m| m.get("format").is_some_and(|f| is_export_format(f)))
}

/// Whether a file's metadata `format` is one of an exported model's.
pub fn is_export_format(format: &str) -> bool {
    matches!(format, FORMAT | FORMAT_1)
}

/// Reads an exported model: the float model with every quantized weight replaced by
/// its dequantized value l + s·r (which quantizes back to the same code r), and the
/// quantization.
pub fn load(path: &Path) -> Result<(SwinWeights, QuantFile)> {
    let ctx = || path.display().to_string();
    let meta = read_safetensors_metadata(path)?;
    let format = meta.get("format").map(String::as_str).unwrap_or_default();
    ensure!(is_export_format(format), "{}: not an exported swinq model (format {FORMAT})", path.display());
    let bits = bits_of(path, &meta)?;
    let width = code_width(format, bits);
    let all = load_state_dict(path)?;
    let field = |n: &str, f: &str| -> Result<&Tensor> { all.get(&format!("{QUANT}{n}.{f}")).with_context(|| format!("{}: `{QUANT}{n}.{f}` missing", path.display())) };
    let mut sd: StateDict = all.iter().filter(|(k, _)| !k.starts_with(QUANT)).map(|(k, t)| (k.clone(), t.clone())).collect();
    let lv = levels(bits);
    // Dequantize every linear's codes into the tensor it belongs to.
    let mut parts: BTreeMap<String, Vec<(usize, Vec<f32>, usize)>> = BTreeMap::new();
    for key in all.keys().filter_map(|k| k.strip_prefix(QUANT)?.strip_suffix(".codes")) {
        let (prefix, i) = (0..LINEARS.len())
            .find_map(|i| key.strip_suffix(&format!(".{}.weight", LINEARS[i])).map(|p| (p.to_string(), i)))
            .with_context(|| format!("{}: codes of an unknown tensor `{key}`", path.display()))?;
        let shape = match &field(key, "shape")?.data {
            TensorData::I64(v) if v.len() == 2 && v.iter().all(|&d| d > 0) => (v[0] as usize, v[1] as usize),
            _ => bail!("{}: `{QUANT}{key}.shape` is not two positive integers", path.display()),
        };
        let bytes = field(key, "codes")?.as_u8().with_context(|| format!("{}: `{QUANT}{key}.codes` is not u8", path.display()))?;
        let row_bytes = (shape.1 * width as usize).div_ceil(8);
        let bad = || format!("{}: `{QUANT}{key}.codes` are not {} rows of {} {bits}-bit codes", path.display(), shape.0, shape.1);
        ensure!(bytes.len() == shape.0 * row_bytes, bad());
        let p = read_params(path, &all, &format!("{QUANT}{key}"))?;
        let s = step(&p, lv);
        let mut w = Vec::with_capacity(shape.0 * shape.1);
        for row in bytes.chunks(row_bytes) {
            let codes = unpack(row, shape.1, width).with_context(bad)?;
            ensure!(codes.iter().all(|&c| c as f32 <= lv), bad());
            w.extend(codes.iter().map(|&c| p.lower + s * c as f32));
        }
        let (target, row0) = checkpoint_key(&prefix, i, shape.0);
        parts.entry(target).or_default().push((row0, w, shape.1));
    }
    for (key, mut rows) in parts {
        rows.sort_by_key(|r| r.0);
        let inp = rows[0].2;
        let data: Vec<f32> = rows.into_iter().flat_map(|r| r.1).collect();
        sd.insert(key, Tensor::f32(vec![data.len() / inp, inp], data));
    }
    let weights = SwinWeights::from_state_dict(&sd).with_context(ctx)?;
    let q = QuantFile::from_parts(path, &meta, &all, &weights.config, QUANT, &["codes"])?;
    Ok((weights, q))
}
