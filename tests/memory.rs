//! GPU memory: the account of swinq's buffers, the `--gpu-memory` cap, phase 2 naming
//! the largest batch that fits, the integer engine's smaller activations, and images
//! too large for the memory run in tiles. One test, since the cap is the device's.

mod common;
use common::gpu;
use swinq::data::RgbImage;
use swinq::gpu::GpuBuffer;
use swinq::model::graph::{Capture, Engine, GpuModel, Mode, Plan, QuantModel};
use swinq::model::{SwinConfig, SwinWeights};
use swinq::quant::dqc::{check_batch, DqcOptions};
use swinq::quant::{QParams, PER_BLOCK};
use swinq::upscale::{Tiling, Upscaler, TILE_OVERLAP};

#[test]
fn allocations_past_the_cap_fail_phase2_names_the_largest_batch_the_integer_engine_holds_less_and_images_run_in_tiles() {
    let ctx = gpu();
    let base = ctx.held_bytes();
    let buf = GpuBuffer::zeros(ctx, "a", 1000);
    assert_eq!(ctx.held_bytes() - base, 4096, "1000 words round up to 4 KiB");
    drop(buf);
    assert_eq!(ctx.held_bytes(), base, "a dropped buffer is given back");

    // Work past the cap fails, naming what it was for, and holds nothing afterwards.
    ctx.set_memory_limit(Some(base + (1 << 20)));
    let made = ctx.allocating("the test's buffer", || Ok(GpuBuffer::zeros(ctx, "b", 1 << 19)));
    let err = made.err().expect("past the cap").to_string();
    assert!(err.contains("for the test's buffer: it takes swinq to") && err.contains("above --gpu-memory 1"), "{err}");
    assert_eq!(ctx.held_bytes(), base);
    assert!(ctx.allocating("a smaller one", || Ok(GpuBuffer::zeros(ctx, "c", 1 << 17))).is_ok());
    ctx.set_memory_limit(None);

    // Phase 2: without a cap every batch fits and takes more memory than a smaller one.
    let cfg = SwinConfig { embed_dim: 16, depths: vec![2, 2], heads: vec![2, 2], window: 4, mlp_hidden: 32, ..SwinConfig::light(2) };
    let model = GpuModel::upload(ctx, &SwinWeights::random(&cfg, 3));
    let opts = |batch| DqcOptions { iters: 1, batch, patch: 16, ..DqcOptions::default() };
    let bytes: Vec<u64> = (1..=5).map(|b| check_batch(ctx, &model, 4, &opts(b)).expect("fits without a cap")).collect();
    assert!(bytes.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
    // The stand-in quantization check_batch makes beside the model.
    let before = ctx.held_bytes();
    let quant = QuantModel::new(ctx, &model, 4, &vec![QParams { upper: 1.0, ..Default::default() }; PER_BLOCK * cfg.num_blocks()], &[Engine::Fake]);
    let quant_bytes = ctx.held_bytes() - before;
    drop(quant);
    // A cap between batches 3 and 4: batch 5 is refused, naming 3, which passes.
    ctx.set_memory_limit(Some(before + quant_bytes + (bytes[2] + bytes[3]) / 2));
    let err = format!("{:#}", check_batch(ctx, &model, 4, &opts(5)).unwrap_err());
    assert!(err.contains("for a DQC batch of 5 patches of 16×16 (the largest batch that fits is 3)"), "{err}");
    assert!(check_batch(ctx, &model, 4, &opts(3)).is_ok());
    ctx.set_memory_limit(Some(before + quant_bytes / 2));
    let err = format!("{:#}", check_batch(ctx, &model, 4, &opts(2)).unwrap_err());
    assert!(err.contains("(none fits beside the model)"), "{err}");
    ctx.set_memory_limit(None);
    assert_eq!(ctx.held_bytes(), before, "the probes hold nothing afterwards");

    // The integer engine's plan keeps no float LayerNorm or attention output and
    // fc2's input only as codes, so it holds less than the float one; the float
    // one holds no codes.
    let plan_bytes = |mode| {
        let before = ctx.held_bytes();
        let plan = Plan::with_mode(ctx, &model, (1, 64, 64), Capture::Nothing, mode).expect("plan");
        let bytes = ctx.held_bytes() - before;
        drop(plan);
        bytes
    };
    let same = vec![QParams { upper: 1.0, ..Default::default() }; PER_BLOCK * cfg.num_blocks()];
    let quant = QuantModel::new(ctx, &model, 4, &same, &Engine::ALL);
    let (float, fake, int) = (plan_bytes(Mode::Float), plan_bytes(Mode::Fake(&quant)), plan_bytes(Mode::Int(&quant)));
    eprintln!("plans for 64×64: float {float} B, fake {fake} B, integer {int} B");
    assert_eq!(float, fake);
    assert!(int < float, "integer {int} B, float {float} B");

    // Phase 2's student takes turns with the teacher's scratch: it holds only its own
    // input, output and captures, and neither forward disturbs the other's results.
    let dims = (2, 24, 16);
    let x = common::random(&mut common::rng(9), 2 * 3 * 24 * 16, 0.0, 1.0);
    let alone = |mode| Plan::with_mode(ctx, &model, dims, Capture::Nothing, mode).expect("plan").forward(ctx, &x, None);
    let (teacher_alone, student_alone) = (alone(Mode::Float), alone(Mode::Fake(&quant)));
    let before = ctx.held_bytes();
    let teacher = Plan::with_mode(ctx, &model, dims, Capture::Distill { block_inputs: false }, Mode::Float).expect("teacher");
    let teacher_bytes = ctx.held_bytes() - before;
    let student = teacher.taking_turns(ctx, &model, Capture::Distill { block_inputs: true }, Mode::Fake(&quant)).expect("student");
    let student_bytes = ctx.held_bytes() - before - teacher_bytes;
    eprintln!("teacher {teacher_bytes} B, student taking turns {student_bytes} B");
    let teacher_out = teacher.forward(ctx, &x, None);
    let student_out = student.forward(ctx, &x, None);
    assert_eq!(teacher.output().read::<f32>(ctx), teacher_out, "the student's forward left the teacher's output alone");
    assert_eq!((teacher_out, student_out), (teacher_alone, student_alone));
    assert!(student_bytes < teacher_bytes, "student {student_bytes} B, teacher {teacher_bytes} B");
    drop((teacher, student, quant));

    // An image whose plan does not fit runs in the largest tiles that do (automatic
    // tiling); without the cap it runs whole.
    let weights = SwinWeights::random(&cfg, 3);
    let img = RgbImage { width: 96, height: 80, data: common::random(&mut common::rng(5), 3 * 96 * 80, 0.0, 1.0) };
    let mut up = Upscaler::new(ctx, &weights, Tiling::Auto).unwrap();
    let with_model = ctx.held_bytes();
    let (out, tile) = up.upscale(&img).unwrap();
    assert_eq!((tile, out.width, out.height), (None, 192, 160));
    let whole = ctx.held_bytes() - with_model;
    drop(up);
    let mut up = Upscaler::new(ctx, &weights, Tiling::Auto).unwrap();
    ctx.set_memory_limit(Some(ctx.held_bytes() + whole / 2));
    let (tiled, tile) = up.upscale(&img).unwrap();
    ctx.set_memory_limit(None);
    let t = tile.expect("tiles under the cap");
    eprintln!("under a cap of half the whole image's activations: tiles of {t}×{t}");
    assert!(t > TILE_OVERLAP && t < 80 && t % cfg.window == 0, "tile {t}");
    assert_eq!((tiled.width, tiled.height), (192, 160));
    // Tiles differ from the whole image only near their seams.
    assert!(common::rel_err(&tiled.data, &out.data) < 0.1, "{}", common::rel_err(&tiled.data, &out.data));
}
