//! GPU storage buffers of f32 (or u32) elements, upload and readback.

use super::memory::Held;
use super::GpuContext;

/// A storage buffer and its length in 4-byte elements.
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    /// Its bytes in the device's memory account (shared by its `share`d handles).
    _held: std::sync::Arc<Held>,
}

/// Words of a uniform window: 64 KiB, the smallest uniform binding limit wgpu
/// guarantees. CPU drivers (lavapipe) load uniform buffers as vector gathers but
/// storage and workgroup memory lane by lane, so the hot operands of the matmul,
/// the attention and the bound search are read through such windows.
pub const WINDOW_WORDS: usize = 16384;

/// Buffers are allocated in multiples of 64 words (256 bytes, the largest offset
/// alignment wgpu allows), so an aligned uniform window can end at a buffer's end.
const ALLOC_WORDS: usize = 64;

// UNIFORM too: for the uniform windows.
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuBuffer {
    /// Zero-filled buffer of `len` 4-byte elements (at least one, since wgpu rejects empty bindings).
    pub fn zeros(ctx: &GpuContext, label: &str, len: usize) -> Self {
        Self::zeros_with_room(ctx, label, len, len.max(1))
    }

    /// Zero-filled buffer of `len` elements in which a uniform window may start at
    /// any element (`bind_window`) on devices whose kernels read through uniform
    /// windows (`GpuContext::uniform_reads`); elsewhere nothing binds one, so there
    /// is no room for it.
    pub fn zeros_windowed(ctx: &GpuContext, label: &str, len: usize) -> Self {
        let room = if ctx.uniform_reads() { WINDOW_WORDS } else { 0 };
        Self::zeros_with_room(ctx, label, len, len.max(1) + room)
    }

    /// `from_slice` with room for a uniform window at any element.
    pub fn from_slice_windowed(ctx: &GpuContext, label: &str, data: &[f32]) -> Self {
        let buf = Self::zeros_windowed(ctx, label, data.len());
        buf.write(ctx, data);
        buf
    }

    fn zeros_with_room(ctx: &GpuContext, label: &str, len: usize, words: usize) -> Self {
        let (buffer, _held) = allocate(ctx, label, words, false);
        Self { buffer, len, _held: _held.into() }
    }

    /// Upload of any plain data whose size is a multiple of 4 bytes (`len` counts 4-byte words).
    pub fn from_slice<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> Self {
        assert_eq!(std::mem::size_of::<T>() % 4, 0, "GpuBuffer holds 4-byte words");
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let (buffer, _held) = allocate(ctx, label, bytes.len() / 4, true);
        if !bytes.is_empty() {
            buffer.get_mapped_range_mut(..bytes.len() as u64).expect("buffer mapped at creation").copy_from_slice(bytes);
        }
        buffer.unmap();
        Self { buffer, len: bytes.len() / 4, _held: _held.into() }
    }

    /// A second handle to the same buffer, its memory counted once (plans that take
    /// turns with their scratch activations).
    pub fn share(&self) -> Self {
        Self { buffer: self.buffer.clone(), len: self.len, _held: self._held.clone() }
    }

    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }

    pub fn write<T: bytemuck::Pod>(&self, ctx: &GpuContext, data: &[T]) {
        assert!(std::mem::size_of_val(data) / 4 <= self.len, "write past the end of a buffer");
        ctx.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
    }

    /// Whole-buffer binding.
    pub fn bind(&self) -> wgpu::BindingResource<'_> {
        self.bind_range(0, self.len)
    }

    /// Uniform-window binding of WINDOW_WORDS words from element `start` (made with
    /// `zeros_windowed`, or sized for it).
    pub fn bind_window(&self, start: usize) -> wgpu::BindingResource<'_> {
        assert!(((start + WINDOW_WORDS) * 4) as u64 <= self.buffer.size(), "uniform window past the end of a buffer");
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: start as u64 * 4,
            size: std::num::NonZeroU64::new(WINDOW_WORDS as u64 * 4),
        })
    }

    /// Elements [start, start+len) as a kernel operand.
    pub fn slice(&self, start: usize, len: usize) -> Operand<'_> {
        assert!(start + len <= self.len.max(1), "operand past the end of a buffer");
        Operand { buffer: self, start, len }
    }

    /// The whole buffer as a kernel operand.
    pub fn operand(&self) -> Operand<'_> {
        self.slice(0, self.len)
    }

    /// Binding of elements [start, start+len).
    pub fn bind_range(&self, start: usize, len: usize) -> wgpu::BindingResource<'_> {
        assert!(start + len <= self.len.max(1), "binding past the end of a buffer");
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: start as u64 * 4,
            size: std::num::NonZeroU64::new(len.max(1) as u64 * 4),
        })
    }

    /// Copies the buffer back to the host (waits for the GPU).
    pub fn read<T: bytemuck::Pod>(&self, ctx: &GpuContext) -> Vec<T> {
        let size = std::mem::size_of::<T>();
        read_bytes(ctx, &self.buffer, 0, self.bytes()).chunks_exact(size).map(bytemuck::pod_read_unaligned).collect()
    }
}

/// A storage buffer of at least `words` words (one at least, since wgpu rejects empty
/// bindings), rounded up to whole ALLOC_WORDS, and its share of the memory account.
fn allocate(ctx: &GpuContext, label: &str, words: usize, mapped_at_creation: bool) -> (wgpu::Buffer, Held) {
    let size = (words.max(1).next_multiple_of(ALLOC_WORDS) * 4) as u64;
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage: STORAGE, mapped_at_creation });
    (buffer, ctx.memory.hold(size))
}

/// Elements [start, start+len) of a buffer, which a kernel may read as a storage
/// binding or, on CPU drivers, through uniform windows.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buffer: &'a GpuBuffer,
    pub start: usize,
    pub len: usize,
}

impl<'a> Operand<'a> {
    pub fn bind(&self) -> wgpu::BindingResource<'a> {
        self.buffer.bind_range(self.start, self.len)
    }

    /// A uniform window (WINDOW_WORDS words, starting at a multiple of `align`
    /// words) that holds the operand's elements [first, first+len): its binding and
    /// where element `first` sits in it. None when the buffer is smaller than a window.
    pub fn window(&self, first: usize, len: usize, align: usize) -> Option<(wgpu::BindingResource<'a>, usize)> {
        let capacity = (self.buffer.buffer.size() / 4) as usize;
        let at = self.start + first;
        assert!(first + len <= self.len, "window past the end of an operand");
        let last_start = capacity.checked_sub(WINDOW_WORDS)? / align * align;
        let start = (at / align * align).min(last_start);
        (at + len <= start + WINDOW_WORDS).then(|| (self.buffer.bind_window(start), at - start))
    }
}

/// Reads `size` bytes from `offset` through a staging buffer.
pub fn read_bytes(ctx: &GpuContext, src: &wgpu::Buffer, offset: u64, size: u64) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
    ctx.queue.submit([enc.finish()]);
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        tx.send(r).ok();
    });
    ctx.wait();
    pollster::block_on(rx.receive()).expect("map callback dropped").expect("mapping the readback buffer failed");
    let view = staging.get_mapped_range(..).expect("mapped range");
    let out = view.to_vec();
    drop(view);
    staging.unmap();
    out
}
