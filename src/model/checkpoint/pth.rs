//! `torch.save` zip archives: `<archive>/data.pkl` (the pickled object) plus one
//! raw little-endian file per storage, `<archive>/data/<key>`.
//!
//! Errors here describe the problem only; `mod.rs` prefixes the file name.

use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::rc::Rc;
use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::{self, Pickle, StorageDtype, TensorRef, Value};
use crate::model::tensor::{StateDict, Tensor, TensorData};

/// data.pkl of SwinIR-light is 72 KB; anything near this limit is not a checkpoint.
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// One storage larger than this is refused rather than allocated.
const MAX_STORAGE_BYTES: u64 = 4 << 30;
/// Never pre-allocate more than this from a size the archive merely declares.
const MAX_PREALLOC: u64 = 64 << 20;

/// Reads the state dict out of a torch.save zip archive.
pub(crate) fn load_pth<R: Read + Seek>(reader: R) -> Result<StateDict> {
    let mut zip = ZipArchive::new(reader).map_err(zip_error)?;
    let prefix = archive_prefix(&zip)?;
    let big_endian = read_byteorder(&mut zip, &prefix)?;
    let pkl = read_entry(&mut zip, &format!("{prefix}/data.pkl"), MAX_PICKLE_BYTES)?;
    let (p, root) = pickle::unpickle(&pkl)?;
    let entries = select_state_dict(&p, &root)?;
    let mut storages = Storages { zip, prefix, cache: HashMap::new() };
    let mut sd = StateDict::new();
    for (key, t) in entries {
        let bytes = storages.get(&t.storage.key)?;
        let data = materialise(&key, &t, bytes, big_endian)?;
        sd.insert(key, Tensor { shape: t.size.clone(), data });
    }
    Ok(strip_module_prefix(sd))
}

/// A missing central directory is what a cut-off download looks like.
fn zip_error(e: ZipError) -> anyhow::Error {
    match e {
        ZipError::InvalidArchive(msg) => anyhow!("truncated or damaged zip archive ({msg})"),
        ZipError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => anyhow!("truncated zip archive ({e})"),
        ZipError::Io(e) => anyhow!("cannot read zip archive: {e}"),
        other => anyhow!("unreadable zip archive: {other}"),
    }
}

/// The archive folder name varies (`archive`, the file stem, ...): find `<x>/data.pkl`.
fn archive_prefix<R: Read + Seek>(zip: &ZipArchive<R>) -> Result<String> {
    let mut found: Vec<&str> = zip
        .file_names()
        .filter_map(|n| n.strip_suffix("/data.pkl"))
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .collect();
    found.sort_unstable();
    match found.first() {
        Some(p) => Ok((*p).to_string()),
        None => bail!("zip archive has no `<archive>/data.pkl`: not a torch.save checkpoint"),
    }
}

/// `byteorder` is absent in old files, which were always little endian.
fn read_byteorder<R: Read + Seek>(zip: &mut ZipArchive<R>, prefix: &str) -> Result<bool> {
    let name = format!("{prefix}/byteorder");
    if zip.index_for_name(&name).is_none() {
        return Ok(false);
    }
    let raw = read_entry(zip, &name, 16)?;
    match raw.as_slice() {
        b"little" => Ok(false),
        b"big" => Ok(true),
        other => bail!("unknown byte order `{}` in `byteorder`", String::from_utf8_lossy(other)),
    }
}

/// Reads one archive member, refusing sizes over `cap` and detecting truncation.
fn read_entry<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str, cap: u64) -> Result<Vec<u8>> {
    let entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(ZipError::FileNotFound) => bail!("`{name}` is missing from the archive"),
        Err(e) => return Err(zip_error(e)),
    };
    let size = entry.size();
    if size > cap {
        bail!("`{name}` declares {size} bytes, more than the {cap} a checkpoint may use");
    }
    // The declared size may lie: grow as data arrives instead of trusting it. One
    // byte past `size` lets the reader hit its end, where the zip crate checks the CRC.
    let mut buf = Vec::with_capacity(size.min(MAX_PREALLOC) as usize);
    entry.take(size + 1).read_to_end(&mut buf).map_err(|e| anyhow!("cannot read `{name}` from the archive: {e}"))?;
    if buf.len() as u64 != size {
        bail!("`{name}` holds {} bytes, its zip header says {size}", buf.len());
    }
    Ok(buf)
}

/// Picks the state dict: `params` (what SwinIR's test script loads for classical and
/// lightweight SR), then `params_ema`, else the top-level dict itself. Every entry must be a named tensor.
fn select_state_dict(p: &Pickle, root: &Value) -> Result<Vec<(String, Rc<TensorRef>)>> {
    if p.dict_items(root).is_none() {
        bail!("the pickled object is a {}, not a dict", root.kind());
    }
    let sd = ["params", "params_ema"]
        .iter()
        .find_map(|k| p.dict_get(root, k).filter(|v| p.dict_items(v).is_some()))
        .unwrap_or(root);
    let items = p.dict_items(sd).unwrap_or_default();
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let key = match k {
            Value::Str(s) => s.to_string(),
            other => bail!("state dict has a {} key, expected names", other.kind()),
        };
        match v {
            Value::Tensor(t) => out.push((key, t.clone())),
            other => bail!("state dict entry `{key}` is a {}, not a tensor", other.kind()),
        }
    }
    if out.is_empty() {
        bail!("the checkpoint holds no tensors (looked in `params`, `params_ema` and the top level)");
    }
    Ok(out)
}

/// Storage files, each read once (several tensors may view the same storage).
struct Storages<R> {
    zip: ZipArchive<R>,
    prefix: String,
    cache: HashMap<String, Vec<u8>>,
}

impl<R: Read + Seek> Storages<R> {
    fn get(&mut self, key: &str) -> Result<&[u8]> {
        if !self.cache.contains_key(key) {
            let bytes = read_entry(&mut self.zip, &format!("{}/data/{key}", self.prefix), MAX_STORAGE_BYTES)?;
            self.cache.insert(key.to_string(), bytes);
        }
        Ok(self.cache.get(key).map(Vec::as_slice).unwrap_or_default())
    }
}

/// Copies a (possibly strided, offset) view out of its storage into a contiguous tensor.
fn materialise(key: &str, t: &TensorRef, bytes: &[u8], big_endian: bool) -> Result<TensorData> {
    let dtype = t.storage.dtype;
    let es = dtype.size();
    let numel = t.size.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
    let numel = numel.ok_or_else(|| anyhow!("tensor `{key}` has an impossible size {:?}", t.size))?;
    let have = bytes.len() / es;
    if numel > 0 {
        let needed = reach(t).and_then(|r| r.checked_mul(es));
        let needed = needed.ok_or_else(|| anyhow!("tensor `{key}` addresses beyond any storage"))?;
        if needed > bytes.len() {
            bail!("storage `data/{}` holds {} bytes, tensor `{key}` needs {needed}", t.storage.key, bytes.len());
        }
    }
    // Stride-0 views could expand a tiny storage into a huge tensor: refuse.
    if numel > have.max(1) {
        bail!("tensor `{key}` has {numel} elements but its storage only {have}");
    }
    let elem = |e: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..es].copy_from_slice(&bytes[e * es..(e + 1) * es]);
        if big_endian {
            b[..es].reverse();
        }
        b
    };
    Ok(if dtype.is_float() {
        TensorData::F32(gather(t, numel, |e| as_f32(elem(e), dtype)))
    } else {
        TensorData::I64(gather(t, numel, |e| as_i64(elem(e), dtype)))
    })
}

/// One past the largest storage element the view touches (for a non-empty view).
fn reach(t: &TensorRef) -> Option<usize> {
    t.size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset.checked_add(1)?, |acc, (&n, &s)| acc.checked_add(n.checked_sub(1)?.checked_mul(s)?))
}

/// Visits the view's elements in row-major order; `reach` bounds every index.
fn gather<T>(t: &TensorRef, numel: usize, mut read: impl FnMut(usize) -> T) -> Vec<T> {
    let rank = t.size.len();
    let mut idx = vec![0usize; rank];
    let mut pos = t.offset;
    let mut out = Vec::with_capacity(numel);
    for _ in 0..numel {
        out.push(read(pos));
        // Odometer step: bump the last axis, carrying into earlier ones. `pos` only
        // moves to elements that exist, so it never leaves [offset, reach).
        for d in (0..rank).rev() {
            if idx[d] + 1 < t.size[d] {
                idx[d] += 1;
                pos += t.stride[d];
                break;
            }
            pos -= t.stride[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// Element bytes (little endian, zero padded) → f32; ints are converted too.
fn as_f32(b: [u8; 8], dtype: StorageDtype) -> f32 {
    match dtype {
        StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        StorageDtype::F64 => f64::from_le_bytes(b) as f32,
        StorageDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        StorageDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => as_i64(b, dtype) as f32,
    }
}

/// Element bytes (little endian, zero padded) → i64; floats are truncated.
fn as_i64(b: [u8; 8], dtype: StorageDtype) -> i64 {
    match dtype {
        StorageDtype::I64 => i64::from_le_bytes(b),
        StorageDtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        StorageDtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
        StorageDtype::I8 => i64::from(b[0] as i8),
        StorageDtype::U8 => i64::from(b[0]),
        StorageDtype::Bool => i64::from(b[0] != 0),
        _ => as_f32(b, dtype) as i64,
    }
}

/// Checkpoints saved from a DataParallel model prefix every key with `module.`.
fn strip_module_prefix(sd: StateDict) -> StateDict {
    if sd.is_empty() || !sd.keys().all(|k| k.starts_with("module.")) {
        return sd;
    }
    sd.into_iter().map(|(k, v)| (k["module.".len()..].to_string(), v)).collect()
}
