// Fused self-attention (causal or bidirectional, as the forward), backward part 2: dK and dV.
//
// With P and dS as in attention_backward_dq.wgsl (P recomputed from the forward's LSE, Δ written
// by that kernel), for every batch·head b and key row j, over the queries i that see j
// (i + T_k − T_q ≥ j when causal, every query when bidirectional):
//   dV[b, j, :] = Σ_i P[i, j] · dO[b, i, :]
//   dK[b, j, :] = scale · Σ_i dS[i, j] · Q[b, i, :]
//
// Layout: Q, dO [BH, T_q, D]; K, V, dK, dV [BH, T_k, D]; LSE, Δ [BH, T_q]; f32, contiguous.
// info = [BH, T_q, T_k, bitcast<u32>(scale)]. Dispatch: (ceil(T_k / BR), BH, 1) workgroups of BR
// invocations, one key row each; Q, dO, LSE and Δ stream through workgroup memory BC rows at a
// time. Limits: D ≤ 128; workgroup memory 2 · BC · (D + 1) · 4 bytes; any T.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> d_o: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;
@group(0) @binding(8) var<storage, read_write> info: array<u32>;

const D: u32 = {{ d }}u;
const BR: u32 = {{ br }}u;
const BC: u32 = {{ bc }}u;
const CAUSAL: bool = {{ causal }}u == 1u;

var<workgroup> q_tile: array<f32, BC * D>;
var<workgroup> do_tile: array<f32, BC * D>;
var<workgroup> lse_tile: array<f32, BC>;
var<workgroup> delta_tile: array<f32, BC>;

@compute @workgroup_size({{ br }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) r: u32) {
    let u = uniform_sizes(r);
    let t_q = u.y;
    let t_k = u.z;
    let scale = bitcast<f32>(u.w);
    let bh = wg.y;
    let offset = t_k - t_q;
    let j = wg.x * BR + r;
    let live = j < t_k;
    // Causal: query i sees key j when i + offset ≥ j: the first query any key of this group
    // needs. Bidirectional: every query sees every key.
    let first_key = wg.x * BR;
    let first_query = select(0u, first_key - offset, CAUSAL && first_key > offset);

    let row = (bh * t_k + min(j, t_k - 1u)) * D;
    var kr: array<f32, D>;
    var vr: array<f32, D>;
    var dk_acc: array<f32, D>;
    var dv_acc: array<f32, D>;
    for (var d = 0u; d < D; d++) {
        kr[d] = k[row + d] * scale;
        vr[d] = v[row + d];
        dk_acc[d] = 0.0;
        dv_acc[d] = 0.0;
    }
    let q_base = bh * t_q * D;

    for (var i0 = first_query; i0 < t_q; i0 += BC) {
        let n = min(BC, t_q - i0);
        for (var e = r; e < n * D; e += BR) {
            q_tile[e] = q[q_base + i0 * D + e];
            do_tile[e] = d_o[q_base + i0 * D + e];
        }
        for (var e = r; e < n; e += BR) {
            lse_tile[e] = lse[bh * t_q + i0 + e];
            delta_tile[e] = delta[bh * t_q + i0 + e];
        }
        workgroupBarrier();
        if (live) {
            for (var ii = 0u; ii < n; ii++) {
                if (CAUSAL && i0 + ii + offset < j) {
                    continue;
                }
                var s = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < D; d++) {
                    s += q_tile[ii * D + d] * kr[d];
                    dp += do_tile[ii * D + d] * vr[d];
                }
                let p = exp(s - lse_tile[ii]);
                let ds = p * (dp - delta_tile[ii]);
                for (var d = 0u; d < D; d++) {
                    dv_acc[d] += p * do_tile[ii * D + d];
                    dk_acc[d] += ds * q_tile[ii * D + d];
                }
            }
        }
        workgroupBarrier();
    }

    if (live) {
        for (var d = 0u; d < D; d++) {
            dk[row + d] = dk_acc[d] * scale;
            dv[row + d] = dv_acc[d];
        }
    }
}
