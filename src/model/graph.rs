//! The SwinIR forward on the GPU: weights uploaded once (`GpuModel`), then a `Plan`
//! per input size that owns the activation buffers and the recorded dispatches, in one
//! of four modes: float, fake-quantized or integer (a `QuantModel`'s quantized
//! weights), or phase 1's calibration (`Calibration`: the bound search on each input).

use anyhow::{bail, ensure, Result};

use super::config::{SwinConfig, RGB_MEAN};
use super::weights::SwinWeights;
use crate::gpu::ops::{self, AttnExtras, AttnShape, GpuLinear, GpuNorm, ImageShape, IntOperands, Matmul, MatmulInput, QuantRef, WindowOrder};
use crate::gpu::profiler::Profiler;
use crate::gpu::{record_passes, Dispatch, GpuBuffer, GpuContext, Operand};
use crate::quant::search::{Method, SearchSpec, Searcher, MAX_SLICES};
use crate::quant::{self, levels, QParams, Slot};

pub struct GpuBlock {
    pub(crate) norm1: GpuNorm,
    pub(crate) qkv: [GpuLinear; 3],
    pub(crate) table: GpuBuffer,
    pub(crate) proj: GpuLinear,
    pub(crate) norm2: GpuNorm,
    pub(crate) fc1: GpuLinear,
    pub(crate) fc2: GpuLinear,
    pub(crate) head_dim: usize,
}

impl GpuBlock {
    /// The six quantized linears in slot order (q, k, v, proj, fc1, fc2).
    pub fn linears(&self) -> [&GpuLinear; 6] {
        [&self.qkv[0], &self.qkv[1], &self.qkv[2], &self.proj, &self.fc1, &self.fc2]
    }

    /// How linear `i`'s input codes are laid out for the integer engine: proj's head
    /// by head, as the integer attention writes them.
    pub fn input_codes(&self, i: usize) -> ops::CodeLayout {
        let k = self.linears()[i].k;
        if i == 3 { ops::CodeLayout::heads(k, self.head_dim) } else { ops::CodeLayout::dense(k) }
    }
}

pub(crate) struct GpuGroup {
    pub(crate) blocks: Vec<GpuBlock>,
    pub(crate) conv: GpuLinear,
}

/// The float model's weights on the GPU.
pub struct GpuModel {
    pub config: SwinConfig,
    conv_first: GpuLinear,
    patch_norm: GpuNorm,
    pub(crate) groups: Vec<GpuGroup>,
    pub(crate) norm: GpuNorm,
    pub(crate) conv_after_body: GpuLinear,
    pub(crate) upsample: GpuLinear,
}

impl GpuModel {
    pub fn upload(ctx: &GpuContext, w: &SwinWeights) -> Self {
        let c = w.config.embed_dim;
        let groups = w
            .groups
            .iter()
            .enumerate()
            .map(|(r, g)| GpuGroup {
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
                            table: ops::attention_table(ctx, &b.bias_table),
                            proj: GpuLinear::linear(ctx, "proj", &b.proj),
                            norm2: GpuNorm::new(ctx, "norm2", &b.norm2),
                            fc1: GpuLinear::linear(ctx, "fc1", &b.fc1),
                            fc2: GpuLinear::linear(ctx, "fc2", &b.fc2),
                            head_dim: w.config.head_dim(r),
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

    /// All Swin blocks in order (flat block index = quantizer block index).
    pub fn blocks(&self) -> impl Iterator<Item = &GpuBlock> {
        self.groups.iter().flat_map(|g| g.blocks.iter())
    }

    /// The 3×3 convolutions: the first, each group's last, the one after the body and
    /// the upsampling one.
    pub fn convs(&self) -> impl Iterator<Item = &GpuLinear> {
        std::iter::once(&self.conv_first).chain(self.groups.iter().map(|g| &g.conv)).chain([&self.conv_after_body, &self.upsample])
    }
}

/// How a quantized model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Integer linears and attention matmuls (dot4U8Packed, SPEC §6); windows whose token
    /// count is not a multiple of 4 keep a fake-quantized attention.
    #[default]
    Int,
    /// Every quantizer simulated in f32.
    Fake,
}

impl Engine {
    /// Both engines (`swinq bench` times them side by side).
    pub const ALL: [Engine; 2] = [Engine::Fake, Engine::Int];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Int => "int",
            Engine::Fake => "fake",
        }
    }

    /// The graph mode that runs the quantized model `q` this way.
    pub fn mode(self, q: &QuantModel) -> Mode<'_> {
        match self {
            Engine::Int => Mode::Int(q),
            Engine::Fake => Mode::Fake(q),
        }
    }
}

/// The quantized model's state on the GPU: the parameter table and the weights of
/// the engines it was made for (fake-quantized copies of the quantized linears'
/// weights, integer codes), so that one engine does not hold the other's.
pub struct QuantModel {
    pub bits: u32,
    pub params: GpuBuffer,
    /// Per block, without the fake engine none.
    qweights: Vec<[GpuBuffer; 6]>,
    /// The integer engine's weights of the same linears; without it none.
    int_weights: Vec<[ops::IntWeights; 6]>,
    /// The parameters as uploaded (the plan fuses more when quantizers agree).
    host_params: Vec<QParams>,
}

impl QuantModel {
    /// The quantized model for `engines` (phase 2 trains with `Engine::Fake`).
    pub fn new(ctx: &GpuContext, model: &GpuModel, bits: u32, params: &[QParams], engines: &[Engine]) -> Self {
        let params_buf = GpuBuffer::from_slice(ctx, "qparams", params);
        // Each engine's weights per block; none for an engine not in `engines`.
        let blocks = |engine| model.blocks().filter(move |_| engines.contains(&engine));
        let qweights = blocks(Engine::Fake).map(|b| b.linears().map(|l| l.weight_copy(ctx, "qweight"))).collect();
        let int_weights = blocks(Engine::Int).map(|b| std::array::from_fn(|i| ops::IntWeights::new(ctx, b.linears()[i].out_dim, b.input_codes(i)))).collect();
        let qm = Self { bits, params: params_buf, qweights, int_weights, host_params: params.to_vec() };
        qm.requantize_weights(ctx, model);
        qm
    }

    /// Whether it holds `engine`'s weights.
    pub fn runs(&self, engine: Engine) -> bool {
        match engine {
            Engine::Fake => !self.qweights.is_empty(),
            Engine::Int => !self.int_weights.is_empty(),
        }
    }

    /// Whether these quantizers of `block` have equal parameters.
    fn same_params(&self, block: usize, slots: &[Slot]) -> bool {
        let first = self.host_params[quant::index(block, slots[0])];
        slots.iter().all(|&s| self.host_params[quant::index(block, s)] == first)
    }

    /// Whether the integer engine's LayerNorms write codes in every block, so that it
    /// needs no float LayerNorm output (`BlockQuant::ln_codes`).
    fn norms_write_codes(&self) -> bool {
        (0..self.host_params.len() / quant::PER_BLOCK).all(|b| self.same_params(b, &QKV_INPUTS))
    }

    pub(crate) fn qref(&self, row: usize) -> QuantRef<'_> {
        QuantRef { params: &self.params, row, levels: levels(self.bits) }
    }

    /// Recomputes the fake-quantized and the integer weights from the current parameters.
    pub fn requantize_weights(&self, ctx: &GpuContext, model: &GpuModel) {
        self.requantize(ctx, model, true);
    }

    /// Recomputes only the fake-quantized weights (phase 2's steps: the integer
    /// engine does not run while the parameters train).
    pub fn requantize_fake_weights(&self, ctx: &GpuContext, model: &GpuModel) {
        self.requantize(ctx, model, false);
    }

    fn requantize(&self, ctx: &GpuContext, model: &GpuModel, with_int: bool) {
        let mut ds = Vec::new();
        for (bi, blk) in model.blocks().enumerate() {
            for (i, l) in blk.linears().into_iter().enumerate() {
                let w_row = quant::index(bi, Slot::Weight(i));
                if let Some(q) = self.qweights.get(bi) {
                    ds.push(l.copy_weights(ctx, &q[i], Some(self.qref(w_row))));
                }
                if let Some(int) = self.int_weights.get(bi).filter(|_| with_int) {
                    ds.push(int[i].fill(ctx, l, self.qref(quant::index(bi, Slot::Input(i))), w_row));
                }
            }
        }
        crate::gpu::run_now(ctx, &ds);
    }

    pub fn read_params(&self, ctx: &GpuContext) -> Vec<QParams> {
        self.params.read(ctx)
    }
}

/// Phase 1 state: the searcher, the method, the parameter table being filled, and
/// a buffer for the attention maps of `probs_batch` images at a time.
pub struct Calibration {
    pub searcher: Searcher,
    pub method: Method,
    pub params: GpuBuffer,
    probs: GpuBuffer,
    probs_batch: usize,
}

impl Calibration {
    /// Sized for a calibration batch of `b` images of h×w LR pixels.
    pub fn new(ctx: &GpuContext, model: &GpuModel, method: Method, bits: u32, (b, h, w): (usize, usize, usize)) -> Result<Self> {
        let cfg = &model.config;
        let (hp, wp) = padded_size(cfg, h, w);
        let nt = cfg.window * cfg.window;
        let max_heads = *cfg.heads.iter().max().unwrap_or(&1);
        let per_image = (hp / cfg.window) * (wp / cfg.window) * max_heads * nt * nt;
        let fit = (ctx.max_binding() / 4) as usize / per_image.max(1);
        if fit == 0 {
            bail!("the attention maps of one {h}×{w} calibration patch exceed the adapter's storage-binding limit");
        }
        let probs_batch = fit.min(b);
        ensure!(b.div_ceil(probs_batch) <= MAX_SLICES, "{b} calibration patches of {h}×{w}: use at most {}", MAX_SLICES * probs_batch);
        // The largest tensor searched: the softmax output of the whole batch (its
        // statistics cover every chunk of images, and sorting methods keep the keys
        // of all of them), the fc1 output or a weight.
        let max_elems = (b * hp * wp * cfg.mlp_hidden).max(b * per_image).max(cfg.mlp_hidden * cfg.embed_dim);
        let n_params = cfg.num_blocks() * quant::PER_BLOCK;
        Ok(Self {
            searcher: Searcher::new(ctx, max_elems, bits, method.sorts()),
            method,
            params: GpuBuffer::zeros(ctx, "qparams", 4 * n_params),
            probs: GpuBuffer::zeros_windowed(ctx, "probs", probs_batch * per_image),
            probs_batch,
        })
    }

    fn spec(&self, block: usize, slot: Slot, count: usize, mult: f32) -> SearchSpec {
        self.method.spec(quant::index(block, slot), slot, count, mult)
    }

    /// Searches every weight quantizer (weights do not depend on the data).
    pub fn search_weights(&self, ctx: &GpuContext, model: &GpuModel) {
        let mut ds = Vec::new();
        for (bi, blk) in model.blocks().enumerate() {
            for (i, l) in blk.linears().into_iter().enumerate() {
                let spec = self.spec(bi, Slot::Weight(i), 1, 1.0);
                ds.extend(self.searcher.search(ctx, &spec, &l.weight, 0, l.weight.len, &self.params));
            }
        }
        crate::gpu::run_now(ctx, &ds);
    }

    pub fn read_params(&self, ctx: &GpuContext) -> Vec<QParams> {
        self.params.read(ctx)
    }
}

/// What a plan does at the quantized points of the graph.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    Float,
    Fake(&'a QuantModel),
    /// The integer engine: every quantized matmul on integer codes.
    Int(&'a QuantModel),
    /// FP forward that searches every activation quantizer's bounds on its input.
    Calibrate(&'a Calibration),
}

impl<'a> Mode<'a> {
    /// The quantized model and the engine that runs it (the inverse of `Engine::mode`).
    fn engine(self) -> Option<(&'a QuantModel, Engine)> {
        match self {
            Mode::Fake(q) => Some((q, Engine::Fake)),
            Mode::Int(q) => Some((q, Engine::Int)),
            Mode::Float | Mode::Calibrate(_) => None,
        }
    }
}

/// The input quantizers of q, k and v, which read one LayerNorm's output.
const QKV_INPUTS: [Slot; 3] = [Slot::Input(0), Slot::Input(1), Slot::Input(2)];

/// What one block does at its quantized points: its flat index and the mode's parts.
#[derive(Clone, Copy)]
struct BlockQuant<'a> {
    block: usize,
    /// Fake quantizers (the integer engine fake-quantizes what it does not run in integers).
    fake: Option<&'a QuantModel>,
    /// The integer engine's model.
    int: Option<&'a QuantModel>,
    /// Phase 1's search.
    calib: Option<&'a Calibration>,
}

impl<'a> BlockQuant<'a> {
    fn new(block: usize, mode: Mode<'a>) -> Self {
        let (fake, int, calib) = match mode {
            Mode::Float => (None, None, None),
            Mode::Fake(q) => (Some(q), None, None),
            Mode::Int(q) => (Some(q), Some(q), None),
            Mode::Calibrate(c) => (None, None, Some(c)),
        };
        Self { block, fake, int, calib }
    }

    /// The activation quantizer of `slot`, when fake-quantizing.
    fn act(&self, slot: Slot) -> Option<QuantRef<'a>> {
        self.fake.map(|q| q.qref(quant::index(self.block, slot)))
    }

    /// Linear `i`'s weights (fake-quantized when fake-quantizing).
    fn weights(&self, i: usize, l: &'a GpuLinear) -> ops::Weights<'a> {
        block_weights(self.fake, self.block, i, l)
    }

    /// When calibrating, searches the quantizers of `count` slots from `slot` on the
    /// first `n` elements of `x` (times `mult`).
    fn search(&self, ctx: &GpuContext, ds: &mut Vec<Dispatch>, slot: Slot, count: usize, (x, n): (&GpuBuffer, usize), mult: f32) {
        if let Some(c) = self.calib {
            ds.extend(c.searcher.search(ctx, &c.spec(self.block, slot, count, mult), x, 0, n, &c.params));
        }
    }

    /// The integer engine's LayerNorms write their linears' input codes directly (for
    /// q, k and v when their three input quantizers agree, as phase 1 makes them): the
    /// quantizer to write them with, if so.
    fn ln_codes(&self, slots: &[Slot]) -> Option<QuantRef<'a>> {
        self.int.filter(|q| q.same_params(self.block, slots)).map(|q| q.qref(quant::index(self.block, slots[0])))
    }
}

/// Activation buffers of one plan. `p` rotates through the roles of residual-group
/// input, block scratch and block output so no kernel reads and writes one buffer.
struct Buffers {
    input: GpuBuffer,
    x0: GpuBuffer,
    f0: GpuBuffer,
    p: [GpuBuffer; 3],
    /// A LayerNorm's output, and the attention's (q, k and v are made by then).
    ln: GpuBuffer,
    qkv: [GpuBuffer; 3],
    /// The MLP's hidden activations of a chunk of tokens (None: in k's buffer).
    hidden: Option<GpuBuffer>,
    /// The integer engine's activation codes (the next linear's input).
    codes: GpuBuffer,
    /// The integer engine's q, k, v codes for its attention.
    attn_codes: Option<[GpuBuffer; 3]>,
    up: GpuBuffer,
    output: GpuBuffer,
}

impl Buffers {
    fn hidden(&self) -> &GpuBuffer {
        self.hidden.as_ref().unwrap_or(&self.qkv[1])
    }
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

/// What a plan's forward copies aside, to read back with `Plan::captured` or to
/// use on the GPU with `Plan::captured_buffer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    Nothing,
    /// The golden features of ../shared/golden/README.md (tests).
    Golden,
    /// Phase 2: each residual group's block output `group{r}` (the distilled
    /// features), the body's output `body` (before the last LayerNorm), and with
    /// `block_inputs` every block's input `block_in{n}` (the student's backward
    /// recomputes each block from it).
    Distill { block_inputs: bool },
}

impl Plan {
    /// `capture` records the golden features (see ../shared/golden/README.md) for tests.
    pub fn new(ctx: &GpuContext, model: &GpuModel, b: usize, h: usize, w: usize, capture: bool) -> Result<Self> {
        Self::with_mode(ctx, model, (b, h, w), if capture { Capture::Golden } else { Capture::Nothing }, Mode::Float)
    }

    pub fn with_mode(ctx: &GpuContext, model: &GpuModel, dims: (usize, usize, usize), capture: Capture, mode: Mode<'_>) -> Result<Self> {
        Self::build(ctx, model, dims, (capture, mode), None)
    }

    /// A plan for the same input whose scratch activations are this plan's (its input,
    /// output and captures are its own): the two take turns, each forward overwriting
    /// the other's scratch, as phase 2's teacher and student do.
    pub fn taking_turns(&self, ctx: &GpuContext, model: &GpuModel, capture: Capture, mode: Mode<'_>) -> Result<Self> {
        Self::build(ctx, model, (self.batch, self.height, self.width), (capture, mode), Some(&self.bufs))
    }

    fn build(ctx: &GpuContext, model: &GpuModel, (b, h, w): (usize, usize, usize), (capture, mode): (Capture, Mode<'_>), turns: Option<&Buffers>) -> Result<Self> {
        let cfg = &model.config;
        if b == 0 || h == 0 || w == 0 {
            bail!("empty input ({b}×{h}×{w})");
        }
        if let Some((q, engine)) = mode.engine() {
            assert!(q.runs(engine), "the quantized model was made without the {} engine's weights", engine.name());
        }
        if !fits_exactly(ctx, cfg, b, h, w) {
            bail!(
                "a {b}×{h}×{w} input needs activations larger than this adapter's {} MiB storage-binding limit",
                ctx.max_binding() >> 20
            );
        }
        let (hp, wp) = padded_size(cfg, h, w);
        let t = b * hp * wp;
        let c = cfg.embed_dim;
        let s2 = cfg.scale * cfg.scale;
        let mut chunk = mlp_chunk(ctx, cfg, t);
        if matches!(mode, Mode::Calibrate(_)) && chunk < t {
            bail!("calibration on {b} patches of {h}×{w} needs MLP activations above the adapter's storage-binding limit; use fewer patches");
        }
        if matches!(mode, Mode::Calibrate(_)) {
            chunk = t;
        }
        let z = |label: &str, n: usize| GpuBuffer::zeros_windowed(ctx, label, n);
        // The integer engine reads codes where the kernel before it writes them: it
        // needs no `ln` when every LayerNorm writes codes and the attention runs on
        // codes (writing proj's), one float buffer for q, k and v in that attention's
        // case, and fc2's input only as codes.
        let int = mode.engine().filter(|&(_, e)| e == Engine::Int).map(|(q, _)| q);
        let float_ln = int.is_none_or(|q| !q.norms_write_codes());
        let float_attn = int.is_none() || !codes_attention(cfg.window);
        // Float and fake plans run the MLP in chunks whose hidden activations fit k's
        // buffer, free during the MLP, so they need no buffer of their own (phase 1
        // searches fc2's input whole, and the integer engine keeps it as codes).
        let in_k = (t * c / cfg.mlp_hidden) / 64 * 64;
        let hidden_in_k = matches!(mode, Mode::Float | Mode::Fake(_)) && in_k > 0;
        if hidden_in_k {
            chunk = chunk.min(in_k);
        }
        let hidden_words = if int.is_some() { ops::code_words(chunk, cfg.mlp_hidden) } else { chunk * cfg.mlp_hidden };
        // A scratch buffer: the other plan's of the same size when taking turns.
        let scratch = |label: &str, n: usize, theirs: Option<&GpuBuffer>| match theirs {
            Some(buf) if buf.len == n => buf.share(),
            _ => z(label, n),
        };
        let hidden = (!hidden_in_k).then(|| scratch("hidden", hidden_words, turns.and_then(|o| o.hidden.as_ref())));
        let bufs = Buffers {
            input: z("input", b * cfg.in_chans * h * w),
            x0: scratch("x0", t * cfg.in_chans, turns.map(|o| &o.x0)),
            f0: scratch("f0", t * c, turns.map(|o| &o.f0)),
            p: [0, 1, 2].map(|i| scratch(&format!("p{i}"), t * c, turns.map(|o| &o.p[i]))),
            ln: if float_ln || float_attn { scratch("ln", t * c, turns.map(|o| &o.ln)) } else { GpuBuffer::zeros(ctx, "ln", 0) },
            // q's buffer holds k and v too when the integer attention packs each at once.
            qkv: [0, 1, 2].map(|i| if i == 0 || float_attn { scratch(["q", "k", "v"][i], t * c, turns.map(|o| &o.qkv[i])) } else { GpuBuffer::zeros(ctx, "kv", 0) }),
            hidden,
            // Input codes of any block's q/k/v, proj or fc1 (fc2's go into `hidden`).
            codes: match int {
                Some(_) => {
                    let words = model.blocks().flat_map(|blk| (0..5).map(|i| blk.input_codes(i).words(t))).fold(ops::code_words(chunk, cfg.mlp_hidden), usize::max);
                    scratch("codes", words, turns.map(|o| &o.codes))
                }
                None => GpuBuffer::zeros(ctx, "codes", 0),
            },
            attn_codes: int.map(|_| {
                // The largest q/k and v codes over the groups' attention shapes.
                let words = (0..cfg.depths.len()).map(|r| ops::window_code_words(t, attn_shape(cfg, r, 0))).fold([0, 0], |a, w| [a[0].max(w[0]), a[1].max(w[1])]);
                ["q_codes", "k_codes", "v_codes"].map(|name| z(name, words[(name == "v_codes") as usize]))
            }),
            up: scratch("up", t * cfg.in_chans * s2, turns.map(|o| &o.up)),
            output: z("output", b * cfg.in_chans * h * w * s2),
        };
        let mut plan = Self { batch: b, height: h, width: w, padded: (hp, wp), scale: cfg.scale, bufs, steps: Vec::new() };
        plan.record(ctx, model, chunk, capture, mode);
        Ok(plan)
    }

    pub(crate) fn image_shape(&self, cfg: &SwinConfig) -> ImageShape {
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

    pub(crate) fn tokens(&self) -> usize {
        self.batch * self.padded.0 * self.padded.1
    }

    fn run(&mut self, ds: impl IntoIterator<Item = Dispatch>) {
        self.steps.extend(ds.into_iter().map(Step::Run));
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

    fn record(&mut self, ctx: &GpuContext, m: &GpuModel, chunk: usize, capture: Capture, mode: Mode<'_>) {
        let cap = capture == Capture::Golden;
        let distill = matches!(capture, Capture::Distill { .. });
        let block_inputs = capture == Capture::Distill { block_inputs: true };
        let cfg = &m.config;
        let t = self.tokens();
        let (hp, wp) = self.padded;
        let conv_in = MatmulInput::Conv3x3 { h: hp, w: wp };
        let shape = self.image_shape(cfg);
        let b = &self.bufs;
        let mut first = vec![ops::prepare(ctx, &b.input, &b.x0, &shape)];
        first.extend(conv(ctx, b.x0.operand(), &m.conv_first, b.f0.bind(), t, conv_in, None));
        self.run(first);
        self.capture(ctx, cap, "conv_first", Buf::F0);
        let d = ops::layer_norm(ctx, self.bufs.f0.bind(), &m.patch_norm, self.bufs.p[0].bind(), t, "layernorm");
        self.run([d]);
        self.capture(ctx, cap, "patch_embed", Buf::P(0));
        // u: residual-group input; s1: scratch; s2: block output.
        let (mut u, mut s1, s2) = (0, 1, 2);
        let mut flat = 0;
        for (r, g) in m.groups.iter().enumerate() {
            for (j, blk) in g.blocks.iter().enumerate() {
                let x_in = if j == 0 { u } else { s2 };
                let attn = attn_shape(cfg, r, j);
                self.capture(ctx, block_inputs, &format!("block_in{flat}"), Buf::P(x_in));
                self.record_block(ctx, blk, attn, [x_in, s1, s2], chunk, (flat, mode));
                flat += 1;
                if r == 0 && j < 2 {
                    self.capture(ctx, cap, &format!("block0_{j}"), Buf::P(s2));
                }
            }
            self.capture(ctx, cap || distill, &format!("group{r}"), Buf::P(s2));
            let b = &self.bufs;
            let d = conv(ctx, b.p[s2].operand(), &g.conv, b.p[s1].bind(), t, conv_in, Some(b.p[u].bind()));
            self.run(d);
            self.capture(ctx, cap, &format!("rstb{r}"), Buf::P(s1));
            (u, s1) = (s1, u);
        }
        self.capture(ctx, distill, "body", Buf::P(u));
        let b = &self.bufs;
        // The last LayerNorm writes into q's buffer, free after the blocks (the integer
        // engine may have no `ln`).
        let body_norm = &b.qkv[0];
        let mut tail = vec![ops::layer_norm(ctx, b.p[u].bind(), &m.norm, body_norm.bind(), t, "layernorm")];
        tail.extend(conv(ctx, body_norm.operand(), &m.conv_after_body, b.p[s1].bind(), t, conv_in, Some(b.f0.bind())));
        self.run(tail);
        if cap {
            // The golden feature is the conv's own output, before f0 is added.
            let b = &self.bufs;
            let d = conv(ctx, b.qkv[0].operand(), &m.conv_after_body, b.p[s2].bind(), t, conv_in, None);
            self.run(d);
            self.capture(ctx, cap, "conv_after_body", Buf::P(s2));
        }
        let b = &self.bufs;
        let mut end = conv(ctx, b.p[s1].operand(), &m.upsample, b.up.bind(), t, conv_in, None);
        end.push(ops::finish(ctx, &b.up, &b.output, &shape));
        self.run(end);
    }

    /// One Swin block reading p[x_in], using p[y] as scratch and writing p[x_out];
    /// `block` is its flat index, for the quantizers.
    fn record_block(
        &mut self,
        ctx: &GpuContext,
        blk: &GpuBlock,
        attn: AttnShape,
        [x_in, y, x_out]: [usize; 3],
        chunk: usize,
        (block, mode): (usize, Mode<'_>),
    ) {
        let q = BlockQuant::new(block, mode);
        let mut ds = Vec::new();
        self.record_attention(ctx, blk, attn, [x_in, y], q, &mut ds);
        self.record_mlp(ctx, blk, [y, x_out], chunk, q, &mut ds);
        self.run(ds);
    }

    /// The block's first half: p[y] = p[x_in] + proj(attention(LN1(p[x_in]))).
    fn record_attention<'b>(&'b self, ctx: &GpuContext, blk: &'b GpuBlock, attn: AttnShape, [x_in, y]: [usize; 2], q: BlockQuant<'b>, ds: &mut Vec<Dispatch>) {
        let (t, c, b) = (self.tokens(), blk.fc2.out_dim, &self.bufs);
        let dims = (self.batch, self.padded.0, self.padded.1);
        let qkv_codes = q.ln_codes(&QKV_INPUTS);
        let coded = qkv_codes.map(|_| b.codes.slice(0, ops::code_words(t, c)));
        ds.push(match qkv_codes.zip(coded) {
            Some((qr, codes)) => ops::layer_norm_codes(ctx, b.p[x_in].bind(), &blk.norm1, codes.bind(), t, qr),
            None => ops::layer_norm(ctx, b.p[x_in].bind(), &blk.norm1, b.ln.bind(), t, "layernorm"),
        });
        q.search(ctx, ds, Slot::Input(0), 3, (&b.ln, t * c), 1.0);
        let scale = (attn.head_dim as f64).powf(-0.5) as f32;
        // The integer attention on codes: q, k and v are each packed as soon as they
        // are made, so they share one float buffer.
        let int_attention = q.int.zip(b.attn_codes.as_ref()).filter(|_| codes_attention(attn.window));
        for (i, lin) in blk.qkv.iter().enumerate() {
            let out = &b.qkv[if int_attention.is_some() { 0 } else { i }];
            let windows = Some(WindowOrder { h: self.padded.0, w: self.padded.1, shape: attn });
            let x = coded.unwrap_or_else(|| b.ln.operand());
            let mm = Matmul { quant: q.act(Slot::Input(i)), windows, ..Matmul::tokens(x, q.weights(i, lin), out.bind(), t, "qkv") };
            let io = IntIo { coded, ..Default::default() };
            self.linear(ctx, ds, (q.int, q.block, i), mm, io);
            let mult = if i == 0 { scale } else { 1.0 };
            q.search(ctx, ds, Slot::Matmul(i), 1, (out, t * c), mult);
            if let Some((qm, attn_codes)) = int_attention {
                let row = qm.qref(quant::index(q.block, Slot::Matmul(i)));
                ds.push(ops::pack_window_codes(ctx, [out, &attn_codes[i]], t, attn, i == 2, (row, mult)));
            }
        }
        let mut proj_codes = None;
        match int_attention {
            Some((qm, [qc, kc, vc])) => {
                let qref = qm.qref(quant::index(q.block, Slot::Matmul(0)));
                // It writes proj's input codes (into `codes`, free once q, k and v are made).
                let out = ops::IntAttnOut::Codes(b.codes.bind(), quant::index(q.block, Slot::Input(3)));
                ds.extend(ops::window_attention_int(ctx, [qc, kc, vc], &blk.table, out, dims, attn, qref, "attention"));
                proj_codes = Some(b.codes.slice(0, blk.input_codes(3).words(t)));
            }
            None => {
                let [qb, kb, vb] = &b.qkv;
                let extras = AttnExtras { quant: q.act(Slot::Matmul(0)), ..Default::default() };
                ds.extend(ops::window_attention(ctx, [qb, kb, vb], &blk.table, b.ln.bind(), dims, attn, extras, "attention"));
            }
        }
        if let Some(cal) = q.calib {
            self.search_probs(ctx, cal, blk, attn, q.block, ds);
        }
        q.search(ctx, ds, Slot::Input(3), 1, (&b.ln, t * c), 1.0);
        let x = proj_codes.unwrap_or_else(|| b.ln.operand());
        let proj = Matmul { residual: Some(b.p[x_in].bind()), quant: q.act(Slot::Input(3)), ..Matmul::tokens(x, q.weights(3, &blk.proj), b.p[y].bind(), t, "proj") };
        self.linear(ctx, ds, (q.int, q.block, 3), proj, IntIo { coded: proj_codes, ..Default::default() });
    }

    /// The block's second half: p[x_out] = p[y] + fc2(GELU(fc1(LN2(p[y])))), in chunks
    /// of `chunk` tokens.
    fn record_mlp<'b>(&'b self, ctx: &GpuContext, blk: &'b GpuBlock, [y, x_out]: [usize; 2], chunk: usize, q: BlockQuant<'b>, ds: &mut Vec<Dispatch>) {
        let (t, c, b) = (self.tokens(), blk.fc2.out_dim, &self.bufs);
        let fc1_codes = q.ln_codes(&[Slot::Input(4)]);
        ds.push(match fc1_codes {
            Some(qr) => ops::layer_norm_codes(ctx, b.p[y].bind(), &blk.norm2, b.codes.slice(0, ops::code_words(t, c)).bind(), t, qr),
            None => ops::layer_norm(ctx, b.p[y].bind(), &blk.norm2, b.ln.bind(), t, "layernorm"),
        });
        q.search(ctx, ds, Slot::Input(4), 1, (&b.ln, t * c), 1.0);
        let hid = blk.fc1.out_dim;
        for start in (0..t).step_by(chunk) {
            let n = chunk.min(t - start);
            // The integer engine's fc1 writes fc2's input codes (into `hidden`) instead of floats.
            let hidden_codes = q.int.map(|_| b.hidden().slice(0, ops::code_words(n, hid)));
            let c4 = ops::code_words(1, c);
            let coded = fc1_codes.map(|_| b.codes.slice(start * c4, n * c4));
            let fc1 = Matmul {
                gelu: true,
                quant: q.act(Slot::Input(4)),
                ..Matmul::tokens(
                    coded.unwrap_or_else(|| b.ln.slice(start * c, n * c)),
                    q.weights(4, &blk.fc1),
                    hidden_codes.map_or_else(|| b.hidden().bind_range(0, n * hid), |_| ctx.sink()),
                    n,
                    "mlp",
                )
            };
            let io = IntIo { emit: hidden_codes.map(|h| (h.bind(), Slot::Input(5))), coded };
            self.linear(ctx, ds, (q.int, q.block, 4), fc1, io);
            q.search(ctx, ds, Slot::Input(5), 1, (b.hidden(), n * hid), 1.0);
            let fc2 = Matmul {
                residual: Some(b.p[y].bind_range(start * c, n * c)),
                quant: q.act(Slot::Input(5)),
                ..Matmul::tokens(hidden_codes.unwrap_or_else(|| b.hidden().slice(0, n * hid)), q.weights(5, &blk.fc2), b.p[x_out].bind_range(start * c, n * c), n, "mlp")
            };
            let io = IntIo { coded: hidden_codes, ..Default::default() };
            self.linear(ctx, ds, (q.int, q.block, 5), fc2, io);
        }
    }

    /// Records quantized linear `i` of `block`: as given, or for the integer engine
    /// its integer matmul, on the codes in `io.coded` or else on codes packed from
    /// its input first, writing codes for `io.emit` instead of floats when given.
    fn linear<'b>(&'b self, ctx: &GpuContext, ds: &mut Vec<Dispatch>, (int, block, i): (Option<&'b QuantModel>, usize, usize), mm: Matmul<'b>, io: IntIo<'b>) {
        let mm = match int {
            Some(q) => {
                let m = mm.m;
                let weights = &q.int_weights[block][i];
                let codes = io.coded.unwrap_or_else(|| {
                    let xq = mm.quant.expect("the integer engine quantizes every linear's input");
                    let codes = self.bufs.codes.slice(0, weights.input.words(m));
                    ds.push(ops::pack_codes(ctx, mm.x.bind(), codes.bind(), m, weights.input, xq));
                    codes
                });
                let w_row = quant::index(block, Slot::Weight(i));
                let emit = io.emit.map(|(buf, slot)| (buf, quant::index(block, slot)));
                Matmul { int: Some(IntOperands { codes, weights, w_row, emit }), ..mm }
            }
            None => mm,
        };
        ds.extend(ops::matmul(ctx, mm));
    }

    /// Searches the softmax output's quantizer: the attention maps are written for a
    /// few images at a time (two passes, since min/max must precede the errors).
    fn search_probs(&self, ctx: &GpuContext, cal: &Calibration, blk: &GpuBlock, attn: AttnShape, block: usize, ds: &mut Vec<Dispatch>) {
        let b = &self.bufs;
        let dims = (self.batch, self.padded.0, self.padded.1);
        let per_image = cal.probs.len / cal.probs_batch;
        let spec = cal.spec(block, Slot::Matmul(3), 1, 1.0);
        let chunks: Vec<std::ops::Range<usize>> =
            (0..self.batch).step_by(cal.probs_batch).map(|s| s..(s + cal.probs_batch).min(self.batch)).collect();
        let attention = |range: &std::ops::Range<usize>| {
            let [q, k, v] = &b.qkv;
            let extras = AttnExtras { quant: None, probs: Some(cal.probs.bind()), batch: Some(range.clone()) };
            ops::window_attention(ctx, [q, k, v], &blk.table, b.ln.bind(), dims, attn, extras, "attention")
        };
        let (mut base, mut total) = (0, 0);
        for r in &chunks {
            ds.extend(attention(r));
            let n = r.len() * per_image;
            ds.extend(cal.searcher.stats_pass(ctx, &spec, cal.probs.bind_range(0, n), n, base));
            base += Searcher::groups(n);
            total += n;
        }
        ds.extend(cal.searcher.candidates(ctx, &spec, base, total));
        let mut base = 0;
        for r in &chunks {
            ds.extend(attention(r));
            let n = r.len() * per_image;
            ds.extend(cal.searcher.errors_pass(ctx, &spec, &cal.probs, 0, n, base));
            base += Searcher::groups(n);
        }
        ds.push(cal.searcher.pick(ctx, &spec, base, total, &cal.params));
    }

    /// Uploads a planar (b, ch, h, w) batch, runs the model and returns the planar
    /// (b, ch, s·h, s·w) output, un-clamped.
    pub fn forward(&self, ctx: &GpuContext, image: &[f32], profiler: Option<&mut Profiler>) -> Vec<f32> {
        self.set_input(ctx, image);
        self.execute(ctx, profiler);
        self.bufs.output.read(ctx)
    }

    /// Records all steps into one submission; with a profiler, each stage gets a
    /// timestamped compute pass of its own.
    pub fn execute(&self, ctx: &GpuContext, profiler: Option<&mut Profiler>) {
        self.submit_steps(ctx, profiler, 1, |_, _| {});
    }

    /// Runs the steps in about `parts` submissions, waiting for each and then calling
    /// `progress(launches done, launches in all)`: a progress bar for long passes
    /// (phase 1) at the cost of a GPU wait per part. The same launches in the same
    /// order as `execute`.
    pub fn execute_in_parts(&self, ctx: &GpuContext, image: &[f32], parts: usize, progress: impl FnMut(usize, usize)) {
        self.set_input(ctx, image);
        self.submit_steps(ctx, None, parts.max(1), progress);
    }

    /// Records the steps, submitting and waiting after every 1/`parts` of the launches
    /// and at the end.
    fn submit_steps(&self, ctx: &GpuContext, mut profiler: Option<&mut Profiler>, parts: usize, mut progress: impl FnMut(usize, usize)) {
        let total = self.steps.iter().filter(|s| matches!(s, Step::Run(_))).count();
        let chunk = total.div_ceil(parts).max(1);
        let mut done = 0;
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let mut runs: Vec<&Dispatch> = Vec::new();
        for step in &self.steps {
            match step {
                Step::Run(d) => runs.push(d),
                Step::Capture { src, dst, .. } => {
                    record_passes(&mut enc, &runs, profiler.as_deref_mut());
                    done += runs.len();
                    runs.clear();
                    enc.copy_buffer_to_buffer(src, 0, &dst.buffer, 0, dst.bytes());
                }
            }
            // (the launches that end the plan go with the final submission)
            if runs.len() >= chunk && done + runs.len() < total {
                record_passes(&mut enc, &runs, profiler.as_deref_mut());
                done += runs.len();
                runs.clear();
                let full = std::mem::replace(&mut enc, ctx.device.create_command_encoder(&Default::default()));
                ctx.queue.submit([full.finish()]);
                ctx.wait();
                progress(done, total);
            }
        }
        record_passes(&mut enc, &runs, profiler.as_deref_mut());
        if let Some(p) = profiler {
            p.resolve(&mut enc);
        }
        ctx.queue.submit([enc.finish()]);
        ctx.wait();
        progress(total, total);
    }

    /// Kernel launches per stage of one run (each costs tens of µs to start on
    /// lavapipe).
    pub fn dispatch_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for step in &self.steps {
            if let Step::Run(d) = step {
                *counts.entry(d.stage).or_default() += 1;
            }
        }
        counts
    }

    /// A captured feature's buffer on the GPU.
    pub fn captured_buffer(&self, name: &str) -> Option<&GpuBuffer> {
        self.steps.iter().find_map(|s| match s {
            Step::Capture { name: n, dst, .. } if n == name => Some(dst),
            _ => None,
        })
    }

    /// Handles to this plan's scratch activations of `len` values, free between its
    /// forwards (phase 2's gradient recomputes the blocks in them).
    pub(crate) fn token_scratch(&self, len: usize) -> Vec<GpuBuffer> {
        let b = &self.bufs;
        [&b.f0, &b.ln].into_iter().chain(&b.p).chain(&b.qkv).filter(|x| x.len == len).map(GpuBuffer::share).collect()
    }

    /// The output buffer: planar (b, ch, s·h, s·w), un-clamped.
    pub fn output(&self) -> &GpuBuffer {
        &self.bufs.output
    }

    /// Writes a planar (b, ch, h, w) input batch (then `execute`).
    pub fn set_input(&self, ctx: &GpuContext, image: &[f32]) {
        assert_eq!(image.len(), self.bufs.input.len, "input size does not match the plan");
        self.bufs.input.write(ctx, image);
    }

    /// A captured feature by name (only in plans made with `capture`).
    pub fn captured(&self, ctx: &GpuContext, name: &str) -> Option<Vec<f32>> {
        self.steps.iter().find_map(|s| match s {
            Step::Capture { name: n, dst, .. } if n == name => Some(dst.read(ctx)),
            _ => None,
        })
    }
}

/// Integer-engine routing of one linear: input codes already made by the previous
/// kernel, and the quantizer whose codes it writes instead of floats.
#[derive(Default)]
struct IntIo<'b> {
    coded: Option<Operand<'b>>,
    emit: Option<(wgpu::BindingResource<'b>, Slot)>,
}

/// Whether the integer engine's attention runs on codes for windows of this side:
/// codes pack four keys per word, so windows of 4n tokens (others stay fake-quantized).
fn codes_attention(window: usize) -> bool {
    (window * window).is_multiple_of(4)
}

/// The attention of block `j` in group `r` (odd blocks shift their windows).
pub(crate) fn attn_shape(cfg: &SwinConfig, r: usize, j: usize) -> AttnShape {
    let shift = if j % 2 == 1 { cfg.shift() } else { 0 };
    AttnShape { window: cfg.window, heads: cfg.heads[r], head_dim: cfg.head_dim(r), shift }
}

/// Linear `i` of a block: its float weights, or their fake-quantized copy.
pub(crate) fn block_weights<'a>(fake: Option<&'a QuantModel>, block: usize, i: usize, l: &'a GpuLinear) -> ops::Weights<'a> {
    // (The integer engine reads only the layer's shape and bias from these.)
    match fake.and_then(|q| q.qweights.get(block)) {
        Some(w) => l.weights_with(&w[i]),
        None => l.weights(),
    }
}

/// A 3×3 convolution (float in every mode).
fn conv(
    ctx: &GpuContext,
    x: Operand<'_>,
    layer: &GpuLinear,
    out: wgpu::BindingResource<'_>,
    t: usize,
    input: MatmulInput,
    residual: Option<wgpu::BindingResource<'_>>,
) -> Vec<Dispatch> {
    ops::matmul(ctx, Matmul { input, residual, ..Matmul::tokens(x, layer.weights(), out, t, "conv") })
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
