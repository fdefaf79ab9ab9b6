// Weight preparation: copies a (n, k) weight tensor into the layout its matmul
// reads, fake-quantized with one quantizer's parameters when `quantizer` > 0 (the
// quantized copies are made once per bound update).
// Layouts: block_cols = 0 keeps (n, k); otherwise the `rows` matmul's column
// blocks: block b holds Wᵀ of columns b·block_cols.. as (k, block_cols) at b·slot.
// Header constants: LEVELS (2^b − 1).

struct Params {
    n: u32,          // elements of the (n, k) source
    quantizer: u32,  // parameter row + 1, or 0 for a plain copy
    k: u32,
    block_cols: u32,
    slot: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn destination(i: u32) -> u32 {
    if (p.block_cols == 0u) {
        return i;
    }
    let col = i / p.k;
    let kk = i % p.k;
    return (col / p.block_cols) * p.slot + kk * p.block_cols + col % p.block_cols;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        var v = x[i];
        if (p.quantizer > 0u) {
            v = fake_quant(v, qparams[p.quantizer - 1u], LEVELS);
        }
        y[destination(i)] = v;
    }
}
