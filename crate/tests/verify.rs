//! A device that computes wrong is caught, on wgpu (lavapipe where there is no GPU). Its own
//! binary: the fault injected into the attention kernel is process-wide.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use kiln::backend::{self, BackendKind, block_on};
use kiln::train::Trainer;
use kiln::verify::{TOLERANCE, cross_check, inject_fault};

/// Every parameter value, in visiting order.
#[derive(Default)]
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.extend(param.val().try_into_vec_as::<f32>().unwrap());
    }
}

fn weights(t: &Trainer) -> Vec<f32> {
    let mut v = Values::default();
    t.model().visit(&mut v);
    v.0
}

#[test]
fn a_wrong_device_is_caught_and_a_nan_loss_changes_no_weight() {
    let gpu = backend::open(BackendKind::Wgpu).expect("a wgpu adapter (lavapipe without a GPU)");
    assert!(kiln::kernels::supported(&gpu));
    let good = block_on(cross_check(&gpu)).unwrap();
    assert!(good.agree && good.difference < TOLERANCE / 10.0, "{good:?}");

    inject_fault(1.5);
    let bad = block_on(cross_check(&gpu)).unwrap();
    assert!(!bad.agree, "{bad:?}");
    inject_fault(1.0);

    // The periodic check: the run's own model, on its device and on the CPU.
    let data = common::small_corpus(20_000);
    let tokenizer = common::char_tokenizer(&data);
    let mut t = Trainer::new(common::tiny(tokenizer.vocab_size()), tokenizer, &data, &gpu).unwrap();
    t.step().unwrap();
    let check = block_on(t.check_against_cpu_async()).unwrap();
    assert!(check.agree, "{check:?}");
    inject_fault(1.5);
    let check = block_on(t.check_against_cpu_async()).unwrap();
    assert!(!check.agree, "{check:?}");

    // A NaN loss is an error, and the weights stay those of the last good step.
    inject_fault(f32::NAN);
    let before = weights(&t);
    let err = t.step().unwrap_err().to_string();
    assert!(
        err.contains("the loss became NaN") && err.contains("at step 2"),
        "{err}"
    );
    assert_eq!(t.step_count(), 1);
    assert_eq!(weights(&t), before);
    inject_fault(1.0);
    assert_eq!(t.step().unwrap().step, 2);
}
