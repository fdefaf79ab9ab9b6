//! Image loading and saving.
//!
//! Two in-memory forms:
//! - [`RgbImage`]: planar float RGB (3×H×W, channel-major, values in 0..=1); this is
//!   exactly the (1,3,H,W) tensor layout the model consumes, so upload is a memcpy.
//! - [`RgbU8`]: interleaved 8-bit RGB; metrics and MATLAB bicubic work on it because the
//!   evaluation protocol (SPEC §2) is defined on integer pixel values.
//!
//! Images are turned upright by their EXIF orientation (photos) when they have one.
//! Colour handling on load: grayscale is replicated to R=G=B; an alpha channel is
//! dropped as-is (no compositing onto a background), since SR benchmarks never carry
//! meaningful alpha and compositing would invent colours; 16-bit samples keep their full
//! precision in [`RgbImage`] (value/65535).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageEncoder, ImageReader};

use super::output::persist_atomic;

/// Planar float RGB image: `data[c*H*W + y*W + x]`, values nominally in 0..=1.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// Interleaved 8-bit RGB image: `data[(y*W + x)*3 + c]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbU8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Black image of the given size.
    pub fn zeros(width: usize, height: usize) -> Self {
        RgbImage {
            width,
            height,
            data: vec![0.0; 3 * width * height],
        }
    }

    /// Quantize to 8 bits as the evaluation protocol does (SPEC §2): clamp to 0..=1,
    /// ×255, round. BasicSR rounds with numpy, i.e. half to even, so we do too.
    pub fn to_u8(&self) -> RgbU8 {
        let plane = self.width * self.height;
        let mut data = vec![0u8; 3 * plane];
        for c in 0..3 {
            for (i, &v) in self.data[c * plane..(c + 1) * plane].iter().enumerate() {
                // NaN clamps to NaN and `as u8` maps it to 0.
                data[i * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8;
            }
        }
        RgbU8 {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

impl RgbU8 {
    /// Black image of the given size.
    pub fn zeros(width: usize, height: usize) -> Self {
        RgbU8 {
            width,
            height,
            data: vec![0; 3 * width * height],
        }
    }

    /// Exact conversion to planar float (value/255).
    pub fn to_f32(&self) -> RgbImage {
        let plane = self.width * self.height;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = px[c] as f32 / 255.0;
            }
        }
        RgbImage {
            width: self.width,
            height: self.height,
            data,
        }
    }

    /// Sub-image with top-left corner (x, y). Panics if it does not fit.
    pub fn crop(&self, x: usize, y: usize, width: usize, height: usize) -> RgbU8 {
        assert!(
            x + width <= self.width && y + height <= self.height,
            "crop out of bounds"
        );
        let mut data = Vec::with_capacity(3 * width * height);
        for row in y..y + height {
            let start = (row * self.width + x) * 3;
            data.extend_from_slice(&self.data[start..start + 3 * width]);
        }
        RgbU8 {
            width,
            height,
            data,
        }
    }
}

/// True if the file name has an image extension we can read (case-insensitive).
pub fn is_image_file(path: impl AsRef<Path>) -> bool {
    let ext = path
        .as_ref()
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff")
    )
}

/// The decoder of the image file at `path`, its header read; `fail` makes the error of
/// the step that failed ("cannot open", "cannot read", "cannot decode image") from its cause.
fn open_decoder(path: &Path, fail: impl Fn(&str, String) -> anyhow::Error) -> Result<impl ImageDecoder> {
    ImageReader::open(path)
        .map_err(|e| fail("cannot open", e.to_string()))?
        .with_guessed_format()
        .map_err(|e| fail("cannot read", e.to_string()))?
        .into_decoder()
        .map_err(|e| fail("cannot decode image", format!("{e}{}", unsupported_hint(&e))))
}

/// Decode any supported file; every failure becomes a one-line "{path}: reason" error.
fn decode(path: &Path) -> Result<DynamicImage> {
    let fail = |step: &str, e: String| anyhow!("{}: {step}: {e}", path.display());
    let mut decoder = open_decoder(path, fail)?;
    // Photos record their rotation in EXIF; the pixels are upright only once it is applied.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| fail("cannot decode image", format!("{e}{}", unsupported_hint(&e))))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        bail!(
            "{}: image has zero size ({}x{})",
            path.display(),
            img.width(),
            img.height()
        );
    }
    Ok(img)
}

/// Load an image as planar float RGB in 0..=1 (see module docs for colour handling).
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let img = decode(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Pick the conversion by bit depth so 16-bit data is not squeezed through 8 bits.
    let interleaved: Vec<f32> = match img.color() {
        ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => img
            .to_rgb8()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect(),
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => img
            .to_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 65535.0)
            .collect(),
        _ => img.to_rgb32f().into_raw(),
    };
    Ok(planar_from_interleaved(w, h, &interleaved))
}

/// What an 8-bit RGB output of an image file loses.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputLosses {
    pub alpha: bool,
    /// Samples deeper than 8 bits.
    pub depth: bool,
}

/// For an image in a format or pixel layout the decoders lack (e.g. 32-bit float TIFF),
/// what to do about it.
fn unsupported_hint(e: &image::ImageError) -> &'static str {
    match e {
        image::ImageError::Unsupported(_) => " (a format or pixel layout swinq cannot read; convert the image to 8- or 16-bit PNG)",
        _ => "",
    }
}

/// [`OutputLosses`] of the image file at `path`, from its header alone; an error naming
/// the file if the header cannot be read (checked before long work on many images).
pub fn output_losses(path: &Path) -> Result<OutputLosses> {
    let decoder = open_decoder(path, |_, e| anyhow!("{}: cannot read as an image: {e}", path.display()))?;
    let c = decoder.color_type();
    Ok(OutputLosses { alpha: c.has_alpha(), depth: c.bytes_per_pixel() / c.channel_count() > 1 })
}

/// Load an image as interleaved 8-bit RGB (exact for 8-bit files; 16-bit is rounded to 8).
pub fn load_rgb_u8(path: impl AsRef<Path>) -> Result<RgbU8> {
    let path = path.as_ref();
    let img = decode(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(RgbU8 {
        width: w,
        height: h,
        data: img.to_rgb8().into_raw(),
    })
}

fn planar_from_interleaved(w: usize, h: usize, src: &[f32]) -> RgbImage {
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in src.chunks_exact(3).enumerate() {
        data[i] = px[0];
        data[plane + i] = px[1];
        data[2 * plane + i] = px[2];
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

/// Write an 8-bit RGB PNG atomically: encode into a temp file in the target folder,
/// then rename over `path`, so readers never see a half-written file.
pub fn save_png(img: &RgbU8, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    check_size(img, path)?;
    persist_atomic(path, "png", |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                &img.data,
                img.width as u32,
                img.height as u32,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| anyhow!("cannot encode PNG: {e}"))
    })
}

/// The PNG text key of `swinq upscale`'s outputs whose value is the name of the input
/// file, by which a later run into the same folder tells them from the user's own images.
pub const UPSCALE_SOURCE: &str = "swinq-upscale-of";

/// Whether the file at `path` is a PNG with the text chunk (`key`, `value`) (tEXt, or
/// uncompressed iTXt).
pub fn png_has_text(path: &Path, (key, value): (&str, &str)) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    png::Decoder::new(std::io::BufReader::new(file)).read_info().is_ok_and(|r| {
        let info = r.info();
        info.uncompressed_latin1_text.iter().any(|t| t.keyword == key && t.text == value)
            || info.utf8_text.iter().any(|t| t.keyword == key && t.get_text().is_ok_and(|v| v == value))
    })
}

/// [`save_png`] with `tEXt` chunks (keyword, text) before the image data, e.g. the
/// settings that made a figure (iTXt for text beyond Latin-1). Keywords are 1–79 Latin-1
/// characters.
pub fn save_png_with_text(
    img: &RgbU8,
    path: impl AsRef<Path>,
    text: &[(&str, &str)],
) -> Result<()> {
    let path = path.as_ref();
    check_size(img, path)?;
    persist_atomic(path, "png", |w| {
        let mut enc = png::Encoder::new(w, img.width as u32, img.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            // tEXt holds Latin-1; other text goes into an (uncompressed UTF-8) iTXt chunk.
            let added = if v.chars().all(|c| (c as u32) < 256) {
                enc.add_text_chunk(k.to_string(), v.to_string())
            } else {
                enc.add_itxt_chunk(k.to_string(), v.to_string())
            };
            added.map_err(|e| anyhow!("PNG text chunk `{k}`: {e}"))?;
        }
        let mut writer = enc
            .write_header()
            .map_err(|e| anyhow!("cannot encode PNG: {e}"))?;
        writer
            .write_image_data(&img.data)
            .map_err(|e| anyhow!("cannot encode PNG: {e}"))?;
        writer
            .finish()
            .map_err(|e| anyhow!("cannot encode PNG: {e}"))
    })
}

fn check_size(img: &RgbU8, path: &Path) -> Result<()> {
    if img.data.len() != 3 * img.width * img.height || img.width == 0 || img.height == 0 {
        bail!(
            "{}: refusing to write a {}x{} image with {} bytes",
            path.display(),
            img.width,
            img.height,
            img.data.len()
        );
    }
    Ok(())
}
