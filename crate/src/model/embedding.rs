//! The token embedding, held in row parts when the whole table is larger than one buffer the
//! device can bind: WebGPU guarantees only 128 MiB per binding (lavapipe allows no more), and
//! GPT-2's 50,257 × 768 table is 154 MB. To everything outside the parts are one table:
//! checkpoints store it whole as `wte.weight`, a token reads its row from its own part, and the
//! tied head's logits are each part's logits side by side.

use burn::module::Param;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// Consecutive rows of the `[vocab, n_embd]` table; one part when the table fits a binding.
    /// (A checkpoint names part `i` `wte.weight.i` and stores the parts as one `wte.weight`.)
    weight: Vec<Param<Tensor<2>>>,
}

impl TokenEmbedding {
    /// The table `[rows, cols]` of row-major `data`, in parts of at most `part_rows` rows.
    pub fn new(
        data: Vec<f32>,
        [rows, cols]: [usize; 2],
        part_rows: usize,
        device: &Device,
    ) -> Self {
        let part_rows = part_rows.clamp(1, rows.max(1));
        let weight = data
            .chunks(part_rows * cols)
            .map(|part| {
                let shape = [part.len() / cols, cols];
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(part.to_vec(), shape),
                    device,
                ))
            })
            .collect();
        Self { weight }
    }

    /// The parts, `[rows_i, n_embd]` each, in order.
    pub fn parts(&self) -> Vec<Tensor<2>> {
        self.weight.iter().map(Param::val).collect()
    }

    /// The rows of `idx [B, T]`: `[B, T, n_embd]`. With several parts, each token is looked up
    /// in every part at its clamped local index and kept only from the part that holds it, so
    /// every gather reads one binding and the backward pass sends each row's gradient home.
    pub fn forward(&self, idx: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = idx.dims();
        let flat = idx.reshape([b * t]);
        let mut start = 0;
        let mut out: Option<Tensor<2>> = None;
        for part in self.parts() {
            let rows = part.dims()[0];
            let y = if self.weight.len() == 1 {
                part.select(0, flat.clone())
            } else {
                let local = flat.clone().sub_scalar(start as i64);
                let here = local
                    .clone()
                    .greater_equal_elem(0)
                    .bool_and(local.clone().lower_elem(rows as i64));
                let rows_here = part.select(0, local.clamp(0, rows as i64 - 1));
                rows_here * here.float().unsqueeze_dim(1)
            };
            out = Some(match out {
                Some(sum) => sum + y,
                None => y,
            });
            start += rows;
        }
        let out = out.expect("a table has at least one part");
        let c = out.dims()[1];
        out.reshape([b, t, c])
    }
}
