// Window-attention geometry shared by attention.wgsl and attention_backward.wgsl
// (prepended to both): the dispatch parameters, where a slice's tokens sit, the
// relative-position bias with the shift mask, and the matmul inputs' fake quantizers.
// Header constants: WS, HD, HEADS, SHIFT, LEVELS, UNIFORM_READS (read the table from
// the uniform binding 8, else the storage binding 4), TABLE_VEC4 (the table's size in vec4s).

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
    delta_v: u32,    // main_int: words from the start of the v-code binding to slice s0
    out_quant: u32,  // main_int: proj's input quantizer row + 1 to write codes, or 0
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> table_u: array<vec4<f32>, TABLE_VEC4>;

fn bias_at(i: u32) -> f32 {
    if (UNIFORM_READS) {
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

// Where query i of this dispatch's slice `local` sits.
struct Query {
    slice: u32,
    head: u32,
    wy: u32,        // window row and column
    wx: u32,
    i: u32,         // token in the window
    tok: u32,       // token in the original (unshifted) layout
    label: u32,     // shift-mask region
    rel: u32,       // its relative-position offset (0,0) at rel = row·SIDE + column
}

fn query(local: u32, i: u32) -> Query {
    let slice = p.s0 + local;
    let head = slice % HEADS;
    let win = slice / HEADS;
    let per_image = (p.h / WS) * p.windows_x;
    let b = win / per_image;
    let wy = (win % per_image) / p.windows_x;
    let wx = win % p.windows_x;
    let iy = i / WS;
    let ix = i % WS;
    // Position in the shifted layout, then in the original one (roll by −SHIFT).
    let sy = wy * WS + iy;
    let sx = wx * WS + ix;
    let tok = (b * p.h + (sy + SHIFT) % p.h) * p.w + (sx + SHIFT) % p.w;
    let label = region(sy, p.h) * 3u + region(sx, p.w);
    let rel = (iy + WS - 1u) * SIDE + ix + WS - 1u;
    return Query(slice, head, wy, wx, i, tok, label, rel);
}

// The relative position of key j to query `qr`, as a row·SIDE + column offset.
fn rel_offset(qr: Query, j: u32) -> u32 {
    return qr.rel - (j / WS) * SIDE - j % WS;
}

// Relative-position bias and shift mask of key j for query `qr`.
fn bias_and_mask(qr: Query, j: u32) -> f32 {
    var b = bias_at(rel_offset(qr, j) * HEADS + qr.head);
    if (SHIFT > 0u) {
        let label_j = region(qr.wy * WS + j / WS, p.h) * 3u + region(qr.wx * WS + j % WS, p.w);
        if (label_j != qr.label) {
            b -= 100.0;
        }
    }
    return b;
}
