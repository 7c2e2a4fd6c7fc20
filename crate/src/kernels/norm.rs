//! Fused LayerNorm and RMSNorm: `shaders/norm_forward.wgsl` (normalise, scale, shift; save the
//! row statistics), `norm_backward.wgsl` (the input's gradient) and `norm_backward_params.wgsl`
//! (the gain's and bias's gradients as partial column sums).

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

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, grid, launch};

/// Invocations per workgroup.
const WG: u32 = 64;
/// Rows summed by one invocation of the parameter-gradient kernel.
const PARAM_ROWS: usize = 256;

/// `norm(x)` over the last dimension with the module's parameters: the fused kernels when `fused`
/// is set and they apply, the module's own forward otherwise. `eps` is the ε the module was built
/// with (Burn keeps its copy private).
pub fn layer_norm<const D: usize>(
    norm: &LayerNorm,
    x: Tensor<D>,
    eps: f64,
    fused: bool,
) -> Tensor<D> {
    if !(fused && applies(&x)) {
        return norm.forward(x);
    }
    let beta = match &norm.beta {
        Some(beta) => beta.val(),
        None => norm.gamma.val().zeros_like(),
    };
    run(x, norm.gamma.val(), beta, eps, false)
}

/// RMSNorm, as [`layer_norm`].
pub fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>, fused: bool) -> Tensor<D> {
    if !(fused && applies(&x)) {
        return norm.forward(x);
    }
    let gamma = norm.gamma.val();
    run(x, gamma.clone(), gamma.zeros_like(), norm.epsilon, true)
}

fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && super::supported(&x.device())
}

fn run<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
    rms: bool,
) -> Tensor<D> {
    let dims = x.dims();
    let c = dims[D - 1];
    let rows = x.reshape([dims.iter().product::<usize>() / c, c]);
    let y = Dispatch::norm(
        rows.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps as f32,
        rms,
    );
    Tensor::<2>::from_dispatch(y).reshape(dims)
}

fn kernel(name: &'static str, source: &'static str, rms: bool) -> Wgsl {
    Wgsl {
        name,
        source,
        params: vec![("wg", WG), ("rms", rms as u32)],
    }
}

pub(super) fn forward_cube(
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    eps: f32,
    rms: bool,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [x, gamma, beta] = [x, gamma, beta].map(into_contiguous);
    let [n, c] = x.meta.shape().dims::<2>();
    let y = empty(&x, [n, c]);
    let mean = empty(&x, [n]);
    let rstd = empty(&x, [n]);
    let groups = grid(n);
    launch(
        &x,
        kernel(
            "norm_forward",
            shader!("norm_forward", "uniform_sizes", "workgroup_sum"),
            rms,
        ),
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
    rms: bool,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [x, gamma, dy, mean, rstd] = [x, gamma, dy, mean, rstd].map(into_contiguous);
    let [n, c] = x.meta.shape().dims::<2>();
    let dx = empty(&x, [n, c]);
    let groups = grid(n);
    launch(
        &x,
        kernel(
            "norm_backward",
            shader!("norm_backward", "uniform_sizes", "workgroup_sum"),
            rms,
        ),
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
    _rms: &bool,
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
    _rms: &bool,
) -> (Spec, Spec, Spec) {
    (x.clone(), gamma.clone(), gamma.clone())
}

/// The tracked op: the forward kernel, and a backward step that runs the backward kernels.
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    eps: f32,
    rms: bool,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct NormBackward;

    impl<B: KernelOps> Backward<B, 3> for NormBackward {
        /// x, γ, mean, rstd, rms.
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            bool,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let dy = grads.consume::<B>(&ops.node);
            let (x, gamma, mean, rstd, rms) = ops.state;
            let (dx, dgamma, dbeta) = B::norm_backward(x, gamma, dy, mean, rstd, rms);
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
            let (y, mean, rstd) = B::norm_forward(x.clone(), gamma.clone(), beta, eps, rms);
            prep.finish((x, gamma, mean, rstd, rms), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::norm(x, gamma, beta, eps, rms)),
    }
}
