//! Named SwinIR-light checkpoints: `--weights swinir-light-x2` resolves to the
//! official `.pth` in a local cache, fetching it from the SwinIR GitHub release
//! on first use.
//!
//! Cache location: `$SWINQ_CACHE`, else `$XDG_CACHE_HOME/swinq`, else
//! `$HOME/.cache/swinq`. `$SWINQ_WEIGHTS_MIRROR` replaces the release URL
//! prefix (air-gapped mirrors, tests).

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// One downloadable checkpoint. `sha256`/`bytes` are `None` where we have no
/// pinned value; such files are still downloaded and their hash is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownWeights {
    pub name: &'static str,
    pub file: &'static str,
    /// The upscaling factor the name promises.
    pub scale: usize,
    pub sha256: Option<&'static str>,
    pub bytes: Option<u64>,
}

/// Official SwinIR-light (classical-SR "lightweight" task) checkpoints.
pub const KNOWN: &[KnownWeights] = &[
    KnownWeights {
        name: "swinir-light-x2",
        file: "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth",
        scale: 2,
        sha256: Some("193b229909ca89cd8b55de9c9e7fce146ae759d59dfcd78d8feb9dd1d6fa0fd7"),
        bytes: Some(17_147_989),
    },
    KnownWeights {
        name: "swinir-light-x3",
        file: "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3.pth",
        scale: 3,
        sha256: None,
        bytes: None,
    },
    KnownWeights {
        name: "swinir-light-x4",
        file: "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4.pth",
        scale: 4,
        sha256: None,
        bytes: None,
    },
];

/// Where the official files are published.
pub const RELEASE_URL: &str = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0";

// Short connect/resolve timeouts so an offline machine fails within seconds
// instead of hanging; the body itself may legitimately take a while.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

impl KnownWeights {
    /// Download URL below `base` (normally [`RELEASE_URL`]).
    pub fn url(&self, base: &str) -> String {
        format!("{}/{}", base.trim_end_matches('/'), self.file)
    }
}

/// Look up a model by its short name or official file name, ignoring case.
pub fn lookup(spec: &str) -> Option<&'static KnownWeights> {
    KNOWN
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(spec) || k.file.eq_ignore_ascii_case(spec))
}

/// Cache directory for downloaded weights (see module docs for the order).
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SWINQ_CACHE") {
        return dir;
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return xdg.join("swinq");
    }
    // No HOME (odd containers): fall back to a relative dir rather than failing.
    var("HOME")
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("swinq")
}

/// URL prefix to download from: `$SWINQ_WEIGHTS_MIRROR` or the GitHub release.
pub fn release_base() -> String {
    std::env::var("SWINQ_WEIGHTS_MIRROR")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| RELEASE_URL.to_string())
}

/// Resolve a `--weights` value: an existing path is returned as is; a known
/// model name resolves to the cached file, downloading it if needed.
pub fn resolve_weights(spec: &str) -> Result<PathBuf> {
    resolve_weights_with(spec, &cache_dir(), &release_base())
}

/// [`resolve_weights`] with an explicit cache dir and URL prefix (no env reads).
pub fn resolve_weights_with(spec: &str, cache: &Path, base_url: &str) -> Result<PathBuf> {
    if spec.is_empty() {
        bail!("--weights is empty (SWINQ_WEIGHTS set to nothing?): give a checkpoint path or a model name");
    }
    let as_path = Path::new(spec);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    let known = lookup(spec).ok_or_else(|| {
        let names: Vec<_> = KNOWN.iter().map(|k| k.name).collect();
        anyhow!(
            "`{spec}`: no such file, and not a known model name (known: {})",
            names.join(", ")
        )
    })?;
    let dest = cache.join(known.file);
    if is_cached(known, &dest) {
        return Ok(dest);
    }
    let url = known.url(base_url);
    download_verified(known, &url, &dest).map_err(|e| {
        anyhow!(
            "{} is not in the cache and could not be downloaded ({e:#}). \
             Download {url} and put it at {}, or pass --weights PATH",
            known.name,
            dest.display()
        )
    })?;
    Ok(dest)
}

/// For a `--weights` model name, an error if the resolved file `path` holds a ×`scale`
/// model other than the name's (x3 and x4 have no pinned hash that would catch it).
pub fn check_named_scale(spec: &str, path: &Path, scale: usize) -> Result<()> {
    let Some(known) = lookup(spec).filter(|_| !Path::new(spec).exists()) else {
        return Ok(());
    };
    if scale != known.scale {
        bail!(
            "{}: the cached file for {} is a ×{scale} model, not ×{}; delete it to download the official file again",
            path.display(),
            known.name,
            known.scale
        );
    }
    Ok(())
}

/// Cheap validity check for an already-cached file: existence plus the pinned
/// size. The full hash was checked when it was downloaded, so we don't re-hash
/// 17 MB on every run.
fn is_cached(known: &KnownWeights, dest: &Path) -> bool {
    let Ok(meta) = fs::metadata(dest) else {
        return false;
    };
    match known.bytes {
        Some(want) if meta.len() != want => {
            eprintln!(
                "{}: cached {} has {} bytes, expected {want}; fetching it again",
                known.name,
                dest.display(),
                meta.len()
            );
            false
        }
        _ => meta.is_file(),
    }
}

/// Removes the `.part` file unless disarmed, so failures never leave debris.
struct PartGuard<'a>(Option<&'a Path>);

impl Drop for PartGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Download `url` to `<dest>.part`, check size/hash, then rename onto `dest`,
/// so `dest` only ever holds a complete, verified file.
fn download_verified(known: &KnownWeights, url: &str, dest: &Path) -> Result<()> {
    let dir = dest
        .parent()
        .context("cache path has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let part = part_path(dest);
    let mut guard = PartGuard(Some(&part));
    let _removed_at_ctrl_c = crate::interrupt::track_temp(&part);

    eprintln!("downloading {url}\n  -> {}", dest.display());
    let (len, digest) = fetch_to(url, &part, known.bytes)?;
    check_download(known, len, &digest)?;
    fs::rename(&part, dest).with_context(|| format!("renaming {} into place", part.display()))?;
    guard.0 = None;
    Ok(())
}

/// `<dest>.part`, next to the final file so the rename stays on one filesystem.
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Stream the body into `part` while hashing; returns (bytes, hex sha256).
fn fetch_to(url: &str, part: &Path, expect_len: Option<u64>) -> Result<(u64, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .build()
        .into();
    let mut resp = agent.get(url).call()?;
    let total = resp.body().content_length().or(expect_len);
    let mut reader = resp.body_mut().as_reader();

    let file = File::create(part).with_context(|| format!("creating {}", part.display()))?;
    let mut out = BufWriter::new(file);
    let bar = progress_bar(total);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).context("reading response body")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        len += n as u64;
        bar.set_position(len);
    }
    // Flush + fsync before the rename so a crash can't leave a short final file.
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    bar.finish_and_clear();
    Ok((len, hex(&hasher.finalize())))
}

/// Byte progress bar on stderr (indicatif hides it when stderr isn't a tty).
fn progress_bar(total: Option<u64>) -> ProgressBar {
    match total {
        Some(n) => {
            let bar = ProgressBar::new(n);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}") {
                bar.set_style(style);
            }
            bar
        }
    }
}

/// Compare against pinned size/hash; without a pinned hash, report ours so it
/// can be pinned later.
fn check_download(known: &KnownWeights, len: u64, digest: &str) -> Result<()> {
    if let Some(want) = known.bytes {
        if len != want {
            bail!("downloaded {len} bytes, expected {want}");
        }
    }
    match known.sha256 {
        Some(want) if !want.eq_ignore_ascii_case(digest) => {
            bail!("sha256 mismatch: got {digest}, expected {want}")
        }
        Some(_) => eprintln!("sha256 {digest} (verified)"),
        None => eprintln!("sha256 {digest} (no pinned hash for this file)"),
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
