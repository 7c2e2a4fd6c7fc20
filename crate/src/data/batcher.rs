//! Random training windows: `batch_size` slices of `block_size + 1` consecutive tokens, the first
//! `block_size` as inputs and the last `block_size` as targets; or, for finetuning examples,
//! `batch_size` random rows (see [`super::examples`]).
//!
//! Randomness comes from `(seed, step)` alone, so a resumed run draws exactly the batches an
//! uninterrupted one would, with no RNG state to carry beyond the step counter.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::examples::Row;
use super::masking::Masked;
use crate::error::{Error, Result};

/// One batch of token ids, row-major `[batch, block]`; a target of
/// [`super::examples::IGNORE`] adds nothing to the loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
    pub batch: usize,
    pub block: usize,
}

/// Draws windows from one split of the token stream.
#[derive(Clone, Debug)]
pub struct Batcher {
    ids: Vec<u32>,
    block_size: usize,
    batch_size: usize,
}

/// The random stream for a step: the same `(seed, step)` always gives the same draws.
pub fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step);
    rng
}

impl Batcher {
    /// `what` names the split in the error when it is too short for one window.
    pub fn new(ids: Vec<u32>, block_size: usize, batch_size: usize, what: &str) -> Result<Self> {
        if ids.len() <= block_size {
            return Err(Error::Data(format!(
                "the {what} text has {} tokens but one training window needs block_size + 1 = {}; \
                 use more text or a smaller block_size",
                ids.len(),
                block_size + 1
            )));
        }
        Ok(Self {
            ids,
            block_size,
            batch_size,
        })
    }

    /// The same split, drawn `batch_size` windows at a time.
    pub fn with_batch_size(&self, batch_size: usize) -> Self {
        Self {
            batch_size,
            ..self.clone()
        }
    }

    pub fn len_tokens(&self) -> usize {
        self.ids.len()
    }

    /// A batch of windows starting at uniformly random offsets.
    pub fn sample(&self, rng: &mut impl Rng) -> Batch {
        let (t, n) = (self.block_size, self.batch_size);
        let starts: Vec<usize> = (0..n)
            .map(|_| rng.random_range(0..self.ids.len() - t))
            .collect();
        self.windows(&starts)
    }

    /// The windows starting at the given offsets.
    pub fn windows(&self, starts: &[usize]) -> Batch {
        let t = self.block_size;
        let window =
            |s: usize, shift: usize| self.ids[s + shift..s + shift + t].iter().map(|&i| i as i64);
        Batch {
            inputs: starts.iter().flat_map(|&s| window(s, 0)).collect(),
            targets: starts.iter().flat_map(|&s| window(s, 1)).collect(),
            batch: starts.len(),
            block: t,
        }
    }
}

/// Draws random rows of finetuning examples.
#[derive(Clone, Debug)]
pub struct Rows {
    rows: Vec<Row>,
    batch_size: usize,
}

impl Rows {
    pub fn new(rows: Vec<Row>, batch_size: usize, what: &str) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::Data(format!("there are no {what} examples")));
        }
        Ok(Self { rows, batch_size })
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// `batch_size` rows drawn uniformly (with replacement).
    pub fn sample(&self, rng: &mut impl Rng) -> Batch {
        let picks: Vec<&Row> = (0..self.batch_size)
            .map(|_| &self.rows[rng.random_range(0..self.rows.len())])
            .collect();
        Self::batch(&picks)
    }

    /// The given rows as one batch.
    pub fn batch(rows: &[&Row]) -> Batch {
        Batch {
            inputs: rows.iter().flat_map(|r| r.inputs.iter().copied()).collect(),
            targets: rows
                .iter()
                .flat_map(|r| r.targets.iter().copied())
                .collect(),
            batch: rows.len(),
            block: rows.first().map_or(0, |r| r.inputs.len()),
        }
    }
}

/// Where a split's batches come from: windows of a text, masked windows (an encoder's
/// pretraining), or example rows.
#[derive(Clone, Debug)]
pub enum Batches {
    Windows(Batcher),
    Masked(Masked),
    Rows(Rows),
}

impl Batches {
    pub fn sample(&self, rng: &mut impl Rng) -> Batch {
        match self {
            Self::Windows(b) => b.sample(rng),
            Self::Masked(m) => m.sample(rng),
            Self::Rows(r) => r.sample(rng),
        }
    }

    pub fn with_batch_size(&self, batch_size: usize) -> Self {
        match self {
            Self::Windows(b) => Self::Windows(b.with_batch_size(batch_size)),
            Self::Masked(m) => Self::Masked(Masked {
                windows: m.windows.with_batch_size(batch_size),
                ..m.clone()
            }),
            Self::Rows(r) => Self::Rows(Rows {
                batch_size,
                ..r.clone()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let b = Batcher::new((0..100).collect(), 8, 4, "train").unwrap();
        let batch = b.sample(&mut step_rng(1, 0));
        assert_eq!(batch.inputs.len(), 32);
        for row in 0..4 {
            for i in 0..8 {
                assert_eq!(batch.targets[row * 8 + i], batch.inputs[row * 8 + i] + 1);
            }
        }
    }

    #[test]
    fn same_seed_and_step_same_batch() {
        let b = Batcher::new((0..1000).collect(), 8, 4, "train").unwrap();
        let draw = |seed, step| b.sample(&mut step_rng(seed, step));
        assert_eq!(draw(1, 5), draw(1, 5));
        assert_ne!(draw(1, 5), draw(1, 6));
        assert_ne!(draw(1, 5), draw(2, 5));
    }

    #[test]
    fn too_short_split_is_an_error() {
        assert!(matches!(
            Batcher::new((0..8).collect(), 8, 1, "validation"),
            Err(Error::Data(_))
        ));
        assert!(Batcher::new((0..9).collect(), 8, 1, "validation").is_ok());
    }
}
