// Fused self-attention (causal or bidirectional, as the forward), backward part 1: dQ and Δ.
//
// With P[i, j] = exp(S[i, j] − LSE[i]) recomputed from the forward's log-sum-exp (S as in
// attention_forward.wgsl), for every batch·head b and query row i:
//   Δ[b, i]     = Σ_d dO[b, i, d] · O[b, i, d]
//   dS[i, j]    = P[i, j] · (dO[b, i, :] · V[b, j, :] − Δ[b, i])
//   dQ[b, i, :] = scale · Σ_j dS[i, j] · K[b, j, :]
// Δ is written for attention_backward_dkv.wgsl, which runs next on the same queue.
//
// Layout: Q, O, dO, dQ [BH, T_q, D]; K, V [BH, T_k, D]; LSE, Δ [BH, T_q]; f32, contiguous.
// info = [BH, T_q, T_k, bitcast<u32>(scale)]. Dispatch: (ceil(T_q / BR), BH, 1) workgroups of
// BR invocations, one query row each; K and V stream through workgroup memory BC rows at a time.
// Limits: D ≤ 128; workgroup memory 2 · BC · D · 4 bytes; any T.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> info: array<u32>;

const D: u32 = {{ d }}u;
const BR: u32 = {{ br }}u;
const BC: u32 = {{ bc }}u;
const CAUSAL: bool = {{ causal }}u == 1u;

var<workgroup> k_tile: array<f32, BC * D>;
var<workgroup> v_tile: array<f32, BC * D>;

@compute @workgroup_size({{ br }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) r: u32) {
    let u = uniform_sizes(r);
    let t_q = u.y;
    let t_k = u.z;
    let scale = bitcast<f32>(u.w);
    let bh = wg.y;
    let offset = t_k - t_q;
    let i = wg.x * BR + r;
    let live = i < t_q;
    let last_key = select(t_k - 1u, min(t_q, wg.x * BR + BR) - 1u + offset, CAUSAL);
    let my_last = select(t_k - 1u, i + offset, CAUSAL);

    let row = (bh * t_q + min(i, t_q - 1u)) * D;
    var qr: array<f32, D>;
    var dor: array<f32, D>;
    var acc: array<f32, D>;
    var dlt = 0.0;
    for (var d = 0u; d < D; d++) {
        qr[d] = q[row + d] * scale;
        dor[d] = d_o[row + d];
        acc[d] = 0.0;
        dlt += dor[d] * o[row + d];
    }
    let my_lse = lse[bh * t_q + min(i, t_q - 1u)];
    let kv_base = bh * t_k * D;

    for (var j0 = 0u; j0 <= last_key; j0 += BC) {
        let n = min(BC, last_key + 1u - j0);
        for (var e = r; e < n * D; e += BR) {
            k_tile[e] = k[kv_base + j0 * D + e];
            v_tile[e] = v[kv_base + j0 * D + e];
        }
        workgroupBarrier();
        if (live && j0 <= my_last) {
            let visible = min(n, my_last + 1u - j0);
            for (var jj = 0u; jj < visible; jj++) {
                var s = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < D; d++) {
                    s += qr[d] * k_tile[jj * D + d];
                    dp += dor[d] * v_tile[jj * D + d];
                }
                let ds = exp(s - my_lse) * (dp - dlt);
                for (var d = 0u; d < D; d++) {
                    acc[d] += ds * k_tile[jj * D + d];
                }
            }
        }
        workgroupBarrier();
    }

    if (live) {
        for (var d = 0u; d < D; d++) {
            dq[row + d] = acc[d] * scale;
        }
        delta[bh * t_q + i] = dlt;
    }
}
