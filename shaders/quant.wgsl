// Weight preparation: copies a (n, k) weight tensor into the layout its matmul
// reads, fake-quantized with one quantizer's parameters when `quantizer` > 0 (the
// quantized copies are made once per bound update).
// Layouts: block_cols = 0 keeps (n, k); otherwise the `rows` matmul's column
// blocks: block b holds Wᵀ of columns b·block_cols.. as (k, block_cols) at b·slot,
// followed by those columns' bias (elements n.. of the work are the bias).
// Header constants: LEVELS (2^b − 1).

struct Params {
    n: u32,          // elements of the (n, k) source
    quantizer: u32,  // parameter row + 1, or 0 for a plain copy
    k: u32,
    block_cols: u32,
    slot: u32,
    total: u32,      // n, plus the bias length in the block layout
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Position of W[col, kk] (kk = k: the bias of col) in the block layout.
fn block_index(col: u32, kk: u32) -> u32 {
    return (col / p.block_cols) * p.slot + kk * p.block_cols + col % p.block_cols;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    if (i >= p.n) {
        y[block_index(i - p.n, p.k)] = bias[i - p.n];
        return;
    }
    var v = x[i];
    if (p.quantizer > 0u) {
        v = fake_quant(v, qparams[p.quantizer - 1u], LEVELS);
    }
    if (p.block_cols == 0u) {
        y[i] = v;
    } else {
        y[block_index(i / p.k, i % p.k)] = v;
    }
}
