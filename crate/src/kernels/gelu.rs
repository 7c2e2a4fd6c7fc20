//! GELU in GPT-2's tanh approximation, fused: one pass forward and one backward, where the plain
//! ops ([`reference()`]) take six passes forward and their autodiff about twice as many, each
//! writing a fresh tensor. On wgpu, `shaders/gelu_forward.wgsl` and `gelu_backward.wgsl`; on the
//! CPU backend (native and the browser's wasm), a loop over the elements: there the plain ops'
//! passes took ~14% of a `shakespeare-baby` training step's samples (`docs/cpu.md`).
//!
//! Its own backend extension rather than part of [`super::KernelOps`]: it has a CPU
//! implementation, and an extension must be implemented on every backend it lists.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, into_contiguous};
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::sigmoid;

use super::{Wgsl, cpu_tensor, cpu_values, empty, grid, launch};

/// `2·√(2/π)`: the tanh form's `√(2/π)`, doubled because `0.5·(1 + tanh(u)) = sigmoid(2u)`.
const A: f64 = 2.0 * core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
/// The cubic term's coefficient, `0.044715·A`.
const B: f64 = 0.044715 * A;

/// Invocations per workgroup.
const WG: u32 = 64;

#[backend_extension(Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait GeluOps: Backend {
    /// `gelu(x)` elementwise.
    #[fusion(dtype = x, shape = x)]
    fn gelu_tanh_forward(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradient of `x` given the output's gradient `grad`.
    #[fusion(dtype = x, shape = x)]
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The differentiable op.
    #[fusion(default)]
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_tanh_forward(x)
    }
}

/// GELU (tanh approximation) of `x`: the fused op where `fused` is set and it applies (f32 on
/// wgpu or the CPU backend), the reference otherwise.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>, fused: bool) -> Tensor<D> {
    if !(fused && super::cpu_or_wgpu(&x.device()) && x.dtype() == DType::F32) {
        return reference(x);
    }
    Tensor::from_dispatch(Dispatch::gelu_tanh(x.into_dispatch()))
}

/// The same in plain Burn ops: `x · sigmoid(A·x + B·x³)`, which is the tanh form
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` since `1 + tanh(u) = 2·sigmoid(2u)`. Not Burn's
/// `gelu_approximate`: it takes `x³` through `powf` and recomputes `tanh` in the backward pass,
/// scalar libm calls that were a fifth of a CPU training step; `sigmoid` has a fused backward
/// from its output and the rest are multiplications.
pub fn reference<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let z = x.clone() * (x.clone() * x.clone() * B + A);
    x * sigmoid(z)
}

/// `sigmoid(A·x + B·x³)`, and `gelu`'s derivative from it.
fn gate(x: f32) -> f32 {
    let (a, b) = (A as f32, B as f32);
    1.0 / (1.0 + (-(a * x + b * x * x * x)).exp())
}

fn derivative(x: f32) -> f32 {
    let (a, b) = (A as f32, B as f32);
    let s = gate(x);
    s + x * s * (1.0 - s) * (a + 3.0 * b * x * x)
}

impl GeluOps for CubeBackend {
    fn gelu_tanh_forward(x: CubeTensor) -> CubeTensor {
        elementwise_cube(
            "gelu_forward",
            shader!("gelu_forward", "gelu_gate"),
            &[into_contiguous(x)],
        )
    }

    fn gelu_tanh_backward(x: CubeTensor, grad: CubeTensor) -> CubeTensor {
        elementwise_cube(
            "gelu_backward",
            shader!("gelu_backward", "gelu_gate"),
            &[into_contiguous(x), into_contiguous(grad)],
        )
    }
}

/// Launches an elementwise kernel over contiguous `inputs` of one shape, whose last binding
/// before `info` is the output.
fn elementwise_cube(name: &'static str, source: &'static str, inputs: &[CubeTensor]) -> CubeTensor {
    let like = &inputs[0];
    let n = like.meta.shape().num_elements();
    let out = empty(like, like.meta.shape().clone());
    let groups = grid(n.div_ceil(WG as usize));
    let kernel = Wgsl {
        name,
        source,
        params: vec![("wg", WG)],
    };
    let buffers: Vec<&CubeTensor> = inputs.iter().chain([&out]).collect();
    launch(
        like,
        kernel,
        WG,
        groups,
        &buffers,
        &[n as u32, groups.0 * WG],
    );
    out
}

impl GeluOps for Flex {
    fn gelu_tanh_forward(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let y = cpu_values(&x).iter().map(|&v| v * gate(v)).collect();
        cpu_tensor(y, x.layout().shape().clone())
    }

    fn gelu_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let dx = (cpu_values(&x).iter().zip(cpu_values(&grad)))
            .map(|(&v, &g)| g * derivative(v))
            .collect();
        cpu_tensor(dx, x.layout().shape().clone())
    }
}

impl<B: GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn gelu_tanh_forward(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::gelu_tanh_forward(Self::inner(x)))
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [x, grad] = [x, grad].map(Self::inner);
        Self::from_inner(B::gelu_tanh_backward(x, grad))
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: GeluOps> Backward<B, 1> for GeluBackward {
            /// The input: the backward recomputes the gate from it.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(node)] = ops.parents {
                    grads.register::<B>(node.id, B::gelu_tanh_backward(ops.state, grad));
                }
            }
        }

        let prep = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::gelu_tanh_forward(x.clone());
                prep.finish(x, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_tanh_forward(x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::gelu_approximate;

    /// The values and gradients of `f` over the range where GELU bends and far out on both
    /// sides, on the CPU backend with autodiff.
    fn run(f: impl Fn(Tensor<1>) -> Tensor<1>) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex().autodiff();
        let xs: Vec<f32> = (-120..=120).map(|i| i as f32 / 10.0).collect();
        let x = Tensor::<1>::from_floats(xs.as_slice(), &device).require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * y.clone()).sum().backward();
        let dx = x.grad(&grads).unwrap();
        let vec = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        (vec(y), vec(dx))
    }

    fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    /// The reference and the fused CPU op against Burn's `gelu_approximate` (the textbook tanh
    /// form): the same function and gradient.
    #[test]
    fn gelu_tanh_matches_the_tanh_formula_and_its_gradient() {
        let (want, dwant) = run(gelu_approximate);
        for (name, fused) in [("reference", false), ("fused", true)] {
            let (y, dy) = run(|x| gelu_tanh(x, fused));
            close(name, &y, &want, 1e-6);
            close(&format!("{name} gradient"), &dy, &dwant, 1e-5);
        }
    }
}
