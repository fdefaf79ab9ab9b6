//! Reading checkpoints: official PyTorch `.pth` files (zip + pickle, read safely) and safetensors.
//!
//! The format is recognised from the file's first bytes, not its extension. Every
//! error is one line that starts with the file's path.

mod pickle;
mod pth;
mod safetensors_io;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::tensor::StateDict;
use super::weights::SwinWeights;

pub use safetensors_io::{read_safetensors_metadata, save_safetensors};

/// Reads a `.pth` (torch.save zip) or `.safetensors` checkpoint into a state dict.
///
/// For `.pth` files the state dict is `params` if present, else `params_ema`, else
/// the pickled dict itself; a `module.` prefix on every key is removed. The
/// `attn_mask` buffers are kept (the weights layer ignores them). Safetensors keys
/// are returned unchanged.
pub fn load_state_dict(path: &Path) -> Result<StateDict> {
    load_any(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Loads a checkpoint and validates it as a SwinIR model.
pub fn load_weights(path: &Path) -> Result<SwinWeights> {
    let sd = load_state_dict(path)?;
    SwinWeights::from_state_dict(&sd).map_err(|e| {
        // swinq's own files say what they are in their metadata.
        let swinq_format = read_safetensors_metadata(path).ok().and_then(|m| m.get("format").filter(|f| f.starts_with("swinq-")).cloned());
        match swinq_format {
            Some(f) => anyhow!("{}: a swinq quantized model ({f}), not a float checkpoint; give the float checkpoint it was made from", path.display()),
            None => anyhow!("{}: {e:#}", path.display()),
        }
    })
}

/// SHA-256 of a file's contents, lowercase hex (to record which checkpoint a model came from).
pub fn sha256_file(path: &Path) -> Result<String> {
    let run = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    };
    run().map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
}

/// Which reader a file needs, judged from its first bytes.
enum Format {
    Pth,
    Safetensors,
}

fn load_any(path: &Path) -> Result<StateDict> {
    let mut f = File::open(path).map_err(|e| anyhow!("cannot open checkpoint: {e}"))?;
    let mut head = [0u8; 9];
    let n = read_up_to(&mut f, &mut head).map_err(|e| anyhow!("cannot read: {e}"))?;
    match sniff(&head[..n])? {
        Format::Pth => {
            f.seek(SeekFrom::Start(0)).map_err(|e| anyhow!("cannot read: {e}"))?;
            pth::load_pth(BufReader::new(f))
        }
        Format::Safetensors => {
            let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read: {e}"))?;
            safetensors_io::parse_safetensors(&bytes)
        }
    }
}

/// Fills `buf` as far as the file allows (short files are diagnosed by `sniff`).
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Zip files start with `PK`; safetensors with a u64 header length and then `{`.
fn sniff(head: &[u8]) -> Result<Format> {
    match head {
        [] => bail!("file is empty"),
        [b'P', b'K', ..] => Ok(Format::Pth),
        [.., b'{'] if head.len() == 9 => Ok(Format::Safetensors),
        // Pre-1.6 torch.save wrote a bare pickle stream (it starts with PROTO).
        [0x80, ..] => bail!("legacy (non-zip) torch.save format is not supported: re-save it with PyTorch ≥ 1.6"),
        _ => bail!("neither a PyTorch zip checkpoint nor a safetensors file"),
    }
}
