// Fused LayerNorm / RMSNorm, backward for the input: one workgroup per row.
//
// With x̂ = (X[r] − μ[r]) · σ⁻¹[r] and g = γ ⊙ dY[r] (μ, σ⁻¹ from norm_forward.wgsl):
//   LayerNorm: dX[r] = σ⁻¹ · (g − mean(g) − x̂ · mean(g ⊙ x̂))
//   RMSNorm:   dX[r] = σ⁻¹ · (g − x̂ · mean(g ⊙ x̂))
// The parameters' gradients are column sums over rows: norm_backward_params.wgsl.
//
// Layout: X, dY, dX [N, C] f32 contiguous; γ [C]; MEAN, RSTD [N].
// info = [N, C, workgroups along x, 0]. Dispatch as norm_forward.wgsl; the row sums use
// workgroup_sum (shaders/workgroup_sum.wgsl, which the host appends). Template: RMS = 1u for
// RMSNorm. Limits: WG a power of two ≤ 256; any N, C.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;

const WG: u32 = {{ wg }}u;
const RMS: bool = {{ rms }}u == 1u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let u = uniform_sizes(lid);
    let n = u.x;
    let c = u.y;
    let row = wg.x + wg.y * u.z;
    if (row >= n) {
        return;
    }
    let base = row * c;
    let mu = mean[row];
    let inv = rstd[row];
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = lid; i < c; i += WG) {
        let g = gamma[i] * dy[base + i];
        sum_g += g;
        sum_gx += g * (x[base + i] - mu) * inv;
    }
    let mean_gx = workgroup_sum(lid, sum_gx) / f32(c);
    var mean_g = 0.0;
    if (!RMS) {
        mean_g = workgroup_sum(lid, sum_g) / f32(c);
    }
    for (var i = lid; i < c; i += WG) {
        let xhat = (x[base + i] - mu) * inv;
        dx[base + i] = inv * (gamma[i] * dy[base + i] - mean_g - xhat * mean_gx);
    }
}
