//! Phase 2 (DQC): the optimizer, the schedule and the training patches.

mod common;

use common::{assert_close, gpu, random, rng};
use swinq::gpu::{run_now, GpuBuffer};
use swinq::quant::calib::dihedral;
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
