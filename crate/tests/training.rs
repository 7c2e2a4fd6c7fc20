//! Training end to end: learning the corpus, clipping, exact resume.

mod common;

use burn::optim::GradientsParams;
use burn::prelude::*;
use kiln::Gpt;
use kiln::checkpoint::Checkpoint;
use kiln::data::{Batcher, step_rng};
use kiln::train::{Trainer, clip_grad_norm};

/// 200 steps of `tiny` on the bundled Shakespeare learn more than character frequencies: the
/// unigram entropy of the corpus is 3.31 nats, uniform over its 76 characters 4.33.
#[test]
fn tiny_learns_the_default_corpus() {
    let device = Device::flex();
    let corpus = kiln::data::Corpus::from_text(common::shakespeare()).unwrap();
    let tokenizer = common::char_tokenizer(&corpus);
    let p = common::tiny(tokenizer.vocab_size());
    let mut trainer = Trainer::new(p, tokenizer, &corpus, &device).unwrap();
    let before = trainer.evaluate().unwrap();
    let mut last = None;
    trainer
        .run(|m, _| {
            last = m.val_loss.or(last);
            true
        })
        .unwrap();
    let after = last.unwrap();
    eprintln!(
        "val loss {before:.3} -> {after:.3} after {} steps",
        trainer.step_count()
    );
    assert_eq!(trainer.step_count(), 200);
    assert!(before > 4.0, "untrained loss {before}");
    assert!(after < 3.0, "val loss {after} after 200 steps");
}

#[test]
fn clipping_caps_the_global_norm() {
    let device = Device::flex().autodiff();
    let corpus = common::small_corpus(5_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let p = common::tiny(tokenizer.vocab_size());
    let model = Gpt::new(&p.model, 1, &device);
    let ids = tokenizer.encode(corpus.train_text()).unwrap();
    let batch = Batcher::new(ids, p.model.block_size, 4, "training")
        .unwrap()
        .sample(&mut step_rng(1, 0));
    let grads_of = || {
        let shape = [batch.batch, batch.block];
        let x = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs.clone(), shape), &device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(batch.targets.clone(), shape), &device);
        GradientsParams::from_grads(Gpt::loss(model.forward(x, None), y).backward(), &model)
    };
    let norm = |g: &mut GradientsParams| clip_grad_norm(&model, g, 0.0).into_scalar::<f32>();
    let mut grads = grads_of();
    let raw = norm(&mut grads);
    assert!(raw > 0.05, "raw norm {raw}");
    // Clipping to a tenth of the norm leaves exactly that norm.
    let reported = clip_grad_norm(&model, &mut grads, raw as f64 / 10.0).into_scalar::<f32>();
    assert!(
        (reported - raw).abs() < 1e-5 * raw,
        "returns the norm before clipping"
    );
    let clipped = norm(&mut grads);
    assert!(
        (clipped - raw / 10.0).abs() < 1e-4 * raw,
        "clipped norm {clipped}, wanted {}",
        raw / 10.0
    );
    // A cap above the norm changes nothing.
    let mut grads = grads_of();
    clip_grad_norm(&model, &mut grads, raw as f64 * 2.0);
    assert!((norm(&mut grads) - raw).abs() < 1e-5 * raw);
}

/// Save at step 3, load, continue: the same losses as a run that never stopped.
#[test]
fn resume_repeats_the_uninterrupted_run() {
    let device = Device::flex();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.train.grad_accum = 2;
    p.train.warmup_steps = 2;
    let losses =
        |t: &mut Trainer, n: usize| (0..n).map(|_| t.step().unwrap().loss).collect::<Vec<f32>>();

    let mut straight = Trainer::new(p.clone(), tokenizer.clone(), &corpus, &device).unwrap();
    let expected = losses(&mut straight, 6);

    let mut first = Trainer::new(p, tokenizer, &corpus, &device).unwrap();
    let mut got = losses(&mut first, 3);
    let dir = std::env::temp_dir().join(format!("kiln-resume-{}", std::process::id()));
    Checkpoint::from_trainer(&first)
        .unwrap()
        .save_dir(&dir)
        .unwrap();
    drop(first);
    let mut resumed = Checkpoint::load_dir(&dir)
        .unwrap()
        .resume(&corpus, &device)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(resumed.step_count(), 3);
    got.extend(losses(&mut resumed, 3));
    for (i, (a, b)) in expected.iter().zip(&got).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs(),
            "step {i}: uninterrupted {a}, resumed {b}"
        );
    }
}
