// Backward of attention.wgsl's `main`, the fake-quantized window attention (DQC,
// SPEC §5). With q̂, k̂, v̂ the quantized q·scale, k, v, P = softmax(q̂·k̂ᵀ + bias
// + mask), P̂ its quantized copy and O = P̂·v̂, given dO:
//   dP̂ = dO·v̂ᵀ, dP = STE(dP̂), dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//   dq̂ = dS·k̂, dk̂ = dSᵀ·q̂, dv̂ = P̂ᵀ·dO,
// then dq (w.r.t. q before the scale), dk, dv through the STE of their quantizers,
// in window order like q, k, v. The bias table and the mask are constants.
// A workgroup handles one slice (a window of one head), an invocation token t: the
// slice's q̂, k̂, v̂ and dO sit in workgroup memory; t first owns query row t (softmax
// statistics, rowsum, dq̂), then key column t (dk̂, dv̂), recomputing P rather than
// storing NT×NT matrices. Each workgroup writes its quantizers' gradient partials,
// vec4(∂l, ∂u, ∂c, 0) per quantizer (q·scale, k, v, P), slice-major, summed in a
// fixed tree order (no atomics) so that a reduction over slices can be deterministic.
// Header constants as attention.wgsl; UNIFORM_READS is false (all storage reads).

@group(0) @binding(1) var<storage, read> q_s: array<f32>;
@group(0) @binding(2) var<storage, read> k_s: array<f32>;
@group(0) @binding(3) var<storage, read> v_s: array<f32>;
@group(0) @binding(5) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
@group(0) @binding(10) var<storage, read_write> dv: array<f32>;
@group(0) @binding(11) var<storage, read_write> partials: array<vec4<f32>>;

var<workgroup> q_hat: array<f32, NT * HD>;
var<workgroup> k_hat: array<f32, NT * HD>;
var<workgroup> v_hat: array<f32, NT * HD>;
var<workgroup> d_o: array<f32, NT * HD>;
// Per query row: the scores' maximum, 1/Σexp and rowsum(dP ⊙ P).
var<workgroup> row_max: array<f32, NT>;
var<workgroup> row_inv: array<f32, NT>;
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
    softmax_stats(qr);
    sums[3u][t] = probs_backward(qr);
    sums[0u][t] = query_backward(qr, first);
    workgroupBarrier();
    key_backward(wg.x, t, first);
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

// S_ij = q̂_i·k̂_j + bias and mask, for query qr.
fn logit(qr: Query, j: u32) -> f32 {
    var s = 0.0;
    for (var d = 0u; d < HD; d++) {
        s = fma(q_hat[qr.i * HD + d], k_hat[j * HD + d], s);
    }
    return s + bias_and_mask(qr, j);
}

// Query qr's row maximum and 1/Σexp, online as in the forward.
fn softmax_stats(qr: Query) {
    var mx = -3.4e38;
    var sum = 0.0;
    for (var j = 0u; j < NT; j++) {
        let s = logit(qr, j);
        let m = max(mx, s);
        sum = sum * exp(mx - m) + exp(s - m);
        mx = m;
    }
    row_max[qr.i] = mx;
    row_inv[qr.i] = 1.0 / sum;
}

// What the backward needs of P_ij (query qr, key j; row qr.i's statistics known).
struct Prob {
    p: f32,          // P_ij, before P's quantizer
    p_hat: f32,      // P̂_ij
    dp_hat: f32,     // ∂L/∂P̂_ij = dO_i·v̂_j
    ste: vec4<f32>,  // P's quantizer's STE partials at P_ij
}

fn prob(qr: Query, j: u32) -> Prob {
    let pij = exp(logit(qr, j) - row_max[qr.i]) * row_inv[qr.i];
    var dp_hat = 0.0;
    for (var d = 0u; d < HD; d++) {
        dp_hat = fma(d_o[qr.i * HD + d], v_hat[j * HD + d], dp_hat);
    }
    let pq = quant_row(3u);
    return Prob(pij, quantize(pij, pq), dp_hat, ste(pij, pq));
}

// ∂L/∂S_ij = P_ij (dP_ij − rowsum_i), with dP = STE(dP̂).
fn grad_logit(pr: Prob, rowsum: f32) -> f32 {
    return pr.p * (pr.dp_hat * pr.ste.x - rowsum);
}

// STE partials (∂Q/∂x, ∂Q/∂l, ∂Q/∂u, ∂Q/∂c) of quantizer qp at x; the identity when
// float. g·ste(x, qp) takes a gradient g at Q(x) to x and to the quantizer's (l, u, c).
fn ste(x: f32, qp: vec4<f32>) -> vec4<f32> {
    if (p.quant == 0u) {
        return vec4<f32>(1.0, 0.0, 0.0, 0.0);
    }
    return fake_quant_grads(x, qp, LEVELS);
}

// Row qr.i's rowsum(dP ⊙ P) (stored for the key pass) and P's quantizer partials over the row.
fn probs_backward(qr: Query) -> vec4<f32> {
    var rowsum = 0.0;
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < NT; j++) {
        let pr = prob(qr, j);
        rowsum = fma(pr.dp_hat * pr.ste.x, pr.p, rowsum);
        acc += pr.dp_hat * pr.ste;
    }
    row_dot[qr.i] = rowsum;
    return vec4<f32>(acc.yzw, 0.0);
}

// dq of token qr.i (dq̂ = Σ_j dS_ij k̂_j through the q·scale quantizer and the scale);
// returns that quantizer's partials.
fn query_backward(qr: Query, first: u32) -> vec4<f32> {
    var g: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        g[d] = 0.0;
    }
    for (var j = 0u; j < NT; j++) {
        let ds = grad_logit(prob(qr, j), row_dot[qr.i]);
        for (var d = 0u; d < HD; d++) {
            g[d] = fma(ds, k_hat[j * HD + d], g[d]);
        }
    }
    var acc = vec4<f32>(0.0);
    for (var d = 0u; d < HD; d++) {
        let r = g[d] * ste(q_s[first + d] * SCALE, quant_row(0u));
        dq[first + d] = r.x * SCALE;
        acc += vec4<f32>(r.yzw, 0.0);
    }
    return acc;
}

// dk and dv of key token j (dk̂ = Σ_i dS_ij q̂_i, dv̂ = Σ_i P̂_ij dO_i through their
// quantizers); their quantizers' partials go to sums[1] and sums[2].
fn key_backward(local: u32, j: u32, first: u32) {
    var gk: array<f32, HD>;
    var gv: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        gk[d] = 0.0;
        gv[d] = 0.0;
    }
    for (var i = 0u; i < NT; i++) {
        let pr = prob(query(local, i), j);
        let ds = grad_logit(pr, row_dot[i]);
        for (var d = 0u; d < HD; d++) {
            gk[d] = fma(ds, q_hat[i * HD + d], gk[d]);
            gv[d] = fma(pr.p_hat, d_o[i * HD + d], gv[d]);
        }
    }
    var acc_k = vec4<f32>(0.0);
    var acc_v = vec4<f32>(0.0);
    for (var d = 0u; d < HD; d++) {
        let rk = gk[d] * ste(k_s[first + d], quant_row(1u));
        let rv = gv[d] * ste(v_s[first + d], quant_row(2u));
        dk[first + d] = rk.x;
        dv[first + d] = rv.x;
        acc_k += vec4<f32>(rk.yzw, 0.0);
        acc_v += vec4<f32>(rv.yzw, 0.0);
    }
    sums[1u][j] = acc_k;
    sums[2u][j] = acc_v;
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
