// Elementwise fake quantization of a tensor with one quantizer's parameters
// (used for the weights, whose quantized copies are made once per bound update).
// Header constants: LEVELS (2^b − 1).

struct Params {
    n: u32,
    quantizer: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        y[i] = fake_quant(x[i], qparams[p.quantizer], LEVELS);
    }
}
