//! A device that binds little per tensor: WebGPU guarantees only 128 MiB per binding, and
//! GPT-2's token embedding is 154 MB. The model then holds the embedding in row parts and the
//! loss forms the logits a chunk of rows at a time. Here the CPU backend stands in for such a
//! device (`limit_bindings`) and is checked against the same model held whole. Its own test
//! binary with one test, because the limit holds for the whole process.

mod common;

use burn::prelude::*;
use kiln::checkpoint::Checkpoint;
use kiln::config::SampleConfig;
use kiln::data::Dataset;
use kiln::train::Trainer;

/// The stand-in limit, 1 MiB: GPT-2's 50,257 tokens × 32 wide take 7 parts (the last of 1,105
/// rows), and 5 positions' logits fit at a time.
const LIMIT: u64 = 1 << 20;

/// Everything a user does with a model, on the device as it is.
#[derive(Debug)]
struct Outcome {
    parts: usize,
    logits: Vec<f32>,
    loss: f32,
    guesses: Vec<f32>,
    log_prob: f64,
    text: String,
    embeddings: Vec<[f32; 2]>,
    resaved: Checkpoint,
    step_loss: f32,
    stepped: Checkpoint,
}

fn outcome(ckpt: &Checkpoint, data: &Dataset) -> Outcome {
    let device = Device::flex();
    let (model, tokenizer) = ckpt.load_model(&device).unwrap();
    let text = "To be, or not to be, that is the question.";
    let ids: Vec<u32> = tokenizer.encode(text).unwrap();
    let x = common::ids(&ids[..ids.len() - 1], &device);
    let y = common::ids(&ids[1..], &device);
    let logits = model.forward(x.clone(), None).unwrap();
    let (loss, guesses) = model.loss_on(x, None, y, true).unwrap();
    let greedy = SampleConfig {
        temperature: 0.0,
        max_tokens: 12,
        ..SampleConfig::default()
    };
    let mut trainer = ckpt.resume(data, &device).unwrap();
    let resaved = Checkpoint::from_trainer(&trainer).unwrap();
    let step_loss = trainer.step().unwrap().loss;
    Outcome {
        parts: model.token_embeddings().len(),
        logits: common::floats(logits),
        loss: loss.into_scalar(),
        guesses: guesses.unwrap().float().to_data().try_to_vec().unwrap(),
        log_prob: kiln::generate::score(&model, &tokenizer, text, None, &device)
            .unwrap()
            .log_prob,
        text: kiln::generate::generate(&model, &tokenizer, "O", &greedy, &device, |_| true)
            .unwrap(),
        embeddings: kiln::inspect::embeddings(&model, &tokenizer)
            .unwrap()
            .points,
        resaved,
        step_loss,
        stepped: Checkpoint::from_trainer(&trainer).unwrap(),
    }
}

/// Every value of safetensors `bytes`, tensors in name order.
fn values(bytes: &[u8]) -> Vec<f32> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut names = tensors.names();
    names.sort();
    names
        .into_iter()
        .flat_map(|n| {
            let view = tensors.tensor(n).unwrap();
            let data = view.data().chunks_exact(4);
            data.map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= tolerance, "{what}: max |Δ| {worst}");
}

#[test]
fn a_model_split_to_fit_small_bindings_does_what_the_whole_model_does() {
    // A tiny GPT on GPT-2's vocabulary, trained two steps while whole.
    let data = common::small_corpus(20_000);
    let tokenizer = common::gpt2_tokenizer();
    let p = common::tiny(tokenizer.vocab_size());
    let mut trainer = Trainer::new(p, tokenizer, &data, &Device::flex()).unwrap();
    trainer.step().unwrap();
    trainer.step().unwrap();
    let ckpt = Checkpoint::from_trainer(&trainer).unwrap();

    let whole = outcome(&ckpt, &data);
    kiln::memory::limit_bindings(LIMIT);
    let split = outcome(&ckpt, &data);

    assert_eq!((whole.parts, split.parts), (1, 7));
    assert_close("logits", &split.logits, &whole.logits, 1e-5);
    assert!((split.loss - whole.loss).abs() < 1e-5, "{split:?}");
    assert_eq!(split.guesses, whole.guesses);
    assert!((split.log_prob - whole.log_prob).abs() < 1e-3, "{split:?}");
    assert_eq!(split.text, whole.text);
    assert_eq!(split.embeddings.len(), 50257);
    let flat = |points: &[[f32; 2]]| points.iter().flatten().copied().collect::<Vec<_>>();
    assert_close(
        "embedding view",
        &flat(&split.embeddings),
        &flat(&whole.embeddings),
        1e-4,
    );
    // Saved whole, named as ever: a checkpoint does not depend on the device that wrote it.
    assert_eq!(split.resaved.weights, ckpt.weights);
    assert_eq!(split.resaved.optimizer, ckpt.optimizer);
    // Training goes on alike: the chunked loss and its gradients, AdamW on every part.
    assert!(
        (split.step_loss - whole.step_loss).abs() < 1e-5,
        "{split:?}"
    );
    assert_close(
        "weights after a step",
        &values(&split.stepped.weights),
        &values(&whole.stepped.weights),
        1e-5,
    );
    assert_close(
        "optimizer after a step",
        &values(split.stepped.optimizer.as_ref().unwrap()),
        &values(whole.stepped.optimizer.as_ref().unwrap()),
        1e-6,
    );
}
