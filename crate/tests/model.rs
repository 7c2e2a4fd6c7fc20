//! The GPT's forward pass: causality, the KV cache, parameter count.

mod common;

use burn::module::Module;
use burn::prelude::*;
use kiln::config::Position;
use kiln::model::{Gpt, KvCache};

fn ids(v: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

fn floats(t: Tensor<3>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

#[test]
fn causal_mask_hides_the_future() {
    let device = Device::flex();
    for position in [Position::Learned, Position::Rope] {
        let mut c = common::tiny(20).model;
        c.position = position;
        let model = Gpt::new(&c, 1, &device);
        let seq: Vec<i64> = (0..16).map(|i| (i * 7 + 3) % 20).collect();
        let mut changed = seq.clone();
        changed[9] = (changed[9] + 1) % 20; // token t + 1 with t = 8
        let v = 20;
        let a = floats(model.forward(ids(&seq, &device), None));
        let b = floats(model.forward(ids(&changed, &device), None));
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
        let mut seq: Vec<i64> = vec![1, 5, 9, 2];
        let mut cache = KvCache::default();
        let mut pending = seq.clone();
        for step in 0..20 {
            let cached = floats(model.forward(ids(&pending, &device), Some(&mut cache)));
            let full = floats(model.forward(ids(&seq, &device), None));
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
