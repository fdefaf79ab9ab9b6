//! Adapter choice, device creation and the features the kernels may use.

use anyhow::{bail, Context as _, Result};

use super::kernels::{Const, PipelineCache, Shader, UniformSlabs};
use super::memory::MemoryAccount;

/// The optional features swinq uses when an adapter has them; every kernel also
/// has a path that works without them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// The share of the memory budget a driver reports (Vulkan with VK_EXT_memory_budget,
/// DX12) past which allocations fail as out of memory, instead of spilling to host
/// memory or overcommitting until the device is lost.
const MEMORY_BUDGET_PERCENT: u8 = 95;

/// How to pick the adapter: a name substring (from `--adapter` or
/// `WGPU_ADAPTER_NAME`) and the backends (from `WGPU_BACKEND`).
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    pub name: Option<String>,
}

impl AdapterChoice {
    /// `--adapter` wins over `WGPU_ADAPTER_NAME`.
    pub fn from_cli(name: Option<String>) -> Self {
        let name = name.or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).filter(|n| !n.is_empty());
        Self { name }
    }
}

/// Which matmul strategy the device runs (see shaders/matmul.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKind {
    /// Workgroup-memory tiles: GPUs.
    Tiled,
    /// A row of C per invocation with the weights in uniform blocks, shared across a
    /// subgroup's lanes: CPU drivers with subgroups of at least 4 lanes.
    Rows,
}

impl MatmulKind {
    /// Rows on CPU drivers that can run it, else Tiled; `SWINQ_MATMUL=tiled|rows`
    /// overrides the choice by device type.
    fn for_device(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Result<Self> {
        let rows_ok = features.contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 4;
        match std::env::var("SWINQ_MATMUL").ok().as_deref() {
            Some("tiled") => Ok(Self::Tiled),
            Some("rows") if rows_ok => Ok(Self::Rows),
            Some("rows") => bail!("SWINQ_MATMUL=rows needs subgroups of at least 4 lanes, which `{}` lacks", info.name),
            Some(other) => bail!("SWINQ_MATMUL must be `tiled` or `rows`, not `{other}`"),
            None if info.device_type == wgpu::DeviceType::Cpu && rows_ok => Ok(Self::Rows),
            None => Ok(Self::Tiled),
        }
    }
}

/// `SWINQ_ATTN_LANES`: how many invocations share a query's keys in the GPU attention.
fn attention_lanes_from_env() -> Result<u32> {
    match std::env::var("SWINQ_ATTN_LANES").ok().as_deref() {
        None | Some("") => Ok(1),
        Some(v) => match v.parse() {
            Ok(n @ (1 | 2 | 4)) => Ok(n),
            _ => bail!("SWINQ_ATTN_LANES must be 1, 2 or 4, not `{v}`"),
        },
    }
}

/// The vec4s (or words) the CPU-driver kernels share across a subgroup per step: the
/// subgroup's lanes, at most 8. `SWINQ_ROWS_LANES` (4 or 8, at most the subgroup size)
/// chooses it: 4 on an 8-lane driver runs the kernels as drivers with subgroups wider
/// than 8 lanes do (CI tests them so).
fn rows_lanes(info: &wgpu::AdapterInfo) -> Result<usize> {
    let lanes = (info.subgroup_min_size as usize).min(8);
    match std::env::var("SWINQ_ROWS_LANES").ok().as_deref() {
        None | Some("") => Ok(lanes),
        Some(v) => match v.parse() {
            Ok(n @ (4 | 8)) if n <= lanes => Ok(n),
            _ => bail!("SWINQ_ROWS_LANES must be 4 or 8 and at most the subgroup size ({lanes} on `{}`), not `{v}`", info.name),
        },
    }
}

/// One wgpu device and queue shared by everything in a process.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub matmul: MatmulKind,
    /// Invocations per query in the GPU attention kernels (shaders/attention.wgsl `QL`):
    /// `SWINQ_ATTN_LANES` (1, 2 or 4), default 1.
    pub attention_lanes: u32,
    rows_lanes: usize,
    pub(super) memory: MemoryAccount,
    pub(super) uniforms: UniformSlabs,
    pipelines: PipelineCache,
    /// Small buffers bound where a kernel's optional input (`empty`) or output
    /// (`sink`) is unused, so every entry point keeps one bind-group layout.
    empty: wgpu::Buffer,
    sink: wgpu::Buffer,
}

/// Backends from `WGPU_BACKEND`, else Vulkan, Metal and DX12.
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    desc.memory_budget_thresholds.for_resource_creation = Some(MEMORY_BUDGET_PERCENT);
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends()))
}

/// Higher is preferred: a discrete GPU over an integrated one over a software rasteriser.
fn device_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

const NO_ADAPTER: &str =
    "no GPU adapter found (install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers libvulkan1` for the software one, or check WGPU_BACKEND)";

fn choose_adapter(adapters: Vec<wgpu::Adapter>, choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    if adapters.is_empty() {
        bail!(NO_ADAPTER);
    }
    let candidates: Vec<wgpu::Adapter> = match &choice.name {
        Some(want) => {
            let want = want.to_lowercase();
            let found: Vec<_> = adapters.into_iter().filter(|a| a.get_info().name.to_lowercase().contains(&want)).collect();
            if found.is_empty() {
                bail!("no adapter name contains `{want}`; available: {}", names.join(", "));
            }
            found
        }
        None => adapters,
    };
    Ok(candidates.into_iter().max_by_key(|a| device_rank(a.get_info().device_type)).expect("non-empty"))
}

impl GpuContext {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let adapter = choose_adapter(list_adapters(), choice)?;
        let info = adapter.get_info();
        let features = adapter.features() & OPTIONAL_FEATURES;
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("swinq"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .with_context(|| format!("could not open a device on adapter `{}`", info.name))?;
        let small = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let (empty, sink) = (small("empty"), small("sink"));
        let matmul = MatmulKind::for_device(&info, features)?;
        let attention_lanes = attention_lanes_from_env()?;
        let rows_lanes = rows_lanes(&info)?;
        Ok(Self { device, queue, info, features, limits, matmul, attention_lanes, rows_lanes, memory: MemoryAccount::default(), uniforms: UniformSlabs::default(), pipelines: PipelineCache::default(), empty, sink })
    }

    /// The compiled pipeline for `shader`'s `entry` with the given header constants.
    pub fn pipeline(&self, shader: Shader, entry: &str, consts: &[Const]) -> std::sync::Arc<wgpu::ComputePipeline> {
        self.pipelines.get(self, shader, entry, consts)
    }

    /// The distinct WGSL modules this context has compiled, as (label, source).
    pub fn compiled_modules(&self) -> Vec<(String, String)> {
        self.pipelines.modules()
    }

    /// Binding for an unused optional read-only input.
    pub fn empty(&self) -> wgpu::BindingResource<'_> {
        self.empty.as_entire_binding()
    }

    /// Binding for an unused optional output.
    pub fn sink(&self) -> wgpu::BindingResource<'_> {
        self.sink.as_entire_binding()
    }

    /// Whether kernels read their hot operands through 64 KiB uniform windows
    /// (CPU drivers, where uniform loads are one vector gather and storage loads
    /// run lane by lane) rather than from whole storage bindings (GPUs, where the
    /// many small dispatches that windows need cost far more than the loads).
    /// Follows the matmul strategy, so `SWINQ_MATMUL` switches both.
    pub fn uniform_reads(&self) -> bool {
        self.matmul == MatmulKind::Rows
    }

    /// The vec4s of weights the `rows` matmul (and the other CPU-driver kernels) share
    /// across a subgroup per step: one per lane, at most 8 (`SWINQ_ROWS_LANES` can set 4).
    pub fn rows_lanes(&self) -> usize {
        self.rows_lanes
    }

    /// The alignment of uniform-binding offsets, in 4-byte words.
    pub fn uniform_align_words(&self) -> usize {
        (self.limits.min_uniform_buffer_offset_alignment as usize / 4).max(1)
    }

    pub fn has(&self, f: wgpu::Features) -> bool {
        self.features.contains(f)
    }

    /// One line naming the adapter, for logs and reports.
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Largest storage binding in bytes (128 MiB on lavapipe).
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) {
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while waiting for the GPU");
    }
}

/// Text for `swinq info`: every adapter with its features and key limits (an
/// error when there is none, as for every other command).
pub fn adapters_report() -> Result<String> {
    let mut out = String::new();
    let adapters = list_adapters();
    if adapters.is_empty() {
        bail!(NO_ADAPTER);
    }
    for a in adapters {
        let i = a.get_info();
        let f = a.features();
        let l = a.limits();
        out.push_str(&format!(
            "{} — {:?} {:?}, driver {} {}\n",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        ));
        let flag = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
        out.push_str(&format!(
            "  shader-f16 {}  subgroup {} ({}–{} lanes)  timestamp-query {}\n",
            flag(wgpu::Features::SHADER_F16),
            flag(wgpu::Features::SUBGROUP),
            i.subgroup_min_size,
            i.subgroup_max_size,
            flag(wgpu::Features::TIMESTAMP_QUERY)
        ));
        out.push_str(&format!(
            "  max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, invocations {}, workgroups/dim {}\n",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        ));
    }
    Ok(out)
}
