// Image in and out of the network: mirror padding with mean shift (prepare),
// pixel shuffle with mean restore and crop (finish), and finish's backward
// (finish_backward: the output's gradient back to the upsampling conv's tokens). Planar (B, CH, H, W) images,
// token tensors (B, Hp, Wp, channels).

struct Params {
    b: u32,
    ch: u32,
    h: u32,       // unpadded LR height
    w: u32,
    hp: u32,      // padded LR height
    wp: u32,
    scale: u32,
    img_range: f32,
    mean: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Flip-concatenation padding, repeated with period 2n when the pad exceeds n.
fn mirror(y: u32, n: u32) -> u32 {
    let m = y % (2u * n);
    return select(2u * n - 1u - m, m, m < n);
}

// One invocation per padded token channel.
@compute @workgroup_size(256)
fn prepare(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= p.b * p.hp * p.wp * p.ch) {
        return;
    }
    let c = idx % p.ch;
    let tok = idx / p.ch;
    let x = tok % p.wp;
    let y = (tok / p.wp) % p.hp;
    let b = tok / (p.wp * p.hp);
    let v = src[((b * p.ch + c) * p.h + mirror(y, p.h)) * p.w + mirror(x, p.w)];
    dst[idx] = (v - p.mean[c]) * p.img_range;
}

// One invocation per output pixel channel of the cropped (B, CH, s·h, s·w) image.
@compute @workgroup_size(256)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let oh = p.h * p.scale;
    let ow = p.w * p.scale;
    if (idx >= p.b * p.ch * oh * ow) {
        return;
    }
    let ox = idx % ow;
    let oy = (idx / ow) % oh;
    let c = (idx / (ow * oh)) % p.ch;
    let b = idx / (ow * oh * p.ch);
    let s2 = p.scale * p.scale;
    let tok = (b * p.hp + oy / p.scale) * p.wp + ox / p.scale;
    let sub = c * s2 + (oy % p.scale) * p.scale + ox % p.scale;
    dst[idx] = src[tok * p.ch * s2 + sub] / p.img_range + p.mean[c];
}

// One invocation per token channel of the upsampling conv's output: the gradient of
// the output pixel it becomes, or 0 where the crop dropped it.
@compute @workgroup_size(256)
fn finish_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    let s2 = p.scale * p.scale;
    if (idx >= p.b * p.hp * p.wp * p.ch * s2) {
        return;
    }
    let sub = idx % (p.ch * s2);
    let tok = idx / (p.ch * s2);
    let c = sub / s2;
    let oy = ((tok / p.wp) % p.hp) * p.scale + (sub % s2) / p.scale;
    let ox = (tok % p.wp) * p.scale + sub % p.scale;
    let b = tok / (p.wp * p.hp);
    let oh = p.h * p.scale;
    let ow = p.w * p.scale;
    var g = 0.0;
    if (oy < oh && ox < ow) {
        g = src[((b * p.ch + c) * oh + oy) * ow + ox] / p.img_range;
    }
    dst[idx] = g;
}
