// LayerNorm over the channels of each token: y = (x − mean)/√(var + eps)·γ + β.
// - `staged` (GPUs): a workgroup copies TOKENS consecutive tokens into workgroup
//   memory with coalesced loads, one invocation per token takes the statistics there,
//   and all of them write the output coalesced (one thread per token reading its own
//   row strides through memory, which GPUs serve badly once x outgrows the cache).
// - `rows` (CPU drivers such as lavapipe): layernorm_rows.wgsl, appended for those
//   drivers only, since it needs subgroup operations.
// Header constants: CODES (the integer engine: write y as the next linear's input
// codes, four per word, with parameter row quant − 1, instead of floats), LEVELS,
// TOKENS and TILE (= TOKENS·c: the staged tile's tokens and words).

struct Params {
    tokens: u32,
    c: u32,
    eps: f32,
    quant: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;

var<workgroup> tile: array<f32, TILE>;
var<workgroup> stats: array<vec2<f32>, TOKENS>;  // mean, 1/√(var + eps)

// (mean, 1/√(var + eps)) of the staged token whose c values start at word `base`.
fn moments(base: u32) -> vec2<f32> {
    var sum = 0.0;
    for (var i = 0u; i < p.c; i++) {
        sum += tile[base + i];
    }
    let mean = sum / f32(p.c);
    var sq = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = tile[base + i] - mean;
        sq = fma(d, d, sq);
    }
    return vec2<f32>(mean, 1.0 / sqrt(sq / f32(p.c) + p.eps));
}

// Channel i of a token with value v and statistics m.
fn normalized(v: f32, m: vec2<f32>, i: u32) -> f32 {
    return (v - m.x) * m.y * gamma[i] + beta[i];
}

@compute @workgroup_size(256)
fn staged(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = (wg.x + wg.y * nwg.x) * TOKENS;
    let count = min(TOKENS, p.tokens - min(t0, p.tokens));
    let words = count * p.c;
    let base = t0 * p.c;
    for (var e = lid; e < words; e += 256u) {
        tile[e] = x[base + e];
    }
    workgroupBarrier();
    if (lid < count) {
        stats[lid] = moments(lid * p.c);
    }
    workgroupBarrier();
    if (CODES) {
        let per_token = (p.c + 3u) / 4u;
        let q = qparams[p.quant - 1u];
        for (var w = lid; w < count * per_token; w += 256u) {
            let t = w / per_token;
            var word = 0u;
            for (var j = 0u; j < 4u; j++) {
                let i = (w % per_token) * 4u + j;
                if (i < p.c) {
                    word |= quant_code(normalized(tile[t * p.c + i], stats[t], i), q, LEVELS) << (8u * j);
                }
            }
            codes[t0 * per_token + w] = word;
        }
        return;
    }
    for (var e = lid; e < words; e += 256u) {
        let t = e / p.c;
        y[base + e] = normalized(tile[e], stats[t], e - t * p.c);
    }
}
