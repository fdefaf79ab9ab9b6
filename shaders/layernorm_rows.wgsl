// The LayerNorm for CPU drivers such as lavapipe (appended to layernorm.wgsl; needs
// subgroups). There a load or store with a per-lane address is a scalar loop over the
// lanes, and one token per invocation read each channel three times and γ, β once per
// token. Here the lanes of a subgroup share a token: lane s keeps the token's channel
// quads s, s + n, ... (n lanes) in registers, the moments are subgroup sums, and each
// quad is written once (four floats, or one word of four codes). γ and β are loaded
// once per invocation, which walks ROW_TOKENS tokens.
// Header constants: GROUPS (quads per lane: ⌈⌈c/4⌉/n⌉ for the smallest subgroup size
// n), ROW_TOKENS.

// Channels 4·quad .. 4·quad + 3, clamped to the last one.
fn quad_channels(quad: u32) -> vec4<u32> {
    return min(vec4<u32>(4u * quad) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c - 1u));
}

fn quad_inside(quad: u32) -> vec4<bool> {
    return vec4<u32>(4u * quad) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.c);
}

@compute @workgroup_size(64)
fn rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) n: u32,
) {
    let first = ((wg.x + wg.y * nwg.x) * (64u / n) + lid / n) * ROW_TOKENS;
    var g_q: array<vec4<f32>, GROUPS>;
    var b_q: array<vec4<f32>, GROUPS>;
    for (var g = 0u; g < GROUPS; g++) {
        let i = quad_channels(lane + g * n);
        g_q[g] = vec4<f32>(gamma[i.x], gamma[i.y], gamma[i.z], gamma[i.w]);
        b_q[g] = vec4<f32>(beta[i.x], beta[i.y], beta[i.z], beta[i.w]);
    }
    let q = qparams[max(p.quant, 1u) - 1u];
    let quads = (p.c + 3u) / 4u;
    let last = min(first + ROW_TOKENS, p.tokens);
    for (var t = first; t < last; t++) {
        let base = t * p.c;
        var xs: array<vec4<f32>, GROUPS>;
        var sum = 0.0;
        for (var g = 0u; g < GROUPS; g++) {
            let quad = lane + g * n;
            let i = quad_channels(quad) + base;
            xs[g] = select(vec4<f32>(0.0), vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]), quad_inside(quad));
            sum += dot(xs[g], vec4<f32>(1.0));
        }
        let mean = subgroupAdd(sum) / f32(p.c);
        var sq = 0.0;
        for (var g = 0u; g < GROUPS; g++) {
            let d = select(vec4<f32>(0.0), xs[g] - mean, quad_inside(lane + g * n));
            sq += dot(d, d);
        }
        let inv = 1.0 / sqrt(subgroupAdd(sq) / f32(p.c) + p.eps);
        for (var g = 0u; g < GROUPS; g++) {
            let quad = lane + g * n;
            if (quad >= quads) {
                continue;
            }
            let yq = (xs[g] - mean) * inv * g_q[g] + b_q[g];
            let inside = quad_inside(quad);
            if (CODES) {
                codes[t * quads + quad] = quad_codes(yq, inside, q, LEVELS);
                continue;
            }
            for (var e = 0u; e < 4u; e++) {
                if (inside[e]) {
                    y[base + 4u * quad + e] = yq[e];
                }
            }
        }
    }
}
