//! `tiny` memorises one fixed batch on each backend. Its own test binary: the wgpu runtime is
//! registered once per process, and other tests' CPU runs must not have touched it first.

mod common;

use kiln::backend::{self, BackendKind};
use kiln::data::{Batcher, step_rng};
use kiln::train::Trainer;

/// `tiny` memorises one fixed batch: the loss falls below 0.1.
fn overfit_one_batch(kind: BackendKind) {
    let device = backend::open(kind).unwrap();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.train.lr = 1e-2;
    p.train.min_lr = 1e-2;
    p.train.warmup_steps = 0;
    p.train.weight_decay = 0.0;
    p.train.max_steps = 400;
    let ids = tokenizer.encode(&corpus.text()).unwrap();
    let batch = Batcher::new(ids, p.model.block_size, 4, "training")
        .unwrap()
        .sample(&mut step_rng(3, 0));
    let mut trainer = Trainer::new(p, tokenizer, &corpus, &device).unwrap();
    let first = trainer.step_on(vec![batch.clone()]).unwrap().loss;
    let mut loss = first;
    for _ in 0..400 {
        loss = trainer.step_on(vec![batch.clone()]).unwrap().loss;
        if loss < 0.1 {
            break;
        }
    }
    assert!(
        loss < 0.1,
        "{kind}: loss {first} -> {loss} after {} steps",
        trainer.step_count()
    );
}

#[test]
fn overfit_fixed_batch_cpu() {
    overfit_one_batch(BackendKind::Cpu);
}

#[test]
fn overfit_fixed_batch_wgpu() {
    overfit_one_batch(BackendKind::Wgpu);
}
