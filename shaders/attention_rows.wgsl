// The attention for CPU drivers such as lavapipe (appended to window.wgsl,
// attention.wgsl and attention_lanes.wgsl for the `rows` strategy; it needs subgroup
// operations). As on GPUs an invocation handles one query, but q, k and v come
// through uniform windows, and keys are shared LANES at a time as
// attention_lanes.wgsl describes (each key word fake-quantized once). Pass 1 keeps
// each group of LANES scores for pass 2 (`kept`: an array indexed by the group, not by
// the key, so each access moves whole vectors; 10–20 % faster than recomputing them
// on lavapipe), then their exponentials. Each score and output sums in the same order as `main`, so both
// strategies give the same bits. `main_int_rows` is the integer engine's version of `main_int`, with k's
// codes shared the same way.

// This dispatch's slices of q, k, v (main_rows) and of their codes (main_int_rows, in
// attention.wgsl's code layout), through uniform windows.
@group(0) @binding(1) var<uniform> q: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<uniform> k: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> v: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> q_codes: array<vec4<u32>, 4096>;
@group(0) @binding(10) var<uniform> k_codes: array<vec4<u32>, 4096>;
@group(0) @binding(11) var<uniform> v_codes: array<vec4<u32>, 4096>;

// The maximum of mx and the scores g of keys j0.. (those before NT).
fn group_max(mx: f32, g: LaneGroup, j0: u32) -> f32 {
    var m = mx;
    for (var t = 0u; t < LANES; t++) {
        if (j0 + t < NT) {
            m = max(m, group_at(g, t));
        }
    }
    return m;
}

// attention.wgsl's exponentials over the kept score groups: each score s becomes
// exp(s − mx); returns their sum, in key order as there (same bits).
fn group_exponentials(kept: ptr<function, array<LaneGroup, NT_LANES / LANES>>, mx: f32) -> f32 {
    var sum = 0.0;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        var g = (*kept)[j0 / LANES];
        for (var t = 0u; t < LANES; t++) {
            if (j0 + t < NT) {
                let e = exp(group_at(g, t) - mx);
                group_set(&g, t, e);
                sum += e;
            }
        }
        (*kept)[j0 / LANES] = g;
    }
    return sum;
}

fn uniform_word(buf: u32, i: u32) -> f32 {
    if (buf == 0u) {
        return q[i >> 2u][i & 3u];
    }
    if (buf == 1u) {
        return k[i >> 2u][i & 3u];
    }
    return v[i >> 2u][i & 3u];
}

// Scores q·k_j + bias and mask of keys j = j0.. for this lane's query (keys past NT
// are never read back).
fn group_scores(qi: ptr<function, array<f32, HD>>, qr: Query, first: u32, j0: u32, lane: u32, kq: vec4<f32>) -> LaneGroup {
    let mine = first + min(j0 + lane, NT - 1u) * HD;
    var g = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var d = 0u; d < HD; d++) {
        let kd = from_lanes(quantize(uniform_word(1u, mine + d), kq));
        g.lo = fma(vec4<f32>((*qi)[d]), kd.lo, g.lo);
        g.hi = fma(vec4<f32>((*qi)[d]), kd.hi, g.hi);
    }
    return with_bias(g, qr, j0);
}

// g plus the relative-position bias and shift mask of keys j0.. for query qr.
fn with_bias(g: LaneGroup, qr: Query, j0: u32) -> LaneGroup {
    let b = bias_group(qr, j0);
    return LaneGroup(g.lo + b.lo, g.hi + b.hi);
}

@compute @workgroup_size(NT_LANES)
fn main_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let i = min(lid.x, NT - 1u);
    let qr = query(wg.x, i);
    let first = p.delta + wg.x * NT * HD;  // this slice's first word in q, k, v
    let kq = quant_row(1u);
    let vq = quant_row(2u);
    let pq = quant_row(3u);
    var qi: array<f32, HD>;
    let qq = quant_row(0u);
    for (var d = 0u; d < HD; d++) {
        qi[d] = quantize(uniform_word(0u, first + i * HD + d) * SCALE, qq);
    }
    // Pass 1: the scores and their maximum; then their exponentials, in place.
    var mx = -3.4e38;
    var kept: array<LaneGroup, NT_LANES / LANES>;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let g = group_scores(&qi, qr, first, j0, lane, kq);
        kept[j0 / LANES] = g;
        mx = group_max(mx, g, j0);
    }
    let inv = 1.0 / group_exponentials(&kept, mx);
    // Pass 2: P (quantized, stored when calibrating) and P·v.
    var o: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        o[d] = 0.0;
    }
    let p_row = ((qr.slice - p.p_slice0) * NT + i) * NT;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let g = kept[j0 / LANES];
        var pg = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
        for (var t = 0u; t < LANES; t++) {
            if (j0 + t < NT) {
                let pj = quantize(group_at(g, t) * inv, pq);
                group_set(&pg, t, pj);
                if (p.write_p == 1u && lid.x < NT) {
                    probs[p_row + j0 + t] = pj;
                }
            }
        }
        let mine = first + min(j0 + lane, NT - 1u) * HD;
        for (var d = 0u; d < HD; d++) {
            let vd = from_lanes(quantize(uniform_word(2u, mine + d), vq));
            var acc = o[d];
            for (var t = 0u; t < LANES; t++) {
                if (j0 + t < NT) {
                    acc = fma(group_at(pg, t), group_at(vd, t), acc);
                }
            }
            o[d] = acc;
        }
    }
    if (lid.x < NT) {
        let base = qr.tok * C + qr.head * HD;
        for (var d = 0u; d < HD; d++) {
            out[base + d] = o[d];
        }
    }
}

// Code words of keys j0..j0+7 (lo: the first four), as from_lanes.
struct CodeGroup {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

// (The bits travel as f32: a broadcast only moves them.)
fn codes_from_lanes(x: u32) -> CodeGroup {
    let g = from_lanes(bitcast<f32>(x));
    return CodeGroup(bitcast<vec4<u32>>(g.lo), bitcast<vec4<u32>>(g.hi));
}

fn code_word(buf: u32, i: u32) -> u32 {
    if (buf == 0u) {
        return q_codes[i >> 2u][i & 3u];
    }
    if (buf == 1u) {
        return k_codes[i >> 2u][i & 3u];
    }
    return v_codes[i >> 2u][i & 3u];
}

// int_score of keys j0.. for this lane's query, plus bias and mask.
fn int_group_scores(qw: ptr<function, array<u32, HD4>>, qr: Query, first: u32, j0: u32, lane: u32, scales: vec3<f32>) -> LaneGroup {
    let mine = first + min(j0 + lane, NT - 1u) * (HD4 + 1u);
    var lo = vec4<u32>(0u);
    var hi = vec4<u32>(0u);
    for (var w = 0u; w < HD4; w++) {
        let kw = codes_from_lanes(code_word(1u, mine + w));
        lo += dot4x4((*qw)[w], kw.lo);
        hi += dot4x4((*qw)[w], kw.hi);
    }
    let sums = codes_from_lanes(code_word(1u, mine + HD4));
    let g = LaneGroup(
        scales.x * vec4<f32>(lo) + scales.y * vec4<f32>(sums.lo) + scales.z,
        scales.x * vec4<f32>(hi) + scales.y * vec4<f32>(sums.hi) + scales.z,
    );
    return with_bias(g, qr, j0);
}

@compute @workgroup_size(NT_LANES)
fn main_int_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let qr = query(wg.x, min(lid.x, NT - 1u));
    let iq = int_quant();
    let first = p.delta + wg.x * NT * (HD4 + 1u);
    let first_v = p.delta_v + wg.x * HD * (NT4 + 1u);
    var qw: array<u32, HD4>;
    let q0 = first + qr.i * (HD4 + 1u);
    for (var w = 0u; w < HD4; w++) {
        qw[w] = code_word(0u, q0 + w);
    }
    let q_sum = f32(code_word(0u, q0 + HD4));
    // int_score's scale, k_scale and q_term.
    let scales = vec3<f32>(iq.step.x * iq.step.y, iq.step.y * lower(iq.q), iq.step.x * lower(iq.k) * q_sum + f32(HD) * lower(iq.q) * lower(iq.k));
    var mx = -3.4e38;
    var kept: array<LaneGroup, NT_LANES / LANES>;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let g = int_group_scores(&qw, qr, first, j0, lane, scales);
        kept[j0 / LANES] = g;
        mx = group_max(mx, g, j0);
    }
    let inv = 1.0 / group_exponentials(&kept, mx);
    var acc: array<u32, HD>;
    for (var d = 0u; d < HD; d++) {
        acc[d] = 0u;
    }
    var p_sum = 0u;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let g = kept[j0 / LANES];
        // P's codes of keys j0..j0+3 and j0+4..j0+7, four per word.
        var words = vec2<u32>(0u);
        for (var t = 0u; t < LANES; t++) {
            if (j0 + t < NT) {
                let r = quant_code(group_at(g, t) * inv, iq.p, LEVELS);
                p_sum += r;
                words[t / 4u] |= r << (8u * (t & 3u));
            }
        }
        for (var d = 0u; d < HD; d++) {
            let row = first_v + d * (NT4 + 1u) + j0 / 4u;
            acc[d] += dot4U8Packed(words.x, code_word(2u, row));
            if (LANES > 4u && j0 + 4u < NT) {
                acc[d] += dot4U8Packed(words.y, code_word(2u, row + 1u));
            }
        }
    }
    if (lid.x < NT) {
        var o: array<f32, HD>;
        for (var d = 0u; d < HD; d++) {
            o[d] = int_output(iq, acc[d], p_sum, code_word(2u, first_v + d * (NT4 + 1u) + NT4));
        }
        store_int_output(qr, &o);
    }
}
