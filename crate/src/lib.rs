//! Kiln: pretrain and finetune small GPT language models, natively and in the browser (WebGPU).
//!
//! The data path, one stage per module: file bytes -> [`data::corpus`] -> [`data::tokenizer`] ->
//! [`data::batcher`] -> [`model`] -> loss -> [`train`] -> metrics. Generation and scoring live in
//! [`generate`], the page's views inside the model in [`inspect`], saving and resuming in
//! [`checkpoint`].

pub mod backend;
pub mod bench;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod generate;
pub mod gpt2;
pub mod hf;
pub mod inspect;
pub mod kernels;
pub mod lora;
pub mod memory;
pub mod model;
pub mod optim;
pub mod peft;
pub mod train;
pub mod verify;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use config::{ModelConfig, Preset, SampleConfig, TrainConfig};
pub use error::{Error, Result};
pub use model::Gpt;
