//! SwinIR hyper-parameters, general enough for tiny test models; SwinIR-light is the default.

use anyhow::{bail, Result};

use super::tensor::StateDict;

/// The RGB mean subtracted before the network and added back after it (SPEC §1 step 2).
pub const RGB_MEAN: [f32; 3] = [0.4488, 0.4371, 0.4040];

#[derive(Clone, Debug, PartialEq)]
pub struct SwinConfig {
    pub in_chans: usize,
    pub embed_dim: usize,
    /// Blocks per residual group (RSTB).
    pub depths: Vec<usize>,
    /// Attention heads per residual group.
    pub heads: Vec<usize>,
    pub window: usize,
    /// Hidden width of the MLP (embed_dim × mlp_ratio).
    pub mlp_hidden: usize,
    pub scale: usize,
    pub img_range: f32,
}

impl SwinConfig {
    /// SwinIR-light ("SwinIR-S") at the given scale.
    pub fn light(scale: usize) -> Self {
        Self {
            in_chans: 3,
            embed_dim: 60,
            depths: vec![6; 4],
            heads: vec![6; 4],
            window: 8,
            mlp_hidden: 120,
            scale,
            img_range: 1.0,
        }
    }

    pub fn shift(&self) -> usize {
        self.window / 2
    }

    /// Number of relative-position table rows, (2w-1)².
    pub fn bias_table_rows(&self) -> usize {
        (2 * self.window - 1) * (2 * self.window - 1)
    }

    pub fn head_dim(&self, group: usize) -> usize {
        self.embed_dim / self.heads[group]
    }

    pub fn num_blocks(&self) -> usize {
        self.depths.iter().sum()
    }

    /// Infers the architecture from tensor shapes and key names. Only
    /// `img_range` cannot be seen in a checkpoint; SwinIR-light uses 1.0.
    pub fn infer(sd: &StateDict) -> Result<Self> {
        let shape = |k: &str| -> Result<&[usize]> {
            if let Some(t) = sd.get(k) {
                return Ok(&t.shape);
            }
            // e.g. a file that stores a model's tensors beside others, under a prefix
            match sd.keys().find_map(|name| name.strip_suffix(k).filter(|p| p.ends_with('.'))) {
                Some(prefix) => bail!("missing tensor `{k}`: the file has `{prefix}{k}`; a SwinIR checkpoint's keys have no `{prefix}` prefix"),
                None => bail!("missing tensor `{k}`: not a SwinIR checkpoint"),
            }
        };
        let first = shape("conv_first.weight")?;
        if first.len() != 4 || first[2] != 3 || first[3] != 3 {
            bail!("`conv_first.weight` has shape {first:?}, expected [C, in_chans, 3, 3]");
        }
        let (embed_dim, in_chans) = (first[0], first[1]);
        let up = shape("upsample.0.weight")?;
        if up.len() != 4 || up[1] != embed_dim {
            bail!("`upsample.0.weight` has shape {up:?}, expected [in_chans·s², {embed_dim}, 3, 3] (only the pixelshuffledirect upsampler is supported)");
        }
        let scale = (1..=8)
            .find(|s| in_chans * s * s == up[0])
            .ok_or_else(|| anyhow::anyhow!("`upsample.0.weight` has {} output channels, not {in_chans}·s² for any scale s in 1..=8", up[0]))?;
        let mut depths = Vec::new();
        let mut heads = Vec::new();
        let mut window = 0;
        let mut mlp_hidden = 0;
        while sd.contains_key(&format!("layers.{}.conv.weight", depths.len())) {
            let r = depths.len();
            let mut d = 0;
            while sd.contains_key(&format!("layers.{r}.residual_group.blocks.{d}.norm1.weight")) {
                d += 1;
            }
            if d == 0 {
                bail!("residual group {r} has no blocks (`layers.{r}.residual_group.blocks.0.norm1.weight` missing)");
            }
            let table = shape(&format!("layers.{r}.residual_group.blocks.0.attn.relative_position_bias_table"))?;
            if table.len() != 2 {
                bail!("relative_position_bias_table of group {r} has shape {table:?}, expected [(2w-1)², heads]");
            }
            let side = (table[0] as f64).sqrt().round() as usize;
            if side * side != table[0] || side.is_multiple_of(2) {
                bail!("relative_position_bias_table of group {r} has {} rows, not (2w-1)² for any window w", table[0]);
            }
            window = side.div_ceil(2);
            heads.push(table[1]);
            mlp_hidden = shape(&format!("layers.{r}.residual_group.blocks.0.mlp.fc1.weight"))?[0];
            depths.push(d);
        }
        if depths.is_empty() {
            bail!("no residual groups found (`layers.0.conv.weight` missing)");
        }
        for (r, &h) in heads.iter().enumerate() {
            if h == 0 || embed_dim % h != 0 {
                bail!("group {r}: embed dim {embed_dim} is not divisible by {h} heads");
            }
        }
        Ok(Self { in_chans, embed_dim, depths, heads, window, mlp_hidden, scale, img_range: 1.0 })
    }

    /// Short human-readable description, e.g. for `swinq info`.
    pub fn describe(&self) -> String {
        format!(
            "SwinIR x{}: embed {} depths {:?} heads {:?} window {} mlp {}",
            self.scale, self.embed_dim, self.depths, self.heads, self.window, self.mlp_hidden
        )
    }
}
