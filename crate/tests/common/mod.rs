//! Shared fixtures: the tiny preset and text from the bundled corpus.
#![allow(dead_code)] // each test binary uses its own subset

use kiln::Preset;
use kiln::config::preset;
use kiln::data::{Corpus, Tokenizer, TokenizerKind};

/// The bundled default corpus.
pub fn shakespeare() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/shakespeare.txt");
    std::fs::read_to_string(path).expect("bundled corpus")
}

/// The first `chars` characters of the corpus.
pub fn small_corpus(chars: usize) -> Corpus {
    Corpus::from_text(shakespeare().chars().take(chars).collect()).unwrap()
}

/// The first `chars` characters of the bundled Milton (the finetuning demo's second text).
pub fn milton(chars: usize) -> Corpus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/milton.txt");
    let text = std::fs::read_to_string(path).expect("bundled Milton");
    Corpus::from_text(text.chars().take(chars).collect()).unwrap()
}

pub fn char_tokenizer(corpus: &Corpus) -> Tokenizer {
    Tokenizer::train(TokenizerKind::Char, corpus.text()).unwrap()
}

/// `tiny` with the vocabulary filled in.
pub fn tiny(vocab_size: usize) -> Preset {
    let mut p = preset("tiny").unwrap();
    p.model.vocab_size = vocab_size;
    p
}
