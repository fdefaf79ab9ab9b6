//! `swinq report`: Markdown/JSON rendering and the figures from hand-made results (no
//! GPU), and one tiny end-to-end run of the CLI on lavapipe.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::shared;
use swinq::data::{downscale_matlab, load_rgb_u8, save_png, RgbU8};
use swinq::eval::{EvalReport, ImageScore};
use swinq::report::{
    caption, compose, layout, most_different, plot_psnr_vs_bits, render_json, render_markdown, zoom_nearest, CropSpec,
    ModelEntry, Region, Report, Settings, Tile, PANEL,
};

fn eval(dataset: &str, psnr: f64, ssim: f64) -> EvalReport {
    EvalReport {
        dataset: dataset.into(),
        scale: 2,
        engine: "fake".into(),
        psnr_y: psnr,
        ssim_y: ssim,
        images: vec![ImageScore { name: "baby".into(), psnr_y: psnr, ssim_y: ssim, tile: None }],
        seconds: 1.0,
    }
}

fn model(label: &str, method: &str, bits: Option<u32>, psnr: [f64; 2]) -> ModelEntry {
    ModelEntry {
        label: label.into(),
        method: method.into(),
        bits,
        file: bits.map(|b| format!("q/{method}_{b}.safetensors")),
        file_sha256: bits.map(|b| format!("{b}{}", "f".repeat(63))),
        calibration: bits.map_or_else(BTreeMap::new, |_| BTreeMap::from([("patches".to_string(), "32".to_string())])),
        results: vec![eval("Set5", psnr[0], 0.95), eval("Set14", psnr[1], 0.90)],
    }
}

/// FP and two methods at 2, 3 and 4 bits, on two sets.
fn sample() -> Report {
    let mut models = vec![model("FP32", "fp32", None, [36.37, 32.1])];
    for (b, d, s) in [(2, 28.0, 30.5), (3, 32.0, 33.5), (4, 34.9, 35.8)] {
        models.push(model(&format!("dobi W{b}A{b}"), "dobi", Some(b), [d, d - 3.0]));
        models.push(model(&format!("2dquant+ W{b}A{b}"), "sorted-tail+bias", Some(b), [s, s - 3.0]));
    }
    Report {
        settings: Settings {
            title: "Test | report".into(),
            swinq_version: "0.1.0".into(),
            command: "swinq report --weights w.pth".into(),
            checkpoint: "w.pth".into(),
            checkpoint_sha256: "0123456789abcdef0123456789abcdef".into(),
            config: "SwinIR x2".into(),
            scale: 2,
            tile: None,
            max_images: Some(1),
            adapter: "lavapipe".into(),
            crops: "centre".into(),
        },
        datasets: vec!["Set5".into(), "Set14".into()],
        models,
        comparisons: vec![],
    }
}

#[test]
fn markdown_table_has_a_row_per_model_and_a_column_per_set() {
    let r = sample();
    let md = render_markdown(&r);
    eprintln!("{md}");
    assert!(md.starts_with("# Test | report\n"));
    assert!(md.contains("| model | bits | Set5 (1) | Set14 (1) |\n|---|---|---|---|\n"), "{md}");
    assert!(md.contains("| FP32 | 32 | 36.3700 / 0.9500 | 32.1000 / 0.9000 |"), "{md}");
    assert!(md.contains("| dobi W2A2 | 2 | 28.0000 / 0.9500 | 25.0000 / 0.9000 |"), "{md}");
    // The settings and the full checkpoint hash are listed, and the caption line.
    assert!(md.contains("0123456789abcdef0123456789abcdef"));
    assert!(md.contains(&caption(&r)));
    assert!(md.contains("![PSNR-Y against bits](psnr_vs_bits.png)"));
    assert!(md.contains("| `q/dobi_2.safetensors` | `2fffffffffff` | dobi | W2A2 | patches=32 |"), "{md}");
    let cap = caption(&r);
    assert!(cap.contains("sha256 0123456789ab ") && cap.contains("x2") && cap.contains("dobi W4A4"), "{cap}");
    assert!(cap.is_ascii());
}

#[test]
fn json_has_settings_models_and_per_image_scores() {
    let r = sample();
    let v: serde_json::Value = serde_json::from_str(&render_json(&r).unwrap()).unwrap();
    assert_eq!(v["settings"]["checkpoint_sha256"], "0123456789abcdef0123456789abcdef");
    assert_eq!(v["settings"]["scale"], 2);
    assert_eq!(v["datasets"], serde_json::json!(["Set5", "Set14"]));
    assert_eq!(v["models"].as_array().unwrap().len(), 7);
    assert_eq!(v["models"][0]["bits"], serde_json::Value::Null);
    assert_eq!(v["models"][1]["bits"], 2);
    assert_eq!(v["models"][1]["results"][1]["dataset"], "Set14");
    assert_eq!(v["models"][1]["results"][0]["images"][0]["name"], "baby");
}

fn distinct_colours(img: &RgbU8) -> usize {
    let mut set = std::collections::HashSet::new();
    img.data.chunks_exact(3).for_each(|p| {
        set.insert([p[0], p[1], p[2]]);
    });
    set.len()
}

#[test]
fn plot_is_a_png_of_the_right_size_and_not_blank() {
    let r = sample();
    let img = plot_psnr_vs_bits(&r).unwrap();
    assert_eq!(img.height, PANEL.1 as usize + 30);
    assert!(img.width >= 2 * PANEL.0 as usize);
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path();
    let path = swinq::report::write_plot(&r, report_dir).unwrap();
    let back = load_rgb_u8(&path).unwrap();
    assert_eq!((back.width, back.height), (img.width, img.height));
    assert_eq!(back.data, img.data);
    let non_white = img.data.chunks_exact(3).filter(|p| p != &[255, 255, 255]).count();
    assert!(non_white > img.width * img.height / 50, "only {non_white} drawn pixels");
    assert!(distinct_colours(&img) > 10, "lines of several colours and anti-aliased text");
    // The caption line at the bottom has text.
    let caption_band = img.data[(img.height - 28) * img.width * 3..].chunks_exact(3).filter(|p| p != &[255, 255, 255]);
    assert!(caption_band.count() > 200);
    // The settings travel in tEXt chunks too.
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("tEXtComment") && text.contains("sha256 0123456789ab"));
    assert!(text.contains("0123456789abcdef0123456789abcdef"));
    // Text beyond Latin-1 (here a command with a CJK path) still writes.
    let mut r = r;
    r.settings.command = "swinq report -o 報告".into();
    let path = swinq::report::write_plot(&r, report_dir).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("iTXtswinq-command"));
    assert_eq!(load_rgb_u8(&path).unwrap().data, img.data);
}

#[test]
fn comparison_tiles_sit_side_by_side_with_labels_under_them() {
    let colours = [[200, 30, 30], [30, 200, 30], [30, 30, 200]];
    let tiles: Vec<Tile> = colours
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let small = RgbU8 { width: 32, height: 32, data: c.repeat(32 * 32) };
            Tile { image: zoom_nearest(&small, 3), label: vec![format!("tile {i}"), "30.00 dB".into()] }
        })
        .collect();
    let (title, cap) = ("Set5 / baby", "swinq 0.1.0 | checkpoint sha256 0123456789ab | x2");
    let l = layout(&tiles, title, cap);
    let img = compose(&tiles, title, cap).unwrap();
    assert_eq!((img.width, img.height), (l.width, l.height));
    let px = |x: usize, y: usize| &img.data[(y * img.width + x) * 3..][..3];
    for (i, &(x0, y0)) in l.tiles.iter().enumerate() {
        // Each tile is 96×96, in order left to right, not overlapping the next.
        assert_eq!(px(x0, y0), colours[i]);
        assert_eq!(px(x0 + 95, y0 + 95), colours[i]);
        assert_eq!(px(x0 + 96, y0 + 50), [255, 255, 255]);
        if i > 0 {
            assert!(x0 >= l.tiles[i - 1].0 + 96 + 10);
        }
        assert_eq!(y0, l.tiles[0].1);
        // The label band under the tile has dark (text) pixels.
        let dark = (l.label_top..l.caption_top)
            .flat_map(|y| (x0..x0 + 96).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y).iter().all(|&v| v < 128))
            .count();
        assert!(dark > 30, "tile {i}: {dark} label pixels");
    }
    let caption_ink = (l.caption_top..img.height)
        .flat_map(|y| (0..img.width).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) != [255, 255, 255])
        .count();
    assert!(caption_ink > 100);
    let title_ink = (0..l.tiles[0].1).flat_map(|y| (0..img.width).map(move |x| (x, y))).filter(|&(x, y)| px(x, y) != [255, 255, 255]);
    assert!(title_ink.count() > 50);
}

#[test]
fn crop_specs_parse() {
    let at = |x, y, size| Region::At { x, y, size };
    let c = CropSpec::parse("baby:10,20,96").unwrap();
    assert_eq!(c, CropSpec { dataset: None, image: Some("baby".into()), region: at(10, 20, 96) });
    let c = CropSpec::parse("Set5/baby:0,0,8").unwrap();
    assert_eq!((c.dataset.as_deref(), c.image.as_deref()), (Some("Set5"), Some("baby")));
    assert_eq!(CropSpec::parse("Set5/baby:auto").unwrap().region, Region::Auto);
    assert_eq!(CropSpec::parse("auto").unwrap(), CropSpec { dataset: None, image: None, region: Region::Auto });
    for bad in ["baby", "baby:1,2", "baby:1,2,0", ":1,2,3", "baby:a,b,c", ":auto"] {
        assert!(CropSpec::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn auto_crop_finds_the_most_different_window() {
    let base = RgbU8 { width: 64, height: 48, data: (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect() };
    let mut a = base.clone();
    let mut b = base.clone();
    // A strong change in a 6×6 patch at (40, 30) in one, a weak one at (5, 5) in the other.
    for y in 30..36 {
        for x in 40..46 {
            a.data[(y * 64 + x) * 3] ^= 0x80;
        }
    }
    b.data[(5 * 64 + 5) * 3] ^= 0x10;
    let (x, y) = most_different(&base, &[&a, &b], 16);
    assert!(x <= 40 && x + 16 >= 46 && y <= 30 && y + 16 >= 36, "({x}, {y})");
    assert_eq!(most_different(&base, &[&base], 16), (0, 0), "ties go to the first window");
    assert_eq!(most_different(&base, &[&a], 100), (0, 0), "the window shrinks to the image");
}

// ---------------------------------------------------------------- end to end

fn swinq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swinq")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run swinq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two 48×48 crops of Set5 HR images with their ×2 LR made by the MATLAB bicubic.
fn tiny_dataset(dir: &Path) -> PathBuf {
    let set = shared().join("datasets/Set5");
    let root = dir.join("Tiny");
    std::fs::create_dir_all(root.join("HR")).unwrap();
    std::fs::create_dir_all(root.join("LR_bicubic/X2")).unwrap();
    for (name, x, y) in [("bird", 100, 80), ("head", 120, 100)] {
        let hr = load_rgb_u8(set.join(format!("HR/{name}.png"))).unwrap().crop(x, y, 48, 48);
        save_png(&hr, root.join(format!("HR/{name}.png"))).unwrap();
        save_png(&downscale_matlab(&hr, 2), root.join(format!("LR_bicubic/X2/{name}x2.png"))).unwrap();
    }
    root
}

/// A quantized file for the stand-in checkpoint with bounds ±`r` everywhere (no GPU).
fn quant_file(dir: &Path, bits: u32, r: f32, hash: &str) -> PathBuf {
    let w = swinq::model::checkpoint::load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).unwrap();
    let n = swinq::quant::all_names(&w.config).len();
    let params = vec![swinq::quant::QParams { lower: -r, upper: r, bias: 0.0, _pad: 0.0 }; n];
    let file = swinq::quant::file::QuantFile {
        bits,
        method: "fixed".into(),
        scale: 2,
        source_sha256: hash.into(),
        weights_sha256: None,
        settings: BTreeMap::from([("note".to_string(), "test bounds".to_string())]),
        params,
    };
    let path = dir.join(format!("fixed{bits}.safetensors"));
    file.save(&w.config, None, &path).unwrap();
    path
}

#[test]
fn cli_report_end_to_end_on_a_tiny_set() {
    let start = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let set = tiny_dataset(dir.path());
    let weights = shared().join("weights/swinir_light_x2_standin.pth");
    let hash = swinq::model::checkpoint::sha256_file(&weights).unwrap();
    let q8 = quant_file(dir.path(), 8, 8.0, &hash);
    let out = dir.path().join("report");
    let o = swinq(&[
        "report", "--weights", s(&weights), "--dataset", s(&set), "--quantized", s(&q8), "--max-images", "1",
        "--crop", "head:0,0,16", "--crop", "bird:8,8,24", "--crop", "Tiny/bird:auto", "--title", "tiny", "-o", s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("| model | bits | Tiny (1) |") && table.contains("| fixed W8A8 | 8 |"), "stdout: {table}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    eprintln!("{md}");
    assert!(md.starts_with("# tiny\n") && md.contains("| FP32 | 32 |") && md.contains("| fixed W8A8 | 8 |"), "{md}");
    assert!(md.contains(&hash));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let fp = v["models"][0]["results"][0]["psnr_y"].as_f64().unwrap();
    assert!(fp > 25.0, "FP PSNR {fp}");
    assert_eq!(v["models"][0]["results"][0]["images"].as_array().unwrap().len(), 1);
    let plot = load_rgb_u8(out.join("psnr_vs_bits.png")).unwrap();
    assert!(plot.width >= PANEL.0 as usize);
    // HR | bicubic | FP | fixed W8A8: 4 tiles of 24·3 = 72 px. `head` is outside the
    // evaluated image but gets its SR tiles all the same.
    let cmp = load_rgb_u8(out.join("comparisons/Tiny_bird.png")).unwrap();
    assert!(cmp.width >= 4 * 72 && cmp.height > 72);
    assert!(out.join("comparisons/Tiny_head.png").is_file());
    let auto = load_rgb_u8(out.join("comparisons/Tiny_bird_2.png")).unwrap();
    assert!(auto.width >= 4 * 48 * 3, "auto crops are 48×48 (the whole SR) here");
    assert_eq!((v["comparisons"][2]["auto"].as_bool(), v["comparisons"][2]["size"].as_u64()), (Some(true), Some(48)));
    for c in 0..3 {
        let labels: Vec<&str> = v["comparisons"][c]["tiles"].as_array().unwrap().iter().map(|t| t["label"].as_str().unwrap()).collect();
        assert_eq!(labels[1..], ["Bicubic", "FP32", "fixed W8A8"], "{labels:?}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".swinq")).collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    eprintln!("end to end in {:.1} s", start.elapsed().as_secs_f64());

    // Run again into the same folder: the stored scores are reused, the figures redrawn.
    let args = |extra: &[&str]| -> Vec<String> {
        let base = ["report", "--weights", s(&weights), "--dataset", s(&set), "--quantized", s(&q8), "--crop", "head:0,0,16", "--title", "tiny", "-o", s(&out)];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let o = swinq(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        (stderr(&o), std::fs::read_to_string(out.join("report.md")).unwrap())
    };
    let (log, again) = run(&["--max-images", "1"]);
    assert!(log.contains("FP32 Tiny: stored in") && log.contains("fixed W8A8 Tiny: stored in"), "{log}");
    assert!(again.contains(&md.lines().find(|l| l.starts_with("| FP32")).unwrap().to_string()), "{again}");
    assert!(out.join("scores/FP32__Tiny.json").is_file() && out.join("scores/fixed_W8A8__Tiny.json").is_file());
    // The first run's `bird` figures, which this run does not make, are gone.
    assert!(log.contains("removed 2 comparison figures"), "{log}");
    assert!(out.join("comparisons/Tiny_head.png").is_file() && !out.join("comparisons/Tiny_bird.png").exists() && !out.join("comparisons/Tiny_bird_2.png").exists());
    let (log, _) = run(&["--max-images", "1", "--recompute"]);
    assert!(!log.contains("stored in"), "{log}");
    let (log, _) = run(&[]);
    assert!(log.contains("FP32 Tiny: ") && log.contains("was made with other settings; evaluating again"), "{log}");
    assert!(log.contains("(2 images)") && log.contains("FP32 Tiny 2/2: head "), "per-image lines without a terminal: {log}");

    // Clear errors, before any GPU work.
    let other = quant_file(dir.path(), 4, 4.0, &"0".repeat(64));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--quantized", s(&other), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("made for the checkpoint"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&dir.path().join("nope")), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("dataset folder not found"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--crop", "bird:40,40,24", "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("outside the 48×48 image"), "{}", stderr(&o));
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "-o", s(&file.join("sub"))]);
    assert!(!o.status.success() && stderr(&o).contains("cannot create the report folder"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--quantized", s(&q8), "--quantized", s(&q8), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("given twice"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--crop", "Set5/bird:0,0,8", "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("no set named Set5"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&q8), "--dataset", s(&set), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("a swinq quantized model (swinq-quant-1), not a float checkpoint"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--crop", "bird:18446744073709551615,0,1", "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("outside the 48×48 image"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "-o", s(&set.join("HR/report"))]);
    assert!(!o.status.success() && stderr(&o).contains("inside the --dataset folder"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&set), "--engine", "fake", "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("give --quantized"), "{}", stderr(&o));
    let o = swinq(&["report", "--weights", s(&weights), "--dataset", s(&file), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("is a file, not a dataset folder"), "{}", stderr(&o));
}
