// Fused softmax cross-entropy, backward: the logits' gradient in one elementwise pass.
//
// For LOSS[r] = LSE[r] − X[r, T[r]] (cross_entropy_forward.wgsl) and an upstream gradient G [N]:
//   dX[r, v] = G[r] · (exp(X[r, v] − LSE[r]) − [v = T[r]])
// The softmax is recomputed from the saved LSE, never stored.
//
// Layout: X, dX [N, V] f32 contiguous; T [N] i32; LSE, G [N] f32.
// info = [N, V, invocations along x]. Dispatch: one invocation per element, WG per workgroup,
// workgroups laid out 2-D (x ≤ 65535) so N · V may exceed 65535 · WG. Limits: N · V < 2^32.

// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> t: array<i32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = info[0];
    let v = info[1];
    let e = gid.x + gid.y * info[2];
    if (e >= n * v) {
        return;
    }
    let row = e / v;
    let col = e % v;
    let p = exp(x[e] - lse[row]);
    let hit = select(0.0, 1.0, i32(col) == t[row]);
    dx[e] = g[row] * (p - hit);
}
