// Fused LayerNorm / RMSNorm, backward for the parameters: partial column sums.
//
// With x̂ as in norm_backward.wgsl, for column c and a chunk k of ROWS consecutive rows:
//   dγ_part[k, c] = Σ_{r in chunk k} dY[r, c] · x̂[r, c]
//   dβ_part[k, c] = Σ_{r in chunk k} dY[r, c]
// The host adds the ceil(N / ROWS) chunks (a short sum over the first axis).
//
// Layout: X, dY [N, C] f32 contiguous; MEAN, RSTD [N]; dγ_part, dβ_part [ceil(N / ROWS), C].
// info = [N, C]. Dispatch: (ceil(C / WG), ceil(N / ROWS), 1) workgroups of WG invocations, one
// column each. Limits: ceil(N / ROWS) ≤ 65535.

// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;

const ROWS: u32 = {{ rows }}u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = info[0];
    let c = info[1];
    let col = gid.x;
    if (col >= c) {
        return;
    }
    let chunk = wg.y;
    let end = min(n, (chunk + 1u) * ROWS);
    var sg = 0.0;
    var sb = 0.0;
    for (var r = chunk * ROWS; r < end; r++) {
        let g = dy[r * c + col];
        sg += g * (x[r * c + col] - mean[r]) * rstd[r];
        sb += g;
    }
    dgamma[chunk * c + col] = sg;
    dbeta[chunk * c + col] = sb;
}
