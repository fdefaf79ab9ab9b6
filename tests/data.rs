//! Tests of swinq::data: image I/O, Y-channel metrics, MATLAB bicubic, dataset layout.
//! The shared benchmark data is required (SWINQ_SHARED or <crate>/../shared): a missing
//! copy is a failure, not a skip.

use std::path::{Path, PathBuf};

use swinq::data::{
    benchmark_pairs, dataset_name, downscale_matlab, is_image_file, list_images, load_rgb,
    load_rgb_u8, lr_note, psnr_y, save_png, ssim_y, upscale_matlab, y_channel, LrSource, RgbImage, RgbU8,
};

fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SWINQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let ds = dir.join("datasets");
    assert!(
        ds.join("Set5/HR").is_dir(),
        "shared data not found at {} (set SWINQ_SHARED to the folder holding datasets/)",
        ds.display()
    );
    dir
}

fn set_dir(set: &str) -> PathBuf {
    shared_dir().join("datasets").join(set)
}

/// Count of differing bytes and the largest absolute difference.
fn diff(a: &RgbU8, b: &RgbU8) -> (usize, u8) {
    assert_eq!((a.width, a.height), (b.width, b.height), "size mismatch");
    a.data.iter().zip(&b.data).fold((0, 0), |(n, m), (&x, &y)| {
        let d = x.abs_diff(y);
        (n + (d != 0) as usize, m.max(d))
    })
}

/// Regenerate the LR images of `set` at `scale` from HR and compare byte for byte.
fn check_lr_exact(set: &str, scale: usize, limit: usize) -> usize {
    let pairs = benchmark_pairs(&set_dir(set), scale).unwrap();
    let mut bad = Vec::new();
    for p in pairs.iter().take(limit) {
        let lr = downscale_matlab(&load_rgb_u8(&p.hr).unwrap(), scale);
        let (n, m) = diff(&lr, &p.load_hr_lr_u8(scale).unwrap().1);
        if n > 0 {
            bad.push(format!("{} x{scale}: {n} bytes differ (max {m})", p.name));
        }
    }
    assert!(
        bad.is_empty(),
        "{set}: LR not bit-exact:\n{}",
        bad.join("\n")
    );
    pairs.len().min(limit)
}

#[test]
fn bicubic_exact_set5_all_scales() {
    for s in [2, 3, 4] {
        assert_eq!(check_lr_exact("Set5", s, usize::MAX), 5);
    }
}

#[test]
fn bicubic_exact_set14_x2() {
    assert_eq!(check_lr_exact("Set14", 2, usize::MAX), 14);
}

#[test]
fn bicubic_exact_b100_subset() {
    check_lr_exact("B100", 2, 10);
    check_lr_exact("B100", 3, 3);
    check_lr_exact("B100", 4, 3);
}

#[test]
fn bicubic_exact_calib_x2() {
    assert_eq!(check_lr_exact("calib", 2, usize::MAX), 80);
}

/// Mean PSNR-Y of MATLAB bicubic upscaling of the shipped LR images (shave = scale).
fn bicubic_psnr(set: &str, scale: usize) -> f64 {
    let pairs = benchmark_pairs(&set_dir(set), scale).unwrap();
    let sum: f64 = pairs
        .iter()
        .map(|p| {
            let up = upscale_matlab(&p.load_hr_lr_u8(scale).unwrap().1, scale);
            psnr_y(&up, &load_rgb_u8(&p.hr).unwrap(), scale)
        })
        .sum();
    sum / pairs.len() as f64
}

#[test]
fn bicubic_upsampling_psnr_table() {
    // datasets/README.md "Checks: bicubic-upsampling PSNR-Y".
    let table = [
        ("Set5", 2, 33.67),
        ("Set5", 3, 30.40),
        ("Set5", 4, 28.43),
        ("Set14", 2, 30.32),
        ("B100", 2, 29.56),
    ];
    let mut bad = Vec::new();
    for (set, s, want) in table {
        let got = bicubic_psnr(set, s);
        println!("bicubic PSNR-Y {set} x{s}: {got:.4} (README {want:.2})");
        if (got - want).abs() > 0.005 + 1e-9 {
            bad.push(format!("{set} x{s}: {got:.4} vs {want:.2}"));
        }
    }
    assert!(bad.is_empty(), "bicubic PSNR-Y off: {}", bad.join(", "));
}

#[test]
fn upscale_matches_shape_and_is_smooth() {
    // Constant images stay constant through both passes (weights sum to 1).
    let img = RgbU8 {
        width: 7,
        height: 5,
        data: [10u8, 200, 77].repeat(35),
    };
    for s in [2, 3, 4] {
        let up = upscale_matlab(&img, s);
        assert_eq!((up.width, up.height), (7 * s, 5 * s));
        assert!(up.data.chunks(3).all(|p| p == [10, 200, 77]));
        let down = downscale_matlab(&up, s);
        assert_eq!(down, img);
    }
}

#[test]
fn downscale_modcrops() {
    let img = RgbU8 {
        width: 11,
        height: 9,
        data: vec![50; 11 * 9 * 3],
    };
    let lr = downscale_matlab(&img, 4);
    assert_eq!((lr.width, lr.height), (2, 2));
}

// ---------- metrics ----------

/// A deterministic textured image (no RNG needed).
fn pattern(w: usize, h: usize, seed: u32) -> RgbU8 {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    let mut data = Vec::with_capacity(w * h * 3);
    for i in 0..w * h * 3 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let smooth = ((i / 3) % w * 255 / w) as u32;
        data.push(((smooth + x % 64) % 256) as u8);
    }
    RgbU8 {
        width: w,
        height: h,
        data,
    }
}

#[test]
fn y_channel_endpoints() {
    let img = RgbU8 {
        width: 2,
        height: 1,
        data: vec![0, 0, 0, 255, 255, 255],
    };
    let y = y_channel(&img);
    assert!((y[0] - 16.0).abs() < 1e-12);
    assert!((y[1] - 235.0).abs() < 1e-9, "white gives {}", y[1]);
}

#[test]
fn psnr_known_value_and_crop() {
    let hr = pattern(40, 30, 1);
    // SR = HR with G raised by 1 everywhere (G capped first so +1 cannot overflow).
    let mut hr2 = hr.clone();
    hr2.data
        .iter_mut()
        .skip(1)
        .step_by(3)
        .for_each(|g| *g = (*g).min(200));
    let mut sr = hr2.clone();
    sr.data.iter_mut().skip(1).step_by(3).for_each(|g| *g += 1);
    let dy = 128.553 / 255.0;
    let want = 20.0 * (255.0f64 / dy).log10();
    assert!((psnr_y(&sr, &hr2, 2) - want).abs() < 1e-9);
    assert_eq!(psnr_y(&hr2, &hr2, 0), f64::INFINITY);
    // HR larger than SR: only the top-left SR-sized part counts.
    let big = {
        let mut b = RgbU8::zeros(45, 33);
        for y in 0..30 {
            b.data[y * 45 * 3..y * 45 * 3 + 40 * 3]
                .copy_from_slice(&hr2.data[y * 40 * 3..(y + 1) * 40 * 3]);
        }
        b
    };
    assert!((psnr_y(&sr, &big, 2) - want).abs() < 1e-9);
    // Shave: a difference confined to the border does not count.
    let mut edge = hr2.clone();
    edge.data[0] = edge.data[0].wrapping_add(100);
    assert_eq!(psnr_y(&edge, &hr2, 1), f64::INFINITY);
}

/// Independent 2-D O(N·121) SSIM straight from the BasicSR formula.
fn naive_ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    let g: Vec<f64> = (0..11)
        .map(|i| (-((i as f64 - 5.0).powi(2)) / 4.5).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let (c1, c2) = (6.5025, 58.5225);
    let mut total = 0.0;
    for y in 0..h - 10 {
        for x in 0..w - 10 {
            let (mut m1, mut m2, mut s11, mut s22, mut s12) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for i in 0..11 {
                for j in 0..11 {
                    let k = g[i] * g[j] / (gs * gs);
                    let (p, q) = (a[(y + i) * w + x + j], b[(y + i) * w + x + j]);
                    m1 += k * p;
                    m2 += k * q;
                    s11 += k * p * p;
                    s22 += k * q * q;
                    s12 += k * p * q;
                }
            }
            let (v1, v2, v12) = (s11 - m1 * m1, s22 - m2 * m2, s12 - m1 * m2);
            total += ((2.0 * m1 * m2 + c1) * (2.0 * v12 + c2))
                / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2));
        }
    }
    total / ((w - 10) * (h - 10)) as f64
}

#[test]
fn ssim_identical_is_one() {
    let img = pattern(64, 48, 3);
    assert!((ssim_y(&img, &img, 4) - 1.0).abs() < 1e-12);
}

#[test]
fn ssim_constant_images_closed_form() {
    // Constant planes: variances vanish, SSIM = (2ab + C1)/(a² + b² + C1).
    let a = RgbU8 {
        width: 20,
        height: 20,
        data: vec![100; 1200],
    };
    let b = RgbU8 {
        width: 20,
        height: 20,
        data: vec![120; 1200],
    };
    let (ya, yb) = (y_channel(&a)[0], y_channel(&b)[0]);
    let c1 = (0.01f64 * 255.0).powi(2);
    let want = (2.0 * ya * yb + c1) / (ya * ya + yb * yb + c1);
    assert!((ssim_y(&a, &b, 0) - want).abs() < 1e-12);
}

#[test]
fn ssim_matches_naive_implementation() {
    let (hr, mut sr) = (pattern(37, 29, 5), pattern(37, 29, 5));
    // Perturb deterministically so the SSIM is far from 1.
    sr.data
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = v.wrapping_add((i * 7 % 23) as u8));
    let shave = 3;
    let want = naive_ssim(
        &y_channel(&sr.crop(shave, shave, 31, 23)),
        &y_channel(&hr.crop(shave, shave, 31, 23)),
        31,
        23,
    );
    let got = ssim_y(&sr, &hr, shave);
    assert!((got - want).abs() < 1e-12, "ssim {got} vs naive {want}");
    assert!(got < 0.99);
}

#[test]
fn ssim_on_real_bicubic_pair_matches_naive() {
    let p = &benchmark_pairs(&set_dir("Set5"), 4).unwrap()[0]; // baby
    let up = upscale_matlab(&p.load_hr_lr_u8(4).unwrap().1, 4);
    let hr = load_rgb_u8(&p.hr).unwrap();
    // Compare on a 64×48 window to keep the naive reference fast.
    let (sr_c, hr_c) = (up.crop(200, 200, 64, 48), hr.crop(200, 200, 64, 48));
    let want = naive_ssim(&y_channel(&sr_c), &y_channel(&hr_c), 64, 48);
    let got = ssim_y(&sr_c, &hr_c, 0);
    assert!((got - want).abs() < 1e-12, "ssim {got} vs naive {want}");
    let full = ssim_y(&up, &hr, 4);
    assert!(full > 0.8 && full < 1.0, "baby x4 bicubic SSIM {full}");
}

#[test]
fn ssim_speed_one_megapixel() {
    // B100-style evaluation needs SSIM to be cheap: separable filtering, not O(N·121).
    let (a, b) = (pattern(1000, 1000, 1), pattern(1000, 1000, 2));
    let t = std::time::Instant::now();
    let v = ssim_y(&a, &b, 2);
    let dt = t.elapsed().as_secs_f64();
    println!("SSIM-Y 1000x1000: {dt:.3} s (value {v:.4})");
    assert!(v.is_finite() && dt < 5.0, "SSIM on 1 MPixel took {dt:.2} s");
}

// ---------- image I/O ----------

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn load_gray_png_replicates() {
    let d = tmp();
    let p = d.path().join("g.png");
    image::GrayImage::from_raw(3, 2, vec![0, 1, 2, 128, 254, 255])
        .unwrap()
        .save(&p)
        .unwrap();
    let img = load_rgb(&p).unwrap();
    assert_eq!((img.width, img.height), (3, 2));
    for c in 0..3 {
        assert_eq!(img.data[c * 6 + 3], 128.0 / 255.0);
        assert_eq!(img.data[c * 6 + 5], 1.0);
    }
    let u = load_rgb_u8(&p).unwrap();
    assert_eq!(&u.data[9..12], &[128, 128, 128]);
}

#[test]
fn load_rgba_drops_alpha() {
    let d = tmp();
    let p = d.path().join("a.PNG");
    image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 0, 200, 100, 50, 128])
        .unwrap()
        .save(&p)
        .unwrap();
    assert_eq!(
        load_rgb_u8(&p).unwrap().data,
        vec![10, 20, 30, 200, 100, 50]
    );
    let f = load_rgb(&p).unwrap();
    assert_eq!(
        f.data,
        [10.0f32, 200.0, 20.0, 100.0, 30.0, 50.0]
            .map(|v| v / 255.0)
            .to_vec()
    );
}

#[test]
fn load_16bit_keeps_precision() {
    let d = tmp();
    let p = d.path().join("h.png");
    let raw: Vec<u16> = vec![0, 1, 65535, 32768, 257, 12345];
    image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(2, 1, raw.clone())
        .unwrap()
        .save(&p)
        .unwrap();
    let img = load_rgb(&p).unwrap();
    // planar: R = [0, 32768], G = [1, 257], B = [65535, 12345]
    let want: Vec<f32> = [0u16, 32768, 1, 257, 65535, 12345]
        .iter()
        .map(|&v| v as f32 / 65535.0)
        .collect();
    assert_eq!(img.data, want);
    // 16-bit gray too.
    let pg = d.path().join("hg.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(1, 1, vec![3u16])
        .unwrap()
        .save(&pg)
        .unwrap();
    assert_eq!(load_rgb(&pg).unwrap().data, vec![3.0 / 65535.0; 3]);
}

#[test]
fn truncated_png_error_names_file() {
    let d = tmp();
    let good = d.path().join("good.png");
    save_png(&pattern(32, 32, 9), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = d.path().join("broken_file.png");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    for err in [
        load_rgb(&bad).unwrap_err(),
        load_rgb_u8(&bad).map(|_| ()).unwrap_err(),
    ] {
        let msg = format!("{err:#}");
        assert!(msg.contains("broken_file.png"), "{msg}");
        assert!(!msg.contains('\n'), "multi-line error: {msg}");
    }
    let empty = d.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(format!("{:#}", load_rgb(&empty).unwrap_err()).contains("empty.png"));
    let missing = d.path().join("missing.png");
    assert!(format!("{:#}", load_rgb(&missing).unwrap_err()).contains("missing.png"));
}

#[test]
fn save_png_roundtrip_and_no_leftovers() {
    let d = tmp();
    let img = pattern(17, 9, 4);
    let p = d.path().join("out.png");
    save_png(&img, &p).unwrap();
    save_png(&img, &p).unwrap(); // overwrite works
    assert_eq!(load_rgb_u8(&p).unwrap(), img);
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.png")]);
}

#[test]
fn save_png_missing_dir_fails_cleanly() {
    let d = tmp();
    let p = d.path().join("no_such_dir").join("x.png");
    let msg = format!("{:#}", save_png(&pattern(4, 4, 1), &p).unwrap_err());
    assert!(msg.contains("x.png") && !msg.contains('\n'), "{msg}");
    assert!(!p.exists() && !d.path().join("no_such_dir").exists());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn to_u8_clamps_and_rounds_half_to_even() {
    let mut img = RgbImage::zeros(4, 1);
    img.data[0] = -0.3;
    img.data[1] = 1.7;
    img.data[2] = 0.5; // 127.5 → 128 (even)
                       // Find values whose ×255 is exactly k + 0.5 in f32 with k even: must round down.
    let ties: Vec<(f32, u8)> = (0..254u32)
        .step_by(2)
        .filter_map(|k| {
            let v = (k as f32 + 0.5) / 255.0;
            (v * 255.0 == k as f32 + 0.5).then_some((v, k as u8))
        })
        .collect();
    assert!(!ties.is_empty());
    img.data[3] = ties[0].0;
    let u = img.to_u8();
    assert_eq!(u.data[0], 0);
    assert_eq!(u.data[3], 255);
    assert_eq!(u.data[6], 128);
    assert_eq!(u.data[9], ties[0].1);
    for (v, k) in ties {
        let one = RgbImage {
            width: 1,
            height: 1,
            data: vec![v; 3],
        };
        assert_eq!(one.to_u8().data[0], k);
    }
    // u8 → f32 → u8 is lossless.
    let p = pattern(9, 7, 2);
    assert_eq!(p.to_f32().to_u8(), p);
}

#[test]
fn image_extensions() {
    for ok in ["a.png", "b.JPG", "c.jpeg", "d.Bmp", "e.tif", "f.TIFF"] {
        assert!(is_image_file(ok), "{ok}");
    }
    for no in ["a.txt", "png", "b.png.bak", "c"] {
        assert!(!is_image_file(no), "{no}");
    }
}

// ---------- dataset layout ----------

#[test]
fn set5_pairs() {
    let dir = set_dir("Set5");
    assert_eq!(dataset_name(&dir), "Set5");
    let pairs = benchmark_pairs(&dir, 3).unwrap();
    let names: Vec<_> = pairs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["baby", "bird", "butterfly", "head", "woman"]);
    assert!(matches!(&pairs[1].lr, LrSource::File(f) if f.ends_with("LR_bicubic/X3/birdx3.png")));
    assert!(pairs[1].hr.ends_with("HR/bird.png"));
    let lr = pairs[1].load_hr_lr(3).unwrap().1;
    let hr = load_rgb(&pairs[1].hr).unwrap();
    assert_eq!(
        (lr.width * 3, lr.height * 3),
        (hr.width - hr.width % 3, hr.height - hr.height % 3)
    );
}

#[test]
fn dataset_errors_are_clear() {
    let d = tmp();
    let root = d.path().join("MySet");
    let err = |r: anyhow::Result<Vec<swinq::data::Pair>>| format!("{:#}", r.unwrap_err());
    assert!(err(benchmark_pairs(&root, 2)).contains("MySet"));
    std::fs::create_dir_all(root.join("HR")).unwrap();
    assert!(err(benchmark_pairs(&root, 2)).contains("no image files"));
    std::fs::create_dir_all(root.join("LR_bicubic/X2")).unwrap();
    assert!(err(benchmark_pairs(&root, 2)).contains("no image files"));
    save_png(&pattern(8, 8, 1), root.join("HR/a.png")).unwrap();
    save_png(&pattern(8, 8, 1), root.join("HR/b.png")).unwrap();
    save_png(&pattern(4, 4, 1), root.join("LR_bicubic/X2/ax2.png")).unwrap();
    let msg = err(benchmark_pairs(&root, 2));
    assert!(msg.contains("b.png") && msg.contains("bx2.png"), "{msg}");
    save_png(&pattern(4, 4, 1), root.join("LR_bicubic/X2/bx2.png")).unwrap();
    assert_eq!(benchmark_pairs(&root, 2).unwrap().len(), 2);
    // Missing HR folder.
    let other = d.path().join("Other");
    std::fs::create_dir_all(other.join("LR_bicubic/X2")).unwrap();
    assert!(err(benchmark_pairs(&other, 2)).contains("HR"));
    assert_eq!(dataset_name(&root), "MySet");
    // An HR image too small for the scale: a clear error when its LR is made.
    let small = d.path().join("Small");
    std::fs::create_dir_all(small.join("HR")).unwrap();
    save_png(&pattern(3, 5, 1), small.join("HR/a.png")).unwrap();
    let msg = format!("{:#}", benchmark_pairs(&small, 4).unwrap()[0].load_hr_lr(4).unwrap_err());
    assert!(msg.contains("a.png") && msg.contains("too small"), "{msg}");
}

/// Without an LR folder for the scale (or with the HR images directly in the folder),
/// the LR images are the HR ones downscaled as the shipped LR files were made: the same bytes.
#[test]
fn lr_made_from_hr_matches_the_shipped_files() {
    let d = tmp();
    let set5 = set_dir("Set5");
    let hr_only = d.path().join("HrOnly");
    let flat = d.path().join("Flat");
    std::fs::create_dir_all(hr_only.join("HR")).unwrap();
    std::fs::create_dir_all(hr_only.join("LR_bicubic/X2")).unwrap(); // another scale's folder only
    std::fs::create_dir_all(&flat).unwrap();
    for name in ["baby", "bird"] {
        std::fs::copy(set5.join(format!("HR/{name}.png")), hr_only.join(format!("HR/{name}.png"))).unwrap();
        std::fs::copy(set5.join(format!("HR/{name}.png")), flat.join(format!("{name}.png"))).unwrap();
    }
    let shipped = benchmark_pairs(&set5, 3).unwrap();
    assert_eq!(lr_note(&set5, &shipped), None);
    for dir in [&hr_only, &flat] {
        let pairs = benchmark_pairs(dir, 3).unwrap();
        assert_eq!(pairs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["baby", "bird"]);
        assert!(lr_note(dir, &pairs).unwrap().contains("X3"));
        for (made, file) in pairs.iter().zip(&shipped) {
            assert_eq!(made.lr, LrSource::FromHr(3));
            assert_eq!(made.load_hr_lr_u8(3).unwrap().1.data, file.load_hr_lr_u8(3).unwrap().1.data, "{}", made.name);
            assert_eq!(made.load_hr_lr(3).unwrap().1.data, file.load_hr_lr(3).unwrap().1.data);
        }
    }
}

#[test]
fn list_images_sorted_and_filtered() {
    let d = tmp();
    assert!(list_images(d.path()).is_err());
    for n in ["c.png", "a.bmp", "b.txt", "B.jpg"] {
        std::fs::write(d.path().join(n), b"x").unwrap();
    }
    let names: Vec<_> = list_images(d.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["B.jpg", "a.bmp", "c.png"]);
    assert!(list_images(&d.path().join("nope")).is_err());
}

/// Every shipped LR file of every set (slow in the default profile: run with
/// `cargo test --release --test data -- --ignored`).
#[test]
#[ignore]
fn bicubic_exact_all_sets_exhaustive() {
    for (set, scales) in [
        ("Set5", &[2, 3, 4][..]),
        ("Set14", &[2, 3, 4]),
        ("B100", &[2, 3, 4]),
        ("Urban100", &[2, 4]),
        ("Manga109", &[2, 4]),
        ("calib", &[2, 3, 4]),
    ] {
        for &s in scales {
            let n = check_lr_exact(set, s, usize::MAX);
            println!("{set} x{s}: {n} LR files bit-exact");
        }
    }
}

/// A PNG whose EXIF says "rotate 90° clockwise to display" loads upright.
#[test]
fn exif_orientation_is_applied() {
    let (w, h) = (3u32, 2u32);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 13) as u8).collect();
    // Big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, 1 value: 6.
    let exif = [b"MM\0*".as_slice(), &[0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]].concat();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotated.png");
    {
        let mut enc = png::Encoder::new(std::fs::File::create(&path).unwrap(), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer.write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif).unwrap();
        writer.write_image_data(&pixels).unwrap();
    }
    let stored = image::RgbImage::from_raw(w, h, pixels).unwrap();
    let upright = image::imageops::rotate90(&stored);
    let img = load_rgb_u8(&path).unwrap();
    assert_eq!((img.width, img.height), (2, 3));
    assert_eq!(img.data, upright.into_raw());
    assert_eq!(load_rgb(&path).unwrap().to_u8(), img);
}

/// The PNG text check behind `upscale`'s reruns: a marked PNG (tEXt or, for names beyond
/// Latin-1, iTXt) is known; an unmarked PNG, a JPEG, a cut file and a missing one are not.
#[test]
fn png_text_marks_are_read_back() {
    use swinq::data::{png_has_text, save_png_with_text};
    let dir = tempfile::tempdir().unwrap();
    let img = RgbU8 { width: 4, height: 3, data: vec![7; 36] };
    let marked = dir.path().join("marked.png");
    save_png_with_text(&img, &marked, &[("swinq-upscale-of", "cat.png"), ("other", "图.png")]).unwrap();
    assert!(png_has_text(&marked, ("swinq-upscale-of", "cat.png")));
    assert!(png_has_text(&marked, ("other", "图.png")), "iTXt");
    assert!(!png_has_text(&marked, ("swinq-upscale-of", "dog.png")));
    let plain = dir.path().join("plain.png");
    save_png(&img, &plain).unwrap();
    assert!(!png_has_text(&plain, ("swinq-upscale-of", "cat.png")));
    let bytes = std::fs::read(&marked).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..20]).unwrap();
    assert!(!png_has_text(&cut, ("swinq-upscale-of", "cat.png")));
    let jpeg = dir.path().join("x.jpg");
    std::fs::write(&jpeg, [0xff, 0xd8, 0xff, 0xe0, 0, 16]).unwrap();
    assert!(!png_has_text(&jpeg, ("swinq-upscale-of", "cat.png")));
    assert!(!png_has_text(&dir.path().join("missing.png"), ("swinq-upscale-of", "cat.png")));
}

/// JPEG, BMP and TIFF inputs decode to the pixels written (BMP and TIFF exactly, JPEG
/// within its loss), at odd sizes.
#[test]
fn jpeg_bmp_and_tiff_inputs_decode() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (13u32, 7u32);
    // A smooth gradient, so that JPEG keeps it close.
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 15) as u8, (y * 30) as u8, 128]));
    for ext in ["jpg", "jpeg", "bmp", "tif", "tiff"] {
        let path = dir.path().join(format!("in.{ext}"));
        img.save(&path).unwrap();
        assert!(is_image_file(&path), "{ext}");
        let got = load_rgb_u8(&path).unwrap();
        assert_eq!((got.width, got.height), (w as usize, h as usize), "{ext}");
        let worst = got.data.iter().zip(img.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let lossless = !ext.starts_with("jp");
        assert!(if lossless { worst == 0 } else { worst <= 12 }, "{ext}: pixels differ by up to {worst}");
        let f = load_rgb(&path).unwrap();
        assert_eq!((f.width, f.height), (w as usize, h as usize), "{ext}");
    }
}
