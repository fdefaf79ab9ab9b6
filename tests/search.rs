//! Phase 1 bound search on the GPU against the CPU references: DOBI, the sorted
//! (rank) candidates, centring and bias correction; method names; and one small
//! calibration through a tiny random model.

mod common;

use common::{gpu, rng};
use rand::Rng;
use swinq::gpu::{run_now, GpuBuffer};
use swinq::model::graph::GpuModel;
use swinq::model::{SwinConfig, SwinWeights};
use swinq::quant::calib::Patches;
use swinq::quant::phase1::calibrate;
use swinq::quant::search::{ranks, search_cpu, Candidates, Center, Method, SearchSpec, Searcher, DOBI_CANDIDATES};
use swinq::quant::{fake_quant, index, levels, QParams, Slot};

/// Heavy-tailed test data: mostly normal-ish, a few large outliers.
fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let v: f32 = (0..4).map(|_| r.random_range(-1.0f32..1.0)).sum();
            if r.random_range(0..1000) == 0 { v * 8.0 } else { v + 0.3 }
        })
        .collect()
}

/// Many exact ties: the data rounded to a grid of quarter steps.
fn ties(seed: u64, n: usize) -> Vec<f32> {
    data(seed, n).iter().map(|v| (v * 4.0).round() / 4.0).collect()
}

fn method(name: &str) -> Method {
    Method::parse(name).unwrap()
}

/// Runs the GPU search of `x` (cut into `slices` pieces) and compares it with the
/// CPU reference: the candidates (exactly, or within `cand_tol` of the range for
/// the centred value steps, whose float rounding may differ), the pick (the CPU's
/// first minimum, or a neighbour on a near-tie), and the bias.
fn check(x: &[f32], bits: u32, m: Method, one_dir: bool, mult: f32, slices: usize, cand_tol: f32) {
    check_keys_in(x, bits, m, one_dir, mult, slices, cand_tol, None);
}

/// `check` with the keys of `key_groups` search workgroups per sorted piece.
#[allow(clippy::too_many_arguments)]
fn check_keys_in(x: &[f32], bits: u32, m: Method, one_dir: bool, mult: f32, slices: usize, cand_tol: f32, key_groups: Option<usize>) {
    let ctx = gpu();
    let xb = GpuBuffer::from_slice_windowed(ctx, "x", x);
    let qparams = GpuBuffer::zeros(ctx, "q", 4 * 8);
    let searcher = match key_groups {
        Some(g) => Searcher::with_key_pieces(ctx, x.len(), bits, Some(g)),
        None => Searcher::new(ctx, x.len(), bits, m.sorts()),
    };
    let spec = SearchSpec { method: m, index: 2, count: 3, one_dir, mult };
    // Split the tensor into `slices` pieces at multiples of 64 elements.
    let step = (x.len() / slices).div_ceil(64).max(1) * 64;
    let pieces: Vec<(usize, usize)> = (0..x.len()).step_by(step).map(|s| (s, step.min(x.len() - s))).collect();
    let mut ds = Vec::new();
    let mut base = 0;
    for &(s, n) in &pieces {
        ds.extend(searcher.stats_pass(ctx, &spec, xb.bind_range(s, n), n, base));
        base += Searcher::groups(n);
    }
    ds.extend(searcher.candidates(ctx, &spec, base, x.len()));
    let mut base2 = 0;
    for &(s, n) in &pieces {
        ds.extend(searcher.errors_pass(ctx, &spec, &xb, s, n, base2));
        base2 += Searcher::groups(n);
    }
    ds.push(searcher.pick(ctx, &spec, base, x.len(), &qparams));
    run_now(ctx, &ds);
    let got: Vec<QParams> = qparams.read(ctx);
    let gpu_cands = searcher.read_candidates(ctx, m.k());
    let cpu = search_cpu(x, bits, &spec);
    let name = format!("{} n={} bits={bits} one_dir={one_dir} mult={mult} slices={} key_groups={key_groups:?}", m.name(), x.len(), pieces.len());
    let range = cpu.candidates[0].1 - cpu.candidates[0].0;
    for (i, (g, c)) in gpu_cands.iter().zip(&cpu.candidates).enumerate() {
        let ok = if cand_tol == 0.0 { g == c } else { (g.0 - c.0).abs() <= cand_tol * range && (g.1 - c.1).abs() <= cand_tol * range };
        assert!(ok, "{name}: candidate {i}: GPU {g:?}, CPU {c:?}");
    }
    let q = got[2];
    let picked = gpu_cands.iter().position(|&c| c == (q.lower, q.upper)).unwrap_or_else(|| panic!("{name}: picked bounds not a candidate"));
    let best = cpu.best;
    let near_tie = picked.abs_diff(best) == 1 && cpu.errors[picked] <= cpu.errors[best] * (1.0 + 1e-6);
    eprintln!("{name}: GPU picks {picked} {:?} bias {}, CPU {best} {:?} bias {}", (q.lower, q.upper), q.bias, cpu.candidates[best], cpu.params.bias);
    assert!(picked == best || near_tie, "{name}: GPU picked candidate {picked}, CPU {best} (errors {} vs {})", cpu.errors[picked], cpu.errors[best]);
    // The bias of the bounds the GPU picked, in f64.
    let lv = levels(bits);
    let qp = QParams { lower: q.lower, upper: q.upper, ..Default::default() };
    let d: Vec<f64> = x.iter().map(|&v| ((v * mult) - fake_quant(v * mult, &qp, lv)) as f64).collect();
    let want = if m.bias { d.iter().sum::<f64>() / d.len() as f64 } else { 0.0 };
    let mean_abs = d.iter().map(|v| v.abs()).sum::<f64>() / d.len() as f64;
    assert!((q.bias as f64 - want).abs() <= 1e-4 * mean_abs + 1e-9, "{name}: bias {} vs CPU {want}", q.bias);
    assert_eq!(&got[3..5], &[q, q], "{name}: rows 3 and 4");
    assert_eq!(got[1], QParams::default(), "{name}: row 1 must be untouched");
    assert_eq!(got[5], QParams::default(), "{name}: row 5 must be untouched");
}

#[test]
fn dobi_symmetric_matches_cpu() {
    check(&data(1, 100_003), 4, Method::DOBI, false, 1.0, 1, 0.0);
    check(&data(2, 31_337), 2, Method::DOBI, false, 1.0, 3, 0.0);
}

#[test]
fn dobi_one_direction_matches_cpu() {
    let x: Vec<f32> = data(3, 77_777).iter().map(|v| v.abs()).collect();
    check(&x, 4, Method::DOBI_PAPER, true, 1.0, 2, 0.0);
    check(&x, 3, Method::DOBI_PAPER, true, 1.0, 1, 0.0);
}

#[test]
fn sorted_uniform_matches_cpu() {
    let m = method("sorted-uniform");
    check(&data(4, 12_347), 4, m, false, 1.0, 1, 0.0);
    // Several slices leave padded key slots between them; mult scales the keys.
    check(&data(5, 20_011), 3, m, false, 0.37, 3, 0.0);
    let x: Vec<f32> = data(6, 9_001).iter().map(|v| v.abs()).collect();
    check(&x, 4, method("sorted-uniform+onedir"), true, 1.0, 2, 0.0);
}

#[test]
fn sorted_tail_matches_cpu() {
    let m = method("sorted-tail");
    check(&data(7, 15_013), 4, m, false, 1.0, 1, 0.0);
    check(&data(8, 18_433), 2, m, false, 1.0, 4, 0.0);
    let x: Vec<f32> = data(9, 7_777).iter().map(|v| v.abs()).collect();
    check(&x, 3, method("sorted-tail+onedir"), true, 1.0, 1, 0.0);
}

#[test]
fn sorted_candidates_with_ties_match_cpu() {
    check(&ties(10, 11_111), 4, method("sorted-tail+bias"), false, 1.0, 2, 0.0);
    check(&ties(11, 6_007), 3, method("sorted-uniform+bias"), false, 1.0, 1, 0.0);
    check(&vec![0.25; 999], 4, method("sorted-tail+bias"), false, 1.0, 1, 0.0);
}

/// Keys in several sorted pieces (a tensor larger than one storage binding), with
/// slices that straddle pieces: the ranks selected across the pieces must be the
/// CPU sort's.
#[test]
fn sorted_keys_in_pieces_match_cpu() {
    // 9 workgroups of keys: pieces of 2 (the slices' padded slots in between) and 4.
    let x = data(40, 70_001);
    check_keys_in(&x, 4, method("sorted-tail+bias"), false, 1.0, 3, 0.0, Some(2));
    check_keys_in(&x, 3, method("sorted-uniform"), false, 0.5, 1, 0.0, Some(4));
    check_keys_in(&ties(41, 40_003), 2, method("sorted-tail+onedir+bias"), true, 1.0, 2, 0.0, Some(1));
    check_keys_in(&x, 4, method("dobi+center-median"), false, 1.0, 4, 1e-6, Some(3));
}

#[test]
fn fewer_elements_than_candidates() {
    for n in [1, 2, 3, 37, 99] {
        let x = data(12 + n as u64, n);
        check(&x, 4, method("sorted-uniform+bias"), false, 1.0, 1, 0.0);
        check(&x, 3, method("sorted-tail"), false, 1.0, 1, 0.0);
        check(&x, 4, method("sorted-tail+onedir+bias"), true, 1.0, 1, 0.0);
        check(&x, 2, method("dobi+center-median"), false, 1.0, 1, 1e-6);
    }
}

#[test]
fn centred_search_matches_cpu() {
    // Skewed data, so that the mean, the median and the mid-range differ.
    let x: Vec<f32> = data(20, 23_457).iter().map(|v| v.abs().powf(1.5)).collect();
    check(&x, 4, method("dobi+center-mean"), false, 1.0, 2, 1e-6);
    check(&x, 3, method("dobi+center-median+bias"), false, 0.5, 3, 1e-6);
    check(&ties(21, 5_003), 4, method("dobi+center-median"), false, 1.0, 1, 1e-6);
    // One-direction quantizers ignore the centre.
    check(&x, 4, method("dobi-paper+center-mean"), true, 1.0, 1, 0.0);
}

#[test]
fn bias_correction_matches_cpu() {
    let x = data(30, 40_009);
    check(&x, 2, method("minmax+bias"), false, 1.0, 1, 0.0);
    check(&x, 3, method("dobi+bias"), false, 1.0, 2, 0.0);
    let p: Vec<f32> = x.iter().map(|v| (v * 0.5).exp() * 0.01).collect();
    check(&p, 4, method("dobi-paper+bias"), true, 1.0, 1, 0.0);
}

#[test]
fn rank_schedules() {
    let k = DOBI_CANDIDATES;
    for n in [1usize, 2, 5, 99, 100, 201, 12_345, 50_000_000] {
        let max = ((n - 1) / 2) as u32;
        for c in [Candidates::SortedUniform, Candidates::SortedTail] {
            let r = ranks(c, n, k);
            assert_eq!(r.len(), k);
            assert_eq!(r[0], 0, "{c:?} n={n}: the first candidate is (min, max)");
            assert!(r.windows(2).all(|w| w[0] <= w[1]) && r.iter().all(|&v| v <= max), "{c:?} n={n}: {r:?}");
        }
        let u = ranks(Candidates::SortedUniform, n, k);
        assert!(u.iter().enumerate().all(|(i, &v)| v as usize == (i * n / (2 * k)).min(n.saturating_sub(1) / 2)));
        let t = ranks(Candidates::SortedTail, n, k);
        if n >= 3 {
            assert_eq!(t[1], 1, "n={n}: tail-dense starts by clipping one element per side");
        }
    }
    // Tail-dense puts most candidates in the tails: half of them clip under 0.1 % per side.
    let t = ranks(Candidates::SortedTail, 1_000_000, k);
    assert!(t[k / 2] < 1_000, "{}", t[k / 2]);
    assert!(t[k - 1] > 300_000 && t[k - 1] < 500_000, "{}", t[k - 1]);
}

#[test]
fn method_names() {
    for name in [
        "minmax",
        "minmax+bias",
        "dobi",
        "dobi-paper",
        "dobi+center-mean",
        "dobi-paper+center-median+bias",
        "sorted-uniform",
        "sorted-tail+bias",
        "sorted-tail+onedir+bias",
    ] {
        assert_eq!(method(name).name(), name);
    }
    assert_eq!(method("2dquant"), Method::DOBI);
    assert_eq!(method("2dquant+").name(), "sorted-tail+onedir+bias");
    assert_eq!(method("dobi+onedir"), Method::DOBI_PAPER);
    assert_eq!(method("dobi+center-mid"), Method::DOBI);
    assert_eq!(method("dobi").with_options(true, Some(Center::Median)).unwrap().name(), "dobi+center-median+bias");
    assert!(method("sorted-tail").sorts() && method("dobi+center-median").sorts() && !method("dobi+center-mean").sorts());
    // Repeated or contradictory options, and options on the full methods, are refused.
    for bad in ["dobi+foo", "sorted", "sorted-tail+center-mean", "minmax+onedir", "dobi+center-max", "", "dobi+bias+bias", "dobi+center-mean+center-median", "2dquant+bias"] {
        assert!(Method::parse(bad).is_err(), "{bad} should be rejected");
    }
    assert!(method("sorted-uniform").with_options(false, Some(Center::Mean)).is_err());
    assert!(method("dobi+center-mean").with_options(false, Some(Center::Mid)).is_err());
    assert_eq!(method("dobi+center-mean").with_options(false, Some(Center::Mean)).unwrap().name(), "dobi+center-mean");
}

/// Phase 1 through a tiny random model with a sorted method: every weight
/// quantizer gets the CPU reference's bounds and bias, every activation quantizer
/// finite bounds and a bias.
#[test]
fn tiny_model_calibration() {
    let ctx = gpu();
    let cfg = SwinConfig { embed_dim: 12, depths: vec![2], heads: vec![2], window: 4, mlp_hidden: 24, ..SwinConfig::light(2) };
    let w = SwinWeights::random(&cfg, 5);
    let model = GpuModel::upload(ctx, &w);
    let mut r = rng(40);
    let size = 12;
    let patches = Patches { n: 2, size, data: (0..2 * 3 * size * size).map(|_| r.random_range(0.0f32..1.0)).collect() };
    let m = method("sorted-tail+onedir+bias");
    let bits = 3;
    let params = calibrate(ctx, &model, &patches, m, bits).unwrap().params;
    let c = cfg.embed_dim;
    for (b, blk) in w.groups[0].blocks.iter().enumerate() {
        let tensors: [(usize, &[f32]); 4] = [(0, &blk.qkv.weight[..c * c]), (3, &blk.proj.weight), (4, &blk.fc1.weight), (5, &blk.fc2.weight)];
        for (i, t) in tensors {
            let spec = m.spec(0, Slot::Weight(i), 1, 1.0);
            let want = search_cpu(t, bits, &spec);
            let got = params[index(b, Slot::Weight(i))];
            let (l, u) = want.candidates[want.best];
            assert_eq!((got.lower, got.upper), (l, u), "block {b} weight {i}");
            assert!((got.bias - want.params.bias).abs() <= 1e-5 * (u - l), "block {b} weight {i}: bias {} vs {}", got.bias, want.params.bias);
        }
    }
    for (i, q) in params.iter().enumerate() {
        assert!(q.lower.is_finite() && q.upper.is_finite() && q.bias.is_finite() && q.lower <= q.upper, "quantizer {i}: {q:?}");
    }
    assert!(params.iter().filter(|q| q.bias != 0.0).count() > params.len() / 2, "bias correction should move most quantizers");
}
