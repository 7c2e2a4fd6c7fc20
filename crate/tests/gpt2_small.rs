//! GPT-2 small's shape (124M parameters: 50,257 tokens, 1,024 positions, 12 blocks of 768) with
//! random weights and GPT-2's real tokenizer, through transformers' files, on the CPU: what a
//! user who brings GPT-2 to Kiln gets. Its own test binary, so the process's peak memory is this
//! test's.

mod common;

use std::time::Instant;

use burn::prelude::*;
use kiln::Preset;
use kiln::checkpoint::Checkpoint;
use kiln::config::{LoraConfig, LoraTarget, SampleConfig, preset};

/// The process's peak resident memory (Linux), in bytes.
fn peak_memory() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024.0
}

#[test]
fn gpt2_small_shaped_imports_generates_and_takes_a_lora_step() {
    let device = Device::flex();
    let mut p = preset("tiny").unwrap();
    let m = &mut p.model;
    (m.vocab_size, m.block_size, m.n_layer, m.n_head, m.n_embd) = (50257, 1024, 12, 12, 768);
    (m.bias, m.dropout) = (true, 0.0);
    p.train.batch_size = 1;
    let started = Instant::now();
    // GPT-2-shaped files: a random model of that shape, exported.
    let files = Checkpoint::init(p.clone(), &common::gpt2_tokenizer())
        .unwrap()
        .to_gpt2()
        .unwrap();
    let file_mb = files.weights.len() as f64 / 1e6;

    let ckpt = Checkpoint::from_gpt2(&files).unwrap();
    drop(files);
    assert_eq!(kiln::Gpt::num_params_of(&ckpt.meta.model), 124_439_808);
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    assert_eq!(tokenizer.encode("Hello world").unwrap(), [15496, 995]);
    let greedy = SampleConfig {
        temperature: 0.0,
        max_tokens: 4,
        ..SampleConfig::default()
    };
    let mut pieces = 0;
    let text =
        kiln::generate::generate(&model, &tokenizer, "Hello world", &greedy, &device, |_| {
            pieces += 1;
            true
        })
        .unwrap();
    assert_eq!(pieces, 4, "{text:?}");
    drop(model);
    let imported = started.elapsed();

    let mut lora = Preset {
        model: ckpt.meta.model.clone(),
        train: p.train.clone(),
    };
    lora.model.lora = Some(LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
    });
    let data = common::small_corpus(200_000);
    let mut trainer = ckpt.finetune(&data, lora.clone(), &device).unwrap();
    let step = Instant::now();
    let loss = trainer.step().unwrap().loss;
    let step = step.elapsed();
    // Random weights predict about uniformly: ln(50257) = 10.8.
    assert!((loss - 10.8).abs() < 1.0, "loss {loss}");

    let peak = peak_memory();
    let estimate = kiln::memory::need(&lora.model, Some(&lora.train), false).total;
    eprintln!(
        "GPT-2 small shape: {file_mb:.0} MB file; export, import and 4 greedy tokens {:.1} s; \
         one LoRA step (1 × 1024 tokens) {:.1} s; peak memory {:.2} GB, Kiln's estimate for the \
         step {:.2} GB",
        imported.as_secs_f64(),
        step.as_secs_f64(),
        peak / 1e9,
        estimate / 1e9
    );
    // The file and its copies (the export, the import, the loaded model) come and go; a LoRA
    // step must not need more than its estimate beside them.
    assert!(
        peak < estimate + 4.0 * file_mb * 1e6,
        "peak {peak:e} bytes, estimate {estimate:e}"
    );
}
