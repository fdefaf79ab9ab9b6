// Fused (shifted) window attention. A workgroup handles one slice (a window of one
// head), an invocation one query token. q, k and v arrive in window order
// (window, head, token in window, d), as the q/k/v matmuls write them, and the
// softmax takes two passes over the keys (scores and their maximum, then P and P·v).
// Every query reads every key and value of its slice, so how k and v are read
// depends on the device (UNIFORM_READS):
// - CPU drivers (lavapipe, true): `main_rows` and `main_int_rows` in
//   attention_rows.wgsl, appended for those drivers, read them through uniform
//   windows (bindings 1–3, 9–11), a few slices per dispatch.
// - GPUs (false, `main`): from storage, one dispatch per up to 65535 slices
//   (per-dispatch cost dominates otherwise). The workgroup first copies its slice's k
//   and v, fake-quantized once, into workgroup memory (every query then reads the same
//   word at once: a broadcast), and each query keeps its NT scores in a private array
//   (registers) for pass 2.
// The output goes back to the tokens' original (unshifted) positions.
// Header constants: WS (window), HD (head dim), HEADS, C (= HEADS·HD), SHIFT,
// SCALE (HD^−½), LEVELS (2^b − 1), UNIFORM_READS (CPU drivers: the relative-position
// table comes from uniform binding 8, else storage binding 4), TABLE_VEC4 (the
// table's size in vec4s); LANES for attention_rows.wgsl.
// When quant > 0, q·scale, k, v and P are fake-quantized with qparams rows
// quant−1 .. quant+2. When write_p is 1, P is stored (calibration).
// `main_int` is the integer engine's version: both matmuls on codes (SPEC §6); on
// GPUs it stages the k and v codes in workgroup memory the same way.
// window.wgsl (prepended) holds the parameters, the geometry and the bias; bindings
// 0, 4, 6 and 8 are declared there. The pipelines skip wgpu's zero fill of workgroup
// memory (kernels.rs): every staged word is written before it is read.

@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;
@group(0) @binding(12) var<storage, read> q_s: array<f32>;
@group(0) @binding(13) var<storage, read> k_s: array<f32>;
@group(0) @binding(14) var<storage, read> v_s: array<f32>;
// main_int: codes of q·scale and k (per token: HD4 words, then their sum) and of v
// (per d: NT4 words of four tokens, then their sum), from quant.wgsl pack_window_codes.
@group(0) @binding(15) var<storage, read> q_codes_s: array<u32>;
@group(0) @binding(16) var<storage, read> k_codes_s: array<u32>;
@group(0) @binding(17) var<storage, read> v_codes_s: array<u32>;

const HD4: u32 = (HD + 3u) / 4u;
const NT4: u32 = NT / 4u;

// GPU path: this slice's k and v (fake-quantized) and their codes, staged per workgroup.
// (Sized for both entry points; each uses only its own pair.)
var<workgroup> k_w: array<f32, NT * HD>;
var<workgroup> v_w: array<f32, NT * HD>;
var<workgroup> k_codes_w: array<u32, NT * (HD4 + 1u)>;
var<workgroup> v_codes_w: array<u32, HD * (NT4 + 1u)>;

// GPU path: this head's relative-position biases and the shift-mask region of each
// token of the window.
var<workgroup> bias_w: array<f32, SIDE * SIDE>;
var<workgroup> label_w: array<u32, NT>;

// GPU path: stage the biases and regions (before stage_kv or stage_codes, whose
// barrier covers them), so that bias_and_mask_staged reads workgroup memory only.
fn stage_bias(qr: Query) {
    for (var w = qr.i; w < SIDE * SIDE; w += NT) {
        bias_w[w] = bias_at(w * HEADS + qr.head);
    }
    label_w[qr.i] = qr.label;
}

// window.wgsl's bias_and_mask (same values) from the staged biases and regions.
fn bias_and_mask_staged(qr: Query, j: u32) -> f32 {
    var b = bias_w[qr.rel - (j / WS) * SIDE - j % WS];
    if (SHIFT > 0u && label_w[j] != qr.label) {
        b -= 100.0;
    }
    return b;
}

// GPU path: copy the slice's k and v into workgroup memory, fake-quantized once.
// Invocation i copies words i, i + NT, ...: consecutive lanes, consecutive words.
fn stage_kv(first: u32, i: u32, kq: vec4<f32>, vq: vec4<f32>) {
    for (var w = i; w < NT * HD; w += NT) {
        k_w[w] = quantize(k_s[first + w], kq);
        v_w[w] = quantize(v_s[first + w], vq);
    }
    workgroupBarrier();
}

// GPU path: copy the slice's k codes (from word `first`) and v codes (from `first_v`).
fn stage_codes(first: u32, first_v: u32, i: u32) {
    for (var w = i; w < NT * (HD4 + 1u); w += NT) {
        k_codes_w[w] = k_codes_s[first + w];
    }
    for (var w = i; w < HD * (NT4 + 1u); w += NT) {
        v_codes_w[w] = v_codes_s[first_v + w];
    }
    workgroupBarrier();
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let qr = query(wg.x, lid.x);
    let i = lid.x;
    let slice = qr.slice;
    let first = p.delta + wg.x * NT * HD;  // this slice's first word in q, k, v
    let kq = quant_row(1u);
    let vq = quant_row(2u);
    let pq = quant_row(3u);
    stage_bias(qr);
    stage_kv(first, i, kq, vq);
    var qi: array<f32, HD>;
    let qq = quant_row(0u);
    for (var d = 0u; d < HD; d++) {
        qi[d] = quantize(q_s[first + i * HD + d] * SCALE, qq);
    }
    // Pass 1: the scores and their maximum; then their exponentials, in place.
    var scores: array<f32, NT>;
    var mx = -3.4e38;
    for (var j = 0u; j < NT; j++) {
        scores[j] = score(&qi, j) + bias_and_mask_staged(qr, j);
        mx = max(mx, scores[j]);
    }
    let inv = 1.0 / exponentials(&scores, mx);
    // Pass 2: P (quantized, stored when calibrating) and P·v.
    var o: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        o[d] = 0.0;
    }
    let p_row = ((slice - p.p_slice0) * NT + i) * NT;
    for (var j = 0u; j < NT; j++) {
        let pj = quantize(scores[j] * inv, pq);
        if (p.write_p == 1u) {
            probs[p_row + j] = pj;
        }
        for (var d = 0u; d < HD; d++) {
            o[d] = fma(pj, v_w[j * HD + d], o[d]);
        }
    }
    let base = qr.tok * C + qr.head * HD;
    for (var d = 0u; d < HD; d++) {
        out[base + d] = o[d];
    }
}

// The softmax's numerators: each score s becomes exp(s − mx); returns their sum
// (summed in key order, as attention_rows.wgsl does). One exp per score: the
// online form (a running maximum) takes three.
fn exponentials(scores: ptr<function, array<f32, NT>>, mx: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < NT; j++) {
        (*scores)[j] = exp((*scores)[j] - mx);
        sum += (*scores)[j];
    }
    return sum;
}

// q·k_j for key j of the staged slice.
fn score(qi: ptr<function, array<f32, HD>>, j: u32) -> f32 {
    var dot = 0.0;
    for (var d = 0u; d < HD; d++) {
        dot = fma((*qi)[d], k_w[j * HD + d], dot);
    }
    return dot;
}

// Dequantization of a code sum: x = l + s·r per element, with c folded into l.
fn lower(q: vec4<f32>) -> f32 {
    return q.x + q.z;
}

// The integer attention's quantizers (q·scale, k, v, P) and their steps s (in order).
struct IntQuant {
    q: vec4<f32>,
    k: vec4<f32>,
    v: vec4<f32>,
    p: vec4<f32>,
    step: vec4<f32>,
}

fn int_quant() -> IntQuant {
    let q = quant_row(0u);
    let k = quant_row(1u);
    let v = quant_row(2u);
    let pq = quant_row(3u);
    return IntQuant(q, k, v, pq, vec4<f32>(quant_step(q, LEVELS), quant_step(k, LEVELS), quant_step(v, LEVELS), quant_step(pq, LEVELS)));
}

// Output o_d = Σ_j P_j v_jd from the code sums Σ r_P r_v (`acc`), Σ r_P and Σ r_v.
fn int_output(iq: IntQuant, acc: u32, p_sum: u32, v_sum: u32) -> f32 {
    let sp = iq.step.w;
    let sv = iq.step.z;
    return sp * sv * f32(acc) + sp * lower(iq.v) * f32(p_sum) + sv * lower(iq.p) * f32(v_sum) + f32(NT) * lower(iq.p) * lower(iq.v);
}

// The integer engine's attention: s_ij = Σ_d q_d k_d and o_id = Σ_j P_j v_jd with
// every operand l + s·r, expanded as in SPEC §6 into s_a·s_b·Σ r_a r_b (dot4U8Packed)
// + s_a·l_b·Σ r_a + s_b·l_a·Σ r_b + n·l_a·l_b. P's codes are made here, four keys
// per word, and meet v's transposed codes.
@compute @workgroup_size(NT)
fn main_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let qr = query(wg.x, lid.x);
    let iq = int_quant();
    let first = p.delta + wg.x * NT * (HD4 + 1u);
    let first_v = p.delta_v + wg.x * HD * (NT4 + 1u);
    stage_bias(qr);
    stage_codes(first, first_v, qr.i);
    var qw: array<u32, HD4>;
    let q0 = first + qr.i * (HD4 + 1u);
    for (var w = 0u; w < HD4; w++) {
        qw[w] = q_codes_s[q0 + w];
    }
    let q_sum = f32(q_codes_s[q0 + HD4]);
    // Terms of the score that do not depend on k's codes beyond their sum.
    let q_term = iq.step.x * lower(iq.k) * q_sum + f32(HD) * lower(iq.q) * lower(iq.k);
    var scores: array<f32, NT>;
    var mx = -3.4e38;
    for (var j = 0u; j < NT; j++) {
        scores[j] = int_score(&qw, j, iq.step.x * iq.step.y, iq.step.y * lower(iq.q), q_term) + bias_and_mask_staged(qr, j);
        mx = max(mx, scores[j]);
    }
    let inv = 1.0 / exponentials(&scores, mx);
    var acc: array<u32, HD>;
    for (var d = 0u; d < HD; d++) {
        acc[d] = 0u;
    }
    var p_sum = 0u;
    var p_word = 0u;
    for (var j = 0u; j < NT; j++) {
        let r = quant_code(scores[j] * inv, iq.p, LEVELS);
        p_sum += r;
        p_word |= r << (8u * (j & 3u));
        if ((j & 3u) == 3u) {
            for (var d = 0u; d < HD; d++) {
                acc[d] += dot4U8Packed(p_word, v_codes_w[d * (NT4 + 1u) + j / 4u]);
            }
            p_word = 0u;
        }
    }
    let base = qr.tok * C + qr.head * HD;
    for (var d = 0u; d < HD; d++) {
        out[base + d] = int_output(iq, acc[d], p_sum, v_codes_w[d * (NT4 + 1u) + NT4]);
    }
}

// q·k_j from the staged codes: scale·Σ r_q r_k + k_scale·Σ r_k + q_term.
fn int_score(qw: ptr<function, array<u32, HD4>>, j: u32, scale: f32, k_scale: f32, q_term: f32) -> f32 {
    let kj = j * (HD4 + 1u);
    var dot = 0u;
    for (var w = 0u; w < HD4; w++) {
        dot += dot4U8Packed((*qw)[w], k_codes_w[kj + w]);
    }
    return scale * f32(dot) + k_scale * f32(k_codes_w[kj + HD4]) + q_term;
}
