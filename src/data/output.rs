//! Output files: checked before the work that makes them, written atomically.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Write `bytes` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    persist_atomic(path.as_ref(), "tmp", |w| {
        w.write_all(bytes).map_err(|e| anyhow!("cannot write: {e}"))
    })
}

/// The file that writing `path` replaces: `path` itself, or the file a symbolic link
/// there points to (written through, as `cp` does). An error, before any long work whose
/// result goes to `path`, if its folder is missing or is a file, or if `path` is a
/// folder, a device or a pipe (which a rename would replace).
pub fn check_output_file(path: &Path) -> Result<PathBuf> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = if is_link {
        std::fs::canonicalize(path)
            .with_context(|| format!("{}: a symbolic link to a file that cannot be reached", path.display()))?
    } else {
        path.to_path_buf()
    };
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => bail!("{}: is a folder; give a file name", path.display()),
        Ok(m) if !m.is_file() => bail!("{}: not a regular file (a device or a pipe); swinq writes regular files only", path.display()),
        _ => {}
    }
    let dir = output_folder(&target);
    if !dir.is_dir() {
        let why = if dir.exists() { "is a file, not a folder" } else { "does not exist" };
        bail!("{}: cannot write there: {} {why}", path.display(), dir.display());
    }
    Ok(target)
}

/// An error if the model file `path` (safetensors) has an image's extension: most likely
/// a mistyped argument, and a model written there would hide among the images.
pub fn check_model_file_name(path: &Path) -> Result<()> {
    if super::image_io::is_image_file(path) {
        bail!("{}: a model file is written as safetensors; give it a .safetensors name", path.display());
    }
    Ok(())
}

/// An error if one of `outputs` is the same file as one of `inputs` (named by the
/// option that gave it), which writing that output would destroy.
pub fn check_not_an_input(outputs: &[&Path], inputs: &[(&str, &Path)]) -> Result<()> {
    // Outputs that do not exist yet cannot be inputs; usually none exists.
    let existing: Vec<(&Path, PathBuf)> = outputs.iter().filter_map(|o| Some((*o, std::fs::canonicalize(o).ok()?))).collect();
    if existing.is_empty() {
        return Ok(());
    }
    let canonical: HashMap<PathBuf, &str> = inputs.iter().filter_map(|(what, i)| Some((std::fs::canonicalize(i).ok()?, *what))).collect();
    for (output, out) in existing {
        if let Some(what) = canonical.get(&out) {
            bail!("{}: is also the {what}; writing it would destroy that file, give another output name", output.display());
        }
    }
    Ok(())
}

/// An error if the output folder `output` is, or lies inside, one of the input folders
/// `inputs` (named by the option that gave them), whose files it would mix with.
pub fn check_outside(output: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let out = resolved(output);
    for (what, input) in inputs {
        if std::fs::canonicalize(input).is_ok_and(|i| out.starts_with(i)) {
            bail!("{}: inside the {what} {}, whose files it would mix with; give another output folder", output.display(), input.display());
        }
    }
    Ok(())
}

/// `path` made absolute, with the links of its existing part resolved.
pub fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.ancestors()
        .find_map(|a| Some(std::fs::canonicalize(a).ok()?.join(abs.strip_prefix(a).ok()?)))
        .unwrap_or_else(|| abs.clone())
}

/// The folder a file at `path` goes into (`.` for a bare file name).
fn output_folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Runs `write` on a temp file beside the file `path` names, then renames it over that
/// file, so readers never see a half-written file.
pub(crate) fn persist_atomic(
    path: &Path,
    ext: &str,
    write: impl FnOnce(&mut BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| anyhow!("{}: {what}: {e}", path.display());
    let target = check_output_file(path)?;
    let tmp = tempfile::Builder::new()
        .prefix(".swinq-")
        .suffix(&format!(".{ext}.tmp"))
        .tempfile_in(output_folder(&target))
        // (the kind alone: the error's text names the temporary file, not `path`)
        .map_err(|e| fail("cannot create file", &e.kind()))?;
    let _removed_at_ctrl_c = crate::interrupt::track_temp(tmp.path());
    {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        w.flush().map_err(|e| fail("cannot write", &e))?;
    }
    // Temp files are created private (0600); give the result ordinary file permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    // On disk before the rename, so a crash never leaves a renamed but empty file.
    tmp.as_file().sync_all().map_err(|e| fail("cannot write", &e))?;
    // On failure the NamedTempFile inside the error is dropped, which deletes it.
    tmp.persist(&target)
        .map_err(|e| fail("cannot write", &e.error))?;
    Ok(())
}
