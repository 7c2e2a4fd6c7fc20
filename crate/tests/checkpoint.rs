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
    let s1 = score(&model, &tokenizer, "To be, or not to be", &Device::flex()).unwrap();
    let s2 = score(&model2, &tokenizer, "To be, or not to be", &Device::flex()).unwrap();
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
    let (mut ckpt, _) = common::trained_tiny();
    ckpt.meta.model.n_embd = 64;
    ckpt.meta.model.n_head = 2;
    assert!(load_err(&ckpt).contains("shape"), "{}", load_err(&ckpt));
    let (mut ckpt, _) = common::trained_tiny();
    ckpt.meta.model.n_layer = 1;
    assert!(load_err(&ckpt).contains("tensors"), "{}", load_err(&ckpt));
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
