// One Adam step (β1, β2, bias-corrected) on the quantizer parameter rows
// (l, u, c, unused) from their gradient rows (dl, du, dc, 0); c moves only when
// the method trains it (train_bias), the fourth component never.

struct Params {
    rows: u32,
    step: u32,        // 1-based step number, for the bias correction
    train_bias: u32,
    _pad: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m2: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.rows) {
        return;
    }
    let g = grads[i];
    let m = p.beta1 * m1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * m2[i] + (1.0 - p.beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    let t = f32(p.step);
    let m_hat = m / (1.0 - pow(p.beta1, t));
    let v_hat = v / (1.0 - pow(p.beta2, t));
    let mask = vec4<f32>(1.0, 1.0, select(0.0, 1.0, p.train_bias == 1u), 0.0);
    params[i] -= mask * p.lr * m_hat / (sqrt(v_hat) + p.eps);
}
