//! Every WGSL module the tool compiles translates to Metal (MSL) and DX12 (HLSL)
//! shaders, not only to the SPIR-V of the Vulkan driver the tests run on.
//!
//! The modules are the exact ones a run builds (header constants included): a tiny
//! model goes through phase 1 with each search family, the float, fake-quantized and
//! integer forwards, a DQC iteration and both sorters, and then every module the
//! context compiled is validated with each backend's capabilities and written out by
//! naga, the translator wgpu uses on those platforms. Under `SWINQ_MATMUL=tiled` (the
//! second CI run) these are the GPU kernels that Macs and Windows GPUs run; in the
//! default run, the CPU-driver kernels (such as DX12's WARP adapter would run).
//! Not covered: the platform compilers after naga (Metal's and DXC), which need those
//! systems.

mod common;

use common::{gpu, random, rng, shared};
use naga::back::{hlsl, msl};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use swinq::gpu::{GpuBuffer, GpuContext};
use swinq::model::graph::{Capture, Engine, GpuModel, Mode, Plan, QuantModel};
use swinq::model::{SwinConfig, SwinWeights};
use swinq::quant::calib::{PatchSampler, PatchSide, Patches};
use swinq::quant::dqc::{train, DqcOptions};
use swinq::quant::phase1::calibrate;
use swinq::quant::search::Method;
use swinq::sort::{RadixSorter, RUN_KEYS};

/// Runs everything that compiles kernels, on a model small enough for lavapipe.
fn compile_every_kernel(ctx: &GpuContext) {
    let cfg = SwinConfig { embed_dim: 16, depths: vec![2, 2], heads: vec![2, 2], window: 4, mlp_hidden: 32, ..SwinConfig::light(2) };
    let model = GpuModel::upload(ctx, &SwinWeights::random(&cfg, 5));
    let mut r = rng(41);
    let patches = Patches { n: 2, size: 16, data: random(&mut r, 2 * 3 * 16 * 16, 0.0, 1.0) };
    let mut params = Vec::new();
    for method in ["minmax", "dobi+center-median", "dobi-paper", "sorted-uniform", "sorted-tail+onedir+bias"] {
        let method = Method::parse(method).expect("method");
        params = calibrate(ctx, &model, &patches, method, 4).expect("phase 1").params;
    }
    let quant = QuantModel::new(ctx, &model, 4, &params, &Engine::ALL);
    let (h, w) = (12, 20);
    let x = random(&mut r, 3 * h * w, 0.0, 1.0);
    for mode in [Mode::Float, Mode::Fake(&quant), Mode::Int(&quant)] {
        Plan::with_mode(ctx, &model, (1, h, w), Capture::Nothing, mode).expect("plan").forward(ctx, &x, None);
    }
    let dir = shared().join("datasets/calib/LR_bicubic/X2");
    let opts = DqcOptions { iters: 1, batch: 1, patch: 16, train_bias: true, ..DqcOptions::default() };
    let mut sampler = PatchSampler::new(&[dir.as_path()], None, PatchSide::Exact(opts.patch), 1, 4).expect("sampler");
    train(ctx, &model, &quant, &mut sampler, &opts, (None, None), |_, _| {}).expect("DQC");
    let n = 5000;
    let keys: Vec<f32> = random(&mut r, n, -1.0, 1.0);
    for mut sorter in [RadixSorter::with_layout(ctx, 16, None), RadixSorter::with_layout(ctx, 16, Some(RUN_KEYS))] {
        let data = GpuBuffer::from_slice(ctx, "keys", &keys);
        sorter.sort_f32(ctx, &data, n).expect("sort");
        let (k, v) = (GpuBuffer::from_slice(ctx, "k", &vec![7u32; n]), GpuBuffer::from_slice(ctx, "v", &vec![1u32; n]));
        sorter.sort_pairs_u32(ctx, &k, &v, n).expect("sort pairs");
    }
}

/// Why `code` does not translate for one backend, if it does not.
fn translate(code: &str, backend: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(code).map_err(|e| e.emit_to_string(code))?;
    let caps = match backend {
        "msl" => msl::supported_capabilities(),
        _ => hlsl::supported_capabilities(),
    } & (Capabilities::SUBGROUP | Capabilities::SHADER_FLOAT16);
    let info = Validator::new(ValidationFlags::all(), caps).validate(&module).map_err(|e| e.emit_to_string(code))?;
    if backend == "msl" {
        // MSL 2.4: macOS 12 / iOS 15, the oldest with everything wgpu's subgroups need.
        let options = msl::Options { lang_version: (2, 4), ..Default::default() };
        msl::write_string(&module, &info, &options, &msl::PipelineOptions::default()).map_err(|e| format!("{e:?}"))?;
    } else {
        // Shader model 6.0: the first with wave (subgroup) operations; dot4 products
        // are polyfilled below 6.4.
        let options = hlsl::Options { shader_model: hlsl::ShaderModel::V6_0, ..Default::default() };
        let mut out = String::new();
        hlsl::Writer::new(&mut out, &options, &hlsl::PipelineOptions::default()).write(&module, &info, None).map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

#[test]
fn every_kernel_translates_to_metal_and_dx12() {
    let ctx = gpu();
    compile_every_kernel(ctx);
    let modules = ctx.compiled_modules();
    let labels: Vec<&str> = modules.iter().map(|(l, _)| l.as_str()).collect();
    eprintln!("{} modules ({:?} matmul): {labels:?}", modules.len(), ctx.matmul);
    // Every kernel family, in the variant this device runs.
    for family in ["Matmul", "LayerNorm", "Attention", "AttentionBackward", "Image", "Sort", "Search", "Quant", "Backward", "Adam"] {
        assert!(labels.iter().any(|l| l.starts_with(family)), "no {family} module compiled: {labels:?}");
    }
    let mut failures = Vec::new();
    for (label, code) in &modules {
        for backend in ["msl", "hlsl"] {
            if let Err(e) = translate(code, backend) {
                failures.push(format!("{label} → {backend}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} translations failed:\n{}", failures.len(), 2 * modules.len(), failures.join("\n"));
}
