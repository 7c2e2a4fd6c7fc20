// Fused AdamW update: one pass over parameter, gradient and both moments.
//
// For every element i, with bias corrections c1 = 1 − β1^t and c2 = 1 − β2^t:
//   m[i] ← β1 · m[i] + (1 − β1) · g[i]
//   v[i] ← β2 · v[i] + (1 − β2) · g[i]²
//   p[i] ← p[i] · (1 − lr · wd) − lr · (m[i] / c1) / (sqrt(v[i] / c2) + ε)
// which is PyTorch's AdamW (decoupled weight decay) and optim.rs's reference.
//
// Layout: P, G, M, V and the outputs P', M', V' [N] f32 contiguous.
// info = [N, invocations along x, then bitcast<u32> of lr, β1, β2, ε, wd, c1, c2].
// Dispatch: one invocation per element, WG per workgroup, workgroups laid out 2-D (x ≤ 65535).
// Limits: N < 2^32.

// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> p_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * info[1];
    if (i >= info[0]) {
        return;
    }
    let lr = bitcast<f32>(info[2]);
    let beta1 = bitcast<f32>(info[3]);
    let beta2 = bitcast<f32>(info[4]);
    let eps = bitcast<f32>(info[5]);
    let wd = bitcast<f32>(info[6]);
    let c1 = bitcast<f32>(info[7]);
    let c2 = bitcast<f32>(info[8]);
    let grad = g[i];
    let m_new = beta1 * m[i] + (1.0 - beta1) * grad;
    let v_new = beta2 * v[i] + (1.0 - beta2) * grad * grad;
    m_out[i] = m_new;
    v_out[i] = v_new;
    p_out[i] = p[i] * (1.0 - lr * wd) - lr * (m_new / c1) / (sqrt(v_new / c2) + eps);
}
