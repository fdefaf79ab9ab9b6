// weight_grad_tiles for CPU drivers such as lavapipe (appended to backward.wgsl
// with lanes.wgsl; needs subgroups). There the tiles' workgroup-memory reads run
// lane by lane and each barrier switches between the workgroup's subgroups, so
// the tiled kernel managed about a tenth of the forward matmul's rate. Here, as in
// the `rows` matmul, an invocation owns one output o and 4·V inputs of Ŵ's
// gradient for one chunk of tokens: per token it loads dy[t, o], lane s loads
// (and fake-quantizes) quad s of x̂'s row, and lanes.wgsl's accumulate shares the
// quads. Each weight sums its chunk's tokens in order, as weight_grad_tiles does,
// so both give the same bits. Workgroups: (outputs / 64, input blocks, chunks).
// Header constant: V (the block's inputs in vec4s, ≤ the subgroup size).

@compute @workgroup_size(64)
fn weight_grad_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let o = wg.x * 64u + lid;
    let o_read = min(o, p.n_out - 1u);  // lanes past n_out share the loads, write nothing
    let i0 = wg.y * 4u * V;
    let mine = i0 + 4u * min(lane, V - 1u);
    let j = wg.z;
    let act = qparams[p.act_row];
    var acc: array<vec4<f32>, 8>;
    let t_end = min(p.n, (j + 1u) * p.chunk);
    for (var t = j * p.chunk; t < t_end; t++) {
        accumulate(&acc, vec4<f32>(dy[t * p.n_out + o_read]), x_hat_quad(t, mine, act));
    }
    if (o >= p.n_out) {
        return;
    }
    let row = j * p.n_out * p.c + o * p.c;
    for (var v = 0u; v < V; v++) {
        for (var e = 0u; e < 4u; e++) {
            let i = i0 + 4u * v + e;
            if (i < p.c) {
                wgrad[row + i] = acc[v][e];
            }
        }
    }
}
