//! Phase 1 against the official 2DQuant code: DOBI W4 bounds of the stand-in
//! checkpoint on 8 centre patches (../shared/golden/dobi_w4_bounds.json).

mod common;

use std::collections::BTreeMap;

use common::{gpu, shared};
use swinq::model::checkpoint::load_weights;
use swinq::model::graph::GpuModel;
use swinq::quant::calib::{load_patches, PatchMode};
use swinq::quant::phase1::calibrate;
use swinq::quant::search::Method;
use swinq::quant::all_names;

#[test]
fn dobi_w4_matches_official_bounds() {
    let ctx = gpu();
    let weights = load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).unwrap();
    let model = GpuModel::upload(ctx, &weights);
    let dir = shared().join("datasets/calib/LR_bicubic/X2");
    let patches = load_patches(&dir, 8, 64, PatchMode::Center, 0, 8).unwrap();
    let params = calibrate(ctx, &model, &patches, Method::Dobi, 4).unwrap();
    let text = std::fs::read_to_string(shared().join("golden/dobi_w4_bounds.json")).unwrap();
    let golden: BTreeMap<String, [f32; 2]> = serde_json::from_str(&text).unwrap();
    let names = all_names(&weights.config);
    assert_eq!(golden.len(), names.len());
    let (mut worst, mut worst_name, mut mismatched) = (0f64, String::new(), Vec::new());
    for (name, q) in names.iter().zip(&params) {
        let want = golden[name];
        for (got, want) in [(q.lower, want[0]), (q.upper, want[1])] {
            let rel = ((got - want).abs() / want.abs().max(1e-6)) as f64;
            if rel > worst {
                (worst, worst_name) = (rel, name.clone());
            }
            if rel > 1e-4 {
                mismatched.push(format!("{name}: got {got}, official {want}"));
            }
        }
    }
    eprintln!("DOBI W4: worst relative bound difference {worst:.3e} ({worst_name}); {} of {} bounds beyond 1e-4", mismatched.len(), 2 * names.len());
    assert!(mismatched.is_empty(), "bounds differ from the official code:\n{}", mismatched.join("\n"));
}
