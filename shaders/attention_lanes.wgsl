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

fn group_set(g: ptr<function, LaneGroup>, t: u32, v: f32) {
    if (t < 4u) {
        (*g).lo[t] = v;
    } else {
        (*g).hi[t - 4u] = v;
    }
}

// The relative-position bias and shift mask of keys j0.. for query qr (window.wgsl;
// keys past NT repeat the last, zeros past LANES).
fn bias_group(qr: Query, j0: u32) -> LaneGroup {
    var b = LaneGroup(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var t = 0u; t < LANES; t++) {
        group_set(&b, t, bias_and_mask(qr, min(j0 + t, NT - 1u)));
    }
    return b;
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
