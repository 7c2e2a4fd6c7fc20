// Workgroup-memory matrix multiply: C [M, N] = A [M, K] · B [K, N], the design for hardware GPUs.
//
// A workgroup of 16 × 16 invocations computes a 64 × 64 tile of C. It walks K in slices of 16:
// all invocations copy the slice's 64 × 16 block of A and 16 × 64 block of B into workgroup
// memory (4 + 4 elements each), wait at a barrier, and each multiplies its 4 × 4 block out of
// workgroup memory: every element read from memory feeds 64 FMAs, against 4 in the
// register-blocked `matmul.wgsl`. Invocation (x, y) owns rows y, y+16, y+32, y+48 and columns
// x, x+16, x+32, x+48 of the tile, so neighbouring invocations read neighbouring words of the
// staged blocks. The price is two barriers per slice, which CPU emulators pay dearly (a barrier
// switches between all 256 invocations); the page times both designs on its adapter and keeps
// the faster (crate/src/bench.rs, `tune_matmul`).
//
// Layout: A, B, C f32; info = [M, N, K, A row stride, A column stride, B row stride,
// B column stride] in elements. Dispatch: (ceil(N / 64), ceil(M / 64), 1) workgroups of 16 × 16.
// Limits: M, N ≤ 64 · 65535; 8 KiB of workgroup memory.
//
// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

// The slice of A transposed (element [r, kk] at kk * 64 + r) and the slice of B ([kk, c] at
// kk * 64 + c): one step of the inner loop reads one 64-wide row of each.
var<workgroup> tile_a: array<f32, 1024>;
var<workgroup> tile_b: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // K bounds the loop around the barriers, so it must be uniform.
    let sizes = uniform_sizes(li);
    let m = sizes.x;
    let n = sizes.y;
    let k = sizes.z;
    let a_row = info[3];
    let a_col = info[4];
    let b_row = info[5];
    let b_col = info[6];
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k; k0 += 16u) {
        for (var i = 0u; i < 4u; i++) {
            let e = li + 256u * i;
            // A's block: consecutive invocations take consecutive kk (A's contiguous axis in
            // the forward pass). Out-of-range elements read a valid one and stage a zero.
            let r = row0 + e / 16u;
            let ka = k0 + e % 16u;
            let va = a[min(r, m - 1u) * a_row + min(ka, k - 1u) * a_col];
            tile_a[(e % 16u) * 64u + e / 16u] = select(0.0, va, r < m && ka < k);
            // B's block: consecutive invocations take consecutive columns.
            let col = col0 + e % 64u;
            let kb = k0 + e / 64u;
            let vb = b[min(kb, k - 1u) * b_row + min(col, n - 1u) * b_col];
            tile_b[e] = select(0.0, vb, col < n && kb < k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let ra = kk * 64u + lid.y;
            let cb = kk * 64u + lid.x;
            let bv = vec4<f32>(tile_b[cb], tile_b[cb + 16u], tile_b[cb + 32u], tile_b[cb + 48u]);
            acc0 = fma(vec4<f32>(tile_a[ra]), bv, acc0);
            acc1 = fma(vec4<f32>(tile_a[ra + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(tile_a[ra + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(tile_a[ra + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let cj = col0 + lid.x + 16u * j;
            if (r < m && cj < n) {
                c[r * n + cj] = acc[i][j];
            }
        }
    }
}
