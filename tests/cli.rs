//! The `swinq` binary end to end: info, convert, upscale, eval, tiling and bad input.
#![cfg(unix)]

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::shared;
use swinq::data::{downscale_matlab, load_rgb_u8, save_png, RgbU8};

fn swinq(args: &[&str]) -> Output {
    // XDG_RUNTIME_DIR keeps Mesa's window-system probe quiet on headless machines.
    Command::new(env!("CARGO_BIN_EXE_swinq")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run swinq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn standin() -> String {
    shared().join("weights/swinir_light_x2_standin.pth").to_string_lossy().into_owned()
}

/// A small crop of Set5's bird as a tiny benchmark set (HR and x2 LR).
fn tiny_dataset(dir: &Path) -> PathBuf {
    let set = shared().join("datasets/Set5");
    let hr = load_rgb_u8(set.join("HR/bird.png")).unwrap().crop(40, 40, 48, 40);
    let lr = load_rgb_u8(set.join("LR_bicubic/X2/birdx2.png")).unwrap().crop(20, 20, 24, 20);
    let root = dir.join("Tiny");
    std::fs::create_dir_all(root.join("HR")).unwrap();
    std::fs::create_dir_all(root.join("LR_bicubic/X2")).unwrap();
    save_png(&hr, root.join("HR/bird.png")).unwrap();
    save_png(&lr, root.join("LR_bicubic/X2/birdx2.png")).unwrap();
    root
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_lists_an_adapter() {
    let o = swinq(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("max storage binding"), "{text}");
}

#[test]
fn convert_then_eval_json_matches_pth() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("standin.safetensors");
    let o = swinq(&["convert", &standin(), s(&st)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let set = tiny_dataset(dir.path());
    let mut psnrs = Vec::new();
    for w in [standin(), s(&st).to_string()] {
        let o = swinq(&["eval", "--weights", &w, "--dataset", s(&set), "--scale", "2", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
        for key in ["dataset", "scale", "engine", "psnr_y", "ssim_y", "images", "seconds"] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["dataset"], "Tiny");
        assert_eq!(v["images"][0]["name"], "bird");
        // No terminal here, so no progress bar: each image's line goes to the log.
        assert!(stderr(&o).contains("bird "), "{}", stderr(&o));
        psnrs.push(v["psnr_y"].as_f64().unwrap());
    }
    eprintln!("tiny bird PSNR-Y: {psnrs:?}");
    assert!(psnrs[0] > 25.0 && psnrs[0] == psnrs[1]);
    // Without --json the per-image lines are results, on stdout, also with no terminal.
    let o = swinq(&["eval", "--weights", s(&st), "--dataset", s(&set), "--scale", "2"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.starts_with("bird ") && text.contains(&format!("{:.4} dB", psnrs[1])) && text.contains("over 1 image in"), "{text}");
    let o = swinq(&["eval", "--weights", &standin(), "--dataset", s(&set), "--scale", "3"]);
    assert!(!o.status.success() && stderr(&o).contains("×2 model"), "{}", stderr(&o));
}

/// A set with only HR images is evaluated on LR images made from them, with a note
/// saying so, and scores as the same set with those LR images as files.
#[test]
fn eval_makes_missing_lr_from_hr() {
    let dir = tempfile::tempdir().unwrap();
    let hr = load_rgb_u8(shared().join("datasets/Set5/HR/bird.png")).unwrap().crop(40, 40, 49, 41);
    let with_lr = dir.path().join("WithLr");
    let hr_only = dir.path().join("HrOnly");
    for root in [&with_lr, &hr_only] {
        std::fs::create_dir_all(root.join("HR")).unwrap();
        save_png(&hr, root.join("HR/bird.png")).unwrap();
    }
    std::fs::create_dir_all(with_lr.join("LR_bicubic/X2")).unwrap();
    save_png(&downscale_matlab(&hr, 2), with_lr.join("LR_bicubic/X2/birdx2.png")).unwrap();
    let mut psnrs = Vec::new();
    for set in [&with_lr, &hr_only] {
        let o = swinq(&["eval", "--weights", &standin(), "--dataset", s(set), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stderr(&o).contains("HrOnly: no LR_bicubic/X2 folder"), set == &hr_only, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        psnrs.push(v["psnr_y"].as_f64().unwrap());
    }
    assert!(psnrs[0] > 25.0 && psnrs[0] == psnrs[1], "{psnrs:?}");
}

#[test]
fn upscale_gray_rgba_and_16bit_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let gray = image::GrayImage::from_fn(13, 9, |x, y| image::Luma([(x * 19 + y * 7) as u8]));
    gray.save(inputs.join("gray.png")).unwrap();
    let rgba = image::RgbaImage::from_fn(10, 11, |x, y| image::Rgba([x as u8 * 20, y as u8 * 20, 90, 128]));
    rgba.save(inputs.join("rgba.png")).unwrap();
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(9, 12, |x, y| image::Rgb([x as u16 * 5000, y as u16 * 4000, 30000]));
    deep.save(inputs.join("deep.png")).unwrap();
    let out = dir.path().join("out");
    let o = swinq(&["upscale", "--weights", &standin(), s(&inputs), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // What the 8-bit RGB outputs lose is said once per run.
    assert!(stderr(&o).contains("note: 1 input had an alpha channel") && stderr(&o).contains("note: 1 input had 16-bit samples"), "{}", stderr(&o));
    for (name, w, h) in [("gray", 13, 9), ("rgba", 10, 11), ("deep", 9, 12)] {
        let img = load_rgb_u8(out.join(format!("{name}_x2.png"))).unwrap();
        assert_eq!((img.width, img.height), (2 * w, 2 * h), "{name}");
    }
}

#[test]
fn tiled_upscale_is_close_to_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lr = load_rgb_u8(shared().join("datasets/Set5/LR_bicubic/X2/birdx2.png")).unwrap().crop(30, 30, 56, 48);
    let input = dir.path().join("bird.png");
    save_png(&lr, &input).unwrap();
    let (whole, tiled) = (dir.path().join("whole.png"), dir.path().join("tiled.png"));
    for (out, extra) in [(&whole, vec![]), (&tiled, vec!["--tile", "40"])] {
        let mut args = vec!["upscale", "--weights", &*Box::leak(standin().into_boxed_str()), s(&input), "-o", s(out)];
        args.extend(extra);
        let o = swinq(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b): (RgbU8, RgbU8) = (load_rgb_u8(&whole).unwrap(), load_rgb_u8(&tiled).unwrap());
    let mse = a.data.iter().zip(&b.data).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.data.len() as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10();
    eprintln!("tiled vs whole: PSNR {psnr:.2} dB");
    assert!(psnr > 35.0, "tiled output differs too much from the whole-image output: {psnr:.2} dB");
    // eval says which images ran in tiles (a folder of one HR image, 56×48 LR).
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    let hr = load_rgb_u8(shared().join("datasets/Set5/HR/bird.png")).unwrap().crop(60, 60, 112, 96);
    save_png(&hr, set.join("bird.png")).unwrap();
    for (extra, tiled) in [(vec![], false), (vec!["--tile", "40"], true)] {
        let o = swinq(&[&["eval", "--weights", &standin(), "--dataset", s(&set)], &extra[..]].concat());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("bird ") && text.contains("(in overlapping 40×40 tiles)") == tiled, "{text}");
    }
}

#[test]
fn bad_inputs_give_one_line_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    save_png(&RgbU8::zeros(8, 8), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out.png");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Sets whose pairs cannot be scored: too small for SSIM's window, and an HR image
    // that is not ×2 its LR image.
    let tiny = set_of(&dir.path().join("sets/Tiny"), (2, 2), (1, 1));
    let mismatched = set_of(&dir.path().join("sets/Mismatched"), (32, 32), (8, 8));
    let copy = dir.path().join("copy.safetensors");
    std::fs::copy(shared().join("weights/swinir_light_x2_standin.pth"), &copy).unwrap();
    let qout = dir.path().join("q.safetensors");
    let fifo = dir.path().join("fifo.safetensors");
    let x3 = quantized_for_scale(dir.path(), 3);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let calibrate_from = |(weights, calib): (&str, &Path), extra: &[&str]| -> Vec<String> {
        let args = ["calibrate", "--weights", weights, "--calib", s(calib), "--bits", "4", "--method", "dobi"];
        args.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let calibrate_with = |weights: &str, extra: &[&str]| calibrate_from((weights, dir.path()), extra);
    let calibrate = |extra: &[&str]| calibrate_with(&standin(), extra);
    let calib_x2 = shared().join("datasets/calib/LR_bicubic/X2");
    let calibrate_on = |calib: &Path, extra: &[&str]| calibrate_from((&standin(), calib), extra);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["upscale".into(), "--weights".into(), standin(), s(&cut).into(), "-o".into(), s(&out).into()], "cut.png"),
        (vec!["upscale".into(), "--weights".into(), "nonexistent.pth".into(), s(&good).into(), "-o".into(), s(&out).into()], "not a known model name"),
        (vec!["upscale".into(), "--weights".into(), s(&good).into(), s(&good).into(), "-o".into(), s(&out).into()], "good.png"),
        (vec!["upscale".into(), "--weights".into(), standin(), s(&good).into(), "-o".into(), "/nonexistent/dir/x.png".into()], "x.png"),
        (vec!["upscale".into(), "--weights".into(), standin(), s(&good).into(), "-o".into(), s(&out).into(), "--tile".into(), "20".into()], "multiple of the window"),
        (vec!["eval".into(), "--weights".into(), standin(), "--dataset".into(), s(&empty).into()], "HR folder missing"),
        // A plain folder of images is a set of HR images; a broken one is named.
        (vec!["eval".into(), "--weights".into(), standin(), "--dataset".into(), s(dir.path()).into()], "cut.png: cannot decode"),
        (vec!["eval".into(), "--weights".into(), standin(), "--dataset".into(), s(&tiny).into()], "too small to score at ×2"),
        (vec!["eval".into(), "--weights".into(), standin(), "--dataset".into(), s(&mismatched).into()], "is not ×2 its LR image 8×8"),
        (vec!["upscale".into(), "--weights".into(), standin(), "--engine".into(), "fake".into(), s(&good).into(), "-o".into(), s(&out).into()], "give --quantized"),
        (vec!["upscale".into(), "--weights".into(), standin(), "--gpu-memory".into(), "1".into(), s(&good).into(), "-o".into(), s(&out).into()], "for the activations of a 8×8 input: it takes swinq to"),
        (calibrate_on(&calib_x2, &["--gpu-memory", "1", "--phase2-iters", "1", "-o", s(&qout)]), "(none fits beside the model)"),
        (vec!["upscale".into(), "--weights".into(), standin(), "--quantized".into(), s(&x3).into(), s(&good).into(), "-o".into(), s(&out).into()], "a ×3 quantized model, but --weights is a ×2 checkpoint"),
        (vec!["bench".into(), "--weights".into(), standin(), "--repeats".into(), "0".into()], "--repeats 0"),
        (vec!["bench".into(), "--weights".into(), standin(), "--tile".into(), "64".into()], "unexpected argument '--tile'"),
        (vec!["bench".into(), "--weights".into(), standin(), "--engine".into(), "int".into()], "--engine chooses how a quantized model runs"),
        (vec!["bench".into(), "--weights".into(), standin(), "--adapter".into(), "no-such-gpu".into()], "no adapter name contains `no-such-gpu`; available: "),
        // Outputs that would destroy an input, or replace a pipe or a folder.
        (vec!["convert".into(), s(&copy).into(), s(&copy).into()], "is also the input checkpoint"),
        (vec!["upscale".into(), "--weights".into(), standin(), s(&good).into(), "-o".into(), s(&good).into()], "is also the input image"),
        (vec!["convert".into(), standin(), s(&fifo).into()], "not a regular file"),
        // Refused before the calibration runs, not after it.
        (calibrate(&["-o", "/nonexistent/dir/q.safetensors"]), "/nonexistent/dir does not exist"),
        (calibrate(&["-o", s(&empty)]), "is a folder"),
        (calibrate_with(s(&copy), &["-o", s(&copy)]), "is also the --weights checkpoint"),
        (calibrate(&["--lr", "nan", "-o", s(&qout)]), "learning rate"),
        (calibrate(&["--lambda=-1", "-o", s(&qout)]), "feature-loss weight"),
        (calibrate(&["--checkpoint-every", "0", "-o", s(&qout)]), "--checkpoint-every 0"),
        (calibrate(&["-o", s(&dir.path().join("q.png"))]), "give it a .safetensors name"),
        (calibrate(&["--phase2-hr", "-o", s(&qout)]), "give --phase2-data"),
        (calibrate(&["--tile", "64", "-o", s(&qout)]), "unexpected argument '--tile'"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = swinq(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: error should mention `{needle}`: {err}");
        assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {err}");
        assert!(!out.exists() && !qout.exists(), "{args:?} left an output file");
    }
    assert_eq!(std::fs::read(&good).unwrap(), bytes, "the input image is unchanged");
    // A folder holding a file that is not an image is refused before any output is made;
    // hidden files (macOS's ._name resource forks) are not inputs.
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::copy(&good, photos.join("a.png")).unwrap();
    std::fs::write(photos.join("._a.png"), b"resource fork").unwrap();
    std::fs::write(photos.join("b.png"), b"not an image").unwrap();
    let made = dir.path().join("made");
    let o = swinq(&["upscale", "--weights", &standin(), s(&photos), "-o", s(&made)]);
    assert!(!o.status.success() && stderr(&o).contains("b.png: cannot read as an image"), "{}", stderr(&o));
    assert!(!made.exists(), "no output folder after an error");
    std::fs::remove_file(photos.join("b.png")).unwrap();
    let o = swinq(&["upscale", "--weights", &standin(), s(&photos), "-o", s(&made)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&made).unwrap().count(), 1, "only a.png is upscaled");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe is still a pipe");
}

/// A folder with an image truncated after its header: the other images are upscaled and
/// the run fails naming it. Upscaling a folder into itself again leaves out the first
/// run's outputs (it does not upscale them, nor refuse to overwrite them).
#[test]
fn upscale_keeps_going_past_a_bad_image_and_reruns_into_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let noise = RgbU8 { width: 16, height: 16, data: (0..16 * 16 * 3).map(|i| (i * 97 % 251) as u8).collect() };
    save_png(&noise, photos.join("a.png")).unwrap();
    save_png(&noise, photos.join("b.png")).unwrap();
    let bytes = std::fs::read(photos.join("b.png")).unwrap();
    std::fs::write(photos.join("b.png"), &bytes[..bytes.len() / 2]).unwrap();
    let o = swinq(&["upscale", "--weights", &standin(), s(&photos), "-o", s(&photos)]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("failed:") && err.contains("1 of 2 images failed") && err.contains("b.png"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {err}");
    let made = photos.join("a_x2.png");
    assert_eq!(load_rgb_u8(&made).unwrap().width, 32, "a.png is upscaled despite b.png");
    assert!(swinq::data::png_has_text(&made, (swinq::data::UPSCALE_SOURCE, "a.png")), "outputs name their input");
    assert!(!swinq::data::png_has_text(&photos.join("a.png"), (swinq::data::UPSCALE_SOURCE, "a.png")) && !swinq::data::png_has_text(&photos.join("b.png"), ("Software", "swinq")));
    std::fs::remove_file(photos.join("b.png")).unwrap();
    std::fs::remove_file(&made).unwrap();
    for run in 0..2 {
        let o = swinq(&["upscale", "--weights", &standin(), s(&photos), "-o", s(&photos)]);
        assert!(o.status.success(), "run {run}: {}", stderr(&o));
        assert_eq!(stderr(&o).contains("left out 1 image"), run == 1, "{}", stderr(&o));
    }
    let mut names: Vec<String> = std::fs::read_dir(&photos).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["a.png", "a_x2.png"]);
    // The user's own image of an output's name (not made by swinq) is refused, not overwritten.
    save_png(&noise, photos.join("a_x2.png")).unwrap();
    let own = std::fs::read(photos.join("a_x2.png")).unwrap();
    let o = swinq(&["upscale", "--weights", &standin(), s(&photos), "-o", s(&photos)]);
    assert!(!o.status.success() && stderr(&o).contains("a_x2.png: is an input image that swinq upscale did not make"), "{}", stderr(&o));
    assert_eq!(std::fs::read(photos.join("a_x2.png")).unwrap(), own);
}

/// Ctrl-C during phase 2 stops it after the current iteration with its state saved
/// (exit status 130), and --resume then finishes the run.
#[test]
fn ctrl_c_in_phase2_saves_the_state_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.safetensors");
    let calib = shared().join("datasets/calib/LR_bicubic/X2");
    let args = [
        "calibrate", "--weights", &standin(), "--calib", s(&calib), "--bits", "4", "--method", "minmax", "--patches", "1",
        "--phase2-iters", "4", "--batch", "1", "--patch", "16", "-o", s(&q),
    ];
    let (mut child, mut lines) = spawn_logged(&args);
    let mut log: Vec<String> = lines.by_ref().take_while(|l| !l.starts_with("phase 2 (DQC)")).collect();
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    log.extend(lines);
    let log = log.join("\n");
    let code = child.wait().unwrap().code();
    if code == Some(0) {
        // A fast GPU can finish the 4 iterations before the signal arrives (lavapipe takes seconds).
        eprintln!("phase 2 ended before Ctrl-C arrived; --resume not exercised: {log}");
        assert!(q.is_file());
        return;
    }
    assert_eq!(code, Some(130), "{log}");
    // (Iteration 1 on lavapipe: the first one takes seconds there.)
    assert!(log.contains("interrupted after DQC iteration ") && log.contains(" of 4; its state is saved in") && log.contains("--resume continues"), "{log}");
    assert!(!q.exists(), "no model file from an interrupted run");
    let state = dir.path().join("q.dqc-state.safetensors");
    assert!(state.is_file(), "{log}");
    // (The calibration folder written another way is the same folder.)
    let other_way = calib.join("../X2");
    let resume: Vec<&str> = args.iter().map(|&a| if a == s(&calib) { s(&other_way) } else { a }).chain(["--resume"]).collect();
    let o = swinq(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming phase 2 after iteration "), "{}", stderr(&o));
    assert!(q.is_file() && !state.exists());
    // The same as an uninterrupted run: the resumed iterations saw the same batches.
    let whole = dir.path().join("whole.safetensors");
    let o = swinq(&[&args[..args.len() - 1], &[s(&whole)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = swinq::model::SwinConfig::light(2);
    let (resumed, uninterrupted) = (swinq::quant::file::QuantFile::load(&q, &cfg).unwrap(), swinq::quant::file::QuantFile::load(&whole, &cfg).unwrap());
    assert_eq!(resumed.params, uninterrupted.params);
    // (The state keeps the losses in f32: the means agree to about 7 digits.)
    let loss = |f: &swinq::quant::file::QuantFile| f.settings["phase2_loss_first"].parse::<f64>().unwrap();
    assert!((loss(&resumed) - loss(&uninterrupted)).abs() <= 2e-6, "{} {}", loss(&resumed), loss(&uninterrupted));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".swinq")).collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // SIGTERM with the log's reader gone (as when Ctrl-C also ends a `tee`): the state is
    // still saved and the status still says interrupted.
    std::fs::remove_file(&q).unwrap();
    let (mut child, mut lines) = spawn_logged(&args);
    assert!(lines.by_ref().any(|l| l.starts_with("phase 2 (DQC)")));
    drop(lines);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let code = child.wait().unwrap().code();
    assert!(code == Some(130) && state.is_file() || code == Some(0) && q.is_file(), "status {code:?}");
}

/// `swinq args` started, with its stderr read line by line.
fn spawn_logged(args: &[&str]) -> (std::process::Child, impl Iterator<Item = String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_swinq"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map(Result::unwrap);
    (child, lines)
}

/// A quantized file with bounds ±4 that says it is for a ×`scale` model (no GPU).
fn quantized_for_scale(dir: &Path, scale: usize) -> PathBuf {
    let w = swinq::model::checkpoint::load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).unwrap();
    let n = swinq::quant::all_names(&w.config).len();
    let file = swinq::quant::file::QuantFile {
        bits: 4,
        method: "fixed".into(),
        scale,
        source_sha256: "0".repeat(64),
        weights_sha256: None,
        settings: Default::default(),
        params: vec![swinq::quant::QParams { lower: -4.0, upper: 4.0, bias: 0.0, _pad: 0.0 }; n],
    };
    let path = dir.join(format!("x{scale}.safetensors"));
    file.save(&w.config, None, &path).unwrap();
    path
}

/// A benchmark set at `root` with one HR image of `hr` (w, h) and its x2 LR image of `lr`.
fn set_of(root: &Path, hr: (usize, usize), lr: (usize, usize)) -> PathBuf {
    std::fs::create_dir_all(root.join("HR")).unwrap();
    std::fs::create_dir_all(root.join("LR_bicubic/X2")).unwrap();
    save_png(&RgbU8::zeros(hr.0, hr.1), root.join("HR/a.png")).unwrap();
    save_png(&RgbU8::zeros(lr.0, lr.1), root.join("LR_bicubic/X2/ax2.png")).unwrap();
    root.to_path_buf()
}

/// Writing to a symbolic link writes the file it points to, as `cp` does.
#[test]
fn outputs_are_written_through_links() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.safetensors");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = swinq(&["convert", &standin(), s(&link)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    assert!(std::fs::metadata(&real).unwrap().len() > 1000, "the file it points to was written");
}

#[test]
fn calibrate_export_then_eval_and_bench_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let set = tiny_dataset(dir.path());
    let (q, exported) = (dir.path().join("q.safetensors"), dir.path().join("q.int.safetensors"));
    // The calibration set's root folder stands for its LR_bicubic/X2.
    let calib = shared().join("datasets/calib");
    // A phase 1 run leaves an interrupted phase 2's state alone.
    let state = dir.path().join("q.dqc-state.safetensors");
    std::fs::write(&state, b"state").unwrap();
    let o = swinq(&["calibrate", "--weights", &standin(), "--calib", s(&calib), "--bits", "4", "--method", "minmax", "--patches", "1", "-o", s(&q)]);
    assert!(o.status.success() && stderr(&o).contains("phase 1 done in"), "{}", stderr(&o));
    assert!(state.exists(), "phase 1 alone removed a phase 2 state");
    assert!(stderr(&o).contains("calibration images: ") && stderr(&o).contains("X2 (LR)"), "{}", stderr(&o));
    let o = swinq(&["export", "--weights", &standin(), "--quantized", s(&q), "-o", s(&exported)]);
    assert!(o.status.success() && stderr(&o).contains("smaller"), "{}", stderr(&o));
    assert!(std::fs::metadata(&exported).unwrap().len() < std::fs::metadata(shared().join("weights/swinir_light_x2_standin.pth")).unwrap().len());
    let psnr = |args: &[&str]| -> (String, f64) {
        let o = swinq(&[&["eval", "--dataset", s(&set), "--json"], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["engine"].as_str().unwrap().to_string(), v["psnr_y"].as_f64().unwrap())
    };
    let fake = psnr(&["--weights", &standin(), "--quantized", s(&q), "--engine", "fake"]);
    let int = psnr(&["--weights", &standin(), "--quantized", s(&q)]);
    let exported_fake = psnr(&["--weights", s(&exported), "--engine", "fake"]);
    let exported_int = psnr(&["--weights", s(&exported)]);
    eprintln!("fake {fake:?} int {int:?} exported {exported_fake:?} {exported_int:?}");
    assert_eq!((fake.0.as_str(), int.0.as_str()), ("fake", "int"));
    assert_eq!(exported_fake, fake, "the exported model keeps every code");
    assert_eq!(exported_int, int);
    assert!((int.1 - fake.1).abs() < 0.05, "integer {} vs fake {} dB", int.1, fake.1);
    // upscale runs the quantized model too, with the checkpoint named by SWINQ_WEIGHTS.
    let (lr, up) = (set.join("LR_bicubic/X2/birdx2.png"), dir.path().join("bird_int.png"));
    let o = Command::new(env!("CARGO_BIN_EXE_swinq"))
        .args(["upscale", "--quantized", s(&q), s(&lr), "-o", s(&up)])
        .env("SWINQ_WEIGHTS", standin())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(o.status.success() && stderr(&o).contains("1 image upscaled ×2 (int"), "{}", stderr(&o));
    let img = load_rgb_u8(&up).unwrap();
    assert_eq!((img.width, img.height), (48, 40));
    let o = swinq(&["export", "--weights", s(&exported), "--quantized", s(&q), "-o", s(&dir.path().join("x.safetensors"))]);
    assert!(!o.status.success() && stderr(&o).contains("already an exported model"), "{}", stderr(&o));
    // With --embed-weights the file runs alone, as --weights.
    let embedded = dir.path().join("embedded.safetensors");
    let o = swinq(&["calibrate", "--weights", &standin(), "--calib", s(&calib), "--bits", "4", "--method", "minmax", "--patches", "1", "--embed-weights", "-o", s(&embedded)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(psnr(&["--weights", s(&embedded)]), int);
    let embedded_export = dir.path().join("embedded.int.safetensors");
    let o = swinq(&["export", "--weights", s(&embedded), "-o", s(&embedded_export)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(psnr(&["--weights", s(&embedded_export)]), int);
    // The file was calibrated with the `.pth`; it runs with the checkpoint's safetensors copy too.
    let copy = dir.path().join("copy.safetensors");
    assert!(swinq(&["convert", &standin(), s(&copy)]).status.success());
    assert_eq!(psnr(&["--weights", s(&copy), "--quantized", s(&q)]), int);
    let o = swinq(&["bench", "--weights", &standin(), "--quantized", s(&q), "--size", "16", "--repeats", "1", "--warmup", "0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let engines: Vec<&str> = v["timings"].as_array().unwrap().iter().map(|t| t["engine"].as_str().unwrap()).collect();
    assert_eq!(engines, ["fp32", "fake", "int"]);
    assert!(v["launch_cost_us"].as_f64().is_some_and(|us| us > 0.0), "{v}");
    let launches = |t: &serde_json::Value| t["dispatches"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum::<u64>();
    assert!(v["timings"].as_array().unwrap().iter().all(|t| launches(t) > 0), "{v}");
    // GPU memory: the weights (SwinIR-light's 0.88 M parameters, 3.3 MiB in f32, and their
    // fake-quantized copy) and, per engine, the activations of a 16×16 input.
    assert!(v["model_mib"].as_f64().is_some_and(|m| m > 2.0 * 3.3), "{v}");
    assert!(v["timings"].as_array().unwrap().iter().all(|t| t["activations_mib"].as_f64().is_some_and(|m| m > 0.0)), "{v}");
    // --engine times one quantized engine beside fp32.
    let o = swinq(&["bench", "--weights", &standin(), "--quantized", s(&q), "--engine", "fake", "--size", "16", "--repeats", "1", "--warmup", "0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let engines: Vec<&str> = one["timings"].as_array().unwrap().iter().map(|t| t["engine"].as_str().unwrap()).collect();
    assert_eq!(engines, ["fp32", "fake"]);
    // Multiply-adds per stage, counted by hand for SwinIR-light ×2 (C 60, MLP 120, 24
    // blocks, 8×8 windows) over 16×16 = 256 tokens: per token and block q, k, v 3·60·60,
    // proj 60·60, fc1 + fc2 2·60·120, attention 2·64·60; convs per token 3·9·60 (first),
    // 4·60·9·60 (groups), 60·9·60 (after the body), 60·9·12 (upsampling).
    let want = [("qkv", 3 * 3600 * 24), ("proj", 3600 * 24), ("mlp", 14400 * 24), ("attention", 7680 * 24), ("conv", 1620 + 4 * 32400 + 32400 + 6480)];
    for t in v["timings"].as_array().unwrap() {
        for (stage, per_token) in want {
            assert_eq!(t["stage_macs"][stage].as_f64(), Some(256.0 * per_token as f64), "{stage}: {t}");
        }
    }
}

#[test]
fn calibrate_with_phase2_records_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.safetensors");
    // HR calibration images, made LR for both phases.
    let calib = shared().join("datasets/calib/HR");
    let args = ["calibrate", "--weights", &standin(), "--calib", s(&calib), "--calib-hr", "--bits", "4", "--method", "minmax", "--patches", "1"];
    let o = swinq(&[&args[..], &["--phase2-iters", "2", "--batch", "1", "--patch", "16", "--schedule", "constant", "-o", s(&q)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("phase 2 done") && stderr(&o).contains("MiB of GPU memory"), "{}", stderr(&o));
    // No terminal, so no bar: the last iteration is logged.
    assert!(stderr(&o).contains("DQC iteration 2/2: loss "), "{}", stderr(&o));
    let file = swinq::quant::file::QuantFile::load(&q, &swinq::model::SwinConfig::light(2)).unwrap();
    assert_eq!(file.method, "minmax+dqc");
    assert_eq!(file.settings["phase2_iters"], "2");
    assert_eq!(file.settings["phase2_batch"], "1");
    assert_eq!(file.settings["phase2_schedule"], "adam-constant");
    assert_eq!(file.settings["calib_hr"], "true");
    // --phase2-data in the benchmark layout stands for its LR images (HR with --phase2-hr),
    // as --calib does; folders of both kinds are refused.
    let set5 = shared().join("datasets/Set5");
    let o = swinq(&[&args[..], &["--phase2-iters", "1", "--batch", "1", "--patch", "16", "--phase2-data", s(&set5), "-o", s(&q)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("phase 2 images: {} (LR)", set5.join("LR_bicubic/X2").display())), "{}", stderr(&o));
    let hr_only = dir.path().join("HrOnly");
    std::fs::create_dir_all(hr_only.join("HR")).unwrap();
    std::fs::copy(set5.join("HR/baby.png"), hr_only.join("HR/baby.png")).unwrap();
    let o = swinq(&[&args[..], &["--phase2-iters", "1", "--phase2-data", s(&set5), "--phase2-data", s(&hr_only), "-o", s(&q)]].concat());
    assert!(!o.status.success() && stderr(&o).contains("give folders of one kind"), "{}", stderr(&o));
    // A batch above the storage-binding limit is refused, naming the largest that fits.
    let o = swinq(&[&args[..], &["--phase2-iters", "1", "--batch", "100000", "-o", s(&q)]].concat());
    assert!(!o.status.success() && stderr(&o).contains("the largest batch that fits is"), "{}", stderr(&o));
    let o = swinq(&[&args[..], &["--phase2-iters", "1", "--patch", "20", "-o", s(&q)]].concat());
    assert!(!o.status.success() && stderr(&o).contains("--patch 20: training patches must be a multiple of the 8×8 window"), "{}", stderr(&o));
    let o = swinq(&[&args[..], &["--phase2-iters", "2", "--batch", "1", "--patch", "16", "--resume", "-o", s(&q)]].concat());
    assert!(!o.status.success() && stderr(&o).contains("no phase 2 state to resume"), "{}", stderr(&o));
}
