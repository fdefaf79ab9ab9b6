//! Phase 1 bound search on the GPU: launchers for shaders/search.wgsl and the CPU
//! reference of DOBI used by the tests.

use bytemuck::{Pod, Zeroable};

use super::{fake_quant, levels, QParams};
use crate::gpu::{Const, Dispatch, GpuBuffer, GpuContext, Shader};

/// DOBI's number of candidates (K).
pub const DOBI_CANDIDATES: usize = 100;
/// Elements per search workgroup (PER_WG in search.wgsl).
pub const PER_WG: usize = 8192;

/// Slices one tensor may be searched in (each rounds its workgroups up).
pub const MAX_SLICES: usize = 64;

/// A phase 1 bound-search method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// l = min, u = max.
    MinMax,
    /// DOBI, symmetric search for every tensor (2DQuant's released code).
    Dobi,
    /// DOBI as the paper describes it: one-direction search for the softmax
    /// output and the fc2 input, symmetric elsewhere.
    DobiPaper,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::MinMax, Method::Dobi, Method::DobiPaper];

    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Dobi => "dobi",
            Method::DobiPaper => "dobi-paper",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Number of candidates searched.
    pub fn candidates(self) -> usize {
        match self {
            Method::MinMax => 1,
            Method::Dobi | Method::DobiPaper => DOBI_CANDIDATES,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SearchParams {
    n: u32,
    wg_base: u32,
    quantizer: u32,
    count: u32,
    k: u32,
    one_dir: u32,
    mult: f32,
    _pad: u32,
}

/// How one quantizer's bounds are searched.
#[derive(Clone, Copy, Debug)]
pub struct SearchSpec {
    /// First parameter row written, and how many rows get the same bounds.
    pub index: usize,
    pub count: usize,
    pub k: usize,
    pub one_dir: bool,
    /// Scale applied to the tensor first (q is quantized after q·scale).
    pub mult: f32,
}

/// Scratch buffers of the search, sized for tensors of up to `max_elems` elements.
pub struct Searcher {
    minmax: GpuBuffer,
    cand: GpuBuffer,
    errs: GpuBuffer,
    max_groups: usize,
    bits: u32,
}

impl Searcher {
    /// Room for tensors of up to `max_elems` elements in up to MAX_SLICES slices.
    pub fn new(ctx: &GpuContext, max_elems: usize, bits: u32) -> Self {
        let max_groups = max_elems.div_ceil(PER_WG) + MAX_SLICES;
        Self {
            minmax: GpuBuffer::zeros(ctx, "search.minmax", 2 * max_groups),
            cand: GpuBuffer::zeros(ctx, "search.cand", 2 * 256),
            errs: GpuBuffer::zeros(ctx, "search.errs", max_groups * 256),
            max_groups,
            bits,
        }
    }

    fn dispatch(&self, ctx: &GpuContext, entry: &str, params: SearchParams, bindings: &[(u32, wgpu::BindingResource<'_>)], groups: u32) -> Dispatch {
        let pipeline = ctx.pipeline(Shader::Search, entry, &[Const::F32("LEVELS", levels(self.bits))]);
        Dispatch::with_bindings(ctx, pipeline, &params, bindings, [groups, 1, 1], "search")
    }

    fn params(&self, spec: &SearchSpec, n: usize, wg_base: usize) -> SearchParams {
        SearchParams {
            n: n as u32,
            wg_base: wg_base as u32,
            quantizer: spec.index as u32,
            count: spec.count as u32,
            k: spec.k as u32,
            one_dir: spec.one_dir as u32,
            mult: spec.mult,
            _pad: 0,
        }
    }

    /// Workgroups a slice of `n` elements takes in each pass.
    pub fn groups(n: usize) -> usize {
        n.div_ceil(PER_WG)
    }

    /// Pass 1 over one slice: its (min, max) partials at workgroup offset `wg_base`.
    pub fn minmax_pass(&self, ctx: &GpuContext, spec: &SearchSpec, x: wgpu::BindingResource<'_>, n: usize, wg_base: usize) -> Dispatch {
        assert!(wg_base + Self::groups(n) <= self.max_groups, "search scratch too small");
        let b = [(1, x), (2, self.minmax.bind())];
        self.dispatch(ctx, "minmax_partial", self.params(spec, n, wg_base), &b, Self::groups(n) as u32)
    }

    /// The candidate bounds from all `partials` (min, max) pairs.
    pub fn candidates(&self, ctx: &GpuContext, spec: &SearchSpec, partials: usize) -> Dispatch {
        let b = [(2, self.minmax.bind()), (3, self.cand.bind())];
        self.dispatch(ctx, "candidates", self.params(spec, partials, 0), &b, 1)
    }

    /// Pass 2 over one slice: every candidate's squared error.
    pub fn errors_pass(&self, ctx: &GpuContext, spec: &SearchSpec, x: wgpu::BindingResource<'_>, n: usize, wg_base: usize) -> Dispatch {
        let b = [(1, x), (3, self.cand.bind()), (4, self.errs.bind())];
        self.dispatch(ctx, "candidate_errors", self.params(spec, n, wg_base), &b, Self::groups(n) as u32)
    }

    /// Picks the best candidate over `partials` error rows into `qparams`.
    pub fn pick(&self, ctx: &GpuContext, spec: &SearchSpec, partials: usize, qparams: &GpuBuffer) -> Dispatch {
        let b = [(3, self.cand.bind()), (4, self.errs.bind()), (5, qparams.bind())];
        self.dispatch(ctx, "pick_best", self.params(spec, partials, 0), &b, 1)
    }

    /// The whole search over a tensor that is available in one buffer range.
    pub fn search(&self, ctx: &GpuContext, spec: &SearchSpec, x: &GpuBuffer, start: usize, n: usize, qparams: &GpuBuffer) -> Vec<Dispatch> {
        let g = Self::groups(n);
        vec![
            self.minmax_pass(ctx, spec, x.bind_range(start, n), n, 0),
            self.candidates(ctx, spec, g),
            self.errors_pass(ctx, spec, x.bind_range(start, n), n, 0),
            self.pick(ctx, spec, g, qparams),
        ]
    }
}

/// CPU DOBI in 2DQuant's float32 order (tests): returns the chosen (lower, upper).
pub fn dobi_cpu(x: &[f32], bits: u32, k: usize, one_dir: bool) -> (f32, f32) {
    let m = x.iter().cloned().fold(f32::INFINITY, f32::min);
    let big_m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let delta = (big_m - m) / (if one_dir { k } else { 2 * k }) as f32;
    let lv = levels(bits);
    let mut best = (f64::INFINITY, m, big_m);
    for i in 0..k {
        let step = delta * i as f32;
        let q = QParams { lower: if one_dir { m } else { m + step }, upper: big_m - step, ..Default::default() };
        let err: f64 = x.iter().map(|&v| ((v - fake_quant(v, &q, lv)) as f64).powi(2)).sum();
        if err < best.0 {
            best = (err, q.lower, q.upper);
        }
    }
    (best.1, best.2)
}
