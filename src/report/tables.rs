//! The report's text: the caption line of its figures, report.md, report.json and the
//! score table `swinq report` prints.

use anyhow::Result;

use super::{Report, ZOOM};
use crate::eval::EvalReport;

/// One line of settings for figure captions (ASCII, so it fits a PNG tEXt chunk).
pub fn caption(report: &Report) -> String {
    let s = &report.settings;
    let models: Vec<&str> = report.models.iter().map(|m| m.label.as_str()).collect();
    let images = s.max_images.map_or("all images".to_string(), |n| format!("first {n} img/set"));
    let tile = s.tile.map_or("whole images".to_string(), |t| format!("tile {t}"));
    format!(
        "swinq {} | checkpoint sha256 {} | x{} | {} | {} | {}",
        s.swinq_version,
        short_hash(&s.checkpoint_sha256),
        s.scale,
        models.join(", "),
        images,
        tile
    )
}

fn short_hash(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `36.3668 / 0.9527`, or `–` when the model has no result for the set.
fn cell(r: Option<&EvalReport>) -> String {
    r.map_or("–".to_string(), |r| format!("{:.4} / {:.4}", r.psnr_y, r.ssim_y))
}

/// report.md.
pub fn render_markdown(report: &Report) -> String {
    let s = &report.settings;
    let mut md = format!("# {}\n\n", s.title);
    md += "## Settings\n\n";
    md += &format!("- swinq {}: `{}`\n", s.swinq_version, s.command);
    md += &format!("- checkpoint `{}`, SHA-256 `{}`\n", s.checkpoint, s.checkpoint_sha256);
    md += &format!("- model: {}; scale ×{}\n", s.config, s.scale);
    md += &format!(
        "- images: {}; {}; adapter {}\n",
        s.max_images.map_or("all of each set".to_string(), |n| format!("the first {n} of each set")),
        s.tile.map_or("whole images (automatic tiles when too large)".to_string(), |t| format!("tiles of {t} LR pixels")),
        s.adapter
    );
    md += &format!("- comparison crops: {}\n", s.crops);
    md += &format!("- figure caption: `{}`\n\n", caption(report));

    md += "## PSNR-Y (dB) / SSIM-Y\n\n";
    md += &score_table(report);
    md += "\n![PSNR-Y against bits](psnr_vs_bits.png)\n\n";

    md += "## Models\n\n| model | file | SHA-256 | method | bits | calibration |\n|---|---|---|---|---|---|\n";
    for m in &report.models {
        let calib: Vec<String> = m.calibration.iter().map(|(k, v)| format!("{k}={v}")).collect();
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            md_escape(&m.label),
            m.file.as_deref().map_or("–".into(), |f| format!("`{}`", md_escape(f))),
            m.file_sha256.as_deref().map_or("–".into(), |h| format!("`{}`", short_hash(h))),
            md_escape(&m.method),
            m.bits.map_or("32 (float)".into(), |b| format!("W{b}A{b}")),
            md_escape(&calib.join(", "))
        );
    }

    if !report.comparisons.is_empty() {
        md += &format!("\n## Comparisons\n\nCrops in HR pixels, shown ×{ZOOM} with nearest neighbour; PSNR-Y of the whole image.\n");
    }
    for c in &report.comparisons {
        let auto = if c.auto { " (auto)" } else { "" };
        md += &format!("\n### {} / {}: ({}, {}), {}×{}{auto}\n\n", c.dataset, c.image, c.x, c.y, c.size, c.size);
        md += &format!("![{} {}]({})\n\n", c.dataset, c.image, c.file);
        let row: Vec<String> = c
            .tiles
            .iter()
            .map(|t| format!("{}{}", md_escape(&t.label), t.psnr_y.map_or(String::new(), |p| format!(": {p:.2} dB"))))
            .collect();
        md += &format!("{}\n", row.join(" · "));
    }
    md
}

/// The scores as a Markdown table: a row per model, a column per set (with its image count).
pub fn score_table(report: &Report) -> String {
    let mut md = "| model | bits |".to_string();
    for (i, d) in report.datasets.iter().enumerate() {
        let n = report.models.first().and_then(|m| m.results.get(i)).map_or(0, |r| r.images.len());
        md += &format!(" {} ({n}) |", md_escape(d));
    }
    md += "\n|---|---|";
    md += &"---|".repeat(report.datasets.len());
    md += "\n";
    for m in &report.models {
        md += &format!("| {} | {} |", md_escape(&m.label), m.bits.map_or("32".into(), |b| b.to_string()));
        for i in 0..report.datasets.len() {
            md += &format!(" {} |", cell(m.results.get(i)));
        }
        md += "\n";
    }
    md
}

/// report.json (pretty).
pub fn render_json(report: &Report) -> Result<String> {
    Ok(serde_json::to_string_pretty(report)? + "\n")
}

