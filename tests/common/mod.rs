//! Shared by the integration tests: one GPU device per test binary (lavapipe
//! crashes when many are created at once), the shared data folder, random data
//! and the error measure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use swinq::gpu::{AdapterChoice, GpuContext};

/// The process-wide GPU. Fails (never skips) when no adapter is usable.
pub fn gpu() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = GpuContext::new(&AdapterChoice::from_cli(None))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter (CI uses lavapipe): {e:#}"));
        eprintln!("GPU tests on {}", ctx.describe());
        ctx
    })
}

/// ../shared beside the checkout, or $SWINQ_SHARED.
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("SWINQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(dir.join("golden").is_dir(), "shared data not found at {} (set SWINQ_SHARED)", dir.display());
    dir
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Uniform values in [lo, hi).
pub fn random(rng: &mut impl Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// ‖a − b‖ / ‖b‖ in f64.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Asserts the relative error and prints it (so test logs carry the numbers).
pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(got, want);
    eprintln!("{name}: relative error {e:.3e}");
    assert!(e < tol, "{name}: relative error {e:.3e} exceeds {tol:.0e}");
}
