//! The commands of the `swinq` binary; `main.rs` parses the arguments and calls them.

pub mod args;
pub mod calibrate;
pub mod upscale;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use swinq::bench::{compare_engines, launch_cost_us};
use swinq::data;
use swinq::eval::{evaluate, EvalReport};
use swinq::gpu::GpuContext;
use swinq::model::checkpoint::{load_weights, save_safetensors, sha256_file};
use swinq::model::graph::{Engine, GpuModel, QuantModel};
use swinq::progress;
use swinq::quant::export;
use swinq::report::ReportOptions;
use swinq::upscale::Upscaler;

use args::{check_scale, load_model, load_quantized, GpuArg, ModelArgs, QuantArgs, WeightsArg};

/// `swinq report`: the float model and the quantized files on benchmark sets, written
/// as a report folder.
pub fn report(model: &ModelArgs, opts: &ReportOptions) -> Result<()> {
    let (weights, hash) = model.source.load_with_hash(&model.source.path()?)?;
    let s = check_scale(&weights, opts.scale)?;
    let quants = opts.quantized.iter().map(|q| Ok((q.clone(), load_quantized(q, &weights, &hash)?))).collect::<Result<Vec<_>>>()?;
    let plan = swinq::report::prepare(opts, s)?;
    let ctx = model.gpu.context()?;
    let ckpt = swinq::report::Checkpoint { name: model.source.weights.clone(), sha256: hash, weights: &weights };
    let r = swinq::report::run(&ctx, &ckpt, &quants, model.tile, opts, plan)?;
    print!("{}", swinq::report::score_table(&r));
    eprintln!("report: {} model(s) × {} set(s) on {} → {}", r.models.len(), r.datasets.len(), ctx.describe(), opts.output.join("report.md").display());
    Ok(())
}

/// `swinq convert`: a checked checkpoint written as a clean safetensors copy.
pub fn convert(input: &Path, output: &Path) -> Result<()> {
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    data::check_not_an_input(&[output], &[("input checkpoint", input)])?;
    let weights = load_weights(input)?;
    let mut meta = BTreeMap::new();
    meta.insert("source".to_string(), input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    meta.insert("source_sha256".to_string(), sha256_file(input)?);
    meta.insert("config".to_string(), weights.config.describe());
    save_safetensors(&weights.to_state_dict(), &meta, output)?;
    eprintln!("{}: {} → {}", weights.config.describe(), input.display(), output.display());
    Ok(())
}

/// A line of results printed above the progress bar: on stdout normally, and with
/// `--json` (stdout holds the JSON) on stderr where no bar is drawn (stderr is not a
/// terminal), so that logs still show progress. Printing through the bar keeps the
/// line when the bar is hidden (its `println` would drop it).
fn result_line(bar: &ProgressBar, json: bool, line: &str) {
    if json {
        log_line(bar, line);
    } else {
        bar.suspend(|| println!("{line}"));
    }
}

/// A progress line on stderr in place of the bar where none is drawn (no terminal).
pub fn log_line(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    }
}

/// `swinq eval`: PSNR-Y/SSIM-Y of the float or quantized model on a benchmark set.
pub fn eval(model: &ModelArgs, dataset: &Path, scale: Option<usize>, json: bool, quant: &QuantArgs) -> Result<()> {
    let (weights, q) = load_model(&model.source, quant.quantized.as_deref())?;
    let s = check_scale(&weights, scale)?;
    let pairs = data::benchmark_pairs(dataset, s)?;
    if let Some(note) = data::lr_note(dataset, &pairs) {
        eprintln!("{note}");
    }
    let ctx = model.gpu.context()?;
    let mut up = quant.apply(Upscaler::new(&ctx, &weights, model.tiling())?, q.as_ref())?;
    let engine = up.engine();
    let bar = progress::bar(pairs.len(), &data::dataset_name(dataset));
    let report = evaluate(&mut up, &data::dataset_name(dataset), engine, &pairs, |score| {
        let tiles = score.tile.map(|t| format!("  (in overlapping {t}×{t} tiles)")).unwrap_or_default();
        result_line(&bar, json, &format!("{:<24} {:>8.4} dB  {:.4}{tiles}", score.name, score.psnr_y, score.ssim_y));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    print_report(&report, json, &ctx)
}

/// `swinq export`: the deployable file of a quantized model, with its sizes.
pub fn export_model(source: &WeightsArg, quantized: Option<&Path>, output: &Path) -> Result<()> {
    let path = source.path()?;
    if export::is_exported(&path) {
        bail!("{}: already an exported model; export takes the float checkpoint and a quantized file", path.display());
    }
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    let inputs: Vec<(&str, &Path)> = [("--weights checkpoint", path.as_path())].into_iter().chain(quantized.map(|q| ("--quantized file", q))).collect();
    data::check_not_an_input(&[output], &inputs)?;
    let (weights, q) = load_model(source, quantized)?;
    let q = q.context("--quantized: give the quantized file (from `swinq calibrate`) to export")?;
    let sizes = export::export(&weights, &q, output)?;
    let ckpt_file = std::fs::metadata(&path).with_context(|| path.display().to_string())?.len();
    let params: usize = weights.to_state_dict().values().filter(|t| t.as_f32().is_some()).map(|t| t.numel()).sum();
    let quantized_params = weights.config.num_blocks() * weights.config.embed_dim * (4 * weights.config.embed_dim + 2 * weights.config.mlp_hidden);
    let fp_bits = 32.0 * params as f64;
    let q_bits = fp_bits - quantized_params as f64 * (32.0 - q.bits as f64);
    eprintln!("{} ({} W{b}A{b}) → {}", quantized.unwrap_or(&path).display(), q.method, output.display(), b = q.bits);
    let fp32 = 4 * params as u64;
    eprintln!(
        "file {:.1} KiB (codes {:.1} KiB; float layers, quantizers and header {:.1} KiB) vs {:.1} KiB of FP32 weights: {:.2}× smaller \
         (the checkpoint file itself is {:.1} KiB)",
        sizes.file as f64 / 1024.0,
        sizes.codes as f64 / 1024.0,
        sizes.float as f64 / 1024.0,
        fp32 as f64 / 1024.0,
        fp32 as f64 / sizes.file as f64,
        ckpt_file as f64 / 1024.0
    );
    eprintln!(
        "parameters: {quantized_params} of {params} quantized to {} bits: {:.2}× fewer parameter bits (2DQuant's accounting)",
        q.bits,
        fp_bits / q_bits
    );
    Ok(())
}

/// `swinq bench`: forward times of the float model and the quantized engines.
pub fn bench((source, gpu): (&WeightsArg, &GpuArg), (quantized, engine): (Option<&Path>, Option<Engine>), sizes: &[usize], runs: (usize, usize), json: bool) -> Result<()> {
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--size needs positive LR sizes, e.g. --size 128,256");
    }
    if runs.1 == 0 {
        bail!("--repeats 0: time at least one run");
    }
    let (weights, q) = load_model(source, quantized)?;
    if q.is_none() && engine.is_some() {
        bail!("--engine chooses how a quantized model runs; give --quantized (or an exported model as --weights)");
    }
    let quantized_engines = engine.map_or(Engine::ALL.to_vec(), |e| vec![e]);
    let ctx = gpu.context()?;
    let gpu = GpuModel::upload(&ctx, &weights);
    let quant = q.as_ref().map(|q| QuantModel::new(&ctx, &gpu, q.bits, &q.params, &quantized_engines));
    let model_mib = ctx.held_bytes() as f64 / (1 << 20) as f64;
    let engines = 1 + quant.as_ref().map_or(0, |_| quantized_engines.len());
    let bar = progress::bar(sizes.len() * engines, "timing");
    let launch_us = launch_cost_us(&ctx);
    let timings = compare_engines(&ctx, &gpu, quant.as_ref().map(|q| (q, &quantized_engines[..])), sizes, runs, |t| {
        let s = &t.timing;
        result_line(&bar, json, &format!("{}×{} {:<5} median {:>10.2} ms  min {:>10.2} ms", s.height, s.width, t.engine, s.median_ms, s.min_ms));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if json {
        let out = serde_json::json!({ "device": ctx.describe(), "scale": weights.config.scale, "bits": q.as_ref().map(|q| q.bits), "launch_cost_us": launch_us, "model_mib": model_mib, "timings": timings });
        println!("{out}");
        return Ok(());
    }
    println!("SwinIR x{} forward on {} (a kernel launch costs {launch_us:.1} µs there)", weights.config.scale, ctx.describe());
    println!("GPU memory: {model_mib:.1} MiB for the model's weights (the float model, and the quantized weights of the engines timed); per engine below, its activations and scratch");
    for chunk in timings.chunks(engines) {
        let fp = chunk[0].timing.median_ms;
        let line: Vec<String> = chunk
            .iter()
            .map(|t| {
                let speedup = if t.engine == "fp32" { String::new() } else { format!("{:.2}× the speed of fp32, ", fp / t.timing.median_ms) };
                format!("{} {:.2} ms ({speedup}{} launches, {:.0} MiB)", t.engine, t.timing.median_ms, t.timing.launches(), t.timing.activations_mib)
            })
            .collect();
        println!("{}×{}: {}", chunk[0].timing.height, chunk[0].timing.width, line.join(", "));
        for t in chunk.iter().filter(|t| !t.timing.stages_ms.is_empty()) {
            println!("  {} GPU time per stage: {}", t.engine, t.timing.stage_summary());
        }
    }
    Ok(())
}

fn print_report(report: &EvalReport, json: bool, ctx: &GpuContext) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "{} x{} ({}): PSNR-Y {:.4} dB, SSIM-Y {:.4} over {} in {:.1} s on {}",
            report.dataset,
            report.scale,
            report.engine,
            report.psnr_y,
            report.ssim_y,
            progress::count(report.images.len(), "image", "images"),
            report.seconds,
            ctx.describe()
        );
    }
    Ok(())
}
