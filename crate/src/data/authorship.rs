//! "Who wrote this line, Shakespeare or Milton?": a labelled set built from the two bundled
//! corpora, for the encoder's classification lesson.
//!
//! A line is an example when it is verse or prose a reader could attribute (at least
//! [`MIN_CHARS`] characters once trimmed; not a bracketed stage direction). Each author's lines
//! are cut into passages of [`PASSAGE`] consecutive lines; the same number of passages is taken
//! from each author, spread evenly over the text, and every [`HELD_OUT`]th of them validates.
//! Whole passages stay on one side, so no validation line has its neighbours in training: the
//! model must recognise the style, not recall the speech. The unlabelled text to pretrain on is
//! both books without the held-out passages: far more text than labels, as in BERT's recipe.
//! Fewer labels than training passages (`labelled`) keep that text and the held-out passages as
//! they are and label only some training passages, spread the same way: the setting where
//! pretraining should pay.

use serde_json::json;

use crate::error::{Error, Result};

/// Shortest line that counts, after trimming: speaker tags ("Ham.") and short replies carry
/// little style.
pub const MIN_CHARS: usize = 30;
/// Consecutive lines per passage.
pub const PASSAGE: usize = 40;
/// One passage in this many validates.
pub const HELD_OUT: usize = 10;

/// The two authors' labels, as the classifier names its classes.
pub const AUTHORS: [&str; 2] = ["milton", "shakespeare"];

/// The labelled set and the text to pretrain on.
#[derive(Clone, Debug, PartialEq)]
pub struct Authorship {
    /// `{"text", "label", "split"}` per line: the file a user can train a classifier on.
    pub jsonl: String,
    /// Every counted line of both authors outside the held-out passages, one per line.
    pub text: String,
}

/// The lines of `text` that count as examples, trimmed.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.chars().count() >= MIN_CHARS && !l.starts_with('['))
        .collect()
}

/// Builds the set with `passages` passages per author (fewer if an author has fewer), of which
/// `labelled` training passages per author (all if `None`) carry their labels.
pub fn build(
    shakespeare: &str,
    milton: &str,
    passages: usize,
    labelled: Option<usize>,
) -> Result<Authorship> {
    let by_author = [
        (AUTHORS[0], lines(milton)),
        (AUTHORS[1], lines(shakespeare)),
    ];
    let n = by_author
        .iter()
        .map(|(_, l)| l.len() / PASSAGE)
        .min()
        .unwrap_or(0)
        .min(passages);
    if n < HELD_OUT {
        return Err(Error::Data(format!(
            "the authorship set needs at least {HELD_OUT} passages of {PASSAGE} lines per author, \
             found {n}"
        )));
    }
    let training = n - n / HELD_OUT;
    let labelled = labelled.unwrap_or(training);
    if labelled == 0 || labelled > training {
        return Err(Error::Data(format!(
            "labelled passages per author must be 1 to {training} (the training passages of \
             {n}), got {labelled}"
        )));
    }
    let (mut jsonl, mut text) = (String::new(), String::new());
    for (label, lines) in &by_author {
        let passages: Vec<&[&str]> = lines.chunks(PASSAGE).collect();
        let whole = lines.len() / PASSAGE;
        // n whole passages spread over the text; every HELD_OUT-th validates.
        let chosen: Vec<(usize, bool)> = (0..n)
            .map(|i| (i * whole / n, i % HELD_OUT == HELD_OUT - 1))
            .collect();
        // `labelled` of the training passages, spread over them.
        let with_labels: Vec<usize> = (0..labelled).map(|i| i * training / labelled).collect();
        let mut trained = 0;
        for &(p, held_out) in &chosen {
            let split = if held_out { "validation" } else { "train" };
            if !held_out {
                trained += 1;
                if !with_labels.contains(&(trained - 1)) {
                    continue;
                }
            }
            for line in passages[p] {
                jsonl.push_str(&json!({"text": line, "label": label, "split": split}).to_string());
                jsonl.push('\n');
            }
        }
        let held: Vec<usize> = chosen.iter().filter(|c| c.1).map(|c| c.0).collect();
        for (p, passage) in passages.iter().enumerate() {
            if !held.contains(&p) {
                for line in *passage {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    Ok(Authorship { jsonl, text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::examples::Examples;

    fn corpus(name: &str) -> String {
        let path = format!("{}/../web/data/{name}.txt", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("bundled corpus")
    }

    /// Balanced classes, a tenth of the passages held out whole, no validation line in the
    /// pretraining text, and no speaker tags or stage directions.
    #[test]
    fn the_split_keeps_passages_apart_and_the_classes_balanced() {
        let set = build(&corpus("shakespeare"), &corpus("milton"), 50, None).unwrap();
        let Examples::Labelled {
            train,
            val,
            classes,
        } = Examples::parse("authorship.jsonl", &set.jsonl).unwrap()
        else {
            panic!("expected labelled examples")
        };
        assert_eq!(classes, AUTHORS);
        assert_eq!(
            (train.len(), val.len()),
            (2 * 45 * PASSAGE, 2 * 5 * PASSAGE)
        );
        for author in AUTHORS {
            let count = |v: &[crate::data::examples::Labelled]| {
                v.iter().filter(|x| x.label == author).count()
            };
            assert_eq!((count(&train), count(&val)), (45 * PASSAGE, 5 * PASSAGE));
        }
        // A held-out line reaches pretraining only where the same words recur elsewhere; the
        // rest of both books does, labelled or not.
        let (shakespeare, milton) = (corpus("shakespeare"), corpus("milton"));
        let count = |lines: Vec<&str>| {
            let mut counts = std::collections::HashMap::<String, usize>::new();
            for l in lines {
                *counts.entry(l.to_string()).or_default() += 1;
            }
            counts
        };
        let all = count(
            lines(&shakespeare)
                .into_iter()
                .chain(lines(&milton))
                .collect(),
        );
        let pretraining = count(set.text.lines().collect());
        for x in &val {
            assert!(
                pretraining.get(&x.text).unwrap_or(&0) < &all[&x.text],
                "held-out line {:?} is in the pretraining text",
                x.text
            );
        }
        assert!(train.iter().all(|x| pretraining.contains_key(&x.text)));
        let total = |c: &std::collections::HashMap<String, usize>| c.values().sum::<usize>();
        assert_eq!(total(&pretraining), total(&all) - val.len());
        for x in train.iter().chain(&val) {
            assert!(x.text.chars().count() >= MIN_CHARS && !x.text.starts_with('['));
        }
        // Held-out lines come in whole passages: runs of PASSAGE consecutive lines.
        let lines: Vec<&str> = set.jsonl.lines().collect();
        for (i, chunk) in lines.chunks(PASSAGE).enumerate() {
            let held: Vec<bool> = chunk.iter().map(|l| l.contains("\"validation\"")).collect();
            assert!(held.iter().all(|&h| h == held[0]), "passage {i} is split");
        }
        assert!(build("short", "lines", 50, None).is_err());
    }

    /// Fewer labels: the same held-out passages and pretraining text, and only the chosen
    /// number of training passages per author, spread over the text.
    #[test]
    fn fewer_labels_keep_the_held_out_passages_and_the_text() {
        let (shakespeare, milton) = (corpus("shakespeare"), corpus("milton"));
        let all = build(&shakespeare, &milton, 50, None).unwrap();
        let few = build(&shakespeare, &milton, 50, Some(5)).unwrap();
        assert_eq!(few.text, all.text);
        let split = |set: &Authorship, which: &str| -> Vec<String> {
            set.jsonl
                .lines()
                .filter(|l| l.contains(&format!("\"split\":\"{which}\"")))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(split(&few, "validation"), split(&all, "validation"));
        let (train, all_train) = (split(&few, "train"), split(&all, "train"));
        assert_eq!(train.len(), 2 * 5 * PASSAGE);
        assert!(train.iter().all(|l| all_train.contains(l)));
        // Spread: Milton's five passages come from across his 45, not the first five.
        let milton_train: Vec<&String> =
            all_train.iter().filter(|l| l.contains("milton")).collect();
        let last = train.iter().rfind(|l| l.contains("milton")).unwrap();
        let at = milton_train.iter().position(|l| *l == last).unwrap();
        assert!(
            at > 30 * PASSAGE,
            "the last labelled Milton line is number {at}"
        );
        for bad in [Some(0), Some(46)] {
            let err = build(&shakespeare, &milton, 50, bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("1 to 45"), "{err}");
        }
    }
}
