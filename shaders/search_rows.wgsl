// candidate_errors for CPU drivers such as lavapipe (appended to search.wgsl; needs
// subgroups). The slice comes through a uniform window, two workgroups per
// dispatch. A load whose index depends on a loop counter is a vector gather there
// even when every lane wants the same word, so lane s of a subgroup loads vec4 s of
// the next LANES (one gather, every word used) and subgroupBroadcast with a constant
// lane hands each to all the lanes, which add the elements in order (the same sums
// as candidate_errors).
// Header constant: LANES (≤ 8, at most the subgroup size).

@group(0) @binding(8) var<uniform> x_window: array<vec4<f32>, 4096>;

// Adds the elements of vec4 `q` (words 4q..4q+3 of the window) that lie in [lo, hi).
fn add_quad(acc: ptr<function, vec2<f32>>, v: vec4<f32>, q: u32, lo: u32, hi: u32, b: vec2<f32>) {
    for (var e = 0u; e < 4u; e++) {
        let i = 4u * q + e;
        if (i >= lo && i < hi) {
            add_error(acc, v[e] * p.mult, b);
        }
    }
}

@compute @workgroup_size(256)
fn candidate_errors_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // Subgroups without a candidate leave; the others need all their lanes.
    if (subgroupAll(lid.x >= p.k)) {
        return;
    }
    let start = wg.x * PER_WG;
    let lo = p.x_delta + start;
    let hi = p.x_delta + min(start + PER_WG, p.n);
    let b = cand[min(lid.x, p.k - 1u)];
    var acc = vec2<f32>(0.0);
    for (var q0 = lo / 4u; 4u * q0 < hi; q0 += LANES) {
        let mine = x_window[min(q0 + lane, 4095u)];
        add_quad(&acc, subgroupBroadcast(mine, 0u), q0, lo, hi, b);
        if (LANES > 1u) { add_quad(&acc, subgroupBroadcast(mine, 1u), q0 + 1u, lo, hi, b); }
        if (LANES > 2u) { add_quad(&acc, subgroupBroadcast(mine, 2u), q0 + 2u, lo, hi, b); }
        if (LANES > 3u) { add_quad(&acc, subgroupBroadcast(mine, 3u), q0 + 3u, lo, hi, b); }
        if (LANES > 4u) { add_quad(&acc, subgroupBroadcast(mine, 4u), q0 + 4u, lo, hi, b); }
        if (LANES > 5u) { add_quad(&acc, subgroupBroadcast(mine, 5u), q0 + 5u, lo, hi, b); }
        if (LANES > 6u) { add_quad(&acc, subgroupBroadcast(mine, 6u), q0 + 6u, lo, hi, b); }
        if (LANES > 7u) { add_quad(&acc, subgroupBroadcast(mine, 7u), q0 + 7u, lo, hi, b); }
    }
    if (lid.x < p.k) {
        errs[(p.wg_base + wg.x) * p.k + lid.x] = acc;
    }
}
