//! GPU memory: what swinq's storage buffers hold, an optional cap on it
//! (`--gpu-memory`), and work that allocates turned into an error, not wgpu's panic,
//! when the adapter runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;

use super::GpuContext;

/// The bytes of the storage buffers alive on one device, and the cap on them.
pub struct MemoryAccount {
    held: Arc<AtomicU64>,
    /// The cap, u64::MAX for none.
    limit: AtomicU64,
}

impl Default for MemoryAccount {
    fn default() -> Self {
        Self { held: Arc::default(), limit: AtomicU64::new(u64::MAX) }
    }
}

/// One buffer's share of its device's account, given back when the buffer drops.
pub struct Held {
    bytes: u64,
    held: Arc<AtomicU64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl MemoryAccount {
    /// Records a new buffer of `bytes`.
    pub fn hold(&self, bytes: u64) -> Held {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        Held { bytes, held: self.held.clone() }
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// Work that needs more GPU memory than the adapter has, or than `--gpu-memory` allows.
#[derive(Debug, thiserror::Error)]
#[error("not enough GPU memory on `{adapter}` for {what}: {reason}")]
pub struct OutOfGpuMemory {
    pub adapter: String,
    pub what: String,
    pub reason: String,
}

const MIB: u64 = 1 << 20;

impl GpuContext {
    /// Storage-buffer bytes swinq holds on this device now.
    pub fn held_bytes(&self) -> u64 {
        self.memory.held()
    }

    /// Caps swinq's storage buffers at `limit` bytes (`--gpu-memory`): work that
    /// would pass it fails as out of memory. None lifts the cap.
    pub fn set_memory_limit(&self, limit: Option<u64>) {
        self.memory.limit.store(limit.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Runs `make`, which creates the buffers of `what`. When the driver runs out of
    /// memory on the way (Vulkan and DX12 report it past 95 % of their budget), or
    /// the buffers alive afterwards pass the `--gpu-memory` cap, what `make` built is
    /// dropped and the result is an [`OutOfGpuMemory`] error. Validation errors
    /// inside stay bugs, as wgpu's default handler treats them, unless they follow
    /// from a failed allocation.
    pub fn allocating<T>(&self, what: &str, make: impl FnOnce() -> Result<T>) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let made = make();
        let oom = pollster::block_on(oom.pop());
        let validation = pollster::block_on(validation.pop());
        let held = self.held_bytes();
        let reason = match (oom, self.memory.limit.load(Ordering::Relaxed)) {
            (Some(e), _) => Some(format!("the driver ran out of memory ({e})")),
            (None, limit) if held > limit => Some(format!("it takes swinq to {} MiB, above --gpu-memory {}", held.div_ceil(MIB), limit / MIB)),
            _ => None,
        };
        if let Some(reason) = reason {
            drop(made);
            self.wait();
            return Err(OutOfGpuMemory { adapter: self.info.name.clone(), what: what.to_string(), reason }.into());
        }
        if let Some(e) = validation {
            panic!("wgpu validation error while allocating {what}: {e}");
        }
        made
    }
}

/// The largest n below `limit` for which `fits(n)` holds (0 if none), by bisection,
/// for work whose memory grows with n (`fits(limit)` is known to fail).
pub fn largest_fitting(limit: usize, mut fits: impl FnMut(usize) -> Result<bool>) -> Result<usize> {
    let (mut lo, mut hi) = (0, limit);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
