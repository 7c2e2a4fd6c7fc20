//! AdamW with decoupled weight decay on matrices only, as nanoGPT's `configure_optimizers` sets it
//! (or, with `optimizer = "sgd"`, plain SGD with the same decay, which keeps no state).
//!
//! Ours rather than Burn's `ModuleOptimizer`: Burn serialises its state by reading tensors
//! synchronously, which a browser cannot do on WebGPU, and rebuilds it on its default device. Here
//! the moments are plain tensors keyed by parameter path, so a checkpoint reads them back
//! asynchronously and restores them on the trainer's own device.

use std::collections::BTreeMap;

use burn::module::{ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::config::{Optimizer, TrainConfig};
use crate::kernels::adamw::{self, Hyper};
use crate::model::Gpt;

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
pub struct Moments {
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
}

/// The optimizer's whole state.
#[derive(Clone, Debug, Default)]
pub struct AdamW {
    /// Updates applied so far; the bias correction depends on it.
    pub steps: usize,
    /// Moments by parameter path (`h.0.attn.c_attn.weight`).
    pub moments: BTreeMap<String, Moments>,
}

impl AdamW {
    /// Updates every parameter of `model` that has a gradient in `grads`:
    /// `p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps)`, with `wd` = 0 for vectors (norm gains, biases);
    /// with SGD, `p ← p·(1 − lr·wd) − lr·g`.
    pub fn step(&mut self, c: &TrainConfig, lr: f64, model: Gpt, grads: GradientsParams) -> Gpt {
        self.steps += 1;
        let fused = model.config().kernels;
        model.map(&mut Update {
            c,
            lr,
            fused,
            t: self.steps as i32,
            grads,
            moments: &mut self.moments,
            path: Vec::new(),
        })
    }
}

struct Update<'a> {
    c: &'a TrainConfig,
    lr: f64,
    /// Use the fused AdamW kernel where it applies.
    fused: bool,
    t: i32,
    grads: GradientsParams,
    moments: &'a mut BTreeMap<String, Moments>,
    path: Vec<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, value, mapper);
        };
        let autodiff = value.device().is_autodiff();
        let shape = value.dims();
        let n = shape.iter().product::<usize>();
        let p = value.inner().reshape([n]);
        let g = grad.reshape([n]);
        let weight_decay = if D >= 2 { self.c.weight_decay } else { 0.0 };
        if self.c.optimizer == Optimizer::Sgd {
            let p = p * (1.0 - self.lr * weight_decay) - g * self.lr;
            return Param::from_mapped_value(id, restore(p, shape, autodiff), mapper);
        }
        let path = self.path.join(".");
        let (m, v) = match self.moments.remove(&path) {
            Some(Moments {
                exp_avg,
                exp_avg_sq,
            }) => (exp_avg, exp_avg_sq),
            None => (
                Tensor::zeros([n], &g.device()),
                Tensor::zeros([n], &g.device()),
            ),
        };
        let h = Hyper {
            lr: self.lr,
            beta1: self.c.beta1,
            beta2: self.c.beta2,
            weight_decay,
            t: self.t,
        };
        let (p, m, v) = adamw::step(p, g, m, v, h, self.fused);
        self.moments.insert(
            path,
            Moments {
                exp_avg: m,
                exp_avg_sq: v,
            },
        );
        Param::from_mapped_value(id, restore(p, shape, autodiff), mapper)
    }
}

/// An updated flat parameter back in its shape, tracked again on an autodiff device.
fn restore<const D: usize>(p: Tensor<1>, shape: [usize; D], autodiff: bool) -> Tensor<D> {
    let p = p.reshape(shape);
    if autodiff {
        Tensor::from_inner(p).require_grad()
    } else {
        p
    }
}
