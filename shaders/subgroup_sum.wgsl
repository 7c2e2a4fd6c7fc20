// ---- shaders/subgroup_sum.wgsl, appended by the host in place of workgroup_sum.wgsl ----------
// Sum over a workgroup with subgroup operations (WebGPU's `subgroups` feature), the same contract
// as workgroup_sum.wgsl: every invocation passes its value, in uniform control flow, and gets the
// total. Each subgroup adds its values in registers (subgroupAdd), one invocation per subgroup
// writes that total to workgroup memory, and every invocation adds the WG / size totals: two
// barriers where the tree of workgroup_sum takes log2(WG) + 2.
//
// Assumes a subgroup is a run of consecutive local_invocation_index values, which is what drivers
// do for one-dimensional workgroups but WGSL does not promise: the page's tuning checks this
// variant against the plain ops on the user's adapter and never chooses one that computes wrong.
// Limits: WG a power of two (subgroup sizes are powers of two from 4 to 128, so a subgroup is
// either a whole part of the workgroup or, when larger, the whole workgroup).

var<workgroup> part: array<f32, WG>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    // Every invocation is active here, so this counts the subgroup's members; the first of them
    // writes (naga has no subgroupElect).
    let size = subgroupAdd(1u);
    let total = subgroupAdd(value);
    if (subgroupExclusiveAdd(1u) == 0u) {
        part[lid / size] = total;
    }
    workgroupBarrier();
    var sum = 0.0;
    for (var i = 0u; i < WG / size; i++) {
        sum += part[i];
    }
    workgroupBarrier();
    return sum;
}
