//! `swinq calibrate`: check the options and data, run phase 1 (or resume phase 2),
//! run phase 2 (DQC) when asked, write the quantized file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use swinq::data;
use swinq::gpu::GpuContext;
use swinq::model::graph::{Engine, GpuModel, QuantModel};
use swinq::model::SwinWeights;
use swinq::progress;
use swinq::quant::calib::{load_patches, Patches, PatchMode, PatchSampler, PatchSide, PATCH};
use swinq::quant::dqc::{self, Checkpointing, DqcOptions, DqcState};
use swinq::quant::file::QuantFile;
use swinq::quant::phase1::calibrate_with_progress;
use swinq::quant::search::{Center, Method};
use swinq::quant::QParams;

use super::args::{check_scale, GpuArg, Phase2Args, WeightsArg};

/// The options of `swinq calibrate` beside the checkpoint, the adapter, the scale and
/// the output.
#[derive(Clone)]
pub struct CalibOptions {
    pub calib: PathBuf,
    pub calib_hr: bool,
    pub bits: u32,
    pub method: String,
    pub bias: bool,
    pub center: Option<String>,
    pub patches: usize,
    pub patch_mode: String,
    pub seed: u64,
    pub embed_weights: bool,
    pub phase2: Phase2Args,
}

/// `swinq calibrate`: every option and every image is checked before the GPU work.
pub fn run((source, gpu): (&WeightsArg, &GpuArg), scale: Option<usize>, o: &CalibOptions, output: &Path) -> Result<()> {
    data::check_output_file(output)?;
    data::check_model_file_name(output)?;
    let weights_path = source.path()?;
    data::check_not_an_input(&[output], &[("--weights checkpoint", &weights_path)])?;
    let (method, mode) = checked_options(o)?;
    let (weights, hash) = source.load_with_hash(&weights_path)?;
    let s = check_scale(&weights, scale)?;
    let o = &calib_folder(o, s);
    let window = weights.config.window;
    let patches = load_patches(&o.calib, o.calib_hr.then_some(s), o.patches, PatchSide::AtMost(PATCH), mode, o.seed, window)?;
    note_smaller_patches(1, "calibration", patches.size);
    let iters = phase2_iterations(o);
    // Phase 2's images are read before phase 1 runs, so that they are checked first.
    let mut sampler = phase2_sampler(o, s, iters, window)?;
    let dqc = DqcOptions {
        iters,
        batch: o.phase2.batch,
        patch: sampler.as_ref().map_or(PATCH, PatchSampler::size),
        lr: o.phase2.lr,
        lambda: o.phase2.lambda,
        schedule: o.phase2.schedule,
        seed: o.seed,
        train_bias: method.bias,
        profile: o.phase2.phase2_profile,
    };
    if o.phase2.patch.is_none() && iters > 0 {
        note_smaller_patches(2, "training", dqc.patch);
    }
    let mut settings = calib_settings(o, patches.size, &dqc);
    let state_path = DqcState::path_for(output);
    let resume = saved_phase2(o, iters, &state_path, |path| resumable_state(&weights, path, o.bits, &method.name(), &hash, &settings))?;
    // A resumed run skips the batches of the iterations done, so that it trains on
    // those an uninterrupted run would.
    if let (Some(sampler), Some(state)) = (sampler.as_mut(), resume.as_ref()) {
        sampler.skip_batches(state.next_iter, dqc.batch);
    }
    let ctx = gpu.context()?;
    let start = Instant::now();
    let gpu_model = GpuModel::upload(&ctx, &weights);
    let phase2_bytes = if iters > 0 { dqc::check_batch(&ctx, &gpu_model, o.bits, &dqc)? } else { 0 };
    let mut params = match &resume {
        Some(state) => {
            eprintln!("resuming phase 2 after iteration {} of {iters} from {}", state.next_iter, state_path.display());
            state.file.params.clone()
        }
        None => run_phase1(&ctx, &gpu_model, &patches, (method, o), start)?,
    };
    let mut file = QuantFile { bits: o.bits, method: method.name(), scale: s, source_sha256: hash, weights_sha256: Some(weights.content_sha256()), settings: settings.clone(), params: Vec::new() };
    if let Some(sampler) = sampler.as_mut() {
        let checkpoint = Checkpointing { path: &state_path, every: o.phase2.checkpoint_every, cfg: &weights.config, file: file.clone() };
        params = run_phase2(&ctx, &gpu_model, (o.bits, params), sampler, (&dqc, phase2_bytes), (resume.as_ref(), checkpoint), &mut settings)?;
        file.method.push_str("+dqc");
    }
    file.params = params;
    file.settings = settings;
    file.save(&weights.config, o.embed_weights.then_some(&weights), output)?;
    if iters > 0 && state_path.exists() {
        std::fs::remove_file(&state_path).with_context(|| state_path.display().to_string())?;
    }
    eprintln!("done in {:.1} s → {}", start.elapsed().as_secs_f64(), output.display());
    Ok(())
}

/// The phase 1 method and patch mode of the options, once every option is checked.
fn checked_options(o: &CalibOptions) -> Result<(Method, PatchMode)> {
    if !(2..=8).contains(&o.bits) {
        bail!("--bits {}: only 2 to 8 bits are supported", o.bits);
    }
    check_phase2_args(&o.phase2)?;
    let center = o.center.as_deref().map(Center::parse).transpose().context("--center")?;
    let method = Method::parse(&o.method).and_then(|m| m.with_options(o.bias, center)).context("--method")?;
    let mode = match o.patch_mode.as_str() {
        "center" => PatchMode::Center,
        "random" => PatchMode::Random,
        other => bail!("--patch-mode {other}: choose center or random"),
    };
    Ok((method, mode))
}

/// Phase 2's iterations: --phase2-iters, else the full methods' default (else none).
fn phase2_iterations(o: &CalibOptions) -> usize {
    let full_method = matches!(o.method.as_str(), "2dquant" | "2dquant+");
    let iters = o.phase2.phase2_iters.unwrap_or(if full_method { DqcOptions::default().iters } else { 0 });
    if iters == 0 && (!o.phase2.phase2_data.is_empty() || o.phase2.phase2_profile) {
        eprintln!("note: --phase2-data and --phase2-profile are not used: no phase 2 (--phase2-iters 0)");
    }
    iters
}

/// Phase 2's source of random training patches at scale `s` (none without phase 2).
fn phase2_sampler(o: &CalibOptions, s: usize, iters: usize, window: usize) -> Result<Option<PatchSampler>> {
    if iters == 0 {
        return Ok(None);
    }
    let (folders, hr) = phase2_folders(o, s)?;
    let data: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
    let side = o.phase2.patch.map_or(PatchSide::AtMost(PATCH), PatchSide::Exact);
    Ok(Some(PatchSampler::new(&data, hr.then_some(s), side, o.seed, window)?))
}

/// The saved phase 2 state to continue with --resume (checked by `resumable`); without
/// --resume, says when this run replaces one.
fn saved_phase2(o: &CalibOptions, iters: usize, state_path: &Path, resumable: impl FnOnce(&Path) -> Result<DqcState>) -> Result<Option<DqcState>> {
    match o.phase2.resume {
        true if iters == 0 => bail!("--resume continues a phase 2; give --phase2-iters"),
        true => Ok(Some(resumable(state_path)?)),
        false => {
            if iters > 0 && state_path.exists() {
                eprintln!("note: {} holds an interrupted phase 2; this run starts afresh and replaces it (--resume would continue it)", state_path.display());
            }
            Ok(None)
        }
    }
}

/// Phase 1 on the calibration patches, with a progress bar (or a log line every half
/// minute without a terminal).
fn run_phase1(ctx: &GpuContext, model: &GpuModel, patches: &Patches, (method, o): (Method, &CalibOptions), start: Instant) -> Result<Vec<QParams>> {
    let (name, bits, what, side) = (method.name(), o.bits, progress::count(o.patches, "patch", "patches"), patches.size);
    eprintln!("phase 1: {name} W{bits}A{bits} on {what} of {side}×{side} ({}) on {}", o.patch_mode, ctx.describe());
    let bar = progress::percent_bar("phase 1: calibration forward and bound search");
    let mut logged = Instant::now();
    let phase1 = calibrate_with_progress(ctx, model, patches, method, o.bits, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if bar.is_hidden() && logged.elapsed().as_secs() >= 30 {
            eprintln!("phase 1: {}% after {:.0} s", 100 * done / total.max(1), start.elapsed().as_secs_f64());
            logged = Instant::now();
        }
    })?;
    bar.finish_and_clear();
    eprintln!("phase 1 done in {:.1} s, with {} MiB of GPU memory for activations and search", start.elapsed().as_secs_f64(), phase1.gpu_bytes >> 20);
    Ok(phase1.params)
}

/// Says when phase `phase` cuts patches of `side` instead of PATCH from its (`what`)
/// images: the largest whole windows that they allow.
fn note_smaller_patches(phase: u8, what: &str, side: usize) {
    if side < PATCH {
        eprintln!("note: phase {phase} uses patches of {side}×{side} instead of {PATCH}×{PATCH}, the largest in whole windows that the {what} images (LR) allow");
    }
}

/// Refuses phase 2 settings that make no sense, whether or not phase 2 runs.
fn check_phase2_args(p: &Phase2Args) -> Result<()> {
    if !(p.lr.is_finite() && p.lr > 0.0) {
        bail!("--lr {}: the learning rate must be a positive number", p.lr);
    }
    if !(p.lambda.is_finite() && p.lambda >= 0.0) {
        bail!("--lambda {}: the feature-loss weight must be 0 or more", p.lambda);
    }
    if p.batch == 0 {
        bail!("--batch 0: a DQC batch needs at least one patch");
    }
    if p.checkpoint_every == 0 {
        bail!("--checkpoint-every 0: save the state every N ≥ 1 iterations");
    }
    if p.phase2_hr && p.phase2_data.is_empty() {
        bail!("--phase2-hr says the --phase2-data folders hold HR images; give --phase2-data (HR --calib images take --calib-hr)");
    }
    Ok(())
}

/// The settings stored in a quantized file (and checked on --resume); phase 1's
/// patches are `patch`×`patch`.
fn calib_settings(o: &CalibOptions, patch: usize, dqc: &DqcOptions) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = [
        ("patches", o.patches.to_string()),
        ("patch_mode", o.patch_mode.clone()),
        ("patch_size", patch.to_string()),
        ("seed", o.seed.to_string()),
        ("calib", absolute(&o.calib)),
        ("phase2_iters", dqc.iters.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if o.calib_hr {
        settings.insert("calib_hr".into(), "true".into());
    }
    if dqc.iters > 0 {
        for (key, value) in [
            ("phase2_batch", dqc.batch.to_string()),
            ("phase2_patch", dqc.patch.to_string()),
            ("phase2_lr", dqc.lr.to_string()),
            ("phase2_lambda", dqc.lambda.to_string()),
            ("phase2_schedule", format!("adam-{}", dqc.schedule.name())),
            ("phase2_train_bias", dqc.train_bias.to_string()),
            ("phase2_data", o.phase2.phase2_data.iter().map(|d| absolute(d)).collect::<Vec<_>>().join(";")),
            ("phase2_hr", o.phase2.phase2_hr.to_string()),
        ] {
            settings.insert(key.into(), value);
        }
    }
    settings
}

/// The folder `dir` as an absolute path with its links resolved (recorded in the
/// settings, so that --resume knows it however it is written).
fn absolute(dir: &Path) -> String {
    data::resolved(dir).display().to_string()
}

/// `o` with a --calib folder in the benchmark layout replaced by the folder of its images
/// at scale `s`: LR_bicubic/X<s>, else HR (made LR, as with --calib-hr).
fn calib_folder(o: &CalibOptions, s: usize) -> CalibOptions {
    let Some((calib, calib_hr)) = benchmark_images(&o.calib, s, o.calib_hr) else {
        return o.clone();
    };
    eprintln!("calibration images: {} ({})", calib.display(), if calib_hr { "HR, made LR" } else { "LR" });
    CalibOptions { calib, calib_hr, ..o.clone() }
}

/// The images a folder in the benchmark layout holds at scale `s`: its LR_bicubic/X<s>
/// folder (LR images) unless `want_hr`, else its HR folder (true: HR images). None for
/// a plain folder of images.
fn benchmark_images(dir: &Path, s: usize, want_hr: bool) -> Option<(PathBuf, bool)> {
    let lr = dir.join("LR_bicubic").join(format!("X{s}"));
    let hr = dir.join("HR");
    match (lr.is_dir() && !want_hr, hr.is_dir()) {
        (true, _) => Some((lr, false)),
        (false, true) => Some((hr, true)),
        (false, false) => None,
    }
}

/// Phase 2's image folders at scale `s` and whether they hold HR images: the
/// --phase2-data folders (those in the benchmark layout replaced by their images, as
/// --calib is), else the calibration folder.
fn phase2_folders(o: &CalibOptions, s: usize) -> Result<(Vec<PathBuf>, bool)> {
    let p = &o.phase2;
    if p.phase2_data.is_empty() {
        return Ok((vec![o.calib.clone()], o.calib_hr));
    }
    let folders: Vec<(PathBuf, bool)> = p.phase2_data.iter().map(|d| benchmark_images(d, s, p.phase2_hr).unwrap_or((d.clone(), p.phase2_hr))).collect();
    if let (Some(lr), Some(hr)) = (folders.iter().find(|f| !f.1), folders.iter().find(|f| f.1)) {
        bail!(
            "--phase2-data: {} holds LR images but {} HR images; give folders of one kind (with --phase2-hr, folders in the benchmark layout give their HR images)",
            lr.0.display(),
            hr.0.display()
        );
    }
    let hr = folders[0].1;
    for ((dir, _), given) in folders.iter().zip(&p.phase2_data) {
        if dir != given {
            eprintln!("phase 2 images: {} ({})", dir.display(), if hr { "HR, made LR" } else { "LR" });
        }
    }
    Ok((folders.into_iter().map(|f| f.0).collect(), hr))
}

/// The saved phase 2 state at `path`, if it was made with the same checkpoint, bits,
/// method and settings as this run.
fn resumable_state(weights: &SwinWeights, path: &Path, bits: u32, method: &str, hash: &str, settings: &BTreeMap<String, String>) -> Result<DqcState> {
    let state = DqcState::load(&weights.config, path)?;
    let f = &state.file;
    let keys: BTreeSet<&String> = settings.keys().chain(f.settings.keys()).collect();
    let value = |m: &BTreeMap<String, String>, k: &String| m.get(k).map_or("none", String::as_str).to_string();
    // Folders compare as absolute paths (a state of an earlier build may hold them as written).
    let same = |k: &String| match (settings.get(k), f.settings.get(k)) {
        (Some(a), Some(b)) if matches!(k.as_str(), "calib" | "phase2_data") => a.split(';').map(|d| absolute(Path::new(d))).eq(b.split(';').map(|d| absolute(Path::new(d)))),
        (a, b) => a == b,
    };
    let mut differ: Vec<String> = keys.into_iter().filter(|k| !same(k)).map(|k| format!("{k} {} (saved: {})", value(settings, k), value(&f.settings, k))).collect();
    if f.bits != bits {
        differ.push(format!("bits {bits} (saved: {})", f.bits));
    }
    if f.method != method {
        differ.push(format!("method {method} (saved: {})", f.method));
    }
    if !f.made_for(hash, weights) {
        differ.push("the checkpoint (another SHA-256)".into());
    }
    if !differ.is_empty() {
        bail!("{}: saved by a run with other settings, cannot resume: {}", path.display(), differ.join(", "));
    }
    Ok(state)
}

/// Phase 2 from `params`: returns the trained parameters and adds its losses and
/// time to `settings`.
fn run_phase2(
    ctx: &GpuContext,
    model: &GpuModel,
    (bits, params): (u32, Vec<QParams>),
    sampler: &mut PatchSampler,
    (dqc, bytes): (&DqcOptions, u64),
    (resume, checkpoint): (Option<&DqcState>, Checkpointing<'_>),
    settings: &mut BTreeMap<String, String>,
) -> Result<Vec<QParams>> {
    let _first_ctrl_c_stops_after_an_iteration = swinq::interrupt::graceful();
    let start = Instant::now();
    let quant = QuantModel::new(ctx, model, bits, &params, &[Engine::Fake]);
    note_phase2_plan(ctx, (dqc, bytes), &checkpoint);
    let bar = progress::styled(dqc.iters, "DQC [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise} (eta {eta}) {msg}");
    let first_iter = resume.map_or(0, |r| r.next_iter);
    bar.set_position(first_iter as u64);
    // Without a terminal (no bar drawn) a line every half minute shows progress in logs.
    let mut logged = Instant::now();
    let trained = dqc::train(ctx, model, &quant, sampler, dqc, (resume, Some(checkpoint)), |i, l| {
        let loss = format!("loss {:.5} (L1 {:.5}, features {:.2e})", l.total, l.l1, l.feature);
        // (The first iteration's line gives the time estimate early.)
        if bar.is_hidden() && (logged.elapsed().as_secs() >= 30 || i == first_iter || i + 1 == dqc.iters) {
            let per_iter = start.elapsed() / (i + 1 - first_iter) as u32;
            let left = indicatif::HumanDuration(per_iter * (dqc.iters - i - 1) as u32);
            swinq::note!("DQC iteration {}/{}: {loss}, {:.1} s per iteration, {left} left", i + 1, dqc.iters, per_iter.as_secs_f64());
            logged = Instant::now();
        }
        bar.set_message(loss);
        bar.inc(1);
    })
    .inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    if dqc.profile && trained.profile.is_none() {
        swinq::note!("phase 2: no profile: it times the run's second iteration, on an adapter with timestamp queries");
    }
    for (part, stages) in trained.profile.iter().flatten() {
        let total: f64 = stages.values().sum();
        let list: Vec<String> = stages.iter().map(|(s, ms)| format!("{s} {ms:.2}")).collect();
        swinq::note!("phase 2 GPU time of one iteration, {part}: {total:.2} ms ({})", list.join(", "));
    }
    record_losses(&trained, dqc.iters, first_iter, settings);
    Ok(quant.read_params(ctx))
}

/// Says what phase 2 will do (its buffers take `bytes` of GPU memory), and how slow
/// it is on a CPU driver.
fn note_phase2_plan(ctx: &GpuContext, (dqc, bytes): (&DqcOptions, u64), checkpoint: &Checkpointing<'_>) {
    swinq::note!(
        "phase 2 (DQC): {}, batch {} of {}×{}, Adam lr {} ({}), λ {}, c {}; {} MiB of GPU memory beside the model; {}",
        progress::count(dqc.iters, "iteration", "iterations"),
        dqc.batch,
        dqc.patch,
        dqc.patch,
        dqc.lr,
        dqc.schedule.name(),
        dqc.lambda,
        if dqc.train_bias { "trained" } else { "fixed" },
        bytes.div_ceil(1 << 20),
        if checkpoint.every < dqc.iters {
            format!("state saved every {} iterations and at Ctrl-C to {}", checkpoint.every, checkpoint.path.display())
        } else {
            format!("state saved at Ctrl-C only (--checkpoint-every {} ≥ the iterations)", checkpoint.every)
        }
    );
    if ctx.info.device_type == wgpu::DeviceType::Cpu {
        // Measured (benches/RESULTS.md): 22 s per iteration at batch 4, 94 s at batch 16
        // with lavapipe on two cores.
        swinq::note!(
            "note: {} is a CPU driver, where one DQC iteration at batch 16 of 64×64 takes about 1.5 minutes on two cores; \
             the estimate after the first iteration says how long this run takes, --phase2-iters and --batch shorten it",
            ctx.info.name
        );
    }
}

/// Prints and stores in `settings` the mean losses of the first and last tenth of the
/// `iters` iterations (batches differ from iteration to iteration) and phase 2's time.
fn record_losses(trained: &dqc::Trained, iters: usize, first_iter: usize, settings: &mut BTreeMap<String, String>) {
    let losses = &trained.losses;
    let tenth = (losses.len() / 10).max(1);
    let mean = |ls: &[dqc::Losses]| ls.iter().map(|l| l.total).sum::<f64>() / ls.len() as f64;
    let (first, last) = (mean(&losses[..tenth]), mean(&losses[losses.len() - tenth..]));
    let resumed = match (first_iter, losses.len() == iters) {
        (0, _) => "",
        (_, true) => " (with the run before --resume)",
        // A state saved by an earlier build has no losses nor time.
        (_, false) => " (since --resume: the state did not record the run before)",
    };
    swinq::note!(
        "phase 2 done in {:.1} s{resumed}: mean loss of the first and last {} {first:.5} → {last:.5}",
        trained.seconds,
        progress::count(tenth, "iteration", "iterations")
    );
    settings.insert("phase2_loss_first".into(), format!("{first:.6}"));
    settings.insert("phase2_loss_last".into(), format!("{last:.6}"));
    settings.insert("phase2_seconds".into(), format!("{:.1}", trained.seconds));
    if losses.len() != iters {
        settings.insert("phase2_recorded".into(), format!("iterations {} to {} (resumed from a state without losses)", first_iter + 1, iters));
    }
}
