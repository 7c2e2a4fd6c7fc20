//! Fused softmax cross-entropy: `shaders/cross_entropy_forward.wgsl` (per-row loss and
//! log-sum-exp in one pass) and `cross_entropy_backward.wgsl` (the logits' gradient in one pass,
//! recomputing the softmax from the log-sum-exp).

use burn::backend::Dispatch;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ops::IntTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, IntDType};

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, grid, launch};

/// Invocations per workgroup.
const WG: u32 = 64;

/// Cross-entropy of each row of `logits [N, V]` against `targets [N]` (each in `0..V`): `[N]`.
/// Runs the fused kernels when `fused` is set and they apply, the reference otherwise.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, fused: bool) -> Tensor<1> {
    let applies = logits.dtype() == DType::F32 && super::supported(&logits.device());
    if !(fused && applies) {
        return reference(logits, targets);
    }
    Tensor::from_dispatch(Dispatch::cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// The same in plain Burn ops: `-log_softmax(logits)[target]`.
pub fn reference(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let n = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg()
}

/// The shaders read targets as i32.
fn as_i32(targets: CubeTensor) -> CubeTensor {
    let targets = into_contiguous(targets);
    if targets.dtype == DType::I32 {
        targets
    } else {
        CubeBackend::int_cast(targets, IntDType::I32)
    }
}

pub(super) fn forward_cube(logits: CubeTensor, targets: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (x, t) = (into_contiguous(logits), as_i32(targets));
    let [n, v] = x.meta.shape().dims::<2>();
    let loss = empty(&x, [n]);
    let lse = empty(&x, [n]);
    let groups = grid(n);
    launch(
        &x,
        Wgsl {
            name: "cross_entropy_forward",
            source: shader!("cross_entropy_forward", "uniform_sizes"),
            params: vec![("wg", WG)],
        },
        WG,
        groups,
        &[&x, &t, &loss, &lse],
        &[n as u32, v as u32, groups.0, 0],
    );
    (loss, lse)
}

pub(super) fn backward_cube(
    logits: CubeTensor,
    targets: CubeTensor,
    lse: CubeTensor,
    grad: CubeTensor,
) -> CubeTensor {
    let (x, t) = (into_contiguous(logits), as_i32(targets));
    let (lse, g) = (into_contiguous(lse), into_contiguous(grad));
    let [n, v] = x.meta.shape().dims::<2>();
    let dx = empty(&x, [n, v]);
    let groups = grid((n * v).div_ceil(WG as usize));
    launch(
        &x,
        Wgsl {
            name: "cross_entropy_backward",
            source: shader!("cross_entropy_backward"),
            params: vec![("wg", WG)],
        },
        WG,
        groups,
        &[&x, &t, &lse, &g, &dx],
        &[n as u32, v as u32, groups.0 * WG],
    );
    dx
}

/// Output specs for the fusion decorator: per-row loss and log-sum-exp, `[N]` each.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn forward_meta(logits: &Spec, _targets: &Spec) -> (Spec, Spec) {
    let row = Spec::new([logits.shape[0]].into(), logits.dtype);
    (row.clone(), row)
}

/// The tracked op: the forward kernel, and a backward step that runs the backward kernel.
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    logits: FloatTensor<Autodiff<B, C>>,
    targets: IntTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct CrossEntropyBackward;

    impl<B: KernelOps> Backward<B, 1> for CrossEntropyBackward {
        /// logits, targets, lse.
        type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (logits, targets, lse) = ops.state;
            if let [Some(node)] = ops.parents {
                let dx = B::cross_entropy_backward(logits, targets, lse, grad);
                grads.register::<B>(node.id, dx);
            }
        }
    }

    let prep = CrossEntropyBackward
        .prepare::<C>([logits.node()])
        .compute_bound()
        .stateful();
    let logits = logits.into_primitive();
    match prep {
        OpsKind::Tracked(prep) => {
            let (loss, lse) = B::cross_entropy_forward(logits.clone(), targets.clone());
            prep.finish((logits, targets, lse), loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::cross_entropy(logits, targets)),
    }
}
