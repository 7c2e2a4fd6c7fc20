//! The attention's masked softmax on the CPU backend, fused: `softmax(scale · scores)` over the
//! keys each query may see, one pass over the scores forward and one backward. The plain ops
//! (scale, mask fill, then softmax's max, subtract, exp, sum and divide) take seven passes
//! forward and about as many in their autodiff, each writing a fresh `[B, H, T_q, T_k]` tensor.
//!
//! The CPU backend's alone: on wgpu the fused attention ([`super::attention`]) never forms the
//! scores. [`super::attention::attention`] runs it between two plain matmuls; the reference
//! there is what it is tested against.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;

use super::{cpu_tensor, cpu_values};

#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxOps: Backend {
    /// `softmax(scale · s)` over the last dimension of `scores [.., T_q, T_k]`; with `causal`,
    /// query `i` (at position `T_k − T_q + i`) sees keys `0..=T_k − T_q + i` and the rest get 0.
    fn masked_softmax_forward(
        scores: FloatTensor<Self>,
        scale: f32,
        causal: bool,
    ) -> FloatTensor<Self>;

    /// The scores' gradient given the output `probs` and its gradient `grad`.
    fn masked_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// The differentiable op.
    fn masked_softmax(scores: FloatTensor<Self>, scale: f32, causal: bool) -> FloatTensor<Self> {
        Self::masked_softmax_forward(scores, scale, causal)
    }
}

/// Whether [`masked_softmax`] runs fused for `scores`: f32 on the CPU backend.
pub fn applies<const D: usize>(scores: &Tensor<D>) -> bool {
    scores.dtype() == DType::F32
        && matches!(
            scores.device().inner().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// The fused op ([`applies`] must hold).
pub fn masked_softmax<const D: usize>(scores: Tensor<D>, scale: f32, causal: bool) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::masked_softmax(
        scores.into_dispatch(),
        scale,
        causal,
    ))
}

impl SoftmaxOps for Flex {
    fn masked_softmax_forward(scores: FlexTensor, scale: f32, causal: bool) -> FlexTensor {
        let scores = scores.to_contiguous();
        let shape = scores.layout().shape().clone();
        let [t_q, t_k] = [shape[shape.num_dims() - 2], shape[shape.num_dims() - 1]];
        let s = cpu_values(&scores);
        let mut p = vec![0.0; s.len()];
        for (r, (row, out)) in s.chunks_exact(t_k).zip(p.chunks_exact_mut(t_k)).enumerate() {
            let seen = if causal { t_k - t_q + r % t_q + 1 } else { t_k };
            let (row, out) = (&row[..seen], &mut out[..seen]);
            // scale > 0, so the largest score is the largest scaled one.
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for (o, &v) in out.iter_mut().zip(row) {
                *o = ((v - max) * scale).exp();
                sum += *o;
            }
            out.iter_mut().for_each(|o| *o /= sum);
        }
        cpu_tensor(p, shape)
    }

    fn masked_softmax_backward(probs: FlexTensor, grad: FlexTensor, scale: f32) -> FlexTensor {
        let (probs, grad) = (probs.to_contiguous(), grad.to_contiguous());
        let shape = probs.layout().shape().clone();
        let t_k = shape[shape.num_dims() - 1];
        let (p, g) = (cpu_values(&probs), cpu_values(&grad));
        let mut ds = vec![0.0; p.len()];
        let rows = p.chunks_exact(t_k).zip(g.chunks_exact(t_k));
        for ((p, g), out) in rows.zip(ds.chunks_exact_mut(t_k)) {
            // dL/ds_j = scale · p_j · (g_j − Σ_k p_k g_k); the hidden keys have p = 0.
            let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
            for ((o, &p), &g) in out.iter_mut().zip(p).zip(g) {
                *o = scale * p * (g - dot);
            }
        }
        cpu_tensor(ds, shape)
    }
}

impl<B: SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn masked_softmax_forward(
        scores: FloatTensor<Self>,
        scale: f32,
        causal: bool,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::masked_softmax_forward(
            Self::inner(scores),
            scale,
            causal,
        ))
    }

    fn masked_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let [probs, grad] = [probs, grad].map(Self::inner);
        Self::from_inner(B::masked_softmax_backward(probs, grad, scale))
    }

    fn masked_softmax(scores: FloatTensor<Self>, scale: f32, causal: bool) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl<B: SoftmaxOps> Backward<B, 1> for SoftmaxBackward {
            /// The output (the backward needs nothing else) and the scale.
            type State = (FloatTensor<B>, f32);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (probs, scale) = ops.state;
                if let [Some(node)] = ops.parents {
                    let ds = B::masked_softmax_backward(probs, grad, scale);
                    grads.register::<B>(node.id, ds);
                }
            }
        }

        let prep = SoftmaxBackward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful();
        let scores = scores.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let probs = B::masked_softmax_forward(scores, scale, causal);
                prep.finish((probs.clone(), scale), probs)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::masked_softmax_forward(scores, scale, causal))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::attention::{Mask, attention, reference};
    use burn::tensor::Distribution;

    use super::*;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(what: &str, got: Vec<f32>, want: Vec<f32>) {
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{what}: max relative |Δ| {worst:e}");
    }

    /// Attention on the CPU backend with the fused softmax (the kernels on) against the plain
    /// ops: the output and the gradients of q, k and v, for a GPT's causal mask over the whole
    /// context and over a cached past (T_q < T_k), and an encoder's.
    #[test]
    fn cpu_attention_matches_reference() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 4]| {
            Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device).require_grad()
        };
        for (mask, t_q, t_k) in [
            (Mask::Causal, 9, 9),
            (Mask::Causal, 3, 9),
            (Mask::Bidirectional, 9, 9),
        ] {
            let (q, k, v) = (
                random([2, 3, t_q, 8]),
                random([2, 3, t_k, 8]),
                random([2, 3, t_k, 8]),
            );
            assert!(applies(&q));
            let w = random([2, 3, t_q, 8]);
            let run = |fused: bool| {
                let (q, k, v) = (q.clone(), k.clone(), v.clone());
                let y = match fused {
                    true => attention(q.clone(), k.clone(), v.clone(), mask.clone(), Some(64)),
                    false => reference(q.clone(), k.clone(), v.clone(), mask.clone()),
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("a gradient"));
                [values(y), grad(&q), grad(&k), grad(&v)]
            };
            for (name, (got, want)) in ["output", "dq", "dk", "dv"]
                .iter()
                .zip(run(true).into_iter().zip(run(false)))
            {
                close(&format!("{name} {mask:?} {t_q}x{t_k}"), got, want);
            }
        }
    }
}
