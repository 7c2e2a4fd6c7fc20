//! Register-blocked matrix multiply: `shaders/matmul.wgsl` (32 × 32 tiles, 4 × 4 register blocks,
//! strided inputs so transposes are free), with its backward.
//!
//! The model's linear layers use it in the browser, where Burn's matmul runs untuned and the
//! kernel measured 6× faster on SwiftShader; natively Burn's autotuned matmul is faster on
//! lavapipe (`cargo xtask bench kernels`, docs/kernels.md).

use burn::backend::Dispatch;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeTensor;
use burn::prelude::*;
use burn::tensor::DType;

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, launch};

/// Rows and columns of C per workgroup.
const TILE: usize = 32;

/// `a [M, K] · b [K, N]`: the tiled kernel when `fused` is set and it applies, Burn's matmul
/// otherwise.
pub fn matmul(a: Tensor<2>, b: Tensor<2>, fused: bool) -> Tensor<2> {
    let applies = a.dtype() == DType::F32 && super::supported(&a.device());
    if !(fused && applies) {
        return a.matmul(b);
    }
    Tensor::from_dispatch(Dispatch::tiled_matmul(a.into_dispatch(), b.into_dispatch()))
}

pub(super) fn forward_cube(a: CubeTensor, b: CubeTensor) -> CubeTensor {
    let [m, k] = a.meta.shape().dims::<2>();
    let n = b.meta.shape()[1];
    let c = empty(&a, [m, n]);
    let (sa, sb) = (a.meta.strides(), b.meta.strides());
    let info = [m, n, k, sa[0], sa[1], sb[0], sb[1]].map(|x| x as u32);
    launch(
        &a,
        Wgsl {
            name: "matmul",
            source: shader!("matmul"),
            params: vec![],
        },
        64,
        (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32),
        &[&a, &b, &c],
        &info,
    );
    c
}

/// Output spec for the fusion decorator: `[M, N]`.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn meta(a: &Spec, b: &Spec) -> Spec {
    Spec::new([a.shape[0], b.shape[1]].into(), a.dtype)
}

/// The tracked op: `dA = dC · Bᵀ`, `dB = Aᵀ · dC`, both on the tiled kernel (the transposes are
/// stride swaps).
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct MatmulBackward;

    impl<B: KernelOps> Backward<B, 2> for MatmulBackward {
        /// a, b.
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (a, b) = ops.state;
            let [node_a, node_b] = ops.parents;
            if let Some(node) = node_a {
                let da = B::tiled_matmul(grad.clone(), B::float_transpose(b));
                grads.register::<B>(node.id, da);
            }
            if let Some(node) = node_b {
                let db = B::tiled_matmul(B::float_transpose(a), grad);
                grads.register::<B>(node.id, db);
            }
        }
    }

    let prep = MatmulBackward
        .prepare::<C>([a.node(), b.node()])
        .compute_bound()
        .stateful();
    let (a, b) = (a.into_primitive(), b.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let c = B::tiled_matmul(a.clone(), b.clone());
            prep.finish((a, b), c)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::tiled_matmul(a, b)),
    }
}
