//! Kernel benchmarks (`kiln bench-kernels`, and the page's `benchKernels`): each fused kernel
//! against the plain Burn ops it replaces, and matmul throughput (Burn's and each kernel's)
//! against the adapter's peak; and the page's choice of kernel variants on its adapter ([`tune`]). A training step's profile by kernel comes from CubeCL's profiler
//! instead (`cargo xtask bench kernels`). Asynchronous because the browser cannot block
//! on the GPU; timings wait for the device by reading one number back.

use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::backend::read_f32;
use crate::config::{Arch, ModelConfig};
use crate::error::Result;
use crate::kernels::matmul::Variant;
use crate::kernels::norm::{self, Sum};
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

/// One variant of a kernel at its tuning shape: its time, and how far its result is from the
/// reference's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timing<V> {
    pub variant: V,
    pub ms: f64,
    /// Largest |difference| from the reference, relative to the largest |value|.
    pub error: f64,
}

/// One kernel's variants timed at a shape of the model, and the one chosen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tuning<V> {
    pub shape: Vec<usize>,
    pub timings: Vec<Timing<V>>,
    pub chosen: V,
}

/// What [`tune`] chose for a model on an adapter: the matmul variant, the attention kernels' key
/// tile (`None` where they do not run: an LSTM, heads over 128 wide), and the norms' row sum
/// (`None` where only the tree runs: an adapter without subgroups, an LSTM).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelTuning {
    /// The model's shapes the choice holds for ([`tuning_key`]).
    pub key: String,
    pub matmul: Tuning<Variant>,
    pub attention: Option<Tuning<u32>>,
    #[serde(default)]
    pub norm: Option<Tuning<Sum>>,
    /// Whether this comes from an earlier tuning rather than from timing now.
    #[serde(default)]
    pub remembered: bool,
}

/// The relative error past which a variant computes wrong: f32 results over a few thousand
/// terms differ from one another by ~1e-6 of their scale.
const TUNE_TOLERANCE: f64 = 1e-4;

/// The matmul shape the variants are timed at for `model`: its MLP input layer,
/// `[M, n_embd] · [n_embd, 4·n_embd]`, over `M` = 64 to 128 of its positions.
fn matmul_shape(model: &ModelConfig) -> [usize; 3] {
    [
        model.block_size.clamp(64, 128),
        model.n_embd,
        4 * model.n_embd,
    ]
}

/// The attention shape `[H, T, D]` the tiles are timed at: one sequence of up to 128 positions.
fn attention_shape(model: &ModelConfig) -> [usize; 3] {
    let h = model.n_head.max(1);
    [h, model.block_size.min(128), model.n_embd / h]
}

/// The norm shape `[N, C]` the row sums are timed at: 512 rows of the model's width.
fn norm_shape(model: &ModelConfig) -> [usize; 2] {
    [512, model.n_embd]
}

/// What a [`KernelTuning`] depends on in `model`: its tuning shapes and mask.
pub fn tuning_key(model: &ModelConfig) -> String {
    let [m, k, n] = matmul_shape(model);
    let [h, t, d] = attention_shape(model);
    let [rows, c] = norm_shape(model);
    let mask = if model.arch == Arch::Bert {
        "bidirectional"
    } else {
        "causal"
    };
    format!("matmul {m}x{k}x{n}, attention {h}x{t}x{d} {mask}, norm {rows}x{c}")
}

/// Largest |x − r| over the largest |r|; NaN (a kernel that wrote garbage) counts as infinite.
fn relative_error(x: &[f32], reference: &[f32]) -> f64 {
    let scale = reference
        .iter()
        .fold(0f32, |s, r| s.max(r.abs()))
        .max(1e-30);
    let worst = x
        .iter()
        .zip(reference)
        .fold(0f32, |e, (x, r)| e.max((x - r).abs()));
    let error = f64::from(worst / scale);
    if error.is_nan() { f64::INFINITY } else { error }
}

/// The fastest variant that computes right (`fallback` if none does).
fn fastest<V: Copy>(timings: &[Timing<V>], fallback: V) -> V {
    timings
        .iter()
        .filter(|t| t.error <= TUNE_TOLERANCE)
        .min_by(|x, y| x.ms.total_cmp(&y.ms))
        .map_or(fallback, |t| t.variant)
}

/// Calls per timing: enough for about `flops` = 0.2 GFLOP, so that one read-back's latency does
/// not decide, within `[2, max]`.
fn reps_for(flops: usize, max: usize) -> usize {
    ((2e8 / flops as f64).ceil() as usize).clamp(2, max)
}

/// Natively Burn's autotuner tries its candidates over the first calls; the browser has none.
const TUNE_WARMUPS: usize = if cfg!(target_arch = "wasm32") { 0 } else { 3 };

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

/// Forward + backward of attention on `[b, h, t, d]` (the fused kernels with key tiles of up to
/// `tile`, or the plain ops): the sum of the three gradients.
fn attention_step(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, tile: Option<u32>) -> Tensor<1> {
    let [q, k, v] = [q, k, v].map(|x| x.clone().require_grad());
    let y = attention::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        attention::Mask::Causal,
        tile,
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

/// Forward + backward of a LayerNorm of width `c` on `[n, c]` (the fused kernels summing by
/// `kernel`, or the plain ops).
fn norm_step(norm: &burn::nn::LayerNorm, x: &Tensor<2>, kernel: Option<Sum>) -> Tensor<1> {
    let x = x.clone().require_grad();
    let grads = norm::layer_norm(norm, x.clone(), crate::config::LAYER_NORM_EPS, kernel)
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
    let unfused = time(reps, || attention_step(&q, &k, &v, None)).await?;
    let fused = time(reps, || {
        attention_step(&q, &k, &v, Some(attention::chosen_tile()))
    })
    .await?;
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
    let unfused = time(reps, || norm_step(&norm, &x, None)).await?;
    let fused = time(reps, || norm_step(&norm, &x, Some(norm::chosen()))).await?;
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

/// Times each kernel's variants at `model`'s shapes on `device` and picks, per kernel, the
/// fastest whose results agree with the reference's (a variant the adapter's compiler gets
/// wrong is never chosen). Each variant runs once to compile and check, then is timed. The
/// caller applies the choice ([`matmul::choose`], [`attention::choose_tile`], [`norm::choose`]).
pub async fn tune(model: &ModelConfig, device: &Device) -> Result<KernelTuning> {
    Ok(KernelTuning {
        key: tuning_key(model),
        matmul: tune_matmul(model, device).await?,
        attention: tune_attention(model, device).await?,
        norm: tune_norm(model, device).await?,
        remembered: false,
    })
}

/// Every matmul variant at [`matmul_shape`], checked against Burn's matmul.
async fn tune_matmul(model: &ModelConfig, device: &Device) -> Result<Tuning<Variant>> {
    let [m, k, n] = matmul_shape(model);
    let reps = reps_for(2 * m * k * n, 32);
    let (a, b) = (random([m, k], device), random([k, n], device));
    let reference = read_f32(a.clone().matmul(b.clone())).await?;
    let mut timings = Vec::new();
    for variant in Variant::ALL {
        // Burn's product is the reference itself: no second run to compare.
        let product = match variant {
            Variant::Burn => reference.clone(),
            _ => read_f32(matmul::matmul(a.clone(), b.clone(), variant)).await?,
        };
        let ms = time_after(TUNE_WARMUPS, reps, || corner(&a, &b, variant)).await?;
        timings.push(Timing {
            variant,
            ms,
            error: relative_error(&product, &reference),
        });
    }
    Ok(Tuning {
        shape: vec![m, k, n],
        chosen: fastest(&timings, Variant::Burn),
        timings,
    })
}

/// Each variant's `values` (a kernel's outputs and gradients, flattened) checked against
/// `reference`, then timed over `reps` calls. The timed calls read back one element, so the check's
/// full read-back does not count.
async fn time_variants<V: Copy>(
    variants: impl IntoIterator<Item = V>,
    reference: &[f32],
    reps: usize,
    values: impl Fn(V) -> Tensor<1>,
) -> Result<Vec<Timing<V>>> {
    let mut timings = Vec::new();
    for variant in variants {
        let error = relative_error(&read_f32(values(variant)).await?, reference);
        let ms = time_after(TUNE_WARMUPS, reps, || values(variant).narrow(0, 0, 1)).await?;
        timings.push(Timing { variant, ms, error });
    }
    Ok(timings)
}

/// Attention's output and its gradients for `q, k, v` and an output gradient `w`, flattened
/// into one tensor: with key tiles of up to `tile`, or the plain ops.
fn attention_values(
    [q, k, v, w]: &[Tensor<4>; 4],
    mask: &attention::Mask,
    tile: Option<u32>,
) -> Tensor<1> {
    let [q, k, v] = [q, k, v].map(|x| x.clone().require_grad());
    let y = attention::attention(q.clone(), k.clone(), v.clone(), mask.clone(), tile);
    let grads = (y.clone() * w.clone()).sum().backward();
    let flat = |x: Tensor<4>| x.flatten::<1>(0, 3);
    let g = |x: &Tensor<4>| flat(x.grad(&grads).expect("q, k and v require grad"));
    Tensor::cat(vec![flat(y), g(&q), g(&k), g(&v)], 0)
}

/// Every key tile that fits at [`attention_shape`], forward and backward, checked against the
/// plain ops (`None` where the fused kernels do not run).
async fn tune_attention(model: &ModelConfig, device: &Device) -> Result<Option<Tuning<u32>>> {
    let [h, t, d] = attention_shape(model);
    let runs = model.arch != Arch::Lstm && d <= attention::MAX_HEAD_DIM;
    if !(runs && crate::kernels::supported(device)) {
        return Ok(None);
    }
    let mask = match model.arch {
        Arch::Bert => attention::Mask::Bidirectional,
        _ => attention::Mask::Causal,
    };
    let ad = device.clone().autodiff();
    let inputs = [(); 4].map(|_| random([1, h, t, d], &ad));
    let reference = read_f32(attention_values(&inputs, &mask, None)).await?;
    // Forward and backward: about 7 matmuls of [T, D] · [D, T] per head.
    let reps = reps_for(14 * h * t * t * d, 8);
    let timings = time_variants(attention::TILES, &reference, reps, |tile| {
        attention_values(&inputs, &mask, Some(tile))
    })
    .await?;
    Ok(Some(Tuning {
        shape: vec![h, t, d],
        chosen: fastest(&timings, attention::TILES[0]),
        timings,
    }))
}

/// A LayerNorm's output and its input's gradient for `x` and an output gradient `w`, flattened
/// into one tensor: by the fused kernels summing by `kernel`, or the plain ops.
fn norm_values(
    norm: &burn::nn::LayerNorm,
    [x, w]: &[Tensor<2>; 2],
    kernel: Option<Sum>,
) -> Tensor<1> {
    let x = x.clone().require_grad();
    let y = norm::layer_norm(norm, x.clone(), crate::config::LAYER_NORM_EPS, kernel);
    let grads = (y.clone() * w.clone()).sum().backward();
    let dx = x.grad(&grads).expect("x requires grad");
    Tensor::cat(vec![y.flatten(0, 1), dx.flatten(0, 1)], 0)
}

/// Every row-sum design the adapter can run at [`norm_shape`], forward and backward, checked
/// against the plain ops (`None` where there is nothing to choose).
async fn tune_norm(model: &ModelConfig, device: &Device) -> Result<Option<Tuning<Sum>>> {
    let sums = Sum::available(device);
    if model.arch == Arch::Lstm || sums.len() < 2 {
        return Ok(None);
    }
    let [n, c] = norm_shape(model);
    let ad = device.clone().autodiff();
    let layer = burn::nn::LayerNormConfig::new(c).init(&ad);
    let inputs = [(); 2].map(|_| random([n, c], &ad));
    let reference = read_f32(norm_values(&layer, &inputs, None)).await?;
    // Memory-bound: reads and writes of ~8 values per element count for 2 flops each.
    let reps = reps_for(16 * n * c, 32);
    let timings = time_variants(sums, &reference, reps, |sum| {
        norm_values(&layer, &inputs, Some(sum))
    })
    .await?;
    Ok(Some(Tuning {
        shape: vec![n, c],
        chosen: fastest(&timings, Sum::Tree),
        timings,
    }))
}
