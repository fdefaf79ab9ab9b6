//! Every WGSL kernel against the CPU reference on fresh random data of odd sizes.

mod common;

use common::{assert_close, gpu, random, rng};
use swinq::gpu::ops::{self, AttnExtras, AttnShape, GpuLinear, GpuNorm, ImageShape, Matmul, MatmulInput, WeightLayout};
use swinq::gpu::{run_now, GpuBuffer, MatmulKind};
use swinq::model::config::RGB_MEAN;
use swinq::model::cpu;
use swinq::model::weights::{Conv3x3, LayerNorm, Linear};

const TOL: f64 = 1e-5;

/// Both matmul strategies run on every device; the tests check each.
const KINDS: [MatmulKind; 2] = [MatmulKind::Tiled, MatmulKind::Rows];

fn random_linear(seed: u64, out_dim: usize, in_dim: usize) -> Linear {
    let mut r = rng(seed);
    Linear {
        weight: random(&mut r, out_dim * in_dim, -0.3, 0.3),
        bias: random(&mut r, out_dim, -0.1, 0.1),
        out_dim,
        in_dim,
    }
}

#[test]
fn linear_with_gelu_and_residual() {
    // 333·47 words of x fit one uniform window: CPU drivers read them from storage.
    // 1001·47 do not: there `rows_windowed` reads them through 4 windows of 320 rows
    // (the last one ending at the buffer's end), here from an x that starts at word 8
    // of its buffer.
    for (m, offset) in [(333, 0), (1001, 8)] {
        linear_case(m, offset);
    }
}

fn linear_case(m: usize, offset: usize) {
    let ctx = gpu();
    let (k, n) = (47, 61);
    let mut r = rng(1);
    let x = random(&mut r, m * k, -2.0, 2.0);
    let res = random(&mut r, m * n, -1.0, 1.0);
    let lin = random_linear(2, n, k);
    let padded: Vec<f32> = [vec![f32::NAN; offset], x.clone()].concat();
    let (xb, rb, out) = (GpuBuffer::from_slice(ctx, "x", &padded), GpuBuffer::from_slice(ctx, "r", &res), GpuBuffer::zeros(ctx, "o", m * n));
    let plain = cpu::linear(&x, &lin);
    for kind in KINDS {
        let layer = GpuLinear::with_kind(ctx, kind, "w", &lin.weight, &lin.bias, n);
        for (gelu, residual) in [(false, false), (true, false), (false, true), (true, true)] {
            let mm = Matmul { gelu, residual: residual.then(|| rb.bind()), ..Matmul::tokens(xb.slice(offset, m * k), layer.weights(), out.bind(), m, "t") };
            let ds = ops::matmul(ctx, mm);
            if kind == MatmulKind::Rows && m > 1000 {
                assert_eq!(ds.len(), 4, "one dispatch per uniform window of x");
            }
            run_now(ctx, &ds);
            let want: Vec<f32> = plain
                .iter()
                .enumerate()
                .map(|(i, &v)| (if gelu { cpu::gelu(v) } else { v }) + if residual { res[i] } else { 0.0 })
                .collect();
            assert_close(&format!("linear {kind:?} m={m} gelu={gelu} residual={residual}"), &out.read(ctx), &want, TOL);
        }
    }
}

#[test]
fn gelu_matches_f64_erf() {
    // k = 1, weight 1, bias 0: the matmul's output is gelu(x).
    let ctx = gpu();
    let x: Vec<f32> = (0..2001).map(|i| -10.0 + i as f32 * 0.01).collect();
    let layer = GpuLinear::new(ctx, "id", &[1.0], &[0.0], 1);
    let (xb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::zeros(ctx, "o", x.len()));
    run_now(ctx, &ops::matmul(ctx, Matmul { gelu: true, ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), x.len(), "t") }));
    let got: Vec<f32> = out.read(ctx);
    // f32 GELU loses relative precision where 1 + erf(x/√2) cancels (x ≪ 0), as
    // PyTorch's does: measure the error against max(|gelu(x)|, 1e-2).
    let mut worst = (0f64, 0f32);
    for (&xi, &g) in x.iter().zip(&got) {
        let want = cpu::gelu(xi) as f64;
        let e = (g as f64 - want).abs() / want.abs().max(1e-2);
        if e > worst.0 {
            worst = (e, xi);
        }
    }
    eprintln!("gelu: worst error {:.3e} at x = {}", worst.0, worst.1);
    assert!(worst.0 < 1e-5, "gelu: worst error {:.3e} at x = {}", worst.0, worst.1);
    assert_close("gelu (whole range)", &got, &x.iter().map(|&v| cpu::gelu(v)).collect::<Vec<_>>(), 1e-6);
}

#[test]
fn conv3x3_nhwc() {
    // 7 input channels: CPU drivers read the input from storage. 61 and 20: through
    // uniform windows of the image rows above, at and below (`conv_windowed`, 2
    // windows of pixels; 61→67 also needs 3 weight blocks of fewer than 32 columns).
    for ((b, h, w), cin, cout, windows) in [((2, 13, 11), 7, 9, 0), ((2, 13, 11), 61, 67, 2), ((3, 17, 29), 20, 9, 2)] {
        let ctx = gpu();
        let mut r = rng(3);
        let x = random(&mut r, b * h * w * cin, -1.0, 1.0);
        let conv = Conv3x3 { weight: random(&mut r, cout * cin * 9, -0.3, 0.3), bias: random(&mut r, cout, -0.1, 0.1), out_ch: cout, in_ch: cin };
        let res = random(&mut r, b * h * w * cout, -1.0, 1.0);
        let (xb, rb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::from_slice(ctx, "r", &res), GpuBuffer::zeros(ctx, "o", res.len()));
        let want: Vec<f32> = cpu::conv3x3(&x, b, h, w, &conv).iter().zip(&res).map(|(a, c)| a + c).collect();
        for kind in KINDS {
            let layer = GpuLinear::with_kind(ctx, kind, "c", &conv.weight, &conv.bias, cout);
            let input = MatmulInput::Conv3x3 { h, w };
            let mm = Matmul { input, residual: Some(rb.bind()), ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), b * h * w, "t") };
            let ds = ops::matmul(ctx, mm);
            if let WeightLayout::Blocks { blocks, .. } = layer.layout {
                assert_eq!(ds.len(), blocks * windows.max(1), "conv {cin}→{cout}: a dispatch per weight block and window of pixels");
            }
            run_now(ctx, &ds);
            assert_close(&format!("conv3x3 {kind:?} {cin}→{cout} ({:?})", layer.layout), &out.read(ctx), &want, TOL);
        }
    }
}

#[test]
fn layer_norm_tokens() {
    // On CPU drivers a subgroup shares a token, each lane a few channel quads: 3 channels
    // leave most lanes idle, 37 end in a partial quad, 70 give lanes unequal quads.
    for c in [37, 3, 70] {
        layer_norm_case(301, c);
    }
}

fn layer_norm_case(t: usize, c: usize) {
    let ctx = gpu();
    let mut r = rng(4 + c as u64);
    let x: Vec<f32> = random(&mut r, t * c, -3.0, 5.0);
    let ln = LayerNorm { weight: random(&mut r, c, 0.5, 1.5), bias: random(&mut r, c, -0.2, 0.2) };
    let norm = GpuNorm::new(ctx, "ln", &ln);
    let (xb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::zeros(ctx, "o", x.len()));
    run_now(ctx, &[ops::layer_norm(ctx, xb.bind(), &norm, out.bind(), t, "t")]);
    assert_close(&format!("layer_norm c={c}"), &out.read(ctx), &cpu::layer_norm(&x, c, &ln, ops::LN_EPS), TOL);
    // The integer engine's variant writes the codes that packing its output gives.
    let qp = [swinq::quant::QParams { lower: -1.2, upper: 1.5, bias: 0.02, _pad: 0.0 }];
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let q = ops::QuantRef { params: &params, row: 0, levels: swinq::quant::levels(3) };
    let (packed, direct) = (GpuBuffer::zeros(ctx, "packed", ops::code_words(t, c)), GpuBuffer::zeros(ctx, "direct", ops::code_words(t, c)));
    run_now(ctx, &[ops::pack_codes(ctx, out.bind(), packed.bind(), t, ops::CodeLayout::dense(c), q), ops::layer_norm_codes(ctx, xb.bind(), &norm, direct.bind(), t, q)]);
    assert_eq!(direct.read::<u32>(ctx), packed.read::<u32>(ctx), "layer_norm codes, c={c}");
}

#[test]
fn window_attention_shifted_and_not() {
    // Window 3: 9 queries, not a whole number of subgroups.
    for (h, w, window) in [(12, 20, 4), (9, 15, 3)] {
        window_attention_case(h, w, window);
    }
}

fn window_attention_case(h: usize, w: usize, window: usize) {
    let ctx = gpu();
    let (b, heads, hd) = (2, 3, 5);
    let c = heads * hd;
    let t = b * h * w;
    let mut r = rng(5);
    let qkv: Vec<f32> = random(&mut r, t * 3 * c, -1.5, 1.5);
    let table = random(&mut r, (2 * window - 1).pow(2) * heads, -0.5, 0.5);
    // Split the fused (tokens, 3C) tensor into q, k and v.
    let part = |p: usize| -> Vec<f32> { (0..t).flat_map(|i| qkv[i * 3 * c + p * c..i * 3 * c + (p + 1) * c].to_vec()).collect() };
    let tb = ops::attention_table(ctx, &table);
    let out = GpuBuffer::zeros(ctx, "o", t * c);
    for shift in [0, window / 2] {
        // q, k and v in the window order the q/k/v matmuls write.
        let bufs: Vec<GpuBuffer> = (0..3)
            .map(|p| {
                let buf = GpuBuffer::zeros_windowed(ctx, "qkv", t * c);
                buf.write(ctx, &cpu::window_order(&part(p), (b, h, w), c, heads, window, shift));
                buf
            })
            .collect();
        let shape = AttnShape { window, heads, head_dim: hd, shift };
        let d = ops::window_attention(ctx, [&bufs[0], &bufs[1], &bufs[2]], &tb, out.bind(), (b, h, w), shape, AttnExtras::default(), "t");
        run_now(ctx, &d);
        let want = cpu::window_attention(&qkv, b, h, w, c, heads, window, shift, &table);
        assert_close(&format!("window_attention window={window} shift={shift}"), &out.read(ctx), &want, TOL);
    }
}

#[test]
fn linear_into_window_order() {
    // b = 2: x fits one uniform window; b = 5: `rows_windowed` on CPU drivers.
    for b in [2, 5] {
        linear_into_window_order_case(b);
    }
}

fn linear_into_window_order_case(b: usize) {
    let ctx = gpu();
    let (h, w, window, heads, k) = (12, 20, 4, 3, 29);
    let c = heads * 5;
    let t = b * h * w;
    let mut r = rng(9);
    let x = random(&mut r, t * k, -1.0, 1.0);
    let lin = random_linear(10, c, k);
    let xb = GpuBuffer::from_slice(ctx, "x", &x);
    let out = GpuBuffer::zeros(ctx, "o", t * c);
    for kind in KINDS {
        let layer = GpuLinear::with_kind(ctx, kind, "w", &lin.weight, &lin.bias, c);
        for shift in [0, window / 2] {
            let shape = AttnShape { window, heads, head_dim: 5, shift };
            let windows = Some(ops::WindowOrder { h, w, shape });
            run_now(ctx, &ops::matmul(ctx, Matmul { windows, ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), t, "t") }));
            let want = cpu::window_order(&cpu::linear(&x, &lin), (b, h, w), c, heads, window, shift);
            assert_close(&format!("linear into window order {kind:?} b={b} shift={shift}"), &out.read(ctx), &want, TOL);
        }
    }
}

#[test]
fn image_prepare_and_finish() {
    // Padded to 15×10: 2·15·10·3 = 900 values, not a whole number of 256-invocation workgroups.
    let ctx = gpu();
    let (b, h, w, window, scale): (usize, usize, usize, usize, usize) = (2, 13, 6, 5, 3);
    let (hp, wp) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
    let mut r = rng(6);
    let img = random(&mut r, b * 3 * h * w, 0.0, 1.0);
    let shape = ImageShape { b, ch: 3, h, w, hp, wp, scale, img_range: 1.0, mean: RGB_MEAN };
    let src = GpuBuffer::from_slice(ctx, "img", &img);
    let tokens = GpuBuffer::zeros(ctx, "tok", b * hp * wp * 3);
    run_now(ctx, &[ops::prepare(ctx, &src, &tokens, &shape)]);
    let (want, _, _) = cpu::prepare_input(&img, b, h, w, window, 1.0);
    assert_close("prepare", &tokens.read(ctx), &want, TOL);

    let up = random(&mut r, b * hp * wp * 3 * scale * scale, -0.5, 0.5);
    let upb = GpuBuffer::from_slice(ctx, "up", &up);
    let out = GpuBuffer::zeros(ctx, "out", b * 3 * h * scale * w * scale);
    run_now(ctx, &[ops::finish(ctx, &upb, &out, &shape)]);
    let want = cpu::pixel_shuffle_output(&up, b, hp, wp, scale, h * scale, w * scale, 1.0);
    assert_close("finish", &out.read(ctx), &want, TOL);
}

#[test]
fn fake_quantized_linear() {
    // m = 701: `rows_windowed` on CPU drivers.
    for m in [203, 701] {
        fake_quantized_linear_case(m);
    }
}

fn fake_quantized_linear_case(m: usize) {
    use swinq::gpu::ops::QuantRef;
    use swinq::quant::{code, fake_quant, levels, step, QParams};
    let ctx = gpu();
    let (k, n, bits) = (60, 37, 3);
    let mut r = rng(7);
    let x = random(&mut r, m * k, -2.0, 2.0);
    let lin = random_linear(8, n, k);
    let qp = [
        QParams { lower: -0.25, upper: 0.2, bias: 0.0, _pad: 0.0 },
        QParams { lower: -1.5, upper: 1.7, bias: 0.03, _pad: 0.0 },
    ];
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let lv = levels(bits);
    let (xb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::zeros(ctx, "o", m * n));
    let wq_cpu: Vec<f32> = lin.weight.iter().map(|&v| fake_quant(v, &qp[0], lv)).collect();
    let xq: Vec<f32> = x.iter().map(|&v| fake_quant(v, &qp[1], lv)).collect();
    let want = cpu::linear(&xq, &Linear { weight: wq_cpu.clone(), ..lin.clone() });
    for kind in KINDS {
        let layer = GpuLinear::with_kind(ctx, kind, "w", &lin.weight, &lin.bias, n);
        let qw = layer.weight_copy(ctx, "qw");
        let mut ds = vec![layer.copy_weights(ctx, &qw, Some(QuantRef { params: &params, row: 0, levels: lv }))];
        let quant = Some(QuantRef { params: &params, row: 1, levels: lv });
        ds.extend(ops::matmul(ctx, Matmul { quant, ..Matmul::tokens(xb.operand(), layer.weights_with(&qw), out.bind(), m, "t") }));
        run_now(ctx, &ds);
        if kind == MatmulKind::Tiled {
            // Same codes; the dequantized values may differ in the last bit where a
            // driver contracts code·s + l into an fma (NVIDIA does, lavapipe doesn't).
            let got = qw.read::<f32>(ctx);
            let s = step(&qp[0], lv);
            let got_codes: Vec<u32> = got.iter().map(|&v| ((v - qp[0].lower - qp[0].bias) / s).round() as u32).collect();
            let want_codes: Vec<u32> = lin.weight.iter().map(|&v| code(v, &qp[0], lv)).collect();
            assert_eq!(got_codes, want_codes, "fake-quantized weights' codes");
            assert_close("fake-quantized weights", &got, &wq_cpu, 1e-6);
        }
        assert_close(&format!("fake-quantized linear {kind:?} m={m}"), &out.read(ctx), &want, TOL);
    }
}

#[test]
fn integer_linear_matches_its_algebra_and_the_fake_quantized_linear() {
    use swinq::gpu::ops::{code_words, pack_codes, CodeLayout, IntOperands, IntWeights, QuantRef};
    use swinq::quant::{code, fake_quant, levels, step, QParams};
    let ctx = gpu();
    let (m, k, n) = (203, 61, 37);
    let mut r = rng(11);
    let x = random(&mut r, m * k, -2.0, 2.0);
    let res = random(&mut r, m * n, -1.0, 1.0);
    let lin = random_linear(12, n, k);
    let layer = GpuLinear::linear(ctx, "w", &lin);
    let (xb, rb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::from_slice(ctx, "r", &res), GpuBuffer::zeros(ctx, "o", m * n));
    let codes = GpuBuffer::zeros(ctx, "codes", code_words(m, k));
    for (kind, bits) in KINDS.into_iter().flat_map(|kind| [2, 3, 4, 8].map(|bits| (kind, bits))) {
        let weights = IntWeights::with_kind(ctx, kind, n, CodeLayout::dense(k));
        let lv = levels(bits);
        let qp = [QParams { lower: -0.21, upper: 0.24, bias: 0.004, _pad: 0.0 }, QParams { lower: -1.5, upper: 1.7, bias: -0.03, _pad: 0.0 }];
        let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
        let xq = QuantRef { params: &params, row: 1, levels: lv };
        let mut ds = vec![weights.fill(ctx, &layer, xq, 0), pack_codes(ctx, xb.bind(), codes.bind(), m, CodeLayout::dense(k), xq)];
        let int = Some(IntOperands { codes: codes.operand(), weights: &weights, w_row: 0, emit: None });
        let mm = Matmul { quant: Some(xq), int, residual: Some(rb.bind()), gelu: true, ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), m, "t") };
        ds.extend(ops::matmul(ctx, mm));
        run_now(ctx, &ds);
        // CPU integer reference: the expansion of SPEC §6 in f64.
        let (sx, sw) = (step(&qp[1], lv) as f64, step(&qp[0], lv) as f64);
        let (lx, lw) = ((qp[1].lower + qp[1].bias) as f64, (qp[0].lower + qp[0].bias) as f64);
        let rx: Vec<u32> = x.iter().map(|&v| code(v, &qp[1], lv)).collect();
        let rw: Vec<u32> = lin.weight.iter().map(|&v| code(v, &qp[0], lv)).collect();
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let (xr, wr) = (&rx[i * k..(i + 1) * k], &rw[j * k..(j + 1) * k]);
                let dot: u64 = xr.iter().zip(wr).map(|(&a, &b)| (a * b) as u64).sum();
                let (sum_x, sum_w) = (xr.iter().sum::<u32>() as f64, wr.iter().sum::<u32>() as f64);
                let y = sx * sw * dot as f64 + sx * lw * sum_x + sw * lx * sum_w + k as f64 * lx * lw + lin.bias[j] as f64;
                want[i * n + j] = cpu::gelu(y as f32) + res[i * n + j];
            }
        }
        let got: Vec<f32> = out.read(ctx);
        assert_close(&format!("integer linear {kind:?} W{bits}A{bits}"), &got, &want, TOL);
        // The same numbers as the fake-quantized float linear.
        let xf: Vec<f32> = x.iter().map(|&v| fake_quant(v, &qp[1], lv)).collect();
        let wf: Vec<f32> = lin.weight.iter().map(|&v| fake_quant(v, &qp[0], lv)).collect();
        let fake: Vec<f32> = cpu::linear(&xf, &Linear { weight: wf, ..lin.clone() }).iter().zip(&res).map(|(&y, &r)| cpu::gelu(y) + r).collect();
        assert_close(&format!("integer vs fake-quantized linear {kind:?} W{bits}A{bits}"), &got, &fake, TOL);
        // Emitting the next linear's codes directly equals packing the float output.
        let (packed, emitted) = (GpuBuffer::zeros(ctx, "packed", code_words(m, n)), GpuBuffer::zeros(ctx, "emitted", code_words(m, n)));
        let plain = |emit| Matmul {
            quant: Some(xq),
            gelu: true,
            int: Some(IntOperands { codes: codes.operand(), weights: &weights, w_row: 0, emit }),
            ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), m, "t")
        };
        let mut ds = ops::matmul(ctx, plain(None));
        ds.push(pack_codes(ctx, out.bind(), packed.bind(), m, CodeLayout::dense(n), xq));
        ds.extend(ops::matmul(ctx, plain(Some((emitted.bind(), 1)))));
        run_now(ctx, &ds);
        assert_eq!(emitted.read::<u32>(ctx), packed.read::<u32>(ctx), "emitted codes {kind:?} W{bits}A{bits}");
    }
}

/// proj's input codes come head by head, with padding codes where a head ends inside
/// a word (heads of 9 here): the integer linear gives the same bits on them as on
/// dense codes, in both strategies.
#[test]
fn integer_linear_on_head_codes_equals_dense() {
    use swinq::gpu::ops::{pack_codes, CodeLayout, IntOperands, IntWeights, QuantRef};
    use swinq::quant::{levels, QParams};
    let ctx = gpu();
    let (m, heads, hd, n) = (131, 5, 9, 23);
    let k = heads * hd;
    let mut r = rng(18);
    let x = random(&mut r, m * k, -2.0, 2.0);
    let lin = random_linear(19, n, k);
    let layer = GpuLinear::linear(ctx, "w", &lin);
    let xb = GpuBuffer::from_slice(ctx, "x", &x);
    let qp = [QParams { lower: -0.21, upper: 0.24, bias: 0.004, _pad: 0.0 }, QParams { lower: -1.5, upper: 1.7, bias: -0.03, _pad: 0.0 }];
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let xq = QuantRef { params: &params, row: 1, levels: levels(4) };
    for kind in KINDS {
        let [dense, by_head] = [CodeLayout::dense(k), CodeLayout::heads(k, hd)].map(|input| {
            let (weights, codes) = (IntWeights::with_kind(ctx, kind, n, input), GpuBuffer::zeros(ctx, "codes", input.words(m)));
            let out = GpuBuffer::zeros(ctx, "o", m * n);
            let mut ds = vec![weights.fill(ctx, &layer, xq, 0), pack_codes(ctx, xb.bind(), codes.bind(), m, input, xq)];
            let int = Some(IntOperands { codes: codes.operand(), weights: &weights, w_row: 0, emit: None });
            ds.extend(ops::matmul(ctx, Matmul { quant: Some(xq), int, ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), m, "t") }));
            run_now(ctx, &ds);
            out.read::<u32>(ctx)
        });
        assert_eq!(dense, by_head, "{kind:?}");
    }
}

/// The tiled integer matmul (`main_int`, GPUs) gives the same bits as `rows_int` (CPU
/// drivers) off its 64×64 tiles and 16-word slices (m, n, k not multiples of 64 or 4;
/// several slices, the last partial; several `rows_int` blocks; the codes, 480·38 words,
/// read through two uniform windows by `rows_int_windowed`), with every epilogue.
#[test]
fn tiled_integer_linear_equals_rows_int() {
    use swinq::gpu::ops::{code_words, pack_codes, CodeLayout, IntOperands, IntWeights, QuantRef, WeightLayout, WindowOrder};
    use swinq::quant::{levels, QParams};
    let ctx = gpu();
    let (b, h, w, window, heads) = (2, 12, 20, 4, 3);
    let (m, k, n) = (b * h * w, 150, 69);
    let mut r = rng(14);
    let x = random(&mut r, m * k, -2.0, 2.0);
    let res = random(&mut r, m * n, -1.0, 1.0);
    let lin = random_linear(15, n, k);
    let layer = GpuLinear::linear(ctx, "w", &lin);
    let (xb, rb) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::from_slice(ctx, "r", &res));
    let codes = GpuBuffer::zeros(ctx, "codes", code_words(m, k));
    let weights = KINDS.map(|kind| IntWeights::with_kind(ctx, kind, n, CodeLayout::dense(k)));
    assert_eq!(weights[0].layout, WeightLayout::Dense);
    assert!(matches!(weights[1].layout, WeightLayout::Blocks { blocks: 2.., .. }), "{:?}", weights[1].layout);
    for bits in [3, 4] {
        let lv = levels(bits);
        let qp = [(-0.21, 0.24, 0.004), (-1.5, 1.7, -0.03), (-0.9, 1.1, 0.01)].map(|(lower, upper, bias)| QParams { lower, upper, bias, _pad: 0.0 });
        let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
        let xq = QuantRef { params: &params, row: 1, levels: lv };
        let mut ds = vec![pack_codes(ctx, xb.bind(), codes.bind(), m, CodeLayout::dense(k), xq)];
        ds.extend(weights.iter().map(|wt| wt.fill(ctx, &layer, xq, 0)));
        run_now(ctx, &ds);
        for shift in [0, window / 2] {
            let order = WindowOrder { h, w, shape: AttnShape { window, heads, head_dim: n / heads, shift } };
            let cases = [(false, false, false, false), (true, true, false, false), (false, true, true, false), (true, false, true, false), (true, false, false, true), (false, false, false, true)];
            for (gelu, residual, windows, emit) in cases {
                if shift > 0 && !windows {
                    continue;
                }
                let [tiled, rows] = [&weights[0], &weights[1]].map(|wt| {
                    let out = GpuBuffer::zeros(ctx, "o", m * n);
                    let emitted = GpuBuffer::zeros(ctx, "e", code_words(m, n));
                    let int = IntOperands { codes: codes.operand(), weights: wt, w_row: 0, emit: emit.then(|| (emitted.bind(), 2)) };
                    let mm = Matmul {
                        quant: Some(xq),
                        gelu,
                        residual: residual.then(|| rb.bind()),
                        windows: windows.then_some(order),
                        int: Some(int),
                        ..Matmul::tokens(xb.operand(), layer.weights(), out.bind(), m, "t")
                    };
                    let ds = ops::matmul(ctx, mm);
                    if wt.layout != WeightLayout::Dense {
                        assert_eq!(ds.len(), 2, "rows_int_windowed: one dispatch per uniform window of codes");
                    }
                    run_now(ctx, &ds);
                    if emit { emitted.read::<u32>(ctx) } else { out.read::<u32>(ctx) }
                });
                let case = format!("W{bits} gelu={gelu} residual={residual} windows={windows} shift={shift} emit={emit}");
                let distinct = rows.iter().collect::<std::collections::HashSet<_>>().len();
                assert!(distinct > rows.len() / 50, "{case}: only {distinct} distinct values");
                let diff = tiled.iter().zip(&rows).position(|(a, b)| a != b);
                let count = tiled.iter().zip(&rows).filter(|(a, b)| a != b).count();
                assert!(diff.is_none(), "{case}: {count} words differ, the first at {diff:?}");
                eprintln!("tiled = rows_int: {case}");
            }
        }
    }
}

/// The integer weights (`int_weights`) against the CPU, in both layouts and for inputs
/// coded densely or head by head (heads of 10: two padding codes per head): each
/// column's codes four to a word as the input's codes are, word g of column col at
/// block(col) + g·block_cols, then the column's constant term s_w·l_x·Σ R_w + k·l_x·l_w
/// + bias (f32 bits).
#[test]
fn integer_weights_match_cpu() {
    use swinq::gpu::ops::{CodeLayout, IntWeights, QuantRef, WeightLayout};
    use swinq::quant::{code, levels, step, QParams};
    let ctx = gpu();
    let (n, k) = (69, 150);
    let lin = random_linear(17, n, k);
    let layer = GpuLinear::linear(ctx, "w", &lin);
    let qp = [QParams { lower: -0.25, upper: 0.22, bias: 0.003, _pad: 0.0 }, QParams { lower: -1.2, upper: 1.4, bias: -0.02, _pad: 0.0 }];
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let inputs = [CodeLayout::dense(k), CodeLayout::heads(k, 10)];
    for ((kind, bits), input) in KINDS.into_iter().flat_map(|kind| [2, 4, 8].map(|bits| (kind, bits))).flat_map(|c| inputs.map(|i| (c, i))) {
        let lv = levels(bits);
        let k4 = input.row_words();
        let weights = IntWeights::with_kind(ctx, kind, n, input);
        run_now(ctx, &[weights.fill(ctx, &layer, QuantRef { params: &params, row: 1, levels: lv }, 0)]);
        let got = weights.buffer.read::<u32>(ctx);
        let (block_cols, slot) = match weights.layout {
            WeightLayout::Dense => (n, 0),
            WeightLayout::Blocks { v, slot, .. } => (4 * v, slot),
        };
        let (lx, lw, sw) = (qp[1].lower + qp[1].bias, qp[0].lower + qp[0].bias, step(&qp[0], lv));
        for col in 0..n {
            let codes: Vec<u32> = lin.weight[col * k..][..k].iter().map(|&w| code(w, &qp[0], lv)).collect();
            let base = (col / block_cols) * slot + col % block_cols;
            for g in 0..k4 {
                let word: u32 = (0..4).filter_map(|j| input.source(4 * g + j).map(|kk| codes[kk] << (8 * j))).sum();
                assert_eq!(got[base + g * block_cols], word, "{kind:?} W{bits} {input:?} column {col} word {g}");
            }
            let sum: u32 = codes.iter().sum();
            let want = sw as f64 * lx as f64 * sum as f64 + k as f64 * lx as f64 * lw as f64 + lin.bias[col] as f64;
            let term = f32::from_bits(got[base + k4 * block_cols]) as f64;
            assert!((term - want).abs() <= 1e-5 * want.abs().max(1.0), "{kind:?} W{bits} column {col}: term {term} against {want}");
        }
    }
}

/// The integer engine's activation codes against the CPU's `code`: a linear's input
/// (four codes to a word, k not a multiple of 4), and the attention's window-ordered
/// q·scale (per token: its words, then their sum) and v (transposed: per d, the words of
/// four tokens, then their sum).
#[test]
fn activation_codes_match_cpu() {
    use swinq::gpu::ops::{pack_codes, pack_window_codes, window_code_words, CodeLayout, QuantRef};
    use swinq::quant::{code, levels, QParams};
    let ctx = gpu();
    let mut r = rng(16);
    let qp = [QParams { lower: -0.8, upper: 0.9, bias: 0.01, _pad: 0.0 }];
    let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
    let pack = |v: &[u32]| -> Vec<u32> { v.chunks(4).map(|c| c.iter().enumerate().map(|(j, &x)| x << (8 * j)).sum()).collect() };
    for bits in [2, 4, 8] {
        let q = QuantRef { params: &params, row: 0, levels: levels(bits) };
        let codes_of = |x: &[f32], mult: f32| -> Vec<u32> { x.iter().map(|&v| code(v * mult, &qp[0], q.levels)).collect() };
        // Dense rows of 61, and rows of 45 in heads of 9 (each head three words, the
        // last with three padding codes).
        for (m, layout) in [(203, CodeLayout::dense(61)), (77, CodeLayout::heads(45, 9))] {
            let x = random(&mut r, m * layout.k, -1.0, 1.0);
            let (xb, out) = (GpuBuffer::from_slice(ctx, "x", &x), GpuBuffer::zeros(ctx, "codes", layout.words(m)));
            run_now(ctx, &[pack_codes(ctx, xb.bind(), out.bind(), m, layout, q)]);
            let padded = |row: &[u32]| -> Vec<u32> { (0..4 * layout.row_words()).map(|e| layout.source(e).map_or(0, |kk| row[kk])).collect() };
            let want: Vec<u32> = codes_of(&x, 1.0).chunks(layout.k).flat_map(|row| pack(&padded(row))).collect();
            assert_eq!(out.read::<u32>(ctx), want, "pack_codes W{bits} {layout:?}");
        }

        let shape = AttnShape { window: 4, heads: 3, head_dim: 5, shift: 0 };
        let (nt, hd, t) = (16, 5, 2 * 12 * 20);
        let x = random(&mut r, t * shape.heads * hd, -1.0, 1.0);
        let xb = GpuBuffer::from_slice_windowed(ctx, "x", &x);
        let words = window_code_words(t, shape);
        for transposed in [false, true] {
            let out = GpuBuffer::zeros_windowed(ctx, "codes", words[transposed as usize]);
            run_now(ctx, &[pack_window_codes(ctx, [&xb, &out], t, shape, transposed, (q, 0.45))]);
            let codes = codes_of(&x, 0.45);
            // Rows of codes: a token's hd values, or (transposed) one d over a slice's nt tokens.
            let rows: Vec<Vec<u32>> = if transposed {
                codes.chunks(nt * hd).flat_map(|s| (0..hd).map(move |d| (0..nt).map(|i| s[i * hd + d]).collect())).collect()
            } else {
                codes.chunks(hd).map(<[u32]>::to_vec).collect()
            };
            let want: Vec<u32> = rows.iter().flat_map(|row| pack(row).into_iter().chain([row.iter().sum()])).collect();
            assert_eq!(want.len(), words[transposed as usize]);
            assert_eq!(out.read::<u32>(ctx)[..want.len()], want[..], "pack_window_codes W{bits} transposed={transposed}");
        }
    }
}

#[test]
fn integer_attention_matches_fake_quantized_attention() {
    // Window 6: 36 queries and keys, not a whole number of subgroups of 8.
    for (h, w, window) in [(12, 20, 4), (12, 18, 6)] {
        integer_attention_case(h, w, window);
    }
}

fn integer_attention_case(h: usize, w: usize, window: usize) {
    use swinq::gpu::ops::{pack_codes, pack_window_codes, window_attention_int, window_code_words, CodeLayout, IntAttnOut, QuantRef};
    use swinq::quant::{levels, QParams};
    let ctx = gpu();
    let (b, heads, hd) = (2, 3, 5);
    let (c, t) = (heads * hd, b * h * w);
    let mut r = rng(13);
    let table = random(&mut r, (2 * window - 1).pow(2) * heads, -0.5, 0.5);
    let tb = ops::attention_table(ctx, &table);
    let out = GpuBuffer::zeros(ctx, "o", t * c);
    for (shift, bits) in [(0, 8), (window / 2, 4), (window / 2, 8)] {
        let shape = AttnShape { window, heads, head_dim: hd, shift };
        // Fused (tokens, 3C) q | k | v for the CPU, each part in window order for the GPU.
        let qkv = random(&mut r, t * 3 * c, -1.5, 1.5);
        let part = |p: usize| -> Vec<f32> { (0..t).flat_map(|i| qkv[i * 3 * c + p * c..][..c].to_vec()).collect() };
        let bufs: Vec<GpuBuffer> = (0..3).map(|p| GpuBuffer::from_slice_windowed(ctx, "qkv", &cpu::window_order(&part(p), (b, h, w), c, heads, window, shift))).collect();
        // q·scale, k, v and P: bounds a little inside the data's range (some clipping);
        // then proj's input.
        let qp = [(-0.6, 0.7, 0.01), (-1.4, 1.3, -0.02), (-1.3, 1.4, 0.0), (0.0, 0.8, 0.001), (-0.9, 1.0, 0.02)]
            .map(|(lower, upper, bias)| QParams { lower, upper, bias, _pad: 0.0 });
        let params = GpuBuffer::from_slice(ctx, "qparams", &qp);
        let quant = QuantRef { params: &params, row: 0, levels: levels(bits) };
        let extras = AttnExtras { quant: Some(quant), ..Default::default() };
        let d = ops::window_attention(ctx, [&bufs[0], &bufs[1], &bufs[2]], &tb, out.bind(), (b, h, w), shape, extras, "t");
        run_now(ctx, &d);
        let fake: Vec<f32> = out.read(ctx);
        let words = window_code_words(t, shape);
        let codes: Vec<GpuBuffer> = [0, 0, 1].map(|i| GpuBuffer::zeros_windowed(ctx, "codes", words[i])).into();
        let scale = (hd as f32).powf(-0.5);
        let mut ds: Vec<_> = (0..3)
            .map(|i| {
                let q = QuantRef { row: i, ..quant };
                pack_window_codes(ctx, [&bufs[i], &codes[i]], t, shape, i == 2, (q, if i == 0 { scale } else { 1.0 }))
            })
            .collect();
        let attention = |out| window_attention_int(ctx, [&codes[0], &codes[1], &codes[2]], &tb, out, (b, h, w), shape, quant, "t");
        ds.extend(attention(IntAttnOut::Floats(out.bind())));
        // Writing proj's input codes directly equals packing the float output head by head.
        let layout = CodeLayout::heads(c, hd);
        let (packed, emitted) = (GpuBuffer::zeros(ctx, "packed", layout.words(t)), GpuBuffer::zeros(ctx, "emitted", layout.words(t)));
        ds.push(pack_codes(ctx, out.bind(), packed.bind(), t, layout, QuantRef { row: 4, ..quant }));
        ds.extend(attention(IntAttnOut::Codes(emitted.bind(), 4)));
        run_now(ctx, &ds);
        let (emitted, packed) = (emitted.read::<u32>(ctx), packed.read::<u32>(ctx));
        let differ = emitted.iter().zip(&packed).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "attention's emitted codes: {differ} of {} words differ, window {window} W{bits} shift {shift}", packed.len());
        let got: Vec<f32> = out.read(ctx);
        let p_step = (qp[3].upper - qp[3].lower) / levels(bits);
        let case = format!("window {window} W{bits} shift {shift}");
        // The CPU integer reference: the same codes, exact integer sums, f64 expansion.
        let want = cpu::window_attention_int(&qkv, (b, h, w), c, heads, window, shift, &table, (qp[..4].try_into().unwrap(), levels(bits)));
        assert_close_but_p_codes(&format!("integer attention vs the CPU integer reference, {case}"), (&got, &want), hd, p_step);
        assert_close_but_p_codes(&format!("integer vs fake-quantized attention, {case}"), (&got, &fake), hd, p_step);
    }
}

/// Attention outputs `got` and `want` (rows of `hd` per query and head) agree to 1e-5,
/// except at most 1 % of the queries, which may be a P code apart: the integer sums
/// are exact while the softmax rounds (2e-7 in f32), so a softmax output next to a
/// code boundary can take the neighbouring code (window 6 at W8: two of the 1296
/// queries), and that query's outputs then move by about one P step times a v value.
fn assert_close_but_p_codes(what: &str, (got, want): (&[f32], &[f32]), hd: usize, p_step: f32) {
    let queries = got.len() / hd;
    let flipped: Vec<usize> = (0..queries).filter(|&row| (0..hd).any(|d| (got[row * hd + d] - want[row * hd + d]).abs() > 1e-4)).collect();
    let keep = |i: &usize| !flipped.contains(&(i / hd));
    let (got_kept, want_kept): (Vec<f32>, Vec<f32>) = (0..got.len()).filter(keep).map(|i| (got[i], want[i])).unzip();
    let err = common::rel_err(&got_kept, &want_kept);
    let worst_flip = (0..got.len()).filter(|i| !keep(i)).map(|i| (got[i] - want[i]).abs()).fold(0.0, f32::max);
    eprintln!("{what}: relative error {err:.3e}, {} of {queries} queries a code apart (by up to {worst_flip:.2e}, P step {p_step:.2e})", flipped.len());
    assert!(err < 1e-5, "{what}: relative error {err:.3e}");
    assert!(flipped.len() * 100 <= queries, "{what}: {} of {queries} queries differ", flipped.len());
    assert!(worst_flip <= 2.0 * p_step * 1.5, "{what}: a query moved by {worst_flip:.2e}, over two P steps");
}
