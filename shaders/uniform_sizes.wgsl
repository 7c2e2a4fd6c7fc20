
// ---- shaders/uniform_sizes.wgsl, appended by the host --------------------------------------
// The first four words of `info` (which holds at least four), the same in every invocation.
// WGSL does not treat values read from writable storage as uniform, and the sizes that bound
// loops around barriers must be: invocation 0 stages them in workgroup memory and
// workgroupUniformLoad hands them to all.

var<workgroup> sizes: vec4<u32>;

fn uniform_sizes(lid: u32) -> vec4<u32> {
    if (lid == 0u) {
        sizes = vec4<u32>(info[0], info[1], info[2], info[3]);
    }
    return workgroupUniformLoad(&sizes);
}
