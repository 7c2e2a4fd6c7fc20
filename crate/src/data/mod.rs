//! From file bytes to batches of token ids: `corpus` (text) or `examples` (finetuning pairs and
//! labelled texts), together a `dataset` -> `tokenizer` -> `batcher`.

pub mod authorship;
pub mod batcher;
pub mod corpus;
pub mod dataset;
pub mod examples;
pub mod masking;
pub mod tokenizer;

pub use batcher::{Batch, Batcher, Batches, step_rng};
pub use corpus::Corpus;
pub use dataset::Dataset;
pub use tokenizer::{Specials, Tokenizer, TokenizerKind};
