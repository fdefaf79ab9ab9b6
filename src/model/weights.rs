//! The model's float weights with their roles, validated against the architecture.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;

use super::config::SwinConfig;
use super::tensor::{StateDict, Tensor, TensorData};

/// y = x·Wᵀ + b with W stored (out, in) as in PyTorch.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_dim: usize,
    pub in_dim: usize,
}

/// 3×3 convolution, padding 1, weights (out, in, 3, 3).
#[derive(Clone, Debug)]
pub struct Conv3x3 {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_ch: usize,
    pub in_ch: usize,
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    /// The fused q/k/v projection, (3C, C): rows 0..C are q, C..2C k, 2C..3C v.
    pub qkv: Linear,
    /// ((2w-1)², heads), row-major.
    pub bias_table: Vec<f32>,
    pub proj: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub blocks: Vec<Block>,
    pub conv: Conv3x3,
}

#[derive(Clone, Debug)]
pub struct SwinWeights {
    pub config: SwinConfig,
    pub conv_first: Conv3x3,
    pub patch_norm: LayerNorm,
    pub groups: Vec<Group>,
    pub norm: LayerNorm,
    pub conv_after_body: Conv3x3,
    pub upsample: Conv3x3,
}

/// Prefix of block `j` of group `r` in state-dict keys and quantizer names.
pub fn block_prefix(r: usize, j: usize) -> String {
    format!("layers.{r}.residual_group.blocks.{j}")
}

/// Checks every key and shape while taking tensors out of a state dict.
struct Reader<'a> {
    sd: &'a StateDict,
    used: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    fn f32(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.sd.get(key).with_context(|| format!("missing tensor `{key}`"))?;
        if t.shape != shape {
            bail!("tensor `{key}` has shape {:?}, expected {:?}", t.shape, shape);
        }
        let data = t
            .as_f32()
            .with_context(|| format!("tensor `{key}` is {}, expected float32", t.dtype_name()))?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!("tensor `{key}` holds a non-finite value ({}) at flat index {i}", data[i]);
        }
        self.used.insert(key.to_string());
        Ok(data.to_vec())
    }

    fn linear(&mut self, p: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.f32(&format!("{p}.weight"), &[out_dim, in_dim])?,
            bias: self.f32(&format!("{p}.bias"), &[out_dim])?,
            out_dim,
            in_dim,
        })
    }

    fn conv(&mut self, p: &str, out_ch: usize, in_ch: usize) -> Result<Conv3x3> {
        Ok(Conv3x3 {
            weight: self.f32(&format!("{p}.weight"), &[out_ch, in_ch, 3, 3])?,
            bias: self.f32(&format!("{p}.bias"), &[out_ch])?,
            out_ch,
            in_ch,
        })
    }

    fn norm(&mut self, p: &str, c: usize) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: self.f32(&format!("{p}.weight"), &[c])?, bias: self.f32(&format!("{p}.bias"), &[c])? })
    }

    /// The stored index must equal the formula the kernels use; it is not loaded.
    fn check_relative_index(&mut self, key: &str, window: usize) -> Result<()> {
        let Some(t) = self.sd.get(key) else { return Ok(()) };
        let n = window * window;
        if t.shape != [n, n] {
            bail!("tensor `{key}` has shape {:?}, expected [{n}, {n}]", t.shape);
        }
        let values: Vec<i64> = match &t.data {
            TensorData::I64(v) => v.clone(),
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        };
        for (idx, &v) in values.iter().enumerate() {
            if v != relative_position_index(window, idx / n, idx % n) as i64 {
                bail!("tensor `{key}` differs from SwinIR's relative position index at ({}, {})", idx / n, idx % n);
            }
        }
        self.used.insert(key.to_string());
        Ok(())
    }
}

/// Row of the relative-position bias table for query token i and key token j of a window.
pub fn relative_position_index(window: usize, i: usize, j: usize) -> usize {
    let (yi, xi) = (i / window, i % window);
    let (yj, xj) = (j / window, j % window);
    (yi + window - 1 - yj) * (2 * window - 1) + (xi + window - 1 - xj)
}

impl SwinWeights {
    /// Builds the model from a state dict: infers the architecture, then checks that
    /// every tensor it needs is there with the right shape and finite values, and that
    /// nothing unexpected is left over (`attn_mask` buffers are ignored).
    pub fn from_state_dict(sd: &StateDict) -> Result<Self> {
        let config = SwinConfig::infer(sd)?;
        Self::with_config(sd, config)
    }

    pub fn with_config(sd: &StateDict, config: SwinConfig) -> Result<Self> {
        let c = config.embed_dim;
        let mut rd = Reader { sd, used: BTreeSet::new() };
        let conv_first = rd.conv("conv_first", c, config.in_chans)?;
        let patch_norm = rd.norm("patch_embed.norm", c)?;
        let mut groups = Vec::new();
        for (r, &depth) in config.depths.iter().enumerate() {
            let mut blocks = Vec::new();
            for j in 0..depth {
                let p = block_prefix(r, j);
                rd.check_relative_index(&format!("{p}.attn.relative_position_index"), config.window)?;
                blocks.push(Block {
                    norm1: rd.norm(&format!("{p}.norm1"), c)?,
                    qkv: rd.linear(&format!("{p}.attn.qkv"), 3 * c, c)?,
                    bias_table: rd.f32(
                        &format!("{p}.attn.relative_position_bias_table"),
                        &[config.bias_table_rows(), config.heads[r]],
                    )?,
                    proj: rd.linear(&format!("{p}.attn.proj"), c, c)?,
                    norm2: rd.norm(&format!("{p}.norm2"), c)?,
                    fc1: rd.linear(&format!("{p}.mlp.fc1"), config.mlp_hidden, c)?,
                    fc2: rd.linear(&format!("{p}.mlp.fc2"), c, config.mlp_hidden)?,
                });
            }
            groups.push(Group { blocks, conv: rd.conv(&format!("layers.{r}.conv"), c, c)? });
        }
        let norm = rd.norm("norm", c)?;
        let conv_after_body = rd.conv("conv_after_body", c, c)?;
        let upsample = rd.conv("upsample.0", config.in_chans * config.scale * config.scale, c)?;
        let unexpected: Vec<&String> =
            sd.keys().filter(|k| !rd.used.contains(*k) && !k.ends_with(".attn_mask")).collect();
        if let Some(k) = unexpected.first() {
            bail!(
                "unexpected tensor `{k}` ({} unexpected in all): not the SwinIR-light architecture (pixelshuffledirect, 1conv)",
                unexpected.len()
            );
        }
        Ok(Self { config, conv_first, patch_norm, groups, norm, conv_after_body, upsample })
    }

    /// SHA-256 of the weights themselves (names, shapes and values in key order): the
    /// same for a `.pth` checkpoint and its `swinq convert` copy.
    pub fn content_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, t) in self.to_state_dict() {
            h.update(k.as_bytes());
            h.update([0]);
            t.shape.iter().for_each(|&d| h.update((d as u64).to_le_bytes()));
            t.as_f32().expect("float weights").iter().for_each(|v| h.update(v.to_le_bytes()));
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Back to a state dict with the official key names (for `swinq convert`).
    pub fn to_state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        put_conv(&mut sd, "conv_first", &self.conv_first);
        put_norm(&mut sd, "patch_embed.norm", &self.patch_norm);
        for (r, g) in self.groups.iter().enumerate() {
            for (j, b) in g.blocks.iter().enumerate() {
                let p = block_prefix(r, j);
                put_norm(&mut sd, &format!("{p}.norm1"), &b.norm1);
                put_linear(&mut sd, &format!("{p}.attn.qkv"), &b.qkv);
                let table_shape = vec![self.config.bias_table_rows(), self.config.heads[r]];
                sd.insert(format!("{p}.attn.relative_position_bias_table"), Tensor::f32(table_shape, b.bias_table.clone()));
                put_linear(&mut sd, &format!("{p}.attn.proj"), &b.proj);
                put_norm(&mut sd, &format!("{p}.norm2"), &b.norm2);
                put_linear(&mut sd, &format!("{p}.mlp.fc1"), &b.fc1);
                put_linear(&mut sd, &format!("{p}.mlp.fc2"), &b.fc2);
            }
            put_conv(&mut sd, &format!("layers.{r}.conv"), &g.conv);
        }
        put_norm(&mut sd, "norm", &self.norm);
        put_conv(&mut sd, "conv_after_body", &self.conv_after_body);
        put_conv(&mut sd, "upsample.0", &self.upsample);
        sd
    }
}

fn put_conv(sd: &mut StateDict, p: &str, cv: &Conv3x3) {
    sd.insert(format!("{p}.weight"), Tensor::f32(vec![cv.out_ch, cv.in_ch, 3, 3], cv.weight.clone()));
    sd.insert(format!("{p}.bias"), Tensor::f32(vec![cv.out_ch], cv.bias.clone()));
}

fn put_linear(sd: &mut StateDict, p: &str, l: &Linear) {
    sd.insert(format!("{p}.weight"), Tensor::f32(vec![l.out_dim, l.in_dim], l.weight.clone()));
    sd.insert(format!("{p}.bias"), Tensor::f32(vec![l.out_dim], l.bias.clone()));
}

fn put_norm(sd: &mut StateDict, p: &str, n: &LayerNorm) {
    sd.insert(format!("{p}.weight"), Tensor::f32(vec![n.weight.len()], n.weight.clone()));
    sd.insert(format!("{p}.bias"), Tensor::f32(vec![n.bias.len()], n.bias.clone()));
}

impl SwinWeights {
    /// Random weights of a given architecture (benchmarks and tiny test models):
    /// uniform values scaled like PyTorch's default fan-in initialisation.
    pub fn random(config: &SwinConfig, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut uniform = |n: usize, bound: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let mut sd = StateDict::new();
        let mut put = |sd: &mut StateDict, key: String, shape: Vec<usize>, bound: f32| {
            let n = shape.iter().product();
            sd.insert(key, Tensor::f32(shape, uniform(n, bound)));
        };
        let c = config.embed_dim;
        let fan = |n: usize| 1.0 / (n as f32).sqrt();
        let mut conv = |sd: &mut StateDict, p: &str, out: usize, inp: usize| {
            put(sd, format!("{p}.weight"), vec![out, inp, 3, 3], fan(inp * 9));
            put(sd, format!("{p}.bias"), vec![out], fan(inp * 9));
        };
        conv(&mut sd, "conv_first", c, config.in_chans);
        for r in 0..config.depths.len() {
            conv(&mut sd, &format!("layers.{r}.conv"), c, c);
        }
        conv(&mut sd, "conv_after_body", c, c);
        conv(&mut sd, "upsample.0", config.in_chans * config.scale * config.scale, c);
        let norms = std::iter::once("patch_embed.norm".to_string()).chain(std::iter::once("norm".to_string()));
        let mut norm_keys: Vec<String> = norms.collect();
        let mut linears: Vec<(String, usize, usize)> = Vec::new();
        for (r, &depth) in config.depths.iter().enumerate() {
            for j in 0..depth {
                let p = block_prefix(r, j);
                norm_keys.push(format!("{p}.norm1"));
                norm_keys.push(format!("{p}.norm2"));
                linears.push((format!("{p}.attn.qkv"), 3 * c, c));
                linears.push((format!("{p}.attn.proj"), c, c));
                linears.push((format!("{p}.mlp.fc1"), config.mlp_hidden, c));
                linears.push((format!("{p}.mlp.fc2"), c, config.mlp_hidden));
                put(&mut sd, format!("{p}.attn.relative_position_bias_table"), vec![config.bias_table_rows(), config.heads[r]], 0.04);
            }
        }
        for (p, out, inp) in linears {
            put(&mut sd, format!("{p}.weight"), vec![out, inp], fan(inp));
            put(&mut sd, format!("{p}.bias"), vec![out], fan(inp));
        }
        for p in norm_keys {
            sd.insert(format!("{p}.weight"), Tensor::f32(vec![c], vec![1.0; c]));
            sd.insert(format!("{p}.bias"), Tensor::f32(vec![c], vec![0.0; c]));
        }
        Self::with_config(&sd, config.clone()).expect("random weights match their own config")
    }
}
