// Quantization passes outside the matmuls: the weights' layouts (`main`, below), the
// activation codes of the integer linears (`pack_codes`) and attention
// (`pack_window_codes`), and the integer weights (`int_weights`), each described where
// it is defined.
// Weight preparation (`main`): copies a (n, k) weight tensor into the layout its matmul
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
    act_quantizer: u32,  // int_weights: the input's parameter row + 1
    mult: f32,       // window codes: scale applied before quantizing (q·HD^−½)
    group: u32,      // pack_codes, int_weights: the code rows' group (below), 0 for none
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;

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

// A row of k codes packs four per word. With group > 0 (proj's input: one group per
// attention head) each group of `group` values starts a new word, so the integer
// attention writes its heads' codes independently; padding positions hold code 0.
const PADDING: u32 = 0xffffffffu;

// Words per code row.
fn code_row_words() -> u32 {
    if (p.group == 0u) {
        return (p.k + 3u) / 4u;
    }
    return (p.k / p.group) * ((p.group + 3u) / 4u);
}

// Which of the row's k values position e of its code words holds (PADDING: none).
fn code_source(e: u32) -> u32 {
    if (p.group == 0u) {
        return select(PADDING, e, e < p.k);
    }
    let g4 = (p.group + 3u) / 4u * 4u;
    let d = e % g4;
    return select(PADDING, (e / g4) * p.group + d, d < p.group);
}

// Activation codes for the integer engine: row r of x (n rows of k) becomes
// code_row_words() words of four u8 codes, with parameter row quantizer − 1. One
// invocation per word.
@compute @workgroup_size(256)
fn pack_codes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let k4 = code_row_words();
    if (i >= p.n * k4) {
        return;
    }
    let q = qparams[p.quantizer - 1u];
    let row = i / k4;
    let e0 = (i % k4) * 4u;
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
        let kk = code_source(e0 + j);
        if (kk != PADDING) {
            word |= quant_code(x[row * p.k + kk], q, LEVELS) << (8u * j);
        }
    }
    codes[i] = word;
}

// Integer weights of one linear (n columns of k) in the `rows_int` block layout:
// block b (block_cols columns at word b·slot) holds, per word of its input's codes
// (code_row_words, laid out as they are), one word of four u8 codes per column, then
// per column the constant term of SPEC §6,
// s_w·l_x·Σ_k R_w + k·l_x·l_w + bias (f32 bits), with the biases c folded into l.
// One invocation per column.
@compute @workgroup_size(64)
fn int_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = flat_index(gid, nwg);
    if (col >= p.n) {
        return;
    }
    let wq = qparams[p.quantizer - 1u];
    let xq = qparams[p.act_quantizer - 1u];
    let k4 = code_row_words();
    let base = (col / p.block_cols) * p.slot + col % p.block_cols;
    var colsum = 0u;
    for (var g = 0u; g < k4; g++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let kk = code_source(g * 4u + j);
            if (kk != PADDING) {
                let r = quant_code(x[col * p.k + kk], wq, LEVELS);
                colsum += r;
                word |= r << (8u * j);
            }
        }
        codes[base + g * p.block_cols] = word;
    }
    let lx = xq.x + xq.z;
    let lw = wq.x + wq.z;
    let term = quant_step(wq, LEVELS) * lx * f32(colsum) + f32(p.k) * lx * lw + bias[col];
    codes[base + k4 * p.block_cols] = bitcast<u32>(term);
}

// Codes of window-ordered q, k or v (slices of block_cols tokens × k values, the
// layout attention.wgsl reads) for the integer attention. block_cols: tokens per
// window (a multiple of 4), k: head dim; x·mult is quantized with row quantizer − 1.
// slot = 0 (q, k): per token, ceil(k/4) words of four codes and a word with their
// sum; slot = 1 (v, transposed): per slice and d, block_cols/4 words of four
// tokens' codes and a word with their sum. One invocation per output row.
@compute @workgroup_size(256)
fn pack_window_codes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let q = qparams[p.quantizer - 1u];
    let nt = p.block_cols;
    let transposed = p.slot == 1u;
    let count = select(p.k, nt, transposed);       // codes per output row
    let rows = p.n * select(nt, p.k, transposed);  // output rows
    if (i >= rows) {
        return;
    }
    let words = (count + 3u) / 4u;
    var sum = 0u;
    for (var w = 0u; w < words; w++) {
        var word = 0u;
        for (var j = 0u; j < 4u; j++) {
            let e = w * 4u + j;
            if (e < count) {
                // Row i: token i of slice i / nt, or value d = i % k of slice i / k.
                var src = i * p.k + e;
                if (transposed) {
                    src = ((i / p.k) * nt + e) * p.k + i % p.k;
                }
                let r = quant_code(x[src] * p.mult, q, LEVELS);
                sum += r;
                word |= r << (8u * j);
            }
        }
        codes[i * (words + 1u) + w] = word;
    }
    codes[i * (words + 1u) + words] = sum;
}
