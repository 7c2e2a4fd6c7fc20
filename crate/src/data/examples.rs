//! Examples for finetuning, one per line of a `.jsonl` (or row of a `.csv`) file:
//! `{"prompt": ..., "completion": ...}` for instruction tuning, `{"text": ..., "label": ...}` for
//! classification (with `"split": "train"` or `"validation"` on every line, the file's own split
//! replaces the random one: e.g. one that keeps whole passages apart). Each becomes one padded row of `block_size` inputs and targets, where targets
//! the loss must not see are [`IGNORE`]: the prompt, the padding, and for a classifier every
//! position but the one it reads (whose target is the label's index): the text's last token for
//! a GPT, `[CLS]` for an encoder.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::corpus::TRAIN_FRACTION;
use super::{Specials, Tokenizer};
use crate::config::Arch;
use crate::error::{Error, Result};

/// A target that contributes no loss and no gradient.
pub const IGNORE: i64 = -1;

/// Ends every completion, so a chat model learns where its answer stops; generation for a chat
/// model stops there.
pub const END: &str = "\n\n";

/// How a row holds its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A GPT's (or an LSTM's): the text, then padding; a label on the text's last token.
    Causal,
    /// An encoder's: `[CLS] text [SEP]`, then `[PAD]`; a label on `[CLS]`.
    Encoder(Specials),
}

impl Layout {
    /// The layout of a model of `arch` reading through `tokenizer`.
    pub fn of(arch: Arch, tokenizer: &Tokenizer) -> Result<Self> {
        match (arch, tokenizer.specials()) {
            (Arch::Bert, Some(specials)) => Ok(Self::Encoder(specials)),
            (Arch::Bert, None) => Err(Error::Tokenizer(
                "an encoder's tokenizer needs the special tokens [PAD] [UNK] [CLS] [SEP] [MASK]"
                    .into(),
            )),
            (Arch::Gpt | Arch::Lstm, _) => Ok(Self::Causal),
        }
    }
}

/// A prompt and the completion the model should learn to give.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Instruction {
    pub prompt: String,
    pub completion: String,
}

/// A text and its class.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub text: String,
    pub label: String,
}

/// Finetuning examples, split into training and validation.
#[derive(Clone, Debug)]
pub enum Examples {
    Instructions {
        train: Vec<Instruction>,
        val: Vec<Instruction>,
    },
    Labelled {
        train: Vec<Labelled>,
        val: Vec<Labelled>,
        /// The distinct labels, sorted (numerically when all are numbers).
        classes: Vec<String>,
    },
}

/// One line of a `.jsonl` file, either kind.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Instruction(Instruction),
    Labelled {
        text: String,
        label: serde_json::Value,
        #[serde(default)]
        split: Option<String>,
    },
}

impl Examples {
    /// Parses a `.jsonl` (either kind, decided by the first line's keys) or `.csv` (columns
    /// `text` and `label`) file. Errors name the file, the line and what is wrong.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let err = |line: usize, msg: String| Error::Data(format!("{name}, line {line}: {msg}"));
        let mut instructions = Vec::new();
        let mut labelled = Vec::new();
        // Each labelled line's own split (`Some(true)`: validation), where the file gives one.
        let mut held_out: Vec<Option<bool>> = Vec::new();
        if name.to_lowercase().ends_with(".csv") {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| err(1, format!("not CSV: {e}")))?
                .clone();
            let column = |want: &str| {
                headers.iter().position(|h| h.trim() == want).ok_or_else(|| {
                    err(1, format!("the header needs columns \"text\" and \"label\", it has {headers:?}"))
                })
            };
            let (t, l) = (column("text")?, column("label")?);
            for (i, record) in reader.records().enumerate() {
                let line = i + 2;
                let record = record.map_err(|e| err(line, format!("not CSV: {e}")))?;
                let field = |i: usize| record.get(i).unwrap_or_default().to_string();
                labelled.push(Labelled {
                    text: field(t),
                    label: field(l).trim().to_string(),
                });
                held_out.push(None);
            }
        } else {
            for (i, raw) in text.lines().enumerate() {
                let line = i + 1;
                if raw.trim().is_empty() {
                    continue;
                }
                let parsed: Line = serde_json::from_str(raw).map_err(|_| {
                    err(
                        line,
                        "expected a JSON object with \"prompt\" and \"completion\", or \"text\" and \"label\"".into(),
                    )
                })?;
                match parsed {
                    Line::Instruction(x) => instructions.push(x),
                    Line::Labelled { text, label, split } => {
                        labelled.push(Labelled {
                            text,
                            label: match label {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            },
                        });
                        held_out.push(match split.as_deref() {
                            None => None,
                            Some("train") => Some(false),
                            Some("validation" | "val" | "test") => Some(true),
                            Some(other) => {
                                return Err(err(
                                    line,
                                    format!(
                                        "split is \"{other}\"; use \"train\" or \"validation\""
                                    ),
                                ));
                            }
                        });
                    }
                }
                if !instructions.is_empty() && !labelled.is_empty() {
                    return Err(err(
                        line,
                        "the file mixes prompt/completion and text/label examples".into(),
                    ));
                }
            }
        }
        for (i, x) in labelled.iter().enumerate() {
            if x.text.trim().is_empty() || x.label.is_empty() {
                return Err(Error::Data(format!(
                    "{name}: example {} has an empty text or label",
                    i + 1
                )));
            }
        }
        if let Some(i) = instructions.iter().position(|x| x.completion.is_empty()) {
            return Err(Error::Data(format!(
                "{name}: example {} has an empty completion: there is nothing to learn",
                i + 1
            )));
        }
        if !instructions.is_empty() {
            let (train, val) = split(name, instructions)?;
            Ok(Self::Instructions { train, val })
        } else {
            let mut classes: Vec<String> = labelled.iter().map(|x| x.label.clone()).collect();
            classes.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            classes.dedup();
            if classes.len() < 2 {
                return Err(Error::Data(format!(
                    "{name} has {} distinct label(s); a classifier needs at least two",
                    classes.len()
                )));
            }
            let (train, val) = match held_out.iter().filter(|s| s.is_some()).count() {
                0 => split(name, labelled)?,
                n if n == labelled.len() => own_split(name, labelled, &held_out)?,
                _ => {
                    return Err(Error::Data(format!(
                        "{name}: some lines name their split and some do not; give every line \
                         one, or none for a random split"
                    )));
                }
            };
            Ok(Self::Labelled {
                train,
                val,
                classes,
            })
        }
    }

    /// All the text, for training a tokenizer on it.
    pub fn text(&self) -> String {
        match self {
            Self::Instructions { train, val } => train
                .iter()
                .chain(val)
                .map(|x| format!("{}{}{END}", x.prompt, x.completion))
                .collect(),
            Self::Labelled { train, val, .. } => train
                .iter()
                .chain(val)
                .map(|x| format!("{}\n", x.text))
                .collect(),
        }
    }

    /// Training and validation examples.
    pub fn counts(&self) -> (usize, usize) {
        match self {
            Self::Instructions { train, val } => (train.len(), val.len()),
            Self::Labelled { train, val, .. } => (train.len(), val.len()),
        }
    }

    /// The training (`val` false) or validation rows, `block_size` long.
    pub fn rows(
        &self,
        tokenizer: &Tokenizer,
        block: usize,
        val: bool,
        layout: Layout,
    ) -> Result<Vec<Row>> {
        match self {
            Self::Instructions { train, val: v } => {
                let part = if val { v } else { train };
                part.iter()
                    .map(|x| instruction_row(tokenizer, x, block))
                    .collect()
            }
            Self::Labelled {
                train,
                val: v,
                classes,
            } => {
                let part = if val { v } else { train };
                part.iter()
                    .map(|x| {
                        let class = classes.iter().position(|c| *c == x.label);
                        labelled_row(tokenizer, &x.text, class, block, layout)
                    })
                    .collect()
            }
        }
    }
}

/// A shuffled (fixed seed, so a file always splits the same way) 90/10 split, at least one
/// example on each side.
fn split<T>(name: &str, mut all: Vec<T>) -> Result<(Vec<T>, Vec<T>)> {
    if all.len() < 2 {
        return Err(Error::Data(format!(
            "{name} has {} example(s); training and validation need at least one each",
            all.len()
        )));
    }
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    let n_val = ((all.len() as f64 * (1.0 - TRAIN_FRACTION)).round() as usize).max(1);
    let train = all.split_off(n_val);
    Ok((train, all))
}

/// The file's own split: the examples marked held out validate.
fn own_split<T>(name: &str, all: Vec<T>, held_out: &[Option<bool>]) -> Result<(Vec<T>, Vec<T>)> {
    let (val, train): (Vec<_>, Vec<_>) = all
        .into_iter()
        .zip(held_out)
        .partition(|(_, h)| **h == Some(true));
    if train.is_empty() || val.is_empty() {
        return Err(Error::Data(format!(
            "{name} splits its examples {} for training, {} for validation; each needs one",
            train.len(),
            val.len()
        )));
    }
    let strip = |v: Vec<(T, &Option<bool>)>| v.into_iter().map(|(x, _)| x).collect();
    Ok((strip(train), strip(val)))
}

/// One example as model inputs and targets, both `block` long.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
}

/// `prompt ++ completion ++ END`, shifted by one; targets inside the prompt are [`IGNORE`]. A
/// sequence longer than `block + 1` loses the start of its prompt first, then its end.
fn instruction_row(tokenizer: &Tokenizer, x: &Instruction, block: usize) -> Result<Row> {
    let prompt = tokenizer.encode(&x.prompt)?;
    let answer = tokenizer.encode(&format!("{}{END}", x.completion))?;
    let cut = (prompt.len() + answer.len()).saturating_sub(block + 1);
    let prompt = &prompt[cut.min(prompt.len())..];
    let seq: Vec<i64> = prompt.iter().chain(&answer).map(|&t| t as i64).collect();
    let seq = &seq[..seq.len().min(block + 1)];
    let n = seq.len() - 1;
    let mut row = padded(&seq[..n], block, 0);
    for (i, &t) in seq[1..].iter().enumerate() {
        // Target i is token i + 1: it belongs to the answer from index prompt.len() on.
        if i + 1 >= prompt.len() {
            row.targets[i] = t;
        }
    }
    Ok(row)
}

/// The text's first tokens as the layout holds them (all of them that fit in `block`); the
/// target where the classifier reads is the class (or nothing, for prediction).
pub fn labelled_row(
    tokenizer: &Tokenizer,
    text: &str,
    class: Option<usize>,
    block: usize,
    layout: Layout,
) -> Result<Row> {
    let ids = tokenizer.encode(text)?;
    if ids.is_empty() {
        return Err(Error::Data("the text to classify is empty".into()));
    }
    let (ids, read, pad) = match layout {
        Layout::Causal => {
            let ids: Vec<i64> = ids.iter().take(block).map(|&t| t as i64).collect();
            let last = ids.len() - 1;
            (ids, last, 0)
        }
        Layout::Encoder(s) => {
            let ids = encoder_ids(&ids, block, &s).into_iter().map(i64::from);
            (ids.collect(), 0, s.pad as i64)
        }
    };
    let mut row = padded(&ids, block, pad);
    if let Some(class) = class {
        row.targets[read] = class as i64;
    }
    Ok(row)
}

/// `[CLS] ids [SEP]`, the ids cut to fit in `block` tokens.
pub fn encoder_ids(ids: &[u32], block: usize, s: &Specials) -> Vec<u32> {
    let text = ids.iter().take(block.saturating_sub(2)).copied();
    std::iter::once(s.cls).chain(text).chain([s.sep]).collect()
}

/// `ids` padded with `pad` to `block`, all targets [`IGNORE`]. Causal attention keeps the
/// padding after a text from changing anything before it; an encoder is told where it is.
fn padded(ids: &[i64], block: usize, pad: i64) -> Row {
    let mut inputs = ids.to_vec();
    inputs.resize(block, pad);
    Row {
        inputs,
        targets: vec![IGNORE; block],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TokenizerKind;

    fn chars(text: &str) -> Tokenizer {
        Tokenizer::train(TokenizerKind::Char, text).unwrap()
    }

    #[test]
    fn instruction_rows_mask_the_prompt_and_padding() {
        let t = chars("abcxyz\n");
        let x = Instruction {
            prompt: "abc".into(),
            completion: "xy".into(),
        };
        let row = instruction_row(&t, &x, 10).unwrap();
        let id = |s: &str| t.encode(s).unwrap()[0] as i64;
        // a b c x y \n \n: inputs are the first six, targets from c's successor on.
        assert_eq!(
            &row.inputs[..6],
            &[id("a"), id("b"), id("c"), id("x"), id("y"), id("\n")]
        );
        assert_eq!(
            row.targets,
            vec![
                IGNORE,
                IGNORE,
                id("x"),
                id("y"),
                id("\n"),
                id("\n"),
                IGNORE,
                IGNORE,
                IGNORE,
                IGNORE
            ]
        );
        // Too long: the prompt's start goes first.
        let row = instruction_row(&t, &x, 4).unwrap();
        assert_eq!(row.inputs, vec![id("c"), id("x"), id("y"), id("\n")]);
        assert_eq!(row.targets, vec![id("x"), id("y"), id("\n"), id("\n")]);
    }

    #[test]
    fn labelled_rows_put_the_class_on_the_last_token() {
        let t = chars("abc");
        let row = labelled_row(&t, "abc", Some(1), 5, Layout::Causal).unwrap();
        assert_eq!(row.targets, vec![IGNORE, IGNORE, 1, IGNORE, IGNORE]);
        let row = labelled_row(&t, "abcabc", Some(0), 4, Layout::Causal).unwrap();
        assert_eq!(row.targets, vec![IGNORE, IGNORE, IGNORE, 0]);
    }

    #[test]
    fn encoder_rows_wrap_the_text_and_put_the_class_on_cls() {
        let t = chars("abc").with_specials().unwrap();
        let s = t.specials().unwrap();
        let layout = Layout::of(Arch::Bert, &t).unwrap();
        let (cls, sep, pad) = (s.cls as i64, s.sep as i64, s.pad as i64);
        let row = labelled_row(&t, "ab", Some(1), 6, layout).unwrap();
        assert_eq!(row.inputs, vec![cls, 0, 1, sep, pad, pad]);
        assert_eq!(row.targets, vec![1, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE]);
        // Too long: the text's end goes, [SEP] stays.
        let row = labelled_row(&t, "abcabc", Some(0), 4, layout).unwrap();
        assert_eq!(row.inputs, vec![cls, 0, 1, sep]);
        let plain = chars("abc");
        assert!(
            Layout::of(Arch::Bert, &plain)
                .unwrap_err()
                .to_string()
                .contains("[MASK]")
        );
    }

    #[test]
    fn files_parse_split_and_fail_clearly() {
        let jsonl = (0..20)
            .map(|i| format!("{{\"prompt\": \"q{i}\", \"completion\": \"a{i}\"}}\n"))
            .collect::<String>();
        let Examples::Instructions { train, val } = Examples::parse("x.jsonl", &jsonl).unwrap()
        else {
            panic!("expected instructions")
        };
        assert_eq!((train.len(), val.len()), (18, 2));

        let csv = "id,text,label\n1,\"good, fine\",pos\n2,bad,neg\n3,great,pos\n";
        let Examples::Labelled {
            classes,
            train,
            val,
        } = Examples::parse("x.csv", csv).unwrap()
        else {
            panic!("expected labelled")
        };
        assert_eq!(classes, vec!["neg", "pos"]);
        assert!(train.iter().chain(&val).any(|x| x.text == "good, fine"));

        let numbers = "{\"text\":\"a\",\"label\":10}\n{\"text\":\"b\",\"label\":2}\n";
        let Examples::Labelled { classes, .. } = Examples::parse("n.jsonl", numbers).unwrap()
        else {
            panic!("expected labelled")
        };
        assert_eq!(classes, vec!["2", "10"]);

        let msg = |name: &str, text: &str| Examples::parse(name, text).unwrap_err().to_string();
        assert!(
            msg(
                "x.jsonl",
                "{\"prompt\":\"a\",\"completion\":\"b\"}\nnot json\n"
            )
            .contains("line 2")
        );
        assert!(msg("x.csv", "words,label\na,b\n").contains("\"text\""));
        assert!(
            msg(
                "x.jsonl",
                "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"x\"}\n"
            )
            .contains("two")
        );
        assert!(
            msg("x.jsonl", "{\"prompt\":\"a\",\"completion\":\"b\"}\n")
                .contains("at least one each")
        );
        // A file's own split is kept as written.
        let own = "{\"text\":\"a\",\"label\":\"x\",\"split\":\"train\"}\n\
                   {\"text\":\"b\",\"label\":\"y\",\"split\":\"train\"}\n\
                   {\"text\":\"c\",\"label\":\"x\",\"split\":\"validation\"}\n";
        let Examples::Labelled { train, val, .. } = Examples::parse("s.jsonl", own).unwrap() else {
            panic!("expected labelled")
        };
        let texts = |v: &[Labelled]| v.iter().map(|x| x.text.clone()).collect::<Vec<_>>();
        assert_eq!(
            (texts(&train), texts(&val)),
            (vec!["a".into(), "b".into()], vec!["c".to_string()])
        );
        let half = "{\"text\":\"a\",\"label\":\"x\",\"split\":\"train\"}\n{\"text\":\"b\",\"label\":\"y\"}\n";
        assert!(msg("h.jsonl", half).contains("some lines name their split"));
        let bad = "{\"text\":\"a\",\"label\":\"x\",\"split\":\"dev2\"}\n";
        assert!(msg("b.jsonl", bad).contains("line 1: split is \"dev2\""));
        assert!(
            msg(
                "x.jsonl",
                "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"a\",\"label\":1}\n"
            )
            .contains("mixes")
        );
    }
}
