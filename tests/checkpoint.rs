//! Checkpoint reading and writing: the stand-in `.pth`, the golden safetensors, and
//! hand-built (tiny, hostile or broken) torch.save archives.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use swinq::model::checkpoint::{
    load_state_dict, load_weights, read_safetensors_metadata, save_safetensors, sha256_file,
};
use swinq::model::{SwinConfig, Tensor, TensorData};

const STANDIN_SHA256: &str = "0380c778e7121f70cbf43a8bdb479c5525ea6c435d913e0c4770fc89954c2dd3";

/// The shared data folder; a missing one is a failure, never a skip.
fn shared() -> PathBuf {
    let p = std::env::var_os("SWINQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        p.is_dir(),
        "shared data folder {} not found: set SWINQ_SHARED to the folder holding weights/ and golden/",
        p.display()
    );
    p
}

fn standin() -> PathBuf {
    shared().join("weights/swinir_light_x2_standin.pth")
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

// ---------- a tiny pickle writer, emitting what torch.save emits ----------

/// A state-dict entry: its name and the code that writes its tensor.
type Entry<'a> = (&'a str, &'a dyn Fn(&mut Pk));

struct Pk(Vec<u8>);

impl Pk {
    fn new() -> Self {
        Pk(vec![0x80, 2]) // PROTO 2
    }
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn int(&mut self, v: u32) -> &mut Self {
        if v < 256 {
            self.0.extend([b'K', v as u8]);
        } else if v < 65536 {
            self.0.push(b'M');
            self.0.extend((v as u16).to_le_bytes());
        } else {
            self.0.push(b'J');
            self.0.extend(v.to_le_bytes());
        }
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn ints(&mut self, v: &[u32]) -> &mut Self {
        self.op(b'(');
        for &x in v {
            self.int(x);
        }
        self.op(b't')
    }
    /// `_rebuild_tensor_v2(('storage', T, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, class: &str, key: &str, numel: u32, offset: u32, size: &[u32], stride: &[u32]) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(').str("storage").global("torch", class).str(key).str("cpu").int(numel).op(b't').op(b'Q');
        self.int(offset).ints(size).ints(stride).op(0x89);
        self.global("collections", "OrderedDict").op(b')').op(b'R');
        self.op(b't').op(b'R')
    }
    /// An OrderedDict of named tensors (each given as a closure over the writer).
    fn state_dict(&mut self, entries: &[Entry]) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R').op(b'(');
        for (k, f) in entries {
            self.str(k);
            f(self);
        }
        self.op(b'u')
    }
    fn stop(&mut self) -> Vec<u8> {
        self.op(b'.');
        self.0.clone()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A torch.save-style zip: `tiny/data.pkl`, `tiny/byteorder`, `tiny/data/<key>`.
fn make_pth(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("tiny/data.pkl", opt).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("tiny/byteorder", opt).unwrap();
    z.write_all(b"little").unwrap();
    for (k, b) in storages {
        z.start_file(format!("tiny/data/{k}"), opt).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn write_tmp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `{'params': OrderedDict(w = [1, 2, 3, 4] as (2, 2))}` with storage "0".
fn tiny_pkl(top_key: &str) -> Vec<u8> {
    let w = |p: &mut Pk| {
        p.tensor("FloatStorage", "0", 4, 0, &[2, 2], &[2, 1]);
    };
    let mut p = Pk::new();
    p.op(b'}').str(top_key).state_dict(&[("w", &w)]).op(b's');
    p.stop()
}

// ---------- the stand-in checkpoint ----------

#[test]
fn standin_pth_loads_as_swinir_light_x2() {
    let path = standin();
    assert_eq!(sha256_file(&path).unwrap(), STANDIN_SHA256);
    let sd = load_state_dict(&path).unwrap();
    assert_eq!(SwinConfig::infer(&sd).unwrap(), SwinConfig::light(2));
    let masks: Vec<&String> = sd.keys().filter(|k| k.ends_with(".attn_mask")).collect();
    assert_eq!(masks.len(), 12, "attn_mask buffers: {masks:?}");
    assert_eq!(sd["layers.0.residual_group.blocks.1.attn_mask"].shape, vec![64, 64, 64]);
    assert_eq!(sd["conv_first.weight"].shape, vec![60, 3, 3, 3]);
    assert_eq!(sd["upsample.0.weight"].shape, vec![12, 60, 3, 3]);
    let idx = &sd["layers.2.residual_group.blocks.3.attn.relative_position_index"];
    assert_eq!(idx.shape, vec![64, 64]);
    match &idx.data {
        TensorData::I64(v) => {
            assert_eq!(v[0], 112); // (0-0+7)*15 + (0-0+7)
            assert!(v.iter().all(|&i| (0..225).contains(&i)));
        }
        other => panic!("relative_position_index should be int64, got {other:?}"),
    }
    for (k, t) in &sd {
        assert_eq!(
            t.numel(),
            match &t.data {
                TensorData::F32(v) => v.len(),
                TensorData::I64(v) => v.len(),
                TensorData::U8(v) => v.len(),
            },
            "{k}"
        );
        if let Some(v) = t.as_f32() {
            assert!(v.iter().all(|x| x.is_finite()), "{k} has non-finite values");
        }
    }
    let w = load_weights(&path).unwrap();
    assert_eq!(w.config, SwinConfig::light(2));
    assert!(w.conv_first.weight.iter().any(|&x| x != 0.0));
}

#[test]
fn golden_safetensors_keeps_its_keys() {
    let path = shared().join("golden/random_x2.safetensors");
    let sd = load_state_dict(&path).unwrap();
    assert!(sd.contains_key("weights.conv_first.weight"));
    assert!(sd.contains_key("input"));
    assert!(!sd.contains_key("conv_first.weight"), "safetensors keys must not be rewritten");
    // int32 in the file, int64 here.
    let idx = &sd["weights.layers.0.residual_group.blocks.0.attn.relative_position_index"];
    assert!(matches!(idx.data, TensorData::I64(_)));
    // With the prefix removed the random weights are a valid SwinIR-light x2.
    let stripped =
        sd.iter().filter_map(|(k, t)| k.strip_prefix("weights.").map(|k| (k.to_string(), t.clone()))).collect();
    let w = swinq::model::SwinWeights::from_state_dict(&stripped).unwrap();
    assert_eq!(w.config, SwinConfig::light(2));
    // load_weights sees the prefixed keys and says which file it was.
    let e = err_of(load_weights(&path));
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("conv_first.weight"), "{e}");
}

#[test]
fn safetensors_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let raw = load_state_dict(&standin()).unwrap();
    let weights = load_weights(&standin()).unwrap();
    let meta: BTreeMap<String, String> =
        [("format".to_string(), "swinq-test".to_string()), ("scale".to_string(), "2".to_string())].into();
    for (name, sd) in [("raw.safetensors", raw), ("weights.safetensors", weights.to_state_dict())] {
        let out = dir.path().join(name);
        save_safetensors(&sd, &meta, &out).unwrap();
        assert_eq!(load_state_dict(&out).unwrap(), sd, "{name}");
        assert_eq!(read_safetensors_metadata(&out).unwrap(), meta);
    }
    // The same tensors and metadata give the same bytes (the file's SHA-256 names a
    // checkpoint in quantized files), whatever order a HashMap would visit them in.
    let many: BTreeMap<String, String> = (0..16).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let out = dir.path().join(format!("same{i}.safetensors"));
            save_safetensors(&weights.to_state_dict(), &many, &out).unwrap();
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert!(files.windows(2).all(|w| w[0] == w[1]), "saving twice gave different bytes");
    assert_eq!(read_safetensors_metadata(&dir.path().join("same0.safetensors")).unwrap(), many);
    // Overwriting works, and no temporary file is left behind.
    let out = dir.path().join("raw.safetensors");
    let small: swinq::model::StateDict = [("x".to_string(), Tensor::f32(vec![2], vec![1.0, -2.5]))].into();
    save_safetensors(&small, &BTreeMap::new(), &out).unwrap();
    assert_eq!(load_state_dict(&out).unwrap(), small);
    assert!(read_safetensors_metadata(&out).unwrap().is_empty());
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["raw.safetensors", "same0.safetensors", "same1.safetensors", "same2.safetensors", "same3.safetensors", "weights.safetensors"]);
}

#[test]
fn save_rejects_inconsistent_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.safetensors");
    let bad = Tensor { shape: vec![3], data: TensorData::F32(vec![1.0]) };
    let e = err_of(save_safetensors(&[("bad".to_string(), bad)].into(), &BTreeMap::new(), &out));
    assert!(e.contains("bad.safetensors") && e.contains("`bad`"), "{e}");
    assert!(!out.exists());
}

// ---------- hand-built archives ----------

#[test]
fn tiny_archive_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tmp(&dir, "tiny.pth", &make_pth(&tiny_pkl("params"), &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]));
    let sd = load_state_dict(&p).unwrap();
    assert_eq!(sd.len(), 1);
    assert_eq!(sd["w"], Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn params_is_preferred_over_params_ema() {
    let dir = tempfile::tempdir().unwrap();
    let a = |p: &mut Pk| {
        p.tensor("FloatStorage", "0", 2, 0, &[2], &[1]);
    };
    let b = |p: &mut Pk| {
        p.tensor("FloatStorage", "1", 2, 0, &[2], &[1]);
    };
    let mut pk = Pk::new();
    pk.op(b'}').op(b'(');
    pk.str("params").state_dict(&[("w", &a)]);
    pk.str("params_ema").state_dict(&[("w", &b)]);
    pk.op(b'u');
    let bytes = make_pth(&pk.stop(), &[("0", f32_bytes(&[1.0, 1.0])), ("1", f32_bytes(&[7.0, 7.0]))]);
    let sd = load_state_dict(&write_tmp(&dir, "ema.pth", &bytes)).unwrap();
    assert_eq!(sd["w"].as_f32().unwrap(), &[1.0, 1.0]);
}

#[test]
fn top_level_state_dict_and_module_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let a = |p: &mut Pk| {
        p.tensor("FloatStorage", "0", 2, 0, &[2], &[1]);
    };
    let mut pk = Pk::new();
    pk.state_dict(&[("module.x", &a), ("module.y", &a)]);
    let bytes = make_pth(&pk.stop(), &[("0", f32_bytes(&[3.0, 4.0]))]);
    let sd = load_state_dict(&write_tmp(&dir, "dp.pth", &bytes)).unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(sd["y"].as_f32().unwrap(), &[3.0, 4.0]);
}

#[test]
fn offsets_strides_and_dtypes_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    // Storage 0 = [0..8); `t` is its 2x3 transpose view starting at element 2.
    let t = |p: &mut Pk| {
        p.tensor("FloatStorage", "0", 8, 2, &[2, 3], &[1, 2]);
    };
    let h = |p: &mut Pk| {
        p.tensor("HalfStorage", "1", 2, 0, &[2], &[1]);
    };
    let d = |p: &mut Pk| {
        p.tensor("DoubleStorage", "2", 1, 0, &[], &[]);
    };
    let i = |p: &mut Pk| {
        p.tensor("IntStorage", "3", 2, 1, &[1], &[1]);
    };
    let l = |p: &mut Pk| {
        p.tensor("LongStorage", "4", 2, 0, &[2], &[1]);
    };
    let bf = |p: &mut Pk| {
        p.tensor("BFloat16Storage", "5", 1, 0, &[1], &[1]);
    };
    let mut pk = Pk::new();
    pk.op(b'}')
        .str("params")
        .state_dict(&[("t", &t), ("h", &h), ("d", &d), ("i", &i), ("l", &l), ("bf", &bf)])
        .op(b's');
    let storages = [
        ("0", f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])),
        ("1", [half::f16::from_f32(1.5), half::f16::from_f32(-0.25)].iter().flat_map(|x| x.to_le_bytes()).collect()),
        ("2", 2.5f64.to_le_bytes().to_vec()),
        ("3", [5i32, -9].iter().flat_map(|x| x.to_le_bytes()).collect()),
        ("4", [i64::MAX, -1].iter().flat_map(|x| x.to_le_bytes()).collect()),
        ("5", half::bf16::from_f32(3.0).to_le_bytes().to_vec()),
    ];
    let sd = load_state_dict(&write_tmp(&dir, "views.pth", &make_pth(&pk.stop(), &storages))).unwrap();
    assert_eq!(sd["t"], Tensor::f32(vec![2, 3], vec![2.0, 4.0, 6.0, 3.0, 5.0, 7.0]));
    assert_eq!(sd["h"].as_f32().unwrap(), &[1.5, -0.25]);
    assert_eq!(sd["d"], Tensor::f32(vec![], vec![2.5]));
    assert_eq!(sd["i"], Tensor { shape: vec![1], data: TensorData::I64(vec![-9]) });
    assert_eq!(sd["l"].data, TensorData::I64(vec![i64::MAX, -1]));
    assert_eq!(sd["bf"].as_f32().unwrap(), &[3.0]);
}

#[test]
fn short_storage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tmp(&dir, "short.pth", &make_pth(&tiny_pkl("params"), &[("0", f32_bytes(&[1.0, 2.0, 3.0]))]));
    let e = err_of(load_state_dict(&p));
    assert!(e.contains("short.pth") && e.contains("storage `data/0` holds 12 bytes, tensor `w` needs 16"), "{e}");
    let p = write_tmp(&dir, "nostorage.pth", &make_pth(&tiny_pkl("params"), &[]));
    let e = err_of(load_state_dict(&p));
    assert!(e.contains("`tiny/data/0` is missing"), "{e}");
}

#[test]
fn code_execution_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut pk = Pk::new();
    pk.global("os", "system").op(b'(').str("echo pwned").op(b't').op(b'R');
    let p = write_tmp(&dir, "evil.pth", &make_pth(&pk.stop(), &[]));
    let e = err_of(load_state_dict(&p));
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    assert!(e.contains("pickle refers to forbidden global `os.system`: a checkpoint must never run code"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");

    let mut pk = Pk::new();
    pk.global("builtins", "eval");
    let e = err_of(load_state_dict(&write_tmp(&dir, "eval.pth", &make_pth(&pk.stop(), &[]))));
    assert!(e.contains("`builtins.eval`") && e.contains("must never run code"), "{e}");

    // STACK_GLOBAL (protocol 4) goes through the same whitelist.
    let mut pk = Pk::new();
    pk.str("posix").str("system").op(0x93);
    let e = err_of(load_state_dict(&write_tmp(&dir, "sg.pth", &make_pth(&pk.stop(), &[]))));
    assert!(e.contains("`posix.system`") && e.contains("must never run code"), "{e}");
}

#[test]
fn unknown_opcodes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // INST (a real pickle opcode that imports and calls), NEWOBJ, and a byte that is no opcode.
    for (op, name) in [(b'i', "INST"), (0x81, "NEWOBJ"), (0xff, "unknown")] {
        let mut pk = Pk::new();
        pk.op(op);
        let e = err_of(load_state_dict(&write_tmp(&dir, "op.pth", &make_pth(&pk.stop(), &[]))));
        assert!(e.contains(&format!("0x{op:02x} ({name})")) && e.contains("must never run code"), "{e}");
    }
}

#[test]
fn truncated_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(standin()).unwrap();
    for n in [1 << 20, 100, full.len() - 10] {
        let p = write_tmp(&dir, "cut.pth", &full[..n]);
        let e = err_of(load_state_dict(&p));
        assert!(e.contains("cut.pth") && e.contains("truncated"), "{n}: {e}");
    }
    // One flipped bit inside a storage is caught by the zip CRC.
    let mut flipped = full.clone();
    flipped[5_000_000] ^= 1;
    let e = err_of(load_state_dict(&write_tmp(&dir, "flip.pth", &flipped)));
    assert!(e.contains("flip.pth") && e.contains("checksum"), "{e}");
}

#[test]
fn garbage_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pth");
    let e = err_of(load_state_dict(&missing));
    assert!(e.contains("nope.pth") && e.contains("cannot open"), "{e}");
    assert!(err_of(load_state_dict(&write_tmp(&dir, "empty.pth", b""))).contains("empty"));
    let legacy = err_of(load_state_dict(&write_tmp(&dir, "old.pth", &[0x80, 2, 0x8a, 10])));
    assert!(legacy.contains("legacy"), "{legacy}");
    // Random bytes, with and without each format's magic.
    let mut rng = Lcg(12345);
    for round in 0..200 {
        let len = (rng.next() % 3000) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match round % 3 {
            0 if len >= 2 => b[..2].copy_from_slice(b"PK"),
            1 if len >= 9 => {
                b[..8].copy_from_slice(&((len - 8) as u64 / 2).to_le_bytes());
                b[8] = b'{';
            }
            _ => {}
        }
        let p = write_tmp(&dir, "garbage.bin", &b);
        let e = err_of(load_state_dict(&p));
        assert!(e.starts_with(&p.display().to_string()) && !e.contains('\n'), "{e}");
    }
}

/// Mutated and cut pickles inside valid zips: errors, never panics.
#[test]
fn corrupted_pickles_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = tiny_pkl("params");
    let storage = [("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))];
    for cut in 0..pkl.len() {
        let p = write_tmp(&dir, "cut.pth", &make_pth(&pkl[..cut], &storage));
        assert!(load_state_dict(&p).is_err(), "cut at {cut}");
    }
    let mut rng = Lcg(777);
    for _ in 0..1500 {
        let mut m = pkl.clone();
        for _ in 0..1 + rng.next() % 3 {
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
        }
        let p = write_tmp(&dir, "mut.pth", &make_pth(&m, &storage));
        if let Err(e) = load_state_dict(&p) {
            assert!(!format!("{e:#}").contains('\n'));
        }
    }
}

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A quantized file fits the checkpoint it was made for in either format: the `.pth`
/// and its safetensors copy hold the same weight values, and the file records their hash.
#[test]
fn quantized_files_fit_both_formats_of_their_checkpoint() {
    use swinq::quant::file::QuantFile;
    let dir = tempfile::tempdir().unwrap();
    let pth = load_weights(&standin()).unwrap();
    let copy = dir.path().join("copy.safetensors");
    save_safetensors(&pth.to_state_dict(), &BTreeMap::new(), &copy).unwrap();
    let st = load_weights(&copy).unwrap();
    assert_eq!(pth.content_sha256(), st.content_sha256());
    let copy_sha = sha256_file(&copy).unwrap();
    assert_ne!(copy_sha, STANDIN_SHA256);
    let mut q = QuantFile {
        bits: 4,
        method: "dobi".into(),
        scale: 2,
        source_sha256: STANDIN_SHA256.into(),
        weights_sha256: Some(pth.content_sha256()),
        settings: BTreeMap::new(),
        params: Vec::new(),
    };
    assert!(q.made_for(STANDIN_SHA256, &pth) && q.made_for(&copy_sha, &st));
    let mut other = pth.clone();
    other.conv_first.weight[0] += 1e-3;
    assert_ne!(other.content_sha256(), pth.content_sha256());
    assert!(!q.made_for(&copy_sha, &other));
    // Files without the weights' hash (written before it was recorded) match by file only.
    q.weights_sha256 = None;
    assert!(q.made_for(STANDIN_SHA256, &pth) && !q.made_for(&copy_sha, &st));
}

/// A file whose SwinIR tensors sit under a prefix (the golden files' `weights.`) is
/// refused with the prefix named.
#[test]
fn prefixed_keys_are_named_in_the_error() {
    let e = err_of(load_weights(&shared().join("golden/random_x3.safetensors")));
    assert!(e.contains("the file has `weights.conv_first.weight`") && e.contains("no `weights.` prefix"), "{e}");
}

/// A checkpoint that is not SwinIR-light, or whose values are broken, is refused with
/// the tensor named: a missing tensor, a wrong shape, an extra tensor, a NaN.
#[test]
fn architecture_errors_name_the_tensor() {
    use swinq::model::SwinWeights;
    let dir = tempfile::tempdir().unwrap();
    let good = SwinWeights::random(&SwinConfig::light(2), 1).to_state_dict();
    let fc1 = "layers.1.residual_group.blocks.2.mlp.fc1.bias";
    let proj = "layers.2.residual_group.blocks.1.attn.proj.weight";
    type Mutation<'a> = (&'a str, &'a dyn Fn(&mut swinq::model::StateDict), String);
    let mutations: [Mutation; 4] = [
        ("missing", &|sd| drop(sd.remove(fc1)), format!("missing tensor `{fc1}`")),
        ("shape", &|sd| drop(sd.insert(proj.into(), Tensor::f32(vec![60, 59], vec![0.0; 60 * 59]))), format!("tensor `{proj}` has shape [60, 59], expected [60, 60]")),
        ("extra", &|sd| drop(sd.insert("extra.weight".into(), Tensor::f32(vec![1], vec![0.0]))), "unexpected tensor `extra.weight`".into()),
        (
            "nan",
            &|sd| {
                let t = sd.get_mut(proj).unwrap();
                let mut v = t.as_f32().unwrap().to_vec();
                v[7] = f32::NAN;
                *t = Tensor::f32(t.shape.clone(), v);
            },
            format!("tensor `{proj}` holds a non-finite value (NaN) at flat index 7"),
        ),
    ];
    for (name, mutate, want) in mutations {
        let mut sd = good.clone();
        mutate(&mut sd);
        let path = dir.path().join(format!("{name}.safetensors"));
        save_safetensors(&sd, &BTreeMap::new(), &path).unwrap();
        let e = err_of(load_weights(&path));
        assert!(e.starts_with(&path.display().to_string()) && e.contains(&want), "{name}: {e}");
    }
    // The unmodified weights load.
    let path = dir.path().join("good.safetensors");
    save_safetensors(&good, &BTreeMap::new(), &path).unwrap();
    assert_eq!(load_weights(&path).unwrap().to_state_dict(), good);
}

/// A checkpoint with only `params_ema` (as some SwinIR releases are saved) loads it.
#[test]
fn params_ema_alone_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tmp(&dir, "ema_only.pth", &make_pth(&tiny_pkl("params_ema"), &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]));
    assert_eq!(load_state_dict(&p).unwrap()["w"], Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
}

/// A quantized file claiming a bit width swinq does not run is refused on load.
#[test]
fn quantized_file_bits_outside_2_to_8_are_refused() {
    use swinq::quant::file::QuantFile;
    use swinq::quant::QParams;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SwinConfig::light(2);
    let params = vec![QParams { lower: -1.0, upper: 1.0, bias: 0.0, _pad: 0.0 }; swinq::quant::all_names(&cfg).len()];
    for bits in [1, 4, 9] {
        let q = QuantFile { bits, method: "dobi".into(), scale: 2, source_sha256: STANDIN_SHA256.into(), weights_sha256: None, settings: BTreeMap::new(), params: params.clone() };
        let path = dir.path().join(format!("w{bits}.safetensors"));
        q.save(&cfg, None, &path).unwrap();
        match bits {
            4 => assert_eq!(QuantFile::load(&path, &cfg).unwrap().bits, 4),
            _ => assert!(err_of(QuantFile::load(&path, &cfg)).contains(&format!("metadata `bits` is {bits}, not 2 to 8")), "W{bits}"),
        }
    }
}
