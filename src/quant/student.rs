//! The distillation loss of phase 2 (SPEC §5) and its gradient with respect to
//! every quantizer's (l, u, c), on the GPU. The student's forward (a fake-quantized
//! `Plan` capturing each block's input) and the teacher's (a float `Plan`
//! capturing the distilled features) run first; then one recorded list of
//! dispatches forms the losses' gradients, goes back through the float tail, and
//! through each residual group: its conv, then each block, recomputed from its
//! captured input to get the intermediate activations, then differentiated.

use anyhow::{bail, Result};

use crate::gpu::attention_backward::{to_token_order, window_attention_backward};
use crate::gpu::backward::{
    add_into, conv3x3_input_grad, feature_grad, gelu_backward, l1_grad, layer_norm_backward, quant_backward, quant_partials, reduce_partials, transposed_conv,
    weight_grad_words, weight_partials, weight_quant_grads, LinearGrad, TransposedLinear,
};
use crate::gpu::ops::{self, finish_backward, AttnExtras, AttnShape, GpuLinear, Matmul, WindowOrder};
use crate::gpu::profiler::Profiler;
use crate::gpu::{run_profiled, Dispatch, GpuBuffer, GpuContext};
use crate::model::graph::{attn_shape, block_weights, GpuBlock, GpuModel, Plan, QuantModel};
use crate::model::SwinConfig;
use crate::quant::{index, Slot, PER_BLOCK};

/// The recorded gradient computation for one batch shape.
pub struct StudentGrad {
    dispatches: Vec<Dispatch>,
    /// Gradient rows (dl, du, dc, 0) of every quantizer, in parameter-table order.
    pub grads: GpuBuffer,
    /// Row 0: the L1 loss's sum of |student − teacher|.
    l1_sum: GpuBuffer,
    /// Per group and sample: (‖student‖², ‖teacher‖², student·teacher) of the features.
    feature_sums: GpuBuffer,
    output_len: usize,
    samples: usize,
    groups: usize,
    feature_len: usize,
    lambda: f32,
    _buffers: Vec<GpuBuffer>,
    _layers: (Vec<[TransposedLinear; 6]>, Vec<GpuLinear>),
}

/// Activations of one block, recomputed from its input.
struct Tape {
    a: GpuBuffer,
    qkv: [GpuBuffer; 3],
    o: GpuBuffer,
    t1: GpuBuffer,
    m: GpuBuffer,
    h: GpuBuffer,
    g: GpuBuffer,
}

/// Gradient scratch.
struct Scratch {
    hid: [GpuBuffer; 2],
    tok: [GpuBuffer; 3],
    d_a: GpuBuffer,
    d_qkv: [GpuBuffer; 3],
    partials: GpuBuffer,
    /// Token-chunk sums of a weight's gradient.
    wgrad: GpuBuffer,
}

impl Tape {
    /// Room for `t` tokens of `c` channels (MLP: `hid`); the buffers of `t`·`c` values
    /// come from `spare` (the student plan's scratch) while it has any.
    fn new(ctx: &GpuContext, (t, c, hid): (usize, usize, usize), spare: Vec<GpuBuffer>) -> Self {
        let z = |label: &str, n: usize| GpuBuffer::zeros_windowed(ctx, label, n);
        let mut spare = spare.into_iter();
        let mut tokens = |label: &str| spare.next().unwrap_or_else(|| z(label, t * c));
        Self {
            a: tokens("a"),
            qkv: [tokens("q"), tokens("k"), tokens("v")],
            o: tokens("o"),
            t1: tokens("t1"),
            m: tokens("m"),
            h: z("h", t * hid),
            g: z("g", t * hid),
        }
    }

    fn into_buffers(self) -> impl Iterator<Item = GpuBuffer> {
        [self.a, self.o, self.t1, self.m, self.h, self.g].into_iter().chain(self.qkv)
    }
}

impl Scratch {
    /// Room for `t` tokens of model `cfg` whose output has `output_len` values.
    fn new(ctx: &GpuContext, cfg: &SwinConfig, t: usize, output_len: usize) -> Self {
        let z = |label: &str, n: usize| GpuBuffer::zeros_windowed(ctx, label, n);
        let (c, hid) = (cfg.embed_dim, cfg.mlp_hidden);
        let max_slices = (0..cfg.depths.len()).map(|r| t / (cfg.window * cfg.window) * cfg.heads[r]).max().unwrap_or(0);
        let partial_words = [quant_partials(t * hid), 4 * max_slices, weight_partials(hid, c), quant_partials(output_len)].into_iter().max().unwrap_or(1);
        Self {
            hid: [z("d_hid0", t * hid), z("d_hid1", t * hid)],
            tok: [z("d_tok0", t * c), z("d_tok1", t * c), z("d_tok2", t * c)],
            d_a: z("d_a", t * c),
            d_qkv: ["dq", "dk", "dv"].map(|n| z(n, t * c)),
            partials: z("partials", 4 * partial_words),
            wgrad: z("wgrad", weight_grad_words(hid, c, t)),
        }
    }

    fn into_buffers(self) -> impl Iterator<Item = GpuBuffer> {
        [self.d_a, self.partials, self.wgrad].into_iter().chain(self.hid).chain(self.tok).chain(self.d_qkv)
    }
}

/// What every block's backward shares.
struct Shared<'a> {
    ctx: &'a GpuContext,
    quant: &'a QuantModel,
    grads: &'a GpuBuffer,
    dims: (usize, usize, usize),
    tokens: usize,
}

impl Shared<'_> {
    /// Sums the partials just written for quantizer `row` into its gradient row.
    fn reduce(&self, s: &Scratch, count: usize, row: usize) -> Dispatch {
        reduce_partials(self.ctx, (&s.partials, 0, 1), count, (self.grads, row), false)
    }

    fn layer<'b>(&'b self, lin: &'b GpuLinear, block: usize, i: usize) -> LinearGrad<'b> {
        LinearGrad { weight: &lin.weight, n_out: lin.out_dim, k: lin.k, quant: Some(self.quant.qref(index(block, Slot::Weight(i)))) }
    }

    /// Back through quantized linear `i` of `block` (y = Q(x)·Q(W)ᵀ + b, `lin_t` its
    /// transposed weight): dx from dy, and the gradients of its weight and input quantizers.
    fn linear(&self, s: &Scratch, (lin, lin_t, block, i): (&GpuLinear, &TransposedLinear, usize, usize), [x, dy, d_xhat, dx]: [&GpuBuffer; 4], accumulate: bool) -> Vec<Dispatch> {
        let ctx = self.ctx;
        let layer = self.layer(lin, block, i);
        let (t, k) = (self.tokens, lin.k);
        let in_row = index(block, Slot::Input(i));
        let mut ds = lin_t.input_grad(ctx, [dy, d_xhat], t);
        ds.extend(weight_quant_grads(ctx, [x, dy], layer, Some(in_row), t, &s.wgrad, (&s.partials, 0)));
        ds.extend([
            self.reduce(s, weight_partials(lin.out_dim, k), index(block, Slot::Weight(i))),
            quant_backward(ctx, [x, d_xhat, dx], t * k, self.quant.qref(in_row), (&s.partials, 0), accumulate),
            self.reduce(s, quant_partials(t * k), in_row),
        ]);
        ds
    }
}

impl StudentGrad {
    /// Records the gradient of L1(student, teacher) + λ·Σ_r feature loss for the
    /// plans' batch (both plans of one shape, the student's made with
    /// `Capture::Distill { block_inputs: true }`, the teacher's with `Capture::Distill`).
    pub fn new(ctx: &GpuContext, model: &GpuModel, quant: &QuantModel, teacher: &Plan, student: &Plan, lambda: f32) -> Result<Self> {
        let cfg = &model.config;
        let (b, (hp, wp)) = (student.batch, student.padded);
        let t = student.tokens();
        let (c, hid) = (cfg.embed_dim, cfg.mlp_hidden);
        if (t * hid * 4) as u64 > ctx.max_binding() {
            bail!("phase 2: a batch of {b} patches needs MLP activations above the adapter's storage-binding limit; use a smaller batch");
        }
        let z = |label: &str, n: usize| GpuBuffer::zeros_windowed(ctx, label, n);
        // The blocks are recomputed after both forwards: in the student's scratch.
        let tape = Tape::new(ctx, (t, c, hid), student.token_scratch(t * c));
        let output_len = student.output().len;
        let scratch = Scratch::new(ctx, cfg, t, output_len);
        let grads = GpuBuffer::zeros(ctx, "quant_grads", 4 * PER_BLOCK * cfg.num_blocks());
        let l1_sum = GpuBuffer::zeros(ctx, "l1_sum", 4);
        let groups = cfg.depths.len();
        let feature_sums = GpuBuffer::zeros(ctx, "feature_sums", 4 * groups * b);
        let [d_out, d_up] = [z("d_out", output_len), z("d_up", t * cfg.in_chans * cfg.scale * cfg.scale)];
        let run = [z("d_t0", t * c), z("d_t1", t * c)];
        let d_y = z("d_y", t * c);
        let shared = Shared { ctx, quant, grads: &grads, dims: (b, hp, wp), tokens: t };
        // Input gradients run as forward matmuls on transposed weights; the quantized
        // ones are refreshed from the current parameters first.
        let transposed: Vec<[TransposedLinear; 6]> =
            model.groups.iter().flat_map(|g| &g.blocks).map(|blk| blk.linears().map(|l| TransposedLinear::new(ctx, &l.weight.read(ctx), l.out_dim, l.k))).collect();
        let conv_t = |l: &GpuLinear| transposed_conv(ctx, &l.weight.read(ctx), (l.k / 9, l.out_dim));
        let (up_t, body_t) = (conv_t(&model.upsample), conv_t(&model.conv_after_body));
        let groups_t: Vec<GpuLinear> = model.groups.iter().map(|g| conv_t(&g.conv)).collect();
        let mut ds: Vec<Dispatch> = transposed
            .iter()
            .enumerate()
            .flat_map(|(n, ts)| ts.iter().enumerate().map(move |(i, lt)| (n, i, lt)))
            .map(|(n, i, lt)| lt.refresh(ctx, Some(quant.qref(index(n, Slot::Weight(i))))))
            .collect();

        // The losses' gradients, then back through the float tail to the body's output.
        let n_out = output_len;
        ds.push(l1_grad(ctx, [student.output(), teacher.output(), &d_out], n_out, (&scratch.partials, 0)));
        ds.push(reduce_partials(ctx, (&scratch.partials, 0, 1), quant_partials(n_out), (&l1_sum, 0), false));
        ds.push(finish_backward(ctx, &d_out, &d_up, &student.image_shape(cfg)));
        ds.extend(conv3x3_input_grad(ctx, [&d_up, &d_y], &up_t, (b, hp, wp)));
        ds.extend(conv3x3_input_grad(ctx, [&d_y, &scratch.tok[0]], &body_t, (b, hp, wp)));
        let body = student.captured_buffer("body").expect("student plan captures the body's output");
        ds.push(layer_norm_backward(ctx, [body, &scratch.tok[0], &run[0]], &model.norm, t, false));

        // Each residual group, last first: run[out] holds the gradient at its output.
        let mut out = 0;
        let mut flat = cfg.num_blocks();
        for (r, group) in model.groups.iter().enumerate().rev() {
            let grad = &run[1 - out];
            ds.extend(conv3x3_input_grad(ctx, [&run[out], grad], &groups_t[r], (b, hp, wp)));
            let [fs, ft] = [student, teacher].map(|p| p.captured_buffer(&format!("group{r}")).expect("plans capture the groups' features"));
            ds.extend(feature_grad(ctx, [fs, ft, grad], (b, hp * wp * c), lambda, (&feature_sums, r * b), true));
            for (j, blk) in group.blocks.iter().enumerate().rev() {
                flat -= 1;
                let x_in = student.captured_buffer(&format!("block_in{flat}")).expect("student plan captures block inputs");
                let attn = attn_shape(cfg, r, j);
                ds.extend(recompute_block(&shared, blk, attn, flat, x_in, &tape));
                ds.extend(block_backward(&shared, &scratch, (blk, &transposed[flat]), attn, flat, [x_in, grad], &tape));
            }
            // The group's residual: its input's gradient also flows straight from its output.
            ds.push(add_into(ctx, [&run[out], grad], t * c));
            out = 1 - out;
        }
        let mut buffers = vec![d_out, d_up, d_y];
        buffers.extend(run);
        buffers.extend(tape.into_buffers());
        buffers.extend(scratch.into_buffers());
        let mut convs = groups_t;
        convs.extend([up_t, body_t]);
        Ok(Self {
            dispatches: ds,
            grads,
            l1_sum,
            feature_sums,
            output_len,
            samples: b,
            groups,
            feature_len: t * c,
            lambda,
            _buffers: buffers,
            _layers: (transposed, convs),
        })
    }

    /// Computes the gradient rows for the batch the two plans just ran.
    pub fn run(&self, ctx: &GpuContext, profiler: Option<&mut Profiler>) {
        run_profiled(ctx, &self.dispatches, profiler);
    }

    /// The loss of the last `run`: (L1, Σ_r feature loss, total = L1 + λ·features).
    pub fn loss(&self, ctx: &GpuContext) -> (f64, f64, f64) {
        let l1 = self.l1_sum.read::<f32>(ctx)[0] as f64 / self.output_len as f64;
        let sums = self.feature_sums.read::<f32>(ctx);
        let feature: f64 = sums
            .chunks(4)
            .take(self.groups * self.samples)
            .map(|s| 2.0 - 2.0 * s[2] as f64 / ((s[0] as f64).sqrt() * (s[1] as f64).sqrt()))
            .sum::<f64>()
            / self.feature_len as f64;
        (l1, feature, l1 + self.lambda as f64 * feature)
    }
}

/// The block's forward again, keeping what its backward needs (SPEC §1 Block, fake-quantized).
fn recompute_block(s: &Shared<'_>, blk: &GpuBlock, attn: AttnShape, block: usize, x_in: &GpuBuffer, tape: &Tape) -> Vec<Dispatch> {
    let (ctx, q, t) = (s.ctx, s.quant, s.tokens);
    let act = |slot| Some(q.qref(index(block, slot)));
    let weights = |i, l| block_weights(Some(q), block, i, l);
    let (_, hp, wp) = s.dims;
    let mut ds = vec![ops::layer_norm(ctx, x_in.bind(), &blk.norm1, tape.a.bind(), t, "layernorm")];
    for (i, (lin, out)) in blk.qkv.iter().zip(&tape.qkv).enumerate() {
        let windows = Some(WindowOrder { h: hp, w: wp, shape: attn });
        ds.extend(ops::matmul(ctx, Matmul { quant: act(Slot::Input(i)), windows, ..Matmul::tokens(tape.a.operand(), weights(i, lin), out.bind(), t, "qkv") }));
    }
    let [qb, kb, vb] = &tape.qkv;
    let extras = AttnExtras { quant: act(Slot::Matmul(0)), ..Default::default() };
    ds.extend(ops::window_attention(ctx, [qb, kb, vb], &blk.table, tape.o.bind(), s.dims, attn, extras, "attention"));
    let proj = Matmul { residual: Some(x_in.bind()), quant: act(Slot::Input(3)), ..Matmul::tokens(tape.o.operand(), weights(3, &blk.proj), tape.t1.bind(), t, "proj") };
    ds.extend(ops::matmul(ctx, proj));
    ds.push(ops::layer_norm(ctx, tape.t1.bind(), &blk.norm2, tape.m.bind(), t, "layernorm"));
    for (gelu, out) in [(false, &tape.h), (true, &tape.g)] {
        ds.extend(ops::matmul(ctx, Matmul { gelu, quant: act(Slot::Input(4)), ..Matmul::tokens(tape.m.operand(), weights(4, &blk.fc1), out.bind(), t, "mlp") }));
    }
    ds
}

/// Back through one block: `grad` holds the gradient at its output and ends with
/// the gradient at its input `x_in`; the block's 16 quantizer rows are written.
fn block_backward(
    s: &Shared<'_>,
    sc: &Scratch,
    (blk, lin_t): (&GpuBlock, &[TransposedLinear; 6]),
    attn: AttnShape,
    block: usize,
    [x_in, grad]: [&GpuBuffer; 2],
    tape: &Tape,
) -> Vec<Dispatch> {
    let (ctx, t) = (s.ctx, s.tokens);
    let [hid0, hid1] = &sc.hid;
    let [tok0, tok1, tok2] = &sc.tok;
    // MLP: x + fc2(GELU(fc1(LN2(x)))).
    let mut ds = s.linear(sc, (&blk.fc2, &lin_t[5], block, 5), [&tape.g, grad, hid0, hid1], false);
    ds.push(gelu_backward(ctx, [&tape.h, hid1, hid0], t * blk.fc1.out_dim));
    ds.extend(s.linear(sc, (&blk.fc1, &lin_t[4], block, 4), [&tape.m, hid0, tok0, tok1], false));
    ds.push(layer_norm_backward(ctx, [&tape.t1, tok1, grad], &blk.norm2, t, true));
    // Attention: x + proj(attention(q, k, v of LN1(x))).
    ds.extend(s.linear(sc, (&blk.proj, &lin_t[3], block, 3), [&tape.o, grad, tok0, tok1], false));
    let [qb, kb, vb] = &tape.qkv;
    let [dq, dk, dv] = &sc.d_qkv;
    let matmul_row = index(block, Slot::Matmul(0));
    ds.extend(window_attention_backward(ctx, [qb, kb, vb], &blk.table, tok1, [dq, dk, dv], &sc.partials, s.dims, attn, Some(s.quant.qref(matmul_row))));
    let slices = t / (attn.window * attn.window) * attn.heads;
    for w in 0..4 {
        ds.push(reduce_partials(ctx, (&sc.partials, w, 4), slices, (s.grads, matmul_row + w), false));
    }
    for (i, (lin, d)) in blk.qkv.iter().zip(&sc.d_qkv).enumerate() {
        ds.extend(to_token_order(ctx, d, tok2, s.dims, attn, &blk.table));
        ds.extend(s.linear(sc, (lin, &lin_t[i], block, i), [&tape.a, tok2, tok0, &sc.d_a], i > 0));
    }
    ds.push(layer_norm_backward(ctx, [x_in, &sc.d_a, grad], &blk.norm1, t, true));
    ds
}
