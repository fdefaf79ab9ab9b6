//! Phase 1 bound search on the GPU (SPEC §4): the named methods, launchers for
//! shaders/search.wgsl, and the CPU references the tests compare against.

use anyhow::{bail, ensure, Result};
use bytemuck::{Pod, Zeroable};

use super::{fake_quant, levels, QParams, Slot};
use crate::gpu::{Const, Dispatch, GpuBuffer, GpuContext, Shader, WINDOW_WORDS};
use crate::sort::RadixSorter;

/// DOBI's number of candidates (K); the sorted methods use as many.
pub const DOBI_CANDIDATES: usize = 100;
/// Elements per search workgroup (PER_WG in search.wgsl).
pub const PER_WG: usize = 8160;

/// Slices one tensor may be searched in (each rounds its workgroups up).
pub const MAX_SLICES: usize = 64;

/// Where the candidate bounds come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidates {
    /// One candidate: l = min, u = max.
    MinMax,
    /// DOBI: K equal value steps from (min, max) towards the centre.
    Dobi,
    /// K ranks of the sorted tensor, rank-uniform clip fractions (see [`ranks`]).
    SortedUniform,
    /// K ranks of the sorted tensor, tail-dense clip fractions (see [`ranks`]).
    SortedTail,
}

impl Candidates {
    fn sorted(self) -> bool {
        matches!(self, Candidates::SortedUniform | Candidates::SortedTail)
    }
}

/// Centre the symmetric value-step search shrinks towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Center {
    /// The mid-range (m + M)/2: DOBI.
    Mid,
    /// The mean of the tensor.
    Mean,
    /// The median (x_(⌊(N−1)/2⌋) + x_(⌊N/2⌋))/2 of the sorted tensor.
    Median,
}

impl Center {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mid" => Center::Mid,
            "mean" => Center::Mean,
            "median" => Center::Median,
            _ => bail!("centre `{s}`: choose mid, mean or median"),
        })
    }
}

/// A phase 1 bound-search method: a named configuration (SPEC §4). Names are
/// `BASE[+onedir][+center-mean|+center-median][+bias]` with BASE one of minmax,
/// dobi, dobi-paper (= dobi+onedir), sorted-uniform, sorted-tail; aliases
/// `2dquant` (= dobi, then phase 2) and `2dquant+` (see [`Method::TWO_D_QUANT_PLUS`],
/// then phase 2 with c trained).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    pub candidates: Candidates,
    /// One-direction search (l = min, only u moves) for the softmax output and the
    /// fc2 input, as 2DQuant's paper describes; symmetric elsewhere.
    pub one_dir: bool,
    /// Centre of the symmetric value-step search. Rank candidates are centred on
    /// the median by construction (equal tail mass clipped on both sides), so
    /// only `Mid` goes with them; one-direction quantizers ignore it.
    pub center: Center,
    /// Bias correction: c = mean(x) − mean(Q(x; l, u)) with the chosen bounds.
    pub bias: bool,
}

impl Method {
    pub const MINMAX: Method = Method { candidates: Candidates::MinMax, one_dir: false, center: Center::Mid, bias: false };
    /// 2DQuant's released code: symmetric DOBI for every tensor.
    pub const DOBI: Method = Method { candidates: Candidates::Dobi, ..Self::MINMAX };
    /// DOBI as 2DQuant's paper describes it.
    pub const DOBI_PAPER: Method = Method { one_dir: true, ..Self::DOBI };
    /// `2dquant+`: tail-dense sorted candidates with bias correction, one-direction
    /// for the softmax output and the fc2 input. The H100 ablation (benches/RESULTS.md)
    /// chose it: phase 1 alone it is within 0.03 dB of sorted-tail+bias, and with
    /// phase 2 it beats 2dquant at every bit width on Set5, Set14 and B100.
    pub const TWO_D_QUANT_PLUS: Method = Method { candidates: Candidates::SortedTail, one_dir: true, bias: true, ..Self::MINMAX };

    /// Text for `--help`.
    pub const HELP: &str = "minmax, dobi (2DQuant's released code), dobi-paper (one-direction for the softmax \
        output and the fc2 input), sorted-uniform, sorted-tail (rank-based candidates of the sorted tensor); \
        options appended with +: onedir, center-mean, center-median (dobi only), bias; the full methods \
        2dquant (dobi, then phase 2) and 2dquant+ (sorted-tail+onedir+bias, then phase 2 with c trained)";

    /// Number of candidates searched.
    pub fn k(self) -> usize {
        match self.candidates {
            Candidates::MinMax => 1,
            _ => DOBI_CANDIDATES,
        }
    }

    /// Whether the search sorts the tensor (rank candidates or the median).
    pub fn sorts(self) -> bool {
        self.candidates.sorted() || self.center == Center::Median
    }

    /// The full name, e.g. `sorted-tail+bias` (parses back to the same method).
    pub fn name(self) -> String {
        let mut s = match (self.candidates, self.one_dir) {
            (Candidates::MinMax, _) => "minmax".to_string(),
            (Candidates::Dobi, false) => "dobi".into(),
            (Candidates::Dobi, true) => "dobi-paper".into(),
            (Candidates::SortedUniform, _) => "sorted-uniform".into(),
            (Candidates::SortedTail, _) => "sorted-tail".into(),
        };
        if self.one_dir && self.candidates != Candidates::Dobi {
            s += "+onedir";
        }
        match self.center {
            Center::Mid => {}
            Center::Mean => s += "+center-mean",
            Center::Median => s += "+center-median",
        }
        if self.bias {
            s += "+bias";
        }
        s
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "2dquant" => return Ok(Self::DOBI),
            "2dquant+" => return Ok(Self::TWO_D_QUANT_PLUS),
            _ => {}
        }
        let mut parts = s.split('+');
        let mut m = match parts.next().unwrap_or("") {
            "minmax" => Self::MINMAX,
            "dobi" => Self::DOBI,
            "dobi-paper" => Self::DOBI_PAPER,
            "sorted-uniform" => Method { candidates: Candidates::SortedUniform, ..Self::MINMAX },
            "sorted-tail" => Method { candidates: Candidates::SortedTail, ..Self::MINMAX },
            "2dquant" | "2dquant+" => bail!("method `{s}`: the full methods 2dquant and 2dquant+ take no +options; name the phase 1 method (e.g. dobi+bias) and add --phase2-iters"),
            base => bail!("method `{base}`: unknown; choose from {}", Self::HELP),
        };
        let mut seen: Vec<&str> = Vec::new();
        for opt in parts {
            // "center-mean" and "center-median" are one family.
            if seen.iter().any(|o| o.split('-').next() == opt.split('-').next()) {
                bail!("method `{s}`: option `+{opt}` repeats or contradicts an earlier one");
            }
            seen.push(opt);
            match opt {
                "onedir" => m.one_dir = true,
                "bias" => m.bias = true,
                _ => match opt.strip_prefix("center-") {
                    Some(c) => m.center = Center::parse(c)?,
                    None => bail!("method option `+{opt}`: unknown; choose from onedir, center-mean, center-median, bias"),
                },
            }
        }
        m.validate()
    }

    /// This method with the CLI's `--bias` and `--center` applied.
    pub fn with_options(mut self, bias: bool, center: Option<Center>) -> Result<Self> {
        self.bias |= bias;
        if let Some(c) = center {
            ensure!(self.center == Center::Mid || self.center == c, "--center contradicts the method's own +center- option");
            self.center = c;
        }
        self.validate()
    }

    fn validate(self) -> Result<Self> {
        let name = self.name();
        match self.candidates {
            Candidates::MinMax => ensure!(!self.one_dir && self.center == Center::Mid, "{name}: minmax has a single candidate, so onedir and centring do not apply"),
            Candidates::SortedUniform | Candidates::SortedTail => ensure!(
                self.center == Center::Mid,
                "{name}: rank candidates clip equal tail mass on both sides (centred on the median by construction); centring applies to dobi"
            ),
            Candidates::Dobi => {}
        }
        Ok(self)
    }

    /// The search of the quantizer at parameter row `index` in slot `slot`.
    pub fn spec(self, index: usize, slot: Slot, count: usize, mult: f32) -> SearchSpec {
        let one_dir = self.one_dir && matches!(slot, Slot::Matmul(3) | Slot::Input(5));
        SearchSpec { method: self, index, count, one_dir, mult }
    }
}

/// Clip ranks r_0..r_{K−1} of a sorted schedule for N elements: candidate i is
/// l = x_(r_i), u = x_(N−1−r_i) (one-direction: l = x_(0)). With clip fraction p_i
/// per side, r_i = min(⌊p_i·N⌋, ⌊(N−1)/2⌋) (the clamp keeps l ≤ u when N < 2K):
/// - rank-uniform: p_i = i/(2K), so r_i = ⌊i·N/(2K)⌋ (exact integers);
/// - tail-dense: p_0 = 0 (min and max, like DOBI's first candidate) and, for
///   i ≥ 1, p_i = (1/N)·(N/2)^((i−1)/(K−1)): log-spaced from 1/N (one element
///   clipped per side) towards 1/2, so most candidates clip few outliers. Computed
///   in f64 on the CPU, as the GPU's pow is not exact enough to floor reliably.
pub fn ranks(candidates: Candidates, n: usize, k: usize) -> Vec<u32> {
    let max = (n.max(1) as u64 - 1) / 2;
    (0..k as u64)
        .map(|i| {
            let r = match candidates {
                Candidates::SortedTail if i > 0 => {
                    let e = (i - 1) as f64 / (k as u64 - 1).max(1) as f64;
                    (n as f64 / 2.0).powf(e).floor() as u64
                }
                Candidates::SortedTail => 0,
                _ => i * n as u64 / (2 * k as u64),
            };
            r.min(max) as u32
        })
        .collect()
}

/// Parameter flags (search.wgsl).
const ONE_DIR: u32 = 1;
const BIAS: u32 = 2;
const CENTER_MEAN: u32 = 4;
const CENTER_MEDIAN: u32 = 8;
const RANKS: u32 = 16;
const SELECT_START: u32 = 32;
const SELECT_DECIDE: u32 = 64;
const SELECT_READ: u32 = 128;
/// Bisection steps that find any 32-bit key.
const SELECT_STEPS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SearchParams {
    n: u32,
    wg_base: u32,
    quantizer: u32,
    count: u32,
    k: u32,
    flags: u32,
    mult: f32,
    total: u32,
    x_delta: u32,
    wg_skip: u32,
    key_wg0: u32,
    _pad: u32,
}

/// How one quantizer's bounds are searched.
#[derive(Clone, Copy, Debug)]
pub struct SearchSpec {
    pub method: Method,
    /// First parameter row written, and how many rows get the same bounds.
    pub index: usize,
    pub count: usize,
    /// One-direction search for this quantizer.
    pub one_dir: bool,
    /// Scale applied to the tensor first (q is quantized after q·scale).
    pub mult: f32,
}

impl SearchSpec {
    fn flags(&self) -> u32 {
        let m = self.method;
        let mut f = if self.one_dir { ONE_DIR } else { 0 };
        f |= if m.bias { BIAS } else { 0 };
        f |= match m.center {
            Center::Mid => 0,
            Center::Mean => CENTER_MEAN,
            Center::Median => CENTER_MEDIAN,
        };
        f | if m.candidates.sorted() { RANKS } else { 0 }
    }
}

/// The keys of the tensor being searched, in pieces of up to one storage binding
/// that are sorted one by one; their sorter; and the state of the rank selection
/// over the sorted pieces (sorting methods only).
struct SortScratch {
    pieces: Vec<GpuBuffer>,
    /// Workgroups whose keys one piece holds.
    piece_groups: usize,
    sorter: RadixSorter,
    selection: GpuBuffer,
}

/// The ranks select_keys finds in a sorted tensor of n elements: 0, N − 1 and the
/// two middle ranks, then for rank candidates r_i and N − 1 − r_i (search.wgsl).
fn queries(method: Method, n: usize) -> Vec<u32> {
    let last = n as u32 - 1;
    let mut q = vec![0, last, last / 2, n as u32 / 2];
    if method.candidates.sorted() {
        let r = ranks(method.candidates, n, method.k());
        q.extend(&r);
        q.extend(r.iter().map(|&r| last - r));
    }
    q
}

/// Scratch buffers of the search, sized for tensors of up to `max_elems` elements.
pub struct Searcher {
    /// Per workgroup (min, max, sum, unused).
    part: GpuBuffer,
    cand: GpuBuffer,
    /// Per workgroup and candidate (squared error, summed error).
    errs: GpuBuffer,
    sort: Option<SortScratch>,
    max_groups: usize,
    bits: u32,
}

impl Searcher {
    /// Room for tensors of up to `max_elems` elements in up to MAX_SLICES slices;
    /// `sort`: also for their keys, in as few pieces as the storage-binding limit allows.
    pub fn new(ctx: &GpuContext, max_elems: usize, bits: u32, sort: bool) -> Self {
        let per_binding = (ctx.max_binding() / 4) as usize / PER_WG;
        assert!(per_binding > 0, "storage bindings below {} KiB", PER_WG * 4 / 1024);
        Self::with_key_pieces(ctx, max_elems, bits, sort.then_some(per_binding))
    }

    /// As [`Self::new`], with the keys of `piece_groups` workgroups per piece
    /// (tests: many pieces without huge tensors).
    pub fn with_key_pieces(ctx: &GpuContext, max_elems: usize, bits: u32, piece_groups: Option<usize>) -> Self {
        let max_groups = max_elems.div_ceil(PER_WG) + MAX_SLICES;
        let sort = piece_groups.map(|g| {
            let g = g.clamp(1, max_groups);
            let pieces = (0..max_groups).step_by(g).map(|w| GpuBuffer::zeros(ctx, "search.keys", g.min(max_groups - w) * PER_WG)).collect();
            let mut sorter = RadixSorter::new(ctx);
            sorter.reserve(ctx, g * PER_WG);
            let selection = GpuBuffer::zeros(ctx, "search.selection", 4 * (4 + 2 * DOBI_CANDIDATES));
            SortScratch { pieces, piece_groups: g, sorter, selection }
        });
        Self {
            part: GpuBuffer::zeros(ctx, "search.part", 4 * max_groups),
            cand: GpuBuffer::zeros(ctx, "search.cand", 2 * 256),
            errs: GpuBuffer::zeros(ctx, "search.errs", 2 * max_groups * 256),
            sort,
            max_groups,
            bits,
        }
    }

    fn dispatch(&self, ctx: &GpuContext, entry: &str, params: SearchParams, bindings: &[(u32, wgpu::BindingResource<'_>)], groups: u32) -> Dispatch {
        let consts = [Const::F32("LEVELS", levels(self.bits)), Const::U32("LANES", ctx.rows_lanes() as u32)];
        let shader = if entry.ends_with("_rows") { Shader::SearchRows } else { Shader::Search };
        let pipeline = ctx.pipeline(shader, entry, &consts);
        Dispatch::with_bindings(ctx, pipeline, &params, bindings, [groups, 1, 1], "search")
    }

    fn params(&self, spec: &SearchSpec, n: usize, wg_base: usize, total: usize) -> SearchParams {
        SearchParams {
            n: n as u32,
            wg_base: wg_base as u32,
            quantizer: spec.index as u32,
            count: spec.count as u32,
            k: spec.method.k() as u32,
            flags: spec.flags(),
            mult: spec.mult,
            total: total as u32,
            x_delta: 0,
            wg_skip: 0,
            key_wg0: 0,
            _pad: 0,
        }
    }

    fn sort_scratch(&self, spec: &SearchSpec) -> &SortScratch {
        self.sort.as_ref().unwrap_or_else(|| panic!("{} sorts: make the Searcher with sort = true", spec.method.name()))
    }

    /// Workgroups a slice of `n` elements takes in each pass.
    pub fn groups(n: usize) -> usize {
        n.div_ceil(PER_WG)
    }

    /// Pass 1 over one slice: its (min, max, sum) partials at workgroup offset
    /// `wg_base` and, for sorting methods, its keys (a dispatch per key piece it
    /// reaches).
    pub fn stats_pass(&self, ctx: &GpuContext, spec: &SearchSpec, x: wgpu::BindingResource<'_>, n: usize, wg_base: usize) -> Vec<Dispatch> {
        let groups = Self::groups(n);
        assert!(wg_base + groups <= self.max_groups, "search scratch too small");
        let params = self.params(spec, n, wg_base, 0);
        if !spec.method.sorts() {
            return vec![self.dispatch(ctx, "stats_partial", params, &[(1, x), (2, self.part.bind())], groups as u32)];
        }
        let s = self.sort_scratch(spec);
        let g = s.piece_groups;
        let mut ds = Vec::new();
        let mut done = 0;
        while done < groups {
            let piece = (wg_base + done) / g;
            let take = ((piece + 1) * g - wg_base - done).min(groups - done);
            let params = SearchParams { wg_skip: done as u32, key_wg0: (piece * g) as u32, ..params };
            let b = [(1, x.clone()), (2, self.part.bind()), (6, s.pieces[piece].bind())];
            ds.push(self.dispatch(ctx, "stats_keys_partial", params, &b, take as u32));
            done += take;
        }
        ds
    }

    /// The candidate bounds of a tensor of `total` elements from its `partials`
    /// workgroups of pass 1 (sorting methods: the sort of its keys first).
    pub fn candidates(&self, ctx: &GpuContext, spec: &SearchSpec, partials: usize, total: usize) -> Vec<Dispatch> {
        assert!(total >= 1, "empty tensor");
        let params = self.params(spec, partials, 0, total);
        if !spec.method.sorts() {
            return vec![self.dispatch(ctx, "candidates", params, &[(2, self.part.bind()), (3, self.cand.bind())], 1)];
        }
        let s = self.sort_scratch(spec);
        let g = s.piece_groups;
        // The keys of each piece's used workgroups.
        let used: Vec<(&GpuBuffer, usize)> = s.pieces.iter().zip((0..partials).step_by(g)).map(|(piece, w)| (piece, g.min(partials - w) * PER_WG)).collect();
        let mut ds = Vec::new();
        for &(piece, n) in &used {
            ds.extend(s.sorter.record_u32(ctx, piece, n).expect("sort scratch sized in Searcher::new"));
        }
        let queries = GpuBuffer::from_slice(ctx, "search.queries", &queries(spec.method, total));
        let select = |piece: &GpuBuffer, n: usize, flags: u32| {
            let params = SearchParams { n: n as u32, flags: params.flags | flags, ..params };
            let b = [(6, piece.bind_range(0, n)), (7, queries.bind()), (9, s.selection.bind())];
            self.dispatch(ctx, "select_keys", params, &b, 1)
        };
        if let [(piece, n)] = used[..] {
            ds.push(select(piece, n, SELECT_READ));
        } else {
            // A bisection step per dispatch and piece.
            for step in 0..SELECT_STEPS {
                for (i, &(piece, n)) in used.iter().enumerate() {
                    let start = if step == 0 && i == 0 { SELECT_START } else { 0 };
                    let decide = if i == used.len() - 1 { SELECT_DECIDE } else { 0 };
                    ds.push(select(piece, n, start | decide));
                }
            }
        }
        ds.push(self.dispatch(ctx, "candidates_sorted", params, &[(3, self.cand.bind()), (9, s.selection.bind())], 1));
        ds
    }

    /// Pass 2 over one slice, elements [start, start+n) of `x` (a windowed buffer):
    /// every candidate's squared and summed error. Through uniform windows, two
    /// workgroups per dispatch, on CPU drivers; from storage in as few dispatches
    /// as the workgroup-count limit allows on GPUs.
    pub fn errors_pass(&self, ctx: &GpuContext, spec: &SearchSpec, x: &GpuBuffer, start: usize, n: usize, wg_base: usize) -> Vec<Dispatch> {
        let align = ctx.uniform_align_words();
        assert!(2 * PER_WG + align <= WINDOW_WORDS, "uniform offset alignment above 256 bytes");
        let uniform = ctx.uniform_reads();
        let per_dispatch = if uniform { 2 } else { ctx.limits.max_compute_workgroups_per_dimension as usize };
        (0..n)
            .step_by(per_dispatch * PER_WG)
            .enumerate()
            .map(|(d, first)| {
                let len = (per_dispatch * PER_WG).min(n - first);
                let at = start + first;
                let window = if uniform { at - at % align } else { 0 };
                let params = SearchParams { x_delta: (at - window) as u32, ..self.params(spec, len, wg_base + per_dispatch * d, 0) };
                let groups = Self::groups(len) as u32;
                if uniform {
                    let b = [(3, self.cand.bind()), (4, self.errs.bind()), (8, x.bind_window(window))];
                    self.dispatch(ctx, "candidate_errors_rows", params, &b, groups)
                } else {
                    self.dispatch(ctx, "candidate_errors", params, &[(1, x.bind()), (3, self.cand.bind()), (4, self.errs.bind())], groups)
                }
            })
            .collect()
    }

    /// Picks the best candidate over `partials` error rows into `qparams`, with
    /// the bias of a tensor of `total` elements when the method corrects it.
    pub fn pick(&self, ctx: &GpuContext, spec: &SearchSpec, partials: usize, total: usize, qparams: &GpuBuffer) -> Dispatch {
        let b = [(3, self.cand.bind()), (4, self.errs.bind()), (5, qparams.bind())];
        self.dispatch(ctx, "pick_best", self.params(spec, partials, 0, total), &b, 1)
    }

    /// The whole search over a tensor that is available in one buffer range.
    pub fn search(&self, ctx: &GpuContext, spec: &SearchSpec, x: &GpuBuffer, start: usize, n: usize, qparams: &GpuBuffer) -> Vec<Dispatch> {
        let g = Self::groups(n);
        let mut ds = self.stats_pass(ctx, spec, x.bind_range(start, n), n, 0);
        ds.extend(self.candidates(ctx, spec, g, n));
        ds.extend(self.errors_pass(ctx, spec, x, start, n, 0));
        ds.push(self.pick(ctx, spec, g, n, qparams));
        ds
    }

    /// The first `k` candidates of the last search (tests).
    pub fn read_candidates(&self, ctx: &GpuContext, k: usize) -> Vec<(f32, f32)> {
        self.cand.read::<f32>(ctx).chunks(2).take(k).map(|c| (c[0], c[1])).collect()
    }
}

/// The CPU reference of a search.
#[derive(Clone, Debug)]
pub struct CpuSearch {
    pub candidates: Vec<(f32, f32)>,
    /// Σ (x − Q_i(x))² per candidate, in f64.
    pub errors: Vec<f64>,
    /// The first candidate with the smallest error.
    pub best: usize,
    /// Its bounds, and the bias when the method corrects it.
    pub params: QParams,
}

/// CPU reference of the candidates (in the GPU's float32 order) and of the pick
/// and bias, on x·mult.
pub fn search_cpu(x: &[f32], bits: u32, spec: &SearchSpec) -> CpuSearch {
    let m = spec.method;
    let k = m.k();
    let xs: Vec<f32> = x.iter().map(|&v| v * spec.mult).collect();
    let mut sorted = xs.clone();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    let candidates: Vec<(f32, f32)> = if m.candidates.sorted() {
        ranks(m.candidates, n, k).into_iter().map(|r| (if spec.one_dir { lo } else { sorted[r as usize] }, sorted[n - 1 - r as usize])).collect()
    } else {
        let c = match m.center {
            Center::Mid => 0.0,
            Center::Mean => (xs.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32,
            Center::Median => 0.5 * sorted[(n - 1) / 2] + 0.5 * sorted[n / 2],
        };
        (0..k)
            .map(|i| {
                if spec.one_dir {
                    let delta = (hi - lo) / k as f32;
                    (lo, hi - delta * i as f32)
                } else if m.center != Center::Mid {
                    let w = (k - i) as f32 / k as f32;
                    (c - (c - lo) * w, c + (hi - c) * w)
                } else {
                    let step = (hi - lo) / (2 * k) as f32 * i as f32;
                    (lo + step, hi - step)
                }
            })
            .collect()
    };
    let lv = levels(bits);
    let q = |&(lower, upper): &(f32, f32)| QParams { lower, upper, ..Default::default() };
    let errors: Vec<f64> = candidates.iter().map(|c| xs.iter().map(|&v| ((v - fake_quant(v, &q(c), lv)) as f64).powi(2)).sum()).collect();
    let best = (0..k).fold(0, |b, i| if errors[i] < errors[b] { i } else { b });
    let mut params = q(&candidates[best]);
    if m.bias {
        let diff: f64 = xs.iter().map(|&v| (v - fake_quant(v, &params, lv)) as f64).sum();
        params.bias = (diff / n as f64) as f32;
    }
    CpuSearch { candidates, errors, best, params }
}
