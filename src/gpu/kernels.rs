//! WGSL sources (loaded at compile time), compile-time constants, the pipeline cache
//! and recorded dispatches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::profiler::Profiler;
use super::GpuContext;

/// A kernel family: one WGSL file (the attention kernels after window.wgsl), prefixed
/// with the shared helpers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Matmul,
    /// The matmul's `rows` strategy (CPU drivers; needs subgroups).
    MatmulRows,
    LayerNorm,
    /// The LayerNorm for CPU drivers (`rows`; needs subgroups).
    LayerNormRows,
    Attention,
    /// The attention for CPU drivers (`main_rows`, `main_int_rows`; needs subgroups).
    AttentionRows,
    AttentionBackward,
    /// The attention's backward for CPU drivers (`main_rows`; needs subgroups).
    AttentionBackwardRows,
    Image,
    Sort,
    Search,
    /// The bound search's error pass for CPU drivers (`candidate_errors_rows`; needs subgroups).
    SearchRows,
    Quant,
    Backward,
    /// The weight-quantizer gradient for CPU drivers (`weight_grad_rows`; needs subgroups).
    BackwardRows,
    Adam,
}

impl Shader {
    fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::MatmulRows => concat!(
                include_str!("../../shaders/matmul.wgsl"),
                include_str!("../../shaders/lanes.wgsl"),
                include_str!("../../shaders/matmul_rows.wgsl")
            ),
            Shader::LayerNorm => include_str!("../../shaders/layernorm.wgsl"),
            Shader::LayerNormRows => concat!(include_str!("../../shaders/layernorm.wgsl"), include_str!("../../shaders/layernorm_rows.wgsl")),
            Shader::Attention => concat!(include_str!("../../shaders/window.wgsl"), include_str!("../../shaders/attention.wgsl")),
            Shader::AttentionRows => concat!(
                include_str!("../../shaders/window.wgsl"),
                include_str!("../../shaders/attention.wgsl"),
                include_str!("../../shaders/attention_lanes.wgsl"),
                include_str!("../../shaders/attention_rows.wgsl")
            ),
            Shader::AttentionBackward => {
                concat!(include_str!("../../shaders/window.wgsl"), include_str!("../../shaders/attention_backward.wgsl"))
            }
            Shader::AttentionBackwardRows => concat!(
                include_str!("../../shaders/window.wgsl"),
                include_str!("../../shaders/attention_backward.wgsl"),
                include_str!("../../shaders/attention_lanes.wgsl"),
                include_str!("../../shaders/attention_backward_rows.wgsl")
            ),
            Shader::Image => include_str!("../../shaders/image.wgsl"),
            Shader::Sort => include_str!("../../shaders/sort.wgsl"),
            Shader::Search => include_str!("../../shaders/search.wgsl"),
            Shader::SearchRows => concat!(include_str!("../../shaders/search.wgsl"), include_str!("../../shaders/search_rows.wgsl")),
            Shader::Quant => include_str!("../../shaders/quant.wgsl"),
            Shader::Backward => include_str!("../../shaders/backward.wgsl"),
            Shader::BackwardRows => concat!(
                include_str!("../../shaders/backward.wgsl"),
                include_str!("../../shaders/lanes.wgsl"),
                include_str!("../../shaders/backward_rows.wgsl")
            ),
            Shader::Adam => include_str!("../../shaders/adam.wgsl"),
        }
    }

    /// Whether wgpu zero-fills the kernels' workgroup memory first (WebGPU's default).
    /// The attention (both ways) and the LayerNorm write every staged word before reading it; the
    /// fill would cost a store loop and a barrier per workgroup, on CPU drivers too,
    /// where their workgroup arrays are otherwise dead code.
    fn zero_fills_workgroup_memory(self) -> bool {
        !matches!(
            self,
            Shader::Attention | Shader::AttentionRows | Shader::AttentionBackward | Shader::AttentionBackwardRows | Shader::LayerNorm | Shader::LayerNormRows
        )
    }
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// A compile-time constant written into the shader header.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    U32(&'static str, u32),
    F32(&'static str, f32),
    Bool(&'static str, bool),
}

impl Const {
    fn wgsl(&self) -> String {
        match self {
            Const::U32(n, v) => format!("const {n}: u32 = {v}u;\n"),
            // `{:?}` prints the shortest string that parses back to the same f32.
            Const::F32(n, v) => format!("const {n}: f32 = {v:?};\n"),
            Const::Bool(n, v) => format!("const {n}: bool = {v};\n"),
        }
    }
}

/// What wgpu adds to our shaders. By default it bounds every loop with a hidden
/// counter, clamps every array index and guards every integer division; the loop
/// counter keeps GPU compilers from unrolling the fixed-length loops over a window
/// or a head, so the per-query arrays of the attention kernels leave registers
/// (without the checks lavapipe runs the whole forward 1.3× faster). These shaders
/// are ours, compiled in: every loop runs to a constant or a host-set bound, every
/// divisor is a nonzero host-set size, and indices stay inside the arrays by
/// construction (the tests run every kernel on odd sizes). Buffer accesses keep
/// whatever bounds checks the driver itself makes. `SWINQ_SHADER_CHECKS=1` puts
/// wgpu's checks back, to debug a kernel.
fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    if std::env::var("SWINQ_SHADER_CHECKS").is_ok_and(|v| v == "1") {
        return wgpu::ShaderRuntimeChecks::checked();
    }
    // SAFETY: the conditions above.
    unsafe { wgpu::ShaderRuntimeChecks::all(false) }
}

/// Compiled pipelines keyed by shader, entry point and constants.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    /// Every WGSL module compiled so far (source → label of its first pipeline), so
    /// tests can check that the exact kernels a run used translate for other backends.
    modules: Mutex<HashMap<String, String>>,
}

impl PipelineCache {
    pub fn get(&self, ctx: &GpuContext, shader: Shader, entry: &str, consts: &[Const]) -> Arc<wgpu::ComputePipeline> {
        let header: String = consts.iter().map(Const::wgsl).collect();
        let key = format!("{shader:?}/{entry}/{header}");
        let mut map = self.map.lock().expect("pipeline cache poisoned");
        map.entry(key)
            .or_insert_with(|| {
                let label = format!("{shader:?}.{entry}");
                let code = format!("{header}{COMMON}{}", shader.source());
                self.modules.lock().expect("pipeline cache poisoned").entry(code.clone()).or_insert_with(|| label.clone());
                let desc = wgpu::ShaderModuleDescriptor { label: Some(&label), source: wgpu::ShaderSource::Wgsl(code.into()) };
                // SAFETY: see `runtime_checks`.
                let module = unsafe { ctx.device.create_shader_module_trusted(desc, runtime_checks()) };
                Arc::new(ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        zero_initialize_workgroup_memory: shader.zero_fills_workgroup_memory(),
                        ..Default::default()
                    },
                    cache: None,
                }))
            })
            .clone()
    }

    /// The distinct WGSL modules compiled so far, as (label, source), sorted by label.
    pub fn modules(&self) -> Vec<(String, String)> {
        let modules = self.modules.lock().expect("pipeline cache poisoned");
        let mut v: Vec<(String, String)> = modules.iter().map(|(code, label)| (label.clone(), code.clone())).collect();
        v.sort();
        v
    }
}

/// Bytes of one uniform slab: the parameters of up to 256 dispatches.
const SLAB_BYTES: u64 = 64 * 1024;

/// The uniform buffers that dispatch parameters are written into, a slot each. A
/// buffer per dispatch (tens of thousands in phase 2), each with its upload's staging
/// buffer, fragmented the allocator's free lists on drivers with one memory type
/// (lavapipe, integrated GPUs), and searching those lists came to dominate building
/// plans once earlier ones were freed. A slab lives as long as a dispatch binds it.
#[derive(Default)]
pub struct UniformSlabs {
    /// The slab being filled and the bytes used in it.
    current: Mutex<Option<(wgpu::Buffer, u64)>>,
}

impl UniformSlabs {
    /// `bytes` (padded to 16) written into the current slab, or into a new one when it
    /// is full: the slab, and the offset and size of their slot.
    fn write(&self, ctx: &GpuContext, bytes: &[u8]) -> (wgpu::Buffer, u64, u64) {
        let size = (bytes.len() as u64).next_multiple_of(16).max(16);
        let align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let mut current = self.current.lock().expect("uniform slabs poisoned");
        if !matches!(&*current, Some((_, used)) if used + size <= SLAB_BYTES) {
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: SLAB_BYTES.max(size),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            *current = Some((buffer, 0));
        }
        let (buffer, used) = current.as_mut().expect("a slab");
        let offset = *used;
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        ctx.queue.write_buffer(buffer, offset, &padded);
        *used = (offset + size).next_multiple_of(align);
        (buffer.clone(), offset, size)
    }
}

/// One recorded kernel launch: pipeline, bindings and grid, replayed on every run.
pub struct Dispatch {
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// Name of the stage it belongs to, for the timestamp breakdown.
    pub stage: &'static str,
}

impl Dispatch {
    /// Binds `params` (a uniform) at binding 0 and `buffers` at bindings 1.. in order.
    pub fn new<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipeline: Arc<wgpu::ComputePipeline>,
        params: &P,
        buffers: &[wgpu::BindingResource<'_>],
        groups: [u32; 3],
        stage: &'static str,
    ) -> Self {
        let numbered: Vec<(u32, wgpu::BindingResource<'_>)> =
            buffers.iter().enumerate().map(|(i, b)| (i as u32 + 1, b.clone())).collect();
        Self::with_bindings(ctx, pipeline, params, &numbered, groups, stage)
    }

    /// Like `new`, for entry points that use only some of their file's bindings.
    pub fn with_bindings<P: bytemuck::Pod>(
        ctx: &GpuContext,
        pipeline: Arc<wgpu::ComputePipeline>,
        params: &P,
        buffers: &[(u32, wgpu::BindingResource<'_>)],
        groups: [u32; 3],
        stage: &'static str,
    ) -> Self {
        let (slab, offset, size) = ctx.uniforms.write(ctx, bytemuck::bytes_of(params));
        let uniform = wgpu::BufferBinding { buffer: &slab, offset, size: std::num::NonZeroU64::new(size) };
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(uniform) }];
        for (binding, b) in buffers {
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: b.clone() });
        }
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(stage),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Self { pipeline, bind_group, groups, stage }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Grid for `n` invocations of a 256-wide kernel that uses `flat_index`.
pub fn grid_1d(n: usize) -> [u32; 3] {
    grid_groups(n.div_ceil(256))
}

/// Grid for `groups` workgroups numbered wg.x + wg.y·nwg.x (some past the end when
/// they need two rows).
pub fn grid_groups(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        [65535, groups.div_ceil(65535) as u32, 1]
    }
}

/// Records dispatches as compute passes: one pass, or with a profiler one
/// timestamped pass per run of consecutive dispatches of the same stage.
pub fn record_passes(enc: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch], mut profiler: Option<&mut Profiler>) {
    let split = profiler.is_some();
    for run in dispatches.chunk_by(|a, b| !split || a.stage == b.stage) {
        let timestamp_writes = profiler.as_deref_mut().and_then(|p| p.pass(run[0].stage));
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(run[0].stage), timestamp_writes });
        for d in run {
            d.record(&mut pass);
        }
    }
}

/// Runs dispatches (timed per stage with a profiler) and waits for them.
pub fn run_profiled(ctx: &GpuContext, dispatches: &[Dispatch], mut profiler: Option<&mut Profiler>) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let all: Vec<&Dispatch> = dispatches.iter().collect();
    record_passes(&mut enc, &all, profiler.as_deref_mut());
    if let Some(p) = profiler {
        p.resolve(&mut enc);
    }
    ctx.queue.submit([enc.finish()]);
    ctx.wait();
}

/// Runs dispatches in one compute pass and waits for them.
pub fn run_now(ctx: &GpuContext, dispatches: &[Dispatch]) {
    run_profiled(ctx, dispatches, None);
}
