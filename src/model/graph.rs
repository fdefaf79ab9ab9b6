//! The SwinIR forward on the GPU: weights uploaded once, then a `Plan` per input
//! size that owns the activation buffers and the recorded dispatches.

use anyhow::{bail, Result};

use super::config::{SwinConfig, RGB_MEAN};
use super::weights::SwinWeights;
use crate::gpu::ops::{self, AttnShape, GpuLinear, GpuNorm, ImageShape, MatmulInput};
use crate::gpu::profiler::Profiler;
use crate::gpu::{Dispatch, GpuBuffer, GpuContext};

struct GpuBlock {
    norm1: GpuNorm,
    qkv: [GpuLinear; 3],
    table: GpuBuffer,
    proj: GpuLinear,
    norm2: GpuNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

struct GpuGroup {
    blocks: Vec<GpuBlock>,
    conv: GpuLinear,
}

/// The float model's weights on the GPU.
pub struct GpuModel {
    pub config: SwinConfig,
    conv_first: GpuLinear,
    patch_norm: GpuNorm,
    groups: Vec<GpuGroup>,
    norm: GpuNorm,
    conv_after_body: GpuLinear,
    upsample: GpuLinear,
}

impl GpuModel {
    pub fn upload(ctx: &GpuContext, w: &SwinWeights) -> Self {
        let c = w.config.embed_dim;
        let groups = w
            .groups
            .iter()
            .map(|g| GpuGroup {
                blocks: g
                    .blocks
                    .iter()
                    .map(|b| {
                        // The fused qkv projection is kept as three linears, as quantization sees it.
                        let part = |i: usize| {
                            let wt = &b.qkv.weight[i * c * c..(i + 1) * c * c];
                            GpuLinear::new(ctx, "qkv", wt, &b.qkv.bias[i * c..(i + 1) * c], c)
                        };
                        GpuBlock {
                            norm1: GpuNorm::new(ctx, "norm1", &b.norm1),
                            qkv: [part(0), part(1), part(2)],
                            table: GpuBuffer::from_slice(ctx, "bias_table", &b.bias_table),
                            proj: GpuLinear::linear(ctx, "proj", &b.proj),
                            norm2: GpuNorm::new(ctx, "norm2", &b.norm2),
                            fc1: GpuLinear::linear(ctx, "fc1", &b.fc1),
                            fc2: GpuLinear::linear(ctx, "fc2", &b.fc2),
                        }
                    })
                    .collect(),
                conv: GpuLinear::conv(ctx, "rstb_conv", &g.conv),
            })
            .collect();
        Self {
            config: w.config.clone(),
            conv_first: GpuLinear::conv(ctx, "conv_first", &w.conv_first),
            patch_norm: GpuNorm::new(ctx, "patch_norm", &w.patch_norm),
            groups,
            norm: GpuNorm::new(ctx, "norm", &w.norm),
            conv_after_body: GpuLinear::conv(ctx, "conv_after_body", &w.conv_after_body),
            upsample: GpuLinear::conv(ctx, "upsample", &w.upsample),
        }
    }
}

/// Activation buffers of one plan. `p` rotates through the roles of residual-group
/// input, block scratch and block output so no kernel reads and writes one buffer.
struct Buffers {
    input: GpuBuffer,
    x0: GpuBuffer,
    f0: GpuBuffer,
    p: [GpuBuffer; 3],
    ln: GpuBuffer,
    qkv: [GpuBuffer; 3],
    attn: GpuBuffer,
    hidden: GpuBuffer,
    up: GpuBuffer,
    output: GpuBuffer,
}

enum Step {
    Run(Dispatch),
    /// Copy a whole activation buffer aside under a feature name (tests, distillation).
    Capture { name: String, src: wgpu::Buffer, dst: GpuBuffer },
}

/// Everything needed to run the model on a batch of one size.
pub struct Plan {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub padded: (usize, usize),
    pub scale: usize,
    bufs: Buffers,
    steps: Vec<Step>,
}

/// Largest per-token channel count of any whole-image activation buffer.
fn widest_activation(cfg: &SwinConfig) -> usize {
    cfg.embed_dim.max(cfg.in_chans * cfg.scale * cfg.scale)
}

/// Padded size: up to a multiple of the window.
pub fn padded_size(cfg: &SwinConfig, h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(cfg.window) * cfg.window, w.div_ceil(cfg.window) * cfg.window)
}

/// Whether (b, h, w) fits the adapter's storage-binding limit without tiling.
pub fn fits_exactly(ctx: &GpuContext, cfg: &SwinConfig, b: usize, h: usize, w: usize) -> bool {
    let (hp, wp) = padded_size(cfg, h, w);
    let tokens = (b * hp * wp) as u64;
    tokens * widest_activation(cfg) as u64 * 4 <= ctx.max_binding() && (tokens as usize).div_ceil(64) <= 65535
}

impl Plan {
    /// `capture` records the golden features (see ../shared/golden/README.md) for tests.
    pub fn new(ctx: &GpuContext, model: &GpuModel, b: usize, h: usize, w: usize, capture: bool) -> Result<Self> {
        let cfg = &model.config;
        if b == 0 || h == 0 || w == 0 {
            bail!("empty input ({b}×{h}×{w})");
        }
        if !fits_exactly(ctx, cfg, b, h, w) {
            bail!(
                "a {b}×{h}×{w} input needs activations larger than this adapter's {} MiB storage-binding limit; use tiling (--tile)",
                ctx.max_binding() >> 20
            );
        }
        let (hp, wp) = padded_size(cfg, h, w);
        let t = b * hp * wp;
        let c = cfg.embed_dim;
        let s2 = cfg.scale * cfg.scale;
        let chunk = mlp_chunk(ctx, cfg, t);
        let z = |label: &str, n: usize| GpuBuffer::zeros(ctx, label, n);
        let bufs = Buffers {
            input: z("input", b * cfg.in_chans * h * w),
            x0: z("x0", t * cfg.in_chans),
            f0: z("f0", t * c),
            p: [z("p0", t * c), z("p1", t * c), z("p2", t * c)],
            ln: z("ln", t * c),
            qkv: [z("q", t * c), z("k", t * c), z("v", t * c)],
            attn: z("attn", t * c),
            hidden: z("hidden", chunk * cfg.mlp_hidden),
            up: z("up", t * cfg.in_chans * s2),
            output: z("output", b * cfg.in_chans * h * w * s2),
        };
        let mut plan = Self { batch: b, height: h, width: w, padded: (hp, wp), scale: cfg.scale, bufs, steps: Vec::new() };
        plan.record(ctx, model, chunk, capture);
        Ok(plan)
    }

    fn image_shape(&self, cfg: &SwinConfig) -> ImageShape {
        let mean = if cfg.in_chans == 3 { RGB_MEAN } else { [0.0; 3] };
        ImageShape {
            b: self.batch,
            ch: cfg.in_chans,
            h: self.height,
            w: self.width,
            hp: self.padded.0,
            wp: self.padded.1,
            scale: cfg.scale,
            img_range: cfg.img_range,
            mean,
        }
    }

    fn tokens(&self) -> usize {
        self.batch * self.padded.0 * self.padded.1
    }

    fn run(&mut self, d: Dispatch) {
        self.steps.push(Step::Run(d));
    }

    fn capture(&mut self, ctx: &GpuContext, on: bool, name: &str, which: Buf) {
        if on {
            let src = self.buf(which);
            let dst = GpuBuffer::zeros(ctx, name, src.len);
            let src = src.buffer.clone();
            self.steps.push(Step::Capture { name: name.to_string(), src, dst });
        }
    }

    fn buf(&self, which: Buf) -> &GpuBuffer {
        match which {
            Buf::F0 => &self.bufs.f0,
            Buf::P(i) => &self.bufs.p[i],
        }
    }

    fn record(&mut self, ctx: &GpuContext, m: &GpuModel, chunk: usize, cap: bool) {
        let cfg = &m.config;
        let t = self.tokens();
        let (hp, wp) = self.padded;
        let conv_in = MatmulInput::Conv3x3 { h: hp, w: wp };
        let shape = self.image_shape(cfg);
        let b = &self.bufs;
        let first = [
            ops::prepare(ctx, &b.input, &b.x0, &shape),
            ops::matmul(ctx, b.x0.bind(), &m.conv_first, b.f0.bind(), t, conv_in, false, None, "conv"),
        ];
        first.into_iter().for_each(|d| self.run(d));
        self.capture(ctx, cap, "conv_first", Buf::F0);
        let d = ops::layer_norm(ctx, self.bufs.f0.bind(), &m.patch_norm, self.bufs.p[0].bind(), t, "layernorm");
        self.run(d);
        self.capture(ctx, cap, "patch_embed", Buf::P(0));
        // u: residual-group input; s1: scratch; s2: block output.
        let (mut u, mut s1, s2) = (0, 1, 2);
        for (r, g) in m.groups.iter().enumerate() {
            for (j, blk) in g.blocks.iter().enumerate() {
                let x_in = if j == 0 { u } else { s2 };
                let shift = if j % 2 == 1 { cfg.shift() } else { 0 };
                let attn = AttnShape { window: cfg.window, heads: cfg.heads[r], head_dim: cfg.head_dim(r), shift };
                self.record_block(ctx, blk, attn, [x_in, s1, s2], chunk);
                if r == 0 && j < 2 {
                    self.capture(ctx, cap, &format!("block0_{j}"), Buf::P(s2));
                }
            }
            self.capture(ctx, cap, &format!("group{r}"), Buf::P(s2));
            let b = &self.bufs;
            let d = ops::matmul(ctx, b.p[s2].bind(), &g.conv, b.p[s1].bind(), t, conv_in, false, Some(b.p[u].bind()), "conv");
            self.run(d);
            self.capture(ctx, cap, &format!("rstb{r}"), Buf::P(s1));
            (u, s1) = (s1, u);
        }
        let b = &self.bufs;
        let tail = [
            ops::layer_norm(ctx, b.p[u].bind(), &m.norm, b.ln.bind(), t, "layernorm"),
            ops::matmul(ctx, b.ln.bind(), &m.conv_after_body, b.p[s1].bind(), t, conv_in, false, Some(b.f0.bind()), "conv"),
        ];
        tail.into_iter().for_each(|d| self.run(d));
        if cap {
            // The golden feature is the conv's own output, before f0 is added.
            let b = &self.bufs;
            let d = ops::matmul(ctx, b.ln.bind(), &m.conv_after_body, b.p[s2].bind(), t, conv_in, false, None, "conv");
            self.run(d);
            self.capture(ctx, cap, "conv_after_body", Buf::P(s2));
        }
        let b = &self.bufs;
        let end = [
            ops::matmul(ctx, b.p[s1].bind(), &m.upsample, b.up.bind(), t, conv_in, false, None, "conv"),
            ops::finish(ctx, &b.up, &b.output, &shape),
        ];
        end.into_iter().for_each(|d| self.run(d));
    }

    /// One Swin block reading p[x_in], using p[y] as scratch and writing p[x_out].
    fn record_block(&mut self, ctx: &GpuContext, blk: &GpuBlock, attn: AttnShape, [x_in, y, x_out]: [usize; 3], chunk: usize) {
        let t = self.tokens();
        let dims = (self.batch, self.padded.0, self.padded.1);
        let b = &self.bufs;
        let mut ds = vec![ops::layer_norm(ctx, b.p[x_in].bind(), &blk.norm1, b.ln.bind(), t, "layernorm")];
        for (lin, out) in blk.qkv.iter().zip(&b.qkv) {
            ds.push(ops::matmul(ctx, b.ln.bind(), lin, out.bind(), t, MatmulInput::Tokens, false, None, "qkv"));
        }
        let [q, k, v] = &b.qkv;
        ds.push(ops::window_attention(ctx, [q.bind(), k.bind(), v.bind()], &blk.table, b.attn.bind(), dims, attn, "attention"));
        ds.push(ops::matmul(ctx, b.attn.bind(), &blk.proj, b.p[y].bind(), t, MatmulInput::Tokens, false, Some(b.p[x_in].bind()), "proj"));
        ds.push(ops::layer_norm(ctx, b.p[y].bind(), &blk.norm2, b.ln.bind(), t, "layernorm"));
        let (c, hid) = (blk.fc2.out_dim, blk.fc1.out_dim);
        for start in (0..t).step_by(chunk) {
            let n = chunk.min(t - start);
            ds.push(ops::matmul(ctx, b.ln.bind_range(start * c, n * c), &blk.fc1, b.hidden.bind_range(0, n * hid), n, MatmulInput::Tokens, true, None, "mlp"));
            let res = Some(b.p[y].bind_range(start * c, n * c));
            ds.push(ops::matmul(ctx, b.hidden.bind_range(0, n * hid), &blk.fc2, b.p[x_out].bind_range(start * c, n * c), n, MatmulInput::Tokens, false, res, "mlp"));
        }
        ds.into_iter().for_each(|d| self.run(d));
    }

    /// Uploads a planar (b, ch, h, w) batch, runs the model and returns the planar
    /// (b, ch, s·h, s·w) output, un-clamped.
    pub fn forward(&self, ctx: &GpuContext, image: &[f32], profiler: Option<&mut Profiler>) -> Vec<f32> {
        assert_eq!(image.len(), self.bufs.input.len, "input size does not match the plan");
        self.bufs.input.write(ctx, image);
        self.execute(ctx, profiler);
        self.bufs.output.read(ctx)
    }

    /// Records all steps into one submission; with a profiler, each stage gets a
    /// timestamped compute pass of its own.
    pub fn execute(&self, ctx: &GpuContext, mut profiler: Option<&mut Profiler>) {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let mut i = 0;
        while i < self.steps.len() {
            match &self.steps[i] {
                Step::Capture { src, dst, .. } => {
                    enc.copy_buffer_to_buffer(src, 0, &dst.buffer, 0, dst.bytes());
                    i += 1;
                }
                Step::Run(first) => {
                    // A pass spans consecutive dispatches (of one stage when profiling).
                    let mut end = i;
                    while let Some(Step::Run(d)) = self.steps.get(end) {
                        if profiler.is_some() && d.stage != first.stage {
                            break;
                        }
                        end += 1;
                    }
                    let timestamps = profiler.as_deref_mut().and_then(|p| p.pass(first.stage));
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(first.stage), timestamp_writes: timestamps });
                    for step in &self.steps[i..end] {
                        if let Step::Run(d) = step {
                            d.record(&mut pass);
                        }
                    }
                    drop(pass);
                    i = end;
                }
            }
        }
        if let Some(p) = profiler {
            p.resolve(&mut enc);
        }
        ctx.queue.submit([enc.finish()]);
        ctx.wait();
    }

    /// A captured feature by name (only in plans made with `capture`).
    pub fn captured(&self, ctx: &GpuContext, name: &str) -> Option<Vec<f32>> {
        self.steps.iter().find_map(|s| match s {
            Step::Capture { name: n, dst, .. } if n == name => Some(dst.read(ctx)),
            _ => None,
        })
    }
}

#[derive(Clone, Copy)]
enum Buf {
    F0,
    P(usize),
}

/// Tokens per MLP chunk: all of them, unless the hidden activations would exceed
/// the storage-binding limit (then a multiple of 64, which keeps offsets aligned).
fn mlp_chunk(ctx: &GpuContext, cfg: &SwinConfig, tokens: usize) -> usize {
    let fit = (ctx.max_binding() / (cfg.mlp_hidden as u64 * 4)) as usize;
    let chunk = tokens.min(fit / 64 * 64).min(65535 * 64);
    if chunk == tokens { tokens } else { chunk.max(64) }
}
