//! The GPT's forward pass: causality, the KV cache, parameter count.

mod common;

use common::{floats, ids};

use burn::module::Module;
use burn::prelude::*;
use kiln::config::Position;
use kiln::model::{Gpt, KvCache};

#[test]
fn causal_mask_hides_the_future() {
    let device = Device::flex();
    for position in [Position::Learned, Position::Rope] {
        let mut c = common::tiny(20).model;
        c.position = position;
        let model = Gpt::new(&c, 1, &device);
        let seq: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 20).collect();
        let mut changed = seq.clone();
        changed[9] = (changed[9] + 1) % 20; // token t + 1 with t = 8
        let v = 20;
        let a = floats(model.forward(ids(&seq, &device), None).unwrap());
        let b = floats(model.forward(ids(&changed, &device), None).unwrap());
        // Positions 0..=8 may not see token 9.
        assert!(
            common::max_diff(&a[..9 * v], &b[..9 * v]) < 1e-6,
            "{position:?}: past logits changed"
        );
        // ...but position 9 and later do see it.
        assert!(
            common::max_diff(&a[9 * v..], &b[9 * v..]) > 1e-4,
            "{position:?}: the change had no effect"
        );
    }
}

#[test]
fn kv_cache_matches_full_recomputation() {
    let device = Device::flex();
    for position in [Position::Learned, Position::Rope] {
        let mut c = common::tiny(30).model;
        c.position = position;
        let model = Gpt::new(&c, 1, &device);
        let mut seq: Vec<u32> = vec![1, 5, 9, 2];
        let mut cache = KvCache::default();
        let mut pending = seq.clone();
        for step in 0..20 {
            let cached = floats(
                model
                    .forward(ids(&pending, &device), Some(&mut cache))
                    .unwrap(),
            );
            let full = floats(model.forward(ids(&seq, &device), None).unwrap());
            let v = 30;
            let last_cached = &cached[cached.len() - v..];
            let last_full = &full[full.len() - v..];
            let diff = common::max_diff(last_cached, last_full);
            assert!(
                diff < 1e-4,
                "{position:?} step {step}: cached logits differ by {diff}"
            );
            assert_eq!(cache.len(), seq.len());
            let next = (step * 11 + 7) % 30;
            seq.push(next);
            pending = vec![next];
        }
    }
}

#[test]
fn parameter_count_matches_the_module() {
    let device = Device::flex();
    for (tie, mlp, norm, bias) in [
        (
            true,
            kiln::config::Mlp::Gelu,
            kiln::config::Norm::LayerNorm,
            false,
        ),
        (
            false,
            kiln::config::Mlp::Swiglu,
            kiln::config::Norm::RmsNorm,
            true,
        ),
    ] {
        let mut c = common::tiny(65).model;
        c.tie_weights = tie;
        c.mlp = mlp;
        c.norm = norm;
        c.bias = bias;
        let model = Gpt::new(&c, 1, &device);
        assert_eq!(Gpt::num_params_of(&c), model.num_params(), "{c:?}");
    }
}

/// More positions than `block_size` (at once, or after a cache) is an error, never an index
/// past the position table; the check is a plain `if`, the same in release builds.
#[test]
fn a_context_longer_than_block_size_is_an_error() {
    let device = Device::flex();
    let c = common::tiny(20).model;
    let model = Gpt::new(&c, 1, &device);
    let seq: Vec<u32> = (0..c.block_size as u32 + 1).map(|i| i % 20).collect();
    let err = model.forward(ids(&seq, &device), None).unwrap_err();
    assert!(err.to_string().contains("block_size"), "{err}");
    assert!(model.forward(ids(&seq[1..], &device), None).is_ok());
    let mut cache = KvCache::default();
    model
        .forward(ids(&seq[..c.block_size], &device), Some(&mut cache))
        .unwrap();
    let err = model
        .forward(ids(&seq[..1], &device), Some(&mut cache))
        .unwrap_err();
    assert!(err.to_string().contains("cached"), "{err}");
}

/// The model's next-token distribution after `context`, from a plain softmax in f64.
fn direct_probs(model: &Gpt, context: &[u32]) -> Vec<f64> {
    let device = Device::flex();
    let logits = floats(model.forward(ids(context, &device), None).unwrap());
    let last = &logits[logits.len() - model.config().vocab_size..];
    let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = last.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Natural-log probability of each `ids[j]` (j ≥ 1) given `ids[start(j)..j]`, one forward pass
/// per token.
fn direct_log_probs(model: &Gpt, ids_: &[u32], start: impl Fn(usize) -> usize) -> Vec<f64> {
    (1..ids_.len())
        .map(|j| direct_probs(model, &ids_[start(j)..j])[ids_[j] as usize].ln())
        .collect()
}

fn direct_log_prob(model: &Gpt, ids_: &[u32], start: impl Fn(usize) -> usize) -> f64 {
    direct_log_probs(model, ids_, start).iter().sum()
}

/// Scoring a text three times the context: with stride 1 every token has the full context
/// (the direct token-by-token computation); with the default stride, token j's context starts
/// where the first window reaching it starts; either way every token is scored once.
#[test]
fn score_slides_a_window_over_long_texts() {
    let (ckpt, data) = common::trained_tiny();
    let device = Device::flex();
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    let block = model.config().block_size;
    let text: String = data.text().chars().skip(1000).take(3 * block + 5).collect();
    let ids_ = tokenizer.encode(&text).unwrap();
    let full = kiln::generate::score(&model, &tokenizer, &text, Some(1), &device).unwrap();
    let per_token = direct_log_probs(&model, &ids_, |j| j.saturating_sub(block));
    let want: f64 = per_token.iter().sum();
    assert_eq!(full.tokens, ids_.len() - 1);
    // The surprise view's numbers: each token's text and log-probability, the first without one.
    let texts: String = full.per_token.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, text);
    assert_eq!(full.per_token[0].1, None);
    for (j, want) in per_token.iter().enumerate() {
        let got = full.per_token[j + 1].1.unwrap() as f64;
        assert!(
            (got - want).abs() < 1e-4,
            "token {}: {got} vs {want}",
            j + 1
        );
    }
    assert!(
        (full.log_prob - want).abs() < 1e-3,
        "{} vs {want}",
        full.log_prob
    );

    let stride = block / 2;
    let slid = kiln::generate::score(&model, &tokenizer, &text, None, &device).unwrap();
    let last = ids_.len() - 1;
    // The window ends at block, block + stride, ... (capped at the last target).
    let start = |j: usize| {
        let end = if j <= block {
            block
        } else {
            block + (j - block).div_ceil(stride) * stride
        };
        end.min(last).saturating_sub(block)
    };
    let want = direct_log_prob(&model, &ids_, start);
    assert_eq!(slid.tokens, last);
    assert!(
        (slid.log_prob - want).abs() < 1e-3,
        "{} vs {want}",
        slid.log_prob
    );
    let err = kiln::generate::score(&model, &tokenizer, &text, Some(block + 1), &device);
    assert!(err.unwrap_err().to_string().contains("stride"));
}

/// The next-token view: the top k of a plain softmax over the last position's logits, most
/// likely first; all of them sum to 1.
#[test]
fn next_tokens_are_the_softmax_of_the_last_position() {
    let (ckpt, _) = common::trained_tiny();
    let device = Device::flex();
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    let prompt = "ROMEO:\nWhat light";
    let want = direct_probs(&model, &tokenizer.encode(prompt).unwrap());
    let vocab = model.config().vocab_size;
    let all = kiln::generate::next_tokens(&model, &tokenizer, prompt, vocab, &device).unwrap();
    assert_eq!(all.len(), vocab);
    let total: f64 = all.iter().map(|(_, p)| *p as f64).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
    for (token, p) in &all {
        let id = tokenizer.encode(token).unwrap()[0] as usize;
        assert!(
            (*p as f64 - want[id]).abs() < 1e-5,
            "{token:?}: {p} vs {}",
            want[id]
        );
    }
    let top = kiln::generate::next_tokens(&model, &tokenizer, prompt, 5, &device).unwrap();
    assert_eq!(top, all[..5]);
}

/// The attention view: the prompt's last `max_tokens` tokens (at most the context), one map per
/// layer and head, rows that are probability distributions over the keys up to the query.
#[test]
fn attention_view_covers_the_last_tokens_of_the_prompt() {
    let (ckpt, _) = common::trained_tiny();
    let device = Device::flex();
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    let c = model.config().clone();
    let prompt = "ROMEO:\nWhat light through yonder window breaks?";
    let maps = kiln::inspect::attention(&model, &tokenizer, prompt, 12, &device).unwrap();
    assert_eq!(maps.tokens.concat(), prompt[prompt.len() - 12..]);
    assert_eq!(maps.weights.len(), c.n_layer);
    for layer in &maps.weights {
        assert_eq!(layer.len(), c.n_head);
        for head in layer {
            assert_eq!(head.len(), 12);
            for (i, row) in head.iter().enumerate() {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5 && row[i + 1..].iter().all(|&w| w == 0.0));
            }
        }
    }
    let long = prompt.repeat(c.block_size);
    let maps = kiln::inspect::attention(&model, &tokenizer, &long, usize::MAX, &device).unwrap();
    assert_eq!(maps.tokens.len(), c.block_size);
}

/// The embeddings view against a direct computation in f64: the points are the centred
/// embeddings projected on two orthonormal axes, uncorrelated, with the variances the shares
/// report, and no direction carries more variance than the first axis.
#[test]
fn embeddings_view_is_the_pca_of_the_token_embeddings() {
    let (ckpt, _) = common::trained_tiny();
    let device = Device::flex();
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    let w = Tensor::cat(model.token_embeddings(), 0);
    let [v, c] = w.dims();
    let w: Vec<f64> = w
        .try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let mean: Vec<f64> = (0..c)
        .map(|j| (0..v).map(|i| w[i * c + j]).sum::<f64>() / v as f64)
        .collect();
    let centred: Vec<Vec<f64>> = (0..v)
        .map(|i| (0..c).map(|j| w[i * c + j] - mean[j]).collect())
        .collect();
    let total: f64 = centred.iter().flatten().map(|e| e * e).sum::<f64>() / v as f64;
    let variance_along = |dir: &[f64]| {
        let norm = dir.iter().map(|e| e * e).sum::<f64>().sqrt();
        centred
            .iter()
            .map(|row| (row.iter().zip(dir).map(|(a, b)| a * b).sum::<f64>() / norm).powi(2))
            .sum::<f64>()
            / v as f64
    };

    let e = kiln::inspect::embeddings(&model, &tokenizer).unwrap();
    assert_eq!(e.tokens.len(), v);
    assert_eq!(e.tokens[5], tokenizer.decode(&[5]).unwrap());
    let coord = |k: usize| -> Vec<f64> { e.points.iter().map(|p| p[k] as f64).collect() };
    let (x, y) = (coord(0), coord(1));
    let mean_sq =
        |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>() / v as f64;
    assert!(
        x.iter().sum::<f64>().abs() / (v as f64) < 1e-5,
        "points are centred"
    );
    assert!((mean_sq(&x, &x) / total - e.explained[0] as f64).abs() < 1e-4);
    assert!((mean_sq(&y, &y) / total - e.explained[1] as f64).abs() < 1e-4);
    assert!(
        mean_sq(&x, &y).abs() / total < 1e-4,
        "the axes are uncorrelated"
    );
    assert!(e.explained[0] >= e.explained[1] && e.explained[0] + e.explained[1] <= 1.0 + 1e-5);
    // The projection of each token: least squares recovers its axis from the points, and the
    // axis carries the most variance of 200 pseudo-random directions.
    let axis: Vec<f64> = (0..c)
        .map(|j| {
            centred
                .iter()
                .zip(&x)
                .map(|(row, x)| row[j] * x)
                .sum::<f64>()
        })
        .collect();
    assert!((variance_along(&axis) / total - e.explained[0] as f64).abs() < 1e-4);
    for k in 0..200 {
        let dir: Vec<f64> = (0..c)
            .map(|j| ((j * 31 + k * 17) as f64 * 0.37).sin())
            .collect();
        assert!(variance_along(&dir) <= variance_along(&axis) * (1.0 + 1e-6));
    }
}
