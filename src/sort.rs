//! GPU radix sort of 32-bit keys (and key-value pairs, and f32 values) already on
//! the GPU, in WGSL (shaders/sort.wgsl).
//!
//! Least-significant-digit radix sort, four passes of 8-bit digits. Each pass is
//! reduce-then-scan: a histogram per tile of `256 · KPT` keys (one workgroup of 256
//! invocations per tile), a multi-level exclusive scan of the digit-major table
//! of tile histograms, and a stable scatter that sorts the tile by digit in
//! workgroup memory (two 4-bit counting splits with packed 16-bit counters) and
//! writes each digit's keys as one contiguous run. No workgroup waits on another
//! (no decoupled look-back or spinning), so it is correct on every backend,
//! lavapipe included. The passes ping-pong between the caller's buffer and a
//! scratch buffer, so the result lands back in the caller's buffer.
//!
//! On CPU drivers the histogram's columns are runs of [`RUN_KEYS`] keys instead, each
//! counted and then scattered by one invocation alone: there workgroup memory and
//! barriers cost more than coalescing buys (4–5× the keys/s on lavapipe).
//!
//! f32 values are sorted as order-preserving u32 keys: the first pass maps the
//! bits as it reads them, the last pass maps them back as it writes, and the
//! first histogram pass flags NaN, after which no pass writes anything.

use anyhow::{bail, ensure, Result};

use crate::gpu::{read_bytes, Const, Dispatch, GpuBuffer, GpuContext, MatmulKind, Shader};

/// Invocations per workgroup (fixed in the shader).
const WG: usize = 256;
/// Bits per digit and number of passes over 32-bit keys.
const DIGIT_BITS: u32 = 8;
const PASSES: u32 = 32 / DIGIT_BITS;
const RADIX: usize = 1 << DIGIT_BITS;

/// Pass flags (shaders/sort.wgsl): map f32 bits to keys on read, back on write;
/// flag NaN in the histogram pass.
const F32_IN: u32 = 1;
const F32_OUT: u32 = 2;
const NAN_CHECK: u32 = 4;
const PAIRS: u32 = 8;

/// Keys per run (histogram column) of the CPU drivers' runs strategy: long enough
/// that the 256 counters a run clears, writes and reads cost little per key.
pub const RUN_KEYS: u32 = 4096;
/// Invocations per workgroup of the runs kernels (RUNS_WG in the shader).
const RUNS_WG: usize = 16;

/// Uniform slots in the parameter buffer (a sort launches at most 4 · 7).
const PARAM_SLOTS: usize = 64;

/// The error `sort_f32` returns for NaN input.
pub const NAN_ERROR: &str = "cannot sort: the tensor holds NaN";

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SortParams {
    n: u32,
    nb: u32,
    shift: u32,
    flag: u32,
}

/// Order-preserving map of an f32 to a u32 key (flip the sign bit of positives,
/// every bit of negatives): `a.total_cmp(&b) == f32_to_key(a).cmp(&f32_to_key(b))`.
pub fn f32_to_key(x: f32) -> u32 {
    let u = x.to_bits();
    u ^ if u >> 31 == 1 { 0xffff_ffff } else { 0x8000_0000 }
}

/// Inverse of [`f32_to_key`].
pub fn key_to_f32(k: u32) -> f32 {
    f32::from_bits(k ^ if k >> 31 == 1 { 0x8000_0000 } else { 0xffff_ffff })
}

/// Radix sorter with its scratch buffers; create one per context and reuse it
/// (the buffers grow to the largest sort seen).
pub struct RadixSorter {
    /// Keys per invocation: 16 where the device has 32 KiB of workgroup memory
    /// (tiles of 4096 keys), 4 on the WebGPU minimum of 16 KiB. The scan's tiles
    /// have the same size.
    kpt: u32,
    /// Keys per run for the runs strategy (CPU drivers); None: workgroup tiles.
    run: Option<u32>,
    alt_keys: Option<GpuBuffer>,
    alt_vals: Option<GpuBuffer>,
    /// Level 0 of the scan (the tile histograms, then one slot for the NaN flag),
    /// then the per-tile sums of each level.
    levels: Vec<GpuBuffer>,
    /// One u32: the placeholder offsets binding of the top scan level.
    dummy: GpuBuffer,
    /// The launches' uniform parameters, one aligned slot each.
    params: wgpu::Buffer,
    slot: u64,
}

/// One kernel launch before its bind group exists.
struct Launch<'a> {
    entry: &'static str,
    params: SortParams,
    buffers: Vec<wgpu::BindingResource<'a>>,
    groups: [u32; 3],
}

/// Workgroup memory the scatter kernel needs with `kpt` keys per invocation
/// (the histogram kernel needs 8 KiB).
fn workgroup_bytes(kpt: u32) -> u32 {
    let tile = WG as u32 * kpt;
    ((tile + tile / 32) + 2048 + 272) * 4
}

/// Grid of `blocks` workgroups, 2-D past 65535 (the shaders skip the excess).
fn grid_blocks(blocks: usize) -> [u32; 3] {
    if blocks <= 65535 {
        [blocks.max(1) as u32, 1, 1]
    } else {
        [65535, blocks.div_ceil(65535) as u32, 1]
    }
}

/// Makes `slot` hold a buffer of at least `len` elements.
fn grow(slot: &mut Option<GpuBuffer>, ctx: &GpuContext, label: &str, len: usize) {
    if slot.as_ref().is_none_or(|b| b.len < len) {
        *slot = Some(GpuBuffer::zeros(ctx, label, len));
    }
}

impl RadixSorter {
    /// The sorter for this device: runs on CPU drivers (with the matmul's `rows`
    /// strategy, so `SWINQ_MATMUL=tiled` gives them the GPU kernels), else the
    /// largest workgroup tiles that fit.
    pub fn new(ctx: &GpuContext) -> Self {
        let avail = ctx.limits.max_compute_workgroup_storage_size;
        let kpt = [16, 8, 4].into_iter().find(|&k| workgroup_bytes(k) <= avail).unwrap_or(4);
        Self::with_layout(ctx, kpt, (ctx.matmul == MatmulKind::Rows).then_some(RUN_KEYS))
    }

    /// A sorter with `kpt` keys per invocation (4, 8 or 16) and, for the runs
    /// strategy, `run` keys per run: for tests of either strategy on any device and
    /// of the smaller tiles that devices with 16 KiB of workgroup memory use.
    #[doc(hidden)]
    pub fn with_layout(ctx: &GpuContext, kpt: u32, run: Option<u32>) -> Self {
        assert!(matches!(kpt, 4 | 8 | 16), "keys per invocation must be 4, 8 or 16");
        assert!(workgroup_bytes(kpt) <= ctx.limits.max_compute_workgroup_storage_size, "not enough workgroup memory");
        assert!(run != Some(0), "runs need at least one key");
        let slot = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(std::mem::size_of::<SortParams>() as u64);
        let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sort.params"),
            size: slot * PARAM_SLOTS as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            kpt,
            run,
            alt_keys: None,
            alt_vals: None,
            levels: Vec::new(),
            dummy: GpuBuffer::zeros(ctx, "sort.dummy", 1),
            params,
            slot,
        }
    }

    /// Entries of the scan's tiles (and keys of the histogram's tiles unless the
    /// sorter uses runs).
    pub fn tile(&self) -> usize {
        WG * self.kpt as usize
    }

    /// Keys per histogram column: a run, or a workgroup's tile.
    fn column(&self) -> usize {
        self.run.map_or(self.tile(), |r| r as usize)
    }

    /// What the sorter's histogram columns are, for logs and benches.
    pub fn describe(&self) -> String {
        match self.run {
            Some(r) => format!("runs of {r} keys per invocation"),
            None => format!("workgroup tiles of {} keys", self.tile()),
        }
    }

    fn consts(&self) -> [Const; 2] {
        [Const::U32("KPT", self.kpt), Const::U32("RUN", self.run.unwrap_or(1))]
    }

    /// Sorts the first `n` u32 of `keys` ascending, in place (records and
    /// submits; does not wait).
    pub fn sort_u32(&mut self, ctx: &GpuContext, keys: &GpuBuffer, n: usize) -> Result<()> {
        self.check(ctx, keys, n, "keys")?;
        if n <= 1 {
            return Ok(());
        }
        self.prepare(ctx, n, false);
        let mut ls = Vec::new();
        self.passes(ctx, &mut ls, keys, self.alt_keys.as_ref().expect("grown"), None, n, 0);
        self.submit(ctx, ls);
        Ok(())
    }

    /// Sorts the first `n` (key, value) pairs by key, in place, stably (equal keys
    /// keep their order); values are any 4-byte elements. Records and submits.
    pub fn sort_pairs_u32(&mut self, ctx: &GpuContext, keys: &GpuBuffer, values: &GpuBuffer, n: usize) -> Result<()> {
        self.check(ctx, keys, n, "keys")?;
        self.check(ctx, values, n, "values")?;
        ensure!(keys.buffer != values.buffer, "sort_pairs_u32: keys and values must be different buffers");
        if n <= 1 {
            return Ok(());
        }
        self.prepare(ctx, n, true);
        let mut ls = Vec::new();
        let vals = (values, self.alt_vals.as_ref().expect("grown"));
        self.passes(ctx, &mut ls, keys, self.alt_keys.as_ref().expect("grown"), Some(vals), n, 0);
        self.submit(ctx, ls);
        Ok(())
    }

    /// Sorts the first `n` f32 of `data` ascending in `f32::total_cmp` order
    /// (-0.0 before +0.0, ±Inf at the ends), in place. NaN anywhere is an error
    /// and leaves `data` untouched. Waits for the GPU (to read back the NaN flag).
    pub fn sort_f32(&mut self, ctx: &GpuContext, data: &GpuBuffer, n: usize) -> Result<()> {
        self.check(ctx, data, n, "data")?;
        if n == 0 {
            return Ok(());
        }
        self.prepare(ctx, n, false);
        let mut ls = Vec::new();
        self.passes(ctx, &mut ls, data, self.alt_keys.as_ref().expect("grown"), None, n, F32_IN | F32_OUT);
        self.submit(ctx, ls);
        if read_bytes(ctx, &self.levels[0].buffer, self.flag_offset(n), 4) != [0; 4] {
            bail!(NAN_ERROR);
        }
        Ok(())
    }

    fn check(&self, ctx: &GpuContext, buf: &GpuBuffer, n: usize, what: &str) -> Result<()> {
        ensure!(n <= buf.len, "cannot sort {n} elements: the {what} buffer holds {}", buf.len);
        let bytes = n as u64 * 4;
        ensure!(
            bytes <= ctx.max_binding() && n < (u32::MAX as usize) - self.tile().max(self.column()),
            "cannot sort {n} elements on the GPU: {bytes} bytes exceed the device's largest storage binding ({} bytes)",
            ctx.max_binding()
        );
        Ok(())
    }

    /// Lengths of the scan levels for `n` keys: the digit-major histograms of the
    /// columns, then one sum per scan tile of the level below, up to a level of one tile.
    fn level_lens(&self, n: usize) -> Vec<usize> {
        let tile = self.tile();
        let mut lens = vec![RADIX * n.div_ceil(self.column())];
        while *lens.last().expect("non-empty") > tile {
            let next = lens.last().expect("non-empty").div_ceil(tile);
            lens.push(next);
        }
        lens
    }

    /// Byte offset of the NaN flag in level 0 (right after the histograms).
    fn flag_offset(&self, n: usize) -> u64 {
        (RADIX * n.div_ceil(self.column())) as u64 * 4
    }

    /// Grows the scratch buffers for sorts of up to `n` keys, so that
    /// [`Self::record_u32`] (which takes `&self`) can record them.
    pub fn reserve(&mut self, ctx: &GpuContext, n: usize) {
        self.grow_all(ctx, n, false);
    }

    /// Records, without submitting, the ascending in-place sort of the first `n`
    /// u32 of `keys`, for command streams that are replayed later (calibration
    /// plans). Each launch owns its parameters, and a first launch clears the NaN
    /// slot, which a larger sort's histograms may have overwritten. Needs
    /// [`Self::reserve`] for at least `n` first.
    pub fn record_u32(&self, ctx: &GpuContext, keys: &GpuBuffer, n: usize) -> Result<Vec<Dispatch>> {
        self.check(ctx, keys, n, "keys")?;
        if n <= 1 {
            return Ok(Vec::new());
        }
        let lens = self.level_lens(n);
        let alt = self.alt_keys.as_ref().filter(|b| b.len >= n);
        ensure!(
            alt.is_some() && self.levels.len() >= lens.len() && self.levels.iter().zip(&lens).enumerate().all(|(i, (b, &l))| b.len >= l + usize::from(i == 0)),
            "record_u32: reserve({n}) first"
        );
        let nb = n.div_ceil(self.column());
        let params = SortParams { n: n as u32, nb: nb as u32, shift: 0, flag: 0 };
        let pipeline = ctx.pipeline(Shader::Sort, "clear_flag", &self.consts());
        let flag = [(2, self.levels[0].bind_range(0, lens[0] + 1))];
        let mut ds = vec![Dispatch::with_bindings(ctx, pipeline, &params, &flag, [1, 1, 1], "sort")];
        let mut ls = Vec::new();
        self.passes(ctx, &mut ls, keys, alt.expect("checked"), None, n, 0);
        ds.extend(ls.into_iter().map(|l| {
            let pipeline = ctx.pipeline(Shader::Sort, l.entry, &self.consts());
            Dispatch::new(ctx, pipeline, &l.params, &l.buffers, l.groups, "sort")
        }));
        Ok(ds)
    }

    /// Grows the scratch buffers for `n` keys and clears the NaN flag.
    fn prepare(&mut self, ctx: &GpuContext, n: usize, pairs: bool) {
        self.grow_all(ctx, n, pairs);
        // Queue-ordered: after earlier sorts' use of the slot, before this one's.
        ctx.queue.write_buffer(&self.levels[0].buffer, self.flag_offset(n), &[0; 4]);
    }

    fn grow_all(&mut self, ctx: &GpuContext, n: usize, pairs: bool) {
        grow(&mut self.alt_keys, ctx, "sort.keys", n);
        if pairs {
            grow(&mut self.alt_vals, ctx, "sort.values", n);
        }
        for (i, mut len) in self.level_lens(n).into_iter().enumerate() {
            if i == 0 {
                len += 1; // the NaN flag
            }
            if i < self.levels.len() {
                if self.levels[i].len < len {
                    self.levels[i] = GpuBuffer::zeros(ctx, "sort.scan", len);
                }
            } else {
                self.levels.push(GpuBuffer::zeros(ctx, "sort.scan", len));
            }
        }
    }

    /// The four digit passes: keys from `a` to `b` and back, twice, so that the
    /// sorted keys (and values) end in `a`. `f32` (F32_IN | F32_OUT or 0) maps
    /// f32 bits on the first read and the last write, and checks for NaN.
    #[allow(clippy::too_many_arguments)]
    fn passes<'a>(
        &'a self,
        ctx: &'a GpuContext,
        ls: &mut Vec<Launch<'a>>,
        a: &'a GpuBuffer,
        b: &'a GpuBuffer,
        vals: Option<(&'a GpuBuffer, &'a GpuBuffer)>,
        n: usize,
        f32: u32,
    ) {
        let nb = n.div_ceil(self.column());
        let lens = self.level_lens(n);
        let (groups, [hist, scatter]) = match self.run {
            Some(_) => (grid_blocks(nb.div_ceil(RUNS_WG)), ["hist_runs", "scatter_runs"]),
            None => (grid_blocks(nb), ["hist", "scatter"]),
        };
        let level0 = &self.levels[0];
        for pass in 0..PASSES {
            let first = pass == 0;
            let last = pass == PASSES - 1;
            let (src, dst) = if pass % 2 == 0 { (a, b) } else { (b, a) };
            let shift = pass * DIGIT_BITS;
            let nan_check = if f32 != 0 && first { NAN_CHECK } else { 0 };
            let f32_in = if first { f32 & F32_IN } else { 0 };
            let f32_out = if last { f32 & F32_OUT } else { 0 };
            let params = |flag| SortParams { n: n as u32, nb: nb as u32, shift, flag };
            // The histograms and, after them, the NaN flag.
            let hist_and_flag = || level0.bind_range(0, lens[0] + 1);
            ls.push(Launch {
                entry: hist,
                params: params(f32_in | nan_check),
                buffers: vec![src.bind_range(0, n), hist_and_flag()],
                groups,
            });
            self.scan(ls, &lens);
            let mut buffers = vec![src.bind_range(0, n), dst.bind_range(0, n), hist_and_flag()];
            // The scatter declares the value slots in both modes.
            let pairs = match vals {
                None => {
                    buffers.extend([ctx.sink(), ctx.empty()]);
                    0
                }
                Some((va, vb)) => {
                    let (vin, vout) = if pass % 2 == 0 { (va, vb) } else { (vb, va) };
                    buffers.extend([vout.bind_range(0, n), vin.bind_range(0, n)]);
                    PAIRS
                }
            };
            ls.push(Launch { entry: scatter, params: params(f32_in | f32_out | pairs), buffers, groups });
        }
    }

    /// Exclusive scan of level 0 in place: reduce level by level, scan the top
    /// level in one workgroup, then scan each level's tiles from the level above.
    fn scan<'a>(&'a self, ls: &mut Vec<Launch<'a>>, lens: &[usize]) {
        let tile = self.tile();
        let params = |i: usize, flag| SortParams { n: lens[i] as u32, nb: lens[i].div_ceil(tile) as u32, shift: 0, flag };
        let level = |i: usize| self.levels[i].bind_range(0, lens[i]);
        for (i, len) in lens.iter().enumerate().take(lens.len() - 1) {
            ls.push(Launch {
                entry: "scan_reduce",
                params: params(i, 0),
                buffers: vec![level(i), level(i + 1)],
                groups: grid_blocks(len.div_ceil(tile)),
            });
        }
        for i in (0..lens.len()).rev() {
            let top = i == lens.len() - 1;
            let offsets = if top { self.dummy.bind() } else { level(i + 1) };
            ls.push(Launch {
                entry: "scan_apply",
                params: params(i, u32::from(!top)),
                buffers: vec![offsets, level(i)],
                groups: grid_blocks(lens[i].div_ceil(tile)),
            });
        }
    }

    /// Writes the launches' parameters, records them in one compute pass and
    /// submits (no wait).
    fn submit(&self, ctx: &GpuContext, ls: Vec<Launch<'_>>) {
        assert!(ls.len() <= PARAM_SLOTS, "too many launches for the parameter buffer");
        let mut bytes = vec![0u8; ls.len() * self.slot as usize];
        for (i, l) in ls.iter().enumerate() {
            let at = i * self.slot as usize;
            bytes[at..at + std::mem::size_of::<SortParams>()].copy_from_slice(bytemuck::bytes_of(&l.params));
        }
        ctx.queue.write_buffer(&self.params, 0, &bytes);
        let dispatches: Vec<Dispatch> = ls
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let pipeline = ctx.pipeline(Shader::Sort, l.entry, &self.consts());
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.params,
                        offset: i as u64 * self.slot,
                        size: std::num::NonZeroU64::new(std::mem::size_of::<SortParams>() as u64),
                    }),
                }];
                for (j, b) in l.buffers.into_iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: b });
                }
                let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(l.entry),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                Dispatch { pipeline, bind_group, groups: l.groups, stage: "sort" }
            })
            .collect();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in &dispatches {
                d.record(&mut pass);
            }
        }
        ctx.queue.submit([enc.finish()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_transform_orders_like_total_cmp() {
        let xs = [
            f32::NEG_INFINITY,
            -f32::MAX,
            -1.5,
            -f32::MIN_POSITIVE,
            -1e-45,
            -0.0,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            1.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(f32_to_key(w[0]) < f32_to_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(key_to_f32(f32_to_key(x)).to_bits(), x.to_bits());
        }
    }
}
