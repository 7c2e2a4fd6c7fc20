// Peak f32 throughput probe: independent fused multiply-add chains, nothing else.
//
// Every invocation i runs 8 independent vec4 chains for ITERS iterations,
//   a_c ← a_c · b + k_c          (one vec4 FMA = 8 flops)
// seeded from X[i], and writes the chains' sum to Y[i] so no work can be optimised away.
// Flops = N · ITERS · 8 chains · 8. The multiplier b < 1 keeps the values finite.
//
// Layout: X, Y [N] f32. Dispatch: N / WG workgroups of WG invocations (N a multiple of WG,
// N / WG ≤ 65535); info = [N]. Template: ITERS, WG.

// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

const ITERS: u32 = {{ iters }}u;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= info[0]) {
        return;
    }
    let s = x[i];
    let b = vec4<f32>(0.999, 0.998, 0.997, 0.996);
    var a0 = vec4<f32>(s);
    var a1 = vec4<f32>(s + 1.0);
    var a2 = vec4<f32>(s + 2.0);
    var a3 = vec4<f32>(s + 3.0);
    var a4 = vec4<f32>(s + 4.0);
    var a5 = vec4<f32>(s + 5.0);
    var a6 = vec4<f32>(s + 6.0);
    var a7 = vec4<f32>(s + 7.0);
    for (var it = 0u; it < ITERS; it++) {
        a0 = fma(a0, b, vec4<f32>(0.001));
        a1 = fma(a1, b, vec4<f32>(0.002));
        a2 = fma(a2, b, vec4<f32>(0.003));
        a3 = fma(a3, b, vec4<f32>(0.004));
        a4 = fma(a4, b, vec4<f32>(0.005));
        a5 = fma(a5, b, vec4<f32>(0.006));
        a6 = fma(a6, b, vec4<f32>(0.007));
        a7 = fma(a7, b, vec4<f32>(0.008));
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    y[i] = t.x + t.y + t.z + t.w;
}
