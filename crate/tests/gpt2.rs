//! Hugging Face GPT-2 interop against a committed fixture (`scripts/gpt2_fixture.py`: random
//! tiny GPT-2 weights under transformers' names, and a numpy reference forward pass's logits).

mod common;

use burn::prelude::*;
use kiln::checkpoint::Checkpoint;
use kiln::gpt2::Gpt2Files;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");

fn fixture() -> Gpt2Files {
    Gpt2Files::load_dir(std::path::Path::new(FIXTURE)).unwrap()
}

#[derive(serde::Deserialize)]
struct Expected {
    ids: Vec<Vec<i64>>,
    logits: Vec<Vec<Vec<f64>>>,
}

fn logits(ckpt: &Checkpoint, ids: &[Vec<i64>]) -> Vec<f32> {
    let device = Device::flex();
    let (model, _) = ckpt.load_model(&device).unwrap();
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.concat();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, t]), &device);
    model
        .forward(ids, None)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Kiln's import of the fixture gives the reference logits to 1e-4.
#[test]
fn imported_gpt2_matches_reference_logits() {
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap())
            .unwrap();
    let ckpt = Checkpoint::from_gpt2(&fixture()).unwrap();
    // The fixture's tokenizer.json is GPT-2's byte-level BPE (written by the script, not Kiln).
    let (_, tokenizer) = ckpt.load_model(&Device::flex()).unwrap();
    assert_eq!(
        tokenizer.encode("Kiln é").unwrap(),
        b"Kiln \xc3\xa9".map(u32::from)
    );
    let got = logits(&ckpt, &expected.ids);
    let want: Vec<f64> = expected.logits.concat().concat();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    eprintln!("parity: max |Δ logit| = {worst:e}");
    assert!(worst < 1e-4, "max |Δ logit| = {worst:e}");
}

/// transformers' files → Kiln → transformers' files: the same tensors, byte for byte.
#[test]
fn export_of_an_import_round_trips_exactly() {
    let files = fixture();
    let again = Checkpoint::from_gpt2(&files).unwrap().to_gpt2().unwrap();
    let original = safetensors::SafeTensors::deserialize(&files.weights).unwrap();
    let exported = safetensors::SafeTensors::deserialize(&again.weights).unwrap();
    let mut names: Vec<String> = original.names().into_iter().map(String::from).collect();
    names.sort();
    let mut out_names: Vec<String> = exported.names().into_iter().map(String::from).collect();
    out_names.sort();
    assert_eq!(names, out_names);
    for name in &names {
        let (a, b) = (
            original.tensor(name).unwrap(),
            exported.tensor(name).unwrap(),
        );
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(a.data(), b.data(), "{name}");
    }
    assert_eq!(again.tokenizer, files.tokenizer);
}

/// A Kiln model without biases (the presets) exports zero biases: after export and import it
/// computes the same logits.
#[test]
fn kiln_model_exports_and_imports_with_the_same_logits() {
    let corpus = common::small_corpus(5_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let p = common::tiny(tokenizer.vocab_size());
    assert!(!p.model.bias);
    let trainer = kiln::train::Trainer::new(p, tokenizer, &corpus, &Device::flex()).unwrap();
    let ckpt = Checkpoint::from_trainer(&trainer).unwrap();
    let imported = Checkpoint::from_gpt2(&ckpt.to_gpt2().unwrap()).unwrap();
    assert!(imported.meta.model.bias);
    let ids = vec![vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9, 10, 11, 12]];
    assert_eq!(logits(&imported, &ids), logits(&ckpt, &ids));
}

#[test]
fn what_gpt2_cannot_hold_is_a_clear_error() {
    let corpus = common::small_corpus(5_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.model.position = kiln::config::Position::Rope;
    let trainer = kiln::train::Trainer::new(p, tokenizer, &corpus, &Device::flex()).unwrap();
    let err = Checkpoint::from_trainer(&trainer)
        .unwrap()
        .to_gpt2()
        .unwrap_err();
    assert!(err.to_string().contains("learned positions"), "{err}");

    let mut files = fixture();
    files.config = files.config.replace("gelu_new", "relu");
    let err = Checkpoint::from_gpt2(&files).unwrap_err();
    assert!(err.to_string().contains("relu"), "{err}");

    let mut files = fixture();
    files.weights.truncate(100);
    let err = Checkpoint::from_gpt2(&files).unwrap_err();
    assert!(err.to_string().contains("not safetensors"), "{err}");

    // A config for a huge model is refused before anything of that size is allocated.
    for (positions, expected) in [
        (
            "1000000000",
            "block_size is 1000000000; Kiln allows at most",
        ),
        ("100000", "wpe.weight has shape"),
    ] {
        let mut files = fixture();
        let n_positions = format!("\"n_positions\": {positions}");
        files.config = files.config.replace("\"n_positions\": 16", &n_positions);
        let err = Checkpoint::from_gpt2(&files).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }

    let mut files = fixture();
    files.config = "{\"n_embd\": 32}".into();
    let err = Checkpoint::from_gpt2(&files).unwrap_err();
    assert!(err.to_string().contains("has no number"), "{err}");
}
