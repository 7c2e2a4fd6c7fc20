//! Training: AdamW ([`crate::optim`]), linear warmup + cosine decay,
//! global-norm gradient clipping, gradient accumulation, periodic validation — and one metrics
//! callback that the CLI and the page share.

use burn::module::{ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use web_time::Instant;

use crate::backend::read_f32;
use crate::config::{Decay, Preset, TrainConfig};
use crate::data::batcher::Rows;
use crate::data::examples::IGNORE;
use crate::data::{Batch, Batches, Dataset, Tokenizer, step_rng};
use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::optim::AdamW;

/// What one optimizer step (and, every `eval_interval` steps, one validation pass) measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Optimizer steps completed.
    pub step: usize,
    pub max_steps: usize,
    /// Mean training loss over the counted targets of this step's micro-batches.
    pub loss: f32,
    /// Validation loss, on steps where it was measured.
    pub val_loss: Option<f32>,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    pub tokens_per_sec: f64,
    /// Seconds spent training in this run, resumed runs included.
    pub elapsed: f64,
    /// A classifier's validation report, on steps where it was measured.
    pub report: Option<ClassReport>,
    /// An encoder's share of masked validation tokens it guesses right (its most likely token),
    /// on steps where it was measured.
    #[serde(default)]
    pub masked_accuracy: Option<f32>,
}

/// How a classifier does on the validation examples.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassReport {
    pub classes: Vec<String>,
    pub examples: usize,
    pub accuracy: f32,
    /// The unweighted mean of the per-class F1 scores (over classes that occur in the truth or
    /// the predictions).
    pub macro_f1: f32,
    /// `confusion[true][predicted]`: how many examples of a class got each prediction.
    pub confusion: Vec<Vec<usize>>,
}

impl ClassReport {
    /// The report for `(true, predicted)` class pairs.
    pub fn new(classes: Vec<String>, pairs: &[(usize, usize)]) -> Self {
        let k = classes.len();
        let mut confusion = vec![vec![0; k]; k];
        for &(t, p) in pairs {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let f1: Vec<f32> = (0..k)
            .filter_map(|c| {
                let tp = confusion[c][c] as f32;
                let truth: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                // 2TP / (2TP + FP + FN) = 2TP / (predicted + truth)
                (truth + predicted > 0).then(|| 2.0 * tp / (truth + predicted) as f32)
            })
            .collect();
        Self {
            classes,
            examples: pairs.len(),
            accuracy: correct as f32 / pairs.len().max(1) as f32,
            macro_f1: f1.iter().sum::<f32>() / f1.len().max(1) as f32,
            confusion,
        }
    }
}

impl Metrics {
    /// exp(validation loss): the perplexity of the validation text.
    pub fn val_perplexity(&self) -> Option<f32> {
        self.val_loss.map(f32::exp)
    }
}

/// Learning rate at `step` (0-based): linear warmup to `lr`, then cosine (nanoGPT's) or linear
/// (BERT's) decay to `min_lr` at `max_steps`.
pub fn lr_at(c: &TrainConfig, step: usize) -> f64 {
    if step < c.warmup_steps {
        return c.lr * (step + 1) as f64 / (c.warmup_steps + 1) as f64;
    }
    if step >= c.max_steps {
        return c.min_lr;
    }
    let progress = (step - c.warmup_steps) as f64 / (c.max_steps - c.warmup_steps).max(1) as f64;
    let coeff = match c.decay {
        Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Decay::Linear => 1.0 - progress,
    };
    c.min_lr + coeff * (c.lr - c.min_lr)
}

/// Squared global norm of the gradients, as a one-element tensor (no read-back).
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

/// Multiplies every gradient by a one-element tensor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register(param.id, g * self.factor.clone().reshape([1; D]));
        }
    }
}

/// Scales the gradients so their global L2 norm is at most `max_norm` (0: no clipping).
/// Returns the norm before clipping, still on the device.
pub fn clip_grad_norm(model: &Gpt, grads: &mut GradientsParams, max_norm: f64) -> Tensor<1> {
    unscale_and_clip(model, grads, max_norm, 1.0)
}

/// [`clip_grad_norm`] for the gradients of a loss multiplied by `loss_scale` (mixed precision):
/// the one scaling pass also divides them by it. Returns the norm of the unscaled gradients.
fn unscale_and_clip(
    model: &Gpt,
    grads: &mut GradientsParams,
    max_norm: f64,
    loss_scale: f64,
) -> Tensor<1> {
    let mut visitor = SquaredNorm { grads, total: None };
    model.visit(&mut visitor);
    let norm = visitor.total.map(Tensor::sqrt);
    let Some(mut norm) = norm else {
        return Tensor::zeros([1], &model.devices()[0]);
    };
    if loss_scale != 1.0 {
        norm = norm.div_scalar(loss_scale);
    }
    let factor = if max_norm > 0.0 {
        // min(1, max_norm / norm), computed on the device.
        let clip = (norm.clone() + 1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        if loss_scale != 1.0 {
            clip.div_scalar(loss_scale)
        } else {
            clip
        }
    } else if loss_scale != 1.0 {
        Tensor::from_floats([1.0 / loss_scale], &norm.device())
    } else {
        return norm;
    };
    model.visit(&mut Scale { grads, factor });
    norm
}

/// Drops the gradients of the first `blocks` transformer blocks (`h.0` ... `h.{blocks-1}`) or
/// LSTM layers (`lstm.0` ...), so
/// neither the clipping norm nor the optimizer sees them: those weights stay as they are.
struct Freeze<'a> {
    grads: &'a mut GradientsParams,
    blocks: usize,
    path: Vec<String>,
}

impl ModuleVisitor for Freeze<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let frozen = matches!(self.path.as_slice(), [h, i, ..] if (h == "h" || h == "lstm")
            && i.parse::<usize>().is_ok_and(|i| i < self.blocks));
        if frozen {
            self.grads.remove::<D>(param.id);
        }
    }
}

/// A batch on `device`: inputs, targets, and where the rows hold the token `pad` (an
/// encoder's `[PAD]`); `None` when none does, so the fused attention applies.
fn tensors(
    batch: Batch,
    pad: Option<u32>,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Option<Tensor<2, Bool>>) {
    let shape = [batch.batch, batch.block];
    let padded = pad.filter(|&p| batch.inputs.contains(&(p as i64)));
    let x = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs, shape), device);
    let pad = padded.map(|p| x.clone().equal_elem(p as i64));
    let y = Tensor::from_data(TensorData::new(batch.targets, shape), device);
    (x, y, pad)
}

/// The loss of `model` (for inference: no autodiff, no dropout) on `batch` (unpadded).
pub(crate) async fn loss_of(model: &Gpt, batch: Batch, device: &Device) -> Result<f32> {
    let (x, y, _) = tensors(batch, None, device);
    Ok(read_f32(model.loss_on(x, None, y, false)?.0).await?[0])
}

/// A model, its optimizer and its data: everything a training run needs.
pub struct Trainer {
    model: Gpt,
    optim: AdamW,
    preset: Preset,
    tokenizer: Tokenizer,
    train: Batches,
    val: Batches,
    step: usize,
    elapsed: f64,
    /// The autodiff device the model trains on.
    device: Device,
    /// Mixed precision's loss scale and the overflow-free steps since it last changed.
    loss_scale: f32,
    good_steps: usize,
}

/// Mixed precision's first loss scale (PyTorch's GradScaler starts at 2^16; small models' f16
/// gradients overflow there, and every overflow costs a skipped step).
pub const INIT_LOSS_SCALE: f32 = 4096.0;
/// Overflow-free steps after which the loss scale doubles.
const LOSS_SCALE_GROWTH: usize = 1000;

/// Seed offset for validation batches: the same windows at every evaluation, so values compare.
const EVAL_STREAM: u64 = u64::MAX;

impl Trainer {
    /// A fresh model for `preset` (its `vocab_size` is taken from the tokenizer) on `device`.
    pub fn new(
        mut preset: Preset,
        tokenizer: Tokenizer,
        data: &Dataset,
        device: &Device,
    ) -> Result<Self> {
        // An encoder reads and predicts through BERT's special tokens.
        let tokenizer = match preset.model.arch {
            crate::config::Arch::Bert => tokenizer.with_specials()?,
            _ => tokenizer,
        };
        preset.model.vocab_size = tokenizer.vocab_size();
        preset.validate()?;
        crate::memory::check_fits(&preset.model, Some(&preset.train), device)?;
        let device = device.clone().autodiff();
        let model = Gpt::new(&preset.model, preset.train.seed, &device);
        Self::with_model(model, preset, tokenizer, data, device, 0, 0.0)
    }

    /// Continues from a model (e.g. loaded from a checkpoint) at `step`.
    pub(crate) fn with_model(
        model: Gpt,
        preset: Preset,
        tokenizer: Tokenizer,
        data: &Dataset,
        device: Device,
        step: usize,
        elapsed: f64,
    ) -> Result<Self> {
        preset.validate()?;
        data.check(&preset.model.task)?;
        let (train, val) = data.batches(&tokenizer, &preset.model, preset.train.batch_size)?;
        let model = match preset.model.lora {
            Some(_) => crate::lora::freeze_base(model),
            None => model,
        };
        Ok(Self {
            model,
            optim: AdamW::default(),
            preset,
            tokenizer,
            train,
            val,
            step,
            elapsed,
            device,
            loss_scale: INIT_LOSS_SCALE,
            good_steps: 0,
        })
    }

    pub fn model(&self) -> &Gpt {
        &self.model
    }

    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn elapsed(&self) -> f64 {
        self.elapsed
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether this run computes in mixed precision: asked for, and the adapter has f16.
    pub fn mixed_precision(&self) -> bool {
        self.preset.model.mixed_precision && crate::kernels::supports_f16(&self.device)
    }

    /// Mixed precision's current loss scale (halved after every step whose gradients overflow,
    /// doubled after 1000 steps without).
    pub fn loss_scale(&self) -> f32 {
        self.loss_scale
    }

    /// Sets the loss scale, e.g. to see an overflow handled.
    pub fn set_loss_scale(&mut self, scale: f32) {
        self.loss_scale = scale;
    }

    /// Changes the schedule of this run (steps, learning rate, batch size, ...) while keeping
    /// the model, the optimizer state and the step: e.g. to train a loaded model for longer.
    pub fn set_train_config(&mut self, train: TrainConfig) -> Result<()> {
        Preset {
            model: self.preset.model.clone(),
            train: train.clone(),
        }
        .validate()?;
        if train.batch_size != self.preset.train.batch_size {
            self.train = self.train.with_batch_size(train.batch_size);
            self.val = self.val.with_batch_size(train.batch_size);
        }
        self.preset.train = train;
        Ok(())
    }

    /// Continues this run on other data (finetuning), encoded with the run's tokenizer; a
    /// character the tokenizer has never seen is an error that names it.
    pub fn set_data(&mut self, data: &Dataset) -> Result<()> {
        data.check(&self.preset.model.task)?;
        let batch = self.preset.train.batch_size;
        (self.train, self.val) = data.batches(&self.tokenizer, &self.preset.model, batch)?;
        Ok(())
    }

    pub(crate) fn optimizer(&self) -> &AdamW {
        &self.optim
    }

    pub(crate) fn set_optimizer(&mut self, optim: AdamW) {
        self.optim = optim;
    }

    /// One optimizer step over `grad_accum` random micro-batches (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(&mut self) -> Result<Metrics> {
        crate::backend::block_on(self.step_async())
    }

    /// Milliseconds per step over `steps` steps (at least one), after `warmup` steps that compile
    /// shaders and let the autotuner settle (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_steps(&mut self, warmup: usize, steps: usize) -> Result<f64> {
        crate::backend::block_on(self.time_steps_async(warmup, steps))
    }

    /// Milliseconds per step over `steps` steps (at least one), after `warmup` steps that compile
    /// shaders and let the autotuner settle. The steps train the model like any others.
    pub async fn time_steps_async(&mut self, warmup: usize, steps: usize) -> Result<f64> {
        for _ in 0..warmup {
            self.step_async().await?;
        }
        let steps = steps.max(1);
        let start = Instant::now();
        for _ in 0..steps {
            self.step_async().await?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
    }

    /// One optimizer step over `grad_accum` random micro-batches; reads back only the loss and norm.
    pub async fn step_async(&mut self) -> Result<Metrics> {
        // Batches and dropout masks depend only on (seed, step), so a resumed run repeats exactly.
        let mut rng = step_rng(self.preset.train.seed, self.step as u64);
        let batches = (0..self.preset.train.grad_accum)
            .map(|_| self.train.sample(&mut rng))
            .collect();
        self.update(batches).await
    }

    /// [`Trainer::step_on_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step_on(&mut self, batches: Vec<Batch>) -> Result<Metrics> {
        crate::backend::block_on(self.step_on_async(batches))
    }

    /// One optimizer step on given batches (their gradients averaged), e.g. a fixed batch.
    pub async fn step_on_async(&mut self, batches: Vec<Batch>) -> Result<Metrics> {
        if batches.is_empty() {
            return Err(Error::Data(
                "a training step needs at least one batch".into(),
            ));
        }
        self.update(batches).await
    }

    async fn update(&mut self, batches: Vec<Batch>) -> Result<Metrics> {
        let c = &self.preset.train;
        let started = Instant::now();
        let lr = lr_at(c, self.step);
        self.device
            .seed(c.seed ^ (self.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let tokens: usize = batches.iter().map(|b| b.inputs.len()).sum();
        // Each micro-batch's loss is a mean over its own counted targets; weighting it by its
        // share of all counted targets makes the step's loss the mean over every counted target
        // of the step (not a mean of means, which over-weights sparsely labelled micro-batches).
        let counted: Vec<usize> = batches
            .iter()
            .map(|b| b.targets.iter().filter(|&&t| t != IGNORE).count())
            .collect();
        let total = counted.iter().sum::<usize>().max(1) as f64;
        // Mixed precision: the loss is scaled up before the backward pass so small f16 gradients
        // do not flush to zero, and the clipping pass scales the gradients back down.
        let scale = if self.mixed_precision() {
            self.loss_scale
        } else {
            1.0
        };
        let mut accum = GradientsAccumulator::<Gpt>::new();
        let mut loss_sum: Option<Tensor<1>> = None;
        for (batch, counted) in batches.into_iter().zip(counted) {
            let (x, y, pad) = tensors(batch, self.pad(), &self.device);
            let share = counted as f64 / total;
            let loss = self.model.loss_on(x, pad, y, false)?.0 * share;
            let grads = (loss.clone() * scale as f64).backward();
            accum.accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
            let loss = loss.detach().inner();
            loss_sum = Some(loss_sum.map_or(loss.clone(), |s| s + loss));
        }
        let mut grads = accum.grads();
        if c.freeze_blocks > 0 {
            self.model.visit(&mut Freeze {
                grads: &mut grads,
                blocks: c.freeze_blocks,
                path: Vec::new(),
            });
        }
        let norm = unscale_and_clip(&self.model, &mut grads, c.grad_clip, scale as f64);
        // The loss and norm are read before the update: a non-finite one must not reach the
        // weights. (f16 overflow shows as a non-finite norm too: mixed precision skips that
        // update and halves the scale.)
        let loss_sum = loss_sum.expect("at least one batch");
        let read = read_f32(Tensor::cat(vec![loss_sum, norm.inner()], 0)).await?;
        let (loss, grad_norm) = (read[0], read[1]);
        let overflow = scale != 1.0 && !grad_norm.is_finite();
        if !loss.is_finite() || (!overflow && !grad_norm.is_finite()) {
            return Err(Error::Backend(format!(
                "the loss became {loss} (gradient norm {grad_norm}) at step {}; the weights are \
                 still those of step {}. Lower the learning rate or enable grad_clip; if it \
                 happens on WebGPU only, the GPU computes wrong (try the CPU backend)",
                self.step + 1,
                self.step
            )));
        }
        if overflow {
            self.loss_scale /= 2.0;
            self.good_steps = 0;
        } else {
            if scale != 1.0 {
                self.good_steps += 1;
                if self.good_steps == LOSS_SCALE_GROWTH {
                    self.loss_scale *= 2.0;
                    self.good_steps = 0;
                }
            }
            self.model = self.optim.step(c, lr, self.model.clone(), grads);
        }
        let secs = started.elapsed().as_secs_f64();
        self.elapsed += secs;
        self.step += 1;
        Ok(Metrics {
            step: self.step,
            max_steps: c.max_steps,
            loss,
            val_loss: None,
            lr,
            grad_norm,
            tokens_per_sec: tokens as f64 / secs.max(1e-9),
            elapsed: self.elapsed,
            report: None,
            masked_accuracy: None,
        })
    }

    /// Mean loss over `eval_steps` fixed validation batches (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&self) -> Result<f32> {
        crate::backend::block_on(self.evaluate_async())
    }

    /// The first validation batch of every evaluation: a fixed probe of the model.
    pub(crate) fn probe_batch(&self) -> Batch {
        self.val
            .sample(&mut step_rng(self.preset.train.seed, EVAL_STREAM))
    }

    /// Mean loss over `eval_steps` fixed validation batches, without gradients or dropout.
    pub async fn evaluate_async(&self) -> Result<f32> {
        Ok(self.validation_async().await?.0)
    }

    /// [`Trainer::validation_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn validation(&self) -> Result<(f32, Option<f32>)> {
        crate::backend::block_on(self.validation_async())
    }

    /// [`Trainer::evaluate_async`]'s loss and, for an encoder pretraining by masking, the share
    /// of the masked tokens it guesses right (its most likely token), from the same pass.
    pub async fn validation_async(&self) -> Result<(f32, Option<f32>)> {
        let c = &self.preset.train;
        let model = self.model.valid();
        let device = self.device.clone().inner();
        let masked = matches!(self.val, Batches::Masked(_));
        let mut rng = step_rng(c.seed, EVAL_STREAM);
        let mut sum: Option<Tensor<1>> = None;
        let (mut right, mut counted) = (0usize, 0usize);
        for _ in 0..c.eval_steps {
            let batch = self.val.sample(&mut rng);
            let targets = masked.then(|| batch.targets.clone());
            let (x, y, pad) = tensors(batch, self.pad(), &device);
            let (loss, guesses) = model.loss_on(x, pad, y, targets.is_some())?;
            if let (Some(targets), Some(guesses)) = (targets, guesses) {
                let predicted = read_f32(guesses.float()).await?;
                for (&t, &p) in targets.iter().zip(&predicted) {
                    if t != IGNORE {
                        counted += 1;
                        right += usize::from(p as i64 == t);
                    }
                }
            }
            sum = Some(sum.map_or(loss.clone(), |s| s + loss));
        }
        let total = read_f32(sum.expect("eval_steps >= 1 is validated")).await?[0];
        let accuracy = masked.then(|| right as f32 / counted.max(1) as f32);
        Ok((total / c.eval_steps as f32, accuracy))
    }

    /// [`Trainer::classify_validation_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_validation(&self) -> Result<Option<ClassReport>> {
        crate::backend::block_on(self.classify_validation_async())
    }

    /// A classifier's accuracy, macro-F1 and confusion matrix over every validation example
    /// (`None` for a language model).
    pub async fn classify_validation_async(&self) -> Result<Option<ClassReport>> {
        let (crate::config::Task::Classify { classes, .. }, Batches::Rows(rows)) =
            (&self.preset.model.task, &self.val)
        else {
            return Ok(None);
        };
        let model = self.model.valid();
        let device = self.device.clone().inner();
        let mut pairs = Vec::new();
        for chunk in rows.rows().chunks(self.preset.train.batch_size) {
            let batch = Rows::batch(&chunk.iter().collect::<Vec<_>>());
            let (x, _, pad) = tensors(batch, self.pad(), &device);
            let logits = model.forward_padded(x, pad)?;
            // Positions per row: the block, or 1 for a [CLS] classifier.
            let block = logits.dims()[1];
            let predicted = read_f32(logits.argmax(2).float()).await?;
            for (r, row) in chunk.iter().enumerate() {
                // The label sits where the classifier reads, the only target that counts.
                if let Some((t, &class)) = row.targets.iter().enumerate().find(|&(_, &c)| c >= 0) {
                    pairs.push((class as usize, predicted[r * block + t] as usize));
                }
            }
        }
        Ok(Some(ClassReport::new(classes.clone(), &pairs)))
    }

    /// The `[PAD]` token an encoder's rows may end in (`None` for other models).
    fn pad(&self) -> Option<u32> {
        match self.preset.model.arch {
            crate::config::Arch::Bert => self.tokenizer.specials().map(|s| s.pad),
            _ => None,
        }
    }

    /// Trains until `max_steps` (or until `on_metrics` returns `false`), evaluating every
    /// `eval_interval` steps and at the end. Every step's metrics go to `on_metrics`, with the
    /// trainer itself so the caller can checkpoint it. Blocking (native only); the page drives
    /// [`Trainer::step_async`] and [`Trainer::evaluate_async`] itself.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&mut self, mut on_metrics: impl FnMut(&Metrics, &Trainer) -> bool) -> Result<()> {
        while self.step < self.preset.train.max_steps {
            let mut m = self.step()?;
            let interval = self.preset.train.eval_interval;
            if m.step == m.max_steps || (interval > 0 && m.step % interval == 0) {
                let (loss, masked_accuracy) = self.validation()?;
                (m.val_loss, m.masked_accuracy) = (Some(loss), masked_accuracy);
                m.report = self.classify_validation()?;
            }
            if !on_metrics(&m, self) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::preset;

    #[test]
    fn lr_schedule_warmup_then_cosine() {
        let c = TrainConfig {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            max_steps: 1100,
            ..preset("tiny").unwrap().train
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(lr_at(&c, 0), 1e-3 / 101.0));
        assert!(close(lr_at(&c, 99), 1e-3 * 100.0 / 101.0));
        assert!(close(lr_at(&c, 100), 1e-3), "peak at the end of warmup");
        assert!(
            close(lr_at(&c, 600), 0.5 * (1e-3 + 1e-4)),
            "halfway down the cosine"
        );
        assert!(close(lr_at(&c, 1100), 1e-4));
        assert!(close(lr_at(&c, 5000), 1e-4));
        for s in 100..1100 {
            assert!(lr_at(&c, s + 1) <= lr_at(&c, s), "decays monotonically");
        }
    }

    #[test]
    fn lr_schedule_warmup_then_linear() {
        let c = TrainConfig {
            lr: 1e-3,
            min_lr: 0.0,
            decay: Decay::Linear,
            warmup_steps: 100,
            max_steps: 1100,
            ..preset("tiny").unwrap().train
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(lr_at(&c, 99), 1e-3 * 100.0 / 101.0));
        assert!(close(lr_at(&c, 100), 1e-3), "peak at the end of warmup");
        assert!(close(lr_at(&c, 350), 0.75e-3), "a quarter of the way down");
        assert!(close(lr_at(&c, 600), 0.5e-3), "halfway down");
        assert!(close(lr_at(&c, 1100), 0.0));
        for s in 100..1099 {
            let (a, b, c2) = (lr_at(&c, s), lr_at(&c, s + 1), lr_at(&c, s + 2));
            assert!(
                ((a - b) - (b - c2)).abs() < 1e-15,
                "falls by the same amount each step"
            );
        }
    }
}
