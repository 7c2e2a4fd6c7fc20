//! What a run trains on: plain text (pretraining, continued training) or finetuning examples
//! (instructions, labelled texts), and how each becomes training and validation batches.

use super::batcher::{Batcher, Batches, Rows};
use super::examples::{Examples, Layout};
use super::masking::Masked;
use super::{Corpus, Tokenizer};
use crate::config::{ModelConfig, Pooling, Task};
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub enum Dataset {
    Text(Corpus),
    Examples(Examples),
}

/// Whether a file name says it holds examples rather than plain text.
fn is_examples(name: &str) -> bool {
    let name = name.to_lowercase();
    name.ends_with(".jsonl") || name.ends_with(".csv")
}

impl Dataset {
    /// Text files become one corpus; a `.jsonl` or `.csv` file (one, alone) holds examples.
    pub fn from_files<N: AsRef<str>, B: AsRef<[u8]>>(files: &[(N, B)]) -> Result<Self> {
        let examples = files
            .iter()
            .filter(|(n, _)| is_examples(n.as_ref()))
            .count();
        match (examples, files.len()) {
            (0, _) => Ok(Self::Text(Corpus::from_files(files)?)),
            (1, 1) => {
                let (name, bytes) = (files[0].0.as_ref(), files[0].1.as_ref());
                // The corpus's checks (UTF-8, not binary, line ends) apply to example files too.
                let text = Corpus::from_files(&[(name, bytes)])?.text().to_owned();
                Ok(Self::Examples(Examples::parse(name, &text)?))
            }
            _ => Err(Error::Data(
                "give one .jsonl or .csv file of examples on its own, or plain text files".into(),
            )),
        }
    }

    /// All the text, for training a tokenizer.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Text(c) => c.text().into(),
            Self::Examples(e) => e.text().into(),
        }
    }

    /// The task this data trains; a classifier pools as `pooling` says.
    pub fn task(&self, pooling: Pooling) -> Task {
        match self {
            Self::Text(_) => Task::Text,
            Self::Examples(Examples::Instructions { .. }) => Task::Chat,
            Self::Examples(Examples::Labelled { classes, .. }) => Task::Classify {
                classes: classes.clone(),
                pooling,
            },
        }
    }

    /// Whether a model with `task` can train on this data: text and chat models learn from
    /// text and instructions, a classifier from examples with exactly its classes.
    pub fn check(&self, task: &Task) -> Result<()> {
        let wanted = self.task(Pooling::Last);
        match (task, &wanted) {
            (Task::Classify { classes, .. }, Task::Classify { classes: data, .. }) => {
                if classes == data {
                    Ok(())
                } else {
                    Err(Error::Data(format!(
                        "the model classifies {classes:?} but the data's labels are {data:?}"
                    )))
                }
            }
            (Task::Classify { .. }, _) => Err(Error::Data(
                "this model is a classifier: it trains on labelled examples (.csv or .jsonl with text and label)".into(),
            )),
            (_, Task::Classify { .. }) => Err(Error::Data(
                "labelled examples train a classifier; this model generates text".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Training and validation batches of `batch` rows of the model's `block_size` tokens:
    /// text is next-token windows for a GPT or an LSTM and masked windows for an encoder.
    pub fn batches(
        &self,
        tokenizer: &Tokenizer,
        model: &ModelConfig,
        batch: usize,
    ) -> Result<(Batches, Batches)> {
        let block = model.block_size;
        let layout = Layout::of(model.arch, tokenizer)?;
        Ok(match self {
            Self::Text(c) => {
                // An encoder's rows are `[CLS] window [SEP]`.
                let span = match layout {
                    Layout::Causal => block,
                    Layout::Encoder(_) => block - 2,
                };
                let windows = |text: &str, what: &str| {
                    Batcher::new(tokenizer.encode(text)?, span, batch, what)
                };
                let (train, val) = (
                    windows(c.train_text(), "training")?,
                    windows(c.val_text(), "validation")?,
                );
                match layout {
                    Layout::Causal => (Batches::Windows(train), Batches::Windows(val)),
                    Layout::Encoder(specials) => {
                        let masked = |windows| {
                            Batches::Masked(Masked {
                                windows,
                                specials,
                                vocab_size: tokenizer.vocab_size(),
                            })
                        };
                        (masked(train), masked(val))
                    }
                }
            }
            Self::Examples(e) => {
                let rows = |val: bool, what: &str| {
                    Rows::new(e.rows(tokenizer, block, val, layout)?, batch, what)
                };
                (
                    Batches::Rows(rows(false, "training")?),
                    Batches::Rows(rows(true, "validation")?),
                )
            }
        })
    }

    /// Sizes for the page and logs: `{kind, train, val, classes?}` (chars of text, or examples).
    pub fn stats(&self) -> serde_json::Value {
        match self {
            Self::Text(c) => serde_json::json!({
                "kind": "text",
                "chars": c.text().chars().count(),
                "train": c.train_text().chars().count(),
                "val": c.val_text().chars().count(),
            }),
            Self::Examples(e) => {
                let (train, val) = e.counts();
                let mut stats = serde_json::json!({"kind": "chat", "train": train, "val": val});
                if let Examples::Labelled { classes, .. } = e {
                    stats["kind"] = "classify".into();
                    stats["classes"] = classes.clone().into();
                }
                stats
            }
        }
    }
}
