//! PSNR and SSIM on the Y channel, computed as BasicSR / SwinIR do (SPEC §2).
//!
//! BasicSR's `to_y_channel` yields float Y (not rounded), PSNR uses MSE over the shaved
//! Y plane, and SSIM is `_ssim`: cv2.filter2D with an 11×11 Gaussian (σ 1.5), keeping
//! only the 'valid' part ([5:-5, 5:-5]). We compute everything in f64.

use super::image_io::RgbU8;

/// BT.601 luma of 8-bit RGB, as float in [16, 235]; `out[y*W + x]`.
pub fn y_channel(img: &RgbU8) -> Vec<f64> {
    img.data
        .chunks_exact(3)
        .map(|p| {
            16.0 + (65.481 * p[0] as f64 + 128.553 * p[1] as f64 + 24.966 * p[2] as f64) / 255.0
        })
        .collect()
}

/// Y planes of SR and HR after the protocol's crops: HR cut to SR's size (top-left),
/// then `shave` pixels dropped from every border of both. Returns (sr, hr, w, h).
fn shaved_y_pair(sr: &RgbU8, hr: &RgbU8, shave: usize) -> (Vec<f64>, Vec<f64>, usize, usize) {
    assert!(
        hr.width >= sr.width && hr.height >= sr.height,
        "HR ({}x{}) is smaller than SR ({}x{})",
        hr.width,
        hr.height,
        sr.width,
        sr.height
    );
    assert!(
        sr.width > 2 * shave && sr.height > 2 * shave,
        "image {}x{} is too small to shave {shave} pixels",
        sr.width,
        sr.height
    );
    let (w, h) = (sr.width - 2 * shave, sr.height - 2 * shave);
    let sr_y = y_channel(&sr.crop(shave, shave, w, h));
    let hr_y = y_channel(&hr.crop(shave, shave, w, h));
    (sr_y, hr_y, w, h)
}

/// PSNR on Y in dB (peak 255); `f64::INFINITY` for identical images.
/// Panics if HR is smaller than SR or nothing is left after shaving.
pub fn psnr_y(sr: &RgbU8, hr: &RgbU8, shave: usize) -> f64 {
    let (a, b, _, _) = shaved_y_pair(sr, hr, shave);
    let mse = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// The smallest LR side whose ×`scale` SR image can be scored: SSIM's 11×11 window
/// must fit in the SR image less its `scale`-pixel border.
pub fn min_scored_lr_side(scale: usize) -> usize {
    (11 + 2 * scale).div_ceil(scale)
}

/// SSIM on Y (mean of the valid SSIM map). Panics if HR is smaller than SR or the
/// shaved image is smaller than the 11×11 window.
pub fn ssim_y(sr: &RgbU8, hr: &RgbU8, shave: usize) -> f64 {
    let (a, b, w, h) = shaved_y_pair(sr, hr, shave);
    ssim_plane(&a, &b, w, h)
}

/// cv2.getGaussianKernel(11, 1.5): exp(-x²/(2σ²)) normalised to sum 1.
fn gaussian_11() -> [f64; 11] {
    let mut k = [0f64; 11];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - 5.0;
        *v = (-x * x / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// 'Valid' correlation with outer(k, k), done separably: rows then columns.
/// Output is (h-10)×(w-10); the window is symmetric so correlation = convolution.
fn filter_valid(src: &[f64], w: usize, h: usize, k: &[f64; 11]) -> Vec<f64> {
    let (ow, oh) = (w - 10, h - 10);
    let mut tmp = vec![0f64; ow * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..ow {
            tmp[y * ow + x] = k.iter().zip(&row[x..x + 11]).map(|(a, b)| a * b).sum();
        }
    }
    let mut out = vec![0f64; ow * oh];
    for y in 0..oh {
        let dst = &mut out[y * ow..(y + 1) * ow];
        for (i, &kv) in k.iter().enumerate() {
            let srow = &tmp[(y + i) * ow..(y + i + 1) * ow];
            for (d, s) in dst.iter_mut().zip(srow) {
                *d += kv * s;
            }
        }
    }
    out
}

/// SSIM of two equally sized planes with 8-bit dynamic range (BasicSR `_ssim`).
pub fn ssim_plane(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    assert!(
        w >= 11 && h >= 11,
        "SSIM needs at least 11x11 pixels, got {w}x{h}"
    );
    assert!(
        a.len() == w * h && b.len() == w * h,
        "plane sizes do not match {w}x{h}"
    );
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    let k = gaussian_11();
    let prod = |f: fn(f64, f64) -> f64| a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect::<Vec<_>>();
    let mu1 = filter_valid(a, w, h, &k);
    let mu2 = filter_valid(b, w, h, &k);
    let e11 = filter_valid(&prod(|x, _| x * x), w, h, &k);
    let e22 = filter_valid(&prod(|_, y| y * y), w, h, &k);
    let e12 = filter_valid(&prod(|x, y| x * y), w, h, &k);
    let mut sum = 0f64;
    for i in 0..mu1.len() {
        let (m1, m2) = (mu1[i], mu2[i]);
        let (s11, s22, s12) = (e11[i] - m1 * m1, e22[i] - m2 * m2, e12[i] - m1 * m2);
        sum += ((2.0 * m1 * m2 + C1) * (2.0 * s12 + C2))
            / ((m1 * m1 + m2 * m2 + C1) * (s11 + s22 + C2));
    }
    sum / mu1.len() as f64
}
