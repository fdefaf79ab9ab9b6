// C[m, n] = Σ_k A[m, k] · W[n, k] + bias[n]  (+ GELU) (+ residual[m, n])
// The matmul behind every linear layer and every 3×3 convolution, in two
// strategies that share the operand loads and the epilogue:
// - `main` (GPUs): 64×64 tiles staged in workgroup memory, W as (n, k) in storage;
// - `rows` (CPU drivers such as lavapipe): shaders/matmul_rows.wgsl, appended to
//   this file for that strategy only, since it needs subgroup operations.
// The integer engine's linears have the same two: `main_int` (tiles, GPUs) and
// `rows_int` (CPU drivers), sharing the integer algebra and the epilogues.
// Header constants: V (rows only), A_MODE (0: A is a dense (m, k) matrix; 1: A is the im2col
// view of an NHWC image for a 3×3 convolution with padding 1, k = ci·9 + ky·3 + kx,
// matching PyTorch's (out, in, 3, 3) weights), GELU, RESIDUAL (add residual[m, n]),
// OUT_WINDOWS (write C in the attention's window order), OUT_CODES (main_int, rows_int:
// write C as codes), LEVELS (2^b − 1 of the
// fake-quantized model, 0 for float; A is fake-quantized on load with
// qparams[act_quant − 1]).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    w_quant: u32,  // main_int, rows_int: the weight quantizer's parameter row + 1
    // A_MODE 1 only: image height, width and input channels.
    img_h: u32,
    img_w: u32,
    cin: u32,
    act_quant: u32,
    // rows only: first column of this dispatch's weight block.
    col0: u32,
    // OUT_WINDOWS only: the attention's window, shift and head count (img_h, img_w:
    // the token grid).
    out_window: u32,
    out_shift: u32,
    out_heads: u32,
    // OUT_CODES only: the next quantizer's parameter row + 1.
    out_quant: u32,
    // rows*, conv_windowed: the first row of this dispatch and the vec4s between
    // the starts of the weight blocks in its weight window (matmul_rows.wgsl);
    // rows_windowed: where row row0 starts in the uniform window of A;
    // conv_windowed: where pixel 0 would start in the windows of the image rows
    // above, at and below (i32 bits; pixel q's channels at base + q·cin).
    row0: u32,
    slot4: u32,
    a_delta: u32,
    a_above: u32,
    a_below: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<storage, read> qparams: array<vec4<f32>>;
// main_int, rows_int: the activation codes (quant.wgsl pack_codes), (m, ceil(k/4)) words.
@group(0) @binding(8) var<storage, read> a_codes: array<u32>;
// main_int, rows_int with OUT_CODES: C as the next linear's input codes (four per word).
@group(0) @binding(10) var<storage, read_write> c_codes: array<u32>;
// main_int only: the integer weights as one block of all n columns (int_weights with
// block_cols = n): the codes of column col at k-word g at g·n + col, then the
// columns' constant terms (f32 bits) at ceil(k/4)·n + col.
@group(0) @binding(11) var<storage, read> w_codes: array<u32>;

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

// Where row `row` of A sits: the clamped row, whether it exists and, for the
// convolution (A_MODE 1), its pixel (x, y) and the first row of its image (b·H).
// The `rows` matmul takes it once per row instead of once per load.
struct RowOrigin {
    r: u32,
    ok: bool,
    x: i32,
    y: i32,
    image_row0: u32,
}

fn row_origin(row: u32) -> RowOrigin {
    let r = min(row, p.m - 1u);
    if (A_MODE != 1u) {
        return RowOrigin(r, row < p.m, 0, 0, 0u);
    }
    // im2col: row = (b·H + y)·W + x.
    let by = r / p.img_w;
    let y = by % p.img_h;
    return RowOrigin(r, row < p.m, i32(r % p.img_w), i32(y), by - y);
}

// A[row, kk] (0 outside A and in the convolution's zero padding), fake-quantized
// when the model is; `o` is row_origin(row). Branch-free apart from constants: on CPU
// drivers a divergent branch around a load costs more than the clamped load itself.
fn load_a_at(o: RowOrigin, kk: u32, q: vec4<f32>) -> f32 {
    var ok = o.ok && kk < p.k;
    let c = min(kk, p.k - 1u);
    var idx = o.r * p.k + c;
    if (A_MODE == 1u) {
        // kk = ci·9 + ky·3 + kx.
        let tap = c % 9u;
        let x = o.x + i32(tap % 3u) - 1;
        let y = o.y + i32(tap / 3u) - 1;
        ok = ok && x >= 0 && y >= 0 && x < i32(p.img_w) && y < i32(p.img_h);
        let xc = u32(clamp(x, 0, i32(p.img_w) - 1));
        let yc = u32(clamp(y, 0, i32(p.img_h) - 1));
        idx = ((o.image_row0 + yc) * p.img_w + xc) * p.cin + c / 9u;
    }
    var v = a[idx];
    if (LEVELS > 0.0) {
        v = fake_quant(v, q, LEVELS);
    }
    return select(0.0, v, ok);
}

fn load_a(row: u32, kk: u32, q: vec4<f32>) -> f32 {
    return load_a_at(row_origin(row), kk, q);
}

fn load_w(col: u32, kk: u32) -> f32 {
    if (col >= p.n || kk >= p.k) {
        return 0.0;
    }
    return w[col * p.k + kk];
}

// Where row `row` of C starts: row-major, or (OUT_WINDOWS) at its token in the
// attention's window order (window, head, token in window, d) of the shifted
// window partition, the layout shaders/attention.wgsl reads.
fn row_start(row: u32) -> u32 {
    if (!OUT_WINDOWS) {
        return row * p.n;
    }
    let ws = p.out_window;
    let b = row / (p.img_h * p.img_w);
    let y = (row / p.img_w) % p.img_h;
    let x = row % p.img_w;
    // Shifted position: the cyclic roll by −shift.
    let sy = (y + p.img_h - p.out_shift) % p.img_h;
    let sx = (x + p.img_w - p.out_shift) % p.img_w;
    let win = (b * (p.img_h / ws) + sy / ws) * (p.img_w / ws) + sx / ws;
    let hd = p.n / p.out_heads;
    return (win * p.out_heads * ws * ws + (sy % ws) * ws + sx % ws) * hd;
}

// Bias of columns col0..col0+3 (the tiled kernel; `rows` has it in its weight block).
fn bias4(col0: u32) -> vec4<f32> {
    let last = p.n - 1u;
    return vec4<f32>(bias[min(col0, last)], bias[min(col0 + 1u, last)], bias[min(col0 + 2u, last)], bias[min(col0 + 3u, last)]);
}

// Writes C[row, col0..col0+3] from `acc` (the sums plus bias); `start` is row_start(row).
fn epilogue(row: u32, start: u32, col0: u32, acc: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    // Window order: column col is d = col % hd of head col / hd, heads NT·hd apart.
    var hd = 0u;
    var head = 0u;
    var d = 0u;
    if (OUT_WINDOWS) {
        hd = p.n / p.out_heads;
        head = col0 / hd;
        d = col0 % hd;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j;
        if (col < p.n) {
            var v = acc[j];
            if (GELU) {
                v = gelu(v);
            }
            if (RESIDUAL) {
                v += residual[row * p.n + col];
            }
            if (OUT_WINDOWS) {
                c[start + head * p.out_window * p.out_window * hd + d] = v;
                d += 1u;
                if (d == hd) {
                    d = 0u;
                    head += 1u;
                }
            } else {
                c[start + col] = v;
            }
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
    let b = bias4(col);
    epilogue(row, row_start(row), col, acc0 + b);
    epilogue(row + 1u, row_start(row + 1u), col, acc1 + b);
    epilogue(row + 2u, row_start(row + 2u), col, acc2 + b);
    epilogue(row + 3u, row_start(row + 3u), col, acc3 + b);
}

// The integer engine's linear (SPEC §6): with codes r_x (activations) and R_w
// (weights) and c folded into l,
// y = s_x·s_w·Σ r_x·R_w + s_x·l_w·Σ r_x + [s_w·l_x·Σ R_w + k·l_x·l_w + bias],
// the bracket precomputed per column (the column term). The sums are exact in u32,
// so `main_int` and `rows_int` give the same bits.

// (s_x·s_w, s_x·l_w) of the integer linear.
fn int_scales() -> vec2<f32> {
    let xq = qparams[p.act_quant - 1u];
    let wq = qparams[p.w_quant - 1u];
    let sx = quant_step(xq, LEVELS);
    return vec2<f32>(sx * quant_step(wq, LEVELS), sx * (wq.x + wq.z));
}

// y of four columns of one row from the sums Σ r_x·R_w (`acc`) and Σ r_x (`row_sum`),
// `s` = int_scales() and the columns' constant terms.
fn int_y(s: vec2<f32>, acc: vec4<u32>, row_sum: u32, col_term: vec4<f32>) -> vec4<f32> {
    let row_term = s.y * f32(row_sum);
    return s.x * vec4<f32>(acc) + row_term + col_term;
}

// Writes y = C[row, col0..col0+3] of the integer linear: as the next quantizer's codes
// (OUT_CODES) or through the float epilogue; `start` is row_start(row).
fn int_output(row: u32, start: u32, col0: u32, y: vec4<f32>) {
    if (OUT_CODES) {
        emit_codes(row, col0, y);
    } else {
        epilogue(row, start, col0, y);
    }
}

// The word of codes A[row, 4g..4g+3] (0 outside A); k4 = ceil(k/4).
fn load_code(row: u32, g: u32, k4: u32) -> u32 {
    let word = a_codes[min(row, p.m - 1u) * k4 + min(g, k4 - 1u)];
    return select(0u, word, row < p.m && g < k4);
}

// The word of weight codes W[col, 4g..4g+3] (0 outside W).
fn load_w_code(col: u32, g: u32, k4: u32) -> u32 {
    let word = w_codes[min(g, k4 - 1u) * p.n + min(col, p.n - 1u)];
    return select(0u, word, col < p.n && g < k4);
}

const TG: u32 = 16u;  // main_int: k-words (four k each) of one shared-memory slice

// Integer tiles as vec4s of four consecutive rows (a) or columns (w) at one k-word.
var<workgroup> a_code_tile: array<vec4<u32>, 256>;  // [TG][QUADS]
var<workgroup> w_code_tile: array<vec4<u32>, 256>;  // [TG][QUADS]

// The integer linear on GPUs, tiled like `main`: a 64×64 tile of C per workgroup,
// each thread a 4×4 block, the codes staged in workgroup memory TG words deep. The
// row sums Σ r_x are taken while staging: each thread sums its word of four rows
// over the slices, and the TG shares of a row are added at the end.
@compute @workgroup_size(16, 16)
fn main_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let tid = lid.y * 16u + lid.x;
    let k4 = (p.k + 3u) / 4u;
    var acc0 = vec4<u32>(0u);
    var acc1 = vec4<u32>(0u);
    var acc2 = vec4<u32>(0u);
    var acc3 = vec4<u32>(0u);
    // A is staged as (word ag, row quad aq), so neighbouring threads read neighbouring
    // words of a row; W as (word wk, column quad wq), so they read along W's rows.
    let ag = tid % TG;
    let aq = tid / TG;
    let wq = tid % QUADS;
    let wk = tid / QUADS;
    var sums = vec4<u32>(0u);
    for (var g0 = 0u; g0 < k4; g0 += TG) {
        let r = row0 + 4u * aq;
        let ga = g0 + ag;
        let a4 = vec4<u32>(load_code(r, ga, k4), load_code(r + 1u, ga, k4), load_code(r + 2u, ga, k4), load_code(r + 3u, ga, k4));
        sums += dot4x4(0x01010101u, a4);
        a_code_tile[ag * QUADS + aq] = a4;
        let n = col0 + 4u * wq;
        let gw = g0 + wk;
        w_code_tile[wk * QUADS + wq] = vec4<u32>(load_w_code(n, gw, k4), load_w_code(n + 1u, gw, k4), load_w_code(n + 2u, gw, k4), load_w_code(n + 3u, gw, k4));
        workgroupBarrier();
        for (var d = 0u; d < TG; d++) {
            let av = a_code_tile[d * QUADS + lid.y];
            let wv = w_code_tile[d * QUADS + lid.x];
            acc0 += dot4x4(av.x, wv);
            acc1 += dot4x4(av.y, wv);
            acc2 += dot4x4(av.z, wv);
            acc3 += dot4x4(av.w, wv);
        }
        workgroupBarrier();
    }
    // Row sums of rows 4·lid.y..: the shares of the TG threads that staged them.
    a_code_tile[ag * QUADS + aq] = sums;
    workgroupBarrier();
    var row_sum = vec4<u32>(0u);
    for (var g = 0u; g < TG; g++) {
        row_sum += a_code_tile[g * QUADS + lid.y];
    }
    let row = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    let s = int_scales();
    let terms = k4 * p.n;
    let last = p.n - 1u;
    let col_term = bitcast<vec4<f32>>(vec4<u32>(w_codes[terms + min(col, last)], w_codes[terms + min(col + 1u, last)], w_codes[terms + min(col + 2u, last)], w_codes[terms + min(col + 3u, last)]));
    int_output(row, row_start(row), col, int_y(s, acc0, row_sum.x, col_term));
    int_output(row + 1u, row_start(row + 1u), col, int_y(s, acc1, row_sum.y, col_term));
    int_output(row + 2u, row_start(row + 2u), col, int_y(s, acc2, row_sum.z, col_term));
    int_output(row + 3u, row_start(row + 3u), col, int_y(s, acc3, row_sum.w, col_term));
}

// OUT_CODES: C[row, col0..col0+3] (plus GELU) as one word of the next quantizer's
// codes, so the next linear needs no packing pass (columns past n get code 0).
fn emit_codes(row: u32, col0: u32, y: vec4<f32>) {
    if (row >= p.m || col0 >= p.n) {
        return;
    }
    var v = y;
    if (GELU) {
        v = vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
    }
    let inside = vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
    c_codes[row * ((p.n + 3u) / 4u) + col0 / 4u] = quad_codes(v, inside, qparams[p.out_quant - 1u], LEVELS);
}
