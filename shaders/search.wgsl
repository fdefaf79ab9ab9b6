// Phase 1 bound search on the GPU (SPEC §4): min/max of a tensor, the candidate
// bounds, the exact squared error of every candidate over all elements, and the
// first candidate with the smallest error. Tensors may arrive as several slices
// (dispatches); partial results are indexed by a global workgroup number so the
// final reductions see every slice in a fixed order (deterministic).
// Header constants: LEVELS (2^b − 1, f32).

struct Params {
    n: u32,          // elements in this slice (reductions: number of partials)
    wg_base: u32,    // index of this dispatch's first workgroup among all slices
    quantizer: u32,  // first parameter row to write
    count: u32,      // rows written (inputs shared by q, k and v get three)
    k: u32,          // number of candidates
    one_dir: u32,    // 1: only the upper bound moves
    mult: f32,       // scale applied to x before quantizing (q is searched as q·scale)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> minmax: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> cand: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> errs: array<f32>;
@group(0) @binding(5) var<storage, read_write> qparams: array<vec4<f32>>;

const WG: u32 = 256u;
const PER_WG: u32 = 8192u;   // elements per workgroup in both passes
const CHUNK: u32 = 1024u;    // elements staged in shared memory at a time

var<workgroup> red: array<vec2<f32>, 256>;
var<workgroup> stage: array<f32, 1024>;

fn fq(v: f32, l: f32, u: f32) -> f32 {
    return fake_quant(v, vec4<f32>(l, u, 0.0, 0.0), LEVELS);
}

fn reduce_minmax(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) {
            let o = red[lid + off];
            red[lid] = vec2<f32>(min(red[lid].x, o.x), max(red[lid].y, o.y));
        }
        workgroupBarrier();
    }
    return red[0];
}

// Per-workgroup (min, max) of x·mult over PER_WG elements.
@compute @workgroup_size(256)
fn minmax_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = wg.x * PER_WG;
    var v = vec2<f32>(3.4e38, -3.4e38);
    for (var i = start + lid.x; i < min(start + PER_WG, p.n); i += WG) {
        let e = x[i] * p.mult;
        v = vec2<f32>(min(v.x, e), max(v.y, e));
    }
    let r = reduce_minmax(lid.x, v);
    if (lid.x == 0u) {
        minmax[p.wg_base + wg.x] = r;
    }
}

// Reduces the p.n partial (min, max) pairs and writes the K candidate bounds in
// 2DQuant's float32 order: Δ = (M − m)/(2K) (one-direction: (M − m)/K),
// l_i = m + Δ·i, u_i = M − Δ·i.
@compute @workgroup_size(256)
fn candidates(@builtin(local_invocation_id) lid: vec3<u32>) {
    var v = vec2<f32>(3.4e38, -3.4e38);
    for (var i = lid.x; i < p.n; i += WG) {
        v = vec2<f32>(min(v.x, minmax[i].x), max(v.y, minmax[i].y));
    }
    let r = reduce_minmax(lid.x, v);
    let m = r.x;
    let big_m = r.y;
    let denom = select(f32(2u * p.k), f32(p.k), p.one_dir == 1u);
    let delta = (big_m - m) / denom;
    for (var i = lid.x; i < p.k; i += WG) {
        let step = delta * f32(i);
        let lower = select(m + step, m, p.one_dir == 1u);
        cand[i] = vec2<f32>(lower, big_m - step);
    }
}

// Σ (x − Q_i(x))² for every candidate i < K over this workgroup's elements; one
// thread per candidate, the elements staged in shared memory.
@compute @workgroup_size(256)
fn candidate_errors(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = wg.x * PER_WG;
    let end = min(start + PER_WG, p.n);
    var bounds = vec2<f32>(0.0);
    if (lid.x < p.k) {
        bounds = cand[lid.x];
    }
    var acc = 0.0;
    for (var c0 = start; c0 < end; c0 += CHUNK) {
        let len = min(CHUNK, end - c0);
        for (var i = lid.x; i < len; i += WG) {
            stage[i] = x[c0 + i] * p.mult;
        }
        workgroupBarrier();
        if (lid.x < p.k) {
            for (var i = 0u; i < len; i++) {
                let d = stage[i] - fq(stage[i], bounds.x, bounds.y);
                acc = fma(d, d, acc);
            }
        }
        workgroupBarrier();
    }
    if (lid.x < p.k) {
        errs[(p.wg_base + wg.x) * p.k + lid.x] = acc;
    }
}

// Sums the p.n partial error rows per candidate (Kahan, fixed order), takes the
// first candidate with the smallest error and writes it to p.count rows.
@compute @workgroup_size(256)
fn pick_best(@builtin(local_invocation_id) lid: vec3<u32>) {
    var total = 3.4e38;
    if (lid.x < p.k) {
        var sum = 0.0;
        var comp = 0.0;
        for (var g = 0u; g < p.n; g++) {
            let y = errs[g * p.k + lid.x] - comp;
            let t = sum + y;
            comp = (t - sum) - y;
            sum = t;
        }
        total = sum;
    }
    // Reduce (error, index) pairs; ties go to the lower index.
    red[lid.x] = vec2<f32>(total, f32(lid.x));
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
        qparams[p.quantizer + lid.x] = vec4<f32>(best.x, best.y, 0.0, 0.0);
    }
}
