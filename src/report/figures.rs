//! The report's figures: the PSNR-against-bits plot and the comparison strips, with text
//! drawn by plotters in the Ubuntu Light font embedded from `epaint_default_fonts`, so no
//! system font is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};

use super::{caption, Report, FP_LABEL};
use crate::data::{save_png_with_text, RgbU8};

const FONT: &str = "sans-serif";

/// The embedded font (Ubuntu Light from `epaint_default_fonts`).
const FONT_BYTES: &[u8] = epaint_default_fonts::UBUNTU_LIGHT;

/// Registers the embedded font under plotters' family names (once per process).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in [FONT, "serif", "monospace"] {
            plotters::style::register_font(name, FontStyle::Normal, FONT_BYTES)
                .unwrap_or_else(|_| panic!("the embedded font does not parse"));
        }
    });
}

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses")
}

/// Width and height in pixels of one line of `text` at a font height of `px` pixels.
pub fn text_size(text: &str, px: f32) -> (u32, u32) {
    let font = font();
    let f = font.as_scaled(PxScale::from(px));
    let mut w = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    (w.ceil() as u32, (f.ascent() - f.descent()).ceil() as u32)
}

/// Calls `pixel(x, y, coverage)` for every pixel of one line of text whose box has its
/// top-left corner at (0, 0): glyphs placed by advance, kerning and side bearing.
fn text_pixels(text: &str, px: f32, mut pixel: impl FnMut(i32, i32, f32)) {
    let font = font();
    let f = font.as_scaled(PxScale::from(px));
    let mut caret = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        prev = Some(id);
        let glyph = id.with_scale_and_position(f.scale(), point(caret, f.ascent()));
        caret += f.h_advance(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| pixel(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32, cov.clamp(0.0, 1.0)));
        }
    }
}

/// Draws one line of text with its top-left corner at (x, y), blending `color` onto the
/// image by glyph coverage.
pub fn draw_text(img: &mut RgbU8, text: &str, px: u32, (x, y): (i32, i32), color: [u8; 3]) {
    text_pixels(text, px as f32, |gx, gy, a| {
        let (px, py) = (x + gx, y + gy);
        if px < 0 || py < 0 || px as usize >= img.width || py as usize >= img.height {
            return;
        }
        let at = (py as usize * img.width + px as usize) * 3;
        for (d, &c) in img.data[at..at + 3].iter_mut().zip(&color) {
            *d = (*d as f32 * (1.0 - a) + c as f32 * a).round() as u8;
        }
    });
}

/// plotters' bitmap backend with text drawn by [`text_pixels`]: plotters 0.3.7's ab_glyph
/// text ignores each glyph's side bearing, which spaces letters unevenly ("26.1 2").
struct Bitmap<'a>(BitMapBackend<'a>);

type BitmapResult<'a> = Result<(), DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>;

impl<'a> DrawingBackend for Bitmap<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> BitmapResult<'a> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> BitmapResult<'a> {
        self.0.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> BitmapResult<'a> {
        self.0.draw_pixel(p, c)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S) -> BitmapResult<'a> {
        self.0.draw_line(a, b, s)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S, fill: bool) -> BitmapResult<'a> {
        self.0.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, path: I, s: &S) -> BitmapResult<'a> {
        self.0.draw_path(path, s)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(&mut self, c: BackendCoord, r: u32, s: &S, fill: bool) -> BitmapResult<'a> {
        self.0.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, v: I, s: &S) -> BitmapResult<'a> {
        self.0.fill_polygon(v, s)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> BitmapResult<'a> {
        self.0.blit_bitmap(pos, size, src)
    }
    fn draw_text<T: plotters_backend::BackendTextStyle>(&mut self, text: &str, style: &T, pos: BackendCoord) -> BitmapResult<'a> {
        let color = style.color();
        let px = style.size() as f32;
        let (w, h) = text_size(text, px);
        let (w, h) = (w as i32, h as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let trans = style.transform();
        let mut result = Ok(());
        text_pixels(text, px, |x, y, cov| {
            let (x, y) = trans.transform(x + dx, y + dy);
            if result.is_ok() {
                let c = BackendColor { alpha: color.alpha * cov as f64, rgb: color.rgb };
                result = self.0.draw_pixel((pos.0 + x, pos.1 + y), c);
            }
        });
        result
    }
    fn estimate_text_size<T: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(text_size(text, style.size() as f32))
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// Size of one panel of the PSNR plot.
pub const PANEL: (u32, u32) = (560, 400);
const CAPTION_H: u32 = 30;

/// The PSNR-Y against bits plot: one panel per set (3 per row), one coloured line per
/// method, the float model as a dashed black line, the caption line at the bottom.
pub fn plot_psnr_vs_bits(report: &Report) -> Result<RgbU8> {
    register_fonts();
    let n = report.datasets.len().max(1);
    let cols = n.min(3);
    let rows = n.div_ceil(3);
    let cap = caption(report);
    let w = (PANEL.0 * cols as u32).max(text_size(&cap, 13.0).0 + 20);
    let h = PANEL.1 * rows as u32 + CAPTION_H;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = Bitmap(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        let (plots, _) = root.split_vertically(h - CAPTION_H);
        let panels = plots.split_evenly((rows, cols));
        let methods = method_lines(report);
        let bits: Vec<u32> = report.models.iter().filter_map(|m| m.bits).collect();
        let (lo, hi) = (bits.iter().min().copied().unwrap_or(2), bits.iter().max().copied().unwrap_or(8));
        let (xlo, xhi) = (lo as f64 - 0.5, hi as f64 + 0.5);
        for (d, panel) in report.datasets.iter().enumerate().map(|(d, name)| (d, (name, &panels[d]))) {
            let (name, area) = panel;
            let values: Vec<f64> = report
                .models
                .iter()
                .filter_map(|m| m.results.get(d).map(|r| r.psnr_y))
                .filter(|v| v.is_finite())
                .collect();
            let ymin = values.iter().copied().fold(f64::INFINITY, f64::min);
            let ymax = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (ymin, ymax) = if ymin.is_finite() { (ymin - 0.5, ymax + 0.5) } else { (0.0, 1.0) };
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name} x{}", report.settings.scale), (FONT, 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(xlo..xhi, ymin..ymax)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("bits (W = A)")
                .y_desc("PSNR-Y (dB)")
                .x_labels((hi - lo + 2) as usize)
                .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() })
                .y_label_formatter(&|v| format!("{v:.1}"))
                .label_style((FONT, 14))
                .bold_line_style(RGBColor(200, 200, 200))
                .light_line_style(RGBColor(240, 240, 240))
                .draw()
                .map_err(plot_err)?;
            if let Some(fp) = report.models.iter().find(|m| m.bits.is_none()).and_then(|m| m.results.get(d)) {
                let style = BLACK.stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(vec![(xlo, fp.psnr_y), (xhi, fp.psnr_y)], 8, 5, style))
                    .map_err(plot_err)?
                    .label(format!("{FP_LABEL} {:.2}", fp.psnr_y))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
            for (i, (method, points)) in methods.iter().enumerate() {
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|&(b, m)| report.models[m].results.get(d).map(|r| (b as f64, r.psnr_y)))
                    .filter(|p| p.1.is_finite())
                    .collect();
                let color = Palette99::pick(i).to_rgba();
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(plot_err)?;
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(plot_err)?
                    .label(method.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    let mut img = RgbU8 { width: w as usize, height: h as usize, data: buf };
    draw_text(&mut img, &cap, 13, (10, (h - CAPTION_H + 8) as i32), [60, 60, 60]);
    Ok(img)
}

/// Quantized models grouped by method: (method, [(bits, model index)]) sorted by bits.
fn method_lines(report: &Report) -> Vec<(String, Vec<(u32, usize)>)> {
    let mut lines: Vec<(String, Vec<(u32, usize)>)> = Vec::new();
    for (i, m) in report.models.iter().enumerate() {
        let Some(b) = m.bits else { continue };
        match lines.iter_mut().find(|(name, _)| *name == m.method) {
            Some((_, pts)) => pts.push((b, i)),
            None => lines.push((m.method.clone(), vec![(b, i)])),
        }
    }
    lines.iter_mut().for_each(|(_, pts)| pts.sort());
    lines
}

/// Nearest-neighbour upscaling by `k`.
pub fn zoom_nearest(img: &RgbU8, k: usize) -> RgbU8 {
    let (w, h) = (img.width * k, img.height * k);
    let mut data = Vec::with_capacity(3 * w * h);
    for y in 0..h {
        for x in 0..w {
            let i = ((y / k) * img.width + x / k) * 3;
            data.extend_from_slice(&img.data[i..i + 3]);
        }
    }
    RgbU8 { width: w, height: h, data }
}

/// One tile of a comparison: an image and its label lines.
pub struct Tile {
    pub image: RgbU8,
    pub label: Vec<String>,
}

/// Geometry of a comparison figure (all in pixels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: usize,
    pub height: usize,
    /// Top-left corner of each tile.
    pub tiles: Vec<(usize, usize)>,
    /// Top of the label lines (same for every tile).
    pub label_top: usize,
    /// Top of the caption line.
    pub caption_top: usize,
}

const MARGIN: usize = 10;
const GAP: usize = 10;
const TITLE_PX: u32 = 16;
const LABEL_PX: u32 = 16;
const CAPTION_PX: u32 = 12;

/// Where each tile and text goes: title line, tiles side by side (each centred in a
/// column as wide as its tile or its label), label lines under each, caption line.
pub fn layout(tiles: &[Tile], title: &str, caption: &str) -> Layout {
    let line = |px: u32| px as usize + 6;
    let cols: Vec<usize> = tiles
        .iter()
        .map(|t| t.label.iter().map(|l| text_size(l, LABEL_PX as f32).0 as usize + 4).fold(t.image.width, usize::max))
        .collect();
    let row_w = cols.iter().sum::<usize>() + GAP * cols.len().saturating_sub(1);
    let width = 2 * MARGIN
        + row_w.max(text_size(title, TITLE_PX as f32).0 as usize).max(text_size(caption, CAPTION_PX as f32).0 as usize);
    let tile_top = MARGIN + line(TITLE_PX) + 4;
    let tile_h = tiles.iter().map(|t| t.image.height).max().unwrap_or(0);
    let label_top = tile_top + tile_h + 4;
    let lines = tiles.iter().map(|t| t.label.len()).max().unwrap_or(0);
    let caption_top = label_top + lines * line(LABEL_PX) + 6;
    let mut x = MARGIN + (width - 2 * MARGIN - row_w) / 2;
    let mut pos = Vec::new();
    for (t, cw) in tiles.iter().zip(&cols) {
        pos.push((x + (cw - t.image.width) / 2, tile_top));
        x += cw + GAP;
    }
    Layout { width, height: caption_top + line(CAPTION_PX) + MARGIN, tiles: pos, label_top, caption_top }
}

/// Draws a comparison figure on white: title, tiles, labels (centred under each tile),
/// caption line.
pub fn compose(tiles: &[Tile], title: &str, caption: &str) -> Result<RgbU8> {
    let l = layout(tiles, title, caption);
    let mut img = RgbU8 { width: l.width, height: l.height, data: vec![255; 3 * l.width * l.height] };
    for (t, &(x0, y0)) in tiles.iter().zip(&l.tiles) {
        for y in 0..t.image.height {
            let src = &t.image.data[y * t.image.width * 3..(y + 1) * t.image.width * 3];
            let at = ((y0 + y) * l.width + x0) * 3;
            img.data[at..at + src.len()].copy_from_slice(src);
        }
    }
    draw_text(&mut img, title, TITLE_PX, (MARGIN as i32, MARGIN as i32), [0, 0, 0]);
    for (t, &(x0, _)) in tiles.iter().zip(&l.tiles) {
        for (i, text) in t.label.iter().enumerate() {
            let tw = text_size(text, LABEL_PX as f32).0 as i32;
            let x = x0 as i32 + (t.image.width as i32 - tw) / 2;
            let y = l.label_top + i * (LABEL_PX as usize + 6);
            draw_text(&mut img, text, LABEL_PX, (x, y as i32), [0, 0, 0]);
        }
    }
    draw_text(&mut img, caption, CAPTION_PX, (MARGIN as i32, l.caption_top as i32), [60, 60, 60]);
    Ok(img)
}

/// PNG tEXt chunks of a figure.
pub(super) fn png_text<'a>(report: &'a Report, title: &'a str, cap: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("Title", title),
        ("Software", "swinq"),
        ("Comment", cap),
        ("Source", report.settings.checkpoint_sha256.as_str()),
        ("swinq-command", report.settings.command.as_str()),
    ]
}

/// Writes psnr_vs_bits.png into `dir`.
pub fn write_plot(report: &Report, dir: &Path) -> Result<PathBuf> {
    let path = dir.join("psnr_vs_bits.png");
    let img = plot_psnr_vs_bits(report)?;
    let cap = caption(report);
    save_png_with_text(&img, &path, &png_text(report, "PSNR-Y against bits", &cap))?;
    Ok(path)
}

