// The matmul's `rows` strategy, for CPU drivers such as lavapipe (appended to
// matmul.wgsl, whose loads, epilogues and integer algebra it shares). There every
// storage or workgroup load with a per-lane address is a scalar loop over the lanes,
// so an invocation computes 4·V columns of one row of C and reads W from a uniform
// block instead. A uniform load whose index depends on a loop counter is still a
// vector gather, even when every lane wants the same word. So lane s of a subgroup
// loads vec4 s of W's row kk (one gather, every word used), and subgroupBroadcast
// with a constant lane hands each vec4 to all lanes (a register shuffle). That
// needs V ≤ the subgroup size (the host sees to it) and every lane active: rows
// past m load clamped values and are dropped by the epilogue.
// lanes.wgsl (included with this file) holds the float accumulate.
// Header constant: V (≤ 8), the weight block's columns in vec4s.

// rows: Wᵀ of 4·V columns, (k, V) vec4s, then their bias (V vec4s), bound at the
// column block's offset.
@group(0) @binding(7) var<uniform> w_block: array<vec4<f32>, 4096>;
// rows_windowed: A's rows p.row0.. from word p.a_delta of a uniform window, so the
// loads are gathers instead of lane-by-lane storage loads (which cost 2–3× the
// multiply-adds they feed).
@group(0) @binding(12) var<uniform> a_window: array<vec4<f32>, 4096>;
// rows_int: the integer weight block (quant.wgsl int_weights) of 4·V columns.
@group(0) @binding(9) var<uniform> w_int: array<vec4<u32>, 4096>;

// The integer version of lanes.wgsl's accumulate: acc[j] += the four dot products
// of the code word a with vec4 j of the row of weight code words.
fn accumulate_int(acc: ptr<function, array<vec4<u32>, 8>>, a: u32, lane_w: vec4<u32>) {
    (*acc)[0] += dot4x4(a, subgroupBroadcast(lane_w, 0u));
    if (V > 1u) { (*acc)[1] += dot4x4(a, subgroupBroadcast(lane_w, 1u)); }
    if (V > 2u) { (*acc)[2] += dot4x4(a, subgroupBroadcast(lane_w, 2u)); }
    if (V > 3u) { (*acc)[3] += dot4x4(a, subgroupBroadcast(lane_w, 3u)); }
    if (V > 4u) { (*acc)[4] += dot4x4(a, subgroupBroadcast(lane_w, 4u)); }
    if (V > 5u) { (*acc)[5] += dot4x4(a, subgroupBroadcast(lane_w, 5u)); }
    if (V > 6u) { (*acc)[6] += dot4x4(a, subgroupBroadcast(lane_w, 6u)); }
    if (V > 7u) { (*acc)[7] += dot4x4(a, subgroupBroadcast(lane_w, 7u)); }
}

// Weight block b of this dispatch's window starts at vec4 b·p.slot4 and holds
// columns p.col0 + 4·V·b.. : every entry loops over the p.blocks blocks the window
// holds, so a dispatch covers all the columns a window of weights holds.

// The accumulators' start: the bias, in row k of weight block b.
fn bias_acc(w0: u32) -> array<vec4<f32>, 8> {
    var acc: array<vec4<f32>, 8>;
    for (var j = 0u; j < V; j++) {
        acc[j] = w_block[w0 + p.k * V + j];
    }
    return acc;
}

fn store_row(row: u32, col0: u32, acc: array<vec4<f32>, 8>) {
    let start = row_start(row);
    for (var j = 0u; j < V; j++) {
        epilogue(row, start, col0 + 4u * j, acc[j]);
    }
}

// A from storage (any A_MODE).
@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let aq = act_params();
    let mine = min(lane, V - 1u);
    let origin = row_origin(row);
    for (var b = 0u; b < p.blocks; b++) {
        let w0 = b * p.slot4;
        var acc = bias_acc(w0);
        for (var kk = 0u; kk < p.k; kk++) {
            accumulate(&acc, vec4<f32>(load_a_at(origin, kk, aq)), w_block[w0 + kk * V + mine]);
        }
        store_row(row, p.col0 + 4u * V * b, acc);
    }
}

// A (dense, A_MODE 0) from the uniform window.
@compute @workgroup_size(64)
fn rows_windowed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let aq = act_params();
    let mine = min(lane, V - 1u);
    let at = p.a_delta + (min(row, p.m - 1u) - p.row0) * p.k;
    for (var b = 0u; b < p.blocks; b++) {
        let w0 = b * p.slot4;
        var acc = bias_acc(w0);
        for (var kk = 0u; kk < p.k; kk++) {
            var x = a_window[(at + kk) / 4u][(at + kk) % 4u];
            if (LEVELS > 0.0) {
                x = fake_quant(x, aq, LEVELS);
            }
            accumulate(&acc, vec4<f32>(x), w_block[w0 + kk * V + mine]);
        }
        store_row(row, p.col0 + 4u * V * b, acc);
    }
}

// The integer linear, laid out like `rows`.
@compute @workgroup_size(64)
fn rows_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let k4 = (p.k + 3u) / 4u;
    let codes0 = min(row, p.m - 1u) * k4;
    let mine = min(lane, V - 1u);
    let s = int_scales();
    let start = row_start(row);
    for (var b = 0u; b < p.blocks; b++) {
        let w0 = b * p.slot4;
        var acc: array<vec4<u32>, 8>;
        for (var j = 0u; j < V; j++) {
            acc[j] = vec4<u32>(0u);
        }
        var row_sum = 0u;
        for (var g = 0u; g < k4; g++) {
            let a4 = a_codes[codes0 + g];
            row_sum += dot4U8Packed(a4, 0x01010101u);
            accumulate_int(&acc, a4, w_int[w0 + g * V + mine]);
        }
        for (var j = 0u; j < V; j++) {
            let col_term = bitcast<vec4<f32>>(w_int[w0 + k4 * V + j]);
            int_output(row, start, p.col0 + 4u * (V * b + j), int_y(s, acc[j], row_sum, col_term));
        }
    }
}
