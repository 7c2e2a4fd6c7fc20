//! The adapter's peak f32 throughput, measured by `shaders/fma_peak.wgsl` (independent FMA
//! chains): the yardstick the matmul benchmark is read against.

use burn::backend::Dispatch;
use burn::backend::wgpu::CubeTensor;
use burn::prelude::*;

use super::{KernelOps, Wgsl, empty, launch};

/// Invocations per workgroup.
pub const WG: usize = 256;
/// Flops one invocation does per iteration: 8 chains of vec4 FMAs.
pub const FLOPS_PER_ITER: usize = 8 * 8;

/// Runs `x.len()` invocations of the probe for `iters` iterations each (`x.len()` a multiple of
/// [`WG`]); the result only keeps the work from being optimised away. `None` off the wgpu backend.
pub fn fma(x: Tensor<1>, iters: u32) -> Option<Tensor<1>> {
    super::supported(&x.device())
        .then(|| Tensor::from_dispatch(Dispatch::fma_peak(x.into_dispatch(), iters)))
}

pub(super) fn fma_cube(x: CubeTensor, iters: u32) -> CubeTensor {
    let n = x.meta.shape().num_elements();
    let y = empty(&x, [n]);
    launch(
        &x,
        Wgsl {
            name: "fma_peak",
            source: shader!("fma_peak"),
            params: vec![("iters", iters), ("wg", WG as u32)],
        },
        WG as u32,
        (n.div_ceil(WG) as u32, 1),
        &[&x, &y],
        &[n as u32],
    );
    y
}
