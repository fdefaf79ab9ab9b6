// C[m, n] = Σ_k A[m, k] · W[n, k] + bias[n]  (+ GELU) (+ residual[m, n])
// The one tiled matmul behind every linear layer and every 3×3 convolution.
// Header constants: A_MODE (0: A is a dense (m, k) matrix; 1: A is the im2col
// view of an NHWC image for a 3×3 convolution with padding 1, k = ci·9 + ky·3 + kx,
// matching PyTorch's (out, in, 3, 3) weights), GELU (bool).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_residual: u32,
    // A_MODE 1 only: image height, width and input channels.
    img_h: u32,
    img_w: u32,
    cin: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;   // rows and columns of C per workgroup
const TK: u32 = 16u;     // depth of one shared-memory slice
const REG: u32 = 4u;     // rows and columns of C per thread

var<workgroup> a_tile: array<f32, 1024>;  // [TK][TILE]
var<workgroup> w_tile: array<f32, 1024>;  // [TK][TILE]

fn load_a(row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) {
        return 0.0;
    }
    if (A_MODE == 0u) {
        return a[row * p.k + kk];
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

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            let r = e / TK;
            let kk = e % TK;
            a_tile[kk * TILE + r] = load_a(row0 + r, k0 + kk);
            w_tile[kk * TILE + r] = load_w(col0 + r, k0 + kk);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var af: array<f32, 4>;
            var wf: array<f32, 4>;
            for (var i = 0u; i < REG; i++) {
                af[i] = a_tile[kk * TILE + lid.y * REG + i];
                wf[i] = w_tile[kk * TILE + lid.x * REG + i];
            }
            for (var i = 0u; i < REG; i++) {
                for (var j = 0u; j < REG; j++) {
                    acc[i * REG + j] = fma(af[i], wf[j], acc[i * REG + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < REG; i++) {
        let row = row0 + lid.y * REG + i;
        for (var j = 0u; j < REG; j++) {
            let col = col0 + lid.x * REG + j;
            if (row < p.m && col < p.n) {
                var v = acc[i * REG + j] + bias[col];
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
}
