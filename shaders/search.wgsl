// Phase 1 bound search on the GPU (SPEC §4): per-workgroup statistics (min, max,
// sum) of a tensor and, for the sorted methods, its order-preserving keys; the
// candidate bounds (DOBI's value steps, or ranks of the sorted keys); the exact
// squared error and the summed error of every candidate over all elements; and
// the first candidate with the smallest squared error, with its bias correction.
// Tensors may arrive as several slices (dispatches); partial results are indexed
// by a global workgroup number so the final reductions see every slice in a
// fixed order (deterministic). The keys of a tensor larger than one storage
// binding lie in several pieces, each sorted alone; select_keys finds the keys of
// given ranks in their union by bisection over key values (in one piece, it reads
// them).
// candidate_errors reads x from binding 1, all workgroups in one dispatch (GPUs);
// CPU drivers take candidate_errors_rows in search_rows.wgsl instead.
// Header constants: LEVELS (2^b − 1, f32); LANES for search_rows.wgsl.

struct Params {
    n: u32,          // elements in this slice (reductions: number of partials)
    wg_base: u32,    // index of this dispatch's first workgroup among all slices
    quantizer: u32,  // first parameter row to write
    count: u32,      // rows written (inputs shared by q, k and v get three)
    k: u32,          // number of candidates
    flags: u32,      // ONE_DIR | BIAS | CENTER_MEAN | CENTER_MEDIAN | RANKS
    mult: f32,       // scale applied to x before quantizing (q is searched as q·scale)
    total: u32,      // elements of the whole tensor (candidates, pick)
    x_delta: u32,    // candidate_errors: words from the window's (or binding's) start to the slice's
    wg_skip: u32,    // stats_keys_partial: the slice's workgroups before this dispatch's first
    key_wg0: u32,    // stats_keys_partial: global workgroup of the bound key piece's first slots
    _pad: u32,
}

const ONE_DIR: u32 = 1u;        // only the upper bound moves
const BIAS: u32 = 2u;           // write c = mean(x − Q(x)) with the bounds
const CENTER_MEAN: u32 = 4u;    // value steps shrink towards the mean
const CENTER_MEDIAN: u32 = 8u;  // value steps shrink towards the median (sorted keys)
const RANKS: u32 = 16u;         // candidates at the ranks of the sorted keys
const SELECT_START: u32 = 32u;  // select_keys: first piece of the first step (reset the state)
const SELECT_DECIDE: u32 = 64u; // select_keys: last piece of a step (halve the interval)
const SELECT_READ: u32 = 128u;  // select_keys: the only piece (read the keys at the ranks)

// Padding key of the slots past a slice's end: after every real key (it is a
// NaN pattern, which the map never produces from data that sorts).
const PAD_KEY: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> cand: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> errs: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> qparams: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> keys: array<u32>;
// select_keys: the ranks to find, 0, N − 1, ⌊(N−1)/2⌋, ⌊N/2⌋ then (RANKS) r_i and N − 1 − r_i.
@group(0) @binding(7) var<storage, read> queries: array<u32>;
// Per query, the bisection state (lo, hi, keys ≤ mid counted so far); lo is the key found.
@group(0) @binding(9) var<storage, read_write> selection: array<vec4<u32>>;

const WG: u32 = 256u;
// Elements per workgroup in both passes: two workgroups' elements and an
// alignment offset of up to 64 words fit one uniform window.
const PER_WG: u32 = 8160u;

var<workgroup> red: array<vec4<f32>, 256>;

fn fq(v: f32, l: f32, u: f32) -> f32 {
    return fake_quant(v, vec4<f32>(l, u, 0.0, 0.0), LEVELS);
}

fn has(flag: u32) -> bool {
    return (p.flags & flag) != 0u;
}

// (min, max, sum) over the workgroup.
fn reduce_stats(lid: u32, v: vec4<f32>) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            let o = red[lid + off];
            let a = red[lid];
            red[lid] = vec4<f32>(min(a.x, o.x), max(a.y, o.y), a.z + o.z, 0.0);
        }
        workgroupBarrier();
    }
    return red[0];
}

// Per-workgroup (min, max, sum) of x·mult over PER_WG elements.
fn partial_stats(wg: u32, lid: u32) {
    let start = wg * PER_WG;
    var v = vec4<f32>(3.4e38, -3.4e38, 0.0, 0.0);
    for (var i = start + lid; i < min(start + PER_WG, p.n); i += WG) {
        let e = x[i] * p.mult;
        v = vec4<f32>(min(v.x, e), max(v.y, e), v.z + e, 0.0);
    }
    let r = reduce_stats(lid, v);
    if (lid == 0u) {
        part[p.wg_base + wg] = r;
    }
}

@compute @workgroup_size(256)
fn stats_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    partial_stats(wg.x, lid.x);
}

// The statistics, and the keys of x·mult in this workgroup's PER_WG key slots
// (PAD_KEY past the slice's end), for the sort. A dispatch covers the slice's
// workgroups from p.wg_skip that keep their keys in the bound piece.
@compute @workgroup_size(256)
fn stats_keys_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = p.wg_skip + wg.x;
    partial_stats(w, lid.x);
    let start = w * PER_WG;
    let slots = (p.wg_base + w - p.key_wg0) * PER_WG;
    for (var j = lid.x; j < PER_WG; j += WG) {
        var k = PAD_KEY;
        if (start + j < p.n) {
            k = to_key(bitcast<u32>(x[start + j] * p.mult));
        }
        keys[slots + j] = k;
    }
}

// Candidate i of the value-step search from min m, max M and centre c:
// - one-direction (DOBI): Δ = (M − m)/K, (m, M − Δ·i);
// - mid-range (DOBI, 2DQuant's float32 order): Δ = (M − m)/(2K), (m + Δ·i, M − Δ·i);
// - centred on c: w = (K − i)/K, (c − (c − m)·w, c + (M − c)·w), both bounds
//   shrinking towards c in proportion to their distance from it.
fn value_step(i: u32, m: f32, big_m: f32, c: f32) -> vec2<f32> {
    if (has(ONE_DIR)) {
        let delta = (big_m - m) / f32(p.k);
        return vec2<f32>(m, big_m - delta * f32(i));
    }
    if (has(CENTER_MEAN | CENTER_MEDIAN)) {
        let w = f32(p.k - i) / f32(p.k);
        return vec2<f32>(c - (c - m) * w, c + (big_m - c) * w);
    }
    let delta = (big_m - m) / f32(2u * p.k);
    let step = delta * f32(i);
    return vec2<f32>(m + step, big_m - step);
}

// Reduces the p.n partial statistics and writes the K value-step candidates.
@compute @workgroup_size(256)
fn candidates(@builtin(local_invocation_id) lid: vec3<u32>) {
    var v = vec4<f32>(3.4e38, -3.4e38, 0.0, 0.0);
    for (var i = lid.x; i < p.n; i += WG) {
        let o = part[i];
        v = vec4<f32>(min(v.x, o.x), max(v.y, o.y), v.z + o.z, 0.0);
    }
    let r = reduce_stats(lid.x, v);
    let mean = r.z / f32(p.total);
    for (var i = lid.x; i < p.k; i += WG) {
        cand[i] = value_step(i, r.x, r.y, mean);
    }
}

// Keys ≤ v in the bound piece's p.n sorted keys.
fn count_le(v: u32) -> u32 {
    var lo = 0u;
    var hi = p.n;
    while (lo < hi) {
        let mid = lo + (hi - lo) / 2u;
        if (keys[mid] <= v) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// One bisection step for every query over the bound piece of sorted keys: the key
// of rank r is the least v with r + 1 keys ≤ v in all pieces together. A step
// counts the keys ≤ mid piece by piece, and the last piece halves [lo, hi]; after
// 32 steps lo is the key. With SELECT_READ the bound piece is the whole tensor and
// the keys are read at their ranks.
@compute @workgroup_size(256)
fn select_keys(@builtin(local_invocation_id) lid: vec3<u32>) {
    for (var j = lid.x; j < arrayLength(&queries); j += WG) {
        if (has(SELECT_READ)) {
            selection[j] = vec4<u32>(keys[queries[j]], 0u, 0u, 0u);
            continue;
        }
        var s = selection[j];
        if (has(SELECT_START)) {
            s = vec4<u32>(0u, 0xffffffffu, 0u, 0u);
        }
        let mid = s.x + (s.y - s.x) / 2u;
        s.z += count_le(mid);
        if (has(SELECT_DECIDE)) {
            if (s.z > queries[j]) {
                s.y = mid;
            } else {
                s.x = mid + 1u;
            }
            s.z = 0u;
        }
        selection[j] = s;
    }
}

// x·mult of query j's rank among the p.total real keys, sorted ascending.
fn sorted_value(j: u32) -> f32 {
    return bitcast<f32>(from_key(selection[j].x));
}

// The K candidates from the selected keys: at ranks (l = x_(r_i) or, one-direction,
// the minimum; u = x_(N−1−r_i)), or value steps towards the median
// (x_(⌊(N−1)/2⌋) + x_(⌊N/2⌋))/2.
@compute @workgroup_size(256)
fn candidates_sorted(@builtin(local_invocation_id) lid: vec3<u32>) {
    let m = sorted_value(0u);
    let big_m = sorted_value(1u);
    let median = 0.5 * sorted_value(2u) + 0.5 * sorted_value(3u);
    for (var i = lid.x; i < p.k; i += WG) {
        if (has(RANKS)) {
            cand[i] = vec2<f32>(select(sorted_value(4u + i), m, has(ONE_DIR)), sorted_value(4u + p.k + i));
        } else {
            cand[i] = value_step(i, m, big_m, median);
        }
    }
}

// Adds x − Q(x) with bounds b, and its square, to acc = (Σ squares, Σ).
fn add_error(acc: ptr<function, vec2<f32>>, v: f32, b: vec2<f32>) {
    let d = v - fq(v, b.x, b.y);
    (*acc) = vec2<f32>(fma(d, d, (*acc).x), (*acc).y + d);
}

// (Σ (x − Q_i(x))², Σ (x − Q_i(x))) for every candidate i < K over this
// workgroup's elements; one thread per candidate (every thread reads the same
// element at once: a broadcast).
@compute @workgroup_size(256)
fn candidate_errors(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = wg.x * PER_WG;
    let end = min(start + PER_WG, p.n);
    if (lid.x >= p.k) {
        return;
    }
    let bounds = cand[lid.x];
    var acc = vec2<f32>(0.0);
    for (var i = p.x_delta + start; i < p.x_delta + end; i++) {
        add_error(&acc, x[i] * p.mult, bounds);
    }
    errs[(p.wg_base + wg.x) * p.k + lid.x] = acc;
}

// Kahan step: (sum, compensation) + y.
fn kahan(acc: vec2<f32>, v: f32) -> vec2<f32> {
    let y = v - acc.y;
    let t = acc.x + y;
    return vec2<f32>(t, (t - acc.x) - y);
}

// Sums the p.n partial error rows per candidate (Kahan, fixed order), takes the
// first candidate with the smallest squared error and writes it to p.count rows,
// with the bias c = Σ (x − Q(x)) / N = mean(x) − mean(Q(x)) when BIAS is set.
@compute @workgroup_size(256)
fn pick_best(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sq = vec2<f32>(3.4e38, 0.0);
    var sum = vec2<f32>(0.0);
    if (lid.x < p.k) {
        sq = vec2<f32>(0.0);
        for (var g = 0u; g < p.n; g++) {
            let e = errs[g * p.k + lid.x];
            sq = kahan(sq, e.x);
            sum = kahan(sum, e.y);
        }
    }
    // Reduce (error, index, summed error) triples; ties go to the lower index.
    red[lid.x] = vec4<f32>(sq.x, f32(lid.x), sum.x, 0.0);
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid.x < off) {
            let o = red[lid.x + off];
            let a = red[lid.x];
            if (o.x < a.x || (o.x == a.x && o.y < a.y)) {
                red[lid.x] = o;
            }
        }
        workgroupBarrier();
    }
    if (lid.x < p.count) {
        let best = cand[u32(red[0].y)];
        let c = select(0.0, red[0].z / f32(p.total), has(BIAS));
        qparams[p.quantizer + lid.x] = vec4<f32>(best.x, best.y, c, 0.0);
    }
}
