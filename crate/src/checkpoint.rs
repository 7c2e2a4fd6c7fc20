//! Checkpoints: weights as safetensors, metadata as JSON (format version, configs, tokenizer,
//! step) and the optimizer state, so a run resumes exactly where it stopped.
//!
//! The in-memory form ([`Checkpoint`]) is what the page stores; natively it is a directory with
//! the three files in a version folder ([`Checkpoint::save_dir`], [`Checkpoint::load_dir`]).
//!
//! Tensors are named by module path with PyTorch's parameter names (`h.0.ln_1.weight`,
//! `h.0.attn.c_attn.weight`), never by Rust type or variant names, so a refactor of the model
//! code does not change the format. Format 2 named norms by Burn's fields and Kiln's enum
//! variant (`h.0.ln_1.Layer.gamma`) and carried two fields nothing read (`rng`, `param_ids`);
//! it still loads. A parameter the model holds in row parts (the token embedding on a device
//! with small bindings, `wte.weight.0`, `wte.weight.1`, ...) is stored whole (`wte.weight`), so
//! a checkpoint does not depend on the device that wrote it.

use std::collections::{BTreeMap, HashMap, HashSet};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
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

/// Bumped whenever the layout of a checkpoint changes. Version 2 is read too (see the module
/// doc); others are refused by name.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this Kiln reads.
const OLDEST_READABLE: u32 = 2;
pub(crate) const FORMAT: &str = "kiln-checkpoint";

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "checkpoint.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// `checkpoint.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub format_version: u32,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// The tokenizer's own JSON (`tokenizer.json`), embedded.
    pub tokenizer: String,
    /// Optimizer steps taken. With `train.seed` it is the whole random state: batches and
    /// dropout masks are drawn from `(seed, step)` alone.
    pub step: usize,
    pub elapsed: f64,
}

/// A saved model, with everything needed to resume training.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: Meta,
    /// safetensors bytes, tensors named by module path (`h.0.attn.c_attn.weight`).
    pub weights: Vec<u8>,
    /// AdamW's moments as safetensors: each parameter's two moments flattened to one dimension,
    /// named after the parameter (`<name>.exp_avg`, `<name>.exp_avg_sq`, PyTorch's state names),
    /// and the step count in the header's `steps`; absent in an inference-only export.
    pub optimizer: Option<Vec<u8>>,
}

pub(crate) fn bad(msg: impl Into<String>) -> Error {
    Error::Checkpoint(msg.into())
}

/// The name a parameter at Kiln module `path` has in a checkpoint of `version`: the path, with
/// a norm's Burn field and Kiln enum variant (`ln_1.Layer.gamma`) as PyTorch names it
/// (`ln_1.weight`) from version 3 on.
pub(crate) fn stored_name(path: &str, version: u32) -> String {
    if let Some((whole, _)) = row_part(path) {
        return whole.to_owned();
    }
    if version < 3 {
        return path.to_owned();
    }
    for (kiln, torch) in [
        (".Layer.gamma", ".weight"),
        (".Layer.beta", ".bias"),
        (".Rms.gamma", ".weight"),
    ] {
        if let Some(module) = path.strip_suffix(kiln) {
            return format!("{module}{torch}");
        }
    }
    path.to_owned()
}

/// The whole parameter and the index of the part, for a part of one held in row parts.
fn row_part(path: &str) -> Option<(&str, usize)> {
    let (whole, index) = path.rsplit_once('.')?;
    let index = index.parse().ok()?;
    (whole == "wte.weight").then_some((whole, index))
}

/// Flat tensors by module path, with the parts of one held in row parts gathered in order
/// (sizes along the first dimension added up), each named by `name` of its (whole) path.
fn gathered(
    params: Vec<(String, Vec<usize>, Tensor<1>)>,
    name: impl Fn(&str) -> String,
) -> Vec<Gathered> {
    let mut out: Vec<Gathered> = Vec::new();
    let mut parts: Vec<(String, usize, Vec<usize>, Tensor<1>)> = Vec::new();
    for (path, shape, flat) in params {
        match row_part(&path) {
            Some((whole, index)) => parts.push((name(whole), index, shape, flat)),
            None => out.push((name(&path), shape, vec![flat])),
        }
    }
    parts.sort_by_key(|(_, index, _, _)| *index);
    for (whole, _, shape, flat) in parts {
        match out.iter_mut().find(|(name, _, _)| *name == whole) {
            Some((_, total, flats)) => {
                total[0] += shape[0];
                flats.push(flat);
            }
            None => out.push((whole, shape, vec![flat])),
        }
    }
    out
}

/// A stored tensor: its name, its shape, and its values as the flat parts they are held in.
type Gathered = (String, Vec<usize>, Vec<Tensor<1>>);

/// Collects every float parameter, flattened, with its dotted module path and shape.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    params: Vec<(String, Vec<usize>, Tensor<1>)>,
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
        self.params.push((self.path.join("."), shape, flat));
    }
}

/// Replaces every float parameter with the tensor saved under its name.
struct Load<'a> {
    path: Vec<String>,
    tensors: &'a SafeTensors<'a>,
    /// The checkpoint's format version, which decides the names.
    version: u32,
    /// Finetuning: parts the new model adds (a classifier's head, LoRA adapters) keep their
    /// fresh values where the checkpoint has none of that shape.
    finetune: bool,
    /// The stored tensors read so far.
    used: HashSet<String>,
    /// For a tensor held in row parts, the rows read so far.
    rows_read: HashMap<String, usize>,
    error: Option<String>,
}

/// Whether the parameter at `path` is one that finetuning may add to a model.
fn is_new_part(path: &str) -> bool {
    crate::model::is_classifier_head(path) || crate::lora::is_adapter(path)
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let name = stored_name(&path, self.version);
        let rows = row_part(&path).map(|_| *self.rows_read.get(&name).unwrap_or(&0));
        match self.read::<D>(&name, &param, rows) {
            Err(_) if self.finetune && is_new_part(&name) => param,
            Ok(tensor) => {
                if rows.is_some() {
                    *self.rows_read.entry(name.clone()).or_default() += tensor.dims()[0];
                }
                self.used.insert(name);
                let (id, _, mapper) = param.consume();
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
    /// The stored tensor `name` for `param`, or for a part of one held in row parts, its rows
    /// from `rows` on.
    fn read<const D: usize>(
        &self,
        name: &str,
        param: &Param<Tensor<D>>,
        rows: Option<usize>,
    ) -> Result<Tensor<D>, String> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| format!("the weights have no tensor {name}"))?;
        let expected = param.lazy_shape().dims::<D>().to_vec();
        let whole = match rows {
            Some(start) => {
                let mut whole = expected.clone();
                whole[0] = view.shape().first().copied().unwrap_or(0);
                (start + expected[0] <= whole[0]).then_some(whole)
            }
            None => Some(expected.clone()),
        };
        if whole.as_deref() != Some(view.shape()) {
            return Err(format!(
                "tensor {name} has shape {:?} in the checkpoint but the model expects {:?}",
                view.shape(),
                whole.unwrap_or(expected)
            ));
        }
        let row = expected[1..].iter().product::<usize>();
        let start = rows.unwrap_or(0) * row;
        let data = f32s_in(name, &view, start..start + expected[0] * row)?;
        let device = param.lazy_device();
        let mut tensor = Tensor::<D>::from_data(TensorData::new(data, expected), &device);
        if device.is_autodiff() {
            tensor = tensor.require_grad();
        }
        Ok(tensor)
    }
}

impl Checkpoint {
    /// A new model of `preset`'s shape with `tokenizer` (whose size sets `vocab_size`): random
    /// weights drawn as [`Trainer::new`] draws them, step 0, no optimizer state. To pretrain a
    /// known shape (GPT-2 small's) from scratch, or to test with a model of a real one's shape.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn init(mut preset: Preset, tokenizer: &Tokenizer) -> Result<Self> {
        preset.model.vocab_size = tokenizer.vocab_size();
        preset.validate()?;
        let device = Device::flex();
        crate::memory::check_fits(&preset.model, None, &device)?;
        let model = Gpt::new(&preset.model, preset.train.seed, &device);
        Ok(Self {
            meta: Meta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model: preset.model,
                train: preset.train,
                tokenizer: tokenizer.to_json()?,
                step: 0,
                elapsed: 0.0,
            },
            weights: crate::backend::block_on(encode_weights(&model))?,
            optimizer: None,
        })
    }

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
        let weights = encode_weights(trainer.model()).await?;
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
            },
            weights,
            optimizer,
        })
    }

    /// Checks the metadata and reads the tokenizer, which must fit the model's vocabulary.
    ///
    /// Nothing is allocated for the model before its configuration is known to match the
    /// weights file: a `checkpoint.json` describing a larger model than the weights hold (by
    /// mistake or on purpose) is refused here, not by running out of memory.
    fn checked_tokenizer(&self) -> Result<Tokenizer> {
        let m = &self.meta;
        if m.format != FORMAT {
            return Err(bad(format!(
                "this is not a Kiln checkpoint (format \"{}\")",
                m.format
            )));
        }
        if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&m.format_version) {
            return Err(bad(format!(
                "format version {} cannot be read by this Kiln, which reads versions \
                 {OLDEST_READABLE} to {FORMAT_VERSION}",
                m.format_version
            )));
        }
        m.model.validate()?;
        let (_, header) = SafeTensors::read_metadata(&self.weights)
            .map_err(|e| bad(format!("the weights are unreadable: {e}")))?;
        let stored: usize = header
            .tensors()
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        let described = Gpt::num_params_of(&m.model);
        if described != stored {
            return Err(bad(format!(
                "{META_FILE} describes a model of {described} parameters but the weights hold \
                 {stored} values; they do not belong together"
            )));
        }
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
        crate::memory::check_fits(&self.meta.model, None, device)?;
        let model = decode_weights(
            Gpt::new(&self.meta.model, 0, device),
            &self.weights,
            self.meta.format_version,
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
        let weights = encode_weights(&model).await?;
        let mut meta = self.meta.clone();
        (meta.model, meta.format_version) = (model.config().clone(), FORMAT_VERSION);
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
            let optim = decode_optimizer(bytes, m.format_version, trainer.model(), &device)?;
            trainer.set_optimizer(optim);
        }
        Ok(trainer)
    }

    /// [`Checkpoint::resume`] where training this model as saved fits `device`. Where it does
    /// not but LoRA does ([`fitting_lora`]), a LoRA run from its weights (step 0, fresh
    /// adapters, which change nothing until they train), with the sentence that says so: a model
    /// too large to train in full here (GPT-2 small in wasm32's 4 GiB) still opens to generate
    /// and finetune.
    pub fn resume_fitting(
        &self,
        data: &Dataset,
        device: &Device,
    ) -> Result<(Trainer, Option<String>)> {
        let fused = self.meta.model.kernels && crate::kernels::supported(device);
        let room = crate::memory::Room::of(device);
        match fitting_lora(&self.meta, fused, &room)? {
            None => Ok((self.resume(data, device)?, None)),
            Some((preset, note)) => Ok((
                self.trainer(data, preset, device, 0, 0.0, true)?,
                Some(note),
            )),
        }
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
        crate::memory::check_fits(&preset.model, Some(&preset.train), device)?;
        let device = device.clone().autodiff();
        let model = decode_weights(
            Gpt::new(&preset.model, preset.train.seed, &device),
            &self.weights,
            self.meta.format_version,
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

    /// Saves into `dir` atomically as a set: the three files go into a new version folder
    /// (`dir/step-<step>-<n>/`), then the pointer `dir/current` is switched to it with one
    /// rename, then older versions are removed. A crash at any point leaves `current` naming a
    /// whole checkpoint, the previous one until the switch (as the page's OPFS storage does).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_dir(&self, dir: &std::path::Path) -> Result<()> {
        self.save_dir_with(dir, |_| Ok(()))
    }

    /// [`Checkpoint::save_dir`], calling `after(file)` once each file is written and after the
    /// switch (`CURRENT_FILE`): an error from it stops the save there, as a crash would.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_dir_with(
        &self,
        dir: &std::path::Path,
        mut after: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let version = new_version_dir(dir, self.meta.step)?;
        let path = dir.join(&version);
        let mut write = |name: &str, bytes: &[u8]| {
            write_atomic(&path, name, bytes)?;
            after(name)
        };
        write(WEIGHTS_FILE, &self.weights)?;
        if let Some(opt) = &self.optimizer {
            write(OPTIMIZER_FILE, opt)?;
        }
        write(META_FILE, self.meta_json()?.as_bytes())?;
        // The switch: until this rename the previous version is the checkpoint.
        write_atomic(dir, CURRENT_FILE, version.as_bytes())?;
        after(CURRENT_FILE)?;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let stale = name.starts_with(VERSION_PREFIX) && name != version;
            if stale || name.ends_with(".tmp") || LEGACY_FILES.contains(&name.as_ref()) {
                let p = dir.join(name.as_ref());
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        Ok(())
    }

    /// Reads the checkpoint `dir/current` names, or (a checkpoint written by an older Kiln, or
    /// assembled by hand) the three files directly in `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        let dir = &current_dir(dir)?;
        let read = |name: &str| read_file(dir, name);
        let optimizer = dir
            .join(OPTIMIZER_FILE)
            .exists()
            .then(|| read(OPTIMIZER_FILE))
            .transpose()?;
        Self::from_parts(&read(META_FILE)?, read(WEIGHTS_FILE)?, optimizer)
    }

    /// Whether `dir` holds a checkpoint (to resume rather than start a run there).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn exists_in(dir: &std::path::Path) -> bool {
        current_dir(dir).is_ok_and(|d| d.join(META_FILE).exists())
    }
}

/// The pointer file of a checkpoint directory: the name of its current version folder.
pub const CURRENT_FILE: &str = "current";
#[cfg(not(target_arch = "wasm32"))]
const VERSION_PREFIX: &str = "step-";
/// Files a version-less (older) save left directly in the directory, superseded by a new save.
#[cfg(not(target_arch = "wasm32"))]
const LEGACY_FILES: [&str; 3] = [WEIGHTS_FILE, META_FILE, OPTIMIZER_FILE];

/// The folder holding the files of the checkpoint in `dir`.
#[cfg(not(target_arch = "wasm32"))]
fn current_dir(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    match std::fs::read_to_string(dir.join(CURRENT_FILE)) {
        Ok(version) => {
            let version = version.trim();
            if !version.starts_with(VERSION_PREFIX) || version.contains(['/', '\\']) {
                return Err(bad(format!(
                    "{} names \"{version}\", which is not a checkpoint version",
                    dir.join(CURRENT_FILE).display()
                )));
            }
            Ok(dir.join(version))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dir.to_path_buf()),
        Err(e) => Err(bad(format!(
            "cannot read {}: {e}",
            dir.join(CURRENT_FILE).display()
        ))),
    }
}

/// Creates a fresh, empty version folder in `dir` and returns its name.
#[cfg(not(target_arch = "wasm32"))]
fn new_version_dir(dir: &std::path::Path, step: usize) -> Result<String> {
    let mut n = 0;
    loop {
        let name = format!("{VERSION_PREFIX}{step}-{n}");
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e.into()),
        }
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
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    // On disk before the rename makes it visible, so a power cut cannot leave a torn file.
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// The values of an F32 tensor.
pub(crate) fn f32s(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<Vec<f32>, String> {
    f32s_in(name, view, 0..view.data().len() / 4)
}

/// The values `range` (in elements) of an F32 tensor, flattened.
fn f32s_in(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    range: std::ops::Range<usize>,
) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name} is {:?}; this version reads F32",
            view.dtype()
        ));
    }
    Ok(view.data()[range.start * 4..range.end * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Named tensors as safetensors bytes, read back from the device one part at a time.
async fn encode(named: Vec<Gathered>, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let mut tensors = Vec::with_capacity(named.len());
    for (name, shape, flats) in named {
        let mut bytes = Vec::with_capacity(4 * shape.iter().product::<usize>());
        for flat in flats {
            bytes.extend(read_f32(flat).await?.iter().flat_map(|x| x.to_le_bytes()));
        }
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
    for kind in ["exp_avg", "exp_avg_sq"] {
        let moments = optim.moments.iter().map(|(path, m)| {
            let t = if kind == "exp_avg" {
                &m.exp_avg
            } else {
                &m.exp_avg_sq
            };
            (path.clone(), t.dims().to_vec(), t.clone())
        });
        named.extend(gathered(moments.collect(), |path| {
            format!("{}.{kind}", stored_name(path, FORMAT_VERSION))
        }));
    }
    let meta = HashMap::from([("steps".to_string(), optim.steps.to_string())]);
    encode(named, meta).await
}

/// Rebuilds the optimizer (saved in format `version`) on `device`; every moment must belong to
/// a parameter of `model` and have its size.
fn decode_optimizer(bytes: &[u8], version: u32, model: &Gpt, device: &Device) -> Result<AdamW> {
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
    // Stored name -> (Kiln path, number of values) of each part it is held in, in order.
    let mut params: HashMap<String, Vec<(String, usize)>> = HashMap::new();
    for (path, shape, _) in collect.params {
        let size = shape.iter().product();
        params
            .entry(stored_name(&path, version))
            .or_default()
            .push((path, size));
    }
    // The moments of `parts`, read from the stored tensor and cut into the parts.
    let read = |name: &str, kind: &str, parts: &[(String, usize)]| -> Result<Vec<Tensor<1>>> {
        let name = format!("{name}.{kind}");
        let view = tensors
            .tensor(&name)
            .map_err(|_| fail(format!("{name} is missing")))?;
        let data = f32s(&name, &view).map_err(fail)?;
        let size: usize = parts.iter().map(|(_, n)| n).sum();
        if data.len() != size {
            return Err(fail(format!(
                "{name} has {} values but the parameter has {size}",
                data.len(),
            )));
        }
        let mut start = 0;
        Ok(parts
            .iter()
            .map(|&(_, n)| {
                start += n;
                let part = data[start - n..start].to_vec();
                Tensor::from_data(TensorData::new(part, [n]), device)
            })
            .collect())
    };
    let mut moments = BTreeMap::new();
    for name in tensors.names() {
        let (stored, parts) = name
            .strip_suffix(".exp_avg_sq")
            .or_else(|| name.strip_suffix(".exp_avg"))
            .and_then(|stored| params.get_key_value(stored))
            .ok_or_else(|| fail(format!("{name} belongs to no parameter of this model")))?;
        if !moments.contains_key(&parts[0].0) {
            let exp_avg = read(stored, "exp_avg", parts)?;
            let exp_avg_sq = read(stored, "exp_avg_sq", parts)?;
            for (((path, _), exp_avg), exp_avg_sq) in parts.iter().zip(exp_avg).zip(exp_avg_sq) {
                moments.insert(
                    path.clone(),
                    Moments {
                        exp_avg,
                        exp_avg_sq,
                    },
                );
            }
        }
    }
    Ok(AdamW { steps, moments })
}

/// `None` when training `meta`'s model with its settings fits `room`; else the LoRA run that
/// fits (adapters on q and v, rank 8, batch 1) and the sentence that says so; else the refusal.
pub fn fitting_lora(
    meta: &Meta,
    fused: bool,
    room: &crate::memory::Room,
) -> Result<Option<(Preset, String)>> {
    use crate::config::{Arch, LoraConfig, LoraTarget};
    use crate::memory::{check, need};
    let whole = need(&meta.model, Some(&meta.train), fused);
    let Err(full) = check(&whole, room) else {
        return Ok(None);
    };
    let mut preset = Preset {
        model: meta.model.clone(),
        train: meta.train.clone(),
    };
    preset.model.lora = Some(LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
    });
    preset.train.batch_size = 1;
    let lora = need(&preset.model, Some(&preset.train), fused);
    let (Some((memory, source)), None, Arch::Gpt, true) = (
        room.memory,
        &meta.model.lora,
        meta.model.arch,
        check(&lora, room).is_ok(),
    ) else {
        return Err(full);
    };
    let note = format!(
        "Training all its weights at batch size {} needs about {:.0} MB, and the device has \
         {:.0} MB ({source}): it trains LoRA adapters (q, v; rank 8) at batch size 1 instead, \
         which need about {:.0} MB.",
        meta.train.batch_size,
        whole.total / 1e6,
        memory / 1e6,
        lora.total / 1e6
    );
    Ok(Some((preset, note)))
}

/// The model's parameters as safetensors bytes, named as [`stored_name`] says.
async fn encode_weights(model: &Gpt) -> Result<Vec<u8>> {
    let mut collect = Collect::default();
    model.visit(&mut collect);
    let named = gathered(collect.params, |path| stored_name(path, FORMAT_VERSION));
    let info = HashMap::from([("format".to_string(), "pt".to_string())]);
    encode(named, info).await
}

/// Loads safetensors bytes (of format `version`) into `model`; every parameter must be present
/// with its shape (when finetuning: every parameter but the new parts, and the checkpoint may
/// hold more, such as an old classifier head).
fn decode_weights(model: Gpt, weights: &[u8], version: u32, finetune: bool) -> Result<Gpt> {
    let tensors = SafeTensors::deserialize(weights)
        .map_err(|e| bad(format!("the weights are unreadable: {e}")))?;
    let mut load = Load {
        path: Vec::new(),
        tensors: &tensors,
        version,
        finetune,
        used: HashSet::new(),
        rows_read: HashMap::new(),
        error: None,
    };
    let model = model.map(&mut load);
    if let Some(e) = load.error {
        return Err(bad(e));
    }
    for (name, rows) in &load.rows_read {
        let stored = tensors.tensor(name).map(|v| v.shape()[0]).unwrap_or(0);
        if *rows != stored {
            return Err(bad(format!(
                "tensor {name} has {stored} rows in the checkpoint but the model expects {rows}"
            )));
        }
    }
    if !finetune && load.used.len() != tensors.len() {
        return Err(bad(format!(
            "the weights hold {} tensors but the model has {} parameters",
            tensors.len(),
            load.used.len()
        )));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint whose every part says which step it belongs to.
    fn at_step(step: usize) -> Checkpoint {
        let preset = crate::config::preset("tiny").unwrap();
        Checkpoint {
            meta: Meta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model: preset.model,
                train: preset.train,
                tokenizer: String::new(),
                step,
                elapsed: 0.0,
            },
            weights: vec![step as u8; 64],
            optimizer: Some(vec![step as u8; 32]),
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-ckpt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The step of the checkpoint in `dir`, after checking its three parts belong together.
    fn loaded_step(dir: &std::path::Path) -> usize {
        let c = Checkpoint::load_dir(dir).unwrap();
        assert_eq!(
            c.weights,
            vec![c.meta.step as u8; 64],
            "weights of another step"
        );
        assert_eq!(
            c.optimizer,
            Some(vec![c.meta.step as u8; 32]),
            "optimizer of another step"
        );
        c.meta.step
    }

    /// A save killed after each of its files in turn leaves the previous checkpoint whole; one
    /// killed after the switch leaves the new one whole.
    #[test]
    fn an_interrupted_save_leaves_a_whole_checkpoint() {
        let dir = temp("interrupted");
        at_step(1).save_dir(&dir).unwrap();
        for stop in [WEIGHTS_FILE, OPTIMIZER_FILE, META_FILE, CURRENT_FILE] {
            let killed = at_step(2).save_dir_with(&dir, |file| match file == stop {
                true => Err(bad("killed")),
                false => Ok(()),
            });
            assert!(killed.is_err());
            let expected = if stop == CURRENT_FILE { 2 } else { 1 };
            assert_eq!(loaded_step(&dir), expected, "killed after {stop}");
            assert!(Checkpoint::exists_in(&dir));
            at_step(1).save_dir(&dir).unwrap();
            assert_eq!(loaded_step(&dir), 1);
        }
        // A finished save removes what killed saves and older versions left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}"); // `current` and one version
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A directory of the three files (an older Kiln's save) loads, and a new save replaces it.
    #[test]
    fn a_flat_checkpoint_directory_loads_and_is_replaced_by_a_versioned_save() {
        let dir = temp("flat");
        std::fs::create_dir_all(&dir).unwrap();
        let old = at_step(3);
        std::fs::write(dir.join(WEIGHTS_FILE), &old.weights).unwrap();
        std::fs::write(dir.join(OPTIMIZER_FILE), old.optimizer.as_ref().unwrap()).unwrap();
        std::fs::write(dir.join(META_FILE), old.meta_json().unwrap()).unwrap();
        assert_eq!(loaded_step(&dir), 3);
        at_step(4).save_dir(&dir).unwrap();
        assert_eq!(loaded_step(&dir), 4);
        assert!(!dir.join(WEIGHTS_FILE).exists());
        assert!(!Checkpoint::exists_in(&dir.join("nothing")));
        std::fs::write(dir.join(CURRENT_FILE), "../elsewhere").unwrap();
        let err = Checkpoint::load_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("not a checkpoint version"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
