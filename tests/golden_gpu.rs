//! The whole GPU forward against the official PyTorch code's tensors in ../shared/golden.

mod common;

use common::{assert_close, gpu, shared};
use swinq::model::checkpoint::{load_state_dict, load_weights};
use swinq::model::cpu::tokens_to_planar;
use swinq::model::graph::{GpuModel, Plan};
use swinq::model::{StateDict, SwinWeights};

/// The bound for the whole forward on lavapipe.
const TOL: f64 = 1e-4;

fn tensor(sd: &StateDict, key: &str) -> (Vec<usize>, Vec<f32>) {
    let t = sd.get(key).unwrap_or_else(|| panic!("golden tensor `{key}` missing"));
    (t.shape.clone(), t.as_f32().expect("f32").to_vec())
}

fn check(golden: &StateDict, weights: &SwinWeights, label: &str) {
    let ctx = gpu();
    let model = GpuModel::upload(ctx, weights);
    let (shape, input) = tensor(golden, "input");
    let (h, w) = (shape[2], shape[3]);
    let plan = Plan::new(ctx, &model, 1, h, w, true).expect("plan");
    let (hp, wp) = plan.padded;
    let output = plan.forward(ctx, &input, None);
    assert_close(&format!("{label} output"), &output, &tensor(golden, "output").1, TOL);
    let c = weights.config.embed_dim;
    let mut names: Vec<String> = ["conv_first", "patch_embed", "block0_0", "block0_1", "conv_after_body"].map(String::from).to_vec();
    for r in 0..weights.config.depths.len() {
        names.push(format!("group{r}"));
        names.push(format!("rstb{r}"));
    }
    for name in names {
        let mut got = plan.captured(ctx, &name).unwrap_or_else(|| panic!("feature {name} not captured"));
        if name == "conv_first" || name == "conv_after_body" {
            got = tokens_to_planar(&got, 1, hp, wp, c);
        }
        assert_close(&format!("{label} feat.{name}"), &got, &tensor(golden, &format!("feat.{name}")).1, TOL);
    }
}

fn random_golden(scale: usize) {
    let golden = load_state_dict(&shared().join(format!("golden/random_x{scale}.safetensors"))).expect("golden");
    let sd: StateDict = golden.iter().filter_map(|(k, t)| k.strip_prefix("weights.").map(|k| (k.to_string(), t.clone()))).collect();
    let weights = SwinWeights::from_state_dict(&sd).expect("golden weights");
    assert_eq!(weights.config.scale, scale);
    check(&golden, &weights, &format!("random_x{scale}"));
}

#[test]
fn random_x2() {
    random_golden(2);
}

#[test]
fn random_x3() {
    random_golden(3);
}

#[test]
fn random_x4() {
    random_golden(4);
}

#[test]
fn standin_x2_bird() {
    let golden = load_state_dict(&shared().join("golden/standin_x2_bird.safetensors")).expect("golden");
    let weights = load_weights(&shared().join("weights/swinir_light_x2_standin.pth")).expect("stand-in checkpoint");
    check(&golden, &weights, "standin_x2_bird");
}
