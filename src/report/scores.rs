//! Scores a report has already computed, one file per model and set under
//! `REPORT_DIR/scores/`, so that a report that was interrupted, or is run again with
//! one more model or set, evaluates only what it has not evaluated before.
//!
//! A stored result is used only when everything that decides its numbers is the same:
//! swinq version, adapter, float checkpoint, quantized file, engine, tiling, scale and
//! the bytes of the evaluated images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{write_atomic, LrSource, Pair};
use crate::eval::EvalReport;
use crate::model::checkpoint::sha256_file;

/// What a model's score on one set depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreKey {
    pub swinq_version: String,
    pub adapter: String,
    pub checkpoint_sha256: String,
    /// SHA-256 of the quantized file; None for the float model.
    pub model_sha256: Option<String>,
    pub engine: String,
    pub tile: Option<usize>,
    pub scale: usize,
    pub dataset: String,
    /// SHA-256 over the SHA-256 of each evaluated LR and HR file, in order.
    pub images_sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    key: ScoreKey,
    result: EvalReport,
}

/// The `scores/` folder of a report; `reuse` false ignores what is stored (and
/// overwrites it).
pub struct ScoreStore {
    dir: PathBuf,
    reuse: bool,
}

/// What a lookup found.
pub enum Lookup {
    Found(EvalReport),
    /// Nothing stored for this model and set.
    Missing,
    /// Stored, but made with other settings (or unreadable): evaluated again.
    Stale,
}

impl ScoreStore {
    pub fn new(report_dir: &Path, reuse: bool) -> Self {
        Self { dir: report_dir.join("scores"), reuse }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `scores/<label>__<set>.json`, with characters unsafe in file names replaced.
    pub fn path(&self, label: &str, dataset: &str) -> PathBuf {
        self.dir.join(format!("{}__{}.json", sanitize(label), sanitize(dataset)))
    }

    pub fn lookup(&self, label: &str, key: &ScoreKey) -> Lookup {
        let path = self.path(label, &key.dataset);
        if !self.reuse || !path.exists() {
            return Lookup::Missing;
        }
        match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Stored>(&b).ok()) {
            Some(s) if s.key == *key => Lookup::Found(s.result),
            _ => Lookup::Stale,
        }
    }

    pub fn save(&self, label: &str, key: &ScoreKey, result: &EvalReport) -> Result<()> {
        let stored = Stored { key: key.clone(), result: result.clone() };
        let json = serde_json::to_string_pretty(&stored)?;
        write_atomic(self.path(label, &key.dataset), json.as_bytes())
    }
}

/// Hash of the evaluated images' files (LR then HR of each pair; an LR image made from
/// the HR one counts as its scale).
pub fn images_sha256(pairs: &[Pair]) -> Result<String> {
    let file_hash = |f: &Path| sha256_file(f).with_context(|| format!("{}", f.display()));
    let mut h = Sha256::new();
    for p in pairs {
        match &p.lr {
            LrSource::File(lr) => h.update(file_hash(lr)?),
            LrSource::FromHr(s) => h.update(format!("HR downscaled x{s}")),
        }
        h.update(file_hash(&p.hr)?);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// File-name-safe version of a set, image or model name.
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}
