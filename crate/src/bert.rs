//! Hugging Face interop for the encoder: a Kiln encoder as the files `transformers` loads into
//! `BertForMaskedLM` (a masked-LM) or `BertForSequenceClassification` (a classifier), and such
//! files as a Kiln checkpoint to fill blanks with, classify, or finetune.
//!
//! Kiln's encoder is BERT's architecture when it has BERT's heads (`bert_heads`: the
//! prediction transform and output bias, the tanh pooler), post-norm blocks, learned positions,
//! LayerNorm and a GELU MLP. What differs is layout, not function:
//! - Kiln keeps query, key and value side by side in one `[C, 3C]` projection stored `[in,
//!   out]`; BERT has three `nn.Linear`s stored `[out, in]`. Export splits and transposes, import
//!   transposes and joins.
//! - BERT adds a token-type (segment) embedding; Kiln reads one text per row and has none.
//!   Import folds type 0's row into every position (what BERT computes for one text, whose
//!   type ids are all 0); export writes zero rows.
//! - A model built without biases exports zero biases, which computes the same function.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::checkpoint::{Checkpoint, FORMAT, FORMAT_VERSION, Meta, bad, f32s, stored_name};
use crate::config::{self, Arch, Mlp, ModelConfig, Norm, Pooling, Position, Task};
use crate::data::Tokenizer;
use crate::data::tokenizer::{SPECIALS, Specials};
use crate::error::{Error, Result};
use crate::hf::{
    CONFIG_FILE, HfFiles, Tensors, config_size, parse, parse_config, refuse_differences, serialize,
};

/// BERT's segment vocabulary (`type_vocab_size`): sentences A and B.
const TOKEN_TYPES: usize = 2;

/// Whether `c` is an encoder transformers' BERT classes compute; the sentence says what differs.
pub fn check(c: &ModelConfig) -> Result<()> {
    let pooling = match &c.task {
        Task::Classify { pooling, .. } => Some(*pooling),
        _ => None,
    };
    let differs = [
        (c.arch != Arch::Bert, "an encoder (arch = bert)"),
        (
            !c.bert_heads,
            "BERT's heads (bert_heads = true: a prediction transform and a pooler)",
        ),
        (c.norm_first, "post-norm blocks (not pre-norm)"),
        (
            c.position != Position::Learned,
            "learned positions (not rotary)",
        ),
        (c.norm != Norm::LayerNorm, "LayerNorm (not RMSNorm)"),
        (c.mlp != Mlp::Gelu, "a GELU MLP (not SwiGLU)"),
        (c.task == Task::Chat, "a masked-LM or classifier head"),
        (
            pooling.is_some_and(|p| p != Pooling::Cls),
            "a classifier reading [CLS] (not mean pooling)",
        ),
    ];
    refuse_differences(
        c,
        &differs,
        "BERT",
        "BertForMaskedLM and BertForSequenceClassification",
    )
}

/// One layer's modules: Kiln's path (under `h.N.`), BERT's (under `bert.encoder.layer.N.`),
/// and whether it is a linear layer (its weight transposed between the two). The query, key
/// and value projection is split apart on its own.
const LAYER: [(&str, &str, bool); 5] = [
    ("attn.c_proj", "attention.output.dense", true),
    ("ln_1", "attention.output.LayerNorm", false),
    ("mlp.c_fc", "intermediate.dense", true),
    ("mlp.c_proj", "output.dense", true),
    ("ln_2", "output.LayerNorm", false),
];

/// The whole model's tensors outside the blocks, as [`LAYER`]'s rows.
const OUTSIDE: [(&str, &str, bool); 6] = [
    ("ln_emb", "bert.embeddings.LayerNorm", false),
    ("mlm.dense", "cls.predictions.transform.dense", true),
    ("mlm.ln", "cls.predictions.transform.LayerNorm", false),
    ("pooler", "bert.pooler.dense", true),
    ("score", "classifier", true),
    ("lm_head", "cls.predictions.decoder", true),
];

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

fn bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A safetensors file's f32 tensors by name, with their shapes.
type Floats = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn floats(weights: &[u8], what: &str, rename: impl Fn(&str) -> String) -> Result<Floats> {
    parse(weights, what)?
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = f32s(&name, &view).map_err(bad)?;
            Ok((rename(&name), (view.shape().to_vec(), data)))
        })
        .collect()
}

/// Moves linear and norm parameters from one naming to the other: `from` → `to` for a weight
/// and a bias, the weight transposed where `linear` says. Parameters the source lacks (a
/// model without biases, a head it does not have) are left out.
fn rename_module(src: &mut Floats, dst: &mut Floats, from: &str, to: &str, linear: bool) {
    for part in ["weight", "bias"] {
        let Some((shape, data)) = src.remove(&format!("{from}.{part}")) else {
            continue;
        };
        let moved = match (linear, shape.as_slice()) {
            (true, &[rows, cols]) => (vec![cols, rows], transpose(&data, rows, cols)),
            _ => (shape, data),
        };
        dst.insert(format!("{to}.{part}"), moved);
    }
}

impl Checkpoint {
    /// The encoder as `transformers` BERT files: `BertForMaskedLM`, or
    /// `BertForSequenceClassification` for a classifier (its classes as `id2label`).
    pub fn to_bert(&self) -> Result<HfFiles> {
        let c = &self.meta.model;
        check(c)?;
        // Format 2 stored Kiln's module paths; the current names are PyTorch's.
        let mut kiln = floats(&self.weights, "the checkpoint's weights", |name| {
            stored_name(name, FORMAT_VERSION)
        })?;
        let (d, hidden) = (c.n_embd, c.mlp_hidden());
        let mut hf = Floats::new();
        for (from, to) in [
            ("wte.weight", "bert.embeddings.word_embeddings.weight"),
            ("wpe.weight", "bert.embeddings.position_embeddings.weight"),
            ("mlm.bias", "cls.predictions.bias"),
        ] {
            if let Some(tensor) = kiln.remove(from) {
                hf.insert(to.into(), tensor);
            }
        }
        hf.insert(
            "bert.embeddings.token_type_embeddings.weight".into(),
            (vec![TOKEN_TYPES, d], vec![0.0; TOKEN_TYPES * d]),
        );
        for (from, to, linear) in OUTSIDE {
            rename_module(&mut kiln, &mut hf, from, to, linear);
        }
        for i in 0..c.n_layer {
            let (kiln_layer, hf_layer) = (format!("h.{i}"), format!("bert.encoder.layer.{i}"));
            for (from, to, linear) in LAYER.iter() {
                let (from, to) = (format!("{kiln_layer}.{from}"), format!("{hf_layer}.{to}"));
                rename_module(&mut kiln, &mut hf, &from, &to, *linear);
            }
            // c_attn [C, 3C] (+ [3C]) → query, key, value, each [C, C] as [out, in] (+ [C]).
            let attn = format!("{hf_layer}.attention.self");
            if let Some((_, w)) = kiln.remove(&format!("{kiln_layer}.attn.c_attn.weight")) {
                let w = transpose(&w, d, 3 * d); // [3C, C]: rows q, then k, then v
                for (j, part) in ["query", "key", "value"].iter().enumerate() {
                    let rows = w[j * d * d..(j + 1) * d * d].to_vec();
                    hf.insert(format!("{attn}.{part}.weight"), (vec![d, d], rows));
                }
            }
            if let Some((_, b)) = kiln.remove(&format!("{kiln_layer}.attn.c_attn.bias")) {
                for (j, part) in ["query", "key", "value"].iter().enumerate() {
                    let part_bias = b[j * d..(j + 1) * d].to_vec();
                    hf.insert(format!("{attn}.{part}.bias"), (vec![d], part_bias));
                }
            }
            // BERT always has biases; zeros leave the function as it was.
            let mut zeros = vec![
                (format!("{attn}.query.bias"), d),
                (format!("{attn}.key.bias"), d),
                (format!("{attn}.value.bias"), d),
            ];
            for (_, to, _) in LAYER.iter() {
                let width = if *to == "intermediate.dense" {
                    hidden
                } else {
                    d
                };
                zeros.push((format!("{hf_layer}.{to}.bias"), width));
            }
            for (name, width) in zeros {
                hf.entry(name)
                    .or_insert_with(|| (vec![width], vec![0.0; width]));
            }
        }
        let mut zeros = vec![("bert.embeddings.LayerNorm.bias".to_string(), d)];
        match &c.task {
            Task::Classify { classes, .. } => {
                zeros.push(("bert.pooler.dense.bias".into(), d));
                zeros.push(("classifier.bias".into(), classes.len()));
            }
            _ => {
                zeros.push(("cls.predictions.transform.dense.bias".into(), d));
                zeros.push(("cls.predictions.transform.LayerNorm.bias".into(), d));
            }
        }
        for (name, width) in zeros {
            hf.entry(name)
                .or_insert_with(|| (vec![width], vec![0.0; width]));
        }
        if let Some(name) = kiln.keys().next() {
            return Err(bad(format!(
                "tensor {name} has no place in transformers' BERT"
            )));
        }
        let tensors: Tensors = hf
            .into_iter()
            .map(|(name, (shape, data))| (name, (shape, bytes(&data))))
            .collect();
        let mut config = json!({
            "model_type": "bert",
            "vocab_size": c.vocab_size,
            "hidden_size": d,
            "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head,
            "intermediate_size": hidden,
            "hidden_act": "gelu",
            "hidden_dropout_prob": c.dropout,
            "attention_probs_dropout_prob": c.dropout,
            "max_position_embeddings": c.block_size,
            "type_vocab_size": TOKEN_TYPES,
            "layer_norm_eps": c.layer_norm_eps,
            "initializer_range": 0.02,
            "position_embedding_type": "absolute",
            "tie_word_embeddings": c.tie_weights,
        });
        let tokenizer = Tokenizer::from_json(&self.meta.tokenizer)?;
        let specials = tokenizer.specials().ok_or_else(|| {
            Error::Tokenizer(format!(
                "an encoder's tokenizer needs the special tokens {}",
                SPECIALS.join(" ")
            ))
        })?;
        config["pad_token_id"] = specials.pad.into();
        match &c.task {
            Task::Classify { classes, .. } => {
                config["architectures"] = json!(["BertForSequenceClassification"]);
                config["problem_type"] = "single_label_classification".into();
                config["id2label"] = classes
                    .iter()
                    .enumerate()
                    .map(|(i, class)| (i.to_string(), json!(class)))
                    .collect();
                config["label2id"] = classes
                    .iter()
                    .enumerate()
                    .map(|(i, class)| (class.clone(), json!(i)))
                    .collect();
            }
            _ => config["architectures"] = json!(["BertForMaskedLM"]),
        }
        Ok(HfFiles {
            weights: serialize(&tensors)?,
            config: serde_json::to_string_pretty(&config).map_err(|e| bad(e.to_string()))?,
            tokenizer: with_bert_template(&Tokenizer::hf_json(&self.meta.tokenizer)?, specials)?,
            tokenizer_config: tokenizer_config(),
        })
    }

    /// A checkpoint (step 0, no optimizer state, `tiny-bert`'s schedule for finetuning) from
    /// `transformers` BERT files: `BertForMaskedLM`'s (a masked-LM) or
    /// `BertForSequenceClassification`'s (a classifier). What BERT allows and Kiln does not
    /// compute is a clear error.
    pub fn from_bert(files: &HfFiles) -> Result<Self> {
        let mut hf = floats(&files.weights, "model.safetensors", |name| {
            // BertModel's own files have no `bert.` prefix.
            match ["bert.", "cls.", "classifier."]
                .iter()
                .any(|p| name.starts_with(p))
            {
                true => name.to_owned(),
                false => format!("bert.{name}"),
            }
        })?;
        let classifier = hf.contains_key("classifier.weight");
        let model = model_config(&files.config, classifier)?;
        let (d, v) = (model.n_embd, model.vocab_size);
        // The embeddings must have the sizes config.json gives before a model of that size is
        // built (a wrong config could otherwise ask for any amount of memory).
        for (name, want) in [
            ("bert.embeddings.word_embeddings.weight", [v, d]),
            (
                "bert.embeddings.position_embeddings.weight",
                [model.block_size, d],
            ),
        ] {
            let got = hf.get(name).map(|(shape, _)| shape.as_slice());
            if got != Some(&want[..]) {
                return Err(bad(format!(
                    "{name} has shape {got:?}, but config.json describes {want:?}"
                )));
            }
        }
        let mut kiln = Floats::new();
        let (_, mut wpe) = hf
            .remove("bert.embeddings.position_embeddings.weight")
            .expect("checked above");
        if let Some((shape, types)) = hf.remove("bert.embeddings.token_type_embeddings.weight") {
            if shape.len() != 2 || shape[1] != d || shape[0] == 0 {
                return Err(bad(format!(
                    "bert.embeddings.token_type_embeddings.weight has shape {shape:?}, not [types, {d}]"
                )));
            }
            for row in wpe.chunks_exact_mut(d) {
                row.iter_mut().zip(&types[..d]).for_each(|(p, t)| *p += t);
            }
        }
        kiln.insert("wpe.weight".into(), (vec![model.block_size, d], wpe));
        for (to, from) in [
            ("wte.weight", "bert.embeddings.word_embeddings.weight"),
            ("mlm.bias", "cls.predictions.bias"),
        ] {
            if let Some(tensor) = hf.remove(from) {
                kiln.insert(to.into(), tensor);
            }
        }
        // The decoder is the word embedding (tied) and its bias the output bias: copies that
        // transformers may or may not write.
        if model.tie_weights {
            hf.remove("cls.predictions.decoder.weight");
        }
        hf.remove("cls.predictions.decoder.bias");
        // Buffers, not parameters.
        hf.remove("bert.embeddings.position_ids");
        hf.remove("bert.embeddings.token_type_ids");
        if !classifier {
            // BertForPreTraining's files (BERT's own releases) also hold the pooler and the
            // next-sentence head, which a masked-LM does not use.
            hf.retain(|name, _| {
                !(name.starts_with("bert.pooler.") || name.starts_with("cls.seq_relationship."))
            });
        }
        for (to, from, linear) in OUTSIDE {
            rename_module(&mut hf, &mut kiln, from, to, linear);
        }
        for i in 0..model.n_layer {
            let (kiln_layer, hf_layer) = (format!("h.{i}"), format!("bert.encoder.layer.{i}"));
            for (to, from, linear) in LAYER.iter() {
                let (from, to) = (format!("{hf_layer}.{from}"), format!("{kiln_layer}.{to}"));
                rename_module(&mut hf, &mut kiln, &from, &to, *linear);
            }
            let attn = format!("{hf_layer}.attention.self");
            let mut weight = Vec::with_capacity(3 * d * d);
            let mut bias = Vec::with_capacity(3 * d);
            for part in ["query", "key", "value"] {
                let name = format!("{attn}.{part}.weight");
                match hf.remove(&name) {
                    Some((shape, w)) if shape == [d, d] => weight.extend(w),
                    got => {
                        return Err(bad(format!(
                            "{name} has shape {:?}, not [{d}, {d}]",
                            got.map(|(shape, _)| shape)
                        )));
                    }
                }
                let name = format!("{attn}.{part}.bias");
                match hf.remove(&name) {
                    Some((shape, b)) if shape == [d] => bias.extend(b),
                    got => {
                        return Err(bad(format!(
                            "{name} has shape {:?}, not [{d}]",
                            got.map(|(shape, _)| shape)
                        )));
                    }
                }
            }
            // [3C, C] as [out, in] → [C, 3C] as [in, out].
            let weight = transpose(&weight, 3 * d, d);
            kiln.insert(
                format!("{kiln_layer}.attn.c_attn.weight"),
                (vec![d, 3 * d], weight),
            );
            kiln.insert(
                format!("{kiln_layer}.attn.c_attn.bias"),
                (vec![3 * d], bias),
            );
        }
        if let Some(name) = hf.keys().next() {
            return Err(bad(format!(
                "tensor {name} has no place in Kiln's encoder (a {} with {} layers)",
                if classifier {
                    "BertForSequenceClassification"
                } else {
                    "BertForMaskedLM"
                },
                model.n_layer
            )));
        }
        let tensors: Tensors = kiln
            .into_iter()
            .map(|(name, (shape, data))| (name, (shape, bytes(&data))))
            .collect();
        Ok(Self {
            meta: Meta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model,
                train: config::preset("tiny-bert")?.train,
                tokenizer: files.tokenizer.clone(),
                step: 0,
                elapsed: 0.0,
            },
            weights: serialize(&tensors)?,
            optimizer: None,
        })
    }
}

/// Kiln's model config for a transformers BERT `config.json` (a classifier's when the weights
/// have one); what BERT allows and Kiln does not compute is refused.
pub fn model_config(config: &str, classifier: bool) -> Result<ModelConfig> {
    let config = parse_config(config)?;
    let size = |key: &str| config_size(&config, key);
    let activation = config["hidden_act"].as_str().unwrap_or("gelu");
    if activation != "gelu" {
        return Err(bad(format!(
            "hidden_act \"{activation}\": Kiln's encoder uses BERT's exact GELU (\"gelu\")"
        )));
    }
    let positions = config["position_embedding_type"]
        .as_str()
        .unwrap_or("absolute");
    if positions != "absolute" {
        return Err(bad(format!(
            "position_embedding_type \"{positions}\": Kiln's encoder learns absolute positions"
        )));
    }
    if config["is_decoder"].as_bool() == Some(true) {
        return Err(bad(
            "is_decoder is true: Kiln's encoder attends in both directions",
        ));
    }
    let n_embd = size("hidden_size")?;
    if size("intermediate_size")? != 4 * n_embd {
        return Err(bad(
            "intermediate_size must be 4 · hidden_size, as in BERT's own sizes",
        ));
    }
    let task = match classifier {
        false => Task::Text,
        true => {
            let labels = config["id2label"]
                .as_object()
                .ok_or_else(|| bad(format!("{CONFIG_FILE} names no classes (id2label)")))?;
            let mut classes = vec![None; labels.len()];
            for (id, label) in labels {
                let slot = id.parse::<usize>().ok().and_then(|i| classes.get_mut(i));
                match (slot, label.as_str()) {
                    (Some(slot), Some(label)) => *slot = Some(label.to_owned()),
                    _ => {
                        return Err(bad(format!(
                            "id2label's entry {id}: {label} is not a class of ids 0 to {}",
                            labels.len().saturating_sub(1)
                        )));
                    }
                }
            }
            Task::Classify {
                classes: classes.into_iter().flatten().collect(),
                pooling: Pooling::Cls,
            }
        }
    };
    let model = ModelConfig {
        arch: Arch::Bert,
        vocab_size: size("vocab_size")?,
        block_size: size("max_position_embeddings")?,
        n_layer: size("num_hidden_layers")?,
        n_head: size("num_attention_heads")?,
        n_embd,
        dropout: config["hidden_dropout_prob"].as_f64().unwrap_or(0.1),
        bias: true,
        position: Position::Learned,
        norm: Norm::LayerNorm,
        norm_first: false,
        mlp: Mlp::Gelu,
        tie_weights: config["tie_word_embeddings"].as_bool().unwrap_or(true),
        layer_norm_eps: config["layer_norm_eps"].as_f64().unwrap_or(1e-12),
        bert_heads: true,
        kernels: true,
        mixed_precision: false,
        task,
        lora: None,
    };
    model.validate()?;
    Ok(model)
}

/// `tokenizer.json` with BERT's post-processor, `[CLS] text [SEP]` (and `[CLS] a [SEP] b [SEP]`
/// for pairs), so transformers' tokenizer gives the rows Kiln's data path builds; one that
/// already has a post-processor stays as it is. Kiln encodes without it.
fn with_bert_template(json: &str, specials: Specials) -> Result<String> {
    let mut value: Value =
        serde_json::from_str(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
    if value["post_processor"].is_null() {
        let special =
            |token: &str, type_id: u32| json!({"SpecialToken": {"id": token, "type_id": type_id}});
        let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        value["post_processor"] = json!({
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0),
                     sequence("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [specials.cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [specials.sep], "tokens": ["[SEP]"]},
            },
        });
    }
    serde_json::to_string(&value).map_err(|e| Error::Tokenizer(e.to_string()))
}

/// [`crate::hf::TOKENIZER_CONFIG`] with BERT's special tokens named, so that transformers'
/// tokenizer knows its mask (the fill-mask pipeline needs it), padding and `[CLS]`.
fn tokenizer_config() -> String {
    let mut config: Value =
        serde_json::from_str(crate::hf::TOKENIZER_CONFIG).expect("a JSON constant");
    for (key, token) in [
        "pad_token",
        "unk_token",
        "cls_token",
        "sep_token",
        "mask_token",
    ]
    .iter()
    .zip(SPECIALS)
    {
        config[*key] = token.into();
    }
    config.to_string()
}
