// Fused self-attention, forward (FlashAttention-style), causal (a GPT) or bidirectional (an
// encoder), chosen by the template constant CAUSAL.
//
// Computes, for every batch·head b and query row i (at absolute position i + T_k − T_q):
//   S[j]      = Q[b, i, :] · K[b, j, :] · scale            for keys j ≤ i + T_k − T_q (causal),
//                                                           every key j < T_k (bidirectional)
//   O[b, i, :] = Σ_j softmax(S)[j] · V[b, j, :]
//   LSE[b, i] = log Σ_j exp(S[j])                          (saved for the backward pass)
//
// Layout: Q, O [BH, T_q, D]; K, V [BH, T_k, D]; LSE [BH, T_q]; f32, contiguous, row-major.
// info = [BH, T_q, T_k, bitcast<u32>(scale)], T_q ≤ T_k (T_q < T_k: a KV cache holds the past).
// Dispatch: (ceil(T_q / BR), BH, 1) workgroups of BR invocations; invocation r owns query row
// wg.x · BR + r. Keys and values stream through workgroup memory BC rows at a time with an online
// softmax (running max m and sum l), so the T_q × T_k score matrix is never stored.
// Limits: D ≤ 128 (each invocation keeps a query row and an accumulator of D floats);
// workgroup memory 2 · BC · D · 4 bytes, chosen by the host to fit the adapter; any T.

// Bindings are all read_write: CubeCL may place several tensors in one wgpu buffer, and a
// buffer may not be both read-only and writable in one dispatch. The sizes come through
// uniform_sizes (shaders/uniform_sizes.wgsl, which the host appends).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

const D: u32 = {{ d }}u;
const BR: u32 = {{ br }}u;
const BC: u32 = {{ bc }}u;
const CAUSAL: bool = {{ causal }}u == 1u;
// Below any score; WGSL has no infinity literal.
const NEG_BIG: f32 = -3.0e38;

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
    // The last key any row of this workgroup may see bounds the (uniform) tile loop.
    let last_key = select(t_k - 1u, min(t_q, wg.x * BR + BR) - 1u + offset, CAUSAL);
    let my_last = select(t_k - 1u, i + offset, CAUSAL);

    var qr: array<f32, D>;
    var acc: array<f32, D>;
    let q_row = (bh * t_q + min(i, t_q - 1u)) * D;
    for (var d = 0u; d < D; d++) {
        qr[d] = q[q_row + d] * scale;
        acc[d] = 0.0;
    }
    var m = NEG_BIG;
    var l = 0.0;
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
            var s: array<f32, BC>;
            var m_new = m;
            for (var jj = 0u; jj < visible; jj++) {
                var dot = 0.0;
                for (var d = 0u; d < D; d++) {
                    dot += qr[d] * k_tile[jj * D + d];
                }
                s[jj] = dot;
                m_new = max(m_new, dot);
            }
            let correction = exp(m - m_new);
            l *= correction;
            for (var d = 0u; d < D; d++) {
                acc[d] *= correction;
            }
            for (var jj = 0u; jj < visible; jj++) {
                let p = exp(s[jj] - m_new);
                l += p;
                for (var d = 0u; d < D; d++) {
                    acc[d] += p * v_tile[jj * D + d];
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }

    if (live) {
        let inv = 1.0 / l;
        for (var d = 0u; d < D; d++) {
            o[q_row + d] = acc[d] * inv;
        }
        lse[bh * t_q + i] = m + log(l);
    }
}
