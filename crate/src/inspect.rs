//! Numbers for the page's views inside the model: every layer's attention for a prompt, and the
//! token embeddings projected to 2-D. (The next-token and surprise views are
//! [`crate::generate::next_tokens_async`] and [`crate::generate::score_async`].)

use burn::prelude::*;

use crate::backend::read_f32;
use crate::data::Tokenizer;
use crate::error::Result;
use crate::generate::{prompt_ids, tensor_of};
use crate::model::Gpt;

/// Where each token of a prompt looks.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attention {
    /// The tokens, as text: both the queries (rows) and the keys (columns).
    pub tokens: Vec<String>,
    /// `weights[layer][head][query][key]`: each row sums to 1 over keys `0..=query` and is 0
    /// after it (causal attention).
    pub weights: Vec<Vec<Vec<Vec<f32>>>>,
}

/// [`attention_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn attention(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    max_tokens: usize,
    device: &Device,
) -> Result<Attention> {
    crate::backend::block_on(attention_async(
        model, tokenizer, prompt, max_tokens, device,
    ))
}

/// The attention weights of every layer and head over the last `max_tokens` tokens of `prompt`
/// (at most `block_size`): a map grows with the square of its tokens, so the page asks for a
/// readable few.
pub async fn attention_async(
    model: &Gpt,
    tokenizer: &Tokenizer,
    prompt: &str,
    max_tokens: usize,
    device: &Device,
) -> Result<Attention> {
    let ids = prompt_ids(tokenizer, prompt)?;
    let keep = max_tokens.clamp(1, model.config().block_size);
    let window = &ids[ids.len().saturating_sub(keep)..];
    let t = window.len();
    let mut weights = Vec::with_capacity(model.config().n_layer);
    for map in model.attention_maps(tensor_of(window, device))? {
        let values = read_f32(map).await?;
        let rows: Vec<Vec<f32>> = values.chunks(t).map(<[f32]>::to_vec).collect();
        weights.push(rows.chunks(t).map(<[Vec<f32>]>::to_vec).collect());
    }
    let tokens = window
        .iter()
        .map(|&id| tokenizer.decode(&[id]))
        .collect::<Result<_>>()?;
    Ok(Attention { tokens, weights })
}

/// The token embeddings seen from their two principal axes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Embeddings {
    /// Every token of the vocabulary, in id order.
    pub tokens: Vec<String>,
    /// Each token's coordinates on the first and second principal axes (the embeddings centred).
    pub points: Vec<[f32; 2]>,
    /// The share of the embeddings' total variance along each axis.
    pub explained: [f32; 2],
}

/// [`embeddings_async`], blocking (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn embeddings(model: &Gpt, tokenizer: &Tokenizer) -> Result<Embeddings> {
    crate::backend::block_on(embeddings_async(model, tokenizer))
}

/// PCA of the token embedding matrix: the covariance (`n_embd²`, small) is formed on the device
/// and read back, its top two eigenvectors found on the host, and every token projected on them
/// on the device — so a 50,257-token vocabulary never comes to the host whole. The matrix is
/// read in the parts the device holds it in.
pub async fn embeddings_async(model: &Gpt, tokenizer: &Tokenizer) -> Result<Embeddings> {
    let parts = model.token_embeddings();
    let v: usize = parts.iter().map(|p| p.dims()[0]).sum();
    let c = parts[0].dims()[1];
    let total_of = |xs: Vec<Tensor<2>>| xs.into_iter().reduce(|a, b| a + b).expect("one part");
    let mean = total_of(parts.iter().map(|p| p.clone().sum_dim(0)).collect()) / v as f64;
    let centred: Vec<Tensor<2>> = parts.into_iter().map(|p| p - mean.clone()).collect();
    let cov = total_of(
        centred
            .iter()
            .map(|p| p.clone().transpose().matmul(p.clone()))
            .collect(),
    ) / v as f64;
    let cov: Vec<f64> = read_f32(cov).await?.into_iter().map(f64::from).collect();
    let (axes, variance) = principal_axes(&cov, c);
    let total: f64 = (0..c).map(|i| cov[i * c + i]).sum();
    let axes_data: Vec<f32> = (0..c)
        .flat_map(|i| [axes[0][i] as f32, axes[1][i] as f32])
        .collect();
    let axes = Tensor::<2>::from_data(TensorData::new(axes_data, [c, 2]), &mean.device());
    let mut coords = Vec::with_capacity(2 * v);
    for part in centred {
        coords.extend(read_f32(part.matmul(axes.clone())).await?);
    }
    let tokens = (0..v as u32)
        .map(|id| tokenizer.decode(&[id]))
        .collect::<Result<_>>()?;
    let share = |x: f64| if total > 0.0 { (x / total) as f32 } else { 0.0 };
    Ok(Embeddings {
        tokens,
        points: coords.chunks(2).map(|p| [p[0], p[1]]).collect(),
        explained: [share(variance[0]), share(variance[1])],
    })
}

/// The two leading eigenvectors (unit length, largest component positive) and eigenvalues of a
/// symmetric positive semi-definite `n × n` matrix: orthogonal iteration on a pair of vectors,
/// then the exact 2 × 2 eigenproblem inside the subspace they span (Rayleigh–Ritz), so equal or
/// close eigenvalues still give an orthonormal pair.
fn principal_axes(a: &[f64], n: usize) -> ([Vec<f64>; 2], [f64; 2]) {
    let apply = |x: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| (0..n).map(|j| a[i * n + j] * x[j]).sum())
            .collect()
    };
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let unit = |k: usize| -> Vec<f64> { (0..n).map(|i| f64::from(i == k)).collect() };
    // Scales `v` to unit length; false if it vanished against `scale` (what it was before a
    // projection took parts away): a rank-deficient matrix maps onto fewer directions.
    let normalise = |v: &mut Vec<f64>, scale: f64| {
        let norm = dot(v, v).sqrt();
        v.iter_mut().for_each(|e| *e /= norm);
        norm > 1e-9 * scale && norm > 1e-300
    };
    // Gram–Schmidt on (x, y); a vanished vector is replaced by one orthogonal to the other.
    let orthonormalise = |x: &mut Vec<f64>, y: &mut Vec<f64>| {
        if !normalise(x, 0.0) {
            *x = unit(0);
        }
        let scale = dot(y, y).sqrt();
        let along = dot(x, y);
        y.iter_mut()
            .zip(x.iter())
            .for_each(|(e, b)| *e -= along * b);
        if !normalise(y, scale) {
            let k = (0..n)
                .min_by(|&i, &j| x[i].abs().total_cmp(&x[j].abs()))
                .unwrap_or(0);
            *y = unit(k)
                .iter()
                .zip(x.iter())
                .map(|(e, b)| e - x[k] * b)
                .collect();
            normalise(y, 0.0);
        }
    };
    // A fixed start with components in every direction.
    let mut x: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.7).sin()).collect();
    let mut y: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
    orthonormalise(&mut x, &mut y);
    for _ in 0..1000 {
        let (mut nx, mut ny) = (apply(&x), apply(&y));
        orthonormalise(&mut nx, &mut ny);
        // How far the plane turned: the squared sines of the angles between old and new.
        let kept = |v: &[f64]| dot(v, &x).powi(2) + dot(v, &y).powi(2);
        let turned = 2.0 - kept(&nx) - kept(&ny);
        (x, y) = (nx, ny);
        if turned < 1e-15 {
            break;
        }
    }
    // Rayleigh–Ritz: the 2 × 2 matrix of A in the basis (x, y), diagonalised exactly.
    let (ax, ay) = (apply(&x), apply(&y));
    let (p, q, r) = (dot(&x, &ax), dot(&x, &ay), dot(&y, &ay));
    let mean = (p + r) / 2.0;
    let gap = (((p - r) / 2.0).powi(2) + q * q).sqrt();
    let angle = 0.5 * (2.0 * q).atan2(p - r);
    let (cos, sin) = (angle.cos(), angle.sin());
    let first: Vec<f64> = x.iter().zip(&y).map(|(a, b)| cos * a + sin * b).collect();
    let second: Vec<f64> = x.iter().zip(&y).map(|(a, b)| -sin * a + cos * b).collect();
    // An eigenvector's sign is arbitrary: fix it so the same model always draws the same way.
    let signed = |v: Vec<f64>| {
        let big = v
            .iter()
            .copied()
            .fold(0.0, |m: f64, e| if e.abs() > m.abs() { e } else { m });
        if big < 0.0 {
            v.iter().map(|e| -e).collect()
        } else {
            v
        }
    };
    ([signed(first), signed(second)], [mean + gap, mean - gap])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Q diag(values) Qᵀ` for an orthonormal `Q` from Gram–Schmidt on a fixed pseudo-random
    /// matrix: a symmetric matrix whose eigenvectors are known (the rows of `q`).
    fn with_eigen(values: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
        let n = values.len();
        let mut state = 12345u64;
        let mut random = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut q: Vec<Vec<f64>> = Vec::new();
        for _ in 0..n {
            let mut v: Vec<f64> = (0..n).map(|_| random()).collect();
            for b in &q {
                let along: f64 = v.iter().zip(b).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(b).for_each(|(e, b)| *e -= along * b);
            }
            let norm = v.iter().map(|e| e * e).sum::<f64>().sqrt();
            q.push(v.iter().map(|e| e / norm).collect());
        }
        let a = (0..n * n)
            .map(|ij| {
                (0..n)
                    .map(|k| values[k] * q[k][ij / n] * q[k][ij % n])
                    .sum()
            })
            .collect();
        (a, q)
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn principal_axes_are_the_leading_eigenvectors() {
        let values = [5.0, 3.0, 1.0, 0.5, 0.25, 0.0, 0.0, 2.0];
        let (a, q) = with_eigen(&values);
        let ([first, second], [l1, l2]) = principal_axes(&a, values.len());
        assert!(
            (l1 - 5.0).abs() < 1e-9 && (l2 - 3.0).abs() < 1e-9,
            "{l1} {l2}"
        );
        // Up to sign, the eigenvectors of 5 and 3.
        assert!((dot(&first, &q[0]).abs() - 1.0).abs() < 1e-9);
        assert!((dot(&second, &q[1]).abs() - 1.0).abs() < 1e-9);
        // The sign rule: the largest component is positive.
        for v in [&first, &second] {
            let big = v
                .iter()
                .copied()
                .fold(0.0, |m: f64, e| if e.abs() > m.abs() { e } else { m });
            assert!(big > 0.0);
        }
    }

    /// Equal leading eigenvalues (any orthonormal pair in their plane is right) and a rank-one
    /// matrix (the second axis is any unit vector orthogonal to the first).
    #[test]
    fn principal_axes_of_degenerate_matrices() {
        let (a, q) = with_eigen(&[4.0, 4.0, 1.0, 0.0]);
        let ([x, y], [l1, l2]) = principal_axes(&a, 4);
        assert!(
            (l1 - 4.0).abs() < 1e-9 && (l2 - 4.0).abs() < 1e-9,
            "{l1} {l2}"
        );
        for v in [&x, &y] {
            let in_plane = dot(v, &q[0]).powi(2) + dot(v, &q[1]).powi(2);
            assert!((in_plane - 1.0).abs() < 1e-9, "{in_plane}");
        }
        assert!(dot(&x, &y).abs() < 1e-12);

        let (a, q) = with_eigen(&[2.0, 0.0, 0.0]);
        let ([x, y], [l1, l2]) = principal_axes(&a, 3);
        assert!((l1 - 2.0).abs() < 1e-12 && l2.abs() < 1e-12, "{l1} {l2}");
        assert!((dot(&x, &q[0]).abs() - 1.0).abs() < 1e-12);
        assert!(dot(&x, &y).abs() < 1e-12 && (dot(&y, &y) - 1.0).abs() < 1e-12);

        let ([x, y], [l1, l2]) = principal_axes(&[0.0; 9], 3);
        assert_eq!((l1, l2), (0.0, 0.0));
        assert!(dot(&x, &y).abs() < 1e-12 && (dot(&x, &x) - 1.0).abs() < 1e-12);
    }
}
