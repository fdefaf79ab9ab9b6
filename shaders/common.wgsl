// Helpers shared by several kernel families (prepended to their source).

// Flat invocation index for 1-D work dispatched as a 2-D grid of 256-wide
// workgroups (a single dimension is capped at 65535 workgroups).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// erf in f32, max error about 1 ulp (minimax polynomials; the |x| > 0.927 branch
// goes through exp). WGSL has no erf builtin.
fn erf_f32(a: f32) -> f32 {
    let t = abs(a);
    let s = a * a;
    if (t > 0.927734375) {
        var r = fma(-1.72853470e-5, t, 3.83197126e-4);
        let u = fma(-3.88396438e-3, t, 2.42546219e-2);
        r = fma(r, s, u);
        r = fma(r, t, -1.06777877e-1);
        r = fma(r, t, -6.34846687e-1);
        r = fma(r, t, -1.28717512e-1);
        r = fma(r, t, -t);
        r = 1.0 - exp(r);
        return select(r, -r, a < 0.0);
    }
    var r = -5.96761703e-4;
    r = fma(r, s, 4.99119423e-3);
    r = fma(r, s, -2.67681349e-2);
    r = fma(r, s, 1.12819925e-1);
    r = fma(r, s, -3.76125336e-1);
    r = fma(r, s, 1.28379166e-1);
    return fma(r, a, a);
}

// Exact (erf-based) GELU, as torch.nn.GELU() computes it.
fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752));
}

// The fake quantizer of SPEC §3 with 2DQuant's operation order:
// q = (lower, upper, bias c, unused); levels = 2^b − 1.
// The integer code of x: round((clip(x, l, u) − l)/s), the r with
// fake_quant(x) = (l + c) + s·r (0 when the quantizer is degenerate).
fn quant_code(x: f32, q: vec4<f32>, levels: f32) -> u32 {
    let s = quant_step(q, levels);
    if (s == 0.0) {
        return 0u;
    }
    return u32(round((clamp(x, q.x, q.y) - q.x) / s));
}

// The codes of v's elements that are `inside`, four to a word (byte e: element e;
// 0 for the others).
fn quad_codes(v: vec4<f32>, inside: vec4<bool>, q: vec4<f32>, levels: f32) -> u32 {
    var word = 0u;
    for (var e = 0u; e < 4u; e++) {
        if (inside[e]) {
            word |= quant_code(v[e], q, levels) << (8u * e);
        }
    }
    return word;
}

// s = (u − l)/(2^b − 1), or 0 when u ≤ l.
fn quant_step(q: vec4<f32>, levels: f32) -> f32 {
    let s = (q.y - q.x) / levels;
    return select(0.0, s, s > 0.0);
}

fn fake_quant(x: f32, q: vec4<f32>, levels: f32) -> f32 {
    let s = (q.y - q.x) / levels;
    if (!(s > 0.0)) {
        return q.x + q.z;
    }
    return round((clamp(x, q.x, q.y) - q.x) / s) * s + q.x + q.z;
}

// The fake quantizer's STE partial derivatives (SPEC §3) at x:
// (∂Q/∂x, ∂Q/∂l, ∂Q/∂u, ∂Q/∂c). With v = (clip(x, l, u) − l)/s and r = round(v):
// ∂Q/∂x = 1[l ≤ x ≤ u], ∂Q/∂l = 1[x ≤ l] − (r − v)/n, ∂Q/∂u = 1[x ≥ u] + (r − v)/n,
// ∂Q/∂c = 1. A degenerate quantizer (u ≤ l) is the constant l + c.
fn fake_quant_grads(x: f32, q: vec4<f32>, levels: f32) -> vec4<f32> {
    let s = (q.y - q.x) / levels;
    if (!(s > 0.0)) {
        return vec4<f32>(0.0, 1.0, 0.0, 1.0);
    }
    let v = (clamp(x, q.x, q.y) - q.x) / s;
    let frac = (round(v) - v) / levels;
    let inside = select(0.0, 1.0, x >= q.x && x <= q.y);
    let below = select(0.0, 1.0, x <= q.x);
    let above = select(0.0, 1.0, x >= q.y);
    return vec4<f32>(inside, below - frac, above + frac, 1.0);
}

// Order-preserving map of f32 bits to u32 (radix sort keys): flip the sign bit
// of positives, all bits of negatives.
fn to_key(u: u32) -> u32 {
    return u ^ select(0x80000000u, 0xffffffffu, (u >> 31u) == 1u);
}

fn from_key(k: u32) -> u32 {
    return k ^ select(0xffffffffu, 0x80000000u, (k >> 31u) == 1u);
}

// dot4U8Packed of the code word a with each of four code words: (a·w.x, a·w.y, a·w.z, a·w.w).
fn dot4x4(a: u32, w: vec4<u32>) -> vec4<u32> {
    return vec4<u32>(dot4U8Packed(a, w.x), dot4U8Packed(a, w.y), dot4U8Packed(a, w.z), dot4U8Packed(a, w.w));
}
