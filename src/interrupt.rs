//! Ctrl-C (and SIGTERM or SIGHUP). While a phase 2 runs (`graceful`), the first one
//! asks it to stop after the current iteration with its state saved, so that `--resume`
//! loses nothing; otherwise, or at a second one, the process ends at once (exit status
//! 130). Either way the temporary files of writes in progress are removed first: an
//! interrupted command leaves no `.swinq-*.tmp` file behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The exit status of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_STATUS: u8 = 130;

static GRACEFUL: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static EXIT_NOTE: Mutex<String> = Mutex::new(String::new());

/// Installs the Ctrl-C handler (once per process). Signals that were ignored when the
/// process started (SIGHUP under `nohup`, SIGINT for a background job) stay ignored.
pub fn install() -> Result<()> {
    #[cfg(unix)]
    let ignored: Vec<libc::c_int> = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].into_iter().filter(|&s| is_ignored(s)).collect();
    ctrlc::set_handler(on_ctrl_c).context("cannot install the Ctrl-C handler")?;
    #[cfg(unix)]
    for signal in ignored {
        // SAFETY: sets one signal's action to the predefined "ignore".
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    Ok(())
}

/// Whether `signal` is ignored now.
#[cfg(unix)]
fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: reads the action by setting "ignore" and putting the old action back at once.
    unsafe {
        let old = libc::signal(signal, libc::SIG_IGN);
        libc::signal(signal, old);
        old == libc::SIG_IGN
    }
}

fn on_ctrl_c() {
    if GRACEFUL.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst) {
        crate::note!("\ninterrupted: phase 2 stops after this iteration and saves its state (Ctrl-C again quits now)");
        return;
    }
    // A write that finishes meanwhile has renamed its file away: removing fails harmlessly.
    for path in TEMPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_file(path);
    }
    let note = EXIT_NOTE.lock().unwrap_or_else(|e| e.into_inner());
    if !note.is_empty() {
        crate::note!("\ninterrupted: {note}");
    }
    // _exit, not exit: the main thread may be inside the GPU driver, whose exit-time
    // cleanup could then hang or crash.
    #[cfg(unix)]
    // SAFETY: ends the process at once; nothing runs after it.
    unsafe {
        libc::_exit(EXIT_STATUS.into())
    }
    #[cfg(not(unix))]
    std::process::exit(EXIT_STATUS.into())
}

/// What the process says if Ctrl-C ends it from now on, e.g. how much of the work is
/// done and kept (empty: nothing).
pub fn set_exit_note(note: impl Into<String>) {
    *EXIT_NOTE.lock().unwrap_or_else(|e| e.into_inner()) = note.into();
}

/// Whether a graceful stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// While the returned guard lives, the first Ctrl-C only asks for a stop, and a closed
/// stdout or stderr (its reader ended by the same Ctrl-C) does not end the process:
/// log lines are written with [`note!`](crate::note) meanwhile.
pub fn graceful() -> Graceful {
    end_at_closed_pipe(false);
    GRACEFUL.store(true, Ordering::SeqCst);
    Graceful
}

pub struct Graceful;

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.store(false, Ordering::SeqCst);
        end_at_closed_pipe(true);
    }
}

/// Whether a write to a closed pipe ends the process quietly (SIGPIPE's default action,
/// as with other Unix tools; Rust's default makes the next print panic) or fails.
pub fn end_at_closed_pipe(end: bool) {
    #[cfg(unix)]
    // SAFETY: sets the action of one signal to one of the two predefined ones.
    unsafe {
        libc::signal(libc::SIGPIPE, if end { libc::SIG_DFL } else { libc::SIG_IGN });
    }
    #[cfg(not(unix))]
    let _ = end;
}

/// Registers the temporary file `path` for removal at Ctrl-C while the guard lives.
pub(crate) fn track_temp(path: &Path) -> TempFile {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
    TempFile(path.to_path_buf())
}

pub(crate) struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let mut temps = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = temps.iter().position(|p| *p == self.0) {
            temps.swap_remove(i);
        }
    }
}

/// The error a command returns when it stopped at a Ctrl-C (exit status 130).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}
