//! Fused AdamW update: `shaders/adamw.wgsl` reads parameter, gradient and both moments once and
//! writes the three new tensors, where the reference takes about a dozen elementwise passes. On
//! the CPU backend, the same update as a loop over the elements.
//!
//! Its own backend extension rather than part of [`super::KernelOps`], as [`super::gelu`]: it
//! has a CPU implementation, and an extension must be implemented on every backend it lists.

use burn::backend::autodiff::{Autodiff, checkpoint::strategy::CheckpointStrategy};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{Wgsl, cpu_tensor, cpu_values, empty, grid, launch, untracked3};

/// Added to the denominator, as in PyTorch's AdamW.
pub const EPS: f64 = 1e-8;
/// Invocations per workgroup.
const WG: u32 = 256;

/// One step's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Decoupled weight decay (0 for vectors: gains and biases).
    pub weight_decay: f64,
    /// The step number, from 1: the bias corrections depend on it.
    pub t: i32,
}

#[backend_extension(Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait AdamwOps: Backend {
    /// One AdamW step of a flat parameter: the new `(param, exp_avg, exp_avg_sq)`.
    #[fusion(meta = meta)]
    fn adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        h: Hyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The new `(param, exp_avg, exp_avg_sq)` after one AdamW step with gradient `grad` (all `[N]`,
/// on a device without autodiff). The fused kernel when `fused` is set and it applies, the
/// reference otherwise.
pub fn step(
    param: Tensor<1>,
    grad: Tensor<1>,
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
    h: Hyper,
    fused: bool,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let applies = param.dtype() == DType::F32 && super::cpu_or_wgpu(&param.device());
    if !(fused && applies) {
        return reference(param, grad, exp_avg, exp_avg_sq, h);
    }
    let (p, m, v) = Dispatch::adamw(
        param.into_dispatch(),
        grad.into_dispatch(),
        exp_avg.into_dispatch(),
        exp_avg_sq.into_dispatch(),
        h,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// The same update in plain Burn ops.
pub fn reference(
    param: Tensor<1>,
    grad: Tensor<1>,
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
    h: Hyper,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let m = exp_avg.mul_scalar(h.beta1) + grad.clone().mul_scalar(1.0 - h.beta1);
    let v = exp_avg_sq.mul_scalar(h.beta2) + grad.square().mul_scalar(1.0 - h.beta2);
    let m_hat = m.clone().div_scalar(1.0 - h.beta1.powi(h.t));
    let v_hat = v.clone().div_scalar(1.0 - h.beta2.powi(h.t));
    let p = param.mul_scalar(1.0 - h.lr * h.weight_decay)
        - (m_hat / (v_hat.sqrt().add_scalar(EPS))).mul_scalar(h.lr);
    (p, m, v)
}

impl AdamwOps for CubeBackend {
    fn adamw(
        param: CubeTensor,
        grad: CubeTensor,
        exp_avg: CubeTensor,
        exp_avg_sq: CubeTensor,
        h: Hyper,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let [p, g, m, v] = [param, grad, exp_avg, exp_avg_sq].map(into_contiguous);
        let n = p.meta.shape().num_elements();
        let outputs = [0; 3].map(|_| empty(&p, [n]));
        let groups = grid(n.div_ceil(WG as usize));
        let bits = |x: f64| (x as f32).to_bits();
        launch(
            &p,
            Wgsl {
                name: "adamw",
                source: shader!("adamw"),
                params: vec![("wg", WG)],
            },
            WG,
            groups,
            &[&p, &g, &m, &v, &outputs[0], &outputs[1], &outputs[2]],
            &[
                n as u32,
                groups.0 * WG,
                bits(h.lr),
                bits(h.beta1),
                bits(h.beta2),
                bits(EPS),
                bits(h.weight_decay),
                bits(1.0 - h.beta1.powi(h.t)),
                bits(1.0 - h.beta2.powi(h.t)),
            ],
        );
        let [p, m, v] = outputs;
        (p, m, v)
    }
}

/// The kernel's arithmetic (`adamw.wgsl`), element by element.
impl AdamwOps for Flex {
    fn adamw(
        param: FlexTensor,
        grad: FlexTensor,
        exp_avg: FlexTensor,
        exp_avg_sq: FlexTensor,
        h: Hyper,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [p, g, m, v] = [param, grad, exp_avg, exp_avg_sq].map(|t| t.to_contiguous());
        let shape = p.layout().shape().clone();
        let [p, g, m, v] = [&p, &g, &m, &v].map(cpu_values);
        let [lr, beta1, beta2, wd] = [h.lr, h.beta1, h.beta2, h.weight_decay].map(|x| x as f32);
        let c1 = (1.0 - h.beta1.powi(h.t)) as f32;
        let c2 = (1.0 - h.beta2.powi(h.t)) as f32;
        let eps = EPS as f32;
        let mut out = [0; 3].map(|_| Vec::with_capacity(p.len()));
        for i in 0..p.len() {
            let m_new = beta1 * m[i] + (1.0 - beta1) * g[i];
            let v_new = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
            out[0].push(p[i] * (1.0 - lr * wd) - lr * (m_new / c1) / ((v_new / c2).sqrt() + eps));
            out[1].push(m_new);
            out[2].push(v_new);
        }
        let [p, m, v] = out.map(|data| cpu_tensor(data, shape.clone()));
        (p, m, v)
    }
}

/// Updates a parameter of the inner backend: the optimiser steps off the autodiff graph.
impl<B: AdamwOps, C: CheckpointStrategy> AdamwOps for Autodiff<B, C> {
    fn adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        h: Hyper,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [p, g, m, v] = [param, grad, exp_avg, exp_avg_sq].map(Self::inner);
        untracked3::<B, C>(B::adamw(p, g, m, v, h))
    }
}

/// Output specs for the fusion decorator: three tensors like the parameter.
#[cfg(not(target_arch = "wasm32"))]
fn meta(param: &Spec, _: &Spec, _: &Spec, _: &Spec, _: &Hyper) -> (Spec, Spec, Spec) {
    (param.clone(), param.clone(), param.clone())
}
