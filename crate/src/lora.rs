//! LoRA through Burn's parameter reparameterization: a targeted weight `W` is stored as it was
//! and read as `W + scale·A·B` ([`Adapter`]), so the model code is unchanged, Burn's
//! `materialize` merges the adapters into plain weights, and checkpoints hold the factors under
//! `<weight>.lora.parts.<i>.{a,b}`.
//!
//! Ours rather than Burn's `Lora` reparameterizer because GPT-2 keeps q, k and v in one weight
//! (`attn.c_attn`, `[C, 3C]`): an [`Adapter`] holds one low-rank pair per third, so q and v can
//! be adapted without k. Factors come from the model's seeded host stream (like the rest of the
//! initialisation); `B` starts at zero, so attaching adapters changes nothing until they train.

use burn::module::{Module, ModuleMapper, Param, Reparameterization, Reparameterizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::config::{LoraConfig, LoraTarget, ModelConfig};

/// The path segment of adapter parameters (Burn names a reparameterization's parameters under
/// its `NAME`).
const SEGMENT: &str = "lora";

#[derive(Module, Debug)]
pub struct Adapter {
    /// One pair per equal slice of `W`'s output columns (q | k | v for `c_attn`; one slice
    /// elsewhere); `None` leaves that slice as it is.
    parts: Vec<Option<LowRank>>,
    /// `alpha / rank`.
    scale: f64,
}

/// `A` `[in, rank]` and `B` `[rank, out / parts]`.
#[derive(Module, Debug)]
pub struct LowRank {
    a: Param<Tensor<2>>,
    b: Param<Tensor<2>>,
}

impl Reparameterization for Adapter {
    const NAME: &'static str = SEGMENT;

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let dims = base.dims();
        let (rows, cols) = (dims[0], dims[D - 1] / self.parts.len());
        let device = base.device();
        let slices: Vec<Tensor<2>> = self
            .parts
            .iter()
            .map(|part| match part {
                Some(p) => p.a.val().matmul(p.b.val()).mul_scalar(self.scale),
                None => Tensor::zeros([rows, cols], &device),
            })
            .collect();
        base + Tensor::cat(slices, 1).reshape(dims)
    }
}

/// Which slices of the weight at `path` the targets adapt, as one flag per slice; `None` when
/// the weight is not adapted at all.
pub(crate) fn slices(path: &str, targets: &[LoraTarget]) -> Option<Vec<bool>> {
    let has = |t: LoraTarget| targets.contains(&t);
    let parts = if path.ends_with("attn.c_attn.weight") {
        vec![has(LoraTarget::Q), has(LoraTarget::K), has(LoraTarget::V)]
    } else if path.ends_with("attn.c_proj.weight") {
        vec![has(LoraTarget::O)]
    } else if path.contains(".mlp.") && path.ends_with(".weight") {
        vec![has(LoraTarget::Mlp)]
    } else {
        return None;
    };
    parts.iter().any(|&p| p).then_some(parts)
}

/// Attaches an [`Adapter`] to every targeted weight.
struct Attach<'a> {
    config: &'a LoraConfig,
    rng: ChaCha8Rng,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = Adapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Adapter>) {
        let Some(parts) = slices(path, &self.config.targets).filter(|_| D == 2) else {
            return (param, None);
        };
        let dims = param.lazy_shape().dims::<D>();
        let device = param.lazy_device();
        let (d_in, d_out) = (dims[0], dims[D - 1] / parts.len());
        let r = self.config.rank;
        // Burn's LoRA default: A ~ N(0, 1/rank), B = 0.
        let normal = Normal::new(0.0, 1.0 / r as f32).expect("rank >= 1");
        let parts = parts
            .into_iter()
            .map(|on| {
                on.then(|| {
                    let a: Vec<f32> = (0..d_in * r)
                        .map(|_| normal.sample(&mut self.rng))
                        .collect();
                    LowRank {
                        a: Param::from_tensor(Tensor::from_data(
                            TensorData::new(a, [d_in, r]),
                            &device,
                        )),
                        b: Param::from_tensor(Tensor::zeros([r, d_out], &device)),
                    }
                })
            })
            .collect();
        let adapter = Adapter {
            parts,
            scale: self.config.scale(),
        };
        (param, Some(adapter))
    }
}

/// `model` with adapters on the weights `config` targets, drawn from `seed`.
pub fn attach<M: Module>(model: M, config: &LoraConfig, seed: u64) -> M {
    model.apply_reparameterization(Attach {
        config,
        // Its own stream: the base weights are the same with or without adapters.
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4c6f_5241),
    })
}

/// Whether the parameter at `path` is an adapter factor.
pub fn is_adapter(path: &str) -> bool {
    path.split('.').any(|s| s == SEGMENT)
}

/// Freezes all but the adapters and a classifier's head (new, so it must learn). Frozen weights
/// get no gradient, so the backward pass does not compute one and the optimizer never touches
/// them.
pub fn freeze_base<M: Module>(model: M) -> M {
    struct Trainable {
        path: Vec<String>,
    }
    impl ModuleMapper for Trainable {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = self.path.join(".");
            param.set_require_grad(is_adapter(&path) || crate::model::is_classifier_head(&path))
        }
    }
    model.map(&mut Trainable { path: Vec::new() })
}

/// Number of adapter scalars `c.lora` adds.
pub fn num_params_of(c: &ModelConfig) -> usize {
    let Some(l) = &c.lora else { return 0 };
    let (d, h) = (c.n_embd, c.mlp_hidden());
    let pair = |d_in: usize, d_out: usize| l.rank * (d_in + d_out);
    let mlp_weights = if c.mlp == crate::config::Mlp::Swiglu {
        2
    } else {
        1
    };
    let per_block: usize = l
        .targets
        .iter()
        .map(|t| match t {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => pair(d, d),
            LoraTarget::Mlp => mlp_weights * pair(d, h) + pair(h, d),
        })
        .sum();
    c.n_layer * per_block
}
