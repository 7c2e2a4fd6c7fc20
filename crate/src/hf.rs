//! Hugging Face interop, shared by the architectures Kiln exchanges with `transformers`: the
//! files a model directory holds, and which mapping reads or writes them — GPT-2's
//! ([`crate::gpt2`]) for a GPT, BERT's ([`crate::bert`]) for an encoder.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::checkpoint::{Checkpoint, bad};
use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Makes `AutoTokenizer` load `tokenizer.json` as it is (GPT-2's own tokenizer class would
/// assume GPT-2's byte-level pipeline, which a character vocabulary does not have), and decode
/// without transformers' clean-up of spaces before punctuation, which would change the text.
pub const TOKENIZER_CONFIG: &str =
    r#"{"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false}"#;

/// The files of a `transformers` model directory.
#[derive(Clone, Debug)]
pub struct HfFiles {
    /// `model.safetensors`, the architecture's tensor names.
    pub weights: Vec<u8>,
    /// `config.json`; its `model_type` says which mapping reads the weights.
    pub config: String,
    /// `tokenizer.json` in Hugging Face's format: byte-level BPE, WordPiece, or a character
    /// vocabulary.
    pub tokenizer: String,
    /// `tokenizer_config.json`: [`TOKENIZER_CONFIG`], with an encoder's special tokens named.
    pub tokenizer_config: String,
}

impl HfFiles {
    /// Writes the files into `dir` (`transformers`' `from_pretrained(dir)` reads it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_dir(&self, dir: &std::path::Path) -> Result<()> {
        use crate::checkpoint::{WEIGHTS_FILE, write_atomic};
        std::fs::create_dir_all(dir)?;
        write_atomic(dir, WEIGHTS_FILE, &self.weights)?;
        write_atomic(dir, TOKENIZER_FILE, self.tokenizer.as_bytes())?;
        write_atomic(dir, TOKENIZER_CONFIG_FILE, self.tokenizer_config.as_bytes())?;
        write_atomic(dir, CONFIG_FILE, self.config.as_bytes())
    }

    /// Reads a directory holding `model.safetensors`, `config.json` and `tokenizer.json`
    /// (`tokenizer_config.json` is not needed to import).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        use crate::checkpoint::read_file;
        let text = |name: &str| {
            String::from_utf8(read_file(dir, name)?)
                .map_err(|_| bad(format!("{name} is not UTF-8 text")))
        };
        // config.json first: a directory without one is not a transformers model at all.
        let config = text(CONFIG_FILE)?;
        Ok(Self::new(
            read_file(dir, crate::checkpoint::WEIGHTS_FILE)?,
            config,
            text(TOKENIZER_FILE)?,
        ))
    }

    /// The three files an import reads (the page's upload, a directory).
    pub fn new(weights: Vec<u8>, config: String, tokenizer: String) -> Self {
        Self {
            weights,
            config,
            tokenizer,
            tokenizer_config: TOKENIZER_CONFIG.into(),
        }
    }
}

impl Checkpoint {
    /// The model as `transformers` files: `GPT2LMHeadModel` for a GPT, `BertForMaskedLM` or
    /// `BertForSequenceClassification` for an encoder. Only the weights, config and tokenizer
    /// go: the optimizer state and schedule stay Kiln's.
    pub fn to_transformers(&self) -> Result<HfFiles> {
        match self.meta.model.arch {
            Arch::Bert => self.to_bert(),
            Arch::Gpt => self.to_gpt2(),
            Arch::Lstm => Err(Error::Config(
                "an LSTM has no transformers model class to export to; score it and generate \
                 from it in Kiln"
                    .into(),
            )),
        }
    }

    /// A checkpoint (step 0, no optimizer state) from `transformers` files, read as the
    /// `model_type` in `config.json` says (GPT-2 when it names none).
    pub fn from_transformers(files: &HfFiles) -> Result<Self> {
        match parse_config(&files.config)?["model_type"].as_str() {
            None | Some("gpt2") => Self::from_gpt2(files),
            Some("bert") => Self::from_bert(files),
            Some(other) => Err(bad(format!(
                "{CONFIG_FILE} describes a \"{other}\" model; Kiln imports gpt2 and bert"
            ))),
        }
    }
}

/// Refuses a model with LoRA adapters (they are merged first) or with the first of `differs`
/// that holds: what `model` (a transformers family) has and this one lacks, so `classes` cannot
/// load it.
pub(crate) fn refuse_differences(
    c: &ModelConfig,
    differs: &[(bool, &str)],
    model: &str,
    classes: &str,
) -> Result<()> {
    if c.lora.is_some() {
        return Err(Error::Config(
            "merge the LoRA adapters into the weights first (Checkpoint::merged)".into(),
        ));
    }
    match differs.iter().find(|(d, _)| *d) {
        Some((_, what)) => Err(Error::Config(format!(
            "{model} has {what}; this model does not, so transformers' {classes} cannot load it"
        ))),
        None => Ok(()),
    }
}

/// `config.json`'s text as JSON.
pub(crate) fn parse_config(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| bad(format!("{CONFIG_FILE} is not JSON: {e}")))
}

/// A size `config.json` must give.
pub(crate) fn config_size(config: &serde_json::Value, key: &str) -> Result<usize> {
    config[key]
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| bad(format!("{CONFIG_FILE} has no number \"{key}\"")))
}

/// f32 tensors by name, as owned shapes and little-endian bytes.
pub(crate) type Tensors = BTreeMap<String, (Vec<usize>, Vec<u8>)>;

pub(crate) fn serialize(tensors: &Tensors) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, (shape, data))| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| bad(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))
}

pub(crate) fn parse<'a>(bytes: &'a [u8], what: &str) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{what} is not safetensors: {e}")))
}
