// Fused softmax cross-entropy, forward: per-row loss and log-sum-exp in one pass over the logits.
//
// For every row r of logits X [N, V] with target t = T[r]:
//   LSE[r]  = log Σ_v exp(X[r, v])
//   LOSS[r] = LSE[r] − X[r, t]
// The probabilities are never written: the backward recomputes them from LSE.
//
// Layout: X [N, V] f32 contiguous; T [N] i32 (0 ≤ t < V, the caller's contract); LOSS, LSE [N] f32.
// info = [N, V, workgroups along x, 0]. Dispatch: N workgroups of WG invocations, laid out as
// (min(N, 65535), ceil(N / 65535)) to stay under the per-dimension limit. Each invocation keeps
// a running (max, sum of exp) over a strided slice of the row; the WG partial pairs are merged in
// workgroup memory (tree reduction). Limits: WG a power of two ≤ 256; any N, V.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> t: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;

const WG: u32 = {{ wg }}u;
const NEG_BIG: f32 = -3.0e38;

var<workgroup> part_m: array<f32, WG>;
var<workgroup> part_s: array<f32, WG>;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let u = uniform_sizes(lid);
    let n = u.x;
    let v = u.y;
    let row = wg.x + wg.y * u.z;
    if (row >= n) {
        return;
    }
    let base = row * v;
    var m = NEG_BIG;
    var s = 0.0;
    for (var c = lid; c < v; c += WG) {
        let xv = x[base + c];
        let m_new = max(m, xv);
        s = s * exp(m - m_new) + exp(xv - m_new);
        m = m_new;
    }
    part_m[lid] = m;
    part_s[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let m_a = part_m[lid];
            let m_b = part_m[lid + stride];
            let m_new = max(m_a, m_b);
            part_s[lid] = part_s[lid] * exp(m_a - m_new) + part_s[lid + stride] * exp(m_b - m_new);
            part_m[lid] = m_new;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let l = part_m[0] + log(part_s[0]);
        lse[row] = l;
        loss[row] = l - x[base + u32(t[row])];
    }
}
