// Subgroup sharing for the attention's kernels on CPU drivers (attention_rows.wgsl,
// attention_backward_rows.wgsl). There a load whose index depends on a loop counter
// is a vector gather even when every lane wants the same word, so a row operand
// (a key, a value, a query or dO) is taken LANES rows at a time: lane t loads the
// word of row r0 + t (one gather, every word used) and subgroupBroadcast with a
// constant lane hands the LANES words to every lane. Needs every lane active.
// Workgroups have NT rounded up to LANES invocations so that every subgroup is
// full; the extra invocations repeat the last row and write nothing.
// Header constant: LANES (4 or 8, at most the subgroup size).

const NT_LANES: u32 = (NT + LANES - 1u) / LANES * LANES;

// Values of rows r0..r0+7 (lo: the first four).
struct LaneGroup {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn group_at(g: LaneGroup, t: u32) -> f32 {
    if (t < 4u) {
        return g.lo[t];
    }
    return g.hi[t - 4u];
}

// x of every lane of the subgroup, as a group (zeros past LANES).
fn from_lanes(x: f32) -> LaneGroup {
    let lo = vec4<f32>(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u));
    if (LANES < 8u) {
        return LaneGroup(lo, vec4<f32>(0.0));
    }
    let hi = vec4<f32>(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
    return LaneGroup(lo, hi);
}
