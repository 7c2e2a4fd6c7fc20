//! Finetuning beyond plain text: LoRA adapters, instruction tuning with prompt-masked loss, and
//! classification.

mod common;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use kiln::checkpoint::Checkpoint;
use kiln::config::{LoraConfig, LoraTarget, Pooling, Task};
use kiln::data::Dataset;
use kiln::data::batcher::Rows;
use kiln::data::examples::{Examples, IGNORE, Layout};
use kiln::peft::PeftFiles;
use kiln::train::Trainer;
use kiln::{Gpt, Preset};
use safetensors::SafeTensors;

fn logits(ckpt: &Checkpoint, ids: &[i64]) -> Vec<f32> {
    let (model, _) = ckpt.load_model(&Device::flex()).unwrap();
    let x = Tensor::<2, Int>::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Device::flex(),
    );
    model
        .forward(x, None)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap()
}

#[test]
fn lora_trains_only_the_adapters_and_merges_to_the_same_logits() {
    let (base, data) = common::trained_tiny();
    let mut preset = Preset {
        model: base.meta.model.clone(),
        train: base.meta.train.clone(),
    };
    preset.model.lora = Some(LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::O, LoraTarget::Mlp],
    });
    let mut t = base.finetune(&data, preset, &Device::flex()).unwrap();
    let first = t.step().unwrap().loss;
    for _ in 0..20 {
        t.step().unwrap();
    }
    let trained = Checkpoint::from_trainer(&t).unwrap();
    assert!(t.evaluate().unwrap() < first, "the adapters learn");

    // Every base tensor is bit for bit what it was; every adapter B moved off zero.
    let before = SafeTensors::deserialize(&base.weights).unwrap();
    let after = SafeTensors::deserialize(&trained.weights).unwrap();
    for (name, view) in before.tensors() {
        assert_eq!(
            view.data(),
            after.tensor(&name).unwrap().data(),
            "{name} changed"
        );
    }
    let adapters: Vec<String> = after
        .names()
        .into_iter()
        .filter(|n| kiln::lora::is_adapter(n))
        .map(str::to_owned)
        .collect();
    // 2 blocks × (q and v of c_attn, c_proj, c_fc, mlp.c_proj) × (A, B)
    assert_eq!(adapters.len(), 2 * 5 * 2);
    for name in adapters.iter().filter(|n| n.ends_with(".b")) {
        assert!(
            after.tensor(name).unwrap().data().iter().any(|&b| b != 0),
            "{name} is still zero"
        );
    }

    // Merged into plain weights (and through transformers' format), the model computes the
    // same logits as the base with its adapters.
    let ids: Vec<i64> = (0..32).map(|i| (i * 7 % 60) as i64).collect();
    let with_adapters = logits(&trained, &ids);
    let merged = trained.merged(&Device::flex()).unwrap();
    assert!(merged.meta.model.lora.is_none());
    assert!(common::max_diff(&with_adapters, &logits(&merged, &ids)) < 1e-5);
    let imported = Checkpoint::from_gpt2(&merged.to_gpt2().unwrap()).unwrap();
    assert!(common::max_diff(&with_adapters, &logits(&imported, &ids)) < 1e-5);
    assert!(
        trained.to_gpt2().is_err(),
        "unmerged adapters do not export"
    );

    // The adapters alone, in PEFT's format, put back on the base: the same function (c_attn's
    // q and v went out as one adapter of rank 2·4, and come back at that rank).
    let shared = base.with_peft(&trained.to_peft().unwrap()).unwrap();
    assert_eq!(shared.meta.model.lora.as_ref().unwrap().rank, 8);
    assert!(common::max_diff(&with_adapters, &logits(&shared, &ids)) < 1e-5);
    assert!(base.to_peft().is_err());
}

/// Named f32 tensors, as safetensors bytes.
fn safetensors_of(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data);
        (name.clone(), view.unwrap())
    });
    safetensors::serialize(views, None).unwrap()
}

fn tensors_of(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let view = file.tensor(&name).unwrap();
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect()
}

/// A PEFT adapter for `modules` (path, in, out, rank), random factors: its files, and the base
/// with PEFT's definition of the change written into its weights by hand, `W + s·(lora_B·lora_A)ᵀ`
/// for GPT-2's Conv1D, `s = lora_alpha / r` (`/ √r` with rsLoRA; `alpha_pattern` per module).
fn peft_adapter(
    base: &Checkpoint,
    modules: &[(&str, usize, usize, usize)],
    config: serde_json::Value,
) -> (PeftFiles, Checkpoint) {
    let mut state = 7u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
            })
            .collect()
    };
    let rslora = config["use_rslora"] == true;
    let mut weights = tensors_of(&base.weights);
    let mut adapter = Vec::new();
    for &(module, d_in, d_out, r) in modules {
        let alpha = config["alpha_pattern"]
            .as_object()
            .and_then(|p| p.iter().find(|(k, _)| module.ends_with(k.as_str())))
            .map_or(config["lora_alpha"].as_f64().unwrap(), |(_, v)| {
                v.as_f64().unwrap()
            });
        let s = if rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        } as f32;
        let (a, b) = (random(r * d_in), random(d_out * r));
        let (_, shape, w) = weights
            .iter_mut()
            .find(|(name, _, _)| *name == format!("{module}.weight"))
            .unwrap();
        assert_eq!(shape, &[d_in, d_out]);
        for i in 0..d_in {
            for o in 0..d_out {
                w[i * d_out + o] += s * (0..r).map(|j| b[o * r + j] * a[j * d_in + i]).sum::<f32>();
            }
        }
        let name = format!("base_model.model.transformer.{module}");
        adapter.push((format!("{name}.lora_A.weight"), vec![r, d_in], a));
        adapter.push((format!("{name}.lora_B.weight"), vec![d_out, r], b));
    }
    let files = PeftFiles {
        weights: safetensors_of(&adapter),
        config: config.to_string(),
    };
    let by_hand = Checkpoint {
        weights: safetensors_of(&weights),
        ..base.clone()
    };
    (files, by_hand)
}

/// A PEFT adapter (ranks, alphas and rsLoRA varying by module) on a Kiln model computes what
/// PEFT defines; Kiln's export of the result, applied again, still does.
#[test]
fn a_peft_adapter_computes_what_peft_defines() {
    let (base, _) = common::trained_tiny();
    let (d, h) = (base.meta.model.n_embd, base.meta.model.mlp_hidden());
    let modules = [
        ("h.0.attn.c_attn", d, 3 * d, 2),
        ("h.1.attn.c_proj", d, d, 2),
        ("h.1.mlp.c_fc", d, h, 3),
    ];
    let ids: Vec<i64> = (0..32).map(|i| (i * 7 % 60) as i64).collect();
    for rslora in [false, true] {
        let config = serde_json::json!({
            "peft_type": "LORA", "r": 2, "lora_alpha": 4.0, "use_rslora": rslora,
            "rank_pattern": {"mlp.c_fc": 3}, "alpha_pattern": {"mlp.c_fc": 6.0},
            "target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": true, "bias": "none",
        });
        let (files, by_hand) = peft_adapter(&base, &modules, config);
        let want = logits(&by_hand, &ids);
        assert!(
            common::max_diff(&want, &logits(&base, &ids)) > 1e-2,
            "the adapter matters"
        );
        let applied = base.with_peft(&files).unwrap();
        let lora = applied.meta.model.lora.as_ref().unwrap();
        assert_eq!(lora.rank, 3);
        assert_eq!(
            lora.targets,
            [
                LoraTarget::Q,
                LoraTarget::K,
                LoraTarget::V,
                LoraTarget::O,
                LoraTarget::Mlp
            ]
        );
        assert!(common::max_diff(&want, &logits(&applied, &ids)) < 1e-5);
        let again = base.with_peft(&applied.to_peft().unwrap()).unwrap();
        assert!(common::max_diff(&want, &logits(&again, &ids)) < 1e-5);
    }
}

#[test]
fn what_kiln_cannot_apply_from_peft_is_a_clear_error() {
    let (base, _) = common::trained_tiny();
    let d = base.meta.model.n_embd;
    let config = serde_json::json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4.0});
    let (good, _) = peft_adapter(&base, &[("h.0.attn.c_attn", d, 3 * d, 2)], config.clone());
    let edited = |key: &str, value: serde_json::Value| {
        let mut c = config.clone();
        c[key] = value;
        PeftFiles {
            config: c.to_string(),
            ..good.clone()
        }
    };
    let mut misfit = tensors_of(&good.weights);
    misfit[0].1 = vec![2, 3 * d]; // lora_A [r, in] with the wrong `in`
    misfit[0].2 = vec![0.0; 2 * 3 * d];
    let cases = [
        (edited("peft_type", "IA3".into()), "\"IA3\" adapter"),
        (edited("use_dora", true.into()), "DoRA"),
        (edited("bias", "all".into()), "trains biases"),
        (
            edited("modules_to_save", serde_json::json!(["lm_head"])),
            "modules_to_save",
        ),
        (
            edited("r", serde_json::Value::Null),
            "no positive number \"r\"",
        ),
        (
            PeftFiles {
                config: "{".into(),
                ..good.clone()
            },
            "not JSON",
        ),
        (
            PeftFiles {
                weights: vec![1, 2, 3],
                ..good.clone()
            },
            "not safetensors",
        ),
        (
            PeftFiles {
                weights: safetensors_of(&misfit),
                ..good.clone()
            },
            "does not fit",
        ),
    ];
    for (files, expected) in &cases {
        let err = base.with_peft(files).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    let applied = base.with_peft(&good).unwrap();
    let err = applied.with_peft(&good).unwrap_err();
    assert!(err.to_string().contains("already has LoRA"), "{err}");
    // A module Kiln does not adapt, and one this model does not have.
    let renamed = |from: &str, to: &str| PeftFiles {
        weights: safetensors_of(
            &tensors_of(&good.weights)
                .into_iter()
                .map(|(n, s, v)| (n.replace(from, to), s, v))
                .collect::<Vec<_>>(),
        ),
        ..good.clone()
    };
    let err = base
        .with_peft(&renamed("h.0.attn.c_attn", "wte"))
        .unwrap_err();
    assert!(err.to_string().contains("Kiln adapts"), "{err}");
    let err = base.with_peft(&renamed("h.0.", "h.7.")).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not have (e.g. h.7.attn.c_attn)"),
        "{err}"
    );
}

/// A prompt/completion file whose prompts and completions use different characters.
fn instructions() -> Dataset {
    let jsonl: String = (0..30)
        .map(|i| {
            format!(
                "{{\"prompt\": \"abc{}\", \"completion\": \"xyz{}\"}}\n",
                i % 3,
                i % 5
            )
        })
        .collect();
    Dataset::from_files(&[("pairs.jsonl", jsonl)]).unwrap()
}

/// On the CPU (plain Burn ops) and on wgpu, where the loss is Kiln's cross-entropy kernel.
#[test]
fn sft_prompt_tokens_contribute_no_loss_and_no_gradient() {
    prompt_masking(Device::flex());
    let gpu = kiln::backend::open(kiln::backend::BackendKind::Wgpu).expect("lavapipe or a GPU");
    assert!(kiln::kernels::supported(&gpu), "the kernels run on wgpu");
    prompt_masking(gpu);
}

fn prompt_masking(device: Device) {
    let data = instructions();
    let tokenizer = common::char_tokenizer(&data);
    let p = common::tiny(tokenizer.vocab_size());
    assert!(p.model.kernels);
    let Dataset::Examples(examples @ Examples::Instructions { .. }) = &data else {
        panic!("expected instructions")
    };
    let rows = examples
        .rows(&tokenizer, p.model.block_size, false, Layout::Causal)
        .unwrap();
    let batch = Rows::batch(&rows.iter().take(4).collect::<Vec<_>>());
    let (b, t) = (batch.batch, batch.block);
    let host = device.clone();
    let device = device.autodiff();
    let model = Gpt::new(&p.model, 3, &device);
    let x = Tensor::<2, Int>::from_data(TensorData::new(batch.inputs.clone(), [b, t]), &device);
    let y = Tensor::<2, Int>::from_data(TensorData::new(batch.targets.clone(), [b, t]), &device);
    let v = tokenizer.vocab_size();

    // The logits as a leaf, so their gradient is visible.
    let raw: Vec<f32> = model
        .forward(x, None)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let leaf = |values: Vec<f32>| {
        Tensor::<3>::from_data(TensorData::new(values, [b, t, v]), &device).require_grad()
    };
    let logits = leaf(raw.clone());
    let loss = model.loss(logits.clone(), y.clone());
    let grads = loss.backward();
    let grad: Vec<f32> = logits
        .grad(&grads)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let loss: f32 = loss.into_scalar();

    // Reference: the mean over completion positions of -log p(target), on the host.
    let counted: Vec<usize> = (0..b * t).filter(|&i| batch.targets[i] != IGNORE).collect();
    assert!(!counted.is_empty() && counted.len() < b * t);
    let logp: Vec<f32> = log_softmax(
        Tensor::<2>::from_data(TensorData::new(raw.clone(), [b * t, v]), &host),
        1,
    )
    .try_into_vec_as::<f32>()
    .unwrap();
    let reference = counted
        .iter()
        .map(|&i| -logp[i * v + batch.targets[i] as usize])
        .sum::<f32>()
        / counted.len() as f32;
    assert!((loss - reference).abs() < 1e-5, "{loss} vs {reference}");

    for i in 0..b * t {
        let row = &grad[i * v..(i + 1) * v];
        if batch.targets[i] == IGNORE {
            assert!(
                row.iter().all(|&g| g == 0.0),
                "prompt/padding row {i} has a gradient"
            );
        } else {
            assert!(row.iter().any(|&g| g != 0.0), "completion row {i} has none");
        }
    }

    // Whatever the model predicts inside the prompt, the loss is the same.
    let mut scrambled = raw;
    for i in (0..b * t).filter(|&i| batch.targets[i] == IGNORE) {
        scrambled[i * v..(i + 1) * v]
            .iter_mut()
            .for_each(|l| *l = (i % 7) as f32 * 3.0);
    }
    let again: f32 = model.loss(leaf(scrambled), y).into_scalar();
    assert_eq!(again, loss);
}

#[test]
fn sft_model_learns_to_answer_and_stop() {
    let data = instructions();
    let tokenizer = common::char_tokenizer(&data);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.model.task = data.task(Pooling::Last);
    let mut t = Trainer::new(p, tokenizer.clone(), &data, &Device::flex()).unwrap();
    for _ in 0..150 {
        t.step().unwrap();
    }
    let cfg = kiln::SampleConfig {
        temperature: 0.0,
        max_tokens: 20,
        ..Default::default()
    };
    let model = t.model().valid();
    let answer =
        kiln::generate::generate(&model, &tokenizer, "abc1", &cfg, &Device::flex(), |_| true)
            .unwrap();
    // "xyz" then a digit, and generation stops at the end marker instead of running on.
    assert!(answer.starts_with("xyz") && answer.len() == 4, "{answer:?}");
}

/// ≥ 90% validation accuracy within 60 steps (`tiny`, batch 8), for both poolings, from scratch
/// and as a LoRA finetune of a text model (whose new head trains with the adapters).
#[test]
fn classifier_learns_separable_data() {
    let data = Dataset::from_files(&[("letters.csv", common::separable(300))]).unwrap();
    let tokenizer = common::char_tokenizer(&data);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.train.max_steps = 60;
    p.model.task = data.task(Pooling::Last);
    let mut t = Trainer::new(p.clone(), tokenizer.clone(), &data, &Device::flex()).unwrap();
    for _ in 0..60 {
        t.step().unwrap();
    }
    let report = t.classify_validation().unwrap().unwrap();
    assert_eq!(report.classes, vec!["early", "late"]);
    assert_eq!(report.examples, 30);
    assert!(report.accuracy >= 0.9, "{report:?}");
    assert!(report.macro_f1 >= 0.9, "{report:?}");
    let probs = kiln::generate::classify(&t.model().valid(), &tokenizer, "abcabc", &Device::flex())
        .unwrap();
    assert_eq!(probs[0].0, "early");

    // A text model of the same vocabulary, finetuned into a mean-pooling classifier with LoRA.
    let mut text_model = p.clone();
    text_model.model.task = Task::Text;
    let lm_data = common::text(data.text().into_owned());
    let lm = Trainer::new(text_model, tokenizer, &lm_data, &Device::flex()).unwrap();
    let ckpt = Checkpoint::from_trainer(&lm).unwrap();
    let mut preset = p;
    preset.model.task = data.task(Pooling::Mean);
    preset.model.lora = Some(LoraConfig {
        rank: 4,
        alpha: 16.0,
        targets: vec![LoraTarget::Q, LoraTarget::V],
    });
    let mut ft = ckpt.finetune(&data, preset, &Device::flex()).unwrap();
    for _ in 0..60 {
        ft.step().unwrap();
    }
    let report = ft.classify_validation().unwrap().unwrap();
    assert!(report.accuracy >= 0.9, "{report:?}");
    // A classifier does not generate, and it trains only on its own labels.
    let cfg = kiln::SampleConfig::default();
    let (model, tok) = Checkpoint::from_trainer(&ft)
        .unwrap()
        .load_model(&Device::flex())
        .unwrap();
    assert!(kiln::generate::generate(&model, &tok, "a", &cfg, &Device::flex(), |_| true).is_err());
    assert!(ft.set_data(&lm_data).is_err());
}

#[test]
fn class_report_counts_and_scores() {
    let classes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    // truth a a b b c, predicted a b b b a
    let r = kiln::train::ClassReport::new(classes, &[(0, 0), (0, 1), (1, 1), (1, 1), (2, 0)]);
    assert_eq!(
        r.confusion,
        vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
    );
    assert!((r.accuracy - 0.6).abs() < 1e-6);
    // F1: a 2·1/(2+2) = 0.5, b 2·2/(2+3) = 0.8, c 0 → mean 0.4333
    assert!((r.macro_f1 - 1.3 / 3.0).abs() < 1e-6, "{}", r.macro_f1);
}

/// A model too large to train in full on a device, but not with LoRA at batch 1, opens there as a
/// LoRA run, with a sentence saying so; one too large for either is refused.
#[test]
fn a_model_too_large_to_train_in_full_opens_as_a_lora_run() {
    use kiln::checkpoint::fitting_lora;
    use kiln::memory::{Room, need};
    let (base, data) = common::trained_tiny();
    let m = &base.meta;
    let room = |bytes: f64| Room {
        buffer: None,
        memory: Some((bytes, "wasm32's address space")),
    };
    let full = need(&m.model, Some(&m.train), false).total;
    assert!(
        fitting_lora(m, false, &room(full * 1.01))
            .unwrap()
            .is_none()
    );
    let (preset, note) = fitting_lora(m, false, &room(full * 0.99)).unwrap().unwrap();
    assert_eq!(preset.train.batch_size, 1);
    assert_eq!(
        preset.model.lora.as_ref().unwrap().targets,
        [LoraTarget::Q, LoraTarget::V]
    );
    assert!(
        note.contains("LoRA adapters (q, v; rank 8) at batch size 1"),
        "{note}"
    );
    assert!(note.contains("wasm32's address space"), "{note}");
    // That run starts from the same function (new adapters change nothing) and trains.
    let mut t = base.finetune(&data, preset, &Device::flex()).unwrap();
    let ids: Vec<i64> = (0..16).map(|i| (i * 5 % 60) as i64).collect();
    let before = Checkpoint::from_trainer(&t).unwrap();
    assert!(common::max_diff(&logits(&base, &ids), &logits(&before, &ids)) < 1e-6);
    assert!(t.step().unwrap().loss.is_finite());
    let err = fitting_lora(m, false, &room(1e3)).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}
