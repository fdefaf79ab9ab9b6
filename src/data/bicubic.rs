//! MATLAB-exact `imresize(img, scale, 'bicubic')` for 8-bit RGB.
//!
//! Mirrors MATLAB's `imresize.m` (`contributions`, `cubic`) and `imresizemex`:
//! - kernel: Keys cubic, a = -0.5; when downscaling it is antialiased,
//!   h(x) = scale·cubic(scale·x) with width 4/scale; when upscaling plain cubic, width 4;
//! - output index u (1-based) samples source position u/scale + 0.5·(1 − 1/scale), taps
//!   left = floor(pos − width/2) .. left + ceil(width) + 1, weights normalised to sum 1,
//!   out-of-range taps mirrored (1..n, n..1);
//! - one 1-D pass per dimension, height (MATLAB dim 1) first for equal factors; uint8 input
//!   makes every pass round half away from zero and saturate to uint8 — skipping that
//!   intermediate rounding gives ±1–2 errors against the shipped LR files.

use super::image_io::RgbU8;

/// MATLAB's `cubic` (Keys, a = -0.5), written as in imresize.m for identical rounding.
fn cubic(x: f64) -> f64 {
    let ax = x.abs();
    let ax2 = ax * ax;
    let ax3 = ax2 * ax;
    if ax <= 1.0 {
        1.5 * ax3 - 2.5 * ax2 + 1.0
    } else if ax <= 2.0 {
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    } else {
        0.0
    }
}

/// Taps of a 1-D resize: for output i, `idx[i*taps + j]` (0-based source) and weights.
struct Contrib {
    taps: usize,
    idx: Vec<usize>,
    w: Vec<f64>,
}

/// MATLAB's `contributions(in_length, out_length, scale, @cubic, 4, true)`.
fn contributions(in_len: usize, out_len: usize, scale: f64) -> Contrib {
    assert!(in_len > 0, "cannot resize an empty dimension");
    let antialias = scale < 1.0;
    let width = if antialias { 4.0 / scale } else { 4.0 };
    let h = |x: f64| {
        if antialias {
            scale * cubic(scale * x)
        } else {
            cubic(x)
        }
    };
    let taps = width.ceil() as usize + 2;
    let period = 2 * in_len as i64; // mirror pattern 1..n, n..1
    let mut idx = Vec::with_capacity(out_len * taps);
    let mut w = Vec::with_capacity(out_len * taps);
    for u in 1..=out_len {
        let pos = u as f64 / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (pos - width / 2.0).floor() as i64;
        let row: Vec<f64> = (0..taps)
            .map(|j| h(pos - (left + j as i64) as f64))
            .collect();
        let sum: f64 = row.iter().sum();
        w.extend(row.iter().map(|v| v / sum));
        for j in 0..taps {
            let m = (left + j as i64 - 1).rem_euclid(period); // 0-based position in the pattern
            idx.push(if m < in_len as i64 {
                m as usize
            } else {
                (period - 1 - m) as usize
            });
        }
    }
    Contrib { taps, idx, w }
}

/// Weighted sum to uint8 the way imresizemex does: round half away from zero, saturate.
#[inline]
fn to_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Resize along the height (MATLAB dimension 1).
fn resize_rows(img: &RgbU8, out_h: usize, scale: f64) -> RgbU8 {
    let c = contributions(img.height, out_h, scale);
    let stride = img.width * 3;
    let mut out = RgbU8::zeros(img.width, out_h);
    let mut acc = vec![0f64; stride];
    for oy in 0..out_h {
        acc.iter_mut().for_each(|a| *a = 0.0);
        // Taps in order, so each pixel's sum has MATLAB's summation order.
        for j in 0..c.taps {
            let (sy, wt) = (c.idx[oy * c.taps + j], c.w[oy * c.taps + j]);
            let src = &img.data[sy * stride..(sy + 1) * stride];
            acc.iter_mut()
                .zip(src)
                .for_each(|(a, &s)| *a += wt * s as f64);
        }
        let dst = &mut out.data[oy * stride..(oy + 1) * stride];
        dst.iter_mut().zip(&acc).for_each(|(d, &a)| *d = to_u8(a));
    }
    out
}

/// Resize along the width (MATLAB dimension 2).
fn resize_cols(img: &RgbU8, out_w: usize, scale: f64) -> RgbU8 {
    let c = contributions(img.width, out_w, scale);
    let mut out = RgbU8::zeros(out_w, img.height);
    for y in 0..img.height {
        let src = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
        let dst = &mut out.data[y * out_w * 3..(y + 1) * out_w * 3];
        for ox in 0..out_w {
            let mut acc = [0f64; 3];
            for j in 0..c.taps {
                let (sx, wt) = (c.idx[ox * c.taps + j], c.w[ox * c.taps + j]);
                for ch in 0..3 {
                    acc[ch] += wt * src[sx * 3 + ch] as f64;
                }
            }
            for ch in 0..3 {
                dst[ox * 3 + ch] = to_u8(acc[ch]);
            }
        }
    }
    out
}

/// `imresize(img, scale, 'bicubic', 'OutputSize', [out_h out_w])` with the same scale on
/// both axes, as MATLAB does for uint8 input (height pass first, rounding after each pass).
pub fn imresize_u8(img: &RgbU8, scale: f64, out_w: usize, out_h: usize) -> RgbU8 {
    assert!(
        scale > 0.0 && scale.is_finite(),
        "invalid resize scale {scale}"
    );
    assert!(
        img.data.len() == 3 * img.width * img.height,
        "image buffer does not match its size"
    );
    let tmp = resize_rows(img, out_h, scale);
    resize_cols(&tmp, out_w, scale)
}

/// Crop to the largest multiple of `s` in each dimension (top-left kept), as `modcrop`.
pub fn modcrop(img: &RgbU8, s: usize) -> RgbU8 {
    img.crop(0, 0, img.width - img.width % s, img.height - img.height % s)
}

/// The benchmark LR generator: `imresize(modcrop(hr, s), 1/s, 'bicubic')`.
pub fn downscale_matlab(hr: &RgbU8, s: usize) -> RgbU8 {
    assert!(s >= 1, "scale must be at least 1");
    let hr = modcrop(hr, s);
    imresize_u8(&hr, 1.0 / s as f64, hr.width / s, hr.height / s)
}

/// MATLAB bicubic upscaling by an integer factor: `imresize(lr, s, 'bicubic')`.
pub fn upscale_matlab(lr: &RgbU8, s: usize) -> RgbU8 {
    assert!(s >= 1, "scale must be at least 1");
    imresize_u8(lr, s as f64, lr.width * s, lr.height * s)
}
