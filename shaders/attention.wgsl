// Fused (shifted) window attention for one window and one head per workgroup:
// gathers q, k, v through the cyclic shift and window partition, adds the
// relative-position bias and the shift mask, takes the softmax and P·v, and
// writes the head's output back at the tokens' original (unshifted) positions.
// Header constants: WS (window), HD (head dim), HEADS, C (= HEADS·HD), SHIFT, SCALE (HD^−½),
// LEVELS (2^b − 1). When quant > 0, q·scale, k, v and the softmax output P are
// fake-quantized with qparams rows quant−1 .. quant+2. When write_p is 1, P is also
// stored (calibration), for batch items b0.. of this dispatch.

const NT: u32 = WS * WS;        // tokens per window
const SIDE: u32 = 2u * WS - 1u; // relative-position table side

struct Params {
    h: u32,          // padded image height
    w: u32,          // padded image width
    windows_x: u32,  // windows per row
    quant: u32,      // first matmul quantizer row + 1, or 0
    write_p: u32,
    b0: u32,         // first batch item of this dispatch
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;

fn quantize(v: f32, which: u32) -> f32 {
    if (p.quant == 0u) {
        return v;
    }
    return fake_quant(v, qparams[p.quant - 1u + which], LEVELS);
}

var<workgroup> k_win: array<f32, NT * HD>;
var<workgroup> v_win: array<f32, NT * HD>;

// Which of the three shift-mask slices [0, n−WS), [n−WS, n−SHIFT), [n−SHIFT, n) holds y.
fn region(y: u32, n: u32) -> u32 {
    if (y < n - WS) {
        return 0u;
    }
    if (y < n - SHIFT) {
        return 1u;
    }
    return 2u;
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let head = wg.y;
    let b = wg.z + p.b0;
    let wy = wg.x / p.windows_x;
    let wx = wg.x % p.windows_x;
    let i = lid.x;
    let iy = i / WS;
    let ix = i % WS;
    // Position in the shifted layout, then in the original one (roll by −SHIFT).
    let sy = wy * WS + iy;
    let sx = wx * WS + ix;
    let tok = (b * p.h + (sy + SHIFT) % p.h) * p.w + (sx + SHIFT) % p.w;
    let base = tok * C + head * HD;
    var qi: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        k_win[i * HD + d] = quantize(k[base + d], 1u);
        v_win[i * HD + d] = quantize(v[base + d], 2u);
        qi[d] = quantize(q[base + d] * SCALE, 0u);
    }
    workgroupBarrier();
    let label_i = region(sy, p.h) * 3u + region(sx, p.w);
    var s: array<f32, NT>;
    var mx = -3.4e38;
    for (var j = 0u; j < NT; j++) {
        var dot = 0.0;
        for (var d = 0u; d < HD; d++) {
            dot = fma(qi[d], k_win[j * HD + d], dot);
        }
        let jy = j / WS;
        let jx = j % WS;
        dot += table[((iy + WS - 1u - jy) * SIDE + ix + WS - 1u - jx) * HEADS + head];
        if (SHIFT > 0u) {
            let label_j = region(wy * WS + jy, p.h) * 3u + region(wx * WS + jx, p.w);
            if (label_j != label_i) {
                dot -= 100.0;
            }
        }
        s[j] = dot;
        mx = max(mx, dot);
    }
    var sum = 0.0;
    for (var j = 0u; j < NT; j++) {
        s[j] = exp(s[j] - mx);
        sum += s[j];
    }
    let inv = 1.0 / sum;
    let p_base = ((wg.z * (p.h / WS) * p.windows_x + wg.x) * HEADS + head) * NT * NT + i * NT;
    for (var j = 0u; j < NT; j++) {
        s[j] = quantize(s[j] * inv, 3u);
        if (p.write_p == 1u) {
            probs[p_base + j] = s[j];
        }
    }
    for (var d = 0u; d < HD; d++) {
        var o = 0.0;
        for (var j = 0u; j < NT; j++) {
            o = fma(s[j], v_win[j * HD + d], o);
        }
        out[base + d] = o;
    }
}
