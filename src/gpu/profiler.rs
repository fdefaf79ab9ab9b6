//! Per-stage GPU time from timestamp queries (when the adapter has them).

use std::collections::BTreeMap;

use super::{read_bytes, GpuContext};

/// Collects begin/end timestamps of compute passes labelled by stage.
pub struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    stages: Vec<&'static str>,
}

impl Profiler {
    /// `None` when the adapter has no timestamp queries.
    pub fn new(ctx: &GpuContext, max_passes: u32) -> Option<Self> {
        if !ctx.has(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let capacity = 2 * max_passes;
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: capacity as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Self { queries, resolve, capacity, stages: Vec::new() })
    }

    /// Timestamp writes for the next pass, or None once the query set is full.
    pub fn pass(&mut self, stage: &'static str) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let i = self.stages.len() as u32;
        if 2 * i + 2 > self.capacity {
            return None;
        }
        self.stages.push(stage);
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = 2 * self.stages.len() as u32;
        if n > 0 {
            enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        }
    }

    /// Milliseconds per stage summed over the recorded passes; clears the record.
    pub fn take(&mut self, ctx: &GpuContext) -> BTreeMap<&'static str, f64> {
        let n = self.stages.len() as u64;
        let bytes = read_bytes(ctx, &self.resolve, 0, n * 16);
        let ticks: Vec<u64> = bytes.chunks_exact(8).map(bytemuck::pod_read_unaligned).collect();
        let ns_per_tick = ctx.queue.get_timestamp_period() as f64;
        let mut out = BTreeMap::new();
        for (i, stage) in self.stages.drain(..).enumerate() {
            let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick * 1e-6;
            *out.entry(stage).or_insert(0.0) += dt;
        }
        out
    }
}
