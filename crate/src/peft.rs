//! LoRA adapters in PEFT's format (`adapter_model.safetensors` + `adapter_config.json`):
//! `peft.PeftModel.from_pretrained` applies Kiln's to the GPT-2 export of the base model, and
//! Kiln applies PEFT's LoRA adapters for GPT-2 to a Kiln model.
//!
//! Kiln's adapter on a weight `W` `[in, out]` is `W + s·A·B` (`A` `[in, r]`, `B` `[r, out]`,
//! `s = alpha / r`). PEFT's on GPT-2's Conv1D is `W + s·(lora_B·lora_A)ᵀ` (`lora_A` `[r, in]`,
//! `lora_B` `[out, r]`), so `lora_A = Aᵀ` and `lora_B = Bᵀ`. Kiln adapts q, k and v of
//! `attn.c_attn` separately, which PEFT cannot say: they go out as one adapter of rank m·r on
//! the whole weight (their `A`s stacked, their `B`s on the block diagonal, zeros for a third left
//! alone), with `rank_pattern` and `alpha_pattern` keeping the scale. Coming back, each third of
//! a PEFT `c_attn` adapter becomes Kiln's adapter of that third (all three share `lora_A`), every
//! factor is zero-padded to the largest rank, and each module's scale is folded into its `B`:
//! the function is the same, though Kiln's own adapters come back with rank m·r.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::checkpoint::{Checkpoint, bad, f32s};
use crate::config::{LoraConfig, LoraTarget};
use crate::error::Result;
use crate::hf::{Tensors, parse, serialize};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// A module's path in a saved PEFT adapter is `PeftModel.base_model.model`'s: GPT-2's.
const PREFIX: &str = "base_model.model.transformer.";

/// A PEFT LoRA adapter's two files.
#[derive(Clone, Debug)]
pub struct PeftFiles {
    /// `adapter_model.safetensors`.
    pub weights: Vec<u8>,
    /// `adapter_config.json` (PEFT's `LoraConfig`).
    pub config: String,
}

#[cfg(not(target_arch = "wasm32"))]
impl PeftFiles {
    /// Writes the files into `dir` (`PeftModel.from_pretrained(base, dir)` reads it).
    pub fn save_dir(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::checkpoint::write_atomic(dir, WEIGHTS_FILE, &self.weights)?;
        crate::checkpoint::write_atomic(dir, CONFIG_FILE, self.config.as_bytes())
    }

    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        use crate::checkpoint::read_file;
        let config = String::from_utf8(read_file(dir, CONFIG_FILE)?)
            .map_err(|_| bad(format!("{CONFIG_FILE} is not UTF-8 text")))?;
        Ok(Self {
            weights: read_file(dir, WEIGHTS_FILE)?,
            config,
        })
    }
}

/// The weights of a Kiln model's adapters: `(weight, slice)` → `(A, B)`.
fn adapter_name(weight: &str, part: usize, factor: &str) -> String {
    format!("{weight}.lora.parts.{part}.{factor}")
}

/// `module` without its block: `h.3.attn.c_attn` → `attn.c_attn` (PEFT's target names).
fn kind(module: &str) -> &str {
    module
        .strip_prefix("h.")
        .and_then(|rest| rest.split_once('.'))
        .map_or(module, |(_, kind)| kind)
}

/// Kiln's targets that cover the weights of `kind`.
fn targets_of(kind: &str) -> Option<&'static [LoraTarget]> {
    match kind {
        "attn.c_attn" => Some(&[LoraTarget::Q, LoraTarget::K, LoraTarget::V]),
        "attn.c_proj" => Some(&[LoraTarget::O]),
        "mlp.c_fc" | "mlp.c_gate" | "mlp.c_proj" => Some(&[LoraTarget::Mlp]),
        _ => None,
    }
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One PEFT module's factors: `lora_A` `[r, in]`, `lora_B` `[out, r]` and its scale.
struct Factors {
    rank: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    scale: f64,
}

impl Checkpoint {
    /// The LoRA adapters as PEFT files, for the GPT-2 export of the model they were trained on.
    pub fn to_peft(&self) -> Result<PeftFiles> {
        let lora = self.meta.model.lora.as_ref().ok_or_else(|| {
            bad("this model has no LoRA adapters; finetune it with LoRA to get some")
        })?;
        let stored = parse(&self.weights, "the checkpoint's weights")?;
        let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = stored
                .tensor(name)
                .map_err(|_| bad(format!("the adapter tensor {name} is missing")))?;
            Ok((view.shape().to_vec(), f32s(name, &view).map_err(bad)?))
        };
        let mut tensors = Tensors::new();
        let mut modules = std::collections::BTreeSet::new();
        // Modules with more than one adapted third: how many.
        let mut stacked = BTreeMap::new();
        for weight in stored.names() {
            let Some(parts) = crate::lora::slices(weight, &lora.targets) else {
                continue;
            };
            let Some(module) = weight.strip_suffix(".weight") else {
                continue;
            };
            let (shape, _) = read(weight)?;
            let &[d_in, d_out] = shape.as_slice() else {
                return Err(bad(format!("{weight} has shape {shape:?}, not a matrix")));
            };
            let (r, cols) = (lora.rank, d_out / parts.len());
            // Every factor has the shape the config gives before anything of that size is made.
            let on: Vec<usize> = (0..parts.len()).filter(|&i| parts[i]).collect();
            let mut factors = Vec::new();
            for &i in &on {
                for (factor, want) in [("a", [d_in, r]), ("b", [r, cols])] {
                    let name = adapter_name(weight, i, factor);
                    let (got, values) = read(&name)?;
                    if got != want {
                        return Err(bad(format!("{name} has shape {got:?}, not {want:?}")));
                    }
                    factors.push(values);
                }
            }
            let big = on.len() * r;
            let mut a_out = vec![0f32; big * d_in];
            let mut b_out = vec![0f32; d_out * big];
            for (k, (&i, pair)) in on.iter().zip(factors.chunks_exact(2)).enumerate() {
                let (a, b) = (&pair[0], &pair[1]); // [in, r], [r, cols]
                for j in 0..r {
                    for c in 0..d_in {
                        a_out[(k * r + j) * d_in + c] = a[c * r + j];
                    }
                    for col in 0..cols {
                        b_out[(i * cols + col) * big + k * r + j] = b[j * cols + col];
                    }
                }
            }
            let name = format!("{PREFIX}{module}");
            tensors.insert(
                format!("{name}.lora_A.weight"),
                (vec![big, d_in], bytes(&a_out)),
            );
            tensors.insert(
                format!("{name}.lora_B.weight"),
                (vec![d_out, big], bytes(&b_out)),
            );
            modules.insert(kind(module).to_owned());
            if on.len() > 1 {
                stacked.insert(kind(module).to_owned(), on.len());
            }
        }
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": null,
            "r": lora.rank,
            "lora_alpha": lora.alpha,
            "lora_dropout": 0.0,
            "target_modules": modules,
            // GPT-2's Conv1D stores weights as [in, out].
            "fan_in_fan_out": true,
            "bias": "none",
            "rank_pattern": stacked.iter().map(|(k, m)| (k, m * lora.rank)).collect::<BTreeMap<_, _>>(),
            "alpha_pattern": stacked.iter().map(|(k, m)| (k, *m as f64 * lora.alpha)).collect::<BTreeMap<_, _>>(),
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "inference_mode": true,
        });
        Ok(PeftFiles {
            weights: serialize(&tensors)?,
            config: serde_json::to_string_pretty(&config).map_err(|e| bad(e.to_string()))?,
        })
    }

    /// This (adapter-free) model with a PEFT LoRA adapter on it: the same function as PEFT's
    /// model, ready to generate, score or train on. What Kiln's adapters cannot express (DoRA,
    /// trained biases, other modules) is refused by name.
    pub fn with_peft(&self, files: &PeftFiles) -> Result<Self> {
        if self.meta.model.lora.is_some() {
            return Err(bad("this model already has LoRA adapters"));
        }
        let config: Value = serde_json::from_str(&files.config)
            .map_err(|e| bad(format!("{CONFIG_FILE} is not JSON: {e}")))?;
        let peft_type = config["peft_type"].as_str().unwrap_or("");
        if peft_type != "LORA" {
            return Err(bad(format!(
                "a \"{peft_type}\" adapter: Kiln applies LoRA adapters (peft_type \"LORA\")"
            )));
        }
        for (key, what) in [
            ("use_dora", "DoRA"),
            ("modules_to_save", "modules_to_save (whole trained modules)"),
        ] {
            if !matches!(config[key], Value::Null | Value::Bool(false)) && config[key] != json!([])
            {
                return Err(bad(format!(
                    "this adapter uses {what}, which Kiln does not"
                )));
            }
        }
        if !matches!(config["bias"].as_str(), None | Some("none")) {
            return Err(bad(
                "this adapter trains biases (bias != \"none\"), which Kiln does not",
            ));
        }
        let number = |key: &str| {
            config[key]
                .as_f64()
                .filter(|v| *v > 0.0)
                .ok_or_else(|| bad(format!("{CONFIG_FILE} has no positive number \"{key}\"")))
        };
        let (r, alpha) = (number("r")?, number("lora_alpha")?);
        let rslora = config["use_rslora"].as_bool() == Some(true);
        let scale = |rank: f64, alpha: f64| {
            if rslora {
                alpha / rank.sqrt()
            } else {
                alpha / rank
            }
        };
        // alpha_pattern keys name modules by a suffix (PEFT matches `(.*\.)?key$`).
        let alpha_of = |module: &str| {
            config["alpha_pattern"]
                .as_object()
                .and_then(|p| {
                    p.iter()
                        .find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}")))
                })
                .and_then(|(_, v)| v.as_f64())
                .unwrap_or(alpha)
        };

        let adapter = parse(&files.weights, WEIGHTS_FILE)?;
        let mut found = BTreeMap::<String, Factors>::new();
        for name in adapter.names() {
            let module = name
                .strip_prefix(PREFIX)
                .and_then(|m| m.strip_suffix(".lora_A.weight"));
            let Some(module) = module else {
                if name
                    .strip_prefix(PREFIX)
                    .is_some_and(|m| m.ends_with(".lora_B.weight"))
                {
                    continue;
                }
                return Err(bad(format!(
                    "{WEIGHTS_FILE} holds {name}, which is not a LoRA factor of a GPT-2 module"
                )));
            };
            let b_name = format!("{PREFIX}{module}.lora_B.weight");
            let (a, b) = (adapter.tensor(name).ok(), adapter.tensor(&b_name).ok());
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!("{module} has lora_A but no lora_B")));
            };
            if a.shape().len() != 2 || b.shape().len() != 2 || a.shape()[0] != b.shape()[1] {
                return Err(bad(format!(
                    "{module}: lora_A {:?} and lora_B {:?} are not [r, in] and [out, r]",
                    a.shape(),
                    b.shape()
                )));
            }
            let rank = a.shape()[0];
            found.insert(
                module.to_owned(),
                Factors {
                    rank,
                    a: f32s(name, &a).map_err(bad)?,
                    b: f32s(&b_name, &b).map_err(bad)?,
                    scale: scale(rank as f64, alpha_of(module)),
                },
            );
        }
        let mut targets: Vec<LoraTarget> = Vec::new();
        for module in found.keys() {
            let covered = targets_of(kind(module)).ok_or_else(|| {
                bad(format!(
                    "the adapter changes {module}; Kiln adapts attn.c_attn, attn.c_proj and the MLP"
                ))
            })?;
            targets.extend(covered);
        }
        targets.sort_by_key(|t| *t as u8); // q, k, v, o, mlp: the order Kiln lists them
        targets.dedup();
        let rank = found
            .values()
            .map(|f| f.rank)
            .max()
            .ok_or_else(|| bad(format!("{WEIGHTS_FILE} holds no LoRA factors")))?;
        // The adapter's own scale for a module of rank r, on Kiln's largest rank.
        let lora = LoraConfig {
            rank,
            alpha: scale(r, alpha) * rank as f64,
            targets,
        };

        let base = parse(&self.weights, "the checkpoint's weights")?;
        let mut tensors = Tensors::new();
        let mut used = 0;
        for (weight, view) in base.tensors() {
            tensors.insert(
                weight.clone(),
                (view.shape().to_vec(), view.data().to_vec()),
            );
            let (Some(parts), Some(module)) = (
                crate::lora::slices(&weight, &lora.targets),
                weight.strip_suffix(".weight"),
            ) else {
                continue;
            };
            let &[d_in, d_out] = view.shape() else {
                return Err(bad(format!(
                    "{weight} has shape {:?}, not a matrix",
                    view.shape()
                )));
            };
            let cols = d_out / parts.len();
            let factors = found.get(module);
            if let Some(f) = factors {
                used += 1;
                if f.a.len() != f.rank * d_in || f.b.len() != d_out * f.rank {
                    return Err(bad(format!(
                        "the adapter of {module} does not fit its weight [{d_in}, {d_out}]"
                    )));
                }
            }
            for (i, on) in parts.iter().enumerate() {
                if !on {
                    continue;
                }
                let mut a = vec![0f32; d_in * rank];
                let mut b = vec![0f32; rank * cols];
                if let Some(f) = factors {
                    let fold = (f.scale / lora.scale()) as f32;
                    for j in 0..f.rank {
                        for c in 0..d_in {
                            a[c * rank + j] = f.a[j * d_in + c];
                        }
                        for col in 0..cols {
                            b[j * cols + col] = fold * f.b[(i * cols + col) * f.rank + j];
                        }
                    }
                }
                tensors.insert(adapter_name(&weight, i, "a"), (vec![d_in, rank], bytes(&a)));
                tensors.insert(adapter_name(&weight, i, "b"), (vec![rank, cols], bytes(&b)));
            }
        }
        if used != found.len() {
            let missing = found
                .keys()
                .find(|m| base.tensor(&format!("{m}.weight")).is_err())
                .map_or_else(String::new, |m| format!(" (e.g. {m})"));
            return Err(bad(format!(
                "the adapter changes modules this model does not have{missing}"
            )));
        }
        let mut meta = self.meta.clone();
        meta.model.lora = Some(lora);
        Ok(Self {
            meta,
            weights: serialize(&tensors)?,
            optimizer: None,
        })
    }
}
