// Fused (shifted) window attention. A workgroup handles one slice (a window of one
// head), an invocation one query token (on GPUs, QL invocations share one: below). q, k and v arrive in window order
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
// table's size in vec4s), QL (GPUs: invocations per query, SWINQ_ATTN_LANES); LANES for
// attention_rows.wgsl.
// When quant > 0, q·scale, k, v and P are fake-quantized with qparams rows
// quant−1 .. quant+2. When write_p is 1, P is stored (calibration).
// `main_int` is the integer engine's version: both matmuls on codes (SPEC §6); on
// GPUs it stages the k and v codes in workgroup memory the same way. It can write
// proj's input codes instead of floats (`store_int_output`).
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
// main_int with out_quant > 0: the output as proj's input codes (linear.rs CodeLayout::heads).
@group(0) @binding(18) var<storage, read_write> out_codes: array<u32>;

const HD4: u32 = (HD + 3u) / 4u;
const NT4: u32 = NT / 4u;

// GPU path: this slice's k and v (fake-quantized) and their codes, staged per workgroup.
// (Sized for both entry points; each uses only its own pair.)
var<workgroup> k_w: array<f32, NT * HD>;
var<workgroup> v_w: array<f32, NT * HD>;
var<workgroup> k_codes_w: array<u32, NT * (HD4 + 1u)>;
var<workgroup> v_codes_w: array<u32, HD * (NT4 + 1u)>;

// GPU path: QL invocations per query (header constant; 1 on CPU drivers) share its
// keys: lane l of a query takes the keys of quads l, l + QL, ... (a quad: four
// consecutive keys, one word of P's codes), KPL slots of keys per lane. The lanes'
// maxima, sums and outputs meet in workgroup memory, combined in lane order. With
// QL = 1 every sum runs in key order, as attention_rows.wgsl's do.
const THREADS: u32 = NT * QL;
const QUADS: u32 = (NT + 3u) / 4u;
const KPL: u32 = 4u * ((QUADS + QL - 1u) / QL);

// Key of slot k of lane l (NT or more: no key).
fn lane_key(k: u32, l: u32) -> u32 {
    return 4u * ((k / 4u) * QL + l) + (k & 3u);
}

// One query of a GPU workgroup: its invocation t, lane l and first lane's invocation t0.
struct Lane {
    t: u32,
    l: u32,
    t0: u32,
}

fn lane_of(t: u32) -> Lane {
    return Lane(t, t % QL, t - t % QL);
}

// Per-lane partial results (QL > 1).
var<workgroup> part: array<f32, THREADS * HD>;
var<workgroup> part_u: array<u32, THREADS * (HD + 1u)>;

// The maximum (`is_max`) or the lane-order sum of x over the query's lanes.
fn lanes_combine(x: f32, ln: Lane, is_max: bool) -> f32 {
    if (QL == 1u) {
        return x;
    }
    part[ln.t] = x;
    workgroupBarrier();
    var r = part[ln.t0];
    for (var l = 1u; l < QL; l++) {
        r = select(r + part[ln.t0 + l], max(r, part[ln.t0 + l]), is_max);
    }
    workgroupBarrier();
    return r;
}

// The query's output summed over its lanes in lane order, in lane 0's o.
fn lanes_output(o: ptr<function, array<f32, HD>>, ln: Lane) {
    if (QL == 1u) {
        return;
    }
    for (var d = 0u; d < HD; d++) {
        part[ln.t * HD + d] = (*o)[d];
    }
    workgroupBarrier();
    if (ln.l == 0u) {
        for (var d = 0u; d < HD; d++) {
            var sum = part[ln.t0 * HD + d];
            for (var l = 1u; l < QL; l++) {
                sum += part[(ln.t0 + l) * HD + d];
            }
            (*o)[d] = sum;
        }
    }
}

// The integer sums acc and p_sum over the query's lanes, in lane 0's.
fn lanes_int_sums(acc: ptr<function, array<u32, HD>>, p_sum: ptr<function, u32>, ln: Lane) {
    if (QL == 1u) {
        return;
    }
    for (var d = 0u; d < HD; d++) {
        part_u[ln.t * (HD + 1u) + d] = (*acc)[d];
    }
    part_u[ln.t * (HD + 1u) + HD] = *p_sum;
    workgroupBarrier();
    if (ln.l == 0u) {
        for (var l = 1u; l < QL; l++) {
            let at = (ln.t0 + l) * (HD + 1u);
            for (var d = 0u; d < HD; d++) {
                (*acc)[d] += part_u[at + d];
            }
            *p_sum += part_u[at + HD];
        }
    }
}

// GPU path: this head's relative-position biases and the shift-mask region of each
// token of the window.
var<workgroup> bias_w: array<f32, SIDE * SIDE>;
var<workgroup> label_w: array<u32, NT>;

// GPU path: stage the biases and regions (before stage_kv or stage_codes, whose
// barrier covers them), so that bias_and_mask_staged reads workgroup memory only.
fn stage_bias(qr: Query, ln: Lane) {
    for (var w = ln.t; w < SIDE * SIDE; w += THREADS) {
        bias_w[w] = bias_at(w * HEADS + qr.head);
    }
    if (ln.l == 0u) {
        label_w[qr.i] = qr.label;
    }
}

// window.wgsl's bias_and_mask (same values) from the staged biases and regions.
fn bias_and_mask_staged(qr: Query, j: u32) -> f32 {
    var b = bias_w[rel_offset(qr, j)];
    if (SHIFT > 0u && label_w[j] != qr.label) {
        b -= 100.0;
    }
    return b;
}

// GPU path: copy the slice's k and v into workgroup memory, fake-quantized once.
// Invocation t copies words t, t + THREADS, ...: consecutive lanes, consecutive words.
fn stage_kv(first: u32, t: u32, kq: vec4<f32>, vq: vec4<f32>) {
    for (var w = t; w < NT * HD; w += THREADS) {
        k_w[w] = quantize(k_s[first + w], kq);
        v_w[w] = quantize(v_s[first + w], vq);
    }
    workgroupBarrier();
}

// GPU path: copy the slice's k codes (from word `first`) and v codes (from `first_v`).
fn stage_codes(first: u32, first_v: u32, t: u32) {
    for (var w = t; w < NT * (HD4 + 1u); w += THREADS) {
        k_codes_w[w] = k_codes_s[first + w];
    }
    for (var w = t; w < HD * (NT4 + 1u); w += THREADS) {
        v_codes_w[w] = v_codes_s[first_v + w];
    }
    workgroupBarrier();
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ln = lane_of(lid.x);
    let qr = query(wg.x, lid.x / QL);
    let i = qr.i;
    let first = p.delta + wg.x * NT * HD;  // this slice's first word in q, k, v
    let kq = quant_row(1u);
    let vq = quant_row(2u);
    let pq = quant_row(3u);
    stage_bias(qr, ln);
    stage_kv(first, ln.t, kq, vq);
    var qi: array<f32, HD>;
    let qq = quant_row(0u);
    for (var d = 0u; d < HD; d++) {
        qi[d] = quantize(q_s[first + i * HD + d] * SCALE, qq);
    }
    // Pass 1: the lane's scores and the query's maximum; then their exponentials, in place.
    var scores: array<f32, KPL>;
    var mx = -3.4e38;
    for (var k = 0u; k < KPL; k++) {
        let j = lane_key(k, ln.l);
        if (j < NT) {
            scores[k] = score(&qi, j) + bias_and_mask_staged(qr, j);
            mx = max(mx, scores[k]);
        }
    }
    mx = lanes_combine(mx, ln, true);
    let inv = 1.0 / lanes_combine(exponentials(&scores, mx, ln.l), ln, false);
    // Pass 2: P (quantized, stored when calibrating) and P·v.
    var o: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        o[d] = 0.0;
    }
    let p_row = ((qr.slice - p.p_slice0) * NT + i) * NT;
    for (var k = 0u; k < KPL; k++) {
        let j = lane_key(k, ln.l);
        if (j < NT) {
            let pj = quantize(scores[k] * inv, pq);
            if (p.write_p == 1u) {
                probs[p_row + j] = pj;
            }
            for (var d = 0u; d < HD; d++) {
                o[d] = fma(pj, v_w[j * HD + d], o[d]);
            }
        }
    }
    lanes_output(&o, ln);
    if (ln.l == 0u) {
        let base = qr.tok * C + qr.head * HD;
        for (var d = 0u; d < HD; d++) {
            out[base + d] = o[d];
        }
    }
}

// The softmax's numerators: each of the lane's scores s becomes exp(s − mx); returns
// their sum (in key order when QL = 1, as attention_rows.wgsl sums). One exp per
// score: the online form (a running maximum) takes three.
fn exponentials(scores: ptr<function, array<f32, KPL>>, mx: f32, l: u32) -> f32 {
    var sum = 0.0;
    for (var k = 0u; k < KPL; k++) {
        if (lane_key(k, l) < NT) {
            (*scores)[k] = exp((*scores)[k] - mx);
            sum += (*scores)[k];
        }
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
// per word (a lane's quad), and meet v's transposed codes.
@compute @workgroup_size(THREADS)
fn main_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ln = lane_of(lid.x);
    let qr = query(wg.x, lid.x / QL);
    let iq = int_quant();
    let first = p.delta + wg.x * NT * (HD4 + 1u);
    let first_v = p.delta_v + wg.x * HD * (NT4 + 1u);
    stage_bias(qr, ln);
    stage_codes(first, first_v, ln.t);
    var qw: array<u32, HD4>;
    let q0 = first + qr.i * (HD4 + 1u);
    for (var w = 0u; w < HD4; w++) {
        qw[w] = q_codes_s[q0 + w];
    }
    let q_sum = f32(q_codes_s[q0 + HD4]);
    // Terms of the score that do not depend on k's codes beyond their sum.
    let q_term = iq.step.x * lower(iq.k) * q_sum + f32(HD) * lower(iq.q) * lower(iq.k);
    var scores: array<f32, KPL>;
    var mx = -3.4e38;
    for (var k = 0u; k < KPL; k++) {
        let j = lane_key(k, ln.l);
        if (j < NT) {
            scores[k] = int_score(&qw, j, iq.step.x * iq.step.y, iq.step.y * lower(iq.q), q_term) + bias_and_mask_staged(qr, j);
            mx = max(mx, scores[k]);
        }
    }
    mx = lanes_combine(mx, ln, true);
    let inv = 1.0 / lanes_combine(exponentials(&scores, mx, ln.l), ln, false);
    var acc: array<u32, HD>;
    for (var d = 0u; d < HD; d++) {
        acc[d] = 0u;
    }
    var p_sum = 0u;
    var p_word = 0u;
    for (var k = 0u; k < KPL; k++) {
        let j = lane_key(k, ln.l);
        if (j < NT) {
            let r = quant_code(scores[k] * inv, iq.p, LEVELS);
            p_sum += r;
            p_word |= r << (8u * (k & 3u));
            if ((k & 3u) == 3u) {
                for (var d = 0u; d < HD; d++) {
                    acc[d] += dot4U8Packed(p_word, v_codes_w[d * (NT4 + 1u) + j / 4u]);
                }
                p_word = 0u;
            }
        }
    }
    lanes_int_sums(&acc, &p_sum, ln);
    if (ln.l == 0u) {
        var o: array<f32, HD>;
        for (var d = 0u; d < HD; d++) {
            o[d] = int_output(iq, acc[d], p_sum, v_codes_w[d * (NT4 + 1u) + NT4]);
        }
        store_int_output(qr, &o);
    }
}

// The integer attention's output o of query qr: floats, or (out_quant > 0) codes of
// proj's input quantizer, the head's HD4 words of each token (proj reads them without
// a packing pass).
fn store_int_output(qr: Query, o: ptr<function, array<f32, HD>>) {
    if (p.out_quant == 0u) {
        let base = qr.tok * C + qr.head * HD;
        for (var d = 0u; d < HD; d++) {
            out[base + d] = (*o)[d];
        }
        return;
    }
    let oq = qparams[p.out_quant - 1u];
    let base = (qr.tok * HEADS + qr.head) * HD4;
    for (var w = 0u; w < HD4; w++) {
        let d = vec4<u32>(4u * w) + vec4<u32>(0u, 1u, 2u, 3u);
        let e = min(d, vec4<u32>(HD - 1u));
        let v = vec4<f32>((*o)[e.x], (*o)[e.y], (*o)[e.z], (*o)[e.w]);
        out_codes[base + w] = quad_codes(v, d < vec4<u32>(HD), oq, LEVELS);
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
