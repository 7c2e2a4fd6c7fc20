//! Fuzzing with bolero: every reader of user input — text files, example files, tokenizers,
//! configs, checkpoints, GPT-2 imports, PEFT adapters — fed arbitrary bytes or valid files with
//! random edits, returns a value or a typed error, and never panics.
//!
//! `cargo test --test fuzz` is the smoke run CI does (bolero's default number of random inputs
//! per target); `BOLERO_RANDOM_ITERATIONS=1000000 cargo test --release --test fuzz` is the long
//! run `docs/reliability.md` reports.

mod common;

use bolero::check;
use burn::prelude::*;
use kiln::Preset;
use kiln::checkpoint::Checkpoint;
use kiln::data::{Corpus, Dataset, Tokenizer, TokenizerKind};
use kiln::hf::HfFiles;

/// `valid` with each `(position, byte)` edit applied (positions wrap around; a position past the
/// end appends, a zero byte at an even position deletes there).
fn edited(valid: &[u8], edits: &[(u32, u8)]) -> Vec<u8> {
    let mut out = valid.to_vec();
    for &(at, byte) in edits {
        let at = at as usize % (out.len() + 1);
        match (at == out.len(), byte) {
            (true, _) => out.push(byte),
            (false, 0) if at.is_multiple_of(2) => {
                out.remove(at);
            }
            (false, _) => out[at] = byte,
        }
    }
    out
}

#[test]
fn corpus_bytes() {
    check!().for_each(|bytes| {
        if let Ok(corpus) = Corpus::from_files(&[("text.txt", bytes)]) {
            assert!(!corpus.text().is_empty());
        }
    });
}

#[test]
fn example_files() {
    let jsonl = br#"{"prompt": "Q1:", "completion": "A1"}
{"text": "a fine play", "label": "good"}
"#;
    let csv = b"text,label\n\"a, b\",x\nno,y\n";
    check!()
        .with_type::<(bool, Vec<(u32, u8)>)>()
        .for_each(|(is_csv, edits)| {
            let (name, valid) = if *is_csv {
                ("data.csv", &csv[..])
            } else {
                ("data.jsonl", &jsonl[..])
            };
            let _ = Dataset::from_files(&[(name, edited(valid, edits))]);
        });
}

#[test]
fn char_tokenizer_round_trips() {
    check!()
        .with_type::<(String, String)>()
        .for_each(|(train, other)| {
            let Ok(t) = Tokenizer::train(TokenizerKind::Char, train) else {
                assert!(train.is_empty());
                return;
            };
            let ids = t.encode(train).unwrap();
            assert_eq!(&t.decode(&ids).unwrap(), train);
            let _ = t.encode(other);
            let again = Tokenizer::from_json(&t.to_json().unwrap()).unwrap();
            assert_eq!(again.encode(train).unwrap(), ids);
        });
}

#[test]
fn tokenizer_files() {
    let bpe = Tokenizer::train(
        TokenizerKind::Bpe { vocab_size: 260 },
        &"to be or not".repeat(30),
    )
    .unwrap()
    .to_json()
    .unwrap();
    let char = Tokenizer::train(TokenizerKind::Char, "to be")
        .unwrap()
        .to_json()
        .unwrap();
    check!()
        .with_type::<(bool, Vec<(u32, u8)>)>()
        .for_each(|(is_bpe, edits)| {
            let valid = if *is_bpe { &bpe } else { &char };
            let json = String::from_utf8_lossy(&edited(valid.as_bytes(), edits)).into_owned();
            if let Ok(t) = Tokenizer::from_json(&json) {
                let _ = t.encode("to be, or not to be");
                let _ = t.decode(&[0, 1, 2, 100_000]);
            }
        });
}

#[test]
fn configs() {
    let valid = serde_json::to_vec(&common::tiny(65)).unwrap();
    check!()
        .with_type::<(Vec<(u32, u8)>, String)>()
        .for_each(|(edits, assignment)| {
            if let Ok(mut p) = serde_json::from_slice::<Preset>(&edited(&valid, edits)) {
                let _ = p.validate();
                let _ = p.set(assignment);
                let _ = p.validate();
            }
        });
}

/// A small valid checkpoint: the parts a user could hand the page or the CLI.
fn small_checkpoint() -> Checkpoint {
    let data = common::text("to be or not to be, that is the question\n".repeat(20));
    let tokenizer = common::char_tokenizer(&data);
    let mut p = common::tiny(tokenizer.vocab_size());
    (p.model.n_layer, p.model.n_embd, p.model.block_size) = (1, 8, 8);
    let t = kiln::train::Trainer::new(p, tokenizer, &data, &Device::flex()).unwrap();
    Checkpoint::from_trainer(&t).unwrap()
}

#[test]
fn checkpoints() {
    let valid = small_checkpoint();
    let meta = valid.meta_json().unwrap().into_bytes();
    let optimizer = valid.optimizer.clone().unwrap();
    check!()
        .with_type::<(u8, Vec<(u32, u8)>)>()
        .for_each(|(part, edits)| {
            let (mut m, mut w, mut o) = (meta.clone(), valid.weights.clone(), optimizer.clone());
            match part % 3 {
                0 => m = edited(&m, edits),
                1 => w = edited(&w, edits),
                _ => o = edited(&o, edits),
            }
            let data = common::text("to be or not to be, that is the question\n".repeat(20));
            if let Ok(ckpt) = Checkpoint::from_parts(&m, w, Some(o)) {
                let _ = ckpt.resume(&data, &Device::flex());
            }
        });
}

/// Edits a model's weights (safetensors bytes) when `in_weights`, else its JSON config.
fn edit_weights_or_config(
    weights: &mut Vec<u8>,
    config: &mut String,
    in_weights: bool,
    edits: &[(u32, u8)],
) {
    if in_weights {
        *weights = edited(weights, edits);
    } else {
        *config = String::from_utf8_lossy(&edited(config.as_bytes(), edits)).into_owned();
    }
}

#[test]
fn gpt2_imports() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gpt2-tiny"
    ));
    let valid = HfFiles::load_dir(dir).unwrap();
    check!()
        .with_type::<(bool, Vec<(u32, u8)>)>()
        .for_each(|(weights, edits)| {
            let mut files = valid.clone();
            edit_weights_or_config(&mut files.weights, &mut files.config, *weights, edits);
            if let Ok(ckpt) = Checkpoint::from_gpt2(&files) {
                let _ = ckpt.load_model(&Device::flex());
            }
        });
}

#[test]
fn peft_adapters() {
    use kiln::config::{LoraConfig, LoraTarget};
    let base = small_checkpoint();
    let mut p = Preset {
        model: base.meta.model.clone(),
        train: base.meta.train.clone(),
    };
    p.model.lora = Some(LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Mlp],
    });
    let data = common::text("to be or not to be, that is the question\n".repeat(20));
    let tokenizer = Tokenizer::from_json(&base.meta.tokenizer).unwrap();
    let lora = kiln::train::Trainer::new(p, tokenizer, &data, &Device::flex()).unwrap();
    let valid = Checkpoint::from_trainer(&lora).unwrap().to_peft().unwrap();
    check!()
        .with_type::<(bool, Vec<(u32, u8)>)>()
        .for_each(|(weights, edits)| {
            let mut files = valid.clone();
            edit_weights_or_config(&mut files.weights, &mut files.config, *weights, edits);
            if let Ok(ckpt) = base.with_peft(&files) {
                let _ = ckpt.load_model(&Device::flex());
            }
        });
}
