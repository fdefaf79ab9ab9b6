// Subgroup sharing for the CPU drivers' `rows` kernels (matmul_rows.wgsl,
// backward_rows.wgsl): lane s of a subgroup loads vec4 s of a row that every lane
// needs (one gather, every word used), and subgroupBroadcast with a constant lane
// hands each vec4 to all the lanes (a register shuffle). Needs V ≤ the subgroup
// size and every lane active.
// Header constant: V (≤ 8), the row's length in vec4s.

// acc[j] += a · (vec4 j of the row whose vec4 `lane_w` this lane holds), j < V.
// (subgroupBroadcast takes a constant lane, hence one line per lane.)
fn accumulate(acc: ptr<function, array<vec4<f32>, 8>>, a: vec4<f32>, lane_w: vec4<f32>) {
    (*acc)[0] = fma(a, subgroupBroadcast(lane_w, 0u), (*acc)[0]);
    if (V > 1u) { (*acc)[1] = fma(a, subgroupBroadcast(lane_w, 1u), (*acc)[1]); }
    if (V > 2u) { (*acc)[2] = fma(a, subgroupBroadcast(lane_w, 2u), (*acc)[2]); }
    if (V > 3u) { (*acc)[3] = fma(a, subgroupBroadcast(lane_w, 3u), (*acc)[3]); }
    if (V > 4u) { (*acc)[4] = fma(a, subgroupBroadcast(lane_w, 4u), (*acc)[4]); }
    if (V > 5u) { (*acc)[5] = fma(a, subgroupBroadcast(lane_w, 5u), (*acc)[5]); }
    if (V > 6u) { (*acc)[6] = fma(a, subgroupBroadcast(lane_w, 6u), (*acc)[6]); }
    if (V > 7u) { (*acc)[7] = fma(a, subgroupBroadcast(lane_w, 7u), (*acc)[7]); }
}

