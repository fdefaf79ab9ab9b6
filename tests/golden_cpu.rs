//! The CPU reference forward (`swinq::model::cpu`) against the golden tensors made with
//! the official PyTorch SwinIR code (../shared/golden, see its README).
//!
//! The shared folder is found through `SWINQ_SHARED`, else `<crate>/../shared`; if it is
//! missing the tests fail (they never skip).

use std::collections::BTreeMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use swinq::model::cpu::{self, erf, gelu};
use swinq::model::{StateDict, SwinWeights, Tensor, TensorData};

/// Relative error tolerance ‖a−b‖/‖b‖ of every golden tensor (golden README).
const TOL: f64 = 1e-5;

fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("SWINQ_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared"),
    };
    assert!(
        dir.join("golden").is_dir(),
        "shared data not found: {} has no golden/ folder (set SWINQ_SHARED to the shared folder)",
        dir.display()
    );
    dir
}

struct Golden {
    /// Every tensor of the file as f32 with its shape (I32 tensors converted).
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The `weights.` tensors as a state dict (prefix stripped).
    state_dict: StateDict,
}

fn load_golden(name: &str) -> Golden {
    let path = shared_dir().join("golden").join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: bad safetensors: {e:?}", path.display()));
    let mut tensors = BTreeMap::new();
    let mut state_dict = StateDict::new();
    for (key, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => {
                TensorData::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            Dtype::I32 => {
                TensorData::I64(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
            }
            Dtype::I64 => TensorData::I64(
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            ),
            other => panic!("{}: tensor `{key}` has unexpected dtype {other:?}", path.display()),
        };
        if let Some(wkey) = key.strip_prefix("weights.") {
            state_dict.insert(wkey.to_string(), Tensor { shape, data });
        } else {
            let TensorData::F32(v) = data else { panic!("{}: tensor `{key}` is not float32", path.display()) };
            tensors.insert(key, (shape, v));
        }
    }
    Golden { tensors, state_dict }
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Runs the CPU forward on the golden input and compares every golden tensor.
fn check_golden(name: &str, golden: &Golden, wts: &SwinWeights) {
    let t = &golden.tensors;
    let get = |k: &str| t.get(k).unwrap_or_else(|| panic!("{name}: golden tensor `{k}` missing"));
    let (ishape, input) = get("input");
    assert_eq!(ishape.len(), 4);
    let (b, c, h, w) = (ishape[0], ishape[1], ishape[2], ishape[3]);
    assert_eq!(c, 3);

    let start = std::time::Instant::now();
    let fwd = cpu::forward(wts, input, b, h, w);
    eprintln!("{name}: forward of {b}x3x{h}x{w} took {:.2?}", start.elapsed());

    let mut results: Vec<(String, f64)> = Vec::new();
    let (pshape, padded_gold) = get("input_padded");
    let padded = cpu::mirror_pad_planar(input, b, 3, h, w, pshape[2], pshape[3]);
    results.push(("input_padded".into(), rel_err(&padded, padded_gold)));

    let mut n_feat = 0;
    for (key, (_, gold)) in t.iter() {
        let Some(feat) = key.strip_prefix("feat.") else { continue };
        let ours = fwd.features.get(feat).unwrap_or_else(|| panic!("{name}: forward did not record feature `{feat}`"));
        assert_eq!(ours.len(), gold.len(), "{name}: feature `{feat}` has {} values, golden {}", ours.len(), gold.len());
        results.push((key.clone(), rel_err(ours, gold)));
        n_feat += 1;
    }
    assert_eq!(n_feat, 13, "{name}: expected 13 golden features");

    let (oshape, out_gold) = get("output");
    assert_eq!(fwd.output.len(), oshape.iter().product::<usize>(), "{name}: output size");
    results.push(("output".into(), rel_err(&fwd.output, out_gold)));

    let mut failed = Vec::new();
    for (k, e) in &results {
        eprintln!("{name}: {k:<24} rel err {e:.3e}");
        if e.is_nan() || *e >= TOL {
            failed.push(format!("{k} ({e:.3e})"));
        }
    }
    assert!(failed.is_empty(), "{name}: relative error ≥ {TOL:e} for {}", failed.join(", "));
}

fn check_random(scale: usize) {
    let name = format!("random_x{scale}");
    let golden = load_golden(&name);
    let wts = SwinWeights::from_state_dict(&golden.state_dict).unwrap_or_else(|e| panic!("{name}: weights: {e:#}"));
    assert_eq!(wts.config.scale, scale);
    check_golden(&name, &golden, &wts);
}

#[test]
fn golden_random_x2() {
    check_random(2);
}

#[test]
fn golden_random_x3() {
    check_random(3);
}

#[test]
fn golden_random_x4() {
    check_random(4);
}

/// The stand-in x2 checkpoint on a crop of Set5 bird. Its weights are not in the golden
/// file: they are read from ../shared/weights/swinir_light_x2_standin.pth with
/// `swinq::model::checkpoint::load_state_dict`, so this case depends on the checkpoint
/// reader (and fails with its error until that reader exists).
#[test]
fn golden_standin_x2_bird() {
    let path = shared_dir().join("weights").join("swinir_light_x2_standin.pth");
    let sd = swinq::model::checkpoint::load_state_dict(&path)
        .unwrap_or_else(|e| panic!("standin_x2_bird needs the checkpoint reader: loading {}: {e:#}", path.display()));
    let wts = SwinWeights::from_state_dict(&sd).unwrap_or_else(|e| panic!("standin_x2_bird: weights: {e:#}"));
    let golden = load_golden("standin_x2_bird");
    check_golden("standin_x2_bird", &golden, &wts);
}

#[test]
fn erf_known_values() {
    let cases = [
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (-2.0, -0.9953222650189527),
        (3.0, 0.9999779095030014),
        (0.1, 0.1124629160182849),
        (-0.01, -0.011283415555849618),
        (1.5, 0.9661051464753108),
        (2.5, 0.999593047982555),
        (4.0, 0.9999999845827421),
        (5.5, 0.9999999999999927),
        (0.8, 0.7421009647076605),
        (1.9, 0.9927904292352575),
        (2.4, 0.999311486103355),
        (-2.6, -0.9997639655834707),
        (3.5, 0.9999992569016276),
        (5.0, 0.9999999999984626),
        (5.9, 0.9999999999999999),
    ];
    for (x, want) in cases {
        let got = erf(x);
        let rel = ((got - want) / want).abs();
        eprintln!("erf({x}) = {got:.17} (want {want:.17}, rel err {rel:.2e})");
        assert!(rel < 2e-15, "erf({x}) = {got:.17}, want {want:.17} (rel err {rel:.2e})");
    }
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(10.0), 1.0);
    assert_eq!(erf(-10.0), -1.0);
    // Odd symmetry and monotonicity on a grid.
    let mut prev = -1.0;
    for i in -800..=800 {
        let x = i as f64 * 0.01;
        assert_eq!(erf(-x), -erf(x));
        assert!(erf(x) >= prev, "erf not monotone at {x}");
        prev = erf(x);
    }
}

#[test]
fn gelu_known_values() {
    // 0.5·x·(1 + erf(x/√2)), reference values from the same formula in high precision.
    let cases: [(f32, f64); 7] = [
        (0.0, 0.0),
        (1.0, 0.8413447460685429),
        (-1.0, -0.15865525393145707),
        (2.0, 1.9544997361036416),
        (-3.0, -0.00404969409489031),
        (0.5, 0.34573123063700656),
        (10.0, 10.0),
    ];
    for (x, want) in cases {
        let got = gelu(x) as f64;
        let err = (got - want).abs();
        assert!(err <= 1e-7 * want.abs().max(1e-3), "gelu({x}) = {got}, want {want}");
    }
    // Large negative inputs go to (negative) zero, not NaN.
    assert!(gelu(-20.0).abs() < 1e-30);
}
