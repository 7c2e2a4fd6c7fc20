//! The LSTM family: its shape and size, its state as a generation cache, learning the corpus on
//! both backends, checkpoints, and the settings it refuses.

mod common;

use burn::module::Module;
use burn::prelude::*;
use kiln::backend::{self, BackendKind};
use kiln::checkpoint::Checkpoint;
use kiln::config::{Arch, LoraConfig, LoraTarget, Task, preset};
use kiln::generate::generate;
use kiln::model::KvCache;
use kiln::train::Trainer;
use kiln::{Gpt, Preset, SampleConfig};

use common::{floats, ids};

fn lstm(vocab_size: usize) -> Preset {
    common::sized("tiny-lstm", vocab_size)
}

#[test]
fn parameter_count_matches_the_module_and_the_gpt_it_is_compared_with() {
    let device = Device::flex();
    for (tie, bias, classify) in [
        (true, true, false),
        (false, false, false),
        (true, true, true),
    ] {
        let mut c = lstm(65).model;
        c.tie_weights = tie;
        c.bias = bias;
        if classify {
            c.task = Task::Classify {
                classes: vec!["a".into(), "b".into(), "c".into()],
                pooling: Default::default(),
            };
        }
        let model = Gpt::new(&c, 1, &device);
        assert_eq!(Gpt::num_params_of(&c), model.num_params(), "{c:?}");
    }
    // The Shakespeare LSTM is the size of the GPT it is compared with (65 characters).
    let size = |name: &str| {
        let mut c = preset(name).unwrap().model;
        c.vocab_size = 65;
        Gpt::num_params_of(&c) as f64
    };
    let (lstm, gpt) = (size("shakespeare-lstm"), size("shakespeare-baby"));
    assert!((lstm / gpt - 1.0).abs() < 0.01, "LSTM {lstm} vs GPT {gpt}");
}

/// Logits have the GPT's shape, and the model reads past `block_size` (it has no positions).
#[test]
fn logits_have_one_row_per_position_and_no_length_limit() {
    let device = Device::flex();
    let c = lstm(20).model;
    let model = Gpt::new(&c, 1, &device);
    let long: Vec<u32> = (0..3 * c.block_size as u32).map(|i| i % 20).collect();
    let logits = model.forward(ids(&long, &device), None).unwrap();
    assert_eq!(logits.dims(), [1, long.len(), 20]);
    assert_eq!(model.max_context(), None);
}

/// Feeding a text in pieces through the cache (the LSTM's hidden and cell states) gives the
/// logits of the whole text at once, well past `block_size`.
#[test]
fn hidden_state_generation_equals_full_recomputation() {
    let device = Device::flex();
    let c = lstm(30).model;
    let model = Gpt::new(&c, 4, &device);
    let mut seq: Vec<u32> = vec![1, 5, 9, 2];
    let mut cache = KvCache::default();
    let mut pending = seq.clone();
    for step in 0..2 * c.block_size {
        let cached = floats(
            model
                .forward(ids(&pending, &device), Some(&mut cache))
                .unwrap(),
        );
        let full = floats(model.forward(ids(&seq, &device), None).unwrap());
        let diff = common::max_diff(&cached[cached.len() - 30..], &full[full.len() - 30..]);
        assert!(diff < 1e-5, "step {step}: cached logits differ by {diff}");
        assert_eq!(cache.len(), seq.len());
        let next = (step as u32 * 11 + 7) % 30;
        seq.push(next);
        pending = vec![next];
    }
}

/// `tiny-lstm` memorises one fixed batch: the loss falls below 0.1 (in about 400 steps).
#[test]
fn overfits_one_batch() {
    let device = Device::flex();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = lstm(tokenizer.vocab_size());
    p.train.lr = 1e-2;
    p.train.min_lr = 1e-2;
    p.train.warmup_steps = 0;
    p.train.weight_decay = 0.0;
    let ids = tokenizer.encode(&corpus.text()).unwrap();
    let batch = kiln::data::Batcher::new(ids, p.model.block_size, 4, "training")
        .unwrap()
        .sample(&mut kiln::data::step_rng(3, 0));
    let mut trainer = Trainer::new(p, tokenizer, &corpus, &device).unwrap();
    let first = trainer.step_on(vec![batch.clone()]).unwrap().loss;
    let mut loss = first;
    while loss >= 0.1 && trainer.step_count() < 800 {
        loss = trainer.step_on(vec![batch.clone()]).unwrap().loss;
    }
    assert!(
        loss < 0.1,
        "loss {first} -> {loss} after {} steps",
        trainer.step_count()
    );
}

/// On the bundled Shakespeare: 400 steps on the CPU bring the validation loss well below the
/// unigram entropy (3.31 nats); on wgpu (lavapipe, where each of the LSTM's many small steps is
/// a dispatch) the first 20 steps take the CPU's losses and lower the validation loss too.
#[test]
fn a_short_run_lowers_the_validation_loss_on_both_backends() {
    let corpus = common::text(common::shakespeare());
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = lstm(tokenizer.vocab_size());
    p.train.lr = 1e-2;
    p.train.min_lr = 1e-3;
    p.train.eval_interval = 20;
    let run = |kind: BackendKind, steps: usize| {
        let device = backend::open(kind).expect("lavapipe or a GPU for wgpu");
        let mut p = p.clone();
        p.train.max_steps = steps;
        let mut trainer = Trainer::new(p, tokenizer.clone(), &corpus, &device).unwrap();
        let before = trainer.evaluate().unwrap();
        let (mut after, mut losses) = (before, Vec::new());
        let started = std::time::Instant::now();
        trainer
            .run(|m, _| {
                after = m.val_loss.unwrap_or(after);
                losses.push(m.loss);
                true
            })
            .unwrap();
        let ms = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
        eprintln!("{kind}: val loss {before:.3} -> {after:.3} in {steps} steps, {ms:.0} ms/step");
        (before, after, losses)
    };
    let (cpu_before, cpu_after, cpu) = run(BackendKind::Cpu, 400);
    assert!(cpu_after < 3.0, "CPU: val loss {cpu_before} -> {cpu_after}");
    let (gpu_before, gpu_after, gpu) = run(BackendKind::Wgpu, 20);
    assert!(
        (cpu_before - gpu_before).abs() < 1e-3,
        "{cpu_before} vs {gpu_before}"
    );
    assert!(
        gpu_after < gpu_before - 0.3,
        "wgpu: val loss {gpu_before} -> {gpu_after}"
    );
    // One model and the same batches: the first steps agree, until float rounding, amplified
    // by training at lr 1e-2, drifts (about 1% by step 20).
    for (i, (c, g)) in cpu.iter().zip(&gpu).take(5).enumerate() {
        eprintln!("step {i}: CPU {c}, wgpu {g}");
        assert!((c - g).abs() < 1e-3 * c, "step {i}: CPU {c}, wgpu {g}");
    }
}

/// Save at step 3 and resume: the losses of a run that never stopped; and the loaded model
/// samples what the saved one does.
#[test]
fn checkpoints_round_trip_and_resume_exactly() {
    let device = Device::flex();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let p = lstm(tokenizer.vocab_size());
    let (loaded, saver) = common::assert_resume_is_exact(p, &corpus, tokenizer);
    assert_eq!(loaded.meta.model.arch, Arch::Lstm);
    let cfg = SampleConfig {
        max_tokens: 80,
        ..SampleConfig::default()
    };
    let sample = |model: &Gpt, tok| generate(model, tok, "ROMEO:", &cfg, &device, |_| true);
    let (model, tok) = loaded.load_model(&device).unwrap();
    let want = sample(saver.model(), saver.tokenizer()).unwrap();
    assert_eq!(sample(&model, &tok).unwrap(), want);
    assert_eq!(want.chars().count(), 80, "80 characters, past block_size");
}

/// What an LSTM cannot do is refused with a sentence that says why and what instead.
#[test]
fn what_an_lstm_has_no_part_for_is_refused() {
    let device = Device::flex();
    let mut c = lstm(20).model;
    let model = Gpt::new(&c, 1, &device);
    let err = model.attention_maps(ids(&[1, 2, 3], &device)).unwrap_err();
    assert!(err.to_string().contains("no attention"), "{err}");

    let (ckpt, _) = {
        let corpus = common::small_corpus(5_000);
        let tokenizer = common::char_tokenizer(&corpus);
        let trainer =
            Trainer::new(lstm(tokenizer.vocab_size()), tokenizer, &corpus, &device).unwrap();
        (Checkpoint::from_trainer(&trainer).unwrap(), corpus)
    };
    let err = ckpt.to_gpt2().unwrap_err().to_string();
    assert!(err.contains("an LSTM"), "{err}");

    c.lora = Some(LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::Q],
    });
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("LSTM") && err.contains("finetune the whole"),
        "{err}"
    );

    let mut p = lstm(20);
    p.set("arch=rnn").unwrap_err();
    p.set("arch=gpt").unwrap();
    assert_eq!(p.model.arch, Arch::Gpt);
}
