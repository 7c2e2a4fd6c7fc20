//! Which Burn device runs the model: `flex` (pure-Rust CPU) or `wgpu` (WebGPU's API natively:
//! Vulkan, Metal, DX12; lavapipe where there is no GPU).

use burn::prelude::*;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Wgpu,
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            other => Err(Error::Config(format!(
                "unknown backend \"{other}\"; choose cpu or wgpu"
            ))),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        })
    }
}

/// Opens the device (without autodiff; training adds it). A missing GPU is an error, not a panic.
///
/// The wgpu runtime can be registered once per process, so its device is opened once and shared.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(kind: BackendKind) -> Result<Device> {
    static WGPU: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    match kind {
        BackendKind::Cpu => Ok(Device::flex()),
        BackendKind::Wgpu => WGPU
            .get_or_init(|| {
                let (device, setup) = Device::wgpu_options()
                    .init_with_setup()
                    .map_err(|e| e.to_string())?;
                let features = setup.device.features();
                crate::kernels::note_subgroups(
                    features.contains(burn::backend::wgpu::wgpu::Features::SUBGROUP),
                );
                Ok(device)
            })
            .clone()
            .map_err(|e| Error::Backend(format!("no usable WebGPU/Vulkan adapter: {e}"))),
    }
}

/// A short description of the device for logs and the page ("wgpu: llvmpipe (LLVM 15.0.6)").
pub fn describe(kind: BackendKind, device: &Device) -> String {
    match device.identity() {
        Some(id) => format!("{kind}: {}", id.name),
        None => kind.to_string(),
    }
}

/// Reads a tensor back to the host. Asynchronous because the browser cannot block on the GPU;
/// native callers wrap the async paths in [`block_on`].
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let fail = |e: String| Error::Backend(format!("reading back from the device failed: {e}"));
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| fail(format!("{e:?}")))?;
    data.try_into_vec_as::<f32>()
        .map_err(|e| fail(format!("{e:?}")))
}

/// Runs a future to completion on the current thread (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    burn::tensor::try_read_sync(future).expect("native targets can block")
}
