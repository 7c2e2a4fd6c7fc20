//! Kiln's hand-written WGSL kernels for the training hot path (`shaders/*.wgsl`).
//!
//! Each op is one module holding the WGSL binding for Burn's CubeCL backend, its autodiff backward
//! and a plain-Burn reference. The reference is what tests compare against and what runs wherever
//! the kernels cannot: the CPU backend, other dtypes, shapes past a kernel's limits, or a model
//! built with `kernels = false`. GELU ([`gelu`]), the norms ([`norm`]) and AdamW ([`adamw`]) also
//! have a CPU version, a loop in Rust, and so has the attention's masked softmax ([`softmax`], CPU
//! only): there the plain ops' passes, each writing a fresh tensor, cost a CPU training step most.
//!
//! The ops are Burn backend extensions: [`KernelOps`] is implemented for `CubeBackend` (the
//! kernels), for Burn's autodiff decorator (the backward passes, written by hand) and, natively,
//! for the fusion decorator (generated); [`gelu::GeluOps`], [`norm::NormOps`] and
//! [`adamw::AdamwOps`] the same and for the CPU backend too, [`softmax::SoftmaxOps`] for the CPU
//! backend and autodiff. Call sites use the `Tensor` functions of each module.

/// The text of `shaders/<name>.wgsl`, with the shared snippets it calls (`shaders/<part>.wgsl`)
/// appended: WGSL has no includes, and module-scope declarations may come in any order.
macro_rules! shader {
    ($name:literal $(, $part:literal)*) => {
        concat!(
            include_str!(concat!("../../../shaders/", $name, ".wgsl"))
            $(, include_str!(concat!("../../../shaders/", $part, ".wgsl")))*
        )
    };
}

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
pub mod gelu;
pub mod matmul;
pub mod norm;
pub mod peak;
pub mod softmax;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::autodiff::{Autodiff, checkpoint::strategy::CheckpointStrategy};
use burn::backend::flex::FlexTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor, KernelMetadata, SourceTemplate};
use burn::backend::{
    AutodiffBackend, Backend, DispatchDevice, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::cubecl::ir::{ElemType, FloatKind, UIntKind, metadata::Info};
use burn::cubecl::prelude::{
    AddressType, ExecutionMode, KernelDefinition, KernelId, KernelSettings, Scope,
};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim, CubeKernel, PrecompiledSource};
use burn::prelude::*;
use burn::tensor::{DType, Shape, TensorData};

/// The fused ops. Use them through the `Tensor` functions of each module ([`attention::attention`],
/// [`cross_entropy::cross_entropy`], [`matmul::matmul`]),
/// which fall back to the references where the kernels do not apply.
#[backend_extension(Cube, Fusion: cfg(not(target_arch = "wasm32")), Autodiff)]
pub trait KernelOps: Backend {
    /// Attention of `q [B, H, T_q, D]` over `k, v [B, H, T_k, D]`, causal (`T_q ≤ T_k`, queries
    /// are the last `T_q` positions) or bidirectional, staging up to `tile` keys at a time in
    /// workgroup memory: the output `[B, H, T_q, D]` and the log-sum-exp `[B, H, T_q]`.
    #[fusion(meta = attention::forward_meta)]
    fn flash_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients `(dq, dk, dv)` of [`KernelOps::flash_attention_forward`] given its output `o`, `lse`
    /// and the output's gradient `d_o`.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = attention::backward_meta)]
    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        d_o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The differentiable op: attention's output alone.
    #[fusion(default)]
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> FloatTensor<Self> {
        Self::flash_attention_forward(q, k, v, scale, causal, tile).0
    }

    /// Softmax cross-entropy of each row of `logits [N, V]` against `targets [N]`: the per-row
    /// loss `[N]` and log-sum-exp `[N]`.
    #[fusion(meta = cross_entropy::forward_meta)]
    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Gradient of the logits given the per-row losses' gradient `grad [N]`.
    #[fusion(dtype = logits, shape = logits)]
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The differentiable op: the per-row losses alone.
    #[fusion(default)]
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        Self::cross_entropy_forward(logits, targets).0
    }

    /// `a [M, K] · b [K, N]` on the register-blocked kernel, or with `staged` the workgroup-memory
    /// one; `a` and `b` may be strided views (transposes).
    #[fusion(meta = matmul::meta)]
    fn tiled_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>, staged: bool) -> FloatTensor<Self>;

    /// The throughput probe of [`peak::fma`].
    #[fusion(dtype = x, shape = x)]
    fn fma_peak(x: FloatTensor<Self>, iters: u32) -> FloatTensor<Self>;
}

/// The kernels.
impl KernelOps for CubeBackend {
    fn flash_attention_forward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (CubeTensor, CubeTensor) {
        attention::forward_cube(q, k, v, scale, causal, tile)
    }

    fn flash_attention_backward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        o: CubeTensor,
        d_o: CubeTensor,
        lse: CubeTensor,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        attention::backward_cube(q, k, v, o, d_o, lse, scale, causal, tile)
    }

    fn cross_entropy_forward(logits: CubeTensor, targets: CubeTensor) -> (CubeTensor, CubeTensor) {
        cross_entropy::forward_cube(logits, targets)
    }

    fn cross_entropy_backward(
        logits: CubeTensor,
        targets: CubeTensor,
        lse: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        cross_entropy::backward_cube(logits, targets, lse, grad)
    }

    fn tiled_matmul(a: CubeTensor, b: CubeTensor, staged: bool) -> CubeTensor {
        matmul::forward_cube(a, b, staged)
    }

    fn fma_peak(x: CubeTensor, iters: u32) -> CubeTensor {
        peak::fma_cube(x, iters)
    }
}

/// The backward passes. The forward/backward halves themselves are not differentiable: on
/// autodiff tensors they run on the inner values and return untracked results.
impl<B: KernelOps, C: CheckpointStrategy> KernelOps for Autodiff<B, C> {
    fn flash_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (o, lse) = B::flash_attention_forward(
            Self::inner(q),
            Self::inner(k),
            Self::inner(v),
            scale,
            causal,
            tile,
        );
        (Self::from_inner(o), Self::from_inner(lse))
    }

    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        d_o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [q, k, v, o, d_o, lse] = [q, k, v, o, d_o, lse].map(Self::inner);
        untracked3::<B, C>(B::flash_attention_backward(
            q, k, v, o, d_o, lse, scale, causal, tile,
        ))
    }

    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        causal: bool,
        tile: u32,
    ) -> FloatTensor<Self> {
        attention::autodiff::<B, C>(q, k, v, scale, causal, tile)
    }

    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (loss, lse) = B::cross_entropy_forward(Self::inner(logits), targets);
        (Self::from_inner(loss), Self::from_inner(lse))
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [logits, lse, grad] = [logits, lse, grad].map(Self::inner);
        Self::from_inner(B::cross_entropy_backward(logits, targets, lse, grad))
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        cross_entropy::autodiff::<B, C>(logits, targets)
    }

    fn tiled_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>, staged: bool) -> FloatTensor<Self> {
        matmul::autodiff::<B, C>(a, b, staged)
    }

    fn fma_peak(x: FloatTensor<Self>, iters: u32) -> FloatTensor<Self> {
        Self::from_inner(B::fma_peak(Self::inner(x), iters))
    }
}

type Three<T> = (T, T, T);

/// Three results of the inner backend as tensors of the autodiff backend that track no graph:
/// the passthroughs that a hand-written backward (or the optimiser) calls.
fn untracked3<B: Backend, C: CheckpointStrategy>(
    (a, b, c): Three<FloatTensor<B>>,
) -> Three<FloatTensor<Autodiff<B, C>>> {
    (
        Autodiff::<B, C>::from_inner(a),
        Autodiff::<B, C>::from_inner(b),
        Autodiff::<B, C>::from_inner(c),
    )
}

/// What the fusion decorator is told about an output before the kernel runs.
#[cfg(not(target_arch = "wasm32"))]
type Spec = burn::backend::fusion::custom::TensorSpec;

/// Whether the kernels can run on `device`: a CubeCL (wgpu) device. Tensor dtypes and shapes are
/// checked by each op.
pub fn supported(device: &Device) -> bool {
    device.identity().is_some()
}

/// A contiguous CPU tensor's elements (the ops with a CPU version let only f32 through).
fn cpu_values(t: &FlexTensor) -> &[f32] {
    t.as_slice().expect("a contiguous f32 tensor")
}

/// A CPU tensor of `shape` holding `data`.
fn cpu_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// Whether `device` runs the ops that have a CPU version too ([`gelu`], [`norm`], [`adamw`]):
/// wgpu or the CPU backend.
pub fn cpu_or_wgpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Cube(_) | DispatchDevice::Flex(_)
    )
}

/// Whether the wgpu adapter has WebGPU's `subgroups` feature, as [`note_subgroups`] recorded
/// when the device was opened: one adapter per process.
static SUBGROUPS: AtomicBool = AtomicBool::new(false);

/// Records whether the opened wgpu device has subgroups. CubeCL's own properties cannot say:
/// they leave subgroups out on CPU-emulated adapters, which Kiln's kernels can still use.
pub fn note_subgroups(has: bool) {
    SUBGROUPS.store(has, Ordering::Relaxed);
}

/// Whether the kernels may use subgroup operations on `device`.
pub fn supports_subgroups(device: &Device) -> bool {
    supported(device) && SUBGROUPS.load(Ordering::Relaxed)
}

/// Whether `device` computes in f16 (a wgpu adapter with `shader-f16`): mixed precision's
/// prerequisite.
pub fn supports_f16(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        burn::backend::DispatchDevice::Cube(cube) => cube
            .client()
            .properties()
            .supports_type(ElemType::Float(FloatKind::F16)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// A WGSL file from `shaders/` with its template values (`{{ name }}` in the source), as a kernel
/// CubeCL launches. Its own type rather than Burn's `SourceKernel` so that CubeCL's profiler
/// (`CUBECL_DEBUG_OPTION=profile`) reports each kernel by name.
#[derive(Debug)]
struct Wgsl {
    name: &'static str,
    source: &'static str,
    params: Vec<(&'static str, u32)>,
}

/// A [`Wgsl`] with its workgroup size.
struct Launch {
    wgsl: Wgsl,
    workgroup: u32,
}

impl KernelMetadata for Launch {
    fn name(&self) -> &'static str {
        self.wgsl.name
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.wgsl.name, self.wgsl.params.clone()))
    }

    fn address_type(&self) -> ElemType {
        UIntKind::U32.into()
    }
}

impl CubeKernel for Launch {
    /// Only keys CubeCL's compilation cache: the WGSL text is the kernel.
    fn define(&self) -> KernelDefinition {
        let dim = CubeDim::new_1d(self.workgroup);
        let settings = KernelSettings::new(dim.0, ExecutionMode::Checked, AddressType::U32);
        KernelDefinition {
            body: Scope::root(settings.clone()),
            settings,
            info: Info::default(),
        }
    }

    fn source(&self) -> Option<PrecompiledSource> {
        let template = self
            .wgsl
            .params
            .iter()
            .fold(SourceTemplate::new(self.wgsl.source), |t, (key, value)| {
                t.register(*key, value.to_string())
            });
        Some(PrecompiledSource {
            source: template.complete(),
            entrypoint_name: "main".into(),
            lang: "wgsl",
        })
    }
}

/// Writes `info` to the device and launches `kernel` with `workgroup` invocations per workgroup
/// over `workgroups`, binding `buffers` in order and `info` last.
fn launch(
    like: &CubeTensor,
    kernel: Wgsl,
    workgroup: u32,
    workgroups: (u32, u32),
    buffers: &[&CubeTensor],
    info: &[u32],
) {
    let info: Vec<u8> = info.iter().flat_map(|x| x.to_le_bytes()).collect();
    let info = like.client.create_from_slice(&info);
    let bindings = buffers
        .iter()
        .map(|t| t.handle.clone().binding())
        .chain(std::iter::once(info.binding()))
        .collect();
    like.client.launch(
        Box::new(Launch {
            wgsl: kernel,
            workgroup,
        }),
        CubeCount::Static(workgroups.0, workgroups.1, 1),
        KernelArguments::new().with_buffers(bindings),
    );
}

/// A new, uninitialised contiguous f32 tensor on `like`'s device.
fn empty(like: &CubeTensor, shape: impl Into<Shape>) -> CubeTensor {
    let shape = shape.into();
    let handle = like.client.empty(shape.num_elements() * DType::F32.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

/// Spreads `n` workgroups over x and y: a dispatch dimension holds at most 65535.
fn grid(n: usize) -> (u32, u32) {
    const MAX: usize = 65535;
    ((n.min(MAX)) as u32, n.div_ceil(MAX) as u32)
}

/// The largest workgroup memory the adapter gives a kernel, in bytes.
fn shared_memory(like: &CubeTensor) -> usize {
    like.client.properties().hardware.max_shared_memory_size
}
