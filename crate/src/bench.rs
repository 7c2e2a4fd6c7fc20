//! Kernel benchmarks (`kiln bench-kernels`, and the page's `benchKernels`): each fused kernel
//! against the plain Burn ops it replaces, and matmul throughput (Burn's and each kernel's)
//! against the adapter's peak; and the page's choice of matmul on its adapter ([`tune_matmul`]). A training step's profile by kernel comes from CubeCL's profiler
//! instead (`cargo xtask bench kernels`). Asynchronous because the browser cannot block
//! on the GPU; timings wait for the device by reading one number back.

use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::backend::read_f32;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kernels::matmul::Variant;
use crate::kernels::{adamw, attention, cross_entropy, matmul, peak};

/// One kernel against the ops it replaces (forward + backward where the op is differentiable).
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub op: String,
    pub shape: String,
    pub unfused_ms: f64,
    pub fused_ms: f64,
    /// `unfused_ms / fused_ms`: above 1, the kernel is faster.
    pub speedup: f64,
}

/// Each matmul variant at `n³`, against the measured peak.
#[derive(Clone, Debug, Serialize)]
pub struct MatmulRow {
    pub n: usize,
    pub variants: Vec<MatmulSpeed>,
}

/// One variant's throughput.
#[derive(Clone, Debug, Serialize)]
pub struct MatmulSpeed {
    pub variant: Variant,
    pub gflops: f64,
    pub percent_of_peak: f64,
}

/// One variant at the tuning shape: its time, and how far its product is from Burn's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantTiming {
    pub variant: Variant,
    pub ms: f64,
    /// Largest |difference| from Burn's matmul, relative to the largest |value|.
    pub error: f64,
}

/// What [`tune_matmul`] measured, and the variant it chose.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatmulTuning {
    /// `[M, K, N]`: the model's MLP input layer over 64 to 128 positions.
    pub shape: [usize; 3],
    pub timings: Vec<VariantTiming>,
    pub chosen: Variant,
}

/// The relative error past which a variant computes wrong: f32 products over a few thousand
/// terms differ from one another by ~1e-6 of their scale.
const TUNE_TOLERANCE: f64 = 1e-4;

/// Waits for `out` (and everything queued before it) by reading its sum back.
async fn wait<const D: usize>(out: Tensor<D>) -> Result<()> {
    read_f32(out.sum()).await.map(|_| ())
}

/// Milliseconds per call of `f`, after three warm-up calls (shader compilation; Burn's autotuner
/// tries its variants over the first calls). The calls' results are summed and read once, so no
/// call's work can be skipped.
async fn time(reps: usize, f: impl FnMut() -> Tensor<1>) -> Result<f64> {
    time_after(3, reps, f).await
}

/// [`time`] after `warmups` warm-up calls.
async fn time_after(warmups: usize, reps: usize, mut f: impl FnMut() -> Tensor<1>) -> Result<f64> {
    for _ in 0..warmups {
        wait(f()).await?;
    }
    let start = Instant::now();
    let mut total = f();
    for _ in 1..reps {
        total = total + f();
    }
    wait(total).await?;
    Ok(start.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Forward + backward of attention on `[b, h, t, d]`: the sum of the three gradients.
fn attention_step(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, fused: bool) -> Tensor<1> {
    let [q, k, v] = [q, k, v].map(|x| x.clone().require_grad());
    let y = attention::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        attention::Mask::Causal,
        fused,
    );
    let grads = y.sum().backward();
    let g = |x: &Tensor<4>| {
        x.grad(&grads)
            .map_or_else(|| Tensor::zeros([1], &x.device()), |g| g.sum())
    };
    g(&q) + g(&k) + g(&v)
}

/// Forward + backward of the mean cross-entropy of `[n, v]` logits.
fn cross_entropy_step(x: &Tensor<2>, t: &Tensor<1, Int>, fused: bool) -> Tensor<1> {
    let x = x.clone().require_grad();
    let loss = cross_entropy::cross_entropy(x.clone(), t.clone(), fused).mean();
    let grads = loss.backward();
    x.grad(&grads)
        .map_or_else(|| Tensor::zeros([1], &x.device()), |g| g.sum())
}

/// Forward + backward of a LayerNorm of width `c` on `[n, c]`.
fn norm_step(norm: &burn::nn::LayerNorm, x: &Tensor<2>, fused: bool) -> Tensor<1> {
    let x = x.clone().require_grad();
    let grads =
        crate::kernels::norm::layer_norm(norm, x.clone(), crate::config::LAYER_NORM_EPS, fused)
            .sum()
            .backward();
    x.grad(&grads)
        .map_or_else(|| Tensor::zeros([1], &x.device()), |g| g.sum())
}

/// Every kernel against the unfused ops, at `model`'s shapes with `batch` sequences, on `device`
/// (a wgpu device; elsewhere both columns time the same reference).
pub async fn kernels(
    model: &ModelConfig,
    batch: usize,
    reps: usize,
    device: &Device,
) -> Result<Vec<KernelRow>> {
    let ad = device.clone().autodiff();
    let (t, c, h) = (model.block_size, model.n_embd, model.n_head);
    let d = model.head_dim();
    let n = batch * t;
    let mut rows = Vec::new();
    let mut row = |op: &str, shape: String, unfused_ms: f64, fused_ms: f64| {
        rows.push(KernelRow {
            op: op.into(),
            shape,
            unfused_ms,
            fused_ms,
            speedup: unfused_ms / fused_ms,
        })
    };

    let [q, k, v] = [0; 3].map(|_| random([batch, h, t, d], &ad));
    let unfused = time(reps, || attention_step(&q, &k, &v, false)).await?;
    let fused = time(reps, || attention_step(&q, &k, &v, true)).await?;
    row(
        "attention fwd+bwd",
        format!("B{batch} H{h} T{t} D{d}"),
        unfused,
        fused,
    );

    let vocab = model.vocab_size;
    let logits = random([n, vocab], &ad);
    let targets = Tensor::<1>::random([n], Distribution::Uniform(0.0, vocab as f64), &ad)
        .int()
        .clamp(0, vocab as i64 - 1);
    let unfused = time(reps, || cross_entropy_step(&logits, &targets, false)).await?;
    let fused = time(reps, || cross_entropy_step(&logits, &targets, true)).await?;
    row(
        "cross-entropy fwd+bwd",
        format!("N{n} V{vocab}"),
        unfused,
        fused,
    );

    let norm = burn::nn::LayerNormConfig::new(c).init(&ad);
    let x = random([n, c], &ad);
    let unfused = time(reps, || norm_step(&norm, &x, false)).await?;
    let fused = time(reps, || norm_step(&norm, &x, true)).await?;
    row("layer norm fwd+bwd", format!("N{n} C{c}"), unfused, fused);

    let x = random([n, c], &ad);
    let w = random([c, 4 * c], &ad);
    let linear = |variant: Variant| {
        let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
        let grads = matmul::matmul(x.clone(), w.clone(), variant)
            .sum()
            .backward();
        x.grad(&grads).unwrap().sum() + w.grad(&grads).unwrap().sum()
    };
    let unfused = time(reps, || linear(Variant::Burn)).await?;
    for variant in [Variant::Registers, Variant::Staged] {
        let fused = time(reps, || linear(variant)).await?;
        row(
            &format!("matmul fwd+bwd (mlp c_fc), {}", variant.name()),
            format!("{n}×{c} · {c}×{}", 4 * c),
            unfused,
            fused,
        );
    }

    let params = crate::Gpt::num_params_of(model);
    let (p, g) = (random([params], device), random([params], device));
    let (m, v2) = (p.zeros_like(), p.zeros_like());
    let h1 = adamw::Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.1,
        t: 3,
    };
    let adam = |fused: bool| {
        let (p, m, v) = adamw::step(p.clone(), g.clone(), m.clone(), v2.clone(), h1, fused);
        p.sum() + m.sum() + v.sum()
    };
    let unfused = time(reps, || adam(false)).await?;
    let fused = time(reps, || adam(true)).await?;
    row("AdamW update", format!("{params} params"), unfused, fused);
    Ok(rows)
}

/// The adapter's peak f32 rate in GFLOP/s, from the FMA probe (`None` off the wgpu backend).
pub async fn peak_gflops(device: &Device) -> Result<Option<f64>> {
    const INVOCATIONS: usize = 256 * peak::WG;
    let x = random([INVOCATIONS], device);
    let mut iters = 256u32;
    loop {
        let Some(_) = peak::fma(x.clone(), iters) else {
            return Ok(None);
        };
        let ms = time(3, || peak::fma(x.clone(), iters).expect("checked above")).await?;
        // Long enough that launch and read-back overheads are noise.
        if ms > 50.0 || iters >= 1 << 20 {
            let flops = (INVOCATIONS * iters as usize * peak::FLOPS_PER_ITER) as f64;
            return Ok(Some(flops / (ms * 1e6)));
        }
        iters *= 4;
    }
}

/// One element of `a · b` by `variant`: what the timings wait for (the whole product is
/// computed; reading one number back is what makes the wait cheap).
fn corner(a: &Tensor<2>, b: &Tensor<2>, variant: Variant) -> Tensor<1> {
    matmul::matmul(a.clone(), b.clone(), variant)
        .slice([0..1, 0..1])
        .reshape([1])
}

/// Every matmul variant at `n³` for each `n`, against `peak` GFLOP/s.
pub async fn matmul(
    sizes: &[usize],
    peak: f64,
    reps: usize,
    device: &Device,
) -> Result<Vec<MatmulRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        let (a, b) = (random([n, n], device), random([n, n], device));
        let mut variants = Vec::new();
        for variant in Variant::ALL {
            let ms = time(reps, || corner(&a, &b, variant)).await?;
            let gflops = 2.0 * (n as f64).powi(3) / (ms * 1e6);
            variants.push(MatmulSpeed {
                variant,
                gflops,
                percent_of_peak: 100.0 * gflops / peak,
            });
        }
        rows.push(MatmulRow { n, variants });
    }
    Ok(rows)
}

/// Times every matmul variant at the shape of `model`'s MLP input layer on `device` and picks
/// the fastest whose product agrees with Burn's (a kernel the adapter's compiler gets wrong is
/// never chosen). Each variant runs once to compile and check, then timed over enough calls
/// (2 to 64) for about 0.2 GFLOP, so that one read-back's latency does not decide; on
/// SwiftShader this takes about two seconds at `shakespeare-baby`'s shape. The caller applies
/// the choice ([`matmul::choose`]).
pub async fn tune_matmul(model: &ModelConfig, device: &Device) -> Result<MatmulTuning> {
    let (m, k, n) = (
        model.block_size.clamp(64, 128),
        model.n_embd,
        4 * model.n_embd,
    );
    let reps = (2e8 / (2 * m * k * n) as f64).ceil().clamp(2.0, 64.0) as usize;
    let (a, b) = (random([m, k], device), random([k, n], device));
    let reference = read_f32(a.clone().matmul(b.clone())).await?;
    let scale = reference
        .iter()
        .fold(0f32, |s, x| s.max(x.abs()))
        .max(1e-30);
    let mut timings = Vec::new();
    for variant in Variant::ALL {
        let product = read_f32(matmul::matmul(a.clone(), b.clone(), variant)).await?;
        let error = product
            .iter()
            .zip(&reference)
            .fold(0f32, |e, (x, r)| e.max((x - r).abs()))
            / scale;
        // Natively Burn's autotuner tries its candidates over the first calls.
        let warmups = if cfg!(target_arch = "wasm32") { 0 } else { 3 };
        let ms = time_after(warmups, reps, || corner(&a, &b, variant)).await?;
        timings.push(VariantTiming {
            variant,
            ms,
            // NaN (a kernel that wrote garbage) counts as wrong.
            error: if error.is_nan() {
                f64::INFINITY
            } else {
                f64::from(error)
            },
        });
    }
    let chosen = timings
        .iter()
        .filter(|t| t.error <= TUNE_TOLERANCE)
        .min_by(|x, y| x.ms.total_cmp(&y.ms))
        .map_or(Variant::Burn, |t| t.variant);
    Ok(MatmulTuning {
        shape: [m, k, n],
        timings,
        chosen,
    })
}
