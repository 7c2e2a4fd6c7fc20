//! Fused LayerNorm and RMSNorm: `shaders/norm_forward.wgsl` (normalise, scale, shift; save the
//! row statistics), `norm_backward.wgsl` (the input's gradient) and `norm_backward_params.wgsl`
//! (the gain's and bias's gradients as partial column sums). On the CPU backend, the same
//! arithmetic as a loop over the rows: Burn's `LayerNorm` is about ten plain ops forward and
//! twice as many in their autodiff, each a pass over the activations writing a fresh tensor.
//!
//! The row sums come in two designs ([`Sum`]): a tree in workgroup memory, and, where the adapter
//! has WebGPU's `subgroups`, subgroup additions with two barriers. The page times both on its
//! adapter ([`crate::bench::tune`]) and [`choose`]s the faster that computes right.
//!
//! Its own backend extension rather than part of [`super::KernelOps`], as [`super::gelu`]: it
//! has a CPU implementation, and an extension must be implemented on every backend it lists.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::nn::{LayerNorm, RmsNorm};
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{Wgsl, cpu_tensor, cpu_values, empty, grid, launch, untracked3};

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

#[backend_extension(Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait NormOps: Backend {
    /// LayerNorm (or, with `kind.rms`, RMSNorm) of each row of `x [N, C]` with gain and bias
    /// `[C]`, its row sums taken as `kind.sum` says: the output `[N, C]` and the row statistics
    /// mean and 1/std, `[N]` each.
    #[fusion(meta = forward_meta)]
    fn norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
        kind: Kind,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients `(dx, dgamma, dbeta)` of [`NormOps::norm_forward`] given the output's gradient
    /// `dy` and the saved statistics.
    #[fusion(meta = backward_meta)]
    fn norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        kind: Kind,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The differentiable op: the normalised output alone.
    #[fusion(default)]
    fn norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
        kind: Kind,
    ) -> FloatTensor<Self> {
        Self::norm_forward(x, gamma, beta, eps, kind).0
    }
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
    x.dtype() == DType::F32 && super::cpu_or_wgpu(&x.device())
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

impl NormOps for CubeBackend {
    fn norm_forward(
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

    fn norm_backward(
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
}

/// The kernels' arithmetic (`norm_forward.wgsl`, `norm_backward.wgsl`), one row at a time.
impl NormOps for Flex {
    fn norm_forward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f32,
        kind: Kind,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let (xs, gamma, beta) = (cpu_values(&x), cpu_values(&gamma), cpu_values(&beta));
        let c = gamma.len();
        let n = xs.len() / c;
        let mut y = vec![0.0; n * c];
        let (mut mean, mut rstd) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (row, out) in xs.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let mu = match kind.rms {
                true => 0.0,
                false => row.iter().sum::<f32>() / c as f32,
            };
            let var = row.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for (i, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                *o = (v - mu) * inv * gamma[i] + beta[i];
            }
            mean.push(mu);
            rstd.push(inv);
        }
        let rows = |v| cpu_tensor(v, [n].into());
        (cpu_tensor(y, [n, c].into()), rows(mean), rows(rstd))
    }

    fn norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        dy: FlexTensor,
        mean: FlexTensor,
        rstd: FlexTensor,
        kind: Kind,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [x, gamma, dy, mean, rstd] = [x, gamma, dy, mean, rstd].map(|t| t.to_contiguous());
        let (xs, gamma, dys) = (cpu_values(&x), cpu_values(&gamma), cpu_values(&dy));
        let (mean, rstd) = (cpu_values(&mean), cpu_values(&rstd));
        let c = gamma.len();
        let mut dx = vec![0.0; xs.len()];
        let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
        let rows = xs.chunks_exact(c).zip(dys.chunks_exact(c));
        for (((row, dyr), out), (&mu, &inv)) in
            rows.zip(dx.chunks_exact_mut(c)).zip(mean.iter().zip(rstd))
        {
            let (mut sum_g, mut sum_gx) = (0.0, 0.0);
            for i in 0..c {
                let xhat = (row[i] - mu) * inv;
                let g = gamma[i] * dyr[i];
                sum_g += g;
                sum_gx += g * xhat;
                dgamma[i] += dyr[i] * xhat;
                dbeta[i] += dyr[i];
            }
            let mean_g = if kind.rms { 0.0 } else { sum_g / c as f32 };
            let mean_gx = sum_gx / c as f32;
            for i in 0..c {
                let xhat = (row[i] - mu) * inv;
                out[i] = inv * (gamma[i] * dyr[i] - mean_g - xhat * mean_gx);
            }
        }
        let params = |v| cpu_tensor(v, [c].into());
        (
            cpu_tensor(dx, x.layout().shape().clone()),
            params(dgamma),
            params(dbeta),
        )
    }
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
impl<B: NormOps, C: CheckpointStrategy> NormOps for Autodiff<B, C> {
    fn norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
        kind: Kind,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, gamma, beta] = [x, gamma, beta].map(Self::inner);
        untracked3::<B, C>(B::norm_forward(x, gamma, beta, eps, kind))
    }

    fn norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        kind: Kind,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, gamma, dy, mean, rstd] = [x, gamma, dy, mean, rstd].map(Self::inner);
        untracked3::<B, C>(B::norm_backward(x, gamma, dy, mean, rstd, kind))
    }

    fn norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
        kind: Kind,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, gamma, beta, eps, kind)
    }
}

fn tracked<B: NormOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    eps: f32,
    kind: Kind,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct NormBackward;

    impl<B: NormOps> Backward<B, 3> for NormBackward {
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
