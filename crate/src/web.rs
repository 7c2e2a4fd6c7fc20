//! The browser API: thin wasm-bindgen wrappers over the library for `web/worker.js`.
//!
//! The worker calls one function at a time and awaits it, so the state is a thread-local. Async
//! calls take the trainer out across their awaits and always put it back: a failed call returns
//! an error for the page to show and leaves the run as it was.

use std::cell::RefCell;

use burn::prelude::*;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::backend::{self, BackendKind};
use crate::checkpoint::Checkpoint;
use crate::config::{LoraConfig, Pooling, Preset, SampleConfig, Task, preset};
use crate::data::{Dataset, Tokenizer, TokenizerKind};
use crate::memory::Need;
use crate::model::Gpt;
use crate::train::Trainer;
use crate::{generate, inspect};

#[derive(Default)]
struct State {
    /// The WebGPU device, once `init_webgpu` found an adapter.
    gpu: Option<Device>,
    /// The backend new trainers are built on.
    backend: Option<BackendKind>,
    data: Option<Dataset>,
    tokenizer: Option<Tokenizer>,
    trainer: Option<Trainer>,
    /// A `model.safetensors` arriving in pieces ([`upload_begin`], [`upload_chunk`]): the
    /// file's only whole copy, in wasm memory.
    upload: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// Every error crosses to JavaScript as an `Error` whose message is the library's sentence.
fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn json(value: &impl serde::Serialize) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(js)
}

fn missing(what: &str) -> JsError {
    JsError::new(&format!(
        "no {what} yet: {}",
        match what {
            "data" => "load some text first",
            "tokenizer" => "build a tokenizer first",
            _ => "configure a model first",
        }
    ))
}

fn device_of(s: &State, kind: BackendKind) -> Result<Device, JsError> {
    match kind {
        BackendKind::Cpu => Ok(Device::flex()),
        BackendKind::Wgpu => s.gpu.clone().ok_or_else(|| {
            JsError::new("WebGPU is not available in this browser; use the CPU backend")
        }),
    }
}

fn current_device() -> Result<(BackendKind, Device), JsError> {
    STATE.with_borrow(|s| {
        let kind = s.backend.unwrap_or(BackendKind::Cpu);
        Ok((kind, device_of(s, kind)?))
    })
}

/// Runs `f` on the trainer, which is out of the state while `f` awaits and back afterwards.
async fn with_trainer<T>(
    f: impl AsyncFnOnce(&mut Trainer) -> crate::Result<T>,
) -> Result<T, JsError> {
    let mut trainer = STATE
        .with_borrow_mut(|s| s.trainer.take())
        .ok_or_else(|| missing("model"))?;
    let out = f(&mut trainer).await;
    STATE.with_borrow_mut(|s| s.trainer = Some(trainer));
    out.map_err(js)
}

/// Runs `f` on the trainer's model for inference (no autodiff, no dropout), its tokenizer and
/// device: generation, scoring and classification.
async fn with_model<T>(
    f: impl AsyncFnOnce(&Gpt, &Tokenizer, &Device) -> crate::Result<T>,
) -> Result<T, JsError> {
    with_trainer(async |t| {
        let model = t.model().valid();
        let device = t.device().clone().inner();
        f(&model, t.tokenizer(), &device).await
    })
    .await
}

/// A JavaScript object with these fields.
fn object(fields: Vec<(&str, JsValue)>) -> Result<Object, JsError> {
    let out = Object::new();
    for (key, value) in fields {
        Reflect::set(&out, &key.into(), &value)
            .map_err(|_| JsError::new(&format!("could not set {key} on the result object")))?;
    }
    Ok(out)
}

/// A panic is a bug, and it leaves this module unusable (wasm has no unwinding): besides the
/// console's stack trace, its message goes to the worker's `self.kilnPanic(message)`, so the
/// page can say what happened, start a fresh worker and offer the last checkpoint.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let report = Reflect::get(&js_sys::global(), &JsValue::from_str("kilnPanic"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        if let Some(report) = report {
            let _ = report.call1(&JsValue::NULL, &JsValue::from_str(&info.to_string()));
        }
    }));
}

/// One forward and backward pass of a fixed model on WebGPU against the same on the CPU
/// backend: a [`crate::verify::Agreement`] as JSON.
#[wasm_bindgen(js_name = crossCheck)]
pub async fn cross_check() -> Result<String, JsError> {
    let gpu = STATE.with_borrow(|s| device_of(s, BackendKind::Wgpu))?;
    json(&crate::verify::cross_check(&gpu).await.map_err(js)?)
}

/// The current model's loss on a validation batch and its logits for one row, on its device
/// and on the CPU backend: a [`crate::verify::Agreement`] as JSON.
#[wasm_bindgen(js_name = checkRun)]
pub async fn check_run() -> Result<String, JsError> {
    json(&with_trainer(async |t| t.check_against_cpu_async().await).await?)
}

/// Tests only: multiplies the fused attention kernel's output by `factor` from now on (1
/// restores it), as a faulty GPU would compute; see [`crate::verify::inject_fault`].
#[wasm_bindgen(js_name = debugCorruptKernel)]
pub fn debug_corrupt_kernel(factor: f32) {
    crate::verify::inject_fault(factor);
}

/// Panics on purpose: the page's tests use it to prove that a panic is reported and recovered
/// from. Nothing in the page calls it.
#[wasm_bindgen(js_name = debugPanic)]
pub fn debug_panic() {
    panic!("a panic on purpose (debugPanic), to test recovery");
}

/// Opens Burn's wgpu runtime on the browser's WebGPU adapter; returns its description.
/// `memory_gb` (`navigator.deviceMemory`) bounds the models it accepts: WebGPU tells a page
/// nothing of its GPU's memory.
#[wasm_bindgen(js_name = initWebgpu)]
pub async fn init_webgpu(memory_gb: Option<f64>) -> Result<String, JsError> {
    if let Some(gb) = memory_gb.filter(|gb| gb.is_finite() && *gb > 0.0) {
        crate::memory::set_browser_memory((gb * (1u64 << 30) as f64) as u64);
    }
    if let Some(gpu) = STATE.with_borrow(|s| s.gpu.clone()) {
        return Ok(backend::describe(BackendKind::Wgpu, &gpu));
    }
    let gpu = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU could not be started: {e}")))?;
    let described = backend::describe(BackendKind::Wgpu, &gpu);
    STATE.with_borrow_mut(|s| s.gpu = Some(gpu));
    Ok(described)
}

/// Records whether the WebGPU device has `subgroups`, which the worker asks for on wgpu's behalf
/// (wgpu 30 does not know the feature's name, so the device's features as wgpu reports them
/// never include it).
#[wasm_bindgen(js_name = noteSubgroups)]
pub fn note_subgroups(has: bool) {
    crate::kernels::note_subgroups(has);
}

/// Chooses the backend ("cpu" or "wgpu"). A model that exists moves over through a checkpoint,
/// optimizer state and step included, so switching mid-run continues the same run.
#[wasm_bindgen(js_name = useBackend)]
pub async fn use_backend(kind: String) -> Result<(), JsError> {
    let kind: BackendKind = kind.parse().map_err(js)?;
    let device = STATE.with_borrow(|s| device_of(s, kind))?;
    if STATE.with_borrow(|s| s.trainer.is_some()) {
        let ckpt = with_trainer(async |t| Checkpoint::from_trainer_async(t).await).await?;
        let moved = on_data(|data| ckpt.resume(data, &device))?;
        STATE.with_borrow_mut(|s| s.trainer = Some(moved));
    }
    STATE.with_borrow_mut(|s| s.backend = Some(kind));
    Ok(())
}

/// `open(data)` on the current data, which the model's tokenizer must read.
fn on_data<T>(open: impl FnOnce(&Dataset) -> crate::Result<T>) -> Result<T, JsError> {
    STATE.with_borrow(|s| {
        let data = s.data.as_ref().ok_or_else(|| missing("data"))?;
        open(data).map_err(|e| match e {
            crate::Error::Tokenizer(why) => JsError::new(&format!(
                "this model cannot read the loaded text ({why}). Load the text it was trained on, \
                 or another it can read, then load the model again"
            )),
            e => js(e),
        })
    })
}

/// Loads training data from one or more files (name + bytes): text files, or one `.jsonl` /
/// `.csv` of examples. Returns `{files, bytes, kind, train, val, classes?}` as JSON (`train` and
/// `val` count characters of text, or examples), plus `preset` when finetuning. The previous
/// data, tokenizer and model are replaced only when the new data is usable.
///
/// With `finetune` and a model present, the model stays and starts a new run on this data (step
/// 0, fresh optimizer state, same schedule): labelled examples make it a classifier pooling as
/// `pooling` says ("last" or "mean"), instructions a chat model; `lora_json` (a
/// [`LoraConfig`]) trains adapters only. The text must fit its tokenizer, or `unknown` names the
/// character that characters new to a char tokenizer become.
#[wasm_bindgen(js_name = loadCorpus)]
pub async fn load_corpus(
    names: Vec<String>,
    files: Vec<Uint8Array>,
    finetune: bool,
    unknown: Option<String>,
    pooling_name: String,
    lora_json: Option<String>,
) -> Result<String, JsError> {
    let files: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .zip(files.iter().map(Uint8Array::to_vec))
        .collect();
    let data = Dataset::from_files(&files).map_err(js)?;
    let lora: Option<LoraConfig> = lora_json
        .map(|j| serde_json::from_str(&j))
        .transpose()
        .map_err(js)?;
    let mut stats = data.stats();
    stats["files"] = files.len().into();
    stats["bytes"] = files.iter().map(|(_, b)| b.len()).sum::<usize>().into();
    if finetune && STATE.with_borrow(|s| s.trainer.is_some()) {
        let mut ckpt = with_trainer(async |t| Checkpoint::from_trainer_async(t).await).await?;
        if let Some(c) = unknown.and_then(|u| u.chars().next()) {
            ckpt.map_unknown(c).map_err(js)?;
        }
        let mut preset = Preset {
            model: ckpt.meta.model.clone(),
            train: ckpt.meta.train.clone(),
        };
        if let Dataset::Examples(_) = &data {
            preset.model.task = data.task(pooling_name.parse().map_err(js)?);
        }
        preset.model.lora = lora;
        let (_, device) = current_device()?;
        let trainer = ckpt
            .finetune_async(&data, preset, &device)
            .await
            .map_err(js)?;
        stats["preset"] = serde_json::to_value(trainer.preset()).map_err(js)?;
        STATE.with_borrow_mut(|s| {
            s.data = Some(data);
            s.trainer = Some(trainer);
        });
    } else {
        STATE.with_borrow_mut(|s| {
            s.data = Some(data);
            s.tokenizer = None;
            s.trainer = None;
        });
    }
    json(&stats)
}

/// Builds a tokenizer on the corpus from `{"kind":"char"}` or
/// `{"kind":"bpe"|"wordpiece","vocab_size":N}`. Returns `{vocabSize}` as JSON.
#[wasm_bindgen(js_name = buildTokenizer)]
pub fn build_tokenizer(kind_json: &str) -> Result<String, JsError> {
    let kind: TokenizerKind = serde_json::from_str(kind_json).map_err(js)?;
    let tokenizer = STATE.with_borrow(|s| {
        let data = s.data.as_ref().ok_or_else(|| missing("data"))?;
        Tokenizer::train(kind, &data.text()).map_err(js)
    })?;
    let vocab_size = tokenizer.vocab_size();
    STATE.with_borrow_mut(|s| {
        s.tokenizer = Some(tokenizer);
        s.trainer = None;
    });
    json(&serde_json::json!({ "vocabSize": vocab_size }))
}

/// A preset by name, as JSON, for the page's editable fields.
#[wasm_bindgen(js_name = presetJson)]
pub fn preset_json(name: &str) -> Result<String, JsError> {
    json(&preset(name).map_err(js)?)
}

/// The preset with the tokenizer's vocabulary and the data's task (a classifier keeps the
/// preset's pooling), checked against the device, and its memory estimate; what both `describe`
/// and `configure` use.
fn checked_preset(preset_json: &str) -> Result<(Preset, Need), JsError> {
    let mut preset: Preset = serde_json::from_str(preset_json).map_err(js)?;
    let pooling = match preset.model.task {
        Task::Classify { pooling, .. } => pooling,
        _ => Pooling::default_for(preset.model.arch),
    };
    (preset.model.vocab_size, preset.model.task) = STATE.with_borrow(|s| {
        let tokenizer = s.tokenizer.as_ref().ok_or_else(|| missing("tokenizer"))?;
        let data = s.data.as_ref().ok_or_else(|| missing("data"))?;
        Ok::<_, JsError>((tokenizer.vocab_size(), data.task(pooling)))
    })?;
    preset.validate().map_err(js)?;
    let (_, device) = current_device()?;
    let need =
        crate::memory::check_fits(&preset.model, Some(&preset.train), &device).map_err(js)?;
    Ok((preset, need))
}

/// Validates a configuration without building it, the device's limits included; returns
/// `{params, bytes}` (bytes: the memory estimated for training it) or the reason it is invalid.
#[wasm_bindgen]
pub fn describe(preset_json: &str) -> Result<String, JsError> {
    let (preset, need) = checked_preset(preset_json)?;
    json(&serde_json::json!({
        "params": Gpt::num_params_of(&preset.model),
        "bytes": need.total,
    }))
}

/// Builds a fresh model and optimizer for the configuration on the chosen backend; returns
/// `{params, preset, half}` (the preset with the vocabulary and task filled in; `half`: mixed
/// precision asked for and the device has `shader-f16`, so the matmuls will run in f16).
#[wasm_bindgen]
pub fn configure(preset_json: &str) -> Result<String, JsError> {
    let (preset, _) = checked_preset(preset_json)?;
    let (_, device) = current_device()?;
    let trainer = STATE.with_borrow(|s| {
        let data = s.data.as_ref().ok_or_else(|| missing("data"))?;
        let tokenizer = s.tokenizer.clone().ok_or_else(|| missing("tokenizer"))?;
        Trainer::new(preset, tokenizer, data, &device).map_err(js)
    })?;
    let params = Gpt::num_params_of(trainer.model().config());
    let info = serde_json::json!({
        "params": params, "preset": trainer.preset(), "half": trainer.mixed_precision(),
    });
    STATE.with_borrow_mut(|s| s.trainer = Some(trainer));
    json(&info)
}

/// Changes the training schedule (a [`crate::config::TrainConfig`] as JSON) of the current run
/// without rebuilding the model.
#[wasm_bindgen(js_name = setSchedule)]
pub async fn set_schedule(train_json: String) -> Result<(), JsError> {
    let train = serde_json::from_str(&train_json).map_err(js)?;
    with_trainer(async |t| t.set_train_config(train)).await
}

/// One optimizer step; returns its metrics as JSON (`val_loss` is null: see [`evaluate`]).
#[wasm_bindgen(js_name = trainStep)]
pub async fn train_step() -> Result<String, JsError> {
    let metrics = with_trainer(async |t| t.step_async().await).await?;
    json(&metrics)
}

/// `{valLoss, report, maskedAccuracy}`: the mean validation loss over the configured number of
/// fixed batches; for a classifier its accuracy, macro-F1 and confusion matrix on every
/// validation example (a [`crate::train::ClassReport`]); for an encoder pretraining by masking,
/// the share of masked tokens it guesses (each null otherwise).
#[wasm_bindgen]
pub async fn evaluate() -> Result<String, JsError> {
    let ((loss, masked), report) = with_trainer(async |t| {
        Ok((
            t.validation_async().await?,
            t.classify_validation_async().await?,
        ))
    })
    .await?;
    json(&serde_json::json!({ "valLoss": loss, "report": report, "maskedAccuracy": masked }))
}

/// An encoder's `k` best guesses for each `[MASK]` in `text`, as JSON `[{index, guesses:
/// [[token, p], ...]}, ...]`.
#[wasm_bindgen]
pub async fn fill(text: String, k: usize) -> Result<String, JsError> {
    let blanks = with_model(async |model, tokenizer, device| {
        generate::fill_async(model, tokenizer, &text, k, device).await
    })
    .await?;
    json(&blanks)
}

/// The Shakespeare-or-Milton set built from the two texts with `passages` passages per author,
/// as JSON `{jsonl, text}`: the labelled lines with their split, and the training lines to
/// pretrain on (see [`crate::data::authorship`]); `labelled` training passages per author keep
/// their labels (all if undefined).
#[wasm_bindgen]
pub fn authorship(
    shakespeare: &str,
    milton: &str,
    passages: usize,
    labelled: Option<usize>,
) -> Result<String, JsError> {
    let set =
        crate::data::authorship::build(shakespeare, milton, passages, labelled).map_err(js)?;
    json(&serde_json::json!({ "jsonl": set.jsonl, "text": set.text }))
}

/// A classifier's probability for each class of `text`, most likely first, as JSON
/// `[[class, p], ...]`.
#[wasm_bindgen]
pub async fn classify(text: String) -> Result<String, JsError> {
    let probs = with_model(async |model, tokenizer, device| {
        generate::classify_async(model, tokenizer, &text, device).await
    })
    .await?;
    json(&probs)
}

/// Milliseconds per training step of the configured model on `kind`, from `steps` steps after a
/// warm-up step (which compiles the shaders), on a fresh model of the same configuration: the
/// run is not touched.
#[wasm_bindgen(js_name = timeStep)]
pub async fn time_step(kind: String, steps: usize) -> Result<f64, JsError> {
    let kind: BackendKind = kind.parse().map_err(js)?;
    let device = STATE.with_borrow(|s| device_of(s, kind))?;
    let mut probe = STATE.with_borrow(|s| {
        let trainer = s.trainer.as_ref().ok_or_else(|| missing("model"))?;
        let data = s.data.as_ref().ok_or_else(|| missing("data"))?;
        Trainer::new(
            trainer.preset().clone(),
            trainer.tokenizer().clone(),
            data,
            &device,
        )
        .map_err(js)
    })?;
    probe.time_steps_async(1, steps).await.map_err(js)
}

/// Chooses the kernel variants for the configured model on WebGPU: the choice in `known` for
/// its shapes (the page's earlier tunings on this adapter, `{key: KernelTuning}` as JSON), or
/// else the fastest variants that compute right, timed now. Returns the
/// [`crate::bench::KernelTuning`] as JSON; an unreadable `known` (an older build's) is timed
/// again.
#[wasm_bindgen(js_name = tuneKernels)]
pub async fn tune_kernels(known: String) -> Result<String, JsError> {
    let (model, device) = STATE.with_borrow(|s| {
        let trainer = s.trainer.as_ref().ok_or_else(|| missing("model"))?;
        Ok::<_, JsError>((
            trainer.preset().model.clone(),
            device_of(s, BackendKind::Wgpu)?,
        ))
    })?;
    let known: std::collections::HashMap<String, crate::bench::KernelTuning> =
        serde_json::from_str(&known).unwrap_or_default();
    let tuning = match known.get(&crate::bench::tuning_key(&model)) {
        Some(t) => crate::bench::KernelTuning {
            remembered: true,
            ..t.clone()
        },
        None => crate::bench::tune(&model, &device).await.map_err(js)?,
    };
    crate::kernels::matmul::choose(tuning.matmul.chosen);
    if let Some(attention) = &tuning.attention {
        crate::kernels::attention::choose_tile(attention.chosen);
    }
    if let Some(norm) = &tuning.norm {
        crate::kernels::norm::choose(norm.chosen);
    }
    json(&tuning)
}

/// The kernel benchmark on WebGPU (see [`crate::bench`]): each WGSL kernel against the Burn ops
/// it replaces at the shapes of the preset `preset_json` with `batch` sequences, the FMA peak,
/// matmul at `n³` for each of `matmul`, and (`step_reps` > 0) a training step with the kernels
/// off and on.
/// Returns JSON.
#[wasm_bindgen(js_name = benchKernels)]
pub async fn bench_kernels(
    preset_json: String,
    batch: usize,
    reps: usize,
    matmul: Vec<u32>,
    step_reps: usize,
) -> Result<String, JsError> {
    let matmul: Vec<usize> = matmul.into_iter().map(|n| n as usize).collect();
    let device = STATE.with_borrow(|s| device_of(s, BackendKind::Wgpu))?;
    let preset: Preset = serde_json::from_str(&preset_json).map_err(js)?;
    let kernels = crate::bench::kernels(&preset.model, batch, reps, &device)
        .await
        .map_err(js)?;
    let peak = crate::bench::peak_gflops(&device)
        .await
        .map_err(js)?
        .ok_or_else(|| JsError::new("the FMA probe needs WebGPU"))?;
    let matmul = crate::bench::matmul(&matmul, peak, reps, &device)
        .await
        .map_err(js)?;
    // A training step of the preset (at `batch`), on the page's text, kernels off and on
    // (`step_reps` steps each after two warm-up steps; none when 0).
    let (corpus, tokenizer) = STATE.with_borrow(|s| {
        let corpus = s.data.clone().ok_or_else(|| missing("data"))?;
        let tokenizer = s.tokenizer.clone().ok_or_else(|| missing("tokenizer"))?;
        Ok::<_, JsError>((corpus, tokenizer))
    })?;
    let mut step_ms = Vec::new();
    for kernels in [false, true].into_iter().filter(|_| step_reps > 0) {
        let mut p = preset.clone();
        p.model.kernels = kernels;
        p.train.batch_size = batch;
        p.train.max_steps = usize::MAX / 2;
        let mut trainer = Trainer::new(p, tokenizer.clone(), &corpus, &device).map_err(js)?;
        step_ms.push(trainer.time_steps_async(2, step_reps).await.map_err(js)?);
    }
    let step_ms = (step_reps > 0)
        .then(|| serde_json::json!({ "kernels_off": step_ms[0], "kernels_on": step_ms[1] }));
    json(&serde_json::json!({
        "kernels": kernels, "peak_gflops": peak, "matmul": matmul, "step_ms": step_ms,
    }))
}

/// Continues `prompt` with the current model, calling `on_text(piece)` as text arrives; the
/// callback returns `false` to stop. `sample_json` is a [`SampleConfig`]. Returns the full text.
#[wasm_bindgen]
pub async fn generate(
    prompt: String,
    sample_json: String,
    on_text: Function,
) -> Result<String, JsError> {
    let cfg: SampleConfig = serde_json::from_str(&sample_json).map_err(js)?;
    with_model(async |model, tokenizer, device| {
        generate::generate_async(model, tokenizer, &prompt, &cfg, device, |piece| {
            // A callback that throws or returns a falsy value stops generation.
            on_text
                .call1(&JsValue::NULL, &JsValue::from_str(piece))
                .is_ok_and(|v| v.is_truthy())
        })
        .await
    })
    .await
}

/// The `k` most likely next tokens after `prompt` with their probabilities, as JSON
/// `[[token, p], ...]`, most likely first.
#[wasm_bindgen(js_name = nextTokens)]
pub async fn next_tokens(prompt: String, k: usize) -> Result<String, JsError> {
    let top = with_model(async |model, tokenizer, device| {
        generate::next_tokens_async(model, tokenizer, &prompt, k, device).await
    })
    .await?;
    json(&top)
}

/// Every layer's attention over the last `max_tokens` tokens of `prompt`, as JSON `{tokens,
/// weights: [layer][head][query][key]}`.
#[wasm_bindgen]
pub async fn attention(prompt: String, max_tokens: usize) -> Result<String, JsError> {
    let maps = with_model(async |model, tokenizer, device| {
        inspect::attention_async(model, tokenizer, &prompt, max_tokens, device).await
    })
    .await?;
    json(&maps)
}

/// The token embeddings on their two principal axes, as JSON `{tokens, points: [[x, y], ...],
/// explained: [share, share]}`.
#[wasm_bindgen]
pub async fn embeddings() -> Result<String, JsError> {
    let e =
        with_model(async |model, tokenizer, _| inspect::embeddings_async(model, tokenizer).await)
            .await?;
    json(&e)
}

/// Log-probability and perplexity of `text` under the current model, and each token's
/// log-probability (`per_token`), as JSON.
#[wasm_bindgen]
pub async fn score(text: String) -> Result<String, JsError> {
    let score = with_model(async |model, tokenizer, device| {
        generate::score_async(model, tokenizer, &text, None, device).await
    })
    .await?;
    json(&score)
}

/// The run as a checkpoint: `{meta: string (checkpoint.json), weights: Uint8Array
/// (model.safetensors), optimizer: Uint8Array}`.
#[wasm_bindgen(js_name = saveCheckpoint)]
pub async fn save_checkpoint() -> Result<Object, JsError> {
    let ckpt = with_trainer(async |t| Checkpoint::from_trainer_async(t).await).await?;
    let mut fields = vec![
        ("meta", ckpt.meta_json().map_err(js)?.into()),
        ("weights", Uint8Array::from(&ckpt.weights[..]).into()),
    ];
    if let Some(optimizer) = &ckpt.optimizer {
        fields.push(("optimizer", Uint8Array::from(&optimizer[..]).into()));
    }
    object(fields)
}

/// Resumes a checkpoint on the current corpus and backend. The tokenizer comes from the
/// checkpoint. Returns `{step, preset, vocabSize, params}` as JSON so the page can show them.
#[wasm_bindgen(js_name = loadCheckpoint)]
pub fn load_checkpoint(
    meta: &[u8],
    weights: Vec<u8>,
    optimizer: Option<Vec<u8>>,
) -> Result<String, JsError> {
    adopt(Checkpoint::from_parts(meta, weights, optimizer).map_err(js)?)
}

/// The run as Hugging Face files (LoRA adapters merged in): GPT-2's for a GPT, BERT's for an
/// encoder. `{weights: Uint8Array (model.safetensors), config: string (config.json), tokenizer:
/// string (tokenizer.json), tokenizerConfig: string (tokenizer_config.json)}`, for transformers.
#[wasm_bindgen(js_name = exportTransformers)]
pub async fn export_transformers() -> Result<Object, JsError> {
    let ckpt = with_trainer(async |t| {
        let device = t.device().clone().inner();
        Checkpoint::model_of_async(t)
            .await?
            .merged_async(&device)
            .await
    })
    .await?;
    let files = ckpt.to_transformers().map_err(js)?;
    object(vec![
        ("weights", Uint8Array::from(&files.weights[..]).into()),
        ("config", files.config.into()),
        ("tokenizer", files.tokenizer.into()),
        ("tokenizerConfig", files.tokenizer_config.into()),
    ])
}

/// The run's LoRA adapters alone, as PEFT files: `{weights: Uint8Array
/// (adapter_model.safetensors), config: string (adapter_config.json)}`.
#[wasm_bindgen(js_name = exportAdapters)]
pub async fn export_adapters() -> Result<Object, JsError> {
    let ckpt = with_trainer(async |t| Checkpoint::model_of_async(t).await).await?;
    let files = ckpt.to_peft().map_err(js)?;
    object(vec![
        ("weights", Uint8Array::from(&files.weights[..]).into()),
        ("config", files.config.into()),
    ])
}

/// Starts receiving a `model.safetensors` of `size` bytes. The worker streams the file in
/// pieces, so JavaScript never holds it whole (GPT-2 small's is 500 MB); a size the wasm32
/// memory cannot hold is refused here, before any piece is read.
#[wasm_bindgen(js_name = uploadBegin)]
pub fn upload_begin(size: f64) -> Result<(), JsError> {
    let mut upload = Vec::new();
    let fits = size <= usize::MAX as f64 && upload.try_reserve_exact(size as usize).is_ok();
    if !fits {
        return Err(JsError::new(&format!(
            "model.safetensors is {:.0} MB, more than this page's memory can hold (a wasm32 \
             module addresses 4 GB in all)",
            size / 1e6
        )));
    }
    STATE.with_borrow_mut(|s| s.upload = upload);
    Ok(())
}

/// Appends the next piece of the file [`upload_begin`] announced.
#[wasm_bindgen(js_name = uploadChunk)]
pub fn upload_chunk(piece: &[u8]) -> Result<(), JsError> {
    STATE.with_borrow_mut(|s| {
        if s.upload.len() + piece.len() > s.upload.capacity() {
            return Err(JsError::new(
                "model.safetensors grew while it was read; choose the files again",
            ));
        }
        s.upload.extend_from_slice(piece);
        Ok(())
    })
}

/// Loads Hugging Face GPT-2 or BERT files as a new run at step 0, the weights being the file
/// streamed by [`upload_chunk`]; returns what [`load_checkpoint`] does.
#[wasm_bindgen(js_name = importTransformers)]
pub fn import_transformers(config: String, tokenizer: String) -> Result<String, JsError> {
    let weights = STATE.with_borrow_mut(|s| std::mem::take(&mut s.upload));
    let files = crate::hf::HfFiles::new(weights, config, tokenizer);
    adopt(Checkpoint::from_transformers(&files).map_err(js)?)
}

/// Makes `ckpt` the current run on the current data and backend (as a LoRA run where only that
/// fits: `note` says so).
fn adopt(ckpt: Checkpoint) -> Result<String, JsError> {
    let (_, device) = current_device()?;
    let (trainer, note) = on_data(|data| ckpt.resume_fitting(data, &device))?;
    let info = serde_json::json!({
        "note": note,
        "step": trainer.step_count(),
        "preset": trainer.preset(),
        "vocabSize": trainer.tokenizer().vocab_size(),
        "params": Gpt::num_params_of(trainer.model().config()),
    });
    STATE.with_borrow_mut(|s| {
        s.tokenizer = Some(trainer.tokenizer().clone());
        s.trainer = Some(trainer);
    });
    json(&info)
}
