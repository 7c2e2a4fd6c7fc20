//! Masked-language-model rows for pretraining an encoder (BERT's recipe): `[CLS] text [SEP]`,
//! 15% of the text's tokens selected, and of those 80% replaced by `[MASK]`, 10% by a random
//! token and 10% left as they are. The targets are the selected tokens' originals and
//! [`IGNORE`] everywhere else, so the loss (and its gradient) is on the selected positions only.

use rand::Rng;

use super::batcher::{Batch, Batcher};
use super::examples::IGNORE;
use super::tokenizer::Specials;

/// The share of a row's text tokens the model must recover.
pub const SELECT: f64 = 0.15;
/// Of the selected tokens, the share replaced by `[MASK]`; as many again (the next 10%) are
/// replaced by a random token, and the rest are kept.
pub const REPLACE_BY_MASK: f64 = 0.8;
const REPLACE_BY_RANDOM: f64 = 0.9;

/// Draws masked rows from windows of a token stream.
#[derive(Clone, Debug)]
pub struct Masked {
    /// Windows of the text (`block - 2` tokens: `[CLS]` and `[SEP]` take two places).
    pub windows: Batcher,
    pub specials: Specials,
    pub vocab_size: usize,
}

impl Masked {
    /// A batch of random windows, each `[CLS] window [SEP]` with its tokens masked.
    pub fn sample(&self, rng: &mut impl Rng) -> Batch {
        let windows = self.windows.sample(rng);
        let t = windows.block;
        let mut inputs = Vec::with_capacity(windows.batch * (t + 2));
        let mut targets = Vec::with_capacity(inputs.capacity());
        for row in windows.inputs.chunks(t) {
            let mut ids = Vec::with_capacity(t + 2);
            ids.push(self.specials.cls as i64);
            ids.extend_from_slice(row);
            ids.push(self.specials.sep as i64);
            targets.extend(mask_row(&mut ids, &self.specials, self.vocab_size, rng));
            inputs.extend(ids);
        }
        Batch {
            inputs,
            targets,
            batch: windows.batch,
            block: t + 2,
        }
    }
}

/// Masks `ids` in place by BERT's rule and returns the targets. Special tokens (`[CLS]`,
/// `[SEP]`, `[PAD]`, ...) are never selected; a random replacement is never a special token.
pub fn mask_row(
    ids: &mut [i64],
    specials: &Specials,
    vocab: usize,
    rng: &mut impl Rng,
) -> Vec<i64> {
    let mut targets = vec![IGNORE; ids.len()];
    for (id, target) in ids.iter_mut().zip(&mut targets) {
        if specials.contains(*id as u32) || !rng.random_bool(SELECT) {
            continue;
        }
        *target = *id;
        let r: f64 = rng.random();
        if r < REPLACE_BY_MASK {
            *id = specials.mask as i64;
        } else if r < REPLACE_BY_RANDOM {
            *id = loop {
                let candidate = rng.random_range(0..vocab as u32);
                if !specials.contains(candidate) {
                    break candidate as i64;
                }
            };
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::step_rng;

    const SPECIALS: Specials = Specials {
        pad: 50,
        unk: 51,
        cls: 52,
        sep: 53,
        mask: 54,
    };

    /// Over 200,000 tokens the proportions are BERT's to within a few standard deviations
    /// (σ of the 15% selection ≈ 0.08%; of the 80/10/10 split ≈ 0.2%), and no special token is
    /// ever selected or drawn as a replacement.
    #[test]
    fn masking_follows_bert_proportions_and_spares_special_tokens() {
        let mut rng = step_rng(7, 0);
        let (mut text, mut selected, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
        for _ in 0..2000 {
            // [CLS] 100 text tokens [SEP] [PAD] [PAD]
            let mut ids: Vec<i64> = vec![SPECIALS.cls as i64];
            ids.extend((0..100).map(|i| (i * 7 % 50) as i64));
            ids.extend([SPECIALS.sep, SPECIALS.pad, SPECIALS.pad].map(|x| x as i64));
            let original = ids.clone();
            let targets = mask_row(&mut ids, &SPECIALS, 55, &mut rng);
            for ((&was, &now), &target) in original.iter().zip(&ids).zip(&targets) {
                if SPECIALS.contains(was as u32) {
                    assert_eq!((now, target), (was, IGNORE), "a special token was selected");
                    continue;
                }
                text += 1;
                if target == IGNORE {
                    assert_eq!(now, was, "an unselected token changed");
                    continue;
                }
                assert_eq!(target, was, "the target is the original token");
                selected += 1;
                if now == SPECIALS.mask as i64 {
                    masked += 1;
                } else if now == was {
                    kept += 1;
                } else {
                    assert!(
                        !SPECIALS.contains(now as u32),
                        "replaced by a special token"
                    );
                    random += 1;
                }
            }
        }
        let share = |n: usize, of: usize| n as f64 / of as f64;
        assert_eq!(text, 200_000);
        assert!((share(selected, text) - 0.15).abs() < 0.004, "{selected}");
        // A random draw lands on the original 1 time in 50: counted as kept.
        let (m, r, k) = (
            share(masked, selected),
            share(random, selected),
            share(kept, selected),
        );
        assert!((m - 0.8).abs() < 0.01, "mask {m}");
        assert!((r - 0.1 * 49.0 / 50.0).abs() < 0.01, "random {r}");
        assert!((k - (0.1 + 0.1 / 50.0)).abs() < 0.01, "kept {k}");
    }

    #[test]
    fn masked_rows_open_with_cls_and_close_with_sep() {
        let windows = Batcher::new((0..40).collect(), 6, 3, "training").unwrap();
        let masked = Masked {
            windows,
            specials: SPECIALS,
            vocab_size: 55,
        };
        let batch = masked.sample(&mut step_rng(1, 0));
        assert_eq!((batch.batch, batch.block), (3, 8));
        for row in batch.inputs.chunks(8) {
            assert_eq!(row[0], SPECIALS.cls as i64);
            assert_eq!(row[7], SPECIALS.sep as i64);
        }
    }
}
