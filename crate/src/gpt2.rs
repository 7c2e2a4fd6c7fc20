//! Hugging Face interop: a Kiln checkpoint as the files `transformers` loads into
//! `GPT2LMHeadModel` (`model.safetensors` with GPT-2's tensor names, `config.json`,
//! `tokenizer.json`), and such files as a Kiln checkpoint to generate from or finetune.
//!
//! Kiln's GPT is GPT-2's architecture when it uses learned positions, LayerNorm, GELU and a tied
//! head, and its weights are already in GPT-2's Conv1D orientation (`[in, out]`), so the mapping
//! is a prefix: `h.0.ln_1.weight` ↔ `transformer.h.0.ln_1.weight`. A model built without
//! biases exports zero biases, which computes the same function.

use std::collections::BTreeMap;

use safetensors::{Dtype, tensor::TensorView};
use serde_json::json;

use crate::checkpoint::{Checkpoint, FORMAT, FORMAT_VERSION, Meta, bad, stored_name};
use crate::config::{self, Arch, LAYER_NORM_EPS, Mlp, ModelConfig, Norm, Position};
use crate::error::Result;
use crate::hf::{
    HfFiles, Tensors, config_size, parse, parse_config, refuse_differences, serialize,
};

/// Whether `c` is GPT-2's architecture; the sentence says what differs.
pub fn check(c: &ModelConfig) -> Result<()> {
    let differs = [
        (
            c.arch != Arch::Gpt,
            "causal Transformer blocks (not an encoder or an LSTM)",
        ),
        (!c.norm_first, "pre-norm blocks (not post-norm)"),
        (
            c.position != Position::Learned,
            "learned positions (not rotary)",
        ),
        (c.norm != Norm::LayerNorm, "LayerNorm (not RMSNorm)"),
        (c.mlp != Mlp::Gelu, "a GELU MLP (not SwiGLU)"),
        (
            !c.tie_weights,
            "its output head tied to the token embedding",
        ),
        (
            matches!(c.task, config::Task::Classify { .. }),
            "a language-model head",
        ),
    ];
    refuse_differences(c, &differs, "GPT-2", "GPT2LMHeadModel")
}

/// GPT-2's tensor name for a tensor of a checkpoint in format `version`.
fn to_hf(name: &str, version: u32) -> String {
    // Format 2 stored Kiln's module paths; the format's own names are GPT-2's, unprefixed.
    let name = match version {
        2 => stored_name(name, FORMAT_VERSION),
        _ => name.to_owned(),
    };
    format!("transformer.{name}")
}

/// GPT-2's tensor name → the checkpoint's; `None` for what Kiln does not keep (the tied head,
/// the causal mask buffers). Names with or without the `transformer.` prefix are accepted.
fn from_hf(name: &str) -> Option<String> {
    let name = name.strip_prefix("transformer.").unwrap_or(name);
    let dropped =
        name == "lm_head.weight" || name.ends_with(".attn.bias") || name.ends_with(".masked_bias");
    (!dropped).then(|| name.to_string())
}

/// Kiln's model config for a transformers GPT-2 `config.json`; what GPT-2 allows and Kiln does
/// not compute (exact GELU, another attention scaling, an untied head) is refused.
pub fn model_config(config: &str) -> Result<ModelConfig> {
    let config = parse_config(config)?;
    let size = |key: &str| config_size(&config, key);
    let activation = config["activation_function"].as_str().unwrap_or("gelu_new");
    if !matches!(activation, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
        return Err(bad(format!(
            "activation \"{activation}\": Kiln's GELU is the tanh approximation (gelu_new)"
        )));
    }
    let eps = config["layer_norm_epsilon"]
        .as_f64()
        .unwrap_or(LAYER_NORM_EPS);
    // GPT2Config's variants of attention that compute another function than Kiln's.
    if config["scale_attn_weights"].as_bool() == Some(false) {
        return Err(bad(
            "scale_attn_weights is false: Kiln scales attention scores by 1/√head_size",
        ));
    }
    if config["scale_attn_by_inverse_layer_idx"].as_bool() == Some(true) {
        return Err(bad(
            "scale_attn_by_inverse_layer_idx is true: Kiln does not scale attention by layer",
        ));
    }
    if config["tie_word_embeddings"].as_bool() == Some(false) {
        return Err(bad("the output head is not tied to the token embedding"));
    }
    let n_embd = size("n_embd")?;
    if config["n_inner"]
        .as_u64()
        .is_some_and(|n| n as usize != 4 * n_embd)
    {
        return Err(bad("n_inner must be 4 · n_embd, as in GPT-2"));
    }
    let model = ModelConfig {
        arch: Arch::Gpt,
        vocab_size: size("vocab_size")?,
        block_size: size("n_positions").or_else(|_| size("n_ctx"))?,
        n_layer: size("n_layer")?,
        n_head: size("n_head")?,
        n_embd,
        dropout: config["attn_pdrop"].as_f64().unwrap_or(0.0),
        bias: true,
        position: Position::Learned,
        norm: Norm::LayerNorm,
        norm_first: true,
        mlp: Mlp::Gelu,
        tie_weights: true,
        layer_norm_eps: eps,
        bert_heads: false,
        kernels: true,
        mixed_precision: false,
        task: config::Task::Text,
        lora: None,
    };
    model.validate()?;
    Ok(model)
}

impl Checkpoint {
    /// The model as `transformers` GPT-2 files. Only the weights, config and tokenizer go:
    /// the optimizer state and schedule stay Kiln's.
    pub fn to_gpt2(&self) -> Result<HfFiles> {
        let c = &self.meta.model;
        check(c)?;
        let mut tensors = Tensors::new();
        for (name, view) in parse(&self.weights, "the checkpoint's weights")?.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor {name} is {:?}, not f32", view.dtype())));
            }
            let hf = to_hf(&name, self.meta.format_version);
            tensors.insert(hf, (view.shape().to_vec(), view.data().to_vec()));
        }
        // GPT-2 always has biases; zeros leave the function as it was.
        let d = c.n_embd;
        let mut biases = vec![("transformer.ln_f.bias".to_string(), d)];
        for i in 0..c.n_layer {
            for (module, width) in [
                ("ln_1", d),
                ("attn.c_attn", 3 * d),
                ("attn.c_proj", d),
                ("ln_2", d),
                ("mlp.c_fc", c.mlp_hidden()),
                ("mlp.c_proj", d),
            ] {
                biases.push((format!("transformer.h.{i}.{module}.bias"), width));
            }
        }
        for (name, width) in biases {
            tensors
                .entry(name)
                .or_insert_with(|| (vec![width], vec![0; width * 4]));
        }
        let config = json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": c.vocab_size,
            "n_positions": c.block_size,
            "n_ctx": c.block_size,
            "n_embd": d,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_inner": c.mlp_hidden(),
            "activation_function": "gelu_new",
            "resid_pdrop": c.dropout,
            "embd_pdrop": c.dropout,
            "attn_pdrop": c.dropout,
            "layer_norm_epsilon": c.layer_norm_eps,
            "initializer_range": 0.02,
            "tie_word_embeddings": true,
            // GPT2Config's defaults name GPT-2's own <|endoftext|> (50256); Kiln has none.
            "bos_token_id": null,
            "eos_token_id": null,
        });
        Ok(HfFiles {
            weights: serialize(&tensors)?,
            config: serde_json::to_string_pretty(&config).map_err(|e| bad(e.to_string()))?,
            tokenizer: crate::data::Tokenizer::hf_json(&self.meta.tokenizer)?,
            tokenizer_config: crate::hf::TOKENIZER_CONFIG.into(),
        })
    }

    /// A checkpoint (step 0, no optimizer state, `tiny`'s schedule for finetuning) from
    /// `transformers` GPT-2 files. Anything that is not GPT-2 with f32 weights is a clear error.
    pub fn from_gpt2(files: &HfFiles) -> Result<Self> {
        let model = model_config(&files.config)?;
        // Renamed views of the file's tensors: GPT-2 small's 500 MB are copied once, into the
        // checkpoint.
        let mut tensors = BTreeMap::new();
        for (name, view) in parse(&files.weights, "model.safetensors")?.tensors() {
            let Some(kiln) = from_hf(&name) else { continue };
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}; Kiln imports f32 weights",
                    view.dtype()
                )));
            }
            tensors.insert(kiln, view);
        }
        // The embeddings must have the sizes config.json gives before a model of that size is
        // built (a wrong config could otherwise ask for any amount of memory).
        for (name, want) in [
            ("wte.weight", [model.vocab_size, model.n_embd]),
            ("wpe.weight", [model.block_size, model.n_embd]),
        ] {
            let got = tensors.get(name).map(TensorView::shape);
            if got != Some(&want[..]) {
                return Err(bad(format!(
                    "transformer.{name} has shape {got:?}, but config.json describes {want:?}"
                )));
            }
        }
        let train = config::preset("tiny")?.train;
        Ok(Self {
            meta: Meta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model,
                train,
                tokenizer: files.tokenizer.clone(),
                step: 0,
                elapsed: 0.0,
            },
            weights: safetensors::serialize(tensors, None).map_err(|e| bad(e.to_string()))?,
            optimizer: None,
        })
    }
}
