//! Checkpoints round-trip, and every kind of bad checkpoint is a typed error, not a panic.

mod common;

use burn::prelude::*;
use kiln::checkpoint::Checkpoint;
use kiln::config::SampleConfig;
use kiln::data::{Tokenizer, TokenizerKind};
use kiln::generate::{generate, score};
use kiln::train::Trainer;
use kiln::{Error, Gpt};

fn sample(model: &Gpt, tokenizer: &Tokenizer, seed: u64) -> String {
    let cfg = SampleConfig {
        seed,
        max_tokens: 40,
        temperature: 1.0,
        ..SampleConfig::default()
    };
    generate(model, tokenizer, "ROMEO:", &cfg, &Device::flex(), |_| true).unwrap()
}

#[test]
fn loaded_model_generates_and_scores_like_the_saved_one() {
    let (ckpt, _) = common::trained_tiny();
    let (model, tokenizer) = ckpt.load_model(&Device::flex()).unwrap();
    let again = Checkpoint::from_parts(
        ckpt.meta_json().unwrap().as_bytes(),
        ckpt.weights.clone(),
        None,
    )
    .unwrap();
    let (model2, _) = again.load_model(&Device::flex()).unwrap();
    let a = sample(&model, &tokenizer, 7);
    assert_eq!(a.chars().count(), 40);
    assert_eq!(
        a,
        sample(&model2, &tokenizer, 7),
        "same weights and seed, same text"
    );
    assert_ne!(
        a,
        sample(&model, &tokenizer, 8),
        "another seed, another text"
    );
    let s1 = score(
        &model,
        &tokenizer,
        "To be, or not to be",
        None,
        &Device::flex(),
    )
    .unwrap();
    let s2 = score(
        &model2,
        &tokenizer,
        "To be, or not to be",
        None,
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.tokens, 18);
    assert!(s1.log_prob < 0.0 && (s1.perplexity - (-s1.log_prob / 18.0).exp()).abs() < 1e-9);
}

#[test]
fn streaming_pieces_add_up_and_stop_string_ends_generation() {
    let (ckpt, _) = common::trained_tiny();
    let (model, tokenizer) = ckpt.load_model(&Device::flex()).unwrap();
    let mut streamed = String::new();
    let cfg = SampleConfig {
        seed: 1,
        max_tokens: 60,
        ..SampleConfig::default()
    };
    let text = generate(&model, &tokenizer, "", &cfg, &Device::flex(), |p| {
        streamed.push_str(p);
        true
    })
    .unwrap();
    assert_eq!(streamed, text);
    let stop = text.chars().nth(10).unwrap().to_string();
    let cfg = SampleConfig {
        stop: Some(stop.clone()),
        ..cfg
    };
    let cut = generate(&model, &tokenizer, "", &cfg, &Device::flex(), |_| true).unwrap();
    assert!(
        !cut.contains(&stop) && text.starts_with(&cut),
        "{cut:?} vs {text:?}"
    );
}

#[test]
fn generation_beyond_block_size_slides_the_context() {
    let (ckpt, _) = common::trained_tiny();
    let (model, tokenizer) = ckpt.load_model(&Device::flex()).unwrap();
    let cfg = SampleConfig {
        max_tokens: 3 * model.config().block_size,
        ..SampleConfig::default()
    };
    let text = generate(&model, &tokenizer, "KING:", &cfg, &Device::flex(), |_| true).unwrap();
    assert_eq!(text.chars().count(), cfg.max_tokens);
}

fn load_err(ckpt: &Checkpoint) -> String {
    match ckpt.load_model(&Device::flex()) {
        Err(Error::Checkpoint(m)) | Err(Error::Config(m)) | Err(Error::Tokenizer(m)) => m,
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("a bad checkpoint loaded"),
    }
}

#[test]
fn tokenizer_vocab_mismatch_is_an_error() {
    let (mut ckpt, _) = common::trained_tiny();
    let other = Tokenizer::train(TokenizerKind::Char, "abc").unwrap();
    ckpt.meta.tokenizer = other.to_json().unwrap();
    assert!(load_err(&ckpt).contains("do not belong together"));
}

#[test]
fn shape_mismatch_is_an_error() {
    // A config that describes another model than the weights hold is refused before a model
    // is built (a huge one would otherwise be allocated first).
    for (n_embd, n_layer) in [(64, 2), (32, 1), (1 << 16, 1 << 10)] {
        let (mut ckpt, _) = common::trained_tiny();
        (ckpt.meta.model.n_embd, ckpt.meta.model.n_layer) = (n_embd, n_layer);
        let err = load_err(&ckpt);
        assert!(err.contains("do not belong together"), "{err}");
    }
    // As many values, in another shape: the tensor is named.
    let (mut ckpt, _) = common::trained_tiny();
    let tensors = safetensors::SafeTensors::deserialize(&ckpt.weights).unwrap();
    let views: Vec<_> = tensors
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let mut shape = v.shape().to_vec();
            if name == "h.0.mlp.c_fc.weight" {
                shape.reverse();
            }
            let view = safetensors::tensor::TensorView::new(v.dtype(), shape, v.data()).unwrap();
            (name, view)
        })
        .collect();
    let weights = safetensors::serialize(views, None).unwrap();
    ckpt.weights = weights;
    let err = load_err(&ckpt);
    assert!(err.contains("h.0.mlp.c_fc.weight has shape"), "{err}");
}

#[test]
fn version_and_corruption_are_errors() {
    let (mut ckpt, _) = common::trained_tiny();
    ckpt.meta.format_version = 99;
    assert!(load_err(&ckpt).contains("version 99"));
    let (mut ckpt, corpus) = common::trained_tiny();
    ckpt.weights.truncate(ckpt.weights.len() / 2);
    assert!(load_err(&ckpt).contains("unreadable"));
    assert!(matches!(
        Checkpoint::from_parts(b"{\"format\":", vec![], None),
        Err(Error::Checkpoint(_))
    ));
    let (mut ckpt, _) = common::trained_tiny();
    ckpt.optimizer = Some(vec![1, 2, 3]);
    assert!(matches!(
        ckpt.resume(&corpus, &Device::flex()),
        Err(Error::Checkpoint(_))
    ));
    let (mut ckpt, _) = common::trained_tiny();
    ckpt.meta.model.block_size = 0;
    assert!(load_err(&ckpt).contains("block_size"));
}

#[test]
fn impossible_configs_are_errors() {
    let corpus = common::small_corpus(5_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.model.n_head = 3;
    let err = Trainer::new(p, tokenizer.clone(), &corpus, &Device::flex())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("n_head")),
        "{err}"
    );
    let mut p = common::tiny(tokenizer.vocab_size());
    p.model.block_size = 10_000; // longer than the validation text
    let err = Trainer::new(p, tokenizer, &corpus, &Device::flex())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Data(ref m) if m.contains("block_size")),
        "{err}"
    );
}

/// A format-2 checkpoint (committed; written by the Kiln before format 3, see
/// `fixtures/checkpoint-v2/README.md`) still loads: the logits it was saved with, its optimizer
/// state resumes to the same next loss, and saving it again writes format 3 with PyTorch's
/// names.
#[test]
fn a_format_2_checkpoint_loads_and_saves_as_format_3() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/checkpoint-v2"
    ));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let ids: Vec<i64> = expected["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let device = Device::flex();
    let logits = |ckpt: &Checkpoint| -> Vec<f32> {
        let (model, _) = ckpt.load_model(&device).unwrap();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), &device);
        model.forward(x, None).unwrap().try_into_vec_as().unwrap()
    };
    let old = Checkpoint::load_dir(dir).unwrap();
    assert_eq!(old.meta.format_version, 2);
    let want = floats(&expected["logits"]);
    assert!(common::max_diff(&logits(&old), &want) < 1e-6);

    let text =
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n";
    let data = common::text(text.repeat(20));
    let mut resumed = old.resume(&data, &device).unwrap();
    let loss = resumed.step().unwrap().loss;
    let next = expected["next_loss"].as_f64().unwrap() as f32;
    assert!((loss - next).abs() <= 1e-6 * next, "{loss} vs {next}");

    let new = Checkpoint::from_trainer(&old.resume(&data, &device).unwrap()).unwrap();
    assert_eq!(new.meta.format_version, 3);
    assert!(common::max_diff(&logits(&new), &want) < 1e-6);
    let names = |bytes: &[u8]| -> Vec<String> {
        safetensors::SafeTensors::deserialize(bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let weights = names(&new.weights);
    assert!(
        weights.contains(&"h.0.ln_1.weight".to_string()),
        "{weights:?}"
    );
    assert!(weights.contains(&"ln_f.bias".to_string()), "{weights:?}");
    let moments = names(new.optimizer.as_ref().unwrap());
    assert!(
        moments.contains(&"h.0.ln_2.weight.exp_avg_sq".to_string()),
        "{moments:?}"
    );
    for name in weights.iter().chain(&moments) {
        assert!(!name.contains("Layer") && !name.contains("gamma"), "{name}");
    }
    let json = new.meta_json().unwrap();
    assert!(
        !json.contains("param_ids") && !json.contains("\"rng\""),
        "{json}"
    );
}
