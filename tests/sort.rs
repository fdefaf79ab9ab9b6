//! GPU radix sort against the CPU sort: u32 keys, key-value pairs (stability),
//! f32 through the order-preserving key transform, NaN rejection; each with both
//! strategies (workgroup tiles for GPUs, runs per invocation for CPU drivers).

mod common;

use common::{gpu, rng};
use rand::Rng;
use swinq::gpu::{GpuBuffer, GpuContext};
use swinq::sort::{f32_to_key, key_to_f32, RadixSorter, NAN_ERROR, RUN_KEYS};

const SMALL: [usize; 8] = [0, 1, 2, 255, 256, 257, 1000, 65537];

/// Both strategies with the device's largest tiles: workgroup tiles, then runs.
fn sorters(ctx: &GpuContext) -> [RadixSorter; 2] {
    [RadixSorter::with_layout(ctx, 16, None), RadixSorter::with_layout(ctx, 16, Some(RUN_KEYS))]
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    Dups,
    Sorted,
    Reversed,
}

fn keys(kind: Kind, n: usize, seed: u64) -> Vec<u32> {
    let mut r = rng(seed);
    match kind {
        Kind::Random => (0..n).map(|_| r.random()).collect(),
        Kind::Dups => (0..n).map(|_| r.random::<u32>() % 7).collect(),
        // Ascending over the whole range, with runs of three equal keys.
        Kind::Sorted => (0..n).map(|i| ((i / 3) as u64 * 0xffff_fff0 / n.max(1) as u64) as u32).collect(),
        Kind::Reversed => (0..n).rev().map(|i| (i as u64 * 0xffff_ffff / n.max(1) as u64) as u32).collect(),
    }
}

/// Sorts `data` on the GPU with `sorter` (a buffer one longer than n, holding a
/// sentinel that must survive) and checks it against the CPU sort.
fn check_u32(ctx: &GpuContext, sorter: &mut RadixSorter, data: &[u32], what: &str) {
    let n = data.len();
    let mut padded = data.to_vec();
    padded.push(0xdead_beef);
    let buf = GpuBuffer::from_slice(ctx, "keys", &padded);
    sorter.sort_u32(ctx, &buf, n).unwrap();
    let got: Vec<u32> = buf.read(ctx);
    let mut want = data.to_vec();
    want.sort_unstable();
    assert_eq!(got[n], 0xdead_beef, "{what}, {}: wrote past n", sorter.describe());
    if got[..n] != want[..] {
        let i = (0..n).find(|&i| got[i] != want[i]).unwrap();
        panic!("{what}, {} (n = {n}): first mismatch at {i}: got {:#x}, want {:#x}", sorter.describe(), got[i], want[i]);
    }
}

#[test]
fn u32_small_and_odd_sizes() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        for (i, &n) in SMALL.iter().enumerate() {
            for kind in [Kind::Random, Kind::Dups, Kind::Sorted, Kind::Reversed] {
                check_u32(ctx, &mut s, &keys(kind, n, 10 + i as u64), &format!("{kind:?}"));
            }
        }
    }
}

#[test]
fn u32_million() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        for kind in [Kind::Random, Kind::Dups, Kind::Reversed] {
            check_u32(ctx, &mut s, &keys(kind, 1_000_003, 3), &format!("{kind:?}"));
        }
    }
}

/// Tiles of 2048 keys (8 per invocation, the layout for devices with 17.3 to 25.6 KiB
/// of workgroup memory), with and without runs.
#[test]
fn u32_middle_tiles() {
    let ctx = gpu();
    for mut s in [RadixSorter::with_layout(ctx, 8, None), RadixSorter::with_layout(ctx, 8, Some(16))] {
        assert_eq!(s.tile(), 2048);
        for &n in &[255, 2049, 70001] {
            check_u32(ctx, &mut s, &keys(Kind::Random, n, 7), "middle tiles");
        }
    }
}

/// Tiles of 1024 keys (the 16 KiB workgroup-memory path): the histogram scan
/// then has three levels at 4.5 M keys; with runs of 16 keys, at 100 k keys.
#[test]
fn u32_small_tiles_three_scan_levels() {
    let ctx = gpu();
    let tiles = RadixSorter::with_layout(ctx, 4, None);
    let runs = RadixSorter::with_layout(ctx, 4, Some(16));
    for (mut s, three_levels) in [(tiles, 4_500_001), (runs, 100_003)] {
        assert_eq!(s.tile(), 1024);
        for &n in &[257, 65537] {
            check_u32(ctx, &mut s, &keys(Kind::Random, n, 5), "small tiles");
        }
        check_u32(ctx, &mut s, &keys(Kind::Random, three_levels, 6), "small tiles, 3 levels");
    }
}

fn check_pairs(ctx: &GpuContext, sorter: &mut RadixSorter, k: &[u32], what: &str) {
    let n = k.len();
    let idx: Vec<u32> = (0..n as u32).collect();
    let (kb, vb) = (GpuBuffer::from_slice(ctx, "k", k), GpuBuffer::from_slice(ctx, "v", &idx));
    sorter.sort_pairs_u32(ctx, &kb, &vb, n).unwrap();
    let (gk, gv): (Vec<u32>, Vec<u32>) = (kb.read(ctx), vb.read(ctx));
    // Stable: equal keys keep their original (index) order.
    let mut want: Vec<(u32, u32)> = k.iter().copied().zip(idx).collect();
    want.sort_by_key(|p| p.0);
    for i in 0..n {
        assert_eq!((gk[i], gv[i]), want[i], "{what}, {} (n = {n}): mismatch at {i}", sorter.describe());
    }
}

#[test]
fn pairs_are_permuted_together_and_stable() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        for (i, &n) in SMALL.iter().enumerate() {
            check_pairs(ctx, &mut s, &keys(Kind::Dups, n, 20 + i as u64), "dups");
        }
        check_pairs(ctx, &mut s, &keys(Kind::Random, 65537, 30), "random");
        // Duplicates in every byte position: keys with 4 random bits per byte.
        let mut r = rng(31);
        let k: Vec<u32> = (0..1_000_003).map(|_| r.random::<u32>() & 0x0303_0303).collect();
        check_pairs(ctx, &mut s, &k, "nibble dups");
    }
}

/// Negatives, ±0, ±Inf, subnormals, duplicates and ordinary values.
fn special_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    let specials = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45, -1e-45, f32::MAX, f32::MIN, 1.0, -1.0];
    (0..n)
        .map(|_| match r.random_range(0..10) {
            0 => specials[r.random_range(0..specials.len())],
            1 => f32::from_bits(r.random_range(0..0x0080_0000)) * if r.random() { 1.0 } else { -1.0 },
            2 => (r.random_range(-50..50) as f32) * 0.25,
            3 => f32::from_bits(r.random::<u32>() & 0xff7f_ffff), // any finite bits (exponent ≠ 255)
            _ => r.random_range(-3.0f32..3.0),
        })
        .collect()
}

fn check_f32(ctx: &GpuContext, sorter: &mut RadixSorter, data: &[f32], what: &str) {
    let n = data.len();
    let buf = GpuBuffer::from_slice(ctx, "x", data);
    sorter.sort_f32(ctx, &buf, n).unwrap();
    let got: Vec<u32> = buf.read(ctx);
    let mut want = data.to_vec();
    want.sort_unstable_by(f32::total_cmp);
    for i in 0..n {
        assert_eq!(got[i], want[i].to_bits(), "{what}, {} (n = {n}): mismatch at {i}: got {}, want {}", sorter.describe(), f32::from_bits(got[i]), want[i]);
    }
}

#[test]
fn f32_specials_and_sizes() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        for (i, &n) in SMALL.iter().chain(&[1_000_003]).enumerate() {
            check_f32(ctx, &mut s, &special_f32(n, 40 + i as u64), "specials");
        }
        // -0.0 before +0.0.
        let buf = GpuBuffer::from_slice(ctx, "z", &[0.0f32, -0.0, 0.0, -0.0]);
        s.sort_f32(ctx, &buf, 4).unwrap();
        let got: Vec<u32> = buf.read(ctx);
        assert_eq!(got, [0x8000_0000, 0x8000_0000, 0, 0]);
    }
}

#[test]
fn f32_ten_million() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        check_f32(ctx, &mut s, &special_f32(10_000_019, 50), "10 M");
    }
}

#[test]
fn nan_is_rejected_and_data_untouched() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        for (n, at) in [(1, 0), (1000, 999), (65537, 12345)] {
            let mut x = special_f32(n, 60);
            x[at] = if n == 1000 { -f32::NAN } else { f32::NAN };
            let buf = GpuBuffer::from_slice(ctx, "x", &x);
            let err = s.sort_f32(ctx, &buf, n).unwrap_err();
            assert_eq!(err.to_string(), NAN_ERROR);
            let got: Vec<u32> = buf.read(ctx);
            assert!(got.iter().zip(&x).all(|(g, w)| *g == w.to_bits()), "data changed");
        }
        // NaN past n is not looked at.
        let mut x = special_f32(300, 61);
        x[299] = f32::NAN;
        let buf = GpuBuffer::from_slice(ctx, "x", &x);
        s.sort_f32(ctx, &buf, 299).unwrap();
        let got: Vec<u32> = buf.read(ctx);
        let mut want = x[..299].to_vec();
        want.sort_unstable_by(f32::total_cmp);
        assert!(got[..299].iter().zip(&want).all(|(g, w)| *g == w.to_bits()), "NaN past n: wrong order");
        assert_eq!(got[299], f32::NAN.to_bits());
    }
}

#[test]
fn errors_for_short_or_oversized_buffers() {
    let ctx = gpu();
    let mut s = RadixSorter::new(ctx);
    let buf = GpuBuffer::zeros(ctx, "k", 10);
    assert!(s.sort_u32(ctx, &buf, 11).is_err());
    let too_many = (ctx.max_binding() / 4 + 1) as usize;
    let big = GpuBuffer::zeros(ctx, "k", too_many);
    let err = s.sort_u32(ctx, &big, too_many).unwrap_err();
    assert!(err.to_string().contains("largest storage binding"), "{err}");
}

#[test]
fn cpu_key_transform_round_trips() {
    let mut r = rng(70);
    let mut xs: Vec<f32> = special_f32(100_000, 71);
    xs.extend((0..1000).map(|_| f32::from_bits(r.random::<u32>() & 0xff7f_ffff)));
    for w in xs.windows(2) {
        assert_eq!(w[0].total_cmp(&w[1]), f32_to_key(w[0]).cmp(&f32_to_key(w[1])));
        assert_eq!(key_to_f32(f32_to_key(w[0])).to_bits(), w[0].to_bits());
    }
}

/// Several sorts recorded back to back with one sorter, no wait in between: each
/// launch keeps its own parameters and the scratch buffers are reused in order.
#[test]
fn back_to_back_sorts_without_waiting() {
    let ctx = gpu();
    for mut s in sorters(ctx) {
        let a = keys(Kind::Random, 65537, 80);
        let b = keys(Kind::Dups, 1000, 81);
        let c = special_f32(5000, 82);
        let (ab, bb, cb) = (GpuBuffer::from_slice(ctx, "a", &a), GpuBuffer::from_slice(ctx, "b", &b), GpuBuffer::from_slice(ctx, "c", &c));
        let idx: Vec<u32> = (0..b.len() as u32).collect();
        let vb = GpuBuffer::from_slice(ctx, "v", &idx);
        s.sort_u32(ctx, &ab, a.len()).unwrap();
        s.sort_pairs_u32(ctx, &bb, &vb, b.len()).unwrap();
        s.sort_f32(ctx, &cb, c.len()).unwrap();
        let (mut wa, mut wc) = (a.clone(), c.clone());
        wa.sort_unstable();
        wc.sort_unstable_by(f32::total_cmp);
        let mut wb: Vec<(u32, u32)> = b.iter().copied().zip(idx).collect();
        wb.sort_by_key(|p| p.0);
        assert_eq!(ab.read::<u32>(ctx), wa);
        let (gb, gv): (Vec<u32>, Vec<u32>) = (bb.read(ctx), vb.read(ctx));
        assert_eq!(gb.into_iter().zip(gv).collect::<Vec<_>>(), wb);
        assert!(cb.read::<f32>(ctx).iter().zip(&wc).all(|(g, w)| g.to_bits() == w.to_bits()));
    }
}

/// Sorts recorded ahead of time and replayed in one submission, a large one before
/// a small one (whose NaN slot the large one's histograms overwrite), as the
/// calibration plans record them.
#[test]
fn recorded_sorts_replay_in_one_submission() {
    let ctx = gpu();
    for mut sorter in sorters(ctx) {
        let (big, small) = (keys(Kind::Random, 70_001, 50), keys(Kind::Dups, 9_999, 51));
        sorter.reserve(ctx, big.len());
        let (bb, sb) = (GpuBuffer::from_slice(ctx, "big", &big), GpuBuffer::from_slice(ctx, "small", &small));
        let mut ds = sorter.record_u32(ctx, &bb, big.len()).unwrap();
        ds.extend(sorter.record_u32(ctx, &sb, small.len()).unwrap());
        swinq::gpu::run_now(ctx, &ds);
        for (buf, data, what) in [(&bb, big, "big"), (&sb, small, "small")] {
            let mut want = data.clone();
            want.sort_unstable();
            assert_eq!(buf.read::<u32>(ctx), want, "{what}");
        }
        let huge = GpuBuffer::zeros(ctx, "huge", 1 << 18);
        assert!(sorter.record_u32(ctx, &huge, 1 << 18).is_err(), "sorts past the reserve must be refused");
    }
}
