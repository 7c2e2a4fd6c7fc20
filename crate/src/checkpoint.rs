//! Checkpoints: weights as safetensors, metadata as JSON (format version, configs, tokenizer, step,
//! RNG state, parameter ids) and the optimizer state, so a run resumes exactly where it stopped.
//!
//! The in-memory form ([`Checkpoint`]) is what the page stores; natively it is a directory of
//! three files ([`Checkpoint::save_dir`], [`Checkpoint::load_dir`]).

use std::collections::{BTreeMap, HashMap};

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::backend::read_f32;
use crate::config::{ModelConfig, Preset, TrainConfig};
use crate::data::{Dataset, Tokenizer};
use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::optim::{AdamW, Moments};
use crate::train::Trainer;

/// Bumped whenever the layout of a checkpoint changes; older versions are refused by name.
pub const FORMAT_VERSION: u32 = 2;
pub(crate) const FORMAT: &str = "kiln-checkpoint";

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "checkpoint.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// What `kiln export --adapters-only` writes: LoRA adapters alone.
pub const ADAPTERS_FILE: &str = "adapters.safetensors";

/// Where the random streams stand. Batches and dropout masks are drawn from `(seed, step)`
/// alone, so these two numbers are the whole RNG state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub step: usize,
}

/// `checkpoint.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub format_version: u32,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// The tokenizer's own JSON (`tokenizer.json`), embedded.
    pub tokenizer: String,
    pub step: usize,
    pub elapsed: f64,
    pub rng: RngState,
    /// Parameter path -> id. The optimizer state is keyed by id, so ids are restored on load.
    pub param_ids: BTreeMap<String, u64>,
}

/// A saved model, with everything needed to resume training.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: Meta,
    /// safetensors bytes, tensors named by module path (`h.0.attn.c_attn.weight`).
    pub weights: Vec<u8>,
    /// AdamW moments as safetensors (`<path>.exp_avg`, `<path>.exp_avg_sq`, PyTorch's names);
    /// absent in an inference-only export.
    pub optimizer: Option<Vec<u8>>,
}

pub(crate) fn bad(msg: impl Into<String>) -> Error {
    Error::Checkpoint(msg.into())
}

/// Collects every float parameter, flattened, with its dotted module path and shape.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    params: Vec<(String, ParamId, Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.dims().to_vec();
        let flat = value.reshape([shape.iter().product::<usize>()]);
        self.params
            .push((self.path.join("."), param.id, shape, flat));
    }
}

/// Replaces every float parameter with the tensor saved under its path, restoring its id.
struct Load<'a> {
    path: Vec<String>,
    tensors: &'a SafeTensors<'a>,
    ids: &'a BTreeMap<String, u64>,
    /// Finetuning: parts the new model adds (a classifier's head, LoRA adapters) keep their
    /// fresh values where the checkpoint has none of that shape.
    finetune: bool,
    used: usize,
    error: Option<String>,
}

/// Whether the parameter at `path` is one that finetuning may add to a model.
fn is_new_part(path: &str) -> bool {
    path.starts_with("score.") || crate::lora::is_adapter(path)
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        match self.read::<D>(&name, &param) {
            Err(_) if self.finetune && is_new_part(&name) => param,
            Ok((id, tensor)) => {
                self.used += 1;
                let (_, _, mapper) = param.consume();
                Param::from_mapped_value(id, tensor, mapper)
            }
            Err(e) => {
                self.error.get_or_insert(e);
                param
            }
        }
    }
}

impl Load<'_> {
    fn read<const D: usize>(
        &self,
        name: &str,
        param: &Param<Tensor<D>>,
    ) -> Result<(ParamId, Tensor<D>), String> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| format!("the weights have no tensor {name}"))?;
        let expected = param.lazy_shape().dims::<D>().to_vec();
        if view.shape() != expected.as_slice() {
            return Err(format!(
                "tensor {name} has shape {:?} in the checkpoint but the model expects {expected:?}",
                view.shape()
            ));
        }
        let data = f32s(name, &view)?;
        let device = param.lazy_device();
        let mut tensor = Tensor::<D>::from_data(TensorData::new(data, expected), &device);
        if device.is_autodiff() {
            tensor = tensor.require_grad();
        }
        let id = self
            .ids
            .get(name)
            .map_or_else(ParamId::new, |&id| ParamId::from(id));
        Ok((id, tensor))
    }
}

impl Checkpoint {
    /// [`Checkpoint::from_trainer_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_trainer(trainer: &Trainer) -> Result<Self> {
        crate::backend::block_on(Self::from_trainer_async(trainer))
    }

    /// Snapshots a training run: weights, optimizer state, configs, tokenizer and step.
    pub async fn from_trainer_async(trainer: &Trainer) -> Result<Self> {
        Self::snapshot(trainer, true).await
    }

    /// The run's model without its optimizer state (an export needs no moments read back).
    pub async fn model_of_async(trainer: &Trainer) -> Result<Self> {
        Self::snapshot(trainer, false).await
    }

    async fn snapshot(trainer: &Trainer, with_optimizer: bool) -> Result<Self> {
        let preset = trainer.preset();
        let (weights, param_ids) = encode_weights(trainer.model()).await?;
        let optimizer = match with_optimizer {
            true => Some(encode_optimizer(trainer.optimizer()).await?),
            false => None,
        };
        Ok(Self {
            meta: Meta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model: trainer.model().config().clone(),
                train: preset.train.clone(),
                tokenizer: trainer.tokenizer().to_json()?,
                step: trainer.step_count(),
                elapsed: trainer.elapsed(),
                rng: RngState {
                    seed: preset.train.seed,
                    step: trainer.step_count(),
                },
                param_ids,
            },
            weights,
            optimizer,
        })
    }

    /// Checks the metadata and reads the tokenizer, which must fit the model's vocabulary.
    fn checked_tokenizer(&self) -> Result<Tokenizer> {
        let m = &self.meta;
        if m.format != FORMAT {
            return Err(bad(format!(
                "this is not a Kiln checkpoint (format \"{}\")",
                m.format
            )));
        }
        if m.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} cannot be read by this Kiln, which reads version {FORMAT_VERSION}",
                m.format_version
            )));
        }
        m.model.validate()?;
        let tokenizer = Tokenizer::from_json(&m.tokenizer)?;
        if tokenizer.vocab_size() != m.model.vocab_size {
            return Err(bad(format!(
                "the tokenizer has {} tokens but the model was built for {}; they do not belong together",
                tokenizer.vocab_size(),
                m.model.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    /// From now on, characters the tokenizer never saw become `c` (see
    /// [`Tokenizer::with_unknown`]): for finetuning on a text with new characters.
    pub fn map_unknown(&mut self, c: char) -> Result<()> {
        self.meta.tokenizer = Tokenizer::from_json(&self.meta.tokenizer)?
            .with_unknown(c)?
            .to_json()?;
        Ok(())
    }

    /// The model and tokenizer, for generation and scoring (no autodiff on `device`).
    pub fn load_model(&self, device: &Device) -> Result<(Gpt, Tokenizer)> {
        let tokenizer = self.checked_tokenizer()?;
        let model = decode_weights(
            Gpt::new(&self.meta.model, 0, device),
            &self.weights,
            &self.meta.param_ids,
            false,
        )?;
        Ok((model, tokenizer))
    }

    /// [`Checkpoint::merged_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn merged(&self, device: &Device) -> Result<Self> {
        crate::backend::block_on(self.merged_async(device))
    }

    /// The model with its LoRA adapters merged into the weights (itself when it has none): what
    /// an export writes. The optimizer state, which belongs to the adapters, is dropped.
    pub async fn merged_async(&self, device: &Device) -> Result<Self> {
        if self.meta.model.lora.is_none() {
            return Ok(self.clone());
        }
        let (model, _) = self.load_model(device)?;
        let model = model.merge_lora();
        let (weights, param_ids) = encode_weights(&model).await?;
        let mut meta = self.meta.clone();
        (meta.model, meta.param_ids) = (model.config().clone(), param_ids);
        Ok(Self {
            meta,
            weights,
            optimizer: None,
        })
    }

    /// Only the LoRA adapters, as safetensors (names as in the checkpoint, the LoRA settings in
    /// the header's `lora` entry): small enough to share, and [`Checkpoint::with_adapters`]
    /// puts them back on the same base.
    pub fn adapters(&self) -> Result<Vec<u8>> {
        let lora = self.meta.model.lora.as_ref().ok_or_else(|| {
            bad("this model has no LoRA adapters; finetune it with LoRA to get some")
        })?;
        let tensors = SafeTensors::deserialize(&self.weights)
            .map_err(|e| bad(format!("the weights are unreadable: {e}")))?;
        let views: Vec<_> = tensors
            .tensors()
            .into_iter()
            .filter(|(name, _)| crate::lora::is_adapter(name))
            .collect();
        let meta = HashMap::from([(
            "lora".to_string(),
            serde_json::to_string(lora).map_err(|e| bad(e.to_string()))?,
        )]);
        safetensors::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))
    }

    /// This (adapter-free) model with the adapters [`Checkpoint::adapters`] wrote, ready to
    /// generate or to train on; loading it reports adapters that do not fit its weights.
    pub fn with_adapters(&self, adapters: &[u8]) -> Result<Self> {
        let fail = |e: String| bad(format!("the adapters file is unreadable: {e}"));
        if self.meta.model.lora.is_some() {
            return Err(bad("this model already has LoRA adapters"));
        }
        let (_, header) = SafeTensors::read_metadata(adapters).map_err(|e| fail(e.to_string()))?;
        let lora: crate::config::LoraConfig = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lora"))
            .ok_or_else(|| fail("it has no LoRA settings; is it an adapters file?".into()))
            .and_then(|json| serde_json::from_str(json).map_err(|e| fail(e.to_string())))?;
        let [base, extra] = [&self.weights[..], adapters]
            .map(|bytes| SafeTensors::deserialize(bytes).map_err(|e| fail(e.to_string())));
        let (base, extra) = (base?, extra?);
        let views: Vec<_> = base.tensors().into_iter().chain(extra.tensors()).collect();
        let info = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights = safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
        let mut meta = self.meta.clone();
        meta.model.lora = Some(lora);
        Ok(Self {
            meta,
            weights,
            optimizer: None,
        })
    }

    /// A trainer that continues this run on `data` from the saved step, optimizer state included.
    pub fn resume(&self, data: &Dataset, device: &Device) -> Result<Trainer> {
        let m = &self.meta;
        let preset = Preset {
            model: m.model.clone(),
            train: m.train.clone(),
        };
        let mut trainer = self.trainer(data, preset, device, m.step, m.elapsed, false)?;
        if let Some(bytes) = &self.optimizer {
            let device = trainer.device().clone().inner();
            let optim = decode_optimizer(bytes, trainer.model(), &device)?;
            trainer.set_optimizer(optim);
        }
        Ok(trainer)
    }

    /// [`Checkpoint::finetune_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finetune(&self, data: &Dataset, preset: Preset, device: &Device) -> Result<Trainer> {
        crate::backend::block_on(self.finetune_async(data, preset, device))
    }

    /// A new run from this checkpoint's weights and tokenizer on `data` with `preset`
    /// (finetuning): fresh optimizer state, step 0. `preset.model` is the checkpoint's model
    /// except for how it computes (kernels, precision), its task (a text model may become a chat
    /// model or a classifier, whose head starts at zero) and LoRA (new adapters start as a
    /// no-op; different adapters replace merged old ones).
    pub async fn finetune_async(
        &self,
        data: &Dataset,
        preset: Preset,
        device: &Device,
    ) -> Result<Trainer> {
        let (old, new) = (&self.meta.model, &preset.model);
        let mut same = old.clone();
        (same.kernels, same.mixed_precision) = (new.kernels, new.mixed_precision);
        (same.task, same.lora) = (new.task.clone(), new.lora.clone());
        if same != *new {
            return Err(Error::Config(
                "finetuning keeps the checkpoint's model: only training settings, kernels, \
                 precision, the task and LoRA may change"
                    .into(),
            ));
        }
        if old.lora.is_some() && old.lora != new.lora {
            let merged = self.merged_async(device).await?;
            return merged.trainer(data, preset, device, 0, 0.0, true);
        }
        self.trainer(data, preset, device, 0, 0.0, true)
    }

    fn trainer(
        &self,
        data: &Dataset,
        preset: Preset,
        device: &Device,
        step: usize,
        elapsed: f64,
        finetune: bool,
    ) -> Result<Trainer> {
        let tokenizer = self.checked_tokenizer()?;
        let device = device.clone().autodiff();
        let model = decode_weights(
            Gpt::new(&preset.model, preset.train.seed, &device),
            &self.weights,
            &self.meta.param_ids,
            finetune,
        )?;
        Trainer::with_model(model, preset, tokenizer, data, device, step, elapsed)
    }

    /// Parses the three parts; nothing is checked against a model until it is loaded.
    pub fn from_parts(
        meta_json: &[u8],
        weights: Vec<u8>,
        optimizer: Option<Vec<u8>>,
    ) -> Result<Self> {
        let meta: Meta = serde_json::from_slice(meta_json)
            .map_err(|e| bad(format!("{META_FILE} is not valid checkpoint metadata: {e}")))?;
        Ok(Self {
            meta,
            weights,
            optimizer,
        })
    }

    pub fn meta_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.meta).map_err(|e| bad(e.to_string()))
    }

    /// Writes `model.safetensors`, `checkpoint.json` and `optimizer.bpk` into `dir`. Each file is
    /// written to a temporary name and renamed, so a crash mid-save leaves the previous file whole.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_dir(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let write = |name: &str, bytes: &[u8]| write_atomic(dir, name, bytes);
        write(WEIGHTS_FILE, &self.weights)?;
        if let Some(opt) = &self.optimizer {
            write(OPTIMIZER_FILE, opt)?;
        }
        // The metadata goes last: it names the step the other two files belong to.
        write(META_FILE, self.meta_json()?.as_bytes())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| read_file(dir, name);
        let optimizer = dir
            .join(OPTIMIZER_FILE)
            .exists()
            .then(|| read(OPTIMIZER_FILE))
            .transpose()?;
        Self::from_parts(&read(META_FILE)?, read(WEIGHTS_FILE)?, optimizer)
    }
}

/// The bytes of `dir/name`; a missing or unreadable file is an error that names it.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_file(dir: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(name))
        .map_err(|e| bad(format!("cannot read {}: {e}", dir.join(name).display())))
}

/// Writes `dir/name` through a temporary file and a rename, so a crash mid-write leaves the
/// previous file whole.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn write_atomic(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// The values of an F32 tensor.
fn f32s(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name} is {:?}; this version reads F32",
            view.dtype()
        ));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Named tensors as safetensors bytes, read back from the device one at a time.
async fn encode(
    named: Vec<(String, Vec<usize>, Tensor<1>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut tensors = Vec::with_capacity(named.len());
    for (name, shape, flat) in named {
        let bytes: Vec<u8> = read_f32(flat)
            .await?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        tensors.push((name, shape, bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| bad(e.to_string()))?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| bad(e.to_string()))
}

/// The optimizer's moments, named after their parameters (PyTorch's AdamW state names).
async fn encode_optimizer(optim: &AdamW) -> Result<Vec<u8>> {
    let mut named = Vec::with_capacity(2 * optim.moments.len());
    for (path, m) in &optim.moments {
        for (kind, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
            named.push((format!("{path}.{kind}"), t.dims().to_vec(), t.clone()));
        }
    }
    let meta = HashMap::from([("steps".to_string(), optim.steps.to_string())]);
    encode(named, meta).await
}

/// Rebuilds the optimizer on `device`; every moment must belong to a parameter of `model` and
/// have its size.
fn decode_optimizer(bytes: &[u8], model: &Gpt, device: &Device) -> Result<AdamW> {
    let fail = |e: String| bad(format!("the optimizer state is unreadable: {e}"));
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| fail(e.to_string()))?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| fail(e.to_string()))?;
    let steps = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("steps"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("it does not say how many steps it has taken".into()))?;
    let mut collect = Collect::default();
    model.visit(&mut collect);
    let sizes: HashMap<String, usize> = collect
        .params
        .into_iter()
        .map(|(path, _, shape, _)| (path, shape.iter().product()))
        .collect();
    let read = |path: &str, kind: &str| -> Result<Tensor<1>> {
        let name = format!("{path}.{kind}");
        let view = tensors
            .tensor(&name)
            .map_err(|_| fail(format!("{name} is missing")))?;
        let data = f32s(&name, &view).map_err(fail)?;
        if data.len() != sizes[path] {
            return Err(fail(format!(
                "{name} has {} values but the parameter has {}",
                data.len(),
                sizes[path]
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [sizes[path]]),
            device,
        ))
    };
    let mut moments = BTreeMap::new();
    for name in tensors.names() {
        let path = name
            .strip_suffix(".exp_avg_sq")
            .or_else(|| name.strip_suffix(".exp_avg"))
            .filter(|path| sizes.contains_key(*path))
            .ok_or_else(|| fail(format!("{name} belongs to no parameter of this model")))?;
        if !moments.contains_key(path) {
            let m = Moments {
                exp_avg: read(path, "exp_avg")?,
                exp_avg_sq: read(path, "exp_avg_sq")?,
            };
            moments.insert(path.to_owned(), m);
        }
    }
    Ok(AdamW { steps, moments })
}

/// The model's parameters as safetensors bytes, and their ids by path.
async fn encode_weights(model: &Gpt) -> Result<(Vec<u8>, BTreeMap<String, u64>)> {
    let mut collect = Collect::default();
    model.visit(&mut collect);
    let mut ids = BTreeMap::new();
    let mut named = Vec::with_capacity(collect.params.len());
    for (name, id, shape, flat) in collect.params {
        ids.insert(name.clone(), id.val());
        named.push((name, shape, flat));
    }
    let info = HashMap::from([("format".to_string(), "pt".to_string())]);
    Ok((encode(named, info).await?, ids))
}

/// Loads safetensors bytes into `model`; every parameter must be present with its shape (when
/// finetuning: every parameter but the new parts, and the checkpoint may hold more, such as an
/// old classifier head).
fn decode_weights(
    model: Gpt,
    weights: &[u8],
    ids: &BTreeMap<String, u64>,
    finetune: bool,
) -> Result<Gpt> {
    let tensors = SafeTensors::deserialize(weights)
        .map_err(|e| bad(format!("the weights are unreadable: {e}")))?;
    let mut load = Load {
        path: Vec::new(),
        tensors: &tensors,
        ids,
        finetune,
        used: 0,
        error: None,
    };
    let model = model.map(&mut load);
    if let Some(e) = load.error {
        return Err(bad(e));
    }
    if !finetune && load.used != tensors.len() {
        return Err(bad(format!(
            "the weights hold {} tensors but the model has {} parameters",
            tensors.len(),
            load.used
        )));
    }
    Ok(model)
}
