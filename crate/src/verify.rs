//! Whether a device computes what the CPU computes. A user's GPU runs Kiln's WGSL through a
//! driver and shader compiler nobody here has tested; a bug there must show as a warning, not as
//! a training run that quietly learns garbage.
//!
//! [`cross_check`] runs one forward and backward pass of a fixed small model on a fixed batch on
//! the device and on the CPU backend and compares the loss and the gradient norm;
//! [`Trainer::check_against_cpu_async`] compares the current model's loss and logits on a
//! validation batch.
//! [`inject_fault`] corrupts the fused attention kernel's output, so tests can prove a bad
//! device is caught.

use std::sync::atomic::{AtomicU32, Ordering};

use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::backend::read_f32;
use crate::checkpoint::Checkpoint;
use crate::config::preset;
use crate::data::Batch;
use crate::error::Result;
use crate::model::Gpt;
use crate::train::{Trainer, clip_grad_norm, loss_of};

/// Largest relative difference between the two devices' numbers that still counts as agreeing.
/// f32 on two backends (fused kernels on one, plain ops on the other) differ by ~1e-6 here; a
/// wrong kernel moves them by far more.
pub const TOLERANCE: f32 = 1e-3;

/// What the two devices computed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// `[device, cpu]`.
    pub loss: [f32; 2],
    /// `[device, cpu]`, for [`cross_check`].
    pub grad_norm: Option<[f32; 2]>,
    /// The largest difference over the compared numbers, relative to the CPU's (for logits: the
    /// largest |Δ| over the largest |logit|); NaN counts as infinite.
    pub difference: f32,
    pub agree: bool,
}

/// `|a - b| / |b|`, infinite when not finite.
fn relative(a: f32, b: f32) -> f32 {
    let d = (a - b).abs() / b.abs().max(1e-6);
    if d.is_finite() { d } else { f32::INFINITY }
}

impl Agreement {
    fn new(loss: [f32; 2], grad_norm: Option<[f32; 2]>, logits: Option<[&[f32]; 2]>) -> Self {
        let pair = |[a, b]: [f32; 2]| relative(a, b);
        let logits = logits.map_or(0.0, |[here, cpu]| {
            let worst = here
                .iter()
                .zip(cpu)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let scale = cpu.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            relative(scale + worst, scale)
        });
        let difference = pair(loss).max(grad_norm.map_or(0.0, pair)).max(logits);
        Self {
            loss,
            grad_norm,
            difference,
            agree: difference <= TOLERANCE,
        }
    }
}

/// The fused attention kernel's output is multiplied by this (1: no fault).
static FAULT: AtomicU32 = AtomicU32::new(0x3f80_0000); // 1.0f32

/// Tests only: from now on the fused attention kernel's output is multiplied by `factor` (NaN
/// poisons it); 1 restores it. The plain ops (and so the CPU) are never touched.
pub fn inject_fault(factor: f32) {
    FAULT.store(factor.to_bits(), Ordering::Relaxed);
}

/// The factor [`inject_fault`] set.
pub(crate) fn fault() -> f32 {
    f32::from_bits(FAULT.load(Ordering::Relaxed))
}

/// Loss and gradient norm of one forward and backward pass of a fixed `tiny` model (vocabulary
/// 64, kernels on where the device has them) on a fixed batch.
async fn probe(device: &Device) -> Result<[f32; 2]> {
    let mut c = preset("tiny")?.model;
    c.vocab_size = 64;
    let device = device.clone().autodiff();
    let model = Gpt::new(&c, 7, &device);
    let (b, t) = (4, c.block_size);
    let ids = |k: i64| -> Tensor<2, Int> {
        let data: Vec<i64> = (0..(b * t) as i64).map(|i| (i * k + 3) % 64).collect();
        Tensor::from_data(TensorData::new(data, [b, t]), &device)
    };
    let (loss, _) = model.loss_on(ids(7), None, ids(11), false)?;
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = clip_grad_norm(&model, &mut grads, 0.0);
    let read = read_f32(Tensor::cat(vec![loss.detach().inner(), norm.inner()], 0)).await?;
    Ok([read[0], read[1]])
}

/// One forward and backward pass on `device` against the same on the CPU backend.
pub async fn cross_check(device: &Device) -> Result<Agreement> {
    let [loss, norm] = probe(device).await?;
    let [cpu_loss, cpu_norm] = probe(&Device::flex()).await?;
    Ok(Agreement::new(
        [loss, cpu_loss],
        Some([norm, cpu_norm]),
        None,
    ))
}

/// The loss of `model` on `batch` and its logits for the batch's first row.
async fn outputs(model: &Gpt, batch: Batch, device: &Device) -> Result<(f32, Vec<f32>)> {
    let row = TensorData::new(batch.inputs[..batch.block].to_vec(), [1, batch.block]);
    let logits = read_f32(model.forward(Tensor::from_data(row, device), None)?).await?;
    Ok((loss_of(model, batch, device).await?, logits))
}

impl Trainer {
    /// The current model's loss on the first validation batch and its logits for one row, on
    /// its device and on the CPU backend (a copy of the weights): cheap enough to run every few
    /// hundred steps.
    pub async fn check_against_cpu_async(&self) -> Result<Agreement> {
        let device = self.device().clone().inner();
        let (loss, logits) = outputs(&self.model().valid(), self.probe_batch(), &device).await?;
        let cpu = Device::flex();
        let (model, _) = Checkpoint::model_of_async(self).await?.load_model(&cpu)?;
        let (cpu_loss, cpu_logits) = outputs(&model, self.probe_batch(), &cpu).await?;
        Ok(Agreement::new(
            [loss, cpu_loss],
            None,
            Some([&logits, &cpu_logits]),
        ))
    }
}
