// Fused (shifted) window attention. A workgroup handles one slice (a window of one
// head), an invocation one query token. q, k and v arrive in window order
// (window, head, token in window, d), as the q/k/v matmuls write them, and are
// read as uniform buffers: all invocations read the same key at once, which GPUs
// broadcast and CPU drivers (lavapipe) turn into one vector gather, where storage
// and workgroup loads are per-lane loops. The softmax takes two passes over the
// keys (running max and sum, then P and P·v), so no per-query score array exists.
// The output goes back to the tokens' original (unshifted) positions.
// Header constants: WS (window), HD (head dim), HEADS, C (= HEADS·HD), SHIFT,
// SCALE (HD^−½), LEVELS (2^b − 1), TABLE_UNIFORM (read the relative-position table
// from binding 8 instead of 4; CPU drivers), TABLE_VEC4 (its size in vec4s).
// When quant > 0, q·scale, k, v and P are fake-quantized with qparams rows
// quant−1 .. quant+2. When write_p is 1, P is stored (calibration).

const NT: u32 = WS * WS;        // tokens per window
const SIDE: u32 = 2u * WS - 1u; // relative-position table side

struct Params {
    h: u32,          // padded image height
    w: u32,          // padded image width
    windows_x: u32,  // windows per row
    quant: u32,      // first matmul quantizer row + 1, or 0
    write_p: u32,
    s0: u32,         // first slice of this dispatch
    delta: u32,      // words from the start of the q/k/v bindings to slice s0
    p_slice0: u32,   // slice stored at the start of `probs`
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> q: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> k: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> v: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;
@group(0) @binding(8) var<uniform> table_u: array<vec4<f32>, TABLE_VEC4>;

fn q_at(i: u32) -> f32 {
    return q[i >> 2u][i & 3u];
}

fn k_at(i: u32) -> f32 {
    return k[i >> 2u][i & 3u];
}

fn v_at(i: u32) -> f32 {
    return v[i >> 2u][i & 3u];
}

fn bias_at(i: u32) -> f32 {
    if (TABLE_UNIFORM) {
        return table_u[i >> 2u][i & 3u];
    }
    return table[i];
}

// Fake quantization with parameters `qp` (identity when the model is float).
fn quantize(x: f32, qp: vec4<f32>) -> f32 {
    if (p.quant == 0u) {
        return x;
    }
    return fake_quant(x, qp, LEVELS);
}

fn quant_row(which: u32) -> vec4<f32> {
    if (p.quant == 0u) {
        return vec4<f32>(0.0);
    }
    return qparams[p.quant - 1u + which];
}

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
    let slice = p.s0 + wg.x;
    let head = slice % HEADS;
    let win = slice / HEADS;
    let per_image = (p.h / WS) * p.windows_x;
    let b = win / per_image;
    let wy = (win % per_image) / p.windows_x;
    let wx = win % p.windows_x;
    let i = lid.x;
    let iy = i / WS;
    let ix = i % WS;
    // Position in the shifted layout, then in the original one (roll by −SHIFT).
    let sy = wy * WS + iy;
    let sx = wx * WS + ix;
    let tok = (b * p.h + (sy + SHIFT) % p.h) * p.w + (sx + SHIFT) % p.w;
    let first = p.delta + wg.x * NT * HD;  // this slice's first word in q, k, v
    let kq = quant_row(1u);
    let vq = quant_row(2u);
    let pq = quant_row(3u);
    var qi: array<f32, HD>;
    let qq = quant_row(0u);
    for (var d = 0u; d < HD; d++) {
        qi[d] = quantize(q_at(first + i * HD + d) * SCALE, qq);
    }
    let label_i = region(sy, p.h) * 3u + region(sx, p.w);
    let table_row = ((iy + WS - 1u) * SIDE + ix + WS - 1u) * HEADS + head;
    // Pass 1: the scores' maximum and the sum of their exponentials, online.
    var mx = -3.4e38;
    var sum = 0.0;
    for (var j = 0u; j < NT; j++) {
        let s = score(&qi, first + j * HD, kq, table_row, j, label_i, wy, wx);
        let m = max(mx, s);
        sum = sum * exp(mx - m) + exp(s - m);
        mx = m;
    }
    let inv = 1.0 / sum;
    // Pass 2: P (quantized, stored when calibrating) and P·v.
    var o: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        o[d] = 0.0;
    }
    let p_row = ((slice - p.p_slice0) * NT + i) * NT;
    for (var j = 0u; j < NT; j++) {
        let s = score(&qi, first + j * HD, kq, table_row, j, label_i, wy, wx);
        let pj = quantize(exp(s - mx) * inv, pq);
        if (p.write_p == 1u) {
            probs[p_row + j] = pj;
        }
        let vj = first + j * HD;
        for (var d = 0u; d < HD; d++) {
            o[d] = fma(pj, quantize(v_at(vj + d), vq), o[d]);
        }
    }
    let base = tok * C + head * HD;
    for (var d = 0u; d < HD; d++) {
        out[base + d] = o[d];
    }
}

// q·k_j + relative-position bias + shift mask, for key j starting at word kj.
fn score(qi: ptr<function, array<f32, HD>>, kj: u32, kq: vec4<f32>, table_row: u32, j: u32, label_i: u32, wy: u32, wx: u32) -> f32 {
    var dot = 0.0;
    for (var d = 0u; d < HD; d++) {
        dot = fma((*qi)[d], quantize(k_at(kj + d), kq), dot);
    }
    let jy = j / WS;
    let jx = j % WS;
    dot += bias_at(table_row - (jy * SIDE + jx) * HEADS);
    if (SHIFT > 0u) {
        let label_j = region(wy * WS + jy, p.h) * 3u + region(wx * WS + jx, p.w);
        if (label_j != label_i) {
            dot -= 100.0;
        }
    }
    return dot;
}
