//! The quantized model file: safetensors with every quantizer's `N.lower`, `N.upper`
//! and `N.bias` (f32, shape `[1]`) under SPEC §6 names, the settings in the metadata,
//! and the float weights either referenced by SHA-256 or embedded.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::export::is_export_format;
use super::{all_names, QParams};
use crate::model::checkpoint::{load_state_dict, read_safetensors_metadata, save_safetensors};
use crate::model::{StateDict, SwinConfig, SwinWeights, Tensor};

pub const FORMAT: &str = "swinq-quant-1";

/// Prefix of embedded float weights.
const WEIGHTS_PREFIX: &str = "float.";

#[derive(Clone, Debug, PartialEq)]
pub struct QuantFile {
    pub bits: u32,
    pub method: String,
    pub scale: usize,
    /// SHA-256 of the float checkpoint's file the bounds belong to.
    pub source_sha256: String,
    /// SHA-256 of those float weights' values ([`SwinWeights::content_sha256`]), so that
    /// the file also fits the checkpoint's other format (`.pth` or its safetensors copy).
    /// None in files written before it was recorded.
    pub weights_sha256: Option<String>,
    /// Free-form calibration settings (patches, mode, seed, …), stored as metadata.
    pub settings: BTreeMap<String, String>,
    /// One entry per quantizer, in index order.
    pub params: Vec<QParams>,
}

impl QuantFile {
    /// Writes the file atomically; `embed` adds the float weights.
    pub fn save(&self, cfg: &SwinConfig, embed: Option<&SwinWeights>, path: &Path) -> Result<()> {
        if let Some(i) = self.params.iter().position(|p| ![p.lower, p.upper, p.bias].iter().all(|v| v.is_finite())) {
            bail!("{}: not written: quantizer {i}'s bounds are not finite", path.display());
        }
        let mut sd = StateDict::new();
        self.insert_params(cfg, "", &mut sd)?;
        if let Some(w) = embed {
            for (k, t) in w.to_state_dict() {
                sd.insert(format!("{WEIGHTS_PREFIX}{k}"), t);
            }
        }
        let weights = if embed.is_some() { "embedded" } else { "referenced" };
        save_safetensors(&sd, &self.metadata(cfg, FORMAT, &[("weights", weights.into())]), path)
    }

    /// Reads a quantized file for a model of configuration `cfg`.
    pub fn load(path: &Path, cfg: &SwinConfig) -> Result<Self> {
        let meta = read_quant_metadata(path)?;
        Self::from_parts(path, &meta, &load_state_dict(path)?, cfg, "", &["weights"])
    }

    /// A file saved with its float weights embedded (`--embed-weights`), read whole: those
    /// weights and the quantization. None for any other file.
    pub fn load_with_weights(path: &Path) -> Result<Option<(SwinWeights, Self)>> {
        let Ok(meta) = read_safetensors_metadata(path) else {
            return Ok(None);
        };
        let field = |k: &str| meta.get(k).map(String::as_str);
        if field("format") != Some(FORMAT) || field("weights") != Some("embedded") {
            return Ok(None);
        }
        let ctx = || path.display().to_string();
        let sd = load_state_dict(path)?;
        let float: StateDict =
            sd.iter().filter_map(|(k, t)| k.strip_prefix(WEIGHTS_PREFIX).map(|k| (k.to_string(), t.clone()))).collect();
        let weights = SwinWeights::from_state_dict(&float).with_context(ctx)?;
        let file = Self::from_parts(path, &meta, &sd, &weights.config, "", &["weights"])?;
        if file.weights_sha256.as_ref().is_some_and(|h| *h != weights.content_sha256()) {
            bail!("{}: the embedded float weights do not match the SHA-256 recorded with them", path.display());
        }
        Ok(Some((weights, file)))
    }

    /// Whether the bounds belong to `weights`, read from a file with SHA-256 `file_sha256`:
    /// the same file, or the same weight values in another file.
    pub fn made_for(&self, file_sha256: &str, weights: &SwinWeights) -> bool {
        self.source_sha256 == file_sha256 || self.weights_sha256.as_ref().is_some_and(|h| *h == weights.content_sha256())
    }

    /// Every quantizer's `{prefix}{name}.lower`, `.upper` and `.bias` (f32 [1]) into `sd`.
    pub(crate) fn insert_params(&self, cfg: &SwinConfig, prefix: &str, sd: &mut StateDict) -> Result<()> {
        let names = all_names(cfg);
        if names.len() != self.params.len() {
            bail!("{} quantizers for a model that has {}", self.params.len(), names.len());
        }
        for (n, q) in names.iter().zip(&self.params) {
            for (field, v) in [("lower", q.lower), ("upper", q.upper), ("bias", q.bias)] {
                sd.insert(format!("{prefix}{n}.{field}"), Tensor::f32(vec![1], vec![v]));
            }
        }
        Ok(())
    }

    /// The metadata of a file in `format`: the settings, what every swinq file records,
    /// and the format's own entry `own`.
    pub(crate) fn metadata(&self, cfg: &SwinConfig, format: &str, own: &[(&str, String)]) -> BTreeMap<String, String> {
        let mut meta = self.settings.clone();
        meta.insert("format".into(), format.into());
        meta.insert("bits".into(), self.bits.to_string());
        meta.insert("method".into(), self.method.clone());
        meta.insert("scale".into(), self.scale.to_string());
        meta.insert("source_sha256".into(), self.source_sha256.clone());
        if let Some(h) = &self.weights_sha256 {
            meta.insert("weights_sha256".into(), h.clone());
        }
        meta.insert("config".into(), cfg.describe());
        meta.extend(own.iter().map(|(k, v)| (k.to_string(), v.clone())));
        meta
    }

    /// The quantization stored in a file (`metadata` and `insert_params` with
    /// `prefix`) for a model of configuration `cfg`; `own` names the format's own
    /// metadata entries, which are not settings.
    pub(crate) fn from_parts(path: &Path, meta: &BTreeMap<String, String>, sd: &StateDict, cfg: &SwinConfig, prefix: &str, own: &[&str]) -> Result<Self> {
        let ctx = || path.display().to_string();
        let get = |k: &str| -> Result<String> {
            meta.get(k).cloned().with_context(|| format!("{}: metadata `{k}` missing", path.display()))
        };
        let params = all_names(cfg).iter().map(|n| read_params(path, sd, &format!("{prefix}{n}"))).collect::<Result<Vec<_>>>()?;
        let fixed = ["format", "bits", "method", "scale", "source_sha256", "weights_sha256", "config"];
        let settings = meta.iter().filter(|(k, _)| !fixed.contains(&k.as_str()) && !own.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Self {
            bits: bits_of(path, meta)?,
            method: get("method")?,
            scale: get("scale")?.parse().with_context(ctx)?,
            source_sha256: get("source_sha256")?,
            weights_sha256: meta.get("weights_sha256").cloned(),
            settings,
            params,
        })
    }
}

/// The bit width in a file's metadata, which must be 2 to 8.
pub(crate) fn bits_of(path: &Path, meta: &BTreeMap<String, String>) -> Result<u32> {
    let bits: u32 = meta.get("bits").with_context(|| format!("{}: metadata `bits` missing", path.display()))?.parse().with_context(|| path.display().to_string())?;
    ensure!((2..=8).contains(&bits), "{}: metadata `bits` is {bits}, not 2 to 8", path.display());
    Ok(bits)
}

/// A quantized file's metadata, or an error if it is not one.
fn read_quant_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let meta = read_safetensors_metadata(path)?;
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => Ok(meta),
        Some(f) if is_export_format(f) => bail!("{}: an exported model (`swinq export`), which runs alone: give it as --weights", path.display()),
        _ => bail!("{}: not a swinq quantized model (metadata `format` is not {FORMAT})", path.display()),
    }
}

/// One quantizer's `{key}.lower`, `.upper` and `.bias` from a file's tensors.
pub(crate) fn read_params(path: &Path, sd: &StateDict, key: &str) -> Result<QParams> {
    let field = |f: &str| -> Result<f32> {
        let t = sd.get(&format!("{key}.{f}")).with_context(|| format!("{}: quantizer `{key}.{f}` missing (file made for another architecture?)", path.display()))?;
        let v = t.as_f32().filter(|v| v.len() == 1).with_context(|| format!("{}: `{key}.{f}` is not one float", path.display()))?;
        if !v[0].is_finite() {
            bail!("{}: `{key}.{f}` is not finite", path.display());
        }
        Ok(v[0])
    };
    Ok(QParams { lower: field("lower")?, upper: field("upper")?, bias: field("bias")?, _pad: 0.0 })
}
