// GELU in GPT-2's tanh approximation, forward, elementwise: Y[i] = X[i] · gelu_gate(X[i])
// (gelu_gate.wgsl, which the host appends). One pass where the plain ops take six
// (crate/src/kernels/gelu.rs's reference).
//
// Layout: X, Y [N] f32 contiguous. info = [N, invocations along x].
// Dispatch: one invocation per element, WG per workgroup, workgroups laid out 2-D (x ≤ 65535).
// Limits: N < 2^32.

// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * info[1];
    if (i >= info[0]) {
        return;
    }
    y[i] = x[i] * gelu_gate(x[i]);
}
