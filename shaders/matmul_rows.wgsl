// The matmul's `rows` strategy, for CPU drivers such as lavapipe (appended to
// matmul.wgsl, whose loads, epilogues and integer algebra it shares). There every
// storage or workgroup load with a per-lane address is a scalar loop over the lanes,
// so an invocation computes 4·V columns of one row of C and reads W from a uniform
// block instead. A uniform load whose index depends on a loop counter is still a
// vector gather, even when every lane wants the same word. So lane s of a subgroup
// loads vec4 s of W's row kk (one gather, every word used), and subgroupBroadcast
// with a constant lane hands each vec4 to all lanes (a register shuffle). That
// needs V ≤ the subgroup size (the host sees to it) and every lane active: rows
// past m load clamped values and are dropped by the epilogue. A itself comes through
// uniform windows too where they fit (`rows_windowed`, `conv_windowed`,
// `rows_int_windowed`); `rows` and `rows_int` read it from storage.
// lanes.wgsl (included with this file) holds the float accumulate.
// Header constant: V (≤ 8), the weight block's columns in vec4s.

// rows: Wᵀ of 4·V columns, (k, V) vec4s, then their bias (V vec4s), bound at the
// column block's offset.
@group(0) @binding(7) var<uniform> w_block: array<vec4<f32>, 4096>;
// rows_windowed: A's rows p.row0.. from word p.a_delta of a uniform window, so the
// loads are gathers instead of lane-by-lane storage loads (each lane's word goes
// into the vector through the stack: the forward's hottest instructions under perf).
@group(0) @binding(12) var<uniform> a_window: array<vec4<f32>, 4096>;
// conv_windowed: the 3×3 convolution's input pixels one image row above and below
// the output rows (the window of binding 12 holds those at them).
@group(0) @binding(13) var<uniform> a_above: array<vec4<f32>, 4096>;
@group(0) @binding(14) var<uniform> a_below: array<vec4<f32>, 4096>;
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

// Weight block b = wg.y of this dispatch's window starts at vec4 b·p.slot4 and
// holds columns p.col0 + 4·V·b.. : a dispatch covers all the columns a window of
// weights holds, each block in workgroups of its own (on lavapipe a dispatch's
// workgroups are what its threads share, and a dispatch costs ~50 µs to start).

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
    let b = wg.y;
    let w0 = b * p.slot4;
    var acc = bias_acc(w0);
    for (var kk = 0u; kk < p.k; kk++) {
        accumulate(&acc, vec4<f32>(load_a_at(origin, kk, aq)), w_block[w0 + kk * V + mine]);
    }
    store_row(row, p.col0 + 4u * V * b, acc);
}

// A (dense, A_MODE 0) from the uniform window.
@compute @workgroup_size(64)
fn rows_windowed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let aq = act_params();
    let mine = min(lane, V - 1u);
    let at = p.a_delta + (min(row, p.m - 1u) - p.row0) * p.k;
    let b = wg.y;
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

// Where a 3×3 tap of one output pixel reads its input: the word of channel 0 in its
// window (clamped into the window: taps outside the image read any word) and
// whether the tap lies inside the image.
struct Tap {
    word: u32,
    inside: bool,
}

// Tap (dy, dx) of the pixel at `o` (row_origin), its window's base (i32 bits).
fn conv_tap(o: RowOrigin, dy: i32, dx: i32, base: u32) -> Tap {
    let x = o.x + dx;
    let y = o.y + dy;
    let inside = x >= 0 && y >= 0 && x < i32(p.img_w) && y < i32(p.img_h);
    let q = i32(o.r) + dy * i32(p.img_w) + dx;
    let word = clamp(bitcast<i32>(base) + q * i32(p.cin), 0, 4096 * 4 - i32(p.cin));
    return Tap(u32(word), inside);
}

// Channel ci of a tap from its window (0: above, 1: at, 2: below), fake-quantized
// with q when the model is.
fn tap_value(t: Tap, window: u32, ci: u32, q: vec4<f32>) -> f32 {
    let i = t.word + ci;
    var x: f32;
    if (window == 0u) {
        x = a_above[i / 4u][i % 4u];
    } else if (window == 1u) {
        x = a_window[i / 4u][i % 4u];
    } else {
        x = a_below[i / 4u][i % 4u];
    }
    if (LEVELS > 0.0) {
        x = fake_quant(x, q, LEVELS);
    }
    return select(0.0, x, t.inside);
}

// The 3×3 convolution (A_MODE 1, k = ci·9 + tap) with its input from three windows.
@compute @workgroup_size(64)
fn conv_windowed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let o = row_origin(row);
    let aq = act_params();
    let mine = min(lane, V - 1u);
    let bases = array<u32, 3>(p.a_above, p.a_delta, p.a_below);
    var taps: array<Tap, 9>;
    for (var t = 0u; t < 9u; t++) {
        taps[t] = conv_tap(o, i32(t / 3u) - 1, i32(t % 3u) - 1, bases[t / 3u]);
    }
    let b = wg.y;
    let w0 = b * p.slot4;
    var acc = bias_acc(w0);
    for (var ci = 0u; ci < p.cin; ci++) {
        let w = w0 + ci * 9u * V + mine;
        for (var t = 0u; t < 9u; t++) {
            accumulate(&acc, vec4<f32>(tap_value(taps[t], t / 3u, ci, aq)), w_block[w + t * V]);
        }
    }
    store_row(row, p.col0 + 4u * V * b, acc);
}

// The integer linear's sums over one weight block: Σ r_x·R_w per column (acc) and
// Σ r_x (row_sum). Adds the code word a4 (four k) against the weight row vec4
// `lane_w` this lane holds.
fn int_step(acc: ptr<function, array<vec4<u32>, 8>>, row_sum: ptr<function, u32>, a4: u32, lane_w: vec4<u32>) {
    *row_sum += dot4U8Packed(a4, 0x01010101u);
    accumulate_int(acc, a4, lane_w);
}

// Zeroed integer sums of one weight block.
fn int_zero() -> array<vec4<u32>, 8> {
    var acc: array<vec4<u32>, 8>;
    for (var j = 0u; j < V; j++) {
        acc[j] = vec4<u32>(0u);
    }
    return acc;
}

// Writes row `row`'s columns of weight block b (from vec4 w0 of the weight window).
fn int_store(row: u32, b: u32, w0: u32, acc: array<vec4<u32>, 8>, row_sum: u32) {
    let k4 = (p.k + 3u) / 4u;
    let s = int_scales();
    let start = row_start(row);
    for (var j = 0u; j < V; j++) {
        let col_term = bitcast<vec4<f32>>(w_int[w0 + k4 * V + j]);
        int_output(row, start, p.col0 + 4u * (V * b + j), int_y(s, acc[j], row_sum, col_term));
    }
}

// The integer linear, laid out like `rows`, its codes from storage.
@compute @workgroup_size(64)
fn rows_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let k4 = (p.k + 3u) / 4u;
    let codes0 = min(row, p.m - 1u) * k4;
    let mine = min(lane, V - 1u);
    let b = wg.y;
    let w0 = b * p.slot4;
    var acc = int_zero();
    var row_sum = 0u;
    for (var g = 0u; g < k4; g++) {
        int_step(&acc, &row_sum, a_codes[codes0 + g], w_int[w0 + g * V + mine]);
    }
    int_store(row, b, w0, acc, row_sum);
}

// rows_int_windowed: the codes of rows p.row0.. from word p.a_delta of a uniform window.
@group(0) @binding(15) var<uniform> codes_window: array<vec4<u32>, 4096>;

// The same with the codes through the uniform window.
@compute @workgroup_size(64)
fn rows_int_windowed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let row = p.row0 + wg.x * 64u + lid.x;
    let k4 = (p.k + 3u) / 4u;
    let at = p.a_delta + (min(row, p.m - 1u) - p.row0) * k4;
    let mine = min(lane, V - 1u);
    let b = wg.y;
    let w0 = b * p.slot4;
    var acc = int_zero();
    var row_sum = 0u;
    for (var g = 0u; g < k4; g++) {
        int_step(&acc, &row_sum, codes_window[(at + g) / 4u][(at + g) % 4u], w_int[w0 + g * V + mine]);
    }
    int_store(row, b, w0, acc, row_sum);
}
