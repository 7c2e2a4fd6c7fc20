//! Model, training and sampling configuration, with nanoGPT's names so configs move between the two.
//!
//! Every config is plain serde data and `validate()` turns an impossible value into a sentence a
//! user understands, before any tensor is allocated.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The model family. One config describes all three; fields a family has no use for
/// (`n_head`, `position`, `norm`, `mlp`, `norm_first` for an LSTM) are ignored by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// A decoder-only Transformer: causal self-attention blocks.
    #[default]
    Gpt,
    /// A Transformer encoder (BERT): the same blocks with bidirectional self-attention and the
    /// exact GELU, pretrained by masked-language modelling on text (15% of the tokens hidden,
    /// the loss on those alone) and finetuned to classify from its `[CLS]` token or mean. Its
    /// tokenizer carries `[PAD] [UNK] [CLS] [SEP] [MASK]`.
    Bert,
    /// A multi-layer LSTM language model: embedding, `n_layer` LSTMs of width `n_embd` with
    /// dropout between them, and the head. It has no position limit: `block_size` is only the
    /// length of the training windows (truncated backpropagation through time).
    Lstm,
}

impl std::str::FromStr for Arch {
    type Err = Error;

    /// "gpt", "bert" or "lstm".
    fn from_str(s: &str) -> Result<Self> {
        choice(s, "arch", "gpt, bert or lstm")
    }
}

/// A setting's name (`"lstm"`, any case) as the enum serde names it so, or a sentence that
/// names the choices.
fn choice<T: serde::de::DeserializeOwned>(s: &str, what: &str, choices: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_lowercase()))
        .map_err(|_| Error::Config(format!("unknown {what} \"{s}\"; choose {choices}")))
}

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// A learned embedding per position (GPT-2).
    Learned,
    /// Rotary embeddings applied to queries and keys (no position parameters).
    Rope,
}

/// The normalisation layer used before attention, before the MLP and at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}

/// The feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mlp {
    /// `n_embd -> 4·n_embd -> GELU -> n_embd` (GPT-2).
    Gelu,
    /// `silu(x W1) * (x W3) -> W2`, hidden width 8/3·n_embd rounded up to a multiple of 8 (LLaMA).
    Swiglu,
}

/// What the model is trained to predict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Task {
    /// The next token of plain text.
    #[default]
    Text,
    /// The next token of a completion, given a prompt (instruction finetuning): generation
    /// answers a prompt and stops at [`crate::data::examples::END`].
    Chat,
    /// One of `classes` for a whole text, from a head on the final hidden states.
    Classify {
        classes: Vec<String>,
        #[serde(default)]
        pooling: Pooling,
    },
}

/// How a classifier reduces a text's final hidden states to one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last token's state (it has attended to the whole text).
    #[default]
    Last,
    /// The mean of all the text's states.
    Mean,
    /// The `[CLS]` token's state, first in an encoder's row (BERT's).
    Cls,
}

impl std::str::FromStr for Pooling {
    type Err = Error;

    /// "last", "mean" or "cls".
    fn from_str(s: &str) -> Result<Self> {
        choice(s, "pooling", "last, mean or cls")
    }
}

impl Pooling {
    /// What a classifier of `arch` pools unless told otherwise: the last token for a GPT or an
    /// LSTM (the one that has read the whole text), `[CLS]` for an encoder.
    pub fn default_for(arch: Arch) -> Self {
        match arch {
            Arch::Bert => Self::Cls,
            Arch::Gpt | Arch::Lstm => Self::Last,
        }
    }
}

/// A projection LoRA can adapt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    /// The query part of `attn.c_attn`.
    Q,
    K,
    V,
    /// The attention's output projection, `attn.c_proj`.
    O,
    /// Every MLP projection (`c_fc`, `c_gate`, `mlp.c_proj`).
    Mlp,
}

/// Low-rank adapters: each targeted weight `W` becomes `W + (alpha / rank)·A·B` with `A`
/// `[in, rank]` and `B` `[rank, out]` (zero at first), and only `A` and `B` train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<LoraTarget>,
}

impl LoraConfig {
    /// The factor on `A·B`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Parses "q,v" or "q,k,v,o,mlp".
    pub fn parse_targets(list: &str) -> Result<Vec<LoraTarget>> {
        list.split(',')
            .map(|t| choice(t, "LoRA target", "from q, k, v, o, mlp"))
            .collect()
    }
}

/// The shape of the GPT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model family (GPT when absent, as in checkpoints from before there was a choice).
    #[serde(default)]
    pub arch: Arch,
    /// Number of token ids; taken from the tokenizer.
    pub vocab_size: usize,
    /// Longest context the model sees.
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Dropout probability on attention weights and residual branches (0 disables it).
    pub dropout: f64,
    /// Biases in linear layers and norms (nanoGPT's `bias`).
    pub bias: bool,
    pub position: Position,
    pub norm: Norm,
    /// Pre-norm blocks (`x + f(norm(x))` and a final norm: GPT-2's, the default) or post-norm
    /// (`norm(x + f(x))` after a norm of the embeddings: the original Transformer's and BERT's).
    #[serde(default = "enabled")]
    pub norm_first: bool,
    pub mlp: Mlp,
    /// Share the token embedding with the output head.
    pub tie_weights: bool,
    /// The ε of every LayerNorm (BERT's files say 1e-12; GPT-2's and Kiln's default 1e-5).
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// An encoder's heads as BERT has them: a prediction transform (dense, GELU, LayerNorm) and
    /// an output bias around the masked-LM head, and a tanh pooler before a classifier's head
    /// (transformers' `BertForMaskedLM` and `BertForSequenceClassification`). Off in encoders
    /// saved before Kiln had them, which keep their plain heads; the other families ignore it
    /// (so an encoder preset with `arch = gpt` is its GPT of the same shape).
    #[serde(default)]
    pub bert_heads: bool,
    /// Run Kiln's WGSL kernels on the wgpu backend (fused attention, cross-entropy, norms and
    /// AdamW; in the browser also the matmul); `false` runs plain Burn ops everywhere. Both
    /// compute the same function, to float rounding.
    #[serde(default = "enabled")]
    pub kernels: bool,
    /// Mixed precision where the adapter has `shader-f16`: matmuls and attention in f16 with f32
    /// master weights, f32 norms, softmax and loss, and dynamic loss scaling in training. Ignored
    /// (all f32) on adapters without f16 and on the CPU backend.
    #[serde(default)]
    pub mixed_precision: bool,
    /// Text, chat (instruction-tuned) or a classifier.
    #[serde(default)]
    pub task: Task,
    /// LoRA adapters (finetuning): with them, only the adapters train.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

fn enabled() -> bool {
    true
}

/// LayerNorm's ε unless a config says otherwise (PyTorch's, GPT-2's).
pub const LAYER_NORM_EPS: f64 = 1e-5;

fn default_layer_norm_eps() -> f64 {
    LAYER_NORM_EPS
}

/// How the learning rate falls from its peak after the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Half a cosine from `lr` to `min_lr` (nanoGPT's).
    #[default]
    Cosine,
    /// A straight line from `lr` to `min_lr` (BERT's, with `min_lr` 0).
    Linear,
}

/// The update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam with decoupled weight decay on matrices (nanoGPT's).
    #[default]
    AdamW,
    /// Plain stochastic gradient descent, `p ← p − lr·g` (with the same decoupled decay on
    /// matrices when `weight_decay` is set): the classic lessons' optimizer.
    Sgd,
}

/// The optimisation schedule (nanoGPT's names where it has one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the step follows the gradient of the mean loss over
    /// all their counted targets.
    pub grad_accum: usize,
    /// Peak learning rate, reached after the warmup.
    pub lr: f64,
    /// Learning rate at the end of the decay.
    pub min_lr: f64,
    /// Cosine (default) or linear decay after the warmup.
    #[serde(default)]
    pub decay: Decay,
    /// AdamW (default) or SGD.
    #[serde(default)]
    pub optimizer: Optimizer,
    pub warmup_steps: usize,
    /// Optimizer steps in the run; the decay ends here.
    pub max_steps: usize,
    /// Decoupled (AdamW) weight decay, applied to matrices only.
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Global gradient norm cap; 0 disables clipping.
    pub grad_clip: f64,
    /// Steps between validation passes (0: only at the end).
    pub eval_interval: usize,
    /// Batches averaged in one validation pass.
    pub eval_steps: usize,
    pub seed: u64,
    /// Finetuning: the first this many transformer blocks keep their weights.
    #[serde(default)]
    pub freeze_blocks: usize,
}

/// How tokens are drawn during generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Divides the logits; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0: all).
    pub top_p: f32,
    pub max_tokens: usize,
    pub seed: u64,
    /// Stop as soon as the generated text contains this string (it is not returned).
    pub stop: Option<String>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 200,
            seed: 0,
            stop: None,
        }
    }
}

/// `p` with a 2-layer LSTM of width `n_embd` in place of its GPT: biases on (the gates need
/// them) and an untied head (Keras' and Karpathy's char-rnn's layout; tied, the small LSTM sat
/// at the unigram loss: 3.30 after 300 steps of `tiny-lstm` against 3.03 untied).
fn lstm(mut p: Preset, n_embd: usize) -> Preset {
    p.model = ModelConfig {
        arch: Arch::Lstm,
        n_layer: 2,
        n_head: 1,
        n_embd,
        bias: true,
        tie_weights: false,
        ..p.model
    };
    p
}

/// `p`'s Transformer as a BERT-style encoder: bidirectional attention, post-norm blocks and
/// biases (BERT's layout), and BERT's schedule shape (linear decay to zero); the rest of `p`'s
/// size and schedule.
fn bert(mut p: Preset) -> Preset {
    p.model = ModelConfig {
        arch: Arch::Bert,
        bias: true,
        norm_first: false,
        bert_heads: true,
        ..p.model
    };
    p.train.decay = Decay::Linear;
    p.train.min_lr = 0.0;
    p
}

/// A named model + training configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// Finetuning's default peak learning rate for the whole model (GPT-2 finetuning's usual 3e-5).
pub const FINETUNE_LR: f64 = 3e-5;
/// Finetuning's default peak learning rate for LoRA adapters (as PEFT's examples use).
pub const LORA_LR: f64 = 1e-3;

/// Names accepted by [`preset`].
pub const PRESETS: &[&str] = &[
    "tiny",
    "shakespeare-baby",
    "shakespeare-char",
    "tiny-lstm",
    "shakespeare-lstm",
    "tiny-bert",
    "shakespeare-bert",
    "authorship-bert",
];

/// A preset by name. `vocab_size` is 0 until a tokenizer fills it in.
pub fn preset(name: &str) -> Result<Preset> {
    let gpt = |block_size, n_layer, n_head, n_embd, dropout| ModelConfig {
        arch: Arch::Gpt,
        vocab_size: 0,
        block_size,
        n_layer,
        n_head,
        n_embd,
        dropout,
        bias: false,
        position: Position::Learned,
        norm: Norm::LayerNorm,
        norm_first: true,
        mlp: Mlp::Gelu,
        tie_weights: true,
        layer_norm_eps: LAYER_NORM_EPS,
        bert_heads: false,
        kernels: true,
        mixed_precision: false,
        task: Task::Text,
        lora: None,
    };
    // nanoGPT's config/train_shakespeare_char.py; the CPU ("baby") variant is its README's.
    let shakespeare = |batch_size, max_steps, eval_steps| TrainConfig {
        batch_size,
        grad_accum: 1,
        lr: 1e-3,
        min_lr: 1e-4,
        decay: Decay::Cosine,
        optimizer: Optimizer::AdamW,
        warmup_steps: 100,
        max_steps,
        weight_decay: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        grad_clip: 1.0,
        eval_interval: 250,
        eval_steps,
        seed: 1337,
        freeze_blocks: 0,
    };
    Ok(match name {
        // Small enough for unit tests and browser tests on an emulated GPU.
        "tiny" => Preset {
            model: gpt(32, 2, 2, 32, 0.0),
            train: TrainConfig {
                batch_size: 8,
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 10,
                max_steps: 200,
                eval_interval: 50,
                eval_steps: 10,
                ..shakespeare(8, 200, 10)
            },
        },
        "shakespeare-baby" => Preset {
            model: gpt(64, 4, 4, 128, 0.0),
            train: shakespeare(12, 2000, 20),
        },
        "shakespeare-char" => Preset {
            model: gpt(256, 6, 6, 384, 0.2),
            train: shakespeare(64, 5000, 200),
        },
        // The GPT presets' schedules with an LSTM; the Shakespeare one has shakespeare-baby's
        // parameter count to within 1% at 65 characters, so the two compare at equal size and
        // token budget.
        "tiny-lstm" => lstm(preset("tiny")?, 32),
        "shakespeare-lstm" => lstm(preset("shakespeare-baby")?, 220),
        // The GPT presets' sizes as encoders, so the three families compare at equal size.
        "tiny-bert" => bert(preset("tiny")?),
        "shakespeare-bert" => bert(preset("shakespeare-baby")?),
        // The authorship demo's encoder: tiny-bert with room for a whole line and a larger
        // batch; at tiny-bert's 32 × 8 a classifier of lines stayed at chance for 200 steps.
        "authorship-bert" => {
            let mut p = preset("tiny-bert")?;
            p.model.block_size = 64;
            p.train.batch_size = 32;
            p.train.max_steps = 300;
            p
        }
        other => {
            return Err(Error::Config(format!(
                "unknown preset \"{other}\"; choose one of: {}",
                PRESETS.join(", ")
            )));
        }
    })
}

impl ModelConfig {
    /// Rejects configurations that cannot build a model.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.vocab_size == 0 {
            return fail("vocab_size must be at least 1 (it comes from the tokenizer)".into());
        }
        if self.block_size == 0 {
            return fail(
                "block_size must be at least 1: the model needs a context of one token or more"
                    .into(),
            );
        }
        if self.n_layer == 0 {
            return fail("n_layer must be at least 1".into());
        }
        // Far beyond what a browser or this CLI can train, and small enough that sizes
        // computed from them cannot overflow (a config file is user input).
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("block_size", self.block_size, 1 << 20),
            ("n_layer", self.n_layer, 1 << 10),
            ("n_head", self.n_head, 1 << 12),
            ("n_embd", self.n_embd, 1 << 16),
        ] {
            if value > max {
                return fail(format!("{name} is {value}; Kiln allows at most {max}"));
            }
        }
        if self.arch == Arch::Lstm && self.lora.is_some() {
            return fail(
                "LoRA adapts the attention and MLP projections, and an LSTM has neither; \
                 finetune the whole LSTM instead"
                    .into(),
            );
        }
        if let Some(l) = &self.lora
            && l.rank > self.n_embd
        {
            return fail(format!(
                "the LoRA rank ({}) must not exceed n_embd ({})",
                l.rank, self.n_embd
            ));
        }
        if let Task::Classify { classes, .. } = &self.task
            && classes.len() > 1 << 16
        {
            return fail(format!(
                "a classifier of {} classes is too many",
                classes.len()
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return fail(format!(
                "layer_norm_eps must be in (0, 1), got {}",
                self.layer_norm_eps
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        match self.arch {
            Arch::Gpt | Arch::Bert => self.validate_heads()?,
            Arch::Lstm if self.n_embd == 0 => {
                return fail("n_embd (the LSTM's width) must be at least 1".into());
            }
            Arch::Lstm => {}
        }
        if let Task::Classify { classes, .. } = &self.task
            && classes.len() < 2
        {
            return fail(format!(
                "a classifier needs at least two classes, but the data has {}",
                classes.len()
            ));
        }
        if let Task::Classify { pooling, .. } = self.task {
            match (self.arch, pooling) {
                (Arch::Bert, Pooling::Last) => {
                    return fail(
                        "an encoder's tokens all see the whole text, so it has no \"last\" \
                         token to pool; choose cls (BERT's) or mean"
                            .into(),
                    );
                }
                (Arch::Gpt | Arch::Lstm, Pooling::Cls) => {
                    return fail(
                        "[CLS] pooling is an encoder's (arch = bert); a GPT or an LSTM pools \
                         its last token or the mean"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        if self.arch == Arch::Bert && self.block_size < 3 {
            return fail(format!(
                "an encoder's block_size must be at least 3 ([CLS], a token and [SEP]), got {}",
                self.block_size
            ));
        }
        if self.arch == Arch::Bert && self.task == Task::Chat {
            return fail(
                "an encoder cannot learn to answer prompts: it fills in blanks and classifies; \
                 finetune a GPT on instructions instead"
                    .into(),
            );
        }
        if let Some(l) = &self.lora {
            if l.rank == 0 {
                return fail("the LoRA rank must be at least 1".into());
            }
            if !(l.alpha > 0.0 && l.alpha.is_finite()) {
                return fail(format!("the LoRA alpha must be positive, got {}", l.alpha));
            }
            if l.targets.is_empty() {
                return fail("LoRA needs at least one target (q, k, v, o, mlp)".into());
            }
        }
        Ok(())
    }

    /// The attention heads' share of [`Self::validate`].
    fn validate_heads(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.n_head == 0 {
            return fail("n_head must be at least 1".into());
        }
        if self.n_embd == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return fail(format!(
                "n_embd ({}) must be a positive multiple of n_head ({}) so every head gets the same width",
                self.n_embd, self.n_head
            ));
        }
        if self.position == Position::Rope && !self.head_dim().is_multiple_of(2) {
            return fail(format!(
                "rotary positions need an even head width, but n_embd / n_head = {}",
                self.head_dim()
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Hidden width of the MLP.
    pub fn mlp_hidden(&self) -> usize {
        match self.mlp {
            Mlp::Gelu => 4 * self.n_embd,
            Mlp::Swiglu => (8 * self.n_embd / 3).div_ceil(8) * 8,
        }
    }
}

impl TrainConfig {
    /// This schedule with finetuning's defaults in the fields not named in `chosen` (the ones
    /// the user set): a small peak learning rate ([`FINETUNE_LR`], or [`LORA_LR`] for adapters,
    /// which start at zero), a decay to a tenth of it, and a short warmup (5% of the steps, 1 to
    /// 100). Pretraining rates (1e-3 to 3e-3 for the presets) would wreck a pretrained model's
    /// weights in a few steps.
    pub fn with_finetuning_defaults(mut self, lora: bool, chosen: &[&str]) -> Self {
        let free = |key: &str| !chosen.contains(&key);
        if free("lr") {
            self.lr = if lora { LORA_LR } else { FINETUNE_LR };
        }
        if free("min_lr") {
            self.min_lr = self.lr / 10.0;
        }
        if free("warmup_steps") {
            self.warmup_steps = (self.max_steps / 20).clamp(1, 100);
        }
        self
    }

    /// Rejects schedules that cannot run.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.batch_size == 0 {
            return fail("batch_size must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return fail("grad_accum must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return fail(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return fail(format!(
                "min_lr ({}) must be between 0 and lr ({})",
                self.min_lr, self.lr
            ));
        }
        if self.max_steps == 0 {
            return fail("max_steps must be at least 1".into());
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return fail(format!("{name} must be in [0, 1), got {beta}"));
            }
        }
        if !(self.weight_decay >= 0.0 && self.grad_clip >= 0.0) {
            return fail("weight_decay and grad_clip must not be negative".into());
        }
        if self.eval_steps == 0 {
            return fail("eval_steps must be at least 1".into());
        }
        Ok(())
    }
}

impl SampleConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Config(format!(
                "temperature must be 0 (greedy) or positive, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Config(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

impl Preset {
    /// Checks the model, the schedule, and what depends on both.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()?;
        if self.train.freeze_blocks > self.model.n_layer {
            return Err(Error::Config(format!(
                "freeze_blocks is {} but the model has only {} blocks",
                self.train.freeze_blocks, self.model.n_layer
            )));
        }
        Ok(())
    }

    /// Applies a `key=value` override (`n_layer=2`, `lr=3e-4`, `position=rope`) to whichever of
    /// the model or training config has that key. Only the value's type is checked here; the
    /// whole preset is validated when a run is built from it.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Error::Config(format!("\"{assignment}\" is not of the form key=value"))
        })?;
        let (key, value) = (key.trim(), value.trim());
        // A value that is not JSON (`rope`, `layernorm`) is taken as a string.
        let parsed: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.into()));
        if set_field(&mut self.model, key, &parsed)? || set_field(&mut self.train, key, &parsed)? {
            Ok(())
        } else {
            Err(Error::Config(format!("unknown setting \"{key}\"")))
        }
    }
}

/// Sets `key` on a serde struct through its JSON form; `Ok(false)` if the struct has no such key.
fn set_field<T: Serialize + serde::de::DeserializeOwned>(
    target: &mut T,
    key: &str,
    value: &serde_json::Value,
) -> Result<bool> {
    let mut json = serde_json::to_value(&*target).map_err(|e| Error::Config(e.to_string()))?;
    let Some(slot) = json.get_mut(key) else {
        return Ok(false);
    };
    *slot = value.clone();
    *target = serde_json::from_value(json)
        .map_err(|e| Error::Config(format!("invalid value {value} for {key}: {e}")))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Preset {
        let mut p = preset("tiny").unwrap();
        p.model.vocab_size = 65;
        p
    }

    #[test]
    fn presets_validate() {
        for name in PRESETS {
            let mut p = preset(name).unwrap();
            p.model.vocab_size = 65;
            p.model.validate().unwrap();
            p.train.validate().unwrap();
        }
        assert!(preset("huge").is_err());
    }

    #[test]
    fn head_width_must_divide() {
        let mut p = tiny();
        p.model.n_embd = 30;
        p.model.n_head = 4;
        let msg = p.model.validate().unwrap_err().to_string();
        assert!(msg.contains("multiple of n_head"), "{msg}");
    }

    #[test]
    fn zero_block_size_rejected() {
        let mut p = tiny();
        p.model.block_size = 0;
        assert!(matches!(p.model.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn finetuning_defaults_are_small_and_warm_up_briefly() {
        let base = tiny().train;
        let full = base.clone().with_finetuning_defaults(false, &[]);
        assert_eq!((full.lr, full.min_lr, full.warmup_steps), (3e-5, 3e-6, 10));
        full.validate().unwrap();
        let lora = base.clone().with_finetuning_defaults(true, &[]);
        assert_eq!((lora.lr, lora.warmup_steps), (1e-3, 10));
        // What the user set stays; the rest follows it.
        let chosen = TrainConfig {
            lr: 1e-4,
            max_steps: 5,
            ..base
        };
        let kept = chosen.with_finetuning_defaults(false, &["lr", "max_steps"]);
        assert_eq!((kept.lr, kept.min_lr, kept.warmup_steps), (1e-4, 1e-5, 1));
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_name_the_choices() {
        assert_eq!("LSTM".parse::<Arch>().unwrap(), Arch::Lstm);
        assert_eq!("Bert".parse::<Arch>().unwrap(), Arch::Bert);
        assert_eq!("mean".parse::<Pooling>().unwrap(), Pooling::Mean);
        assert_eq!("CLS".parse::<Pooling>().unwrap(), Pooling::Cls);
        let err = "rnn".parse::<Arch>().unwrap_err().to_string();
        assert!(
            err.ends_with("unknown arch \"rnn\"; choose gpt, bert or lstm"),
            "{err}"
        );
        let targets = LoraConfig::parse_targets("q, V").unwrap();
        assert_eq!(targets, [LoraTarget::Q, LoraTarget::V]);
        let err = LoraConfig::parse_targets("q,x").unwrap_err().to_string();
        assert!(
            err.contains("unknown LoRA target \"x\"; choose from q, k, v, o, mlp"),
            "{err}"
        );
    }

    #[test]
    fn set_overrides_by_name() {
        let mut p = tiny();
        p.set("n_layer=3").unwrap();
        p.set("lr=0.01").unwrap();
        p.set("position=rope").unwrap();
        assert_eq!(p.model.n_layer, 3);
        assert_eq!(p.train.lr, 0.01);
        assert_eq!(p.model.position, Position::Rope);
        assert!(p.set("n_layer=many").is_err());
        assert!(p.set("colour=blue").is_err());
        assert!(p.set("n_layer").is_err());
    }
}
