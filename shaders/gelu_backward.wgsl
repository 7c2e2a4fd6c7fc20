// GELU in GPT-2's tanh approximation, backward, elementwise: for Y = X · s with
// s = gelu_gate(X) = sigmoid(A · X + B · X³) (gelu_gate.wgsl, which the host appends),
//   dX[i] = G[i] · (s + X[i] · s · (1 − s) · (A + 3 · B · X[i]²))
// recomputing s from X rather than storing it.
//
// Layout: X, G, dX [N] f32 contiguous. info = [N, invocations along x].
// Dispatch: one invocation per element, WG per workgroup, workgroups laid out 2-D (x ≤ 65535).
// Limits: N < 2^32.

// All bindings are read_write, as in gelu_forward.wgsl.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * info[1];
    if (i >= info[0]) {
        return;
    }
    let v = x[i];
    let s = gelu_gate(v);
    dx[i] = g[i] * (s + v * s * (1.0 - s) * (GELU_A + 3.0 * GELU_B * v * v));
}
