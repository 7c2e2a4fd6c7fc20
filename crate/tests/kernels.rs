//! The WGSL kernels against their plain-Burn references and against finite differences, on
//! wgpu (lavapipe where there is no GPU). Its own binary: the wgpu runtime is registered once per
//! process.
//!
//! Tolerance: forward values and gradients agree to `1e-4 · max(1, max |reference|)`; finite
//! differences (f32, central, ε = 1e-2) to 1e-2 relative.

mod common;

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use kiln::Gpt;
use kiln::backend::{self, BackendKind};
use kiln::config::{Norm, Position};
use kiln::kernels::attention::Mask;
use kiln::kernels::matmul::Variant;
use kiln::kernels::norm::Sum;
use kiln::kernels::{adamw, attention, cross_entropy, gelu, matmul, norm};
use kiln::model::KvCache;
use kiln::train::Trainer;

/// The wgpu device; the kernels must run on it (else these tests would compare the reference
/// with itself).
fn wgpu() -> Device {
    let device = backend::open(BackendKind::Wgpu).expect("a wgpu adapter (lavapipe without a GPU)");
    assert!(kiln::kernels::supported(&device));
    assert!(kiln::kernels::supported(&device.clone().autodiff()));
    device
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Asserts `got` matches `want` to `1e-4 · max(1, max |want|)`.
fn assert_close(what: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |Δ| = {worst:e} (scale {scale})"
    );
    assert!(got.iter().all(|x| x.is_finite()), "{what}: non-finite");
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// (B, H, T_q, T_k, D): T = 1, lengths that are not multiples of the tiles (64 rows, 16–64 keys),
/// head dims 16–128, batch > 1, and queries that continue a cached past (T_q < T_k).
const ATTENTION_SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 16),
    (2, 3, 37, 37, 16),
    (1, 2, 70, 70, 32),
    (2, 1, 33, 33, 64),
    (1, 1, 20, 20, 128),
    (2, 2, 130, 130, 24),
    (1, 2, 5, 40, 32),
    (1, 1, 1, 19, 64),
];

/// Both masks the fused kernels take: a GPT's and an encoder's.
const MASKS: [Mask; 2] = [Mask::Causal, Mask::Bidirectional];

/// The default key tile, and the smaller ones the page's tuning may choose.
const TILES: [u32; 3] = attention::TILES;

/// Against the reference on the CPU backend, as the matmuls below: on lavapipe Burn autotunes its
/// matmul at every new shape, which took most of these two tests' 170 s.
#[test]
fn attention_forward_matches_reference() {
    let (device, cpu) = (wgpu(), Device::flex());
    for mask in MASKS {
        for &(b, h, t_q, t_k, d) in ATTENTION_SHAPES {
            let q = random([b, h, t_q, d], &cpu);
            let k = random([b, h, t_k, d], &cpu);
            let v = random([b, h, t_k, d], &cpu);
            let reference = values(attention::reference(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
            ));
            for tile in TILES {
                let [q, k, v] = [&q, &k, &v].map(|x| on(x, &device));
                assert_close(
                    &format!("{mask:?} attention {b}x{h}x{t_q}x{t_k}x{d}, tile {tile}"),
                    values(attention::attention(q, k, v, mask.clone(), Some(tile))),
                    reference.clone(),
                );
            }
        }
    }
}

/// Gradients of `Σ w ⊙ attention(q, k, v)` for q, k and v: the fused kernels with key tiles
/// of up to `tile`, or (`None`) the reference.
fn attention_grads(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    w: &Tensor<4>,
    mask: &Mask,
    tile: Option<u32>,
) -> [Vec<f32>; 3] {
    let [q, k, v] = [q, k, v].map(|x| x.clone().require_grad());
    let y = match tile {
        Some(_) => attention::attention(q.clone(), k.clone(), v.clone(), mask.clone(), tile),
        None => attention::reference(q.clone(), k.clone(), v.clone(), mask.clone()),
    };
    let grads = (y * w.clone()).sum().backward();
    [q, k, v].map(|x| values(x.grad(&grads).expect("a gradient")))
}

#[test]
fn attention_grad_matches_reference() {
    let (device, cpu) = (wgpu().autodiff(), Device::flex().autodiff());
    for mask in MASKS {
        for &(b, h, t_q, t_k, d) in ATTENTION_SHAPES {
            let q = random([b, h, t_q, d], &cpu);
            let k = random([b, h, t_k, d], &cpu);
            let v = random([b, h, t_k, d], &cpu);
            let w = random([b, h, t_q, d], &cpu);
            let reference = attention_grads(&q, &k, &v, &w, &mask, None);
            let [q, k, v, w] = [&q, &k, &v, &w].map(|x| on(x, &device));
            for tile in TILES {
                let fused = attention_grads(&q, &k, &v, &w, &mask, Some(tile));
                for (name, (got, want)) in ["dq", "dk", "dv"]
                    .iter()
                    .zip(fused.into_iter().zip(reference.clone()))
                {
                    assert_close(
                        &format!("{mask:?} {name} {b}x{h}x{t_q}x{t_k}x{d}, tile {tile}"),
                        got,
                        want,
                    );
                }
            }
        }
    }
}

/// Central differences of a scalar function at a few coordinates of `x`, against `grad`.
fn check_finite_differences(
    what: &str,
    x: &[f32],
    shape: [usize; 4],
    grad: &[f32],
    f: impl Fn(Tensor<4>) -> f32,
    device: &Device,
) {
    const EPS: f32 = 1e-2;
    let n = x.len();
    for i in [0, n / 3, n / 2, n - 1] {
        let at = |delta: f32| {
            let mut y = x.to_vec();
            y[i] += delta;
            f(Tensor::from_data(TensorData::new(y, shape), device))
        };
        let numeric = (at(EPS) - at(-EPS)) / (2.0 * EPS);
        let err = (numeric - grad[i]).abs();
        assert!(
            err <= 1e-2 * numeric.abs().max(grad[i].abs()).max(0.1),
            "{what}[{i}]: finite difference {numeric}, backward {}",
            grad[i]
        );
    }
}

#[test]
fn attention_grad_matches_finite_differences() {
    for mask in MASKS {
        attention_grad_matches_finite_differences_for(mask);
    }
}

fn attention_grad_matches_finite_differences_for(mask: Mask) {
    let plain = wgpu();
    let shape = [1, 1, 5, 16];
    let [q, k, v, w] = [0, 1, 2, 3].map(|_| values(random(shape, &plain)));
    let tensor = |x: &Vec<f32>, device: &Device| -> Tensor<4> {
        Tensor::from_data(TensorData::new(x.clone(), shape), device)
    };
    let autodiff = plain.clone().autodiff();
    let grads = attention_grads(
        &tensor(&q, &autodiff),
        &tensor(&k, &autodiff),
        &tensor(&v, &autodiff),
        &tensor(&w, &autodiff),
        &mask,
        Some(TILES[0]),
    );
    let loss = |q: Tensor<4>, k: Tensor<4>, v: Tensor<4>| -> f32 {
        let y = attention::attention(q, k, v, mask.clone(), Some(TILES[0])) * tensor(&w, &plain);
        y.sum().into_scalar()
    };
    let (tq, tk, tv) = (tensor(&q, &plain), tensor(&k, &plain), tensor(&v, &plain));
    check_finite_differences(
        "dq",
        &q,
        shape,
        &grads[0],
        |x| loss(x, tk.clone(), tv.clone()),
        &plain,
    );
    check_finite_differences(
        "dk",
        &k,
        shape,
        &grads[1],
        |x| loss(tq.clone(), x, tv.clone()),
        &plain,
    );
    check_finite_differences(
        "dv",
        &v,
        shape,
        &grads[2],
        |x| loss(tq.clone(), tk.clone(), x),
        &plain,
    );
}

/// Random targets in `0..v`.
fn targets(n: usize, v: usize, device: &Device) -> Tensor<1, Int> {
    Tensor::<1>::random([n], Distribution::Uniform(0.0, v as f64), device)
        .int()
        .clamp(0, v as i64 - 1)
}

/// (N, V): one row, one class, small and large vocabularies, and more rows than one dispatch
/// dimension holds (65535).
const CROSS_ENTROPY_SHAPES: &[(usize, usize)] =
    &[(1, 1), (1, 65), (37, 3), (300, 1031), (70_000, 3)];

#[test]
fn cross_entropy_forward_matches_reference() {
    let device = wgpu();
    for &(n, v) in CROSS_ENTROPY_SHAPES {
        let logits = random([n, v], &device).mul_scalar(3.0);
        let t = targets(n, v, &device);
        let fused = cross_entropy::cross_entropy(logits.clone(), t.clone(), true);
        let reference = cross_entropy::reference(logits, t);
        assert_close(
            &format!("cross-entropy {n}x{v}"),
            values(fused),
            values(reference),
        );
    }
}

/// Gradient of `Σ w ⊙ cross_entropy(logits, t)` for the logits.
fn cross_entropy_grad(
    logits: &Tensor<2>,
    t: &Tensor<1, Int>,
    w: &Tensor<1>,
    fused: bool,
) -> Vec<f32> {
    let x = logits.clone().require_grad();
    let rows = if fused {
        cross_entropy::cross_entropy(x.clone(), t.clone(), true)
    } else {
        cross_entropy::reference(x.clone(), t.clone())
    };
    let grads = (rows * w.clone()).sum().backward();
    values(x.grad(&grads).expect("a gradient"))
}

#[test]
fn cross_entropy_grad_matches_reference() {
    let device = wgpu().autodiff();
    for &(n, v) in &CROSS_ENTROPY_SHAPES[..4] {
        let logits = random([n, v], &device).mul_scalar(3.0);
        let t = targets(n, v, &device);
        let w = random([n], &device);
        assert_close(
            &format!("d logits {n}x{v}"),
            cross_entropy_grad(&logits, &t, &w, true),
            cross_entropy_grad(&logits, &t, &w, false),
        );
    }
}

#[test]
fn cross_entropy_grad_matches_finite_differences() {
    let plain = wgpu();
    let (n, v) = (3, 7);
    let x = values(random([n, v], &plain));
    let w = random([n], &plain);
    let t = targets(n, v, &plain);
    let autodiff = plain.clone().autodiff();
    let grad = cross_entropy_grad(
        &Tensor::from_data(TensorData::new(x.clone(), [n, v]), &autodiff),
        &Tensor::from_data(t.to_data(), &autodiff),
        &Tensor::from_data(w.to_data(), &autodiff),
        true,
    );
    // Seen as [1, 1, N, V] so the helper's 4-D tensors carry it.
    check_finite_differences(
        "d logits",
        &x,
        [1, 1, n, v],
        &grad,
        |x| {
            let rows = cross_entropy::cross_entropy(x.reshape([n, v]), t.clone(), true);
            (rows * w.clone()).sum().into_scalar()
        },
        &plain,
    );
}

/// 50 steps of `tiny` on wgpu with the kernels and without: the same loss curve.
#[test]
fn training_with_kernels_matches_without() {
    let device = wgpu();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let curve = |kernels: bool| -> Vec<f32> {
        let mut p = common::tiny(tokenizer.vocab_size());
        p.model.kernels = kernels;
        p.train.max_steps = 50;
        let mut trainer = Trainer::new(p, tokenizer.clone(), &corpus, &device).unwrap();
        (0..50).map(|_| trainer.step().unwrap().loss).collect()
    };
    let (on, off) = (curve(true), curve(false));
    for (step, (a, b)) in on.iter().zip(&off).enumerate() {
        assert!(
            (a - b).abs() <= 2e-3 * b.abs(),
            "step {step}: loss {a} with kernels, {b} without"
        );
    }
    assert!(
        on[49] < on[0] - 0.3,
        "the loss falls: {} -> {}",
        on[0],
        on[49]
    );
}

/// (N, C): one row, widths that are not multiples of the workgroup (64), more rows than one
/// dispatch dimension holds.
const NORM_SHAPES: &[(usize, usize)] = &[(1, 5), (3, 32), (37, 100), (300, 384), (70_000, 4)];

/// The LayerNorms' ε: not Burn's default, so a kernel that ignored the one it is given fails.
const LN_EPS: f64 = 1e-2;

/// A LayerNorm (with bias) and an RMSNorm of width `c` with random parameters.
fn norms(c: usize, device: &Device) -> (LayerNorm, RmsNorm) {
    let mut ln = LayerNormConfig::new(c)
        .with_bias(true)
        .with_epsilon(LN_EPS)
        .init(device);
    ln.gamma = Param::from_tensor(random([c], device));
    ln.beta = Some(Param::from_tensor(random([c], device)));
    let mut rms = RmsNormConfig::new(c).with_epsilon(1e-6).init(device);
    rms.gamma = Param::from_tensor(random([c], device));
    (ln, rms)
}

/// Both row-sum designs: lavapipe has subgroups, so neither goes untested here (an adapter without
/// them fails this rather than testing the tree alone).
fn sums(device: &Device) -> Vec<Sum> {
    let sums = Sum::available(device);
    assert_eq!(sums, Sum::ALL, "the adapter has no subgroups");
    sums
}

/// Where the fused norms run: wgpu with each row-sum design, and the CPU backend's loop (which
/// has one design).
fn norm_targets() -> Vec<(Device, Sum)> {
    let gpu = wgpu();
    let cpu = Device::flex();
    assert!(kiln::kernels::cpu_or_wgpu(&cpu));
    let mut targets: Vec<_> = sums(&gpu).into_iter().map(|s| (gpu.clone(), s)).collect();
    targets.push((cpu, Sum::Tree));
    targets
}

#[test]
fn norm_forward_matches_reference() {
    for (device, sum) in norm_targets() {
        for &(n, c) in NORM_SHAPES {
            let (ln, rms) = norms(c, &device);
            let x = random([n, c], &device).mul_scalar(2.0).add_scalar(0.5);
            assert_close(
                &format!("layer norm {n}x{c} {sum:?} {device:?}"),
                values(norm::layer_norm(&ln, x.clone(), LN_EPS, Some(sum))),
                values(ln.forward(x.clone())),
            );
            assert_close(
                &format!("rms norm {n}x{c} {sum:?} {device:?}"),
                values(norm::rms_norm(&rms, x.clone(), Some(sum))),
                values(rms.forward(x)),
            );
        }
    }
}

/// Gradients of `Σ w ⊙ norm(x)` for x, γ and (LayerNorm) β.
fn norm_grads(
    ln: &LayerNorm,
    rms: &RmsNorm,
    x: &Tensor<2>,
    w: &Tensor<2>,
    kernel: Option<Sum>,
) -> Vec<Vec<f32>> {
    let x = x.clone().require_grad();
    let y = norm::layer_norm(ln, x.clone(), LN_EPS, kernel);
    let grads = (y * w.clone()).sum().backward();
    let beta = ln.beta.as_ref().unwrap().val();
    let mut out = vec![
        values(x.grad(&grads).unwrap()),
        values(ln.gamma.val().grad(&grads).unwrap()),
        values(beta.grad(&grads).unwrap()),
    ];
    let y = norm::rms_norm(rms, x.clone(), kernel);
    let grads = (y * w.clone()).sum().backward();
    out.push(values(x.grad(&grads).unwrap()));
    out.push(values(rms.gamma.val().grad(&grads).unwrap()));
    out
}

#[test]
fn norm_grad_matches_reference() {
    for (device, sum) in norm_targets() {
        let device = device.autodiff();
        for &(n, c) in &NORM_SHAPES[..4] {
            let (ln, rms) = norms(c, &device);
            let x = random([n, c], &device).mul_scalar(2.0).add_scalar(0.5);
            let w = random([n, c], &device);
            let fused = norm_grads(&ln, &rms, &x, &w, Some(sum));
            let reference = norm_grads(&ln, &rms, &x, &w, None);
            let names = [
                "layer norm dx",
                "layer norm dγ",
                "layer norm dβ",
                "rms dx",
                "rms dγ",
            ];
            for (name, (got, want)) in names.iter().zip(fused.into_iter().zip(reference)) {
                assert_close(&format!("{name} {n}x{c} {sum:?} {device:?}"), got, want);
            }
        }
    }
}

#[test]
fn norm_grad_matches_finite_differences() {
    let (n, c) = (2, 9);
    for (device, sum) in norm_targets() {
        let device = device.autodiff();
        let (ln, rms) = norms(c, &device);
        let x = values(random([n, c], &device));
        let w = random([n, c], &device);
        let x_t = Tensor::from_data(TensorData::new(x.clone(), [n, c]), &device);
        let grads = norm_grads(&ln, &rms, &x_t, &w, Some(sum));
        check_finite_differences(
            &format!("layer norm dx {sum:?}"),
            &x,
            [1, 1, n, c],
            &grads[0],
            |x| {
                (norm::layer_norm(&ln, x.reshape([n, c]), LN_EPS, Some(sum)) * w.clone())
                    .sum()
                    .into_scalar()
            },
            &device,
        );
        check_finite_differences(
            &format!("rms norm dx {sum:?}"),
            &x,
            [1, 1, n, c],
            &grads[3],
            |x| {
                (norm::rms_norm(&rms, x.reshape([n, c]), Some(sum)) * w.clone())
                    .sum()
                    .into_scalar()
            },
            &device,
        );
    }
}

/// The fused GELU against its reference, values and gradients: a transposed (non-contiguous)
/// input, and one long enough that the workgroups wrap into the grid's second dimension.
#[test]
fn gelu_matches_reference() {
    let device = wgpu().autodiff();
    let x = random([53, 37], &device).mul_scalar(3.0).transpose();
    let w = random([37, 53], &device);
    let grad = |fused: bool| {
        let x = x.clone().require_grad();
        let y = gelu::gelu_tanh(x.clone(), fused);
        let grads = (y.clone() * w.clone()).sum().backward();
        (values(y), values(x.grad(&grads).expect("a gradient")))
    };
    let ((y, dx), (y_ref, dx_ref)) = (grad(true), grad(false));
    assert_close("gelu 37x53", y, y_ref);
    assert_close("d gelu 37x53", dx, dx_ref);

    let long = random([65535 * 64 + 5], &wgpu()).mul_scalar(4.0);
    assert_close(
        "gelu over 2-D workgroups",
        values(gelu::gelu_tanh(long.clone(), true)),
        values(gelu::reference(long)),
    );
}

/// Five AdamW steps with the fused kernel (and the CPU backend's loop) and with the reference:
/// the same parameters and moments, with and without weight decay, while the parameters move by
/// more than 1e-2.
#[test]
fn adamw_matches_reference() {
    let cpu = Device::flex();
    assert!(kiln::kernels::cpu_or_wgpu(&cpu));
    let runs = [(1, 0.0), (1000, 0.1), (70_001, 0.1)];
    for (device, (n, weight_decay)) in [wgpu(), cpu].iter().flat_map(|d| runs.map(|r| (d, r))) {
        let init = random([n], device);
        let mut fused = (init.clone(), init.zeros_like(), init.zeros_like());
        let mut reference = fused.clone();
        for t in 1..=5 {
            // Mostly positive, so the steps add up rather than cancel.
            let grad = random([n], device).add_scalar(2.0);
            let h = adamw::Hyper {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay,
                t,
            };
            let (p, m, v) = fused;
            fused = adamw::step(p, grad.clone(), m, v, h, true);
            let (p, m, v) = reference;
            reference = adamw::reference(p, grad, m, v, h);
        }
        let moved = values((fused.0.clone() - init).abs().max());
        assert!(moved[0] > 1e-2, "the parameters move: {moved:?}");
        assert_close(
            &format!("adamw p {n} {device:?}"),
            values(fused.0),
            values(reference.0),
        );
        assert_close(
            &format!("adamw m {n} {device:?}"),
            values(fused.1),
            values(reference.1),
        );
        assert_close(
            &format!("adamw v {n} {device:?}"),
            values(fused.2),
            values(reference.2),
        );
    }
}

/// Generation's path on wgpu: with the kernels, logits from the KV cache (one query over the
/// cached keys) match a full forward pass with the plain ops, for both position and norm kinds.
#[test]
fn kv_cache_with_kernels_matches_plain_full_pass() {
    let device = wgpu();
    for (position, norm) in [
        (Position::Learned, Norm::LayerNorm),
        (Position::Rope, Norm::RmsNorm),
    ] {
        let mut c = common::tiny(30).model;
        (c.position, c.norm) = (position, norm);
        let fused = Gpt::new(&c, 1, &device);
        c.kernels = false;
        let plain = Gpt::new(&c, 1, &device);
        let ids = |s: &[i64]| {
            Tensor::<2, Int>::from_data(TensorData::new(s.to_vec(), [1, s.len()]), &device)
        };
        let mut seq = vec![1i64, 5, 9, 2];
        let mut cache = KvCache::default();
        let mut pending = seq.clone();
        for step in 0..12 {
            let cached = fused.forward(ids(&pending), Some(&mut cache)).unwrap();
            let t = pending.len();
            let full = plain.forward(ids(&seq), None).unwrap();
            let n = seq.len();
            assert_close(
                &format!("{position:?} {norm:?} step {step}"),
                values(cached.slice([0..1, t - 1..t]).flatten::<1>(0, 2)),
                values(full.slice([0..1, n - 1..n]).flatten::<1>(0, 2)),
            );
            let next = (step * 11 + 7) % 30;
            seq.push(next);
            pending = vec![next];
        }
    }
}

/// (M, K, N): one element, sizes that are not multiples of the tiles (32 and 64) or of the
/// staged kernel's 16-deep K slice, whole slices over two rows of 64-tiles, and a long thin
/// product like a linear layer's.
const MATMUL_SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (3, 17, 5),
    (65, 33, 130),
    (130, 64, 70),
    (200, 128, 512),
    (1, 300, 64),
];

/// Kiln's two matmul kernels.
const KERNELS: [Variant; 2] = [Variant::Registers, Variant::Staged];

/// `t`'s values on `device`.
fn on<const D: usize>(t: &Tensor<D>, device: &Device) -> Tensor<D> {
    Tensor::from_data(t.to_data(), device)
}

/// Against Burn's matmul on the CPU backend (on lavapipe Burn autotunes every new shape, which
/// would take most of the test's time).
#[test]
fn matmul_kernels_match_burn_including_transposed_views() {
    let (device, cpu) = (wgpu(), Device::flex());
    for &(m, k, n) in MATMUL_SHAPES {
        let (a, b) = (random([m, k], &cpu), random([k, n], &cpu));
        // Aᵀ and Bᵀ as views (swapped strides), as the backward pass reads them.
        let (at, bt) = (on(&a, &device).transpose(), on(&b, &device).transpose());
        for variant in KERNELS {
            assert_close(
                &format!("{variant:?} {m}x{k}x{n}"),
                values(matmul::matmul(on(&a, &device), on(&b, &device), variant)),
                values(a.clone().matmul(b.clone())),
            );
            assert_close(
                &format!("{variant:?} of transposes {m}x{k}x{n}"),
                values(matmul::matmul(bt.clone(), at.clone(), variant)),
                values(b.clone().transpose().matmul(a.clone().transpose())),
            );
        }
    }
}

#[test]
fn matmul_kernel_grads_match_burn() {
    let (device, cpu) = (wgpu().autodiff(), Device::flex().autodiff());
    for &(m, k, n) in MATMUL_SHAPES {
        let (a, b, w) = (
            random([m, k], &cpu),
            random([k, n], &cpu),
            random([m, n], &cpu),
        );
        let grads = |variant: Variant, device: &Device| {
            let (a, b) = (on(&a, device).require_grad(), on(&b, device).require_grad());
            let g = (matmul::matmul(a.clone(), b.clone(), variant) * on(&w, device))
                .sum()
                .backward();
            [values(a.grad(&g).unwrap()), values(b.grad(&g).unwrap())]
        };
        let [da_ref, db_ref] = grads(Variant::Burn, &cpu);
        for variant in KERNELS {
            let [da, db] = grads(variant, &device);
            assert_close(&format!("d a {variant:?} {m}x{k}x{n}"), da, da_ref.clone());
            assert_close(&format!("d b {variant:?} {m}x{k}x{n}"), db, db_ref.clone());
        }
    }
}

/// The tuner times every matmul variant, attention tile and norm row sum at the model's shapes,
/// finds them all right on lavapipe, and chooses the fastest of each; it leaves the choice to the
/// caller.
#[test]
fn kernel_tuning_times_every_variant_and_picks_the_fastest() {
    let device = wgpu();
    let before = (matmul::chosen(), attention::chosen_tile(), norm::chosen());
    let model = common::tiny(65).model;
    let t = backend::block_on(kiln::bench::tune(&model, &device)).unwrap();
    assert!(!t.remembered);
    assert_eq!(t.key, kiln::bench::tuning_key(&model));
    let (m, h) = (model.block_size.clamp(64, 128), model.n_head);
    assert_eq!(t.matmul.shape, [m, model.n_embd, 4 * model.n_embd]);
    let variants: Vec<Variant> = t.matmul.timings.iter().map(|t| t.variant).collect();
    assert_eq!(variants, Variant::ALL);
    let attention = t
        .attention
        .as_ref()
        .expect("tiny's attention runs the fused kernels");
    let t_attn = model.block_size.min(128);
    assert_eq!(attention.shape, [h, t_attn, model.n_embd / h]);
    let tiles: Vec<u32> = attention.timings.iter().map(|t| t.variant).collect();
    assert_eq!(tiles, TILES);
    for v in &t.matmul.timings {
        eprintln!(
            "matmul {:?}: {:.2} ms, error {:e}",
            v.variant, v.ms, v.error
        );
        assert!(v.ms > 0.0 && v.error < 1e-5, "{v:?}");
    }
    for v in &attention.timings {
        eprintln!(
            "attention tile {}: {:.2} ms, error {:e}",
            v.variant, v.ms, v.error
        );
        assert!(v.ms > 0.0 && v.error < 1e-5, "{v:?}");
    }
    let fastest = t.matmul.timings.iter().min_by(|x, y| x.ms.total_cmp(&y.ms));
    assert_eq!(t.matmul.chosen, fastest.unwrap().variant);
    let fastest = attention
        .timings
        .iter()
        .min_by(|x, y| x.ms.total_cmp(&y.ms));
    assert_eq!(attention.chosen, fastest.unwrap().variant);
    let norms = t.norm.as_ref().expect("lavapipe has subgroups");
    assert_eq!(norms.shape, [512, model.n_embd]);
    let designs: Vec<Sum> = norms.timings.iter().map(|t| t.variant).collect();
    assert_eq!(designs, Sum::ALL);
    for v in &norms.timings {
        eprintln!("norm {:?}: {:.2} ms, error {:e}", v.variant, v.ms, v.error);
        assert!(v.ms > 0.0 && v.error < 1e-5, "{v:?}");
    }
    let fastest = norms.timings.iter().min_by(|x, y| x.ms.total_cmp(&y.ms));
    assert_eq!(norms.chosen, fastest.unwrap().variant);
    assert_eq!(
        (matmul::chosen(), attention::chosen_tile(), norm::chosen()),
        before
    );
    // The page shows and caches the choice by name.
    for v in Variant::ALL {
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!("\"{}\"", v.name())
        );
    }
    for s in Sum::ALL {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.name())
        );
    }
    // An LSTM has no attention or norms to tune.
    let mut lstm = model.clone();
    lstm.arch = kiln::config::Arch::Lstm;
    let t = backend::block_on(kiln::bench::tune(&lstm, &device)).unwrap();
    assert!(t.attention.is_none() && t.norm.is_none());
}

/// Mixed precision on lavapipe (it offers shader-f16): 30 steps of `tiny` follow the f32 run.
#[test]
fn mixed_precision_trains_like_f32() {
    let device = wgpu();
    assert!(
        kiln::kernels::supports_f16(&device),
        "lavapipe offers shader-f16"
    );
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let curve = |mixed: bool| -> Vec<f32> {
        let mut p = common::tiny(tokenizer.vocab_size());
        p.model.mixed_precision = mixed;
        p.train.max_steps = 30;
        let mut trainer = Trainer::new(p, tokenizer.clone(), &corpus, &device).unwrap();
        assert_eq!(trainer.mixed_precision(), mixed);
        (0..30).map(|_| trainer.step().unwrap().loss).collect()
    };
    let (mixed, full) = (curve(true), curve(false));
    for (step, (a, b)) in mixed.iter().zip(&full).enumerate() {
        assert!(
            (a - b).abs() <= 2e-2 * b.abs(),
            "step {step}: loss {a} in mixed precision, {b} in f32"
        );
    }
    assert!(mixed[29] < mixed[0] - 0.3, "{} -> {}", mixed[0], mixed[29]);
}

/// A loss scale that overflows f16 gradients: the step leaves the weights as they were and
/// halves the scale; the next step, at a sane scale, trains.
#[test]
fn loss_scale_overflow_skips_the_step_and_halves_the_scale() {
    let device = wgpu();
    let corpus = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&corpus);
    let mut p = common::tiny(tokenizer.vocab_size());
    p.model.mixed_precision = true;
    let mut trainer = Trainer::new(p, tokenizer, &corpus, &device).unwrap();
    // The weights themselves, exactly (an f16 forward pass need not repeat bit for bit).
    let probe = |trainer: &Trainer| {
        kiln::checkpoint::Checkpoint::from_trainer(trainer)
            .unwrap()
            .weights
    };
    let before = probe(&trainer);
    trainer.set_loss_scale(1e30);
    let m = trainer.step().unwrap();
    assert!(
        !m.grad_norm.is_finite(),
        "the gradients overflowed: {}",
        m.grad_norm
    );
    assert_eq!(trainer.loss_scale(), 5e29);
    assert_eq!(probe(&trainer), before, "a skipped step changes no weight");
    trainer.set_loss_scale(kiln::train::INIT_LOSS_SCALE);
    let m = trainer.step().unwrap();
    assert!(m.grad_norm.is_finite());
    assert_ne!(probe(&trainer), before, "the next step trains");
}

/// The same seed on the same backend gives the same losses, bit for bit, for 20 steps (with
/// the fused kernels, as the model trains by default).
#[test]
fn same_seed_same_losses_for_20_steps_on_wgpu() {
    let first = common::tiny_losses(&wgpu(), 20);
    assert_eq!(first, common::tiny_losses(&wgpu(), 20));
    assert!(first[19] < first[0]);
}
