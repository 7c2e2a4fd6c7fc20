// Fused LayerNorm / RMSNorm, forward: one workgroup normalises one row.
//
// For every row r of X [N, C]:
//   LayerNorm: μ = mean(X[r]),  σ⁻¹ = 1 / sqrt(mean((X[r] − μ)²) + ε)
//   RMSNorm:   μ = 0,           σ⁻¹ = 1 / sqrt(mean(X[r]²) + ε)
//   Y[r, c] = (X[r, c] − μ) · σ⁻¹ · γ[c] + β[c]
// μ and σ⁻¹ are saved for the backward pass (norm_backward.wgsl).
//
// Layout: X, Y [N, C] f32 contiguous; γ, β [C] (β is zeros when the norm has no bias); MEAN,
// RSTD [N]. info = [N, C, workgroups along x, bitcast<u32>(ε)]. Dispatch: N workgroups of WG
// invocations, laid out (min(N, 65535), ceil(N / 65535)); each invocation sums a strided slice
// of the row, merged by workgroup_sum (shaders/workgroup_sum.wgsl, which the host appends).
// Template: RMS = 1u for RMSNorm. Limits: WG a power of two ≤ 256; any N, C.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;

const WG: u32 = {{ wg }}u;
const RMS: bool = {{ rms }}u == 1u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let u = uniform_sizes(lid);
    let n = u.x;
    let c = u.y;
    let eps = bitcast<f32>(info[3]);
    let row = wg.x + wg.y * u.z;
    if (row >= n) {
        return;
    }
    let base = row * c;
    var mu = 0.0;
    if (!RMS) {
        var s = 0.0;
        for (var i = lid; i < c; i += WG) {
            s += x[base + i];
        }
        mu = workgroup_sum(lid, s) / f32(c);
    }
    var sq = 0.0;
    for (var i = lid; i < c; i += WG) {
        let d = x[base + i] - mu;
        sq += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(lid, sq) / f32(c) + eps);
    for (var i = lid; i < c; i += WG) {
        y[base + i] = (x[base + i] - mu) * inv * gamma[i] + beta[i];
    }
    if (lid == 0u) {
        mean[row] = mu;
        rstd[row] = inv;
    }
}
