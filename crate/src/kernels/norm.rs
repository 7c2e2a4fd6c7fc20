//! Fused LayerNorm and RMSNorm: `shaders/norm_forward.wgsl` (normalise, scale, shift; save the
//! row statistics), `norm_backward.wgsl` (the input's gradient) and `norm_backward_params.wgsl`
//! (the gain's and bias's gradients as partial column sums).
//!
//! The row sums come in two designs ([`Sum`]): a tree in workgroup memory, and, where the adapter
//! has WebGPU's `subgroups`, subgroup additions with two barriers. The page times both on its
//! adapter ([`crate::bench::tune`]) and [`choose`]s the faster that computes right.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Dispatch;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::nn::{LayerNorm, RmsNorm};
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, grid, launch};

/// Invocations per workgroup.
const WG: u32 = 64;
/// Rows summed by one invocation of the parameter-gradient kernel.
const PARAM_ROWS: usize = 256;

/// How the kernels add up a row across a workgroup's invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sum {
    /// `workgroup_sum.wgsl`: a tree in workgroup memory, log2(WG) + 2 barriers; runs anywhere.
    #[serde(rename = "workgroup-tree")]
    Tree,
    /// `subgroup_sum.wgsl`: subgroup additions and two barriers; needs the adapter's `subgroups`.
    #[serde(rename = "subgroups")]
    Subgroups,
}

impl Sum {
    pub const ALL: [Sum; 2] = [Sum::Tree, Sum::Subgroups];

    /// The name tables and the page show (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            Sum::Tree => "workgroup-tree",
            Sum::Subgroups => "subgroups",
        }
    }

    /// The designs `device` can run: the tree everywhere, subgroups where the adapter has them.
    pub fn available(device: &Device) -> Vec<Sum> {
        let subgroups = super::supports_subgroups(device);
        Sum::ALL
            .into_iter()
            .filter(|&s| s == Sum::Tree || subgroups)
            .collect()
    }
}

/// Whether the model's norms sum with subgroups: one adapter per process, so one choice.
static SUBGROUPS: AtomicBool = AtomicBool::new(false);

/// Makes `sum` the design the model's norms use from their next forward pass on.
pub fn choose(sum: Sum) {
    SUBGROUPS.store(sum == Sum::Subgroups, Ordering::Relaxed);
}

/// The design [`choose`] last set (the tree until then).
pub fn chosen() -> Sum {
    match SUBGROUPS.load(Ordering::Relaxed) {
        true => Sum::Subgroups,
        false => Sum::Tree,
    }
}

/// What the kernels are told about a norm: RMSNorm or LayerNorm, and how they sum a row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Kind {
    pub rms: bool,
    pub sum: Sum,
}

/// `norm(x)` over the last dimension with the module's parameters: the fused kernels summing by
/// `kernel` when it is given and they apply, the module's own forward otherwise. `eps` is the ε
/// the module was built with (Burn keeps its copy private).
pub fn layer_norm<const D: usize>(
    norm: &LayerNorm,
    x: Tensor<D>,
    eps: f64,
    kernel: Option<Sum>,
) -> Tensor<D> {
    let Some(sum) = kernel.filter(|_| applies(&x)) else {
        return norm.forward(x);
    };
    let beta = match &norm.beta {
        Some(beta) => beta.val(),
        None => norm.gamma.val().zeros_like(),
    };
    run(x, norm.gamma.val(), beta, eps, Kind { rms: false, sum })
}

/// RMSNorm, as [`layer_norm`].
pub fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>, kernel: Option<Sum>) -> Tensor<D> {
    let Some(sum) = kernel.filter(|_| applies(&x)) else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    let kind = Kind { rms: true, sum };
    run(x, gamma.clone(), gamma.zeros_like(), norm.epsilon, kind)
}

fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && super::supported(&x.device())
}

fn run<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
    kind: Kind,
) -> Tensor<D> {
    let dims = x.dims();
    let c = dims[D - 1];
    let rows = x.reshape([dims.iter().product::<usize>() / c, c]);
    let y = Dispatch::norm(
        rows.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps as f32,
        kind,
    );
    Tensor::<2>::from_dispatch(y).reshape(dims)
}

/// WGSL's `enable subgroups;`: browsers require it before a shader uses subgroups, while naga
/// (native wgpu) does not implement the directive and gates subgroups on the device alone.
#[cfg(target_arch = "wasm32")]
macro_rules! enable_subgroups {
    () => {
        "enable subgroups;\n"
    };
}
#[cfg(not(target_arch = "wasm32"))]
macro_rules! enable_subgroups {
    () => {
        ""
    };
}

/// The kernel `shaders/<name>.wgsl` for `kind`, with the row-sum snippet its design calls for
/// appended. The sum is a template parameter too, so that CubeCL caches the two designs apart.
macro_rules! norm_kernel {
    ($name:literal, $kind:expr) => {{
        let kind: Kind = $kind;
        Wgsl {
            name: $name,
            source: match kind.sum {
                Sum::Tree => shader!($name, "uniform_sizes", "workgroup_sum"),
                Sum::Subgroups => concat!(
                    enable_subgroups!(),
                    shader!($name, "uniform_sizes", "subgroup_sum")
                ),
            },
            params: vec![
                ("wg", WG),
                ("rms", kind.rms as u32),
                ("subgroups", (kind.sum == Sum::Subgroups) as u32),
            ],
        }
    }};
}

pub(super) fn forward_cube(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    eps: f32,
    kind: Kind,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
    let [n, c] = x.meta.shape().dims::<2>();
    let y = empty(&x, [n, c]);
    let mean = empty(&x, [n]);
    let rstd = empty(&x, [n]);
    let groups = grid(n);
    launch(
        &x,
        norm_kernel!("norm_forward", kind),
        WG,
        groups,
        &[&x, &gamma, &beta, &y, &mean, &rstd],
        &[n as u32, c as u32, groups.0, eps.to_bits()],
    );
    (y, mean, rstd)
}

pub(super) fn backward_cube(
    x: CubeTensor,
    gamma: CubeTensor,
    dy: CubeTensor,
    mean: CubeTensor,
    rstd: CubeTensor,
    kind: Kind,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [x, gamma, dy, mean, rstd] = [x, gamma, dy, mean, rstd].map(into_contiguous);
    let [n, c] = x.meta.shape().dims::<2>();
    let dx = empty(&x, [n, c]);
    let groups = grid(n);
    launch(
        &x,
        norm_kernel!("norm_backward", kind),
        WG,
        groups,
        &[&x, &gamma, &dy, &mean, &rstd, &dx],
        &[n as u32, c as u32, groups.0, 0],
    );
    let chunks = n.div_ceil(PARAM_ROWS);
    let dgamma = empty(&x, [chunks, c]);
    let dbeta = empty(&x, [chunks, c]);
    launch(
        &x,
        Wgsl {
            name: "norm_backward_params",
            source: shader!("norm_backward_params"),
            params: vec![("wg", WG), ("rows", PARAM_ROWS as u32)],
        },
        WG,
        (c.div_ceil(WG as usize) as u32, chunks as u32),
        &[&x, &dy, &mean, &rstd, &dgamma, &dbeta],
        &[n as u32, c as u32],
    );
    let column_sum = |t: CubeTensor| {
        let t = CubeBackend::float_sum_dim(t, 0);
        CubeBackend::float_reshape(t, [c].into())
    };
    (dx, column_sum(dgamma), column_sum(dbeta))
}

/// Output specs for the fusion decorator: `y` like `x`, one statistic per row.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn forward_meta(
    x: &Spec,
    _gamma: &Spec,
    _beta: &Spec,
    _eps: &f32,
    _kind: &Kind,
) -> (Spec, Spec, Spec) {
    let row = Spec::new([x.shape[0]].into(), x.dtype);
    (x.clone(), row.clone(), row)
}

/// Output specs for the fusion decorator: `dx` like `x`, `dγ` and `dβ` like `γ`.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn backward_meta(
    x: &Spec,
    gamma: &Spec,
    _dy: &Spec,
    _mean: &Spec,
    _rstd: &Spec,
    _kind: &Kind,
) -> (Spec, Spec, Spec) {
    (x.clone(), gamma.clone(), gamma.clone())
}

/// The tracked op: the forward kernel, and a backward step that runs the backward kernels.
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    eps: f32,
    kind: Kind,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct NormBackward;

    impl<B: KernelOps> Backward<B, 3> for NormBackward {
        /// x, γ, mean, rstd, kind.
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            Kind,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let dy = grads.consume::<B>(&ops.node);
            let (x, gamma, mean, rstd, kind) = ops.state;
            let (dx, dgamma, dbeta) = B::norm_backward(x, gamma, dy, mean, rstd, kind);
            for (parent, grad) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
                if let Some(node) = parent {
                    grads.register::<B>(node.id, grad);
                }
            }
        }
    }

    let prep = NormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful();
    let (x, gamma, beta) = (
        x.into_primitive(),
        gamma.into_primitive(),
        beta.into_primitive(),
    );
    match prep {
        OpsKind::Tracked(prep) => {
            let (y, mean, rstd) = B::norm_forward(x.clone(), gamma.clone(), beta, eps, kind);
            prep.finish((x, gamma, mean, rstd, kind), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::norm(x, gamma, beta, eps, kind)),
    }
}
