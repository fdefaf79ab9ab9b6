// LayerNorm over the channels of each token: y = (x − mean)/√(var + eps)·γ + β.

struct Params {
    tokens: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

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
    for (var i = 0u; i < p.c; i++) {
        y[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
