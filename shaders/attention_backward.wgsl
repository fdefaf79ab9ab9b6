// Backward of attention.wgsl's `main`, the fake-quantized window attention (DQC,
// SPEC §5). With q̂, k̂, v̂ the quantized q·scale, k, v, P = softmax(q̂·k̂ᵀ + bias
// + mask), P̂ its quantized copy and O = P̂·v̂, given dO:
//   dP̂ = dO·v̂ᵀ, dP = STE(dP̂), dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//   dq̂ = dS·k̂, dk̂ = dSᵀ·q̂, dv̂ = P̂ᵀ·dO,
// then dq (w.r.t. q before the scale), dk, dv through the STE of their quantizers,
// in window order like q, k, v. The bias table and the mask are constants.
// A workgroup handles one slice (a window of one head): the slice's q̂, k̂, v̂ and dO
// sit in workgroup memory, and one NT×NT matrix holds, in turn, the scores, P and
// dS, so each (query, key) pair's logit, exponential and dP̂ are formed once or
// twice rather than once per use. Invocation t owns query row t in the row phases
// (softmax statistics, rowsum, dq̂) and key column t in the column phases (dv̂
// from P̂, then dk̂ from dS); the matrix rows are padded by one word so that both
// walk distinct memory banks. Each workgroup writes its quantizers' gradient
// partials, vec4(∂l, ∂u, ∂c, 0) per quantizer (q·scale, k, v, P), slice-major,
// summed in a fixed tree order (no atomics) so that a reduction over slices can be
// deterministic. The pipeline skips wgpu's zero fill of workgroup memory: every
// word is written before it is read.
// CPU drivers take `main_rows` (attention_backward_rows.wgsl) instead. `to_tokens`
// (at the end) moves the gradients from window order to token order.
// Header constants as attention.wgsl; UNIFORM_READS is false (all storage reads).

@group(0) @binding(1) var<storage, read> q_s: array<f32>;
@group(0) @binding(2) var<storage, read> k_s: array<f32>;
@group(0) @binding(3) var<storage, read> v_s: array<f32>;
@group(0) @binding(5) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
@group(0) @binding(10) var<storage, read_write> dv: array<f32>;
@group(0) @binding(11) var<storage, read_write> partials: array<vec4<f32>>;

const ROW: u32 = NT + 1u;  // padded row length of `pairs`

var<workgroup> q_hat: array<f32, NT * HD>;
var<workgroup> k_hat: array<f32, NT * HD>;
var<workgroup> v_hat: array<f32, NT * HD>;
var<workgroup> d_o: array<f32, NT * HD>;
// Per (query i, key j) at i·ROW + j: the score, then exp(score − max), then P_ij,
// then dS_ij.
var<workgroup> pairs: array<f32, NT * ROW>;
// Per query row: rowsum(dP ⊙ P).
var<workgroup> row_dot: array<f32, NT>;
// Quantizer-gradient partials per quantizer and invocation.
var<workgroup> sums: array<array<vec4<f32>, NT>, 4>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let qr = query(wg.x, t);
    let first = (qr.slice * NT + t) * HD;  // token t's first word in q, k, v and their gradients
    load_slice(qr, first);
    workgroupBarrier();
    probabilities(qr);
    sums[3u][t] = probs_backward(t);
    workgroupBarrier();
    let gv = value_grad(t);
    workgroupBarrier();
    let gq = logit_grads(t);
    workgroupBarrier();
    let gk = key_grad(t);
    sums[0u][t] = finish(gq, first, 0u);
    sums[1u][t] = finish(gk, first, 1u);
    sums[2u][t] = finish(gv, first, 2u);
    workgroupBarrier();
    reduce_sums(t);
    if (t < 4u) {
        partials[qr.slice * 4u + t] = sums[t][0];
    }
}

// Token t's quantized q·scale, k, v and its dO (from the token's original position).
fn load_slice(qr: Query, first: u32) {
    let o = qr.tok * C + qr.head * HD;
    for (var d = 0u; d < HD; d++) {
        let at = qr.i * HD + d;
        q_hat[at] = quantize(q_s[first + d] * SCALE, quant_row(0u));
        k_hat[at] = quantize(k_s[first + d], quant_row(1u));
        v_hat[at] = quantize(v_s[first + d], quant_row(2u));
        d_o[at] = d_out[o + d];
    }
}

// Row qr.i of P = softmax(q̂·k̂ᵀ + bias + mask) into `pairs`: the scores and their
// maximum, then `normalise`.
fn probabilities(qr: Query) {
    let row = qr.i * ROW;
    var qi: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        qi[d] = q_hat[qr.i * HD + d];
    }
    var mx = -3.4e38;
    for (var j = 0u; j < NT; j++) {
        var s = bias_and_mask(qr, j);
        for (var d = 0u; d < HD; d++) {
            s = fma(qi[d], k_hat[j * HD + d], s);
        }
        pairs[row + j] = s;
        mx = max(mx, s);
    }
    normalise(row, mx);
}

// The scores of the row at `row` in `pairs`, whose maximum is mx, to their softmax:
// the exponentials and their sum, then the normalised row.
fn normalise(row: u32, mx: f32) {
    var sum = 0.0;
    for (var j = 0u; j < NT; j++) {
        let e = exp(pairs[row + j] - mx);
        pairs[row + j] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < NT; j++) {
        pairs[row + j] *= inv;
    }
}

// dO_i in registers, for the row phases.
fn d_out_row(i: u32) -> array<f32, HD> {
    var r: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        r[d] = d_o[i * HD + d];
    }
    return r;
}

// ∂L/∂P̂_ij = dO_i·v̂_j, with dO_i in registers.
fn dp_hat(o_i: array<f32, HD>, j: u32) -> f32 {
    var dot = 0.0;
    for (var d = 0u; d < HD; d++) {
        dot = fma(o_i[d], v_hat[j * HD + d], dot);
    }
    return dot;
}

// STE partials (∂Q/∂x, ∂Q/∂l, ∂Q/∂u, ∂Q/∂c) of quantizer qp at x; the identity when
// float. g·ste(x, qp) takes a gradient g at Q(x) to x and to the quantizer's (l, u, c).
fn ste(x: f32, qp: vec4<f32>) -> vec4<f32> {
    if (p.quant == 0u) {
        return vec4<f32>(1.0, 0.0, 0.0, 0.0);
    }
    return fake_quant_grads(x, qp, LEVELS);
}

// Row i's rowsum(dP ⊙ P) with dP = STE(dP̂) (kept for the dS pass), and P's
// quantizer partials over the row.
fn probs_backward(i: u32) -> vec4<f32> {
    let pq = quant_row(3u);
    let o_i = d_out_row(i);
    var rowsum = 0.0;
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < NT; j++) {
        let pij = pairs[i * ROW + j];
        let g = dp_hat(o_i, j) * ste(pij, pq);
        rowsum = fma(g.x, pij, rowsum);
        acc += g;
    }
    row_dot[i] = rowsum;
    return vec4<f32>(acc.yzw, 0.0);
}

// dv̂ of key j = Σ_i P̂_ij dO_i (column j of P).
fn value_grad(j: u32) -> array<f32, HD> {
    let pq = quant_row(3u);
    var g: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        g[d] = 0.0;
    }
    for (var i = 0u; i < NT; i++) {
        let p_hat = quantize(pairs[i * ROW + j], pq);
        for (var d = 0u; d < HD; d++) {
            g[d] = fma(p_hat, d_o[i * HD + d], g[d]);
        }
    }
    return g;
}

// Row i of dS = P ⊙ (STE(dP̂) − rowsum) over P in `pairs`, and dq̂_i = Σ_j dS_ij k̂_j.
fn logit_grads(i: u32) -> array<f32, HD> {
    let pq = quant_row(3u);
    let o_i = d_out_row(i);
    let rowsum = row_dot[i];
    var g: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        g[d] = 0.0;
    }
    for (var j = 0u; j < NT; j++) {
        let pij = pairs[i * ROW + j];
        let ds = pij * (dp_hat(o_i, j) * ste(pij, pq).x - rowsum);
        pairs[i * ROW + j] = ds;
        for (var d = 0u; d < HD; d++) {
            g[d] = fma(ds, k_hat[j * HD + d], g[d]);
        }
    }
    return g;
}

// dk̂ of key j = Σ_i dS_ij q̂_i (column j of dS).
fn key_grad(j: u32) -> array<f32, HD> {
    var g: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        g[d] = 0.0;
    }
    for (var i = 0u; i < NT; i++) {
        let ds = pairs[i * ROW + j];
        for (var d = 0u; d < HD; d++) {
            g[d] = fma(ds, q_hat[i * HD + d], g[d]);
        }
    }
    return g;
}

// Gradient g at the quantized operand `which` (0 q·scale, 1 k, 2 v) of token t
// (words from `first`) through its quantizer into dq (times the scale: dq is
// w.r.t. q), dk or dv; returns the quantizer's partials.
fn finish(g: array<f32, HD>, first: u32, which: u32) -> vec4<f32> {
    let qp = quant_row(which);
    var acc = vec4<f32>(0.0);
    for (var d = 0u; d < HD; d++) {
        var x: f32;
        switch which {
            case 0u: { x = q_s[first + d] * SCALE; }
            case 1u: { x = k_s[first + d]; }
            default: { x = v_s[first + d]; }
        }
        let r = g[d] * ste(x, qp);
        switch which {
            case 0u: { dq[first + d] = r.x * SCALE; }
            case 1u: { dk[first + d] = r.x; }
            default: { dv[first + d] = r.x; }
        }
        acc += vec4<f32>(r.yzw, 0.0);
    }
    return acc;
}

// sums[w][0] = Σ_t sums[w][t] for every quantizer w, by halving (any NT, fixed order).
fn reduce_sums(t: u32) {
    for (var n = NT; n > 1u; n = (n + 1u) / 2u) {
        let half = (n + 1u) / 2u;
        if (t + half < n) {
            for (var w = 0u; w < 4u; w++) {
                sums[w][t] += sums[w][t + half];
            }
        }
        workgroupBarrier();
    }
}

// Window order (q, k, v and their gradients) to token order (tokens × C, head h at
// columns h·HD, original positions), as the linears' backward reads the gradients:
// slice element (i, d) from binding 1 to binding 7.
@compute @workgroup_size(NT)
fn to_tokens(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let qr = query(wg.x, lid.x);
    let first = (qr.slice * NT + lid.x) * HD;
    let o = qr.tok * C + qr.head * HD;
    for (var d = 0u; d < HD; d++) {
        dq[o + d] = q_s[first + d];
    }
}
