//! Phase 2 (DQC): the optimizer, the schedule and the training patches.

mod common;

use common::{assert_close, gpu, random, rng};
use swinq::gpu::{run_now, GpuBuffer};
use swinq::quant::calib::{dihedral, PatchSide};
use swinq::quant::dqc::{adam_reference, cosine_lr, Adam};
use swinq::quant::QParams;

#[test]
fn adam_steps_match_the_cpu() {
    let ctx = gpu();
    let mut r = rng(1);
    let rows = 301;
    let init: Vec<QParams> = (0..rows).map(|i| QParams { lower: -1.0 - i as f32 * 1e-3, upper: 1.0, bias: 0.01, _pad: 0.0 }).collect();
    for train_bias in [false, true] {
        let params = GpuBuffer::from_slice(ctx, "params", &init);
        let grads = GpuBuffer::zeros(ctx, "grads", 4 * rows);
        let adam = Adam::new(ctx, rows, train_bias);
        let mut want = init.clone();
        let mut moments = vec![[[0.0f64; 3]; 2]; rows];
        for step in 1..=4 {
            let g = random(&mut r, 4 * rows, -1.0, 1.0);
            grads.write(ctx, &g);
            let lr = cosine_lr(1e-2, step - 1, 4);
            run_now(ctx, &[adam.step(ctx, &params, &grads, step, lr)]);
            let g3: Vec<[f32; 3]> = g.chunks(4).map(|c| [c[0], c[1], c[2]]).collect();
            adam_reference(&mut want, &g3, &mut moments, step, lr, train_bias);
        }
        let got: Vec<f32> = params.read::<QParams>(ctx).iter().flat_map(|p| [p.lower, p.upper, p.bias]).collect();
        let want_flat: Vec<f32> = want.iter().flat_map(|p| [p.lower, p.upper, p.bias]).collect();
        assert_close(&format!("Adam, train_bias {train_bias}"), &got, &want_flat, 1e-6);
        assert_eq!(want[0].bias != init[0].bias, train_bias, "c trains only when asked");
    }
}

#[test]
fn cosine_schedule_and_patch_symmetries() {
    assert_eq!(cosine_lr(0.01, 0, 100), 0.01);
    assert!((cosine_lr(0.01, 50, 100) - 0.005).abs() < 1e-9);
    assert!(cosine_lr(0.01, 100, 100).abs() < 1e-9);

    let size = 5;
    let patch: Vec<f32> = (0..3 * size * size).map(|i| i as f32).collect();
    let all: Vec<Vec<f32>> = (0..8).map(|w| dihedral(&patch, size, w)).collect();
    for (i, a) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|b| a != b), "the eight symmetries differ");
        let mut sorted = a.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, patch, "a symmetry permutes the pixels");
    }
    // Transposing twice, or flipping twice, is the identity.
    assert_eq!(dihedral(&dihedral(&patch, size, 4), size, 4), patch);
    assert_eq!(dihedral(&dihedral(&patch, size, 3), size, 3), patch);
}

/// A small SwinIR (2 groups of 2 blocks, 16 channels, window 4) and a batch shape.
fn tiny() -> (swinq::model::graph::GpuModel, (usize, usize, usize)) {
    use swinq::model::{SwinConfig, SwinWeights};
    let cfg = SwinConfig { embed_dim: 16, depths: vec![2, 2], heads: vec![2, 2], window: 4, mlp_hidden: 32, ..SwinConfig::light(2) };
    (swinq::model::graph::GpuModel::upload(gpu(), &SwinWeights::random(&cfg, 3)), (2, 12, 16))
}

#[test]
fn window_order_back_to_token_order() {
    use swinq::gpu::attention_backward::to_token_order;
    use swinq::gpu::ops::{self, attention_table, AttnShape, GpuLinear, Matmul, WindowOrder};
    let ctx = gpu();
    let mut r = rng(2);
    let (b, h, w, c) = (2, 8, 12, 6);
    let t = b * h * w;
    for shift in [0, 2] {
        let shape = AttnShape { window: 4, heads: 2, head_dim: 3, shift };
        let x = GpuBuffer::from_slice_windowed(ctx, "x", &random(&mut r, t * c, -1.0, 1.0));
        let layer = GpuLinear::new(ctx, "w", &random(&mut r, c * c, -1.0, 1.0), &random(&mut r, c, -0.1, 0.1), c);
        let [plain, windowed, back] = ["plain", "windowed", "back"].map(|l| GpuBuffer::zeros_windowed(ctx, l, t * c));
        let table = attention_table(ctx, &[0.0; 49 * 2]);
        let mut ds = ops::matmul(ctx, Matmul::tokens(x.operand(), layer.weights(), plain.bind(), t, "t"));
        ds.extend(ops::matmul(ctx, Matmul { windows: Some(WindowOrder { h, w, shape }), ..Matmul::tokens(x.operand(), layer.weights(), windowed.bind(), t, "t") }));
        ds.extend(to_token_order(ctx, &windowed, &back, (b, h, w), shape, &table));
        run_now(ctx, &ds);
        assert_eq!(back.read::<f32>(ctx)[..t * c], plain.read::<f32>(ctx)[..t * c], "shift {shift}");
        // The CPU's window order, taken back: the same tokens, bit for bit.
        let tokens = random(&mut r, t * c, -1.0, 1.0);
        let windowed = GpuBuffer::from_slice_windowed(ctx, "w", &swinq::model::cpu::window_order(&tokens, (b, h, w), c, shape.heads, shape.window, shift));
        run_now(ctx, &to_token_order(ctx, &windowed, &back, (b, h, w), shape, &table));
        assert_eq!(back.read::<f32>(ctx)[..t * c], tokens[..], "CPU window order back, shift {shift}");
    }
}

/// The whole student's quantizer gradient against finite differences of its loss.
/// With 20-bit quantizers rounding is negligible and the STE's gradient is the true
/// one of clip(x, l, u) + c; bounds are shrunk inside the data range so clipping is
/// active, and teacher and student see different inputs so no L1 term sits at its kink.
#[test]
fn student_gradient_matches_finite_differences() {
    use swinq::model::graph::{Capture, Engine, Mode, Plan, QuantModel};
    use swinq::quant::calib::Patches;
    use swinq::quant::phase1::calibrate;
    use swinq::quant::search::Method;
    use swinq::quant::student::StudentGrad;
    use swinq::quant::{index, Slot};
    let ctx = gpu();
    let (model, (b, h, w)) = tiny();
    let mut r = rng(5);
    let xs = random(&mut r, b * 3 * h * w, 0.0, 1.0);
    let xt = random(&mut r, b * 3 * h * w, 0.0, 1.0);
    let bits = 20;
    let calib = Patches { n: b, size: 12, data: random(&mut r, b * 3 * 12 * 12, 0.0, 1.0) };
    let base: Vec<QParams> = calibrate(ctx, &model, &calib, Method::MINMAX, bits)
        .expect("calibration")
        .params
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let (mid, half) = ((q.upper + q.lower) / 2.0, (q.upper - q.lower) / 2.0 * 0.8);
            QParams { lower: mid - half, upper: mid + half, bias: 0.01 * ((i % 7) as f32 - 3.0), _pad: 0.0 }
        })
        .collect();
    let quant = QuantModel::new(ctx, &model, bits, &base, &[Engine::Fake]);
    let teacher = Plan::with_mode(ctx, &model, (b, h, w), Capture::Distill { block_inputs: false }, Mode::Float).expect("teacher");
    let student = Plan::with_mode(ctx, &model, (b, h, w), Capture::Distill { block_inputs: true }, Mode::Fake(&quant)).expect("student");
    let grad = StudentGrad::new(ctx, &model, &quant, &teacher, &student, 5.0).expect("gradient");
    teacher.set_input(ctx, &xt);
    teacher.execute(ctx, None);
    student.set_input(ctx, &xs);
    let loss_at = |params: &[QParams]| {
        quant.params.write(ctx, params);
        quant.requantize_fake_weights(ctx, &model);
        student.execute(ctx, None);
        grad.run(ctx, None);
        grad.loss(ctx).2
    };
    let loss = loss_at(&base);
    let grads = grad.grads.read::<f32>(ctx);
    eprintln!("loss {loss:.6}");
    let picks = [(0, Slot::Input(0)), (0, Slot::Matmul(3)), (1, Slot::Weight(5)), (2, Slot::Matmul(0)), (3, Slot::Input(5)), (3, Slot::Weight(1))];
    for (block, slot) in picks {
        let row = index(block, slot);
        for comp in 0..3 {
            // c moves the loss smoothly: a wide step beats the f32 noise. The bounds
            // meet kinks (elements crossing them): a narrow step, and a floor at the
            // finite difference's noise (about 1e-7 of the loss over the step).
            let (h, tol, floor) = if comp == 2 { (1e-2, 0.05, 2e-5) } else { (1e-3, 0.10, 1e-4) };
            let h = h * (base[row].upper - base[row].lower).max(1e-3);
            let shifted = |d: f32| {
                let mut p = base.clone();
                match comp {
                    0 => p[row].lower += d,
                    1 => p[row].upper += d,
                    _ => p[row].bias += d,
                }
                loss_at(&p)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
            let got = grads[4 * row + comp] as f64;
            eprintln!("block {block} {slot:?} {}: STE {got:.5e}, finite difference {fd:.5e}", ["l", "u", "c"][comp]);
            assert!((got - fd).abs() <= tol * fd.abs().max(got.abs()) + floor, "block {block} {slot:?} component {comp}: {got} vs {fd}");
        }
    }
}

/// DQC on the tiny model at W4 from DOBI bounds: the distillation loss falls.
#[test]
fn dqc_lowers_the_distillation_loss() {
    use swinq::model::graph::{Engine, QuantModel};
    use swinq::quant::calib::{Patches, PatchSampler};
    use swinq::quant::dqc::{train, DqcOptions};
    use swinq::quant::phase1::calibrate;
    use swinq::quant::search::Method;
    let ctx = gpu();
    let (model, _) = tiny();
    let mut r = rng(6);
    let calib = Patches { n: 2, size: 16, data: random(&mut r, 2 * 3 * 16 * 16, 0.0, 1.0) };
    let params = calibrate(ctx, &model, &calib, Method::DOBI, 4).expect("phase 1").params;
    let quant = QuantModel::new(ctx, &model, 4, &params, &[Engine::Fake]);
    let dir = common::shared().join("datasets/calib/LR_bicubic/X2");
    let opts = DqcOptions { iters: 30, batch: 2, patch: 16, lr: 5e-3, train_bias: true, ..DqcOptions::default() };
    // The same batch every iteration isolates the optimisation from sampling noise.
    let mut sampler = PatchSampler::new(&[dir.as_path()], None, PatchSide::Exact(opts.patch), 1, 4).expect("sampler").fixed();
    let losses = train(ctx, &model, &quant, &mut sampler, &opts, (None, None), |_, _| {}).expect("DQC").losses;
    let (first, last) = (losses[0].total, losses[losses.len() - 1].total);
    eprintln!("DQC loss {first:.5} → {last:.5} over {} iterations", losses.len());
    assert!(last < 0.9 * first, "DQC did not lower the loss: {first} → {last}");
    assert_ne!(quant.read_params(ctx), params, "the parameters moved");
}

/// Phase 2 saves its state and continues from it.
#[test]
fn dqc_state_saves_and_resumes() {
    use swinq::model::graph::{Engine, QuantModel};
    use swinq::quant::calib::PatchSampler;
    use swinq::quant::dqc::{train, Checkpointing, DqcOptions, DqcState};
    use swinq::quant::file::QuantFile;
    use swinq::quant::phase1::calibrate;
    use swinq::quant::search::Method;
    let ctx = gpu();
    let (model, _) = tiny();
    let mut r = rng(7);
    let calib = swinq::quant::calib::Patches { n: 1, size: 16, data: random(&mut r, 3 * 16 * 16, 0.0, 1.0) };
    let params = calibrate(ctx, &model, &calib, Method::MINMAX, 4).expect("phase 1").params;
    let quant = QuantModel::new(ctx, &model, 4, &params, &[Engine::Fake]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.dqc-state.safetensors");
    let opts = DqcOptions { iters: 3, batch: 1, patch: 16, lr: 1e-3, profile: true, ..DqcOptions::default() };
    let data = common::shared().join("datasets/calib/LR_bicubic/X2");
    let mut sampler = PatchSampler::new(&[data.as_path()], None, PatchSide::Exact(16), 0, 4).expect("sampler");
    let file = QuantFile { bits: 4, method: "minmax".into(), scale: 2, source_sha256: "x".into(), weights_sha256: None, settings: Default::default(), params: Vec::new() };
    let checkpoint = Checkpointing { path: &path, every: 1, cfg: &model.config, file };
    let trained = train(ctx, &model, &quant, &mut sampler, &opts, (None, Some(checkpoint)), |_, _| {}).expect("DQC");
    if ctx.has(wgpu::Features::TIMESTAMP_QUERY) {
        let parts: Vec<_> = trained.profile.expect("a profiled iteration").into_iter().map(|(name, stages)| (name, stages.len())).collect();
        assert!(parts.iter().map(|p| p.0).eq(["teacher", "student", "gradient"]) && parts.iter().all(|p| p.1 > 0), "{parts:?}");
    }
    let state = DqcState::load(&model.config, &path).expect("state");
    assert_eq!(state.next_iter, 2, "the last state saved is before the last iteration");
    assert!(state.moments[1].iter().any(|&v| v > 0.0), "Adam's second moments are saved");
    assert_eq!(state.losses.len(), 2);
    assert!(state.losses.iter().zip(&trained.losses).all(|(a, b)| (a.total - b.total).abs() <= 1e-6 * b.total), "the losses so far are saved");
    // Resumed with a fresh sampler that skips the batches done, the run ends where the
    // uninterrupted one did.
    let resumed = QuantModel::new(ctx, &model, 4, &state.file.params, &[Engine::Fake]);
    let mut fresh = PatchSampler::new(&[data.as_path()], None, PatchSide::Exact(16), 0, 4).expect("sampler");
    fresh.skip_batches(state.next_iter, opts.batch);
    let again = train(ctx, &model, &resumed, &mut fresh, &opts, (Some(&state), None), |_, _| {}).expect("resumed DQC");
    assert_eq!(again.losses.len(), 3, "the history includes the iterations before the resume");
    assert_eq!(again.losses[2].total, trained.losses[2].total, "the last iteration saw the same batch");
    assert_eq!(resumed.read_params(ctx), quant.read_params(ctx), "the same parameters as the uninterrupted run");
    assert!(again.seconds >= state.seconds);
}

/// Training patches from HR images: LR made with the MATLAB-exact bicubic, which
/// reproduces the shipped LR files.
#[test]
fn patches_from_hr_images_match_the_shipped_lr() {
    use swinq::quant::calib::PatchSampler;
    let lr_dir = common::shared().join("datasets/Set5/LR_bicubic/X2");
    let hr_dir = common::shared().join("datasets/Set5/HR");
    let size = 64;
    let mut from_lr = PatchSampler::new(&[lr_dir.as_path()], None, PatchSide::Exact(size), 9, 8).expect("LR");
    let mut from_hr = PatchSampler::new(&[hr_dir.as_path()], Some(2), PatchSide::Exact(size), 9, 8).expect("HR");
    for _ in 0..3 {
        assert_eq!(from_lr.batch(2).data, from_hr.batch(2).data, "same seed, same crops, same pixels");
    }
}

/// Phase 1's patches from HR images (`calibrate --calib-hr`) are those of the shipped
/// LR files, in both patch modes.
#[test]
fn calibration_patches_from_hr_images_match_the_shipped_lr() {
    use swinq::quant::calib::{load_patches, PatchMode};
    let calib = common::shared().join("datasets/calib");
    for mode in [PatchMode::Center, PatchMode::Random] {
        let from_lr = load_patches(&calib.join("LR_bicubic/X3"), None, 5, PatchSide::Exact(64), mode, 4, 8).expect("LR");
        let from_hr = load_patches(&calib.join("HR"), Some(3), 5, PatchSide::Exact(64), mode, 4, 8).expect("HR");
        assert_eq!(from_lr.data, from_hr.data, "{mode:?}");
    }
}

/// Skipping k batches leaves the sampler where drawing them would.
#[test]
fn skipped_batches_are_those_drawn() {
    use swinq::quant::calib::PatchSampler;
    let data = common::shared().join("datasets/calib/LR_bicubic/X2");
    let mut drawn = PatchSampler::new(&[data.as_path()], None, PatchSide::Exact(16), 3, 8).expect("sampler");
    let mut skipped = PatchSampler::new(&[data.as_path()], None, PatchSide::Exact(16), 3, 8).expect("sampler");
    for _ in 0..3 {
        drawn.batch(2);
    }
    skipped.skip_batches(3, 2);
    assert_eq!(drawn.batch(2).data, skipped.batch(2).data);
}

/// At ×4 the calibration crops are 48×48 LR: patches of up to 64 shrink to 48 (from LR
/// or HR files alike), and an exact 64 is refused naming an image.
#[test]
fn patches_shrink_to_small_calibration_images() {
    use swinq::quant::calib::{load_patches, PatchMode, PatchSampler};
    let calib = common::shared().join("datasets/calib");
    let lr = calib.join("LR_bicubic/X4");
    let hr = calib.join("HR");
    for (dir, hr_scale) in [(&lr, None), (&hr, Some(4))] {
        let patches = load_patches(dir, hr_scale, 2, PatchSide::AtMost(64), PatchMode::Center, 0, 8).expect("phase 1 patches");
        assert_eq!((patches.size, patches.data.len()), (48, 2 * 3 * 48 * 48));
        let sampler = PatchSampler::new(&[dir.as_path()], hr_scale, PatchSide::AtMost(64), 0, 8).expect("sampler");
        assert_eq!(sampler.size(), 48);
    }
    let x2 = PatchSampler::new(&[calib.join("LR_bicubic/X2").as_path()], None, PatchSide::AtMost(64), 0, 8).expect("x2");
    assert_eq!(x2.size(), 64, "96×96 images allow the full 64");
    let err = load_patches(&lr, None, 1, PatchSide::Exact(64), PatchMode::Center, 0, 8).err().expect("64 does not fit");
    assert!(format!("{err:#}").contains("48×48 (LR) is smaller than a 64×64 calibration patch"), "{err:#}");
    let err = PatchSampler::new(&[lr.as_path()], None, PatchSide::Exact(64), 0, 8).err().expect("64 does not fit");
    assert!(format!("{err:#}").contains("is smaller than a 64×64 training patch"), "{err:#}");
}

/// The learning-rate schedules: cosine decays from the rate to 0, constant keeps it.
#[test]
fn learning_rate_schedules() {
    use swinq::quant::dqc::Schedule;
    assert_eq!(Schedule::default(), Schedule::Cosine);
    let cosine: Vec<f32> = (0..=4).map(|i| Schedule::Cosine.lr(1e-2, i, 4)).collect();
    assert_eq!(cosine[0], 1e-2);
    assert!((cosine[2] - 5e-3).abs() < 1e-9 && cosine[4].abs() < 1e-9, "{cosine:?}");
    assert!(cosine.windows(2).all(|w| w[1] < w[0]), "{cosine:?}");
    assert!((0..4).all(|i| Schedule::Constant.lr(1e-2, i, 4) == 1e-2));
}
