//! Fused self-attention, causal (a GPT) or bidirectional (an encoder): `shaders/attention_forward.wgsl` (output and log-sum-exp, never
//! the score matrix), `attention_backward_dq.wgsl` and `attention_backward_dkv.wgsl` (gradients,
//! recomputing the probabilities from the log-sum-exp).

use std::sync::atomic::{AtomicU32, Ordering};

use burn::backend::Dispatch;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeTensor, into_contiguous};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::softmax;

#[cfg(not(target_arch = "wasm32"))]
use super::Spec;
use super::{KernelOps, Wgsl, empty, launch, shared_memory, softmax};

/// Largest head dimension the kernels take: each invocation keeps a few rows of D floats.
pub const MAX_HEAD_DIM: usize = 128;
/// Query (or key) rows per workgroup, one per invocation.
const ROWS: u32 = 64;
/// The key tiles (rows staged in workgroup memory at a time) the page's tuning tries: larger
/// tiles mean fewer barriers, smaller ones less workgroup memory per group.
pub const TILES: [u32; 3] = [64, 32, 16];

/// Keys per tile the model's attention uses (at most: a tile must fit the adapter's workgroup
/// memory): one adapter per process, so one choice.
static TILE: AtomicU32 = AtomicU32::new(TILES[0]);

/// Makes the model's attention use tiles of up to `keys` keys from its next forward pass on.
pub fn choose_tile(keys: u32) {
    TILE.store(keys, Ordering::Relaxed);
}

/// The tile [`choose_tile`] last set (64 until then).
pub fn chosen_tile() -> u32 {
    TILE.load(Ordering::Relaxed)
}

/// Which keys each query may see.
#[derive(Clone, Debug)]
pub enum Mask {
    /// A GPT's: keys up to the query's own position (queries are the last `T_q` of the `T_k`
    /// positions, so a KV cache holds the past).
    Causal,
    /// An encoder's: every key.
    Bidirectional,
    /// An encoder's over padded rows: every key but those marked `true` in `[B, T_k]` (the
    /// `[PAD]` after a text). Plain ops only: the fused kernels have no padding input.
    Padded(Box<Tensor<2, Bool>>),
}

impl Mask {
    /// The fused kernels' template flag, or `None` where they do not apply.
    fn causal(&self) -> Option<bool> {
        match self {
            Self::Causal => Some(true),
            Self::Bidirectional => Some(false),
            Self::Padded(_) => None,
        }
    }
}

/// Self-attention `softmax(q kᵀ / √D + mask) v` of `q [B, H, T_q, D]` over `k, v [B, H, T_k, D]`.
/// Runs the fused kernels with key tiles of up to `tile` keys where they apply, and on the CPU
/// backend the fused masked softmax ([`super::softmax`]) between plain matmuls; the reference
/// otherwise (and with `tile = None`).
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Mask,
    tile: Option<u32>,
) -> Tensor<4> {
    let d = q.dims()[3];
    let scale = 1.0 / (d as f32).sqrt();
    let (Some(causal), Some(tile)) = (mask.causal(), tile) else {
        return reference(q, k, v, mask);
    };
    if softmax::applies(&q) {
        return softmax::masked_softmax(q.matmul(k.swap_dims(2, 3)), scale, causal).matmul(v);
    }
    if !(d <= MAX_HEAD_DIM && q.dtype() == DType::F32 && super::supported(&q.device())) {
        return reference(q, k, v, mask);
    }
    let out = Tensor::from_dispatch(Dispatch::flash_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
        causal,
        tile,
    ));
    // Tests only: a device that computes wrong (see `verify::inject_fault`).
    let fault = crate::verify::fault();
    if fault == 1.0 {
        out
    } else {
        out.mul_scalar(fault)
    }
}

/// The same computation in plain Burn ops: scores, mask, softmax, weighted sum.
pub fn reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Mask) -> Tensor<4> {
    weights(q, k, mask).matmul(v)
}

/// The attention weights `softmax(q kᵀ / √D + mask)`, `[B, H, T_q, T_k]`.
pub fn weights(q: Tensor<4>, k: Tensor<4>, mask: Mask) -> Tensor<4> {
    let d = q.dims()[3];
    masked_softmax(q.matmul(k.swap_dims(2, 3)), d, mask)
}

/// Attention for mixed precision: the two matmuls in f16, the mask and softmax in f32; f32 in
/// and out. (The fused kernel is f32 only.)
pub fn half(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Mask) -> Tensor<4> {
    let d = q.dims()[3];
    let f16 = |x: Tensor<4>| x.cast(DType::F16);
    let scores = f16(q).matmul(f16(k).swap_dims(2, 3)).cast(DType::F32);
    f16(masked_softmax(scores, d, mask))
        .matmul(f16(v))
        .cast(DType::F32)
}

/// `softmax(scores / √d)` over the keys the mask lets each query see.
fn masked_softmax(scores: Tensor<4>, d: usize, mask: Mask) -> Tensor<4> {
    let [b, _, t, t_k] = scores.dims();
    let scores = scores / (d as f64).sqrt();
    let hidden = match mask {
        // Query i sits at absolute position t_k - t + i and may see keys 0..=that position.
        Mask::Causal => Tensor::<2, Bool>::tril_mask([t, t_k], (t_k - t) as i64, &scores.device())
            .unsqueeze_dims(&[0, 1]),
        Mask::Bidirectional => return softmax(scores, 3),
        Mask::Padded(pad) => pad.reshape([b, 1, 1, t_k]),
    };
    softmax(scores.mask_fill(hidden, f32::NEG_INFINITY), 3)
}

/// Keys (or queries) per tile in workgroup memory, up to `max`: the backward's dK/dV kernel
/// holds two tiles of D floats and two of one float per row, and the adapter's limit must hold
/// them.
fn tile_rows(d: usize, shared_bytes: usize, max: u32) -> u32 {
    let mut rows = max as usize;
    while rows > 1 && 2 * rows * (d + 1) * 4 > shared_bytes {
        rows /= 2;
    }
    rows as u32
}

fn kernel(
    name: &'static str,
    source: &'static str,
    d: usize,
    causal: bool,
    tile: u32,
    like: &CubeTensor,
) -> Wgsl {
    Wgsl {
        name,
        source,
        params: vec![
            ("d", d as u32),
            ("causal", causal as u32),
            ("br", ROWS),
            ("bc", tile_rows(d, shared_memory(like), tile)),
        ],
    }
}

/// `[B·H, T_q, T_k, scale]` as the shaders read it, and the launch grid's B·H.
fn info(q: &CubeTensor, k: &CubeTensor, scale: f32) -> ([u32; 4], usize) {
    let [b, h, t_q, _] = q.meta.shape().dims::<4>();
    let t_k = k.meta.shape()[2];
    let bh = b * h;
    ([bh as u32, t_q as u32, t_k as u32, scale.to_bits()], bh)
}

pub(super) fn forward_cube(
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    scale: f32,
    causal: bool,
    tile: u32,
) -> (CubeTensor, CubeTensor) {
    let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
    let [b, h, t_q, d] = q.meta.shape().dims::<4>();
    let o = empty(&q, [b, h, t_q, d]);
    let lse = empty(&q, [b, h, t_q]);
    let (info, bh) = info(&q, &k, scale);
    launch(
        &q,
        kernel(
            "attention_forward",
            shader!("attention_forward", "uniform_sizes"),
            d,
            causal,
            tile,
            &q,
        ),
        ROWS,
        (t_q.div_ceil(ROWS as usize) as u32, bh as u32),
        &[&q, &k, &v, &o, &lse],
        &info,
    );
    (o, lse)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward_cube(
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    o: CubeTensor,
    d_o: CubeTensor,
    lse: CubeTensor,
    scale: f32,
    causal: bool,
    tile: u32,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [q, k, v, o, d_o, lse] = [q, k, v, o, d_o, lse].map(into_contiguous);
    let [b, h, t_q, d] = q.meta.shape().dims::<4>();
    let t_k = k.meta.shape()[2];
    let dq = empty(&q, [b, h, t_q, d]);
    let delta = empty(&q, [b, h, t_q]);
    let dk = empty(&q, [b, h, t_k, d]);
    let dv = empty(&q, [b, h, t_k, d]);
    let (info, bh) = info(&q, &k, scale);
    let groups = |t: usize| (t.div_ceil(ROWS as usize) as u32, bh as u32);
    launch(
        &q,
        kernel(
            "attention_backward_dq",
            shader!("attention_backward_dq", "uniform_sizes"),
            d,
            causal,
            tile,
            &q,
        ),
        ROWS,
        groups(t_q),
        &[&q, &k, &v, &o, &d_o, &lse, &dq, &delta],
        &info,
    );
    // Reads the Δ just written: launches on one queue run in order.
    launch(
        &q,
        kernel(
            "attention_backward_dkv",
            shader!("attention_backward_dkv", "uniform_sizes"),
            d,
            causal,
            tile,
            &q,
        ),
        ROWS,
        groups(t_k),
        &[&q, &k, &v, &d_o, &lse, &delta, &dk, &dv],
        &info,
    );
    (dq, dk, dv)
}

/// Output specs for the fusion decorator: `o` like `q`, `lse` without the head dimension.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn forward_meta(
    q: &Spec,
    _k: &Spec,
    _v: &Spec,
    _scale: &f32,
    _causal: &bool,
    _tile: &u32,
) -> (Spec, Spec) {
    let [b, h, t, _] = q.shape.dims::<4>();
    let lse = Spec::new([b, h, t].into(), q.dtype);
    (q.clone(), lse)
}

/// Output specs for the fusion decorator: each gradient like its input.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_meta(
    q: &Spec,
    k: &Spec,
    v: &Spec,
    _o: &Spec,
    _d_o: &Spec,
    _lse: &Spec,
    _scale: &f32,
    _causal: &bool,
    _tile: &u32,
) -> (Spec, Spec, Spec) {
    (q.clone(), k.clone(), v.clone())
}

/// The tracked op: the forward kernel, and a backward step that runs the two backward kernels.
pub(super) fn autodiff<B: KernelOps, C: CheckpointStrategy>(
    q: FloatTensor<Autodiff<B, C>>,
    k: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
    scale: f32,
    causal: bool,
    tile: u32,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct AttentionBackward;

    impl<B: KernelOps> Backward<B, 3> for AttentionBackward {
        /// q, k, v, o, lse, scale, causal, tile.
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            f32,
            bool,
            u32,
        );

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let d_o = grads.consume::<B>(&ops.node);
            let (q, k, v, o, lse, scale, causal, tile) = ops.state;
            let (dq, dk, dv) =
                B::flash_attention_backward(q, k, v, o, d_o, lse, scale, causal, tile);
            for (parent, grad) in ops.parents.into_iter().zip([dq, dk, dv]) {
                if let Some(node) = parent {
                    grads.register::<B>(node.id, grad);
                }
            }
        }
    }

    let prep = AttentionBackward
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful();
    let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let (o, lse) =
                B::flash_attention_forward(q.clone(), k.clone(), v.clone(), scale, causal, tile);
            prep.finish((q, k, v, o.clone(), lse, scale, causal, tile), o)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::flash_attention(q, k, v, scale, causal, tile)),
    }
}
