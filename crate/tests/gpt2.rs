//! Hugging Face GPT-2 interop against a committed fixture written by transformers itself
//! (`scripts/gpt2_fixture.py`, run by `cargo xtask interop`): a random tiny `GPT2LMHeadModel`
//! with GPT-2's real byte-level BPE cut to its first 255 merges, and the logits transformers
//! computes for two 80-token sentences.

mod common;

use burn::prelude::*;
use kiln::backend::{self, BackendKind};
use kiln::checkpoint::Checkpoint;
use kiln::hf::HfFiles;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");
/// The parity tolerance the issue sets: max |Δ logit| ≤ 1e-4.
const TOLERANCE: f64 = 1e-4;

fn fixture() -> HfFiles {
    HfFiles::load_dir(std::path::Path::new(FIXTURE)).unwrap()
}

#[derive(serde::Deserialize)]
struct Expected {
    texts: Vec<String>,
    exact_gelu_max_delta: f64,
    gpt2_text: String,
    gpt2_ids: Vec<u32>,
}

fn expected() -> Expected {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap())
        .unwrap()
}

/// transformers' token ids `[B, T]` and logits (flattened `[B, T, V]`).
fn reference() -> (Vec<Vec<i64>>, Vec<f32>) {
    let bytes = std::fs::read(format!("{FIXTURE}/logits.safetensors")).unwrap();
    (
        common::fixture_rows(&bytes, "ids"),
        common::fixture_floats(&bytes, "logits"),
    )
}

/// The wgpu tests here multiply by Kiln's register-blocked kernel, the one the tuner picks on
/// lavapipe (docs/kernels.md). Burn's matmul would autotune at every new shape, and at GPT-2's
/// vocabulary one of its candidates takes seconds a run: minutes per test. The choice is the
/// process's, so every wgpu test of this file makes it.
fn kiln_matmul() {
    kiln::kernels::matmul::choose(kiln::kernels::matmul::Variant::Registers);
}

fn logits(ckpt: &Checkpoint, ids: &[Vec<i64>]) -> Vec<f32> {
    common::logits_of(ckpt, ids, &Device::flex())
}

/// Kiln's import of the fixture gives transformers' logits to 1e-4, on the CPU and on wgpu
/// (where attention is Kiln's fused kernel, and 80 tokens span two of its 64-row tiles); and
/// Kiln's tokenizer cuts the sentences into transformers' ids.
#[test]
fn imported_gpt2_matches_transformers_logits() {
    let expected = expected();
    let (ids, want) = reference();
    let ckpt = Checkpoint::from_gpt2(&fixture()).unwrap();
    let (_, tokenizer) = ckpt.load_model(&Device::flex()).unwrap();
    for (text, ids) in expected.texts.iter().zip(&ids) {
        let got = tokenizer.encode(text).unwrap();
        let got: Vec<i64> = got[..ids.len()].iter().map(|&i| i64::from(i)).collect();
        assert_eq!(&got, ids, "{text}");
    }
    assert!(ids.concat().iter().any(|&i| i >= 256), "merges are used");
    assert!(ids[0].len() > 64, "longer than one attention tile");

    let gpu = backend::open(BackendKind::Wgpu).expect("a wgpu adapter (lavapipe without a GPU)");
    assert!(kiln::kernels::supported(&gpu), "the kernels run on wgpu");
    kiln_matmul();
    for (name, device) in [("cpu", Device::flex()), ("wgpu", gpu)] {
        let worst = f64::from(common::max_diff(
            &common::logits_of(&ckpt, &ids, &device),
            &want,
        ));
        eprintln!("parity on {name}: max |Δ logit| = {worst:e}");
        assert!(worst <= TOLERANCE, "{name}: max |Δ logit| = {worst:e}");
    }
    // GPT-2's GELU is the tanh approximation; exact GELU moves these logits by far more than
    // the tolerance, so the comparison above tells the two apart.
    assert!(
        expected.exact_gelu_max_delta > 10.0 * TOLERANCE,
        "{}",
        expected.exact_gelu_max_delta
    );
    let mut exact = fixture();
    exact.config = exact.config.replace("gelu_new", "gelu");
    let err = Checkpoint::from_gpt2(&exact).unwrap_err();
    assert!(err.to_string().contains("tanh approximation"), "{err}");
}

/// GPT-2's whole tokenizer, built by `tokenizers` from OpenAI's own files, gives GPT-2's ids:
/// the fixture's come from gpt-3-encoder's port of OpenAI's encoder.
#[test]
fn gpt2_tokenizer_gives_gpt2_ids() {
    let tokenizer = common::gpt2_tokenizer();
    assert_eq!(tokenizer.vocab_size(), 50257);
    assert_eq!(tokenizer.encode("Hello world").unwrap(), [15496, 995]);
    let expected = expected();
    assert_eq!(
        tokenizer.encode(&expected.gpt2_text).unwrap(),
        expected.gpt2_ids
    );
    assert_eq!(
        tokenizer.decode(&expected.gpt2_ids).unwrap(),
        expected.gpt2_text
    );
}

/// transformers' files → Kiln → transformers' files: the same tensors, byte for byte.
#[test]
fn export_of_an_import_round_trips_exactly() {
    let files = fixture();
    let again = Checkpoint::from_gpt2(&files).unwrap().to_gpt2().unwrap();
    let original = safetensors::SafeTensors::deserialize(&files.weights).unwrap();
    let exported = safetensors::SafeTensors::deserialize(&again.weights).unwrap();
    let names = common::sorted_names(&files.weights);
    assert_eq!(names, common::sorted_names(&again.weights));
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

    for (key, value) in [
        ("scale_attn_weights", false),
        ("scale_attn_by_inverse_layer_idx", true),
    ] {
        let mut files = fixture();
        let mut config: serde_json::Value = serde_json::from_str(&files.config).unwrap();
        config[key] = value.into();
        files.config = config.to_string();
        let err = Checkpoint::from_gpt2(&files).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }

    let mut files = fixture();
    files.weights.truncate(100);
    let err = Checkpoint::from_gpt2(&files).unwrap_err();
    assert!(err.to_string().contains("not safetensors"), "{err}");

    // A config for a huge model is refused before anything of that size is allocated.
    for (positions, expected) in [
        (
            1_000_000_000,
            "block_size is 1000000000; Kiln allows at most",
        ),
        (100_000, "wpe.weight has shape"),
    ] {
        let mut files = fixture();
        let mut config: serde_json::Value = serde_json::from_str(&files.config).unwrap();
        config["n_positions"] = positions.into();
        files.config = config.to_string();
        let err = Checkpoint::from_gpt2(&files).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }

    let mut files = fixture();
    files.config = "{\"n_embd\": 32}".into();
    let err = Checkpoint::from_gpt2(&files).unwrap_err();
    assert!(err.to_string().contains("has no number"), "{err}");
}

/// GPT-2's vocabulary on a device whose bindings hold neither a 135 MB token embedding (672
/// wide; GPT-2's 768 make 154 MB) nor the logits of 704 positions (141 MB): lavapipe allows
/// 134 MB, and WebGPU guarantees only 128 MiB. The model then holds the embedding in parts, and
/// the loss forms the logits in chunks. Either way the loss is the CPU's. (The split's gradients,
/// training and checkpoints are checked against the whole model in `split.rs`.)
#[test]
fn gpt2_s_vocabulary_runs_where_one_binding_cannot_hold_it() {
    let gpu = backend::open(BackendKind::Wgpu).expect("a wgpu adapter (lavapipe without a GPU)");
    kiln_matmul();
    let limit = kiln::memory::binding_limit(&gpu).unwrap();
    assert!(
        limit < 50257 * 704 * 4,
        "this adapter binds {limit} bytes: the test needs one that cannot bind the embedding"
    );
    let tokenizer = common::gpt2_tokenizer();
    let text = common::shakespeare();
    let ids: Vec<i64> = tokenizer.encode(&text[..4000]).unwrap()[..705]
        .iter()
        .map(|&i| i as i64)
        .collect();
    // (positions, n_embd): the embedding too large to bind, then the logits.
    for (t, n_embd) in [(8, 672), (704, 16)] {
        let mut p = common::tiny(tokenizer.vocab_size());
        (p.model.block_size, p.model.n_head, p.model.n_embd) = (t, 4, n_embd);
        let ckpt = Checkpoint::init(p, &tokenizer).unwrap();
        let mut losses: Vec<f32> = Vec::new();
        for device in [Device::flex(), gpu.clone()] {
            let (model, _) = ckpt.load_model(&device).unwrap();
            let rows: Vec<usize> = model
                .token_embeddings()
                .iter()
                .map(|w| w.dims()[0])
                .collect();
            assert_eq!(rows.iter().sum::<usize>(), 50257);
            if device == gpu {
                assert!(rows.iter().all(|r| r * n_embd * 4 <= limit), "{rows:?}");
                assert_eq!(rows.len() > 1, 50257 * n_embd * 4 > limit, "{rows:?}");
            }
            let tokens = |range: std::ops::Range<usize>| {
                Tensor::<2, Int>::from_data(TensorData::new(ids[range].to_vec(), [1, t]), &device)
            };
            let (loss, _) = model
                .loss_on(tokens(0..t), None, tokens(1..t + 1), false)
                .unwrap();
            losses.push(loss.into_scalar());
        }
        let [cpu, gpu] = losses[..] else {
            unreachable!()
        };
        // Random weights predict about uniformly: ln(50257) = 10.8.
        assert!((cpu - 10.8).abs() < 0.5, "{losses:?}");
        assert!((gpu - cpu).abs() < 1e-4, "n_embd {n_embd}: {losses:?}");
    }
}
