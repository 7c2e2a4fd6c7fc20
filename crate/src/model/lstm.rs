//! The LSTM language model's body: `n_layer` LSTM layers, each `n_embd` wide, with the model's
//! dropout on the embeddings, between layers and on the output (as PyTorch's word language model
//! does). Embedding, heads and loss are the GPT's.
//!
//! Why not Burn's `nn::Lstm`: it computes each time step with eight matmuls (input and hidden
//! transform of each gate) and writes each step's output into the whole sequence tensor, some
//! thirty GPU dispatches per step and layer; on WebGPU a `tiny-lstm` step took 25.5 s on
//! SwiftShader against 1.4 s for the GPT of its size. This layer projects the input of all time
//! steps at once (one `[B·T, in] × [in, 4H]` matmul), takes one `[H, 4H]` hidden matmul per step
//! and stacks the outputs once. It is tested against `nn::Lstm` (outputs, states, gradients).
//!
//! Weights follow PyTorch's `nn.LSTM` (`weight_ih_l0`, `weight_hh_l0` and both biases, gates in
//! the order input, forget, cell, output), stored `[in, 4H]` as GPT-2's Conv1D stores its
//! weights, and drawn from the model's own seeded stream (PyTorch's U(-1/√H, 1/√H)), so a seed
//! gives the same LSTM on every backend.

use burn::nn::{Dropout, Linear};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};

use super::Init;
use crate::config::ModelConfig;

/// A layer's hidden and cell state after the tokens seen so far, `[B, H]` each.
pub type State = (Tensor<2>, Tensor<2>);

/// One LSTM layer: the four gates' input and hidden transforms side by side.
#[derive(Module, Debug)]
pub struct LstmLayer {
    /// `[in, 4H]` (PyTorch's `weight_ih_l{k}` transposed) and `bias_ih_l{k}`.
    ih: Linear,
    /// `[H, 4H]` (`weight_hh_l{k}` transposed) and `bias_hh_l{k}`.
    hh: Linear,
}

impl LstmLayer {
    /// The hidden states `[B, T, H]` of `x [B, T, in]` from `state` (zeros if none), and the
    /// state after the last step.
    pub fn forward(&self, x: Tensor<3>, state: Option<State>) -> (Tensor<3>, State) {
        let [b, t, _] = x.dims();
        let gates = self.hh.weight.dims()[1];
        let h = gates / 4;
        let from_input = self.ih.forward(x);
        let (mut hidden, mut cell) = state.unwrap_or_else(|| {
            let zeros = Tensor::zeros([b, h], &from_input.device());
            (zeros.clone(), zeros)
        });
        let mut out = Vec::with_capacity(t);
        for step in 0..t {
            let g = from_input
                .clone()
                .slice([0..b, step..step + 1, 0..gates])
                .reshape([b, gates])
                + self.hh.forward(hidden);
            let mut g = g.chunk(4, 1).into_iter();
            let mut next = || g.next().expect("four gates");
            let (i, f, c, o) = (
                sigmoid(next()),
                sigmoid(next()),
                tanh(next()),
                sigmoid(next()),
            );
            cell = f * cell + i * c;
            hidden = o * tanh(cell.clone());
            out.push(hidden.clone());
        }
        (Tensor::stack(out, 1), (hidden, cell))
    }
}

/// The token embedding's initial values, U(-0.1, 0.1) as in PyTorch's word language model: GPT-2's N(0, 0.02)
/// leaves the gates' inputs so small that a small LSTM sits at the unigram loss for hundreds of
/// steps.
pub(super) fn embedding_init() -> rand_distr::Uniform<f32> {
    rand_distr::Uniform::new(-0.1, 0.1).expect("0.1 > -0.1")
}

/// The layers of a new model of config `c`.
pub(super) fn layers(c: &ModelConfig, init: &mut Init) -> Vec<LstmLayer> {
    let h = c.n_embd;
    let k = 1.0 / (h as f64).sqrt();
    let linear = |init: &mut Init| Linear {
        weight: init.uniform([h, 4 * h], k),
        bias: c.bias.then(|| init.uniform([4 * h], k)),
    };
    (0..c.n_layer)
        .map(|_| LstmLayer {
            ih: linear(init),
            hh: linear(init),
        })
        .collect()
}

/// Runs `x [B, T, n_embd]` through the layers. With `states`, each layer starts from its saved
/// state (zeros the first time) and leaves its final one there, so a text fed in pieces gives
/// what it gives whole.
pub(super) fn forward(
    layers: &[LstmLayer],
    mut x: Tensor<3>,
    mut states: Option<&mut Vec<Option<State>>>,
    drop: &Dropout,
) -> Tensor<3> {
    if let Some(s) = states.as_deref_mut() {
        s.resize(layers.len(), None);
    }
    for (i, layer) in layers.iter().enumerate() {
        let mut slot = states.as_deref_mut().map(|s| &mut s[i]);
        // The saved state moves into the layer: nothing else reads it before it is replaced.
        let (y, end) = layer.forward(x, slot.as_mut().and_then(|s| s.take()));
        if let Some(slot) = slot {
            *slot = Some(end);
        }
        x = drop.forward(y);
    }
    x
}

/// Scalars of an LSTM model: the embedding, per layer the four gates' input and hidden
/// transforms (`n_embd²` each, with two biases), an untied head and a classifier's head.
pub(super) fn num_params_of(c: &ModelConfig) -> usize {
    let (v, h) = (c.vocab_size, c.n_embd);
    let bias = if c.bias { 2 * h } else { 0 };
    let layer = 4 * (2 * h * h + bias);
    let head = if c.tie_weights { 0 } else { h * v };
    let score = match &c.task {
        crate::config::Task::Classify { classes, .. } => (h + 1) * classes.len(),
        _ => 0,
    };
    v * h + c.n_layer * layer + head + score
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{GateController, LstmConfig, LstmState};
    use rand::SeedableRng;

    /// The layer against Burn's `nn::Lstm` holding the same weights: outputs, final states, and
    /// the gradients of the input, the initial state and every weight, from a non-zero state.
    #[test]
    fn matches_burns_lstm_and_its_gradients() {
        let device = Device::flex().autodiff();
        let (b, t, h) = (3, 7, 5);
        let mut init = Init {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(9),
            device: &device,
        };
        let mut c = crate::config::preset("tiny-lstm").unwrap().model;
        c.n_embd = h;
        let ours = layers(&c, &mut init).remove(0);
        // Burn's gate `gate` (0 input, 1 forget, 2 cell, 3 output): copies of our columns, as
        // parameters of their own.
        let part = |l: &Linear, gate: usize| {
            let copy = |t: Tensor<2>| Param::from_data(t.into_data(), &device);
            let w = l.weight.val();
            let rows = w.dims()[0];
            Linear {
                weight: copy(w.slice([0..rows, gate * h..(gate + 1) * h])),
                bias: l.bias.as_ref().map(|b| {
                    let b = b.val().narrow(0, gate * h, h);
                    Param::from_data(b.into_data(), &device)
                }),
            }
        };
        let gate = |g| GateController {
            input_transform: part(&ours.ih, g),
            hidden_transform: part(&ours.hh, g),
        };
        let mut theirs = LstmConfig::new(h, h, true).init(&device);
        theirs.input_gate = gate(0);
        theirs.forget_gate = Some(gate(1));
        theirs.cell_gate = gate(2);
        theirs.output_gate = gate(3);

        let random = |shape: Vec<usize>, init: &mut Init| {
            let n = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| rand::Rng::random_range(&mut init.rng, -1.0..1.0))
                .collect();
            Tensor::<1>::from_data(TensorData::new(data, [n]), &device)
        };
        let x = random(vec![b * t * h], &mut init)
            .reshape([b, t, h])
            .require_grad();
        let h0 = random(vec![b * h], &mut init)
            .reshape([b, h])
            .require_grad();
        let c0 = random(vec![b * h], &mut init)
            .reshape([b, h])
            .require_grad();
        let probe = random(vec![b * t * h], &mut init).reshape([b, t, h]);

        let (y, (hn, cn)) = ours.forward(x.clone(), Some((h0.clone(), c0.clone())));
        let (y_ref, end) = theirs.forward(x.clone(), Some(LstmState::new(c0.clone(), h0.clone())));
        let tol = burn::tensor::Tolerance::absolute(1e-5);
        y.clone()
            .into_data()
            .assert_approx_eq::<f32>(&y_ref.clone().into_data(), tol);
        hn.clone()
            .into_data()
            .assert_approx_eq::<f32>(&end.hidden.clone().into_data(), tol);
        cn.clone()
            .into_data()
            .assert_approx_eq::<f32>(&end.cell.clone().into_data(), tol);

        let loss = |y: Tensor<3>, hn: Tensor<2>, cn: Tensor<2>| {
            (y * probe.clone()).sum() + hn.sum() + (cn.clone() * cn).sum()
        };
        let g = loss(y, hn, cn).backward();
        let g_ref = loss(y_ref, end.hidden, end.cell).backward();
        let grad = |t: &Tensor<3>, g| t.grad(g).unwrap().into_data();
        grad(&x, &g).assert_approx_eq::<f32>(&grad(&x, &g_ref), tol);
        let grad = |t: &Tensor<2>, g| t.grad(g).unwrap().into_data();
        grad(&h0, &g).assert_approx_eq::<f32>(&grad(&h0, &g_ref), tol);
        grad(&c0, &g).assert_approx_eq::<f32>(&grad(&c0, &g_ref), tol);
        // Weights: each gate's columns of our gradients are Burn's gate's gradients.
        let burn_gates = [
            &theirs.input_gate,
            theirs.forget_gate.as_ref().unwrap(),
            &theirs.cell_gate,
            &theirs.output_gate,
        ];
        for (k, gate) in burn_gates.into_iter().enumerate() {
            for (ours, theirs) in [
                (&ours.ih, &gate.input_transform),
                (&ours.hh, &gate.hidden_transform),
            ] {
                let got = ours.weight.val().grad(&g).unwrap();
                let want = theirs.weight.val().grad(&g_ref).unwrap();
                got.slice([0..h, k * h..(k + 1) * h])
                    .into_data()
                    .assert_approx_eq::<f32>(&want.into_data(), tol);
                let got = ours.bias.as_ref().unwrap().val().grad(&g).unwrap();
                let want = theirs.bias.as_ref().unwrap().val().grad(&g_ref).unwrap();
                got.narrow(0, k * h, h)
                    .into_data()
                    .assert_approx_eq::<f32>(&want.into_data(), tol);
            }
        }
    }
}
