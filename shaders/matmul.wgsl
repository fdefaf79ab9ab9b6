// C[m, n] = Σ_k A[m, k] · W[n, k] + bias[n]  (+ GELU) (+ residual[m, n])
// The matmul behind every linear layer and every 3×3 convolution, in two
// strategies that share the operand loads and the epilogue:
// - `main` (GPUs): 64×64 tiles staged in workgroup memory, W as (n, k) in storage;
// - `rows` (CPU drivers such as lavapipe, where every storage or workgroup load is
//   a per-lane scalar loop but a uniform-buffer load is one vector gather): an
//   invocation computes 4·V columns of one row of C, W comes from a uniform block.
// Header constants: V (rows only), A_MODE (0: A is a dense (m, k) matrix; 1: A is the im2col
// view of an NHWC image for a 3×3 convolution with padding 1, k = ci·9 + ky·3 + kx,
// matching PyTorch's (out, in, 3, 3) weights), GELU (bool), LEVELS (2^b − 1 of the
// fake-quantized model; A is fake-quantized on load with qparams[act_quant − 1]
// when act_quant > 0).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_residual: u32,
    // A_MODE 1 only: image height, width and input channels.
    img_h: u32,
    img_w: u32,
    cin: u32,
    act_quant: u32,
    // rows only: first column of this dispatch's weight block.
    col0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;
// rows only: Wᵀ of 4·V columns, (k, V) vec4s, bound at the column block's offset.
@group(0) @binding(7) var<uniform> w_block: array<vec4<f32>, 4096>;

const TILE: u32 = 64u;   // rows and columns of C per workgroup
const TK: u32 = 16u;     // depth of one shared-memory slice
const QUADS: u32 = 16u;  // TILE / 4: each thread owns a 4×4 block of C

// Tiles as vec4s of four consecutive rows (a) or columns (w) at one depth, so a
// thread reads its operands with two loads and no dynamically indexed arrays
// (those spill to memory on CPU drivers such as lavapipe).
var<workgroup> a_tile: array<vec4<f32>, 256>;  // [TK][QUADS]
var<workgroup> w_tile: array<vec4<f32>, 256>;  // [TK][QUADS]

// The activation quantizer's parameters (read once per invocation).
fn act_params() -> vec4<f32> {
    if (p.act_quant == 0u) {
        return vec4<f32>(0.0);
    }
    return qparams[p.act_quant - 1u];
}

fn load_a(row: u32, kk: u32, q: vec4<f32>) -> f32 {
    if (row >= p.m || kk >= p.k) {
        return 0.0;
    }
    if (A_MODE == 0u) {
        let v = a[row * p.k + kk];
        if (p.act_quant > 0u) {
            return fake_quant(v, q, LEVELS);
        }
        return v;
    }
    // im2col: row = (b·H + y)·W + x, kk = ci·9 + ky·3 + kx.
    let ci = kk / 9u;
    let tap = kk % 9u;
    let x = i32(row % p.img_w) + i32(tap % 3u) - 1;
    let by = row / p.img_w;
    let y = i32(by % p.img_h) + i32(tap / 3u) - 1;
    if (x < 0 || y < 0 || x >= i32(p.img_w) || y >= i32(p.img_h)) {
        return 0.0;
    }
    let src = (by - (by % p.img_h) + u32(y)) * p.img_w + u32(x);
    return a[src * p.cin + ci];
}

fn load_w(col: u32, kk: u32) -> f32 {
    if (col >= p.n || kk >= p.k) {
        return 0.0;
    }
    return w[col * p.k + kk];
}

fn epilogue(row: u32, col0: u32, acc: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j;
        if (col < p.n) {
            var v = acc[j] + bias[col];
            if (GELU) {
                v = gelu(v);
            }
            let idx = row * p.n + col;
            if (p.has_residual != 0u) {
                v += residual[idx];
            }
            c[idx] = v;
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let tid = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Each thread fills one vec4 of each tile: depth kk, quad q (rows or columns 4q..4q+3).
    let kk = tid % TK;
    let q = tid / TK;
    let aq = act_params();
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        let r = row0 + 4u * q;
        let n = col0 + 4u * q;
        let ka = k0 + kk;
        a_tile[kk * QUADS + q] = vec4<f32>(load_a(r, ka, aq), load_a(r + 1u, ka, aq), load_a(r + 2u, ka, aq), load_a(r + 3u, ka, aq));
        w_tile[kk * QUADS + q] = vec4<f32>(load_w(n, k0 + kk), load_w(n + 1u, k0 + kk), load_w(n + 2u, k0 + kk), load_w(n + 3u, k0 + kk));
        workgroupBarrier();
        for (var d = 0u; d < TK; d++) {
            let av = a_tile[d * QUADS + lid.y];
            let wv = w_tile[d * QUADS + lid.x];
            acc0 = fma(vec4<f32>(av.x), wv, acc0);
            acc1 = fma(vec4<f32>(av.y), wv, acc1);
            acc2 = fma(vec4<f32>(av.z), wv, acc2);
            acc3 = fma(vec4<f32>(av.w), wv, acc3);
        }
        workgroupBarrier();
    }
    let row = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    epilogue(row, col, acc0);
    epilogue(row + 1u, col, acc1);
    epilogue(row + 2u, col, acc2);
    epilogue(row + 3u, col, acc3);
}

@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x * 64u + lid.x;
    let aq = act_params();
    // V ≤ 8 keeps these loops unrolled by the driver, so acc stays in registers.
    var acc: array<vec4<f32>, V>;
    for (var j = 0u; j < V; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    for (var kk = 0u; kk < p.k; kk++) {
        let av = vec4<f32>(load_a(row, kk, aq));
        let base = kk * V;
        for (var j = 0u; j < V; j++) {
            acc[j] = fma(av, w_block[base + j], acc[j]);
        }
    }
    for (var j = 0u; j < V; j++) {
        epilogue(row, p.col0 + 4u * j, acc[j]);
    }
}
