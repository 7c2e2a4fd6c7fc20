// Register-blocked matrix multiply: C [M, N] = A [M, K] · B [K, N].
//
// A and B are read through strides (row, column), so transposed views need no copy; C is
// contiguous row-major. A workgroup of 8 × 8 invocations computes a 32 × 32 tile of C: invocation
// (x, y) owns rows 4y..4y+3 and columns x, x+8, x+16, x+24 of the tile, a 4 × 4 block kept in
// registers, and walks K reading A and B straight from memory: per step 4 + 4 loads feed 16 FMAs.
// Columns interleave by 8 so neighbouring invocations read neighbouring elements of B.
// No workgroup memory and no barriers: on CPU-emulated adapters (lavapipe, SwiftShader) a barrier
// costs a switch between all invocations of the group, which a staged tile pays every K slice.
// Hardware GPUs favour the staged design (`matmul_staged.wgsl`); the page times both on its
// adapter and keeps the faster.
//
// Layout: A, B, C f32; info = [M, N, K, A row stride, A column stride, B row stride,
// B column stride] in elements. Dispatch: (ceil(N / 32), ceil(M / 32), 1) workgroups of 8 × 8.
// Limits: M, N ≤ 32 · 65535.
//
// All bindings are read_write: CubeCL may place several tensors in one wgpu buffer, and a buffer
// may not be both read-only and writable in one dispatch.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let k = info[2];
    let a_row = info[3];
    let a_col = info[4];
    let b_row = info[5];
    let b_col = info[6];
    let row = wg.y * 32u + lid.y * 4u;
    let col = wg.x * 32u + lid.x;
    // Out-of-range rows and columns read a valid element and are not written.
    let ra = vec4<u32>(min(row, m - 1u), min(row + 1u, m - 1u), min(row + 2u, m - 1u), min(row + 3u, m - 1u)) * a_row;
    let cb = vec4<u32>(min(col, n - 1u), min(col + 8u, n - 1u), min(col + 16u, n - 1u), min(col + 24u, n - 1u)) * b_col;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k; kk++) {
        let ak = kk * a_col;
        let bk = kk * b_row;
        let bv = vec4<f32>(b[bk + cb.x], b[bk + cb.y], b[bk + cb.z], b[bk + cb.w]);
        acc0 = fma(vec4<f32>(a[ra.x + ak]), bv, acc0);
        acc1 = fma(vec4<f32>(a[ra.y + ak]), bv, acc1);
        acc2 = fma(vec4<f32>(a[ra.z + ak]), bv, acc2);
        acc3 = fma(vec4<f32>(a[ra.w + ak]), bv, acc3);
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let r = row + i;
        for (var j = 0u; j < 4u; j++) {
            let cj = col + 8u * j;
            if (r < m && cj < n) {
                c[r * n + cj] = acc[i][j];
            }
        }
    }
}
