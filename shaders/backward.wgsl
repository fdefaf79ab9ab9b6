// Backward kernels of phase 2 (DQC, SPEC §5): gradients flow to activations and to
// the quantizers' l, u and c; the weights, LayerNorm gains and biases are frozen, so
// none of their own gradients are formed. Input gradients of linears and convolutions
// are the forward matmul on transposed weights (src/gpu/backward.rs).
//  - quant_backward: through a fake quantizer (STE, SPEC §3): dx = dy·∂Q/∂x (added
//    to dx when ACCUMULATE), and each workgroup's sums of dy·∂Q/∂l, dy·∂Q/∂u,
//    dy·∂Q/∂c over its 256·ELEMS elements as one partial (fixed order);
//  - reduce_partials: a quantizer's partials (every p.c-th from part0) summed in
//    index order (deterministic) into its gradient row, added to it when ACCUMULATE;
//  - add_into: dx += dy (a residual's gradient);
//  - gelu_backward: dx = dy·GELU'(x);
//  - layernorm_backward: dx of y = x̂·γ + β per token, added to dx when ACCUMULATE
//    (the residual branch's gradient is already there);
//  - weight_grad_tiles, weight_quant_grads: the weight quantizer's (dl, du, dc) from
//    ∂L/∂Ŵ = dyᵀ·x̂ (x̂: x through the input quantizer p.act_row when ACT_QUANT), summed
//    over token chunks first (workgroup tiles), then per weight, partials per 256 weights;
//  - l1_grad: the output loss mean|x − target| (x = student, dy = teacher): its
//    gradient sign(x − t)/N into dx and per-workgroup partial sums of |x − t|;
//  - sample_sums: per sample (p.c elements each, one workgroup per sample) the sums
//    (‖x‖², ‖t‖², x·t) of student x and teacher t (dy), for the feature loss;
//  - feature_grad: the feature loss mean((x/‖x‖ − t/‖t‖)²) over N elements, its
//    gradient 2/(N‖x‖)·(e − x̂·(x̂·e)) with x̂ = x/‖x‖, e = x̂ − t/‖t‖, times
//    p.eps (the loss weight λ), added to dx when ACCUMULATE.
// Header constants: LEVELS (2^b − 1, or 0 for no quantizer), ACCUMULATE, ACT_QUANT,
// ELEMS (elements per invocation of quant_backward and l1_grad).

struct Params {
    n: u32,         // elements (quant, gelu, add, losses), tokens (layernorm, weight gradient), partials (reduce)
    c: u32,         // channels (layernorm), input features (weight gradient), per sample (feature loss), stride (reduce)
    row: u32,       // quantizer row (quant, weight gradient: its parameters; reduce: its gradient row)
    part0: u32,     // first partial slot written (quant, weight gradient, L1, sample sums) or summed (reduce)
    eps: f32,       // LayerNorm ε; the feature loss's weight λ
    n_out: u32,     // weight gradient: output features
    act_row: u32,   // weight gradient: the input quantizer's row
    chunk: u32,     // weight gradient: tokens per chunk
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> qparams: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> grads: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> gamma: array<f32>;
@group(0) @binding(8) var<storage, read> weight: array<f32>;  // (n_out, c) row-major
@group(0) @binding(9) var<storage, read_write> wgrad: array<f32>;  // (chunk, weight) sums of ∂L/∂Ŵ

var<workgroup> tree: array<vec4<f32>, 256>;

// Sum of v over the workgroup's 256 invocations, in a fixed tree order; the
// result is valid in invocation 0.
fn workgroup_sum(lid: u32, v: vec4<f32>) -> vec4<f32> {
    tree[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            tree[lid] += tree[lid + stride];
        }
        workgroupBarrier();
    }
    return tree[0];
}

// The workgroup's sum of v as its partial (slot part0 + its flat workgroup index).
fn store_partial(lid: u32, wg: vec3<u32>, nwg: vec3<u32>, v: vec4<f32>) {
    let total = workgroup_sum(lid, v);
    if (lid == 0u) {
        partials[p.part0 + wg.x + wg.y * nwg.x] = total;
    }
}

// dx[i] = v, or dx[i] += v when ACCUMULATE.
fn store_dx(i: u32, v: f32) {
    if (ACCUMULATE) {
        dx[i] += v;
    } else {
        dx[i] = v;
    }
}

// Element r of invocation lid's share of its workgroup's block: consecutive lanes
// take consecutive elements.
fn element(lid: u32, wg: vec3<u32>, nwg: vec3<u32>, r: u32) -> u32 {
    return ((wg.x + wg.y * nwg.x) * ELEMS + r) * 256u + lid;
}

@compute @workgroup_size(256)
fn quant_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let q = qparams[p.row];
    var contrib = vec4<f32>(0.0);
    for (var r = 0u; r < ELEMS; r++) {
        let i = element(lid, wg, nwg, r);
        if (i < p.n) {
            let g = fake_quant_grads(x[i], q, LEVELS);
            let d = dy[i];
            store_dx(i, d * g.x);
            contrib += vec4<f32>(d * g.y, d * g.z, d * g.w, 0.0);
        }
    }
    store_partial(lid, wg, nwg, contrib);
}

// One workgroup: invocation t sums partials t, t + 256, … in order, then the tree.
@compute @workgroup_size(256)
fn reduce_partials(@builtin(local_invocation_index) lid: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < p.n; i += 256u) {
        acc += partials[p.part0 + i * p.c];
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        if (ACCUMULATE) {
            grads[p.row] += total;
        } else {
            grads[p.row] = total;
        }
    }
}

@compute @workgroup_size(256)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        dx[i] += dy[i];
    }
}

// GELU'(x) = Φ(x) + x·φ(x) for the exact (erf) GELU.
fn gelu_grad(v: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_f32(v * 0.70710678118654752));
    let pdf = 0.39894228040143268 * exp(-0.5 * v * v);
    return cdf + v * pdf;
}

@compute @workgroup_size(256)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        dx[i] = dy[i] * gelu_grad(x[i]);
    }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ, one invocation per token.
@compute @workgroup_size(256)
fn layernorm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= p.n) {
        return;
    }
    let base = t * p.c;
    let c = f32(p.c);
    var sum = 0.0;
    for (var i = 0u; i < p.c; i++) {
        sum += x[base + i];
    }
    let mean = sum / c;
    var sq = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = x[base + i] - mean;
        sq = fma(d, d, sq);
    }
    let rstd = 1.0 / sqrt(sq / c + p.eps);
    var g_sum = 0.0;
    var gx_sum = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let g = dy[base + i] * gamma[i];
        g_sum += g;
        gx_sum = fma(g, (x[base + i] - mean) * rstd, gx_sum);
    }
    let g_mean = g_sum / c;
    let gx_mean = gx_sum / c;
    for (var i = 0u; i < p.c; i++) {
        let xhat = (x[base + i] - mean) * rstd;
        let d = rstd * (dy[base + i] * gamma[i] - g_mean - xhat * gx_mean);
        store_dx(base + i, d);
    }
}

// Inputs i..i+3 of token t's row of x̂ (0 past c), x̂ = x through the
// input quantizer when ACT_QUANT: for both weight-gradient kernels.
fn x_hat_quad(t: u32, i: u32, act: vec4<f32>) -> vec4<f32> {
    var q = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (i + e < p.c) {
            q[e] = x[t * p.c + i + e];
            if (ACT_QUANT) {
                q[e] = fake_quant(q[e], act, LEVELS);
            }
        }
    }
    return q;
}

// ∂L/∂Ŵ[o, i] = Σ_t dy[t, o]·x̂[t, i] over the tokens of chunk j (p.chunk tokens), a
// matmul whose inner dimension is the tokens. A workgroup computes a TILE×TILE block
// of Ŵ's gradient for one chunk: it stages STEP tokens of dy and x̂ at a time (x
// fake-quantized once there, not once per output), and each invocation accumulates
// a 4×4 block from them. Tiles × chunks workgroups, chunk-major.
const TILE: u32 = 64u;
const STEP: u32 = 16u;
var<workgroup> dy_tile: array<vec4<f32>, 256>;  // STEP tokens × TILE/4 quads of outputs
var<workgroup> x_tile: array<vec4<f32>, 256>;   // STEP tokens × TILE/4 quads of inputs

@compute @workgroup_size(256)
fn weight_grad_tiles(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tiles_i = (p.c + TILE - 1u) / TILE;
    let tiles = (p.n_out + TILE - 1u) / TILE * tiles_i;
    let g = wg.x + wg.y * nwg.x;
    if (g >= tiles * ((p.n + p.chunk - 1u) / p.chunk)) {
        return;
    }
    let j = g / tiles;
    let o0 = g % tiles / tiles_i * TILE;
    let i0 = g % tiles % tiles_i * TILE;
    let ty = lid / 16u;  // outputs o0 + 4·ty ..
    let tx = lid % 16u;  // inputs i0 + 4·tx ..
    let act = qparams[p.act_row];
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let t_end = min(p.n, (j + 1u) * p.chunk);
    for (var t0 = j * p.chunk; t0 < t_end; t0 += STEP) {
        // Invocation lid stages quad lid % 16 of token t0 + lid / 16.
        let t = t0 + lid / 16u;
        var d = vec4<f32>(0.0);
        var xq = vec4<f32>(0.0);
        if (t < t_end) {
            for (var e = 0u; e < 4u; e++) {
                let o = o0 + 4u * tx + e;
                if (o < p.n_out) {
                    d[e] = dy[t * p.n_out + o];
                }
            }
            xq = x_hat_quad(t, i0 + 4u * tx, act);
        }
        dy_tile[lid] = d;
        x_tile[lid] = xq;
        workgroupBarrier();
        for (var s = 0u; s < STEP; s++) {
            let a = dy_tile[s * 16u + ty];
            let b = x_tile[s * 16u + tx];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let base = j * p.n_out * p.c;
    for (var r = 0u; r < 4u; r++) {
        let o = o0 + 4u * ty + r;
        for (var e = 0u; e < 4u; e++) {
            let i = i0 + 4u * tx + e;
            if (o < p.n_out && i < p.c) {
                wgrad[base + o * p.c + i] = rows[r][e];
            }
        }
    }
}

// The chunks' sums per weight (in chunk order), times the weight quantizer's STE
// partials; per-workgroup sums into partials.
@compute @workgroup_size(256)
fn weight_quant_grads(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let weights = p.n_out * p.c;
    let e = flat_index(gid, nwg);
    var contrib = vec4<f32>(0.0);
    if (e < weights) {
        var g = 0.0;
        for (var j = 0u; j < (p.n + p.chunk - 1u) / p.chunk; j++) {
            g += wgrad[j * weights + e];
        }
        let d = fake_quant_grads(weight[e], qparams[p.row], LEVELS);
        contrib = vec4<f32>(g * d.y, g * d.z, g * d.w, 0.0);
    }
    store_partial(lid, wg, nwg, contrib);
}

@compute @workgroup_size(256)
fn l1_grad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var contrib = vec4<f32>(0.0);
    for (var r = 0u; r < ELEMS; r++) {
        let i = element(lid, wg, nwg, r);
        if (i < p.n) {
            let d = x[i] - dy[i];
            dx[i] = sign(d) / f32(p.n);
            contrib.x += abs(d);
        }
    }
    store_partial(lid, wg, nwg, contrib);
}

@compute @workgroup_size(256)
fn sample_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let base = wg.x * p.c;
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < p.c; i += 256u) {
        let a = x[base + i];
        let b = dy[base + i];
        acc += vec4<f32>(a * a, b * b, a * b, 0.0);
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        partials[p.part0 + wg.x] = total;
    }
}

@compute @workgroup_size(256)
fn feature_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let sums = partials[p.part0 + i / p.c];
    let norm_x = sqrt(sums.x);
    let norm_t = sqrt(sums.y);
    let xhat = x[i] / norm_x;
    let e = xhat - dy[i] / norm_t;
    // x̂·e over the sample = 1 − (x·t)/(‖x‖‖t‖).
    let xhat_e = 1.0 - sums.z / (norm_x * norm_t);
    let g = p.eps * 2.0 / (f32(p.n) * norm_x) * (e - xhat * xhat_e);
    store_dx(i, g);
}
