//! From file bytes to batches of token ids: `corpus` -> `tokenizer` -> `batcher`.

pub mod batcher;
pub mod corpus;
pub mod tokenizer;

pub use batcher::{Batch, Batcher, step_rng};
pub use corpus::Corpus;
pub use tokenizer::{Tokenizer, TokenizerKind};
