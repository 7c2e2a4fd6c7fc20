//! The LSTM language model's body: `n_layer` of Burn's [`Lstm`], each `n_embd` wide, with the
//! model's dropout on the embeddings, between layers and on the output (as PyTorch's word
//! language model does). Embedding, heads and loss are the GPT's.
//!
//! Burn's `Lstm` has what a language model needs: batch-first input, an initial state in and the
//! final state out, which is the whole generation cache. Kiln draws its weights from the model's
//! own seeded stream (PyTorch's U(-1/√H, 1/√H), biases too), so a seed gives the same LSTM on
//! every backend, like the GPT.

use burn::nn::{Dropout, Embedding, Lstm, LstmConfig, LstmState};
use burn::prelude::*;

use super::Init;
use crate::config::ModelConfig;

/// The token embedding, U(-0.1, 0.1) as in PyTorch's word language model: GPT-2's N(0, 0.02)
/// leaves the gates' inputs so small that a small LSTM sits at the unigram loss for hundreds of
/// steps.
pub(super) fn embedding(c: &ModelConfig, init: &mut Init) -> Embedding {
    Embedding {
        weight: init.uniform([c.vocab_size, c.n_embd], 0.1),
    }
}

/// The layers of a new model of config `c`.
pub(super) fn layers(c: &ModelConfig, init: &mut Init) -> Vec<Lstm> {
    let h = c.n_embd;
    let k = 1.0 / (h as f64).sqrt();
    (0..c.n_layer)
        .map(|_| {
            let mut lstm = LstmConfig::new(h, h, c.bias).init(init.device);
            let gates = [
                &mut lstm.input_gate,
                lstm.forget_gate.as_mut().expect("an uncoupled LSTM"),
                &mut lstm.output_gate,
                &mut lstm.cell_gate,
            ];
            for gate in gates {
                for linear in [&mut gate.input_transform, &mut gate.hidden_transform] {
                    linear.weight = init.uniform([h, h], k);
                    linear.bias = c.bias.then(|| init.uniform([h], k));
                }
            }
            lstm
        })
        .collect()
}

/// Runs `x [B, T, n_embd]` through the layers. With `states`, each layer starts from its saved
/// state (zeros the first time) and leaves its final one there, so a text fed in pieces gives
/// what it gives whole.
pub(super) fn forward(
    layers: &[Lstm],
    mut x: Tensor<3>,
    mut states: Option<&mut Vec<Option<LstmState<2>>>>,
    drop: &Dropout,
) -> Tensor<3> {
    if let Some(s) = states.as_deref_mut() {
        s.resize(layers.len(), None);
    }
    for (i, lstm) in layers.iter().enumerate() {
        let slot = states.as_deref_mut().map(|s| &mut s[i]);
        let start = slot.as_ref().and_then(|s| (*s).clone());
        let (y, end) = lstm.forward(x, start);
        if let Some(slot) = slot {
            *slot = Some(end);
        }
        x = drop.forward(y);
    }
    x
}

/// Scalars of an LSTM model: the embedding, four gates per layer (each an input and a hidden
/// transform of `n_embd²`, with two biases), an untied head and a classifier's head.
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
