// LayerNorm over the channels of each token: y = (x − mean)/√(var + eps)·γ + β.
// Header constants: CODES (the integer engine: write y as the next linear's input
// codes, four per word, with parameter row quant − 1, instead of floats), LEVELS.

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

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= p.tokens) {
        return;
    }
    let base = t * p.c;
    var sum = 0.0;
    for (var i = 0u; i < p.c; i++) {
        sum += x[base + i];
    }
    let mean = sum / f32(p.c);
    var sq = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = x[base + i] - mean;
        sq = fma(d, d, sq);
    }
    let inv = 1.0 / sqrt(sq / f32(p.c) + p.eps);
    if (CODES) {
        let q = qparams[p.quant - 1u];
        let words = (p.c + 3u) / 4u;
        var word = 0u;
        for (var i = 0u; i < p.c; i++) {
            let v = (x[base + i] - mean) * inv * gamma[i] + beta[i];
            word |= quant_code(v, q, LEVELS) << (8u * (i & 3u));
            if ((i & 3u) == 3u || i + 1u == p.c) {
                codes[t * words + i / 4u] = word;
                word = 0u;
            }
        }
        return;
    }
    for (var i = 0u; i < p.c; i++) {
        y[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
