//! Matrix multiply in two hand-written designs, `shaders/matmul.wgsl` (32 × 32 tiles read
//! straight from memory into 4 × 4 register blocks) and `shaders/matmul_staged.wgsl` (64 × 64
//! tiles staged through workgroup memory), with their backward; strided inputs make the
//! transposes free.
//!
//! Which design is faster depends on the adapter: CPU emulators pay for every barrier, hardware
//! GPUs for every read of global memory. So the page times the designs and Burn's own matmul at
//! the model's shape on its adapter ([`crate::bench::tune_matmul`]) and [`choose`]s the fastest
//! that computes right. Until then the browser uses the register-blocked kernel (6× Burn's
//! untuned matmul on SwiftShader) and natively Burn's autotuned matmul, the faster on lavapipe
//! (`cargo xtask bench kernels`, docs/kernels.md).

use std::sync::atomic::{AtomicU8, Ordering};

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
use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, launch};

/// A way to multiply matrices: Burn's matmul or one of Kiln's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// Burn's matmul (autotuned natively, a fixed algorithm in the browser).
    #[serde(rename = "burn")]
    Burn,
    /// `matmul.wgsl`: no workgroup memory and no barriers, for CPU-emulated adapters.
    #[serde(rename = "registers-32")]
    Registers,
    /// `matmul_staged.wgsl`: workgroup-memory tiles, for hardware GPUs.
    #[serde(rename = "staged-64")]
    Staged,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Burn, Variant::Registers, Variant::Staged];

    /// The name tables and the page show (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Burn => "burn",
            Variant::Registers => "registers-32",
            Variant::Staged => "staged-64",
        }
    }
}

/// The variant the model's linear layers use when its kernels are on (an index into
/// [`Variant::ALL`]): one adapter per process, so one choice.
static CHOSEN: AtomicU8 = AtomicU8::new(if cfg!(target_arch = "wasm32") { 1 } else { 0 });

/// Makes `variant` the one the model's linear layers use from their next forward pass on.
pub fn choose(variant: Variant) {
    let index = Variant::ALL.iter().position(|&v| v == variant);
    CHOSEN.store(
        index.expect("ALL lists every variant") as u8,
        Ordering::Relaxed,
    );
}

/// The variant [`choose`] last set (or the target's default).
pub fn chosen() -> Variant {
    Variant::ALL[usize::from(CHOSEN.load(Ordering::Relaxed))]
}

/// `a [M, K] · b [K, N]` by `variant`; a kernel falls back to Burn's matmul where it does not
/// apply (the CPU backend, another dtype).
pub fn matmul(a: Tensor<2>, b: Tensor<2>, variant: Variant) -> Tensor<2> {
    let applies = a.dtype() == DType::F32 && super::supported(&a.device());
    if variant == Variant::Burn || !applies {
        return a.matmul(b);
    }
    Tensor::from_dispatch(Dispatch::tiled_matmul(
        a.into_dispatch(),
        b.into_dispatch(),
        variant == Variant::Staged,
    ))
}

pub(super) fn forward_cube(a: CubeTensor, b: CubeTensor, staged: bool) -> CubeTensor {
    let [m, k] = a.meta.shape().dims::<2>();
    let n = b.meta.shape()[1];
    let c = empty(&a, [m, n]);
    let (sa, sb) = (a.meta.strides(), b.meta.strides());
    let info = [m, n, k, sa[0], sa[1], sb[0], sb[1]].map(|x| x as u32);
    // Rows and columns of C per workgroup, and invocations per workgroup.
    let (wgsl, tile, invocations) = if staged {
        let source = shader!("matmul_staged", "uniform_sizes");
        (("matmul_staged", source), 64, 256)
    } else {
        (("matmul", shader!("matmul")), 32, 64)
    };
    launch(
        &a,
        Wgsl {
            name: wgsl.0,
            source: wgsl.1,
            params: vec![],
        },
        invocations,
        (n.div_ceil(tile) as u32, m.div_ceil(tile) as u32),
        &[&a, &b, &c],
        &info,
    );
    c
}

/// Output spec for the fusion decorator: `[M, N]`.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn meta(a: &Spec, b: &Spec, _staged: &bool) -> Spec {
    Spec::new([a.shape[0], b.shape[1]].into(), a.dtype)
}

/// The tracked op: `dA = dC · Bᵀ`, `dB = Aᵀ · dC`, both on the forward's kernel (the
/// transposes are stride swaps).
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    staged: bool,
) -> FloatTensor<Autodiff<B, C>> {
    /// Whether the kernel is the staged one.
    #[derive(Debug)]
    struct MatmulBackward(bool);

    impl<B: KernelOps> Backward<B, 2> for MatmulBackward {
        /// a, b.
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (a, b) = ops.state;
            let [node_a, node_b] = ops.parents;
            if let Some(node) = node_a {
                let da = B::tiled_matmul(grad.clone(), B::float_transpose(b), self.0);
                grads.register::<B>(node.id, da);
            }
            if let Some(node) = node_b {
                let db = B::tiled_matmul(B::float_transpose(a), grad, self.0);
                grads.register::<B>(node.id, db);
            }
        }
    }

    let prep = MatmulBackward(staged)
        .prepare::<C>([a.node(), b.node()])
        .compute_bound()
        .stateful();
    let (a, b) = (a.into_primitive(), b.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let c = B::tiled_matmul(a.clone(), b.clone(), staged);
            prep.finish((a, b), c)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::tiled_matmul(a, b, staged)),
    }
}
