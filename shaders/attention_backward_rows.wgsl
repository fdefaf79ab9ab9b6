// The window attention's backward for CPU drivers such as lavapipe (appended to
// window.wgsl, attention_backward.wgsl and attention_lanes.wgsl; needs subgroup
// operations). The phases of `main`, with the operand that every lane reads at
// the same index (k̂_j, v̂_j, dO_i or q̂_i, word d) shared LANES rows at a time as
// attention_lanes.wgsl describes. Every sum runs in `main`'s order, so both
// give the same bits. The extra invocations of a workgroup (when LANES does not
// divide NT) take part in the broadcasts and barriers only.

// Word d of rows r0.. of q̂, k̂, v̂ or dO (`which` 0..3), as a group.
fn rows_word(which: u32, r0: u32, lane: u32, d: u32) -> LaneGroup {
    let at = min(r0 + lane, NT - 1u) * HD + d;
    switch which {
        case 0u: { return from_lanes(q_hat[at]); }
        case 1u: { return from_lanes(k_hat[at]); }
        case 2u: { return from_lanes(v_hat[at]); }
        default: { return from_lanes(d_o[at]); }
    }
}

// g + a·w: a this lane's factor, w a group of rows' words.
fn fma_group(a: f32, w: LaneGroup, g: LaneGroup) -> LaneGroup {
    return LaneGroup(fma(vec4<f32>(a), w.lo, g.lo), fma(vec4<f32>(a), w.hi, g.hi));
}

// acc[d] += Σ_t c_t · (word d of row r0 + t of `which`), t ascending, for rows before NT.
fn accumulate_rows(acc: ptr<function, array<f32, HD>>, c: LaneGroup, which: u32, r0: u32, lane: u32) {
    for (var d = 0u; d < HD; d++) {
        let w = rows_word(which, r0, lane, d);
        var a = (*acc)[d];
        for (var t = 0u; t < LANES; t++) {
            if (r0 + t < NT) {
                a = fma(group_at(c, t), group_at(w, t), a);
            }
        }
        (*acc)[d] = a;
    }
}

// ∂L/∂P̂ of query row i for keys j0..: dO_i·v̂_j.
fn dp_hat_group(o_i: array<f32, HD>, j0: u32, lane: u32) -> LaneGroup {
    var g = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var d = 0u; d < HD; d++) {
        g = fma_group(o_i[d], rows_word(2u, j0, lane, d), g);
    }
    return g;
}

// `probabilities` with k̂ shared.
fn probabilities_rows(qr: Query, lane: u32, own: bool) {
    let row = qr.i * ROW;
    var qi: array<f32, HD>;
    for (var d = 0u; d < HD; d++) {
        qi[d] = q_hat[qr.i * HD + d];
    }
    var mx = -3.4e38;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        var s = bias_group(qr, j0);
        for (var d = 0u; d < HD; d++) {
            s = fma_group(qi[d], rows_word(1u, j0, lane, d), s);
        }
        for (var t = 0u; t < LANES; t++) {
            if (own && j0 + t < NT) {
                pairs[row + j0 + t] = group_at(s, t);
                mx = max(mx, group_at(s, t));
            }
        }
    }
    if (own) {
        normalise(row, mx);
    }
}

// `probs_backward` with v̂ shared.
fn probs_backward_rows(i: u32, lane: u32, own: bool) -> vec4<f32> {
    let pq = quant_row(3u);
    let o_i = d_out_row(i);
    var rowsum = 0.0;
    var acc = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let dp = dp_hat_group(o_i, j0, lane);
        for (var t = 0u; t < LANES; t++) {
            if (j0 + t < NT) {
                let pij = pairs[i * ROW + j0 + t];
                let g = group_at(dp, t) * ste(pij, pq);
                rowsum = fma(g.x, pij, rowsum);
                acc += g;
            }
        }
    }
    if (own) {
        row_dot[i] = rowsum;
    }
    return vec4<f32>(acc.yzw, 0.0);
}

// Column j of `pairs` for rows i0.. (through `map`: 0 as stored, 1 quantized as P̂).
fn column_group(j: u32, i0: u32, map: u32) -> LaneGroup {
    let pq = quant_row(3u);
    var c = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var t = 0u; t < LANES; t++) {
        let v = pairs[min(i0 + t, NT - 1u) * ROW + j];
        group_set(&c, t, select(v, quantize(v, pq), map == 1u));
    }
    return c;
}

// Σ_i c_i · (row i of `which`) over column j of `pairs` (`map` as in column_group):
// `value_grad` (P̂, dO) and `key_grad` (dS, q̂) with the rows shared. (Function
// variables start at zero.)
fn column_grad_rows(j: u32, lane: u32, map: u32, which: u32) -> array<f32, HD> {
    var g: array<f32, HD>;
    for (var i0 = 0u; i0 < NT; i0 += LANES) {
        accumulate_rows(&g, column_group(j, i0, map), which, i0, lane);
    }
    return g;
}

// `logit_grads` with v̂ and k̂ shared.
fn logit_grads_rows(i: u32, lane: u32, own: bool) -> array<f32, HD> {
    let pq = quant_row(3u);
    let o_i = d_out_row(i);
    let rowsum = row_dot[i];
    var g: array<f32, HD>;
    for (var j0 = 0u; j0 < NT; j0 += LANES) {
        let dp = dp_hat_group(o_i, j0, lane);
        var ds = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
        for (var t = 0u; t < LANES; t++) {
            if (j0 + t < NT) {
                let pij = pairs[i * ROW + j0 + t];
                let dsij = pij * (group_at(dp, t) * ste(pij, pq).x - rowsum);
                if (own) {
                    pairs[i * ROW + j0 + t] = dsij;
                }
                group_set(&ds, t, dsij);
            }
        }
        accumulate_rows(&g, ds, 1u, j0, lane);
    }
    return g;
}

@compute @workgroup_size(NT_LANES)
fn main_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let own = lid.x < NT;
    let t = min(lid.x, NT - 1u);
    let qr = query(wg.x, t);
    let first = (qr.slice * NT + t) * HD;
    if (own) {
        load_slice(qr, first);
    }
    workgroupBarrier();
    probabilities_rows(qr, lane, own);
    workgroupBarrier();
    let sp = probs_backward_rows(t, lane, own);
    if (own) {
        sums[3u][t] = sp;
    }
    workgroupBarrier();
    let gv = column_grad_rows(t, lane, 1u, 3u);
    workgroupBarrier();
    let gq = logit_grads_rows(t, lane, own);
    workgroupBarrier();
    let gk = column_grad_rows(t, lane, 0u, 0u);
    if (own) {
        sums[0u][t] = finish(gq, first, 0u);
        sums[1u][t] = finish(gk, first, 1u);
        sums[2u][t] = finish(gv, first, 2u);
    }
    workgroupBarrier();
    reduce_sums(lid.x);
    if (lid.x < 4u) {
        partials[qr.slice * 4u + lid.x] = sums[lid.x][0];
    }
}
