//! The GPT: token (+ position) embeddings, `n_layer` pre-norm blocks of causal self-attention and
//! an MLP, a final norm and the LM head (tied to the token embedding by default) — or, for a
//! classifier, a head from the (pooled) final hidden states to the classes.
//!
//! The other families share the embedding, the heads, the loss and the cache: with
//! `arch = "bert"` the same blocks attend in both directions (an encoder, trained by masked-
//! language modelling and read through `[MASK]` and `[CLS]`); with `arch = "lstm"` the blocks
//! and final norm give way to the stacked LSTMs of [`lstm`].
//!
//! Tensor names and layouts follow GPT-2 (`wte`, `h.N.attn.c_attn`, `h.N.mlp.c_fc`, ...), and a
//! Burn `Linear` stores its weight as `[in, out]`, which is GPT-2's Conv1D orientation.

use burn::module::Param;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, RmsNormConfig,
};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::{gelu, silu, tanh};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

mod embedding;
mod lstm;

use embedding::TokenEmbedding;

use crate::config::{self, Arch, ModelConfig, Pooling, Position, Task};
use crate::data::examples::IGNORE;
use crate::error::{Error, Result};
use crate::kernels::attention::Mask;
use crate::kernels::cross_entropy::cross_entropy;
use crate::kernels::matmul::Variant;
use crate::kernels::{self, attention, gelu, norm};

/// Whether the parameter at checkpoint path `path` belongs to a classifier's own head (the
/// score, and an encoder's pooler): parts a finetuned classifier adds to a language model, and
/// that train beside LoRA adapters.
pub(crate) fn is_classifier_head(path: &str) -> bool {
    path.starts_with("score.") || path.starts_with("pooler.")
}

/// Standard deviation of GPT-2's initialisation.
const INIT_STD: f64 = 0.02;

#[derive(Module, Debug)]
pub struct Gpt {
    wte: TokenEmbedding,
    /// Learned position embedding; `None` with rotary positions.
    wpe: Option<Embedding>,
    drop: Dropout,
    /// Post-norm Transformers' norm of the embeddings (BERT's `embeddings.LayerNorm`).
    ln_emb: Option<Norm>,
    /// The Transformer blocks (GPT, encoder).
    h: Vec<Block>,
    /// The stacked LSTMs (`arch = "lstm"`), input width `n_embd` and hidden width `n_embd`.
    lstm: Vec<lstm::LstmLayer>,
    /// The final norm of a pre-norm Transformer (a post-norm one ends normalised, and an LSTM's
    /// output is bounded by its `tanh`).
    ln_f: Option<Norm>,
    /// Output projection; `None` when tied to `wte`.
    lm_head: Option<Linear>,
    /// A classifier's head, `[n_embd, classes]` (GPT2ForSequenceClassification's name).
    score: Option<Linear>,
    /// BERT's masked-LM prediction transform and output bias (`bert_heads`, a language model).
    mlm: Option<MlmHead>,
    /// BERT's pooler, `tanh(dense(x))` before a classifier's head (`bert_heads`, a classifier).
    pooler: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
    /// The largest tensor the device binds, in bytes (`usize::MAX`: no limit): the token
    /// embedding is held in parts of at most this size, and the loss computes the logits in
    /// chunks of rows that fit it.
    #[module(skip)]
    binding: usize,
}

#[derive(Module, Debug)]
struct Block {
    ln_1: Norm,
    attn: Attention,
    ln_2: Norm,
    mlp: Mlp,
    /// Pre-norm (GPT-2: `x + f(norm(x))`) or post-norm (BERT: `norm(x + f(x))`).
    norm_first: bool,
}

#[derive(Module, Debug)]
struct Attention {
    /// Query, key and value projections side by side: `[n_embd, 3·n_embd]`.
    c_attn: Linear,
    c_proj: Linear,
    attn_drop: Dropout,
    resid_drop: Dropout,
    n_head: usize,
    rope: bool,
}

#[derive(Module, Debug)]
struct Mlp {
    c_fc: Linear,
    /// The gate of SwiGLU (`None` for GELU).
    c_gate: Option<Linear>,
    c_proj: Linear,
    drop: Dropout,
    /// The exact (erf) GELU, as BERT has it, instead of GPT-2's tanh approximation.
    erf: bool,
}

/// What BERT puts between the last block and the tied output head: `norm(gelu(dense(x)))`, and
/// a bias per token on the logits.
#[derive(Module, Debug)]
struct MlmHead {
    dense: Linear,
    ln: Norm,
    bias: Param<Tensor<1>>,
}

/// LayerNorm or RMSNorm, chosen by the config.
#[derive(Module, Debug)]
enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

/// Where a forward pass ends before the head: a classifier's logits, or a language model's final
/// hidden states and how the model computes.
enum Top {
    Classes(Tensor<3>),
    Hidden(Tensor<3>, Run),
}

/// One layer's cached keys and values, `[batch, n_head, len, head_dim]` each.
type LayerCache = Option<(Tensor<4>, Tensor<4>)>;

/// Rotary `cos` and `sin` tables, `[1, 1, t, head_dim / 2]` each.
type RopeTables = (Tensor<4>, Tensor<4>);

/// What the model keeps of the tokens seen so far, so the next ones cost one step each: keys and
/// values per layer for a GPT; for an LSTM, each layer's hidden and cell state, which play the
/// same role in constant size.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    states: Vec<Option<lstm::State>>,
    len: usize,
}

impl KvCache {
    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// N(0, std).
fn normal(std: f64) -> Normal<f32> {
    Normal::new(0.0, std as f32).expect("std is finite and positive")
}

/// Draws initial weights on the host from the model's own seeded stream, so a seed gives the same
/// model on every backend and no matter what else uses the backend's RNG meanwhile.
struct Init<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl Init<'_> {
    /// A `[rows, cols]` parameter with entries N(0, std).
    fn normal(&mut self, rows: usize, cols: usize, std: f64) -> Param<Tensor<2>> {
        self.draw(&[rows, cols], normal(std))
    }

    /// A parameter of `shape` with entries U(-k, k).
    fn uniform<const D: usize>(&mut self, shape: [usize; D], k: f64) -> Param<Tensor<D>> {
        self.draw(
            &shape,
            rand_distr::Uniform::new(-k as f32, k as f32).expect("k > 0"),
        )
    }

    fn draw<const D: usize>(
        &mut self,
        shape: &[usize],
        dist: impl Distribution<f32>,
    ) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::from_data(
            TensorData::new(self.sample(shape, dist), shape.to_vec()),
            self.device,
        ))
    }

    fn sample(&mut self, shape: &[usize], dist: impl Distribution<f32>) -> Vec<f32> {
        let n = shape.iter().product();
        (0..n).map(|_| dist.sample(&mut self.rng)).collect()
    }

    /// A token embedding `[rows, cols]` with entries from `dist`, in parts that fit the
    /// device's binding limit (`binding` bytes); the same values however it is split.
    fn token_embedding(
        &mut self,
        [rows, cols]: [usize; 2],
        dist: impl Distribution<f32>,
        binding: usize,
    ) -> TokenEmbedding {
        let data = self.sample(&[rows, cols], dist);
        TokenEmbedding::new(data, [rows, cols], binding / (4 * cols), self.device)
    }

    /// A linear layer with GPT-2's initialisation: weights N(0, std), biases zero.
    fn linear(&mut self, d_in: usize, d_out: usize, std: f64, bias: bool) -> Linear {
        Linear {
            weight: self.normal(d_in, d_out, std),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], self.device))),
        }
    }

    fn embedding(&mut self, n: usize, d: usize) -> Embedding {
        Embedding {
            weight: self.normal(n, d, INIT_STD),
        }
    }
}

impl Norm {
    fn new(c: &ModelConfig, device: &Device) -> Self {
        match c.norm {
            config::Norm::LayerNorm => Self::Layer(
                LayerNormConfig::new(c.n_embd)
                    .with_epsilon(c.layer_norm_eps)
                    .with_bias(c.bias)
                    .init(device),
            ),
            config::Norm::RmsNorm => {
                Self::Rms(RmsNormConfig::new(c.n_embd).with_epsilon(1e-6).init(device))
            }
        }
    }

    fn forward(&self, x: Tensor<3>, run: Run) -> Tensor<3> {
        match self {
            Self::Layer(n) => norm::layer_norm(n, x, run.layer_norm_eps, run.norm),
            Self::Rms(n) => norm::rms_norm(n, x, run.norm),
        }
    }
}

impl Gpt {
    /// A freshly initialised model (GPT-2 init: N(0, 0.02), residual projections scaled by
    /// 1/sqrt(2·n_layer)), the same for the same `seed` on any backend. The config must have
    /// passed [`ModelConfig::validate`].
    pub fn new(c: &ModelConfig, seed: u64, device: &Device) -> Self {
        let resid_std = INIT_STD / (2.0 * c.n_layer as f64).sqrt();
        let dropout = || DropoutConfig::new(c.dropout).init();
        let mut init = Init {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        };
        let transformer = c.arch != Arch::Lstm;
        let binding = crate::memory::binding_limit(device).unwrap_or(usize::MAX);
        let shape = [c.vocab_size, c.n_embd];
        let wte = match c.arch {
            Arch::Gpt | Arch::Bert => init.token_embedding(shape, normal(INIT_STD), binding),
            Arch::Lstm => init.token_embedding(shape, lstm::embedding_init(), binding),
        };
        let wpe = (transformer && c.position == Position::Learned)
            .then(|| init.embedding(c.block_size, c.n_embd));
        let mut block = || Block {
            ln_1: Norm::new(c, device),
            attn: Attention {
                c_attn: init.linear(c.n_embd, 3 * c.n_embd, INIT_STD, c.bias),
                c_proj: init.linear(c.n_embd, c.n_embd, resid_std, c.bias),
                attn_drop: dropout(),
                resid_drop: dropout(),
                n_head: c.n_head,
                rope: c.position == Position::Rope,
            },
            ln_2: Norm::new(c, device),
            mlp: Mlp {
                c_fc: init.linear(c.n_embd, c.mlp_hidden(), INIT_STD, c.bias),
                c_gate: (c.mlp == config::Mlp::Swiglu)
                    .then(|| init.linear(c.n_embd, c.mlp_hidden(), INIT_STD, c.bias)),
                c_proj: init.linear(c.mlp_hidden(), c.n_embd, resid_std, c.bias),
                drop: dropout(),
                erf: c.arch == Arch::Bert,
            },
            norm_first: c.norm_first,
        };
        let (h, lstm) = match c.arch {
            Arch::Gpt | Arch::Bert => ((0..c.n_layer).map(|_| block()).collect(), Vec::new()),
            Arch::Lstm => (Vec::new(), lstm::layers(c, &mut init)),
        };
        let lm_head =
            (!c.tie_weights).then(|| init.linear(c.n_embd, c.vocab_size, INIT_STD, false));
        // Zero: a new head starts from equal odds and learns from the first step.
        let score = match &c.task {
            Task::Classify { classes, .. } => Some(Linear {
                weight: Param::from_tensor(Tensor::zeros([c.n_embd, classes.len()], device)),
                bias: Some(Param::from_tensor(Tensor::zeros([classes.len()], device))),
            }),
            _ => None,
        };
        let bert_heads = c.arch == Arch::Bert && c.bert_heads;
        let classifier = matches!(c.task, Task::Classify { .. });
        // A new pooler is the identity, so a new classifier's head first reads tanh of the
        // [CLS] state itself. BERT's own comes pretrained (by next-sentence prediction); a random
        // one, N(0, 0.02), shrinks the features and the encoder's gradient about tenfold, and
        // left one authorship classifier in three at chance when trained from scratch.
        let pooler = (bert_heads && classifier).then(|| Linear {
            weight: Param::from_tensor(Tensor::eye(c.n_embd, device)),
            bias: c
                .bias
                .then(|| Param::from_tensor(Tensor::zeros([c.n_embd], device))),
        });
        let mlm = (bert_heads && !classifier).then(|| MlmHead {
            dense: init.linear(c.n_embd, c.n_embd, INIT_STD, c.bias),
            ln: Norm::new(c, device),
            bias: Param::from_tensor(Tensor::zeros([c.vocab_size], device)),
        });
        let model = Self {
            wte,
            wpe,
            drop: dropout(),
            ln_emb: (transformer && !c.norm_first).then(|| Norm::new(c, device)),
            h,
            lstm,
            ln_f: (transformer && c.norm_first).then(|| Norm::new(c, device)),
            lm_head,
            score,
            mlm,
            pooler,
            config: c.clone(),
            binding,
        };
        match &c.lora {
            Some(lora) => crate::lora::attach(model, lora, seed),
            None => model,
        }
    }

    /// The same weights with LoRA adapters merged in (`W + scale·A·B`), as a model without
    /// adapters.
    pub fn merge_lora(self) -> Self {
        let mut model = self.materialize();
        model.config.lora = None;
        model
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The longest context the model can read: `block_size` for a Transformer, none for an
    /// LSTM, whose state carries on past the length it was trained on.
    pub fn max_context(&self) -> Option<usize> {
        (self.config.arch != Arch::Lstm).then_some(self.config.block_size)
    }

    /// The token embedding matrix `[vocab_size, n_embd]` (also the LM head when tied), in the
    /// consecutive row parts the device holds it in (one part where it fits a binding).
    pub fn token_embeddings(&self) -> Vec<Tensor<2>> {
        self.wte.parts()
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]`; a classifier's are
    /// `[batch, time, classes]`, position `t` classifying the text up to `t`, or `[batch, 1,
    /// classes]` for a `[CLS]` classifier, which reads the first position only.
    ///
    /// With a cache, `idx` continues the cached sequence: its keys and values are appended and
    /// positions start at `cache.len()`. A context longer than `block_size` (cache included) is
    /// an error: the model has no position past it. An encoder reads whole texts and keeps no
    /// cache; its position `t` sees every token of the row (see [`Gpt::forward_padded`]).
    pub fn forward(&self, idx: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Result<Tensor<3>> {
        Ok(self.logits(self.run(idx, cache, None)?))
    }

    /// The logits of the last position only, `[batch, 1, vocab]` (or classes): what generation
    /// and prediction read, without the head's cost (and buffer) for every other position.
    pub fn forward_last(
        &self,
        idx: Tensor<2, Int>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        let last = |x: Tensor<3>| {
            let [b, t, c] = x.dims();
            x.slice([0..b, t - 1..t, 0..c])
        };
        Ok(match self.run(idx, cache, None)? {
            Top::Classes(logits) => last(logits),
            Top::Hidden(x, run) => self.head(last(x), run),
        })
    }

    /// [`Gpt::forward`] over rows that may end in padding, `pad [B, T]` marking it: an
    /// encoder's tokens do not attend to the padding, and its mean pooling leaves it out. (A
    /// GPT's causal attention never sees the padding after a text, so for it this is `forward`.)
    pub fn forward_padded(
        &self,
        idx: Tensor<2, Int>,
        pad: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>> {
        Ok(self.logits(self.run(idx, None, pad)?))
    }

    /// [`Gpt::loss`] of [`Gpt::forward_padded`], and with `guesses` each position's most likely
    /// token `[B·T]`, without a buffer for all the logits at once (see [`Gpt::token_losses`]).
    pub fn loss_on(
        &self,
        idx: Tensor<2, Int>,
        pad: Option<Tensor<2, Bool>>,
        targets: Tensor<2, Int>,
        guesses: bool,
    ) -> Result<(Tensor<1>, Option<Tensor<1, Int>>)> {
        let counted = targets.clone().greater_elem(IGNORE).float().sum();
        let (losses, guessed) = self.token_losses(idx, pad, targets, guesses)?;
        Ok((losses.sum() / counted.clamp_min(1.0), guessed))
    }

    /// The cross-entropy of every position `[B·T']` of [`Gpt::forward_padded`] against
    /// `targets [B, T]` (zero where [`IGNORE`]), and with `guesses` each position's most likely
    /// token. A language model's logits are formed a chunk of rows at a time, each chunk within
    /// the device's binding limit (GPT-2's 50,257 logits fill WebGPU's guaranteed 128 MiB at
    /// 667 positions), and only the losses leave the chunk.
    pub fn token_losses(
        &self,
        idx: Tensor<2, Int>,
        pad: Option<Tensor<2, Bool>>,
        targets: Tensor<2, Int>,
        guesses: bool,
    ) -> Result<(Tensor<1>, Option<Tensor<1, Int>>)> {
        let (x, run) = match self.run(idx, None, pad)? {
            Top::Hidden(x, run) => (x, run),
            Top::Classes(logits) => {
                let [b, t, v] = logits.dims();
                let rows = logits.reshape([b * t, v]);
                let targets = targets.slice([0..b, 0..t]).reshape([b * t]);
                let guessed = guesses.then(|| argmax(rows.clone()));
                return Ok((self.row_losses(rows, targets), guessed));
            }
        };
        let [b, t, c] = x.dims();
        let (rows, v) = (b * t, self.config.vocab_size);
        let chunk = (self.binding / (4 * v)).clamp(1, rows);
        let x = x.reshape([rows, c]);
        let targets = targets.reshape([rows]);
        let (mut losses, mut guessed) = (Vec::new(), Vec::new());
        for start in (0..rows).step_by(chunk) {
            let end = (start + chunk).min(rows);
            let x = x.clone().slice([start..end, 0..c]).unsqueeze_dim(0);
            let logits = self.head(x, run).reshape([end - start, v]);
            if guesses {
                guessed.push(argmax(logits.clone()));
            }
            losses.push(self.row_losses(logits, targets.clone().slice(start..end)));
        }
        Ok((joined(losses, 0), guesses.then(|| joined(guessed, 0))))
    }

    /// Runs the model up to its head: a classifier's logits, or a language model's final
    /// hidden states, which [`Gpt::head`] turns into logits.
    fn run(
        &self,
        idx: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        pad: Option<Tensor<2, Bool>>,
    ) -> Result<Top> {
        let t = idx.dims()[1];
        let encoder = self.config.arch == Arch::Bert;
        if encoder && cache.is_some() {
            return Err(Error::Config(
                "an encoder reads a whole text at once and keeps no cache: it fills in [MASK] \
                 tokens rather than writing text on"
                    .into(),
            ));
        }
        let mask = match (encoder, &pad) {
            (false, _) => Mask::Causal,
            (true, None) => Mask::Bidirectional,
            (true, Some(pad)) => Mask::Padded(Box::new(pad.clone())),
        };
        let start = cache.as_ref().map_or(0, |c| c.len);
        let (mut x, rope, run) = self.embed(idx, start)?;
        if self.config.arch == Arch::Lstm {
            x = lstm::forward(
                &self.lstm,
                x,
                cache.as_deref_mut().map(|c| &mut c.states),
                &self.drop,
            );
        }
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize(self.h.len(), None);
        }
        for (i, block) in self.h.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, layer_cache, rope.as_ref(), &mask, run);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        if let Some(ln_f) = &self.ln_f {
            x = ln_f.forward(x, run);
        }
        if let (Some(score), Task::Classify { pooling, .. }) = (&self.score, &self.config.task) {
            let x = match (pooling, encoder) {
                // The head reads [CLS] alone, first in every row, so only its state goes on.
                (Pooling::Cls, _) => {
                    let [b, _, c] = x.dims();
                    x.slice([0..b, 0..1, 0..c])
                }
                // Every position's own state: the label sits on the text's last token, which
                // is at a different position in each row.
                (Pooling::Last, _) => x,
                (Pooling::Mean, false) => causal_mean(x),
                (Pooling::Mean, true) => padded_mean(x, pad),
            };
            let x = match &self.pooler {
                Some(pooler) => tanh(linear(pooler, x, run)),
                None => x,
            };
            return Ok(Top::Classes(linear(score, x, run)));
        }
        Ok(Top::Hidden(x, run))
    }

    /// The logits where a forward pass ends: a classifier's own, or the head's.
    fn logits(&self, top: Top) -> Tensor<3> {
        match top {
            Top::Classes(logits) => logits,
            Top::Hidden(x, run) => self.head(x, run),
        }
    }

    /// A language model's logits for final hidden states `x [B, T, C]`: BERT's prediction
    /// transform, then the head (the token embedding's parts side by side when tied).
    fn head(&self, mut x: Tensor<3>, run: Run) -> Tensor<3> {
        if let Some(mlm) = &self.mlm {
            x = mlm.ln.forward(gelu(linear(&mlm.dense, x, run)), run);
        }
        let logits = match &self.lm_head {
            Some(head) => linear(head, x, run),
            None => joined(
                self.wte
                    .parts()
                    .into_iter()
                    .map(|w| matmul(x.clone(), w.transpose(), run))
                    .collect(),
                2,
            ),
        };
        match &self.mlm {
            Some(mlm) => logits + mlm.bias.val().unsqueeze_dims(&[0, 1]),
            None => logits,
        }
    }

    /// The attention weights of every layer for the tokens `idx [B, T]`: one `[B, n_head, T, T]`
    /// tensor per layer, row `i` of a head being how query `i` spreads its attention over keys
    /// `0..=i` (every key, for an encoder) — the Inspect view. Computed by plain ops whatever
    /// the config: the fused kernel never materialises them.
    pub fn attention_maps(&self, idx: Tensor<2, Int>) -> Result<Vec<Tensor<4>>> {
        if self.config.arch == Arch::Lstm {
            return Err(Error::Config(
                "an LSTM has no attention to show: it reads the text one token at a time and \
                 carries what it keeps in its hidden state"
                    .into(),
            ));
        }
        let (mut x, rope, run) = self.embed(idx, 0)?;
        let mask = match self.config.arch {
            Arch::Bert => Mask::Bidirectional,
            _ => Mask::Causal,
        };
        let mut maps = Vec::with_capacity(self.h.len());
        for block in &self.h {
            let input = match block.norm_first {
                true => block.ln_1.forward(x.clone(), run),
                false => x.clone(),
            };
            let (q, k, _) = block.attn.qkv(input, rope.as_ref(), run);
            maps.push(attention::weights(q, k, mask.clone()));
            x = block.forward(x, None, rope.as_ref(), &mask, run);
        }
        Ok(maps)
    }

    /// The input to the first block for `idx [B, T]` at positions `start..start + T` (token and
    /// learned position embeddings, dropout), the rotary tables if the model uses them, and how
    /// the blocks compute. A GPT's context past `block_size` is an error: it has no position
    /// past it (an LSTM has no such limit).
    fn embed(
        &self,
        idx: Tensor<2, Int>,
        start: usize,
    ) -> Result<(Tensor<3>, Option<RopeTables>, Run)> {
        let [_, t] = idx.dims();
        let device = idx.device();
        let limit = self.max_context().unwrap_or(usize::MAX);
        if start.saturating_add(t) > limit || t == 0 {
            return Err(Error::Data(format!(
                "the model reads 1 to {} tokens at a time (its block_size), but was given {}{}",
                self.config.block_size,
                t,
                match start {
                    0 => String::new(),
                    _ => format!(" after {start} cached"),
                }
            )));
        }
        let mut x = self.wte.forward(idx);
        if let Some(wpe) = &self.wpe {
            let pos = Tensor::<1, Int>::arange(start as i64..(start + t) as i64, &device);
            x = x + wpe.forward(pos.unsqueeze_dim(0));
        }
        let rope = (self.config.arch != Arch::Lstm && self.config.position == Position::Rope)
            .then(|| rope_tables(start, t, self.config.head_dim(), &device));
        let run = Run {
            norm: self.config.kernels.then(norm::chosen),
            half: self.config.mixed_precision && kernels::supports_f16(&device),
            layer_norm_eps: self.config.layer_norm_eps,
            matmul: match self.config.kernels {
                true => kernels::matmul::chosen(),
                false => Variant::Burn,
            },
            attention: self.config.kernels.then(attention::chosen_tile),
            fused_gelu: self.config.kernels,
        };
        if let Some(ln_emb) = &self.ln_emb {
            x = ln_emb.forward(x, run);
        }
        Ok((self.drop.forward(x), rope, run))
    }

    /// Mean cross-entropy of `logits [B, T', V]` against `targets [B, T]` over the targets that
    /// are not [`IGNORE`] (their rows get exactly zero gradient). A `[CLS]` classifier's logits
    /// cover the first position only (`T' = 1`): the targets past them are all `IGNORE`.
    pub fn loss(&self, logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
        let [b, t, v] = logits.dims();
        let targets = targets.slice([0..b, 0..t]).reshape([b * t]);
        let counted = targets.clone().greater_elem(IGNORE).float().sum();
        self.row_losses(logits.reshape([b * t, v]), targets).sum() / counted.clamp_min(1.0)
    }

    /// The cross-entropy of each of `rows [N, V]` against `targets [N]`; zero where [`IGNORE`].
    fn row_losses(&self, rows: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let counted = targets.clone().greater_elem(IGNORE).float();
        cross_entropy(rows, targets.clamp_min(0), self.config.kernels) * counted
    }

    /// Number of scalars (a tied head counts once; LoRA adapters and a classifier's head included).
    pub fn num_params_of(c: &ModelConfig) -> usize {
        if c.arch == Arch::Lstm {
            return lstm::num_params_of(c);
        }
        let bias = |n: usize| if c.bias { n } else { 0 };
        let norm = match c.norm {
            config::Norm::LayerNorm => c.n_embd + bias(c.n_embd),
            config::Norm::RmsNorm => c.n_embd,
        };
        let linear = |i: usize, o: usize| i * o + bias(o);
        let hidden = c.mlp_hidden();
        let gate = if c.mlp == config::Mlp::Swiglu {
            linear(c.n_embd, hidden)
        } else {
            0
        };
        let block = 2 * norm
            + linear(c.n_embd, 3 * c.n_embd)
            + linear(c.n_embd, c.n_embd)
            + linear(c.n_embd, hidden)
            + gate
            + linear(hidden, c.n_embd);
        let wpe = if c.position == Position::Learned {
            c.block_size * c.n_embd
        } else {
            0
        };
        let head = if c.tie_weights {
            0
        } else {
            c.n_embd * c.vocab_size
        };
        let score = match &c.task {
            Task::Classify { classes, .. } => (c.n_embd + 1) * classes.len(),
            _ => 0,
        };
        // BERT's pooler (a classifier) or prediction transform and output bias (masked LM).
        let bert_heads = match (&c.task, c.arch == Arch::Bert && c.bert_heads) {
            (_, false) => 0,
            (Task::Classify { .. }, true) => linear(c.n_embd, c.n_embd),
            (_, true) => linear(c.n_embd, c.n_embd) + norm + c.vocab_size,
        };
        c.vocab_size * c.n_embd
            + wpe
            + c.n_layer * block
            + norm
            + head
            + score
            + bert_heads
            + crate::lora::num_params_of(c)
    }
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<&mut LayerCache>,
        rope: Option<&RopeTables>,
        mask: &Mask,
        run: Run,
    ) -> Tensor<3> {
        if self.norm_first {
            let x = x.clone()
                + self
                    .attn
                    .forward(self.ln_1.forward(x, run), cache, rope, mask, run);
            x.clone() + self.mlp.forward(self.ln_2.forward(x, run), run)
        } else {
            let x = x.clone() + self.attn.forward(x, cache, rope, mask, run);
            let x = self.ln_1.forward(x, run);
            self.ln_2.forward(x.clone() + self.mlp.forward(x, run), run)
        }
    }
}

impl Attention {
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<&mut LayerCache>,
        rope: Option<&RopeTables>,
        mask: &Mask,
        run: Run,
    ) -> Tensor<3> {
        let [b, t, c] = x.dims();
        let (q, mut k, mut v) = self.qkv(x, rope, run);
        if let Some(slot) = cache {
            if let Some((k_past, v_past)) = slot.take() {
                k = Tensor::cat(vec![k_past, k], 2);
                v = Tensor::cat(vec![v_past, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let dropout = self.attn_drop.prob > 0.0
            && self.attn_drop.training.is_enabled()
            && q.device().is_autodiff();
        let y = if dropout {
            // Dropout on the attention weights needs them materialised: the unfused path.
            self.attn_drop
                .forward(attention::weights(q, k, mask.clone()))
                .matmul(v)
        } else if run.half {
            attention::half(q, k, v, mask.clone())
        } else {
            attention::attention(q, k, v, mask.clone(), run.attention)
        };
        let y = y.swap_dims(1, 2).reshape([b, t, c]);
        self.resid_drop.forward(linear(&self.c_proj, y, run))
    }

    /// Queries, keys and values `[B, H, T, D]` of `x [B, T, C]`, rotated if the model is rotary.
    fn qkv(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeTables>,
        run: Run,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, t, c] = x.dims();
        let (h, d) = (self.n_head, c / self.n_head);
        // [B, T, 3C] -> three [B, H, T, D]
        let heads = |y: Tensor<3>| y.reshape([b, t, h, d]).swap_dims(1, 2);
        let mut qkv = linear(&self.c_attn, x, run)
            .chunk(3, 2)
            .into_iter()
            .map(heads);
        let (q, k, v) = (
            qkv.next().unwrap(),
            qkv.next().unwrap(),
            qkv.next().unwrap(),
        );
        match rope {
            Some((cos, sin)) => (apply_rope(q, cos, sin), apply_rope(k, cos, sin), v),
            None => (q, k, v),
        }
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>, run: Run) -> Tensor<3> {
        let hidden = match &self.c_gate {
            None if self.erf => gelu(linear(&self.c_fc, x, run)),
            None => gelu::gelu_tanh(linear(&self.c_fc, x, run), run.fused_gelu),
            Some(gate) => silu(linear(gate, x.clone(), run)) * linear(&self.c_fc, x, run),
        };
        self.drop.forward(linear(&self.c_proj, hidden, run))
    }
}

/// `parts` concatenated along `dim`; a single part as it is, since a concatenation would copy it
/// (the logits, every step, for a model held in one part).
fn joined<const D: usize, K: burn::tensor::kind::Basic>(
    mut parts: Vec<Tensor<D, K>>,
    dim: usize,
) -> Tensor<D, K> {
    match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Tensor::cat(parts, dim),
    }
}

/// The index of each row's largest value, `[N]` for `rows [N, V]`.
fn argmax(rows: Tensor<2>) -> Tensor<1, Int> {
    let n = rows.dims()[0];
    rows.argmax(1).reshape([n])
}

/// How a forward pass computes: Kiln's kernels or plain Burn ops, and f16 matmuls (mixed
/// precision on an adapter with `shader-f16`) or f32.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// The fused norms' row sum, the adapter's chosen design, with the kernels on
    /// ([`norm::chosen`]); `None` runs the plain ops.
    norm: Option<norm::Sum>,
    half: bool,
    layer_norm_eps: f64,
    /// The linear layers' matmul: the adapter's chosen variant with the kernels on
    /// ([`kernels::matmul::chosen`]), Burn's otherwise.
    matmul: Variant,
    /// The fused attention's key tile, the adapter's chosen one, with the kernels on
    /// ([`attention::chosen_tile`]); `None` runs the plain ops.
    attention: Option<u32>,
    /// GELU in one pass ([`gelu::gelu_tanh`]), with the kernels on.
    fused_gelu: bool,
}

/// `x [B, T, K] · w [K, N]`: in f16 with mixed precision (f32 in and out, so the weights stay
/// f32), else by the run's matmul variant.
fn matmul(x: Tensor<3>, w: Tensor<2>, run: Run) -> Tensor<3> {
    let [b, t, k] = x.dims();
    let n = w.dims()[1];
    if run.half {
        x.cast(DType::F16)
            .matmul(w.cast(DType::F16).unsqueeze_dim(0))
            .cast(DType::F32)
    } else if run.matmul != Variant::Burn {
        kernels::matmul::matmul(x.reshape([b * t, k]), w, run.matmul).reshape([b, t, n])
    } else {
        x.matmul(w.unsqueeze_dim(0))
    }
}

/// A linear layer: Burn's own, or its weights through [`matmul`] where that differs.
fn linear(layer: &Linear, x: Tensor<3>, run: Run) -> Tensor<3> {
    if !(run.half || run.matmul != Variant::Burn) {
        return layer.forward(x);
    }
    let y = matmul(x, layer.weight.val(), run);
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze_dim::<2>(0).unsqueeze_dim(0),
        None => y,
    }
}

/// Position `t` of the result is the mean of `x[.., 0..=t, ..]`: mean pooling that, like the
/// last token, sees only the text (never the padding after it).
fn causal_mean(x: Tensor<3>) -> Tensor<3> {
    let t = x.dims()[1];
    let counts = Tensor::<1, Int>::arange(1..t as i64 + 1, &x.device()).float();
    x.cumsum(1) / counts.reshape([1, t, 1])
}

/// Every position of the result is the mean of `x`'s over the row's tokens, its padding (`pad`,
/// `[B, T]`) left out: an encoder's mean pooling.
fn padded_mean(x: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
    let [b, t, c] = x.dims();
    let keep = match pad {
        Some(pad) => pad.bool_not().float(),
        None => Tensor::ones([b, t], &x.device()),
    };
    let sum = (x * keep.clone().unsqueeze_dim(2)).sum_dim(1);
    (sum / keep.sum_dim(1).unsqueeze_dim(2)).expand([b, t, c])
}

/// Rotary tables for positions `start..start + t`: `cos` and `sin` of shape `[1, 1, t, d/2]`.
fn rope_tables(start: usize, t: usize, d: usize, device: &Device) -> RopeTables {
    let half = d / 2;
    let angles: Vec<f32> = (start..start + t)
        .flat_map(|p| {
            (0..half).map(move |i| p as f32 * 10000f32.powf(-((2 * i) as f32) / d as f32))
        })
        .collect();
    let table = |f: fn(f32) -> f32| {
        let data = TensorData::new(
            angles.iter().map(|&a| f(a)).collect::<Vec<f32>>(),
            [1, 1, t, half],
        );
        Tensor::<4>::from_data(data, device)
    };
    (table(f32::cos), table(f32::sin))
}

/// Rotates pairs `(x[i], x[i + d/2])` by the position's angle (the "rotate half" convention).
fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, d] = x.dims();
    let mut halves = x.chunk(2, 3).into_iter();
    let (x1, x2) = (halves.next().unwrap(), halves.next().unwrap());
    let (cos, sin) = (cos.clone(), sin.clone());
    debug_assert_eq!(cos.dims()[3] * 2, d);
    Tensor::cat(
        vec![
            x1.clone() * cos.clone() - x2.clone() * sin.clone(),
            x2 * cos + x1 * sin,
        ],
        3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;

    /// The attention maps against softmax(QKᵀ/√d) written out from the weights: the token and
    /// position embeddings, layer norm, `c_attn`'s query and key columns of each head, and a
    /// causal mask built on the host.
    #[test]
    fn attention_maps_are_the_softmax_of_the_scaled_scores() {
        let device = Device::flex();
        let mut c = config::preset("tiny").unwrap().model;
        c.vocab_size = 17;
        c.n_layer = 2;
        c.bias = true;
        let model = Gpt::new(&c, 3, &device);
        let ids: Vec<i64> = (0..9).map(|i| (i * 5 + 2) % 17).collect();
        let t = ids.len();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, t]), &device);
        let maps = model.attention_maps(idx.clone()).unwrap();
        assert_eq!(maps.len(), 2);

        let (h, d) = (c.n_head, c.head_dim());
        let mask: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t > i / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [t, t]), &device);
        let wpe = model.wpe.as_ref().unwrap().weight.val();
        let wte = Tensor::cat(model.token_embeddings(), 0);
        let mut x = (wte.select(0, idx.reshape([t])) + wpe.slice([0..t, 0..c.n_embd]))
            .unsqueeze_dim::<3>(0);
        let run = Run {
            norm: None,
            half: false,
            layer_norm_eps: c.layer_norm_eps,
            matmul: Variant::Burn,
            attention: None,
            fused_gelu: false,
        };
        for (block, map) in model.h.iter().zip(maps) {
            assert_eq!(map.dims(), [1, h, t, t]);
            let Norm::Layer(ln_1) = &block.ln_1 else {
                unreachable!("tiny uses layer norm")
            };
            let c_attn = &block.attn.c_attn;
            let qkv = ln_1
                .forward(x.clone())
                .matmul(c_attn.weight.val().unsqueeze_dim(0))
                + c_attn.bias.as_ref().unwrap().val().unsqueeze_dims(&[0, 1]);
            let qkv = qkv.reshape([t, 3 * c.n_embd]);
            for head in 0..h {
                let q = qkv.clone().slice([0..t, head * d..(head + 1) * d]);
                let k = qkv
                    .clone()
                    .slice([0..t, c.n_embd + head * d..c.n_embd + (head + 1) * d]);
                let scores = q.matmul(k.transpose()) / (d as f64).sqrt();
                let want = softmax(scores + mask.clone(), 1).into_data();
                let got = map
                    .clone()
                    .slice([0..1, head..head + 1, 0..t, 0..t])
                    .reshape([t, t])
                    .into_data();
                got.assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-6));
                let got = got.try_to_vec::<f32>().unwrap();
                for (i, row) in got.chunks(t).enumerate() {
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
                    assert!(row[i + 1..].iter().all(|&w| w == 0.0), "row {i} sees ahead");
                }
            }
            x = block.forward(x, None, None, &Mask::Causal, run);
        }
    }
}
