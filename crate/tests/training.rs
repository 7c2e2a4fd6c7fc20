//! Training end to end: learning the corpus, clipping, exact resume.

mod common;

use burn::module::{ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use kiln::Gpt;
use kiln::checkpoint::Checkpoint;
use kiln::data::examples::IGNORE;
use kiln::data::{Batch, Batcher, step_rng};
use kiln::kernels::adamw::EPS;
use kiln::optim::AdamW;
use kiln::train::{Trainer, clip_grad_norm};

/// 200 steps of `tiny` on the bundled Shakespeare learn more than character frequencies: the
/// unigram entropy of the corpus is 3.31 nats, uniform over its 76 characters 4.33.
#[test]
fn tiny_learns_the_default_corpus() {
    let device = Device::flex();
    let corpus = common::text(common::shakespeare());
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
    let ids = tokenizer.encode(&corpus.text()).unwrap();
    let batch = Batcher::new(ids, p.model.block_size, 4, "training")
        .unwrap()
        .sample(&mut step_rng(1, 0));
    let grads_of = || {
        let shape = [batch.batch, batch.block];
        let x = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs.clone(), shape), &device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(batch.targets.clone(), shape), &device);
        GradientsParams::from_grads(
            model.loss(model.forward(x, None).unwrap(), y).backward(),
            &model,
        )
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

/// Ids of the matrices: the parameters Burn's AdamW should decay, as ours does.
#[derive(Default)]
struct Matrices(Vec<ParamId>);

impl ModuleVisitor for Matrices {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D >= 2 {
            self.0.push(param.id);
        }
    }
}

/// Every parameter value, in visiting order.
#[derive(Default)]
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.extend(param.val().try_into_vec_as::<f32>().unwrap());
    }
}

/// Four steps of Kiln's optimizer (as `train` configures it) and of Burn's `reference` on the
/// same batches from one model: the largest move of any parameter, and the largest difference
/// between the two results.
fn against_reference(
    train: &kiln::TrainConfig,
    reference: impl FnOnce(&Gpt) -> burn::optim::ModuleOptimizer,
) -> (f32, f32) {
    let device = Device::flex().autodiff();
    let corpus = common::small_corpus(5_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let p = common::tiny(tokenizer.vocab_size());
    let ids = tokenizer.encode(&corpus.text()).unwrap();
    let batcher = Batcher::new(ids, p.model.block_size, 4, "training").unwrap();
    let grads_of = |model: &Gpt, step: u64| {
        let batch = batcher.sample(&mut step_rng(5, step));
        let shape = [batch.batch, batch.block];
        let x = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs, shape), &device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(batch.targets, shape), &device);
        GradientsParams::from_grads(
            model.loss(model.forward(x, None).unwrap(), y).backward(),
            model,
        )
    };
    let mut ours = Gpt::new(&p.model, 3, &device);
    let mut theirs = Gpt::new(&p.model, 3, &device);
    let mut reference = reference(&theirs);
    let mut optim = AdamW::default();
    let lr = 1e-2; // large enough that the parameters move visibly
    for step in 0..4 {
        let g = grads_of(&ours, step);
        ours = optim.step(train, lr, ours, g);
        let g = grads_of(&theirs, step);
        theirs = reference.step(lr, theirs, g);
    }
    let flat = |m: &Gpt| {
        let mut values = Values::default();
        m.visit(&mut values);
        values.0
    };
    let initial = flat(&Gpt::new(&p.model, 3, &device));
    let (a, b) = (flat(&ours), flat(&theirs));
    let max_gap = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    (max_gap(&a, &initial), max_gap(&a, &b))
}

/// Kiln's AdamW against Burn's (the reference), configured alike: decay on matrices only.
#[test]
fn adamw_matches_burns_adamw() {
    let c = common::tiny(65).train;
    let adamw = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(c.beta1 as f32)
            .with_beta_2(c.beta2 as f32)
            .with_epsilon(EPS as f32)
            .with_weight_decay(decay as f32)
    };
    let (moved, diff) = against_reference(&c, |model| {
        let mut matrices = Matrices::default();
        model.visit(&mut matrices);
        adamw(0.0).init().with_group(
            ParamGroup::from_ids(matrices.0),
            adamw(c.weight_decay).build(),
            None,
        )
    });
    assert!(moved > 1e-2, "the parameters moved by at most {moved}");
    assert!(diff < 1e-5, "max difference from Burn's AdamW: {diff}");
}

/// `optimizer = "sgd"` against Burn's SGD (no momentum, no decay): `p ← p − lr·g`.
#[test]
fn sgd_matches_burns_sgd() {
    let c = kiln::TrainConfig {
        optimizer: kiln::config::Optimizer::Sgd,
        weight_decay: 0.0,
        ..common::tiny(65).train
    };
    let (moved, diff) = against_reference(&c, |_| burn::optim::SgdConfig::new().init());
    assert!(moved > 1e-4, "the parameters moved by at most {moved}");
    assert!(diff < 1e-6, "max difference from Burn's SGD: {diff}");
}

/// Save at step 3, load, continue: the same losses as a run that never stopped.
#[test]
fn resume_repeats_the_uninterrupted_run() {
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.train.grad_accum = 2;
    p.train.warmup_steps = 2;
    common::assert_resume_is_exact(p, &corpus, tokenizer);
}

/// Gradient accumulation over micro-batches whose masks keep 1 target in 8 and 7 in 8 takes
/// the same step as one batch of all their rows: every counted target weighs the same.
#[test]
fn accumulation_equals_one_batch_of_all_the_rows() {
    let (ckpt, data) = common::trained_tiny();
    let device = Device::flex();
    let block = ckpt.meta.model.block_size;
    let v = ckpt.meta.model.vocab_size as i64;
    let micro = |seed: i64, keep: i64| {
        let ids = |k: i64| (0..2 * block as i64).map(move |i| (i * k + seed) % v);
        let targets = ids(5)
            .enumerate()
            .map(|(i, t)| match (i as i64) % 8 < keep {
                true => t,
                false => IGNORE,
            });
        Batch {
            inputs: ids(7).collect(),
            targets: targets.collect(),
            batch: 2,
            block,
        }
    };
    let (sparse, dense) = (micro(1, 1), micro(3, 7));
    let joined = Batch {
        inputs: [sparse.inputs.clone(), dense.inputs.clone()].concat(),
        targets: [sparse.targets.clone(), dense.targets.clone()].concat(),
        batch: 4,
        block,
    };
    let step = |batches: Vec<Batch>| {
        let mut t = ckpt.resume(&data, &device).unwrap();
        let m = t.step_on(batches).unwrap();
        let mut values = Values::default();
        t.model().visit(&mut values);
        (m, values.0)
    };
    let (accumulated, w_accumulated) = step(vec![sparse.clone(), dense.clone()]);
    let (one, w_one) = step(vec![joined]);
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs();
    assert!(
        close(accumulated.loss, one.loss),
        "{} vs {}",
        accumulated.loss,
        one.loss
    );
    assert!(
        close(accumulated.grad_norm, one.grad_norm),
        "{} vs {}",
        accumulated.grad_norm,
        one.grad_norm
    );
    let diff = common::max_diff(&w_accumulated, &w_one);
    assert!(diff < 1e-5, "weights differ by {diff}");
    // The test can tell: a mean of the two micro-batches' means is another number.
    let mean_of_means = (step(vec![sparse]).0.loss + step(vec![dense]).0.loss) / 2.0;
    assert!(
        (mean_of_means - one.loss).abs() > 1e-3,
        "{mean_of_means} vs {}",
        one.loss
    );
}

/// The same seed on the same backend gives the same losses, bit for bit, for 50 steps.
#[test]
fn same_seed_same_losses_for_50_steps_on_the_cpu() {
    let first = common::tiny_losses(&Device::flex(), 50);
    assert_eq!(first, common::tiny_losses(&Device::flex(), 50));
    assert!(first[49] < first[0]);
}

/// A new schedule (longer, another batch size) continues the same run; a bad one changes nothing.
#[test]
fn schedule_changes_keep_the_run() {
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let p = common::tiny(tokenizer.vocab_size());
    let mut t = Trainer::new(p.clone(), tokenizer, &corpus, &Device::flex()).unwrap();
    t.step().unwrap();
    t.step().unwrap();
    let longer = kiln::TrainConfig {
        max_steps: 500,
        batch_size: 3,
        ..p.train.clone()
    };
    t.set_train_config(longer.clone()).unwrap();
    let m = t.step().unwrap();
    assert_eq!((m.step, m.max_steps), (3, 500));
    assert_eq!(m.lr, kiln::train::lr_at(&longer, 2));
    let bad = kiln::TrainConfig {
        batch_size: 0,
        ..longer.clone()
    };
    assert!(t.set_train_config(bad).is_err());
    assert_eq!(t.preset().train, longer);
    assert_eq!(t.step().unwrap().step, 4);
}

/// Every parameter's path and values.
#[derive(Default)]
struct Named(Vec<(String, Vec<f32>)>, Vec<String>);

impl ModuleVisitor for Named {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param.val().try_into_vec_as::<f32>().unwrap();
        self.0.push((self.1.join("."), values));
    }
}

/// Blocks below `freeze_blocks` keep their exact weights; the rest train.
#[test]
fn frozen_blocks_keep_their_weights() {
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.train.freeze_blocks = 1;
    let mut t = Trainer::new(p.clone(), tokenizer.clone(), &corpus, &Device::flex()).unwrap();
    let block = |t: &Trainer, i: usize| {
        let mut named = Named::default();
        t.model().visit(&mut named);
        let prefix = format!("h.{i}.");
        named
            .0
            .into_iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .collect::<Vec<_>>()
    };
    let (frozen, trained) = (block(&t, 0), block(&t, 1));
    for _ in 0..3 {
        t.step().unwrap();
    }
    assert!(!frozen.is_empty());
    assert_eq!(block(&t, 0), frozen, "block 0 is frozen");
    assert_ne!(block(&t, 1), trained, "block 1 trains");
    p.train.freeze_blocks = 3;
    let err = Trainer::new(p, tokenizer, &corpus, &Device::flex())
        .err()
        .unwrap();
    assert!(err.to_string().contains("freeze_blocks"), "{err}");
}

/// Pretrain on Shakespeare, finetune on Milton: Milton's validation loss falls.
#[test]
fn finetuning_on_milton_lowers_its_loss() {
    let shakespeare = common::small_corpus(40_000);
    // The vocabulary of all the plays, as the page builds it: it covers Milton's characters.
    let all = common::text(common::shakespeare());
    let tokenizer = common::char_tokenizer(&all);
    let p = common::tiny(tokenizer.vocab_size());
    let mut t = Trainer::new(p.clone(), tokenizer, &shakespeare, &Device::flex()).unwrap();
    for _ in 0..40 {
        t.step().unwrap();
    }
    let ckpt = Checkpoint::from_trainer(&t).unwrap();
    let milton = common::milton(40_000);
    let schedule = kiln::TrainConfig {
        max_steps: 40,
        warmup_steps: 0,
        ..p.train
    };
    let preset = kiln::Preset {
        model: ckpt.meta.model.clone(),
        train: schedule,
    };
    let mut ft = ckpt.finetune(&milton, preset, &Device::flex()).unwrap();
    assert_eq!(ft.step_count(), 0);
    let before = ft.evaluate().unwrap();
    for _ in 0..40 {
        ft.step().unwrap();
    }
    let after = ft.evaluate().unwrap();
    assert!(after < before - 0.1, "Milton val loss {before} -> {after}");
    // The same run can also switch text in place; unseen characters are named.
    let accented = common::text("café au lait ".repeat(500));
    let err = ft.set_data(&accented).err().unwrap();
    assert!(err.to_string().contains("'é'"), "{err}");
    ft.set_data(&shakespeare).unwrap();
    ft.step().unwrap();
}
