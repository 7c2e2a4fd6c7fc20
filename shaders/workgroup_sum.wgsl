// ---- shaders/workgroup_sum.wgsl, appended by the host ----------------------------------------
// Sum over a workgroup: every invocation passes its value and gets the total (a tree reduction
// in workgroup memory). Shared by the norm kernels, which define WG (a power of two).

var<workgroup> part: array<f32, WG>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    part[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            part[lid] += part[lid + stride];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}
