//! Phase 1 against the official 2DQuant code: DOBI W4 bounds of the stand-in
//! checkpoint on 8 centre patches (../shared/golden/dobi_w4_bounds.json).

mod common;

use std::collections::BTreeMap;

use common::{gpu, shared};
use swinq::model::checkpoint::load_weights;
use swinq::model::graph::{Calibration, GpuModel};
use swinq::quant::calib::{load_patches, PatchMode, PatchSide};
use swinq::quant::phase1::calibrate;
use swinq::quant::search::Method;
use swinq::quant::all_names;

#[test]
fn dobi_w4_matches_official_bounds() {
    let ctx = gpu();
    let weights = load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).unwrap();
    let model = GpuModel::upload(ctx, &weights);
    let dir = shared().join("datasets/calib/LR_bicubic/X2");
    let patches = load_patches(&dir, None, 8, PatchSide::Exact(64), PatchMode::Center, 0, 8).unwrap();
    let params = calibrate(ctx, &model, &patches, Method::DOBI, 4).unwrap().params;
    let text = std::fs::read_to_string(shared().join("golden/dobi_w4_bounds.json")).unwrap();
    let golden: BTreeMap<String, [f32; 2]> = serde_json::from_str(&text).unwrap();
    let names = all_names(&weights.config);
    assert_eq!(golden.len(), names.len());
    // SPEC §4: a different summation order may flip a near-tie between neighbouring
    // candidates (l and u then move by one step Δ in opposite directions); anything
    // else, or more than a handful of flips, is a real difference.
    let rel = |a: f32, b: f32| ((a - b).abs() / b.abs().max(1e-6)) as f64;
    let (mut exact, mut flips, mut wrong) = (0, Vec::new(), Vec::new());
    for (name, q) in names.iter().zip(&params) {
        let [l, u] = golden[name];
        if rel(q.lower, l) <= 1e-4 && rel(q.upper, u) <= 1e-4 {
            exact += 1;
            continue;
        }
        let (dl, du) = (q.lower - l, q.upper - u);
        let neighbour = (dl + du).abs() <= 1e-4 * u.abs() && dl.abs() <= (u - l) / 2.0;
        let line = format!("{name}: got [{}, {}], official [{l}, {u}]", q.lower, q.upper);
        if neighbour { flips.push(line) } else { wrong.push(line) }
    }
    eprintln!("DOBI W4: {exact} of {} quantizers within 1e-4 of the official bounds; neighbouring-candidate flips: {flips:?}", names.len());
    assert!(wrong.is_empty(), "bounds differ from the official code:\n{}", wrong.join("\n"));
    assert!(flips.len() * 100 <= names.len(), "too many near-tie flips: {flips:?}");
}

/// Sorting methods keep the keys of the softmax output of all patches, in several
/// pieces where one storage binding cannot hold them (32 patches of 64×64 need
/// 200 MB, over lavapipe's 128 MiB): 32 patches are accepted on every adapter.
#[test]
fn sorting_methods_take_32_patches() {
    let ctx = gpu();
    let weights = load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).unwrap();
    let model = GpuModel::upload(ctx, &weights);
    let sorted = Method::parse("sorted-tail+onedir+bias").unwrap();
    let before = ctx.held_bytes();
    let _cal = Calibration::new(ctx, &model, sorted, 4, (32, 64, 64)).unwrap();
    // The keys of 32 patches' attention maps: 32 · 64 windows · 6 heads · 64².
    let keys = 32 * 64 * 6 * 64 * 64 * 4;
    let scratch = ctx.held_bytes() - before;
    assert!(scratch >= keys, "{scratch} bytes of scratch");
}
