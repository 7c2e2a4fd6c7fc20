//! What a model needs from its device, estimated from its config before anything is allocated.
//! A model too large for the GPU's buffers, or for the memory at hand, is refused with a sentence
//! that gives required against available, instead of failing inside an allocation (a lost GPU
//! device or an aborted worker, with the user's run gone).

use std::sync::atomic::{AtomicU64, Ordering};

use burn::prelude::*;

use crate::config::{Arch, ModelConfig, Task, TrainConfig};
use crate::error::{Error, Result};
use crate::model::Gpt;

/// Bytes per f32: the estimate assumes f32 everywhere (mixed precision needs less).
const F32: f64 = 4.0;

/// What one use of a model holds on its device at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Need {
    /// The largest single tensor: what it is, and its size in bytes.
    pub largest: (String, f64),
    /// Everything at once, in bytes.
    pub total: f64,
}

/// Training (with AdamW) at `train`'s batch size, or `None`: generation and scoring.
pub fn need(c: &ModelConfig, train: Option<&TrainConfig>, fused_attention: bool) -> Need {
    let (v, t, e, h) = (
        c.vocab_size as f64,
        c.block_size as f64,
        c.n_embd as f64,
        c.mlp_hidden() as f64,
    );
    let all = Gpt::num_params_of(c) as f64;
    // The token embedding (and a tied head) is held in row parts that fit the device's
    // bindings, and the loss forms the logits a chunk of rows at a time: one row of each is
    // all that must fit. An untied head is one tensor.
    let mut largest = vec![
        ("a row of the token embedding".to_string(), e),
        ("the position embedding".to_string(), t * e),
        ("an attention weight".to_string(), e * 3.0 * e),
        ("an MLP weight".to_string(), e * h),
    ];
    if !c.tie_weights {
        largest.push(("the output head".to_string(), e * v));
    }
    let Some(train) = train else {
        return Need::from(largest, all * F32);
    };
    // Weights, and for each trained one its gradient and AdamW's two moments.
    let trained = match c.lora {
        Some(_) => crate::lora::num_params_of(c) as f64,
        None => all,
    };
    let params = (all + 3.0 * trained) * F32;
    // Activations kept for the backward pass, per position of one micro-batch: about eight
    // n_embd-wide tensors and two hidden-wide ones per block, plus the attention weights where
    // the fused kernel does not keep only their log-sum-exp; the logits twice (and their
    // gradient) at the head.
    let rows = train.batch_size as f64 * t;
    let heads = c.n_head as f64;
    let attention = if fused_attention {
        heads
    } else {
        2.0 * heads * t
    };
    let per_block = match c.arch {
        Arch::Gpt | Arch::Bert => 8.0 * e + 3.0 * h + attention,
        // Per step and layer: four gates before and after their activation, the cell, its
        // tanh, the hidden state and the input.
        Arch::Lstm => 12.0 * e,
    };
    let out = match &c.task {
        Task::Classify { classes, .. } => classes.len() as f64 / t,
        _ => v,
    };
    let activations = rows * (c.n_layer as f64 * per_block + 2.0 * e + 2.0 * out) * F32;
    largest.push(("a row of the logits".to_string(), out));
    largest.push(("an MLP activation".to_string(), rows * h));
    if !fused_attention {
        largest.push(("the attention weights".to_string(), rows * heads * t));
    }
    Need::from(largest, params + activations)
}

impl Need {
    fn from(tensors: Vec<(String, f64)>, total: f64) -> Self {
        let largest = tensors
            .into_iter()
            .map(|(what, n)| (what, n * F32))
            .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        Self { largest, total }
    }
}

/// What a device offers.
#[derive(Clone, Debug, PartialEq)]
pub struct Room {
    /// The largest buffer it can allocate and bind, in bytes, and the limit's name.
    pub buffer: Option<(f64, &'static str)>,
    /// All the memory a run may use, in bytes, and where the figure comes from.
    pub memory: Option<(f64, &'static str)>,
}

/// The browser's memory (`navigator.deviceMemory`, in bytes), which the page supplies because
/// WebGPU tells a page nothing of its GPU's memory; 0 when unknown.
static BROWSER_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Sets the memory a WebGPU device is assumed to have (the page's device memory).
pub fn set_browser_memory(bytes: u64) {
    BROWSER_MEMORY.store(bytes, Ordering::Relaxed);
}

/// A binding limit (bytes; 0: none) below the device's own, set by [`limit_bindings`].
static BINDING_CAP: AtomicU64 = AtomicU64::new(0);

/// Treats every device as binding at most `bytes` per tensor, as an adapter with WebGPU's
/// guaranteed 128 MiB does: models then split what is larger, so a model can be checked to run
/// on any WebGPU adapter from a device that allows more, the CPU included.
pub fn limit_bindings(bytes: u64) {
    BINDING_CAP.store(bytes, Ordering::Relaxed);
}

/// The largest tensor `device` can hold in one binding, in bytes; `None` when it states none.
pub fn binding_limit(device: &Device) -> Option<usize> {
    Room::of(device).buffer.map(|(bytes, _)| bytes as usize)
}

impl Room {
    pub fn of(device: &Device) -> Self {
        let mut room = Self::of_device(device);
        let cap = BINDING_CAP.load(Ordering::Relaxed);
        if cap > 0 && room.buffer.is_none_or(|(max, _)| (cap as f64) < max) {
            room.buffer = Some((cap as f64, "the binding limit set by limit_bindings"));
        }
        room
    }

    fn of_device(device: &Device) -> Self {
        match device.clone().inner().as_dispatch() {
            burn::backend::DispatchDevice::Cube(cube) => {
                let client = cube.client();
                let memory = &client.properties().memory;
                let browser = BROWSER_MEMORY.load(Ordering::Relaxed);
                Self {
                    buffer: Some((
                        memory.max_page_size as f64,
                        "maxStorageBufferBindingSize / maxBufferSize",
                    )),
                    memory: match memory.max_memory() {
                        Some(bytes) => Some((bytes as f64, "the adapter's memory")),
                        None if browser > 0 => Some((browser as f64, "navigator.deviceMemory")),
                        None => None,
                    },
                }
            }
            #[allow(unreachable_patterns)]
            _ => Self::cpu(),
        }
    }

    /// The CPU backend: in the browser, wasm32 addresses 4 GiB; natively, no stated limit.
    fn cpu() -> Self {
        Self {
            buffer: None,
            memory: cfg!(target_arch = "wasm32")
                .then_some((4.0 * (1u64 << 30) as f64, "wasm32's address space")),
        }
    }
}

/// Refuses `need` on a device offering `room`, with what is required and what is available.
pub fn check(need: &Need, room: &Room) -> Result<()> {
    let mb = |bytes: f64| format!("{:.0} MB", bytes / 1e6);
    let advice = "make it smaller: n_embd, n_layer, block_size, the vocabulary or batch_size";
    if let Some((max, limit)) = room.buffer
        && need.largest.1 > max
    {
        return Err(Error::Config(format!(
            "this model is too large for the device: {} needs {} in one buffer, and the device \
             allows at most {} ({limit}); {advice}",
            need.largest.0,
            mb(need.largest.1),
            mb(max)
        )));
    }
    if let Some((max, source)) = room.memory
        && need.total > max
    {
        return Err(Error::Config(format!(
            "this model is too large for the device: it needs about {} and the device has {} \
             ({source}); {advice}",
            mb(need.total),
            mb(max)
        )));
    }
    Ok(())
}

/// [`check`] for `model` used on `device` (training when `train` is given); returns the need.
pub fn check_fits(
    model: &ModelConfig,
    train: Option<&TrainConfig>,
    device: &Device,
) -> Result<Need> {
    let fused = model.kernels && crate::kernels::supported(device);
    let need = need(model, train, fused);
    check(&need, &Room::of(device))?;
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::preset;

    #[test]
    fn weights_alone_are_the_parameter_count_in_f32() {
        let p = preset("tiny").unwrap();
        let need = need(&p.model, None, true);
        assert_eq!(need.total, Gpt::num_params_of(&p.model) as f64 * 4.0);
    }

    #[test]
    fn training_holds_four_copies_of_the_weights_plus_activations() {
        let mut p = preset("tiny").unwrap();
        p.model.vocab_size = 65;
        let params = Gpt::num_params_of(&p.model) as f64 * 16.0;
        let one = need(&p.model, Some(&p.train), true).total - params;
        p.train.batch_size *= 2;
        let two = need(&p.model, Some(&p.train), true).total - params;
        assert!(one > 0.0);
        assert!(
            (two / one - 2.0).abs() < 1e-9,
            "activations scale with the batch"
        );
        let unfused = need(&p.model, Some(&p.train), false).total - params;
        assert!(unfused > two, "unfused attention keeps its weights");
    }

    #[test]
    fn the_largest_tensor_is_named() {
        let mut p = preset("tiny").unwrap();
        p.model.n_embd = 768;
        p.model.block_size = 4096;
        let need = need(&p.model, None, true);
        assert_eq!(
            need.largest,
            ("the position embedding".into(), 4096.0 * 768.0 * 4.0)
        );
        // GPT-2's vocabulary: the embedding and its tied head split into parts; an untied head
        // is one tensor.
        p.model.vocab_size = 50257;
        p.model.block_size = 1024;
        assert_eq!(
            super::need(&p.model, None, true).largest,
            ("an MLP weight".into(), 768.0 * 3072.0 * 4.0)
        );
        p.model.tie_weights = false;
        assert_eq!(
            super::need(&p.model, None, true).largest,
            ("the output head".into(), 768.0 * 50257.0 * 4.0)
        );
    }

    #[test]
    fn refusals_give_required_and_available() {
        let need = Need {
            largest: ("an MLP weight".into(), 268.4e6),
            total: 3.2e9,
        };
        let room = Room {
            buffer: Some((134.2e6, "maxStorageBufferBindingSize / maxBufferSize")),
            memory: Some((8e9, "navigator.deviceMemory")),
        };
        let err = check(&need, &room).unwrap_err().to_string();
        assert!(
            err.contains("an MLP weight needs 268 MB in one buffer"),
            "{err}"
        );
        assert!(
            err.contains("at most 134 MB (maxStorageBufferBindingSize"),
            "{err}"
        );
        let room = Room {
            buffer: None,
            memory: Some((2e9, "wasm32's address space")),
        };
        let err = check(&need, &room).unwrap_err().to_string();
        assert!(
            err.contains("needs about 3200 MB and the device has 2000 MB"),
            "{err}"
        );
        assert!(
            check(
                &need,
                &Room {
                    buffer: None,
                    memory: None
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn a_wgpu_device_states_its_buffer_limit() {
        let device = crate::backend::open(crate::backend::BackendKind::Wgpu)
            .expect("the tests need a wgpu adapter (lavapipe: cargo xtask setup)");
        let room = Room::of(&device);
        let (max, _) = room.buffer.expect("a wgpu device has a buffer limit");
        assert!(max >= 128.0 * (1 << 20) as f64, "{max}");
        let mut p = preset("tiny").unwrap();
        p.model.vocab_size = 65;
        assert!(check_fits(&p.model, Some(&p.train), &device).is_ok());
        p.model.vocab_size = 1 << 24;
        p.model.n_embd = 1 << 12;
        let err = check_fits(&p.model, None, &device).unwrap_err().to_string();
        assert!(
            err.contains("an MLP weight needs 268 MB in one buffer"),
            "{err}"
        );
    }
}
