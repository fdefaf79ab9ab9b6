//! The exported (deployable) quantized model: packing, and a round trip that keeps
//! every quantized weight's code.

use swinq::model::{SwinConfig, SwinWeights};
use swinq::quant::export::{export, load, pack, unpack};
use swinq::quant::file::QuantFile;
use swinq::quant::{all_names, code, fake_quant, index, levels, QParams, Slot};

#[test]
fn packing_round_trips_odd_lengths() {
    for bits in 2..=8 {
        for n in [0usize, 1, 5, 37] {
            let codes: Vec<u32> = (0..n).map(|i| (i * 7 + 3) as u32 % (1 << bits)).collect();
            let packed = pack(&codes, bits);
            assert_eq!(packed.len(), (n * bits as usize).div_ceil(8), "{n} codes of {bits} bits");
            assert_eq!(unpack(&packed, n, bits).as_deref(), Some(&codes[..]), "{n} codes of {bits} bits");
            if n > 0 {
                assert_eq!(unpack(&packed[..packed.len() - 1], n, bits), None, "short input");
            }
        }
    }
    // The stream's layout: 3-bit codes 1, 2, 7 → bits 001 010 111 from the lowest.
    assert_eq!(pack(&[1, 2, 7], 3), vec![0b11_010_001, 0b1]);
    // At 4 bits it is the first format's nibble pairs, first code in the low nibble.
    assert_eq!(pack(&[3, 12, 5], 4), vec![0xc3, 0x05]);
}

#[test]
fn exported_model_keeps_every_code_and_quantizer() {
    let cfg = SwinConfig { embed_dim: 16, depths: vec![2, 1], heads: vec![2, 2], window: 4, mlp_hidden: 36, ..SwinConfig::light(3) };
    let w = SwinWeights::random(&cfg, 5);
    let n = all_names(&cfg).len();
    let dir = tempfile::tempdir().unwrap();
    for bits in [2, 3, 4, 8] {
        let params: Vec<QParams> = (0..n)
            .map(|i| QParams { lower: -0.2 - 0.001 * i as f32, upper: 0.15 + 0.002 * i as f32, bias: 0.001 * (i % 5) as f32, _pad: 0.0 })
            .collect();
        let q = QuantFile { bits, method: "test".into(), scale: 3, source_sha256: "abc".into(), weights_sha256: None, settings: Default::default(), params };
        let path = dir.path().join(format!("m{bits}.safetensors"));
        let sizes = export(&w, &q, &path).unwrap();
        assert!(sizes.codes > 0 && sizes.file > sizes.codes);
        let (w2, q2) = load(&path).unwrap();
        assert_eq!(q2, q, "quantizers and settings");
        assert_eq!(w2.config, w.config);
        let lv = levels(bits);
        for (bi, (b, b2)) in w.groups.iter().flat_map(|g| &g.blocks).zip(w2.groups.iter().flat_map(|g| &g.blocks)).enumerate() {
            let pairs = [(&b.qkv.weight, &b2.qkv.weight), (&b.proj.weight, &b2.proj.weight), (&b.fc1.weight, &b2.fc1.weight), (&b.fc2.weight, &b2.fc2.weight)];
            for (li, (orig, back)) in pairs.into_iter().enumerate() {
                // qkv holds three quantizers (q, k, v), one per third of its rows.
                let parts = if li == 0 { 3 } else { 1 };
                let slot0 = if li == 0 { 0 } else { li + 2 };
                let rows = orig.len() / parts;
                for p in 0..parts {
                    let qp = &q.params[index(bi, Slot::Weight(slot0 + p))];
                    for (x, y) in orig[p * rows..(p + 1) * rows].iter().zip(&back[p * rows..(p + 1) * rows]) {
                        assert_eq!(code(*y, qp, lv), code(*x, qp, lv), "block {bi} linear {} W{bits}", slot0 + p);
                        assert_eq!(fake_quant(*y, qp, lv), fake_quant(*x, qp, lv));
                    }
                }
            }
            assert_eq!(b.qkv.bias, b2.qkv.bias);
            assert_eq!(b.norm1.weight, b2.norm1.weight);
            assert_eq!(b.bias_table, b2.bias_table);
        }
        assert_eq!(w.conv_first.weight, w2.conv_first.weight);
        assert_eq!(w.upsample.weight, w2.upsample.weight);
    }
}

/// Files of the first format (codes of b ≤ 4 bits as nibble pairs) still load, with
/// the same weights as the current format.
#[test]
fn first_format_files_still_load() {
    use swinq::model::checkpoint::{load_state_dict, read_safetensors_metadata, save_safetensors};
    use swinq::model::{Tensor, TensorData};
    let cfg = SwinConfig { embed_dim: 16, depths: vec![1], heads: vec![2], window: 4, mlp_hidden: 36, ..SwinConfig::light(2) };
    let w = SwinWeights::random(&cfg, 9);
    let n = all_names(&cfg).len();
    let params = vec![QParams { lower: -0.3, upper: 0.25, bias: 0.0, _pad: 0.0 }; n];
    let q = QuantFile { bits: 2, method: "test".into(), scale: 2, source_sha256: "abc".into(), weights_sha256: None, settings: Default::default(), params };
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (dir.path().join("new.safetensors"), dir.path().join("old.safetensors"));
    export(&w, &q, &new).unwrap();
    let written = load_state_dict(&new).unwrap();
    let mut sd = written.clone();
    for (key, t) in sd.iter_mut().filter(|(k, _)| k.ends_with(".codes")) {
        let TensorData::I64(s) = &written[&key.replace(".codes", ".shape")].data else { panic!("shape") };
        let (rows, cols) = (s[0] as usize, s[1] as usize);
        let row_bytes = t.shape[1];
        let nibbles: Vec<u8> = t.as_u8().unwrap().chunks(row_bytes).flat_map(|r| pack(&unpack(r, cols, 2).unwrap(), 4)).collect();
        *t = Tensor { shape: vec![rows, cols.div_ceil(2)], data: TensorData::U8(nibbles) };
    }
    let mut meta = read_safetensors_metadata(&new).unwrap();
    meta.insert("format".into(), "swinq-int-1".into());
    save_safetensors(&sd, &meta, &old).unwrap();
    let (from_new, from_old) = (load(&new).unwrap(), load(&old).unwrap());
    assert_eq!(from_old.1, from_new.1);
    assert_eq!(from_old.0.groups[0].blocks[0].fc2.weight, from_new.0.groups[0].blocks[0].fc2.weight);
    assert!(std::fs::metadata(&old).unwrap().len() > std::fs::metadata(&new).unwrap().len());
}
