//! Tokenizers: character-level (vocabulary from the corpus) and byte-level BPE trained on the corpus
//! with Hugging Face `tokenizers`. Both serialise to Hugging Face's `tokenizer.json`, which
//! `tokenizers` and transformers' `PreTrainedTokenizerFast` load without Kiln: a character
//! vocabulary is written as a BPE model without merges (each character one token) and a `Fuse`
//! decoder, and is read back as a character tokenizer.
//!
//! An encoder's tokenizer also has BERT's special tokens ([`SPECIALS`]), after the rest of the
//! vocabulary; `"[MASK]"` written in a text is the mask token.

use serde::{Deserialize, Serialize};
use tokenizers::AddedToken;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer, Vocab};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    Trainer,
};

use crate::error::{Error, Result};

/// Which tokenizer to build from a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum TokenizerKind {
    /// One token per distinct character of the corpus.
    Char,
    /// Byte-level BPE (GPT-2 style) with this many tokens, 256 bytes included.
    Bpe { vocab_size: usize },
    /// WordPiece (BERT's), cased, with this many tokens, [`SPECIALS`] first (`[PAD]` is 0, as
    /// in BERT). Words split at spaces and punctuation, so decoding joins them with single
    /// spaces: line breaks and runs of spaces do not come back.
    WordPiece { vocab_size: usize },
}

/// Smallest BPE vocabulary: the 256 byte tokens.
pub const BPE_MIN_VOCAB: usize = 256;

/// BERT's special tokens, in the order an encoder's tokenizer appends them to its vocabulary.
pub const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The ids of an encoder tokenizer's [`SPECIALS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    /// Fills a row after its text; attention and pooling skip it.
    pub pad: u32,
    /// Stands for a character or piece the vocabulary lacks.
    pub unk: u32,
    /// Opens every row; a classifier reads its state.
    pub cls: u32,
    /// Closes a row's text.
    pub sep: u32,
    /// Hides a token the model must guess.
    pub mask: u32,
}

impl Specials {
    /// Whether `id` is one of them.
    pub fn contains(&self, id: u32) -> bool {
        [self.pad, self.unk, self.cls, self.sep, self.mask].contains(&id)
    }
}

/// A trained tokenizer.
#[derive(Clone, Debug)]
pub enum Tokenizer {
    Char(CharTokenizer),
    /// A Hugging Face tokenizer: byte-level BPE (Kiln's or GPT-2's) or WordPiece.
    Bpe(Box<tokenizers::Tokenizer>),
}

/// Character-level tokenizer: token id = index of the character in the sorted vocabulary.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CharTokenizer {
    chars: Vec<char>,
    /// Where characters outside the vocabulary go, when the user chose a mapping (finetuning on
    /// a text with characters the model never saw); without one they are an error.
    #[serde(default)]
    unknown: Option<char>,
    /// Whether [`SPECIALS`] follow the characters (ids `chars.len()..`), for an encoder.
    #[serde(default)]
    specials: bool,
}

/// The JSON form of a char tokenizer written by Kiln before its files were Hugging Face's; still
/// read, so older checkpoints load.
#[derive(Deserialize)]
struct CharFile {
    kiln_char_tokenizer: CharTokenizer,
}

impl CharTokenizer {
    fn id(&self, c: char) -> Option<u32> {
        let index = |c: char| self.chars.binary_search(&c).ok().map(|i| i as u32);
        index(c).or_else(|| self.unknown.and_then(index))
    }

    /// The special token `text` starts with, if the vocabulary has them: its id and length.
    fn special_at(&self, text: &str) -> Option<(u32, usize)> {
        if !(self.specials && text.starts_with('[')) {
            return None;
        }
        let i = SPECIALS.iter().position(|s| text.starts_with(s))?;
        Some((self.chars.len() as u32 + i as u32, SPECIALS[i].len()))
    }

    /// One id per character, and one per special token written out (`[MASK]`). An unseen
    /// character is `[UNK]` where there is one, else the user's mapping, else an error.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let unk = self.chars.len() as u32 + 1;
        let mut ids = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some((id, len)) = self.special_at(rest) {
                ids.push(id);
                rest = &rest[len..];
                continue;
            }
            ids.push(match self.id(c) {
                Some(id) => id,
                None if self.specials => unk,
                None => {
                    return Err(Error::Tokenizer(format!(
                        "the character {c:?} (U+{:04X}) is not in the vocabulary of this \
                         model; remove it, or map unseen characters to one the model knows",
                        c as u32
                    )));
                }
            });
            rest = &rest[c.len_utf8()..];
        }
        Ok(ids)
    }

    /// The text of token `id`: a character, or a special token's name.
    fn token(&self, id: u32) -> Option<String> {
        let n = self.chars.len();
        match (id as usize).checked_sub(n) {
            None => Some(self.chars[id as usize].to_string()),
            Some(i) if self.specials && i < SPECIALS.len() => Some(SPECIALS[i].to_string()),
            Some(_) => None,
        }
    }

    /// Checks a vocabulary read from a file and applies its unknown-character mapping.
    fn checked(mut chars: Vec<char>, unknown: Option<char>) -> Result<Tokenizer> {
        let n = chars.len();
        chars.sort_unstable();
        chars.dedup();
        if n == 0 || chars.len() != n {
            return Err(Error::Tokenizer(
                "the char vocabulary is empty or has duplicates".into(),
            ));
        }
        let tokenizer = Tokenizer::Char(CharTokenizer {
            chars,
            unknown: None,
            specials: false,
        });
        match unknown {
            Some(c) => tokenizer.with_unknown(c),
            None => Ok(tokenizer),
        }
    }

    /// Hugging Face's form: BPE over the characters without merges, ids in Kiln's order, the
    /// unknown-character mapping as BPE's `unk_token` (without one, `tokenizers` drops unseen
    /// characters where Kiln refuses them), and a decoder that joins tokens without spaces.
    fn to_hf(&self) -> Result<tokenizers::Tokenizer> {
        let vocab: Vocab = self
            .chars
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let mut bpe = BPE::builder().vocab_and_merges(vocab, vec![]);
        if let Some(c) = self.unknown {
            bpe = bpe.unk_token(c.to_string());
        }
        let bpe = bpe.build().map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_decoder(Some(Fuse::new()));
        if self.specials {
            add_specials(&mut tokenizer)?;
        }
        Ok(tokenizer)
    }

    /// A `tokenizer.json` in the form [`CharTokenizer::to_hf`] writes (a merge-free BPE over
    /// single characters in sorted order, nothing else in the pipeline but an encoder's export's
    /// `[CLS] … [SEP]` template, which Kiln's data path applies itself), as a char tokenizer;
    /// `None` for any other file.
    fn from_hf(value: &serde_json::Value) -> Option<Result<Tokenizer>> {
        let model = &value["model"];
        let post = &value["post_processor"];
        let plain = value["normalizer"].is_null()
            && value["pre_tokenizer"].is_null()
            && (post.is_null() || post["type"] == "TemplateProcessing");
        let merge_free = model["type"] == "BPE"
            && model["merges"].as_array().is_some_and(Vec::is_empty)
            && value["decoder"]["type"] == "Fuse";
        if !(plain && merge_free) {
            return None;
        }
        let chars = model["vocab"].as_object()?.len() as u64;
        // No added tokens, or exactly the encoder's specials right after the characters.
        let added = value["added_tokens"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let specials = added.len() == SPECIALS.len();
        let as_written = added.iter().enumerate().all(|(i, t)| {
            specials && t["content"] == SPECIALS[i] && t["id"].as_u64() == Some(chars + i as u64)
        });
        if !as_written {
            return None;
        }
        let mut entries: Vec<(u64, char)> = Vec::new();
        for (token, id) in model["vocab"].as_object()? {
            let mut chars = token.chars();
            let (Some(c), None, Some(id)) = (chars.next(), chars.next(), id.as_u64()) else {
                return None;
            };
            entries.push((id, c));
        }
        entries.sort_unstable();
        let in_order = entries
            .iter()
            .enumerate()
            .all(|(i, &(id, _))| id == i as u64)
            && entries.windows(2).all(|w| w[0].1 < w[1].1);
        if !in_order {
            return None;
        }
        let unknown = match &model["unk_token"] {
            serde_json::Value::String(s) if s.chars().count() == 1 => s.chars().next(),
            serde_json::Value::Null => None,
            _ => return None,
        };
        let tokenizer = Self::checked(entries.into_iter().map(|(_, c)| c).collect(), unknown);
        Some(match specials {
            true => tokenizer.and_then(Tokenizer::with_specials),
            false => tokenizer,
        })
    }
}

impl Tokenizer {
    /// Learns a tokenizer from text.
    pub fn train(kind: TokenizerKind, text: &str) -> Result<Self> {
        match kind {
            TokenizerKind::Char => {
                let mut chars: Vec<char> = text.chars().collect();
                chars.sort_unstable();
                chars.dedup();
                if chars.is_empty() {
                    return Err(Error::Tokenizer(
                        "cannot build a vocabulary from empty text".into(),
                    ));
                }
                Ok(Self::Char(CharTokenizer {
                    chars,
                    unknown: None,
                    specials: false,
                }))
            }
            TokenizerKind::Bpe { vocab_size } => {
                if vocab_size < BPE_MIN_VOCAB {
                    return Err(Error::Tokenizer(format!(
                        "a byte-level BPE vocabulary needs at least {BPE_MIN_VOCAB} tokens, got {vocab_size}"
                    )));
                }
                // GPT-2's settings: no space is added before the text, so decode(encode(s)) == s.
                let byte_level = ByteLevel::new(false, true, true);
                let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
                tokenizer.with_pre_tokenizer(Some(byte_level));
                tokenizer.with_decoder(Some(byte_level));
                let mut trainer = TrainerWrapper::from(
                    BpeTrainer::builder()
                        .vocab_size(vocab_size)
                        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                        .show_progress(false)
                        .build(),
                );
                tokenizer
                    .train(&mut trainer, text.split_inclusive('\n'))
                    .map_err(|e| Error::Tokenizer(format!("BPE training failed: {e}")))?;
                Ok(Self::Bpe(Box::new(tokenizer)))
            }
            TokenizerKind::WordPiece { vocab_size } => {
                if vocab_size <= SPECIALS.len() {
                    return Err(Error::Tokenizer(format!(
                        "a WordPiece vocabulary needs more than its {} special tokens, got \
                         {vocab_size}",
                        SPECIALS.len()
                    )));
                }
                let mut tokenizer = tokenizers::Tokenizer::new(train_wordpiece(text, vocab_size)?);
                tokenizer
                    .with_normalizer(Some(wordpiece_normalizer()))
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
                tokenizer.with_decoder(Some(WordPieceDecoder::default()));
                tokenizer
                    .add_special_tokens(SPECIALS.map(|s| AddedToken::from(s, true)))
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok(Self::Bpe(Box::new(tokenizer)))
            }
        }
    }

    /// GPT-2's tokenizer from OpenAI's original files in `dir` (`encoder.json`, the vocabulary,
    /// and `vocab.bpe`, the merges), built as transformers' GPT2TokenizerFast builds it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_openai(dir: &std::path::Path) -> Result<Self> {
        let (vocab, merges) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
        for file in [&vocab, &merges] {
            if !file.is_file() {
                return Err(Error::Tokenizer(format!(
                    "{} is missing: GPT-2's tokenizer is encoder.json and vocab.bpe",
                    file.display()
                )));
            }
        }
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let bpe = BPE::from_file(&path(&vocab), &path(&merges))
            .build()
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", dir.display())))?;
        let byte_level = ByteLevel::new(false, true, true);
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(byte_level));
        tokenizer.with_decoder(Some(byte_level));
        Ok(Self::Bpe(Box::new(tokenizer)))
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Char(t) => t.chars.len() + if t.specials { SPECIALS.len() } else { 0 },
            Self::Bpe(t) => t.get_vocab_size(true),
        }
    }

    /// This tokenizer with BERT's [`SPECIALS`] after its vocabulary (unchanged if it has them),
    /// as an encoder needs.
    pub fn with_specials(self) -> Result<Self> {
        if self.specials().is_some() {
            return Ok(self);
        }
        match self {
            Self::Char(mut t) => {
                t.specials = true;
                Ok(Self::Char(t))
            }
            Self::Bpe(mut t) => {
                add_specials(&mut t)?;
                Ok(Self::Bpe(t))
            }
        }
    }

    /// The ids of the special tokens, if the tokenizer has all of [`SPECIALS`].
    pub fn specials(&self) -> Option<Specials> {
        let [pad, unk, cls, sep, mask] = match self {
            Self::Char(t) if t.specials => {
                let n = t.chars.len() as u32;
                [n, n + 1, n + 2, n + 3, n + 4]
            }
            Self::Char(_) => return None,
            Self::Bpe(t) => {
                let ids = SPECIALS.map(|s| t.token_to_id(s));
                if ids.iter().any(Option::is_none) {
                    return None;
                }
                ids.map(Option::unwrap_or_default)
            }
        };
        Some(Specials {
            pad,
            unk,
            cls,
            sep,
            mask,
        })
    }

    /// Maps every character outside a char vocabulary to `c`, which must be in it: the `<unk>`
    /// the user chooses instead of an error. Byte-level BPE encodes any text and is unchanged.
    pub fn with_unknown(self, c: char) -> Result<Self> {
        match self {
            Self::Char(mut t) => {
                if t.chars.binary_search(&c).is_err() {
                    return Err(Error::Tokenizer(format!(
                        "{c:?} is not in the vocabulary of this model; unseen characters can only \
                         map to one it knows"
                    )));
                }
                t.unknown = Some(c);
                Ok(Self::Char(t))
            }
            bpe => Ok(bpe),
        }
    }

    /// Text to token ids. A character the tokenizer never saw is an error that names it, unless
    /// [`Tokenizer::with_unknown`] chose where such characters go.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Char(t) => t.encode(text),
            Self::Bpe(t) => Ok(t
                .encode(text, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec()),
        }
    }

    /// Token ids to text. Byte-level BPE may end inside a multi-byte character; such bytes decode
    /// as U+FFFD until the rest arrives.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let out_of_range = |id: u32| {
            Error::Tokenizer(format!(
                "token id {id} is outside the vocabulary ({})",
                self.vocab_size()
            ))
        };
        match self {
            Self::Char(t) => ids
                .iter()
                .map(|&id| t.token(id).ok_or_else(|| out_of_range(id)))
                .collect(),
            Self::Bpe(t) => {
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
                    return Err(out_of_range(id));
                }
                t.decode(ids, false)
                    .map_err(|e| Error::Tokenizer(e.to_string()))
            }
        }
    }

    /// The `tokenizer.json` text, in Hugging Face's format.
    pub fn to_json(&self) -> Result<String> {
        let hf = match self {
            Self::Char(t) => &t.to_hf()?,
            Self::Bpe(t) => t.as_ref(),
        };
        hf.to_string(false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// `json` in Hugging Face's format: as it is, unless it is Kiln's older char file, which is
    /// rewritten (so a checkpoint from before exports a file transformers loads).
    pub fn hf_json(json: &str) -> Result<String> {
        match serde_json::from_str::<CharFile>(json) {
            Ok(_) => Self::from_json(json)?.to_json(),
            Err(_) => Ok(json.to_owned()),
        }
    }

    /// Reads a `tokenizer.json` written by [`Tokenizer::to_json`] (or by Kiln's older char
    /// format) or by Hugging Face `tokenizers`.
    pub fn from_json(json: &str) -> Result<Self> {
        if let Ok(file) = serde_json::from_str::<CharFile>(json) {
            let CharTokenizer { chars, unknown, .. } = file.kiln_char_tokenizer;
            return CharTokenizer::checked(chars, unknown);
        }
        let unreadable = |e: serde_json::Error| {
            Error::Tokenizer(format!("not a tokenizer.json this version can read: {e}"))
        };
        // JSON first, then the tokenizer from the parsed value: `tokenizers` 0.23 panics (an
        // `expect` in its decoder's deserializer) on some malformed documents, and a parsed
        // value cannot be malformed (found by tests/fuzz.rs).
        let value: serde_json::Value = serde_json::from_str(json).map_err(unreadable)?;
        if let Some(chars) = CharTokenizer::from_hf(&value) {
            return chars;
        }
        check_merges(&value["model"])?;
        serde_json::from_value::<tokenizers::Tokenizer>(value)
            .map(|t| Self::Bpe(Box::new(t)))
            .map_err(unreadable)
    }
}

/// Refuses a BPE merge whose result is not in the vocabulary. `tokenizers` 0.23 would report
/// it, but first copies the two tokens into a buffer as long as the longest vocabulary entry,
/// and panics when they do not fit (found by tests/fuzz.rs).
fn check_merges(model: &serde_json::Value) -> Result<()> {
    let Some(vocab) = model["vocab"].as_object() else {
        return Ok(()); // not a BPE vocabulary: `tokenizers` says what is wrong
    };
    if model["type"] != "BPE" {
        return Ok(());
    }
    let prefix = model["continuing_subword_prefix"].as_str().unwrap_or("");
    for merge in model["merges"].as_array().into_iter().flatten() {
        let pair = match merge {
            serde_json::Value::String(s) => s.split_once(' '),
            serde_json::Value::Array(p) if p.len() == 2 => p[0].as_str().zip(p[1].as_str()),
            _ => continue, // malformed: `tokenizers` reports it
        };
        let Some((a, b)) = pair else { continue };
        let joined = b.strip_prefix(prefix).map(|rest| format!("{a}{rest}"));
        if !joined.is_some_and(|t| vocab.contains_key(&t)) {
            return Err(Error::Tokenizer(format!(
                "not a tokenizer.json this version can read: the merge {a:?} + {b:?} makes a \
                 token that is not in the vocabulary"
            )));
        }
    }
    Ok(())
}

/// Registers [`SPECIALS`] as special tokens: ids after the vocabulary, found whole in any text.
fn add_specials(t: &mut tokenizers::Tokenizer) -> Result<()> {
    t.add_special_tokens(SPECIALS.map(|s| AddedToken::from(s, true)))
        .map(drop)
        .map_err(|e| Error::Tokenizer(format!("adding the special tokens: {e}")))
}

/// The normalizer of Kiln's WordPiece: cased, accents kept (the corpus' own spelling), CJK
/// characters spaced, control characters dropped.
fn wordpiece_normalizer() -> BertNormalizer {
    BertNormalizer::new(true, true, Some(false), false)
}

/// Trains a WordPiece vocabulary of `vocab_size` tokens ([`SPECIALS`] first) on `text`, the
/// same on every run.
///
/// Why not `tokenizers`' `WordPieceTrainer` as it is: it numbers the `##` continuation pieces
/// in the order of a hash map that is seeded anew in each process, and breaks ties between
/// equally frequent merges by those numbers, so one text gave a different vocabulary on every
/// run (and a seeded run a different model). Here each continuation character is written as a
/// placeholder character of its own before the library's BPE trainer learns the merges: every
/// initial piece is then a character, numbered in sorted order, and ties break the same way
/// each time. The placeholders become `##` pieces again in the vocabulary, which is what the
/// WordPiece trainer keeps of its BPE (greedy longest-match encoding needs no merges).
fn train_wordpiece(text: &str, vocab_size: usize) -> Result<WordPiece> {
    let err = |e: tokenizers::Error| Error::Tokenizer(format!("WordPiece training failed: {e}"));
    let normalizer = wordpiece_normalizer();
    let mut words = Vec::new();
    for line in text.lines() {
        let mut normalized = NormalizedString::from(line);
        normalizer.normalize(&mut normalized).map_err(err)?;
        let mut split = PreTokenizedString::from(normalized);
        BertPreTokenizer.pre_tokenize(&mut split).map_err(err)?;
        words.extend(
            split
                .get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .map(|(word, _, _)| word.to_owned()),
        );
    }
    // Placeholders from the private-use planes, skipping any character the text has.
    let used: std::collections::BTreeSet<char> = words.iter().flat_map(|w| w.chars()).collect();
    let continuing: std::collections::BTreeSet<char> =
        words.iter().flat_map(|w| w.chars().skip(1)).collect();
    let mut free = (0xF_0000..=0x10_FFFD)
        .filter_map(char::from_u32)
        .filter(|c| !used.contains(c));
    let mut placeholder = std::collections::BTreeMap::new();
    for &c in &continuing {
        let p = free.next().ok_or_else(|| {
            Error::Tokenizer("WordPiece training: the text uses too many characters".into())
        })?;
        placeholder.insert(c, p);
    }
    let original: std::collections::HashMap<char, char> =
        placeholder.iter().map(|(&c, &p)| (p, c)).collect();

    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .special_tokens(SPECIALS.map(|s| AddedToken::from(s, true)).to_vec())
        .show_progress(false)
        .build();
    trainer
        .feed(words.iter(), |word| {
            let mut chars = word.chars();
            let first = chars.next().into_iter();
            Ok(vec![first.chain(chars.map(|c| placeholder[&c])).collect()])
        })
        .map_err(err)?;
    let mut bpe = BPE::default();
    trainer.train(&mut bpe).map_err(err)?;
    let vocab: ahash::AHashMap<String, u32> = bpe
        .get_vocab()
        .into_iter()
        .map(|(token, id)| {
            let unplaced: String = token
                .chars()
                .map(|c| *original.get(&c).unwrap_or(&c))
                .collect();
            match token.chars().next() {
                Some(c) if original.contains_key(&c) => (format!("##{unplaced}"), id),
                _ => (unplaced, id),
            }
        })
        .collect();
    WordPiece::builder()
        .vocab(vocab)
        .unk_token(SPECIALS[1].into())
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "To be, or not to be: that is the question.\nCafé — naïve façade, 東京 ✓\n";

    fn round_trip(kind: TokenizerKind) {
        let t = Tokenizer::train(kind, &TEXT.repeat(20)).unwrap();
        let ids = t.encode(TEXT).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), TEXT);
        let again = Tokenizer::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(again.encode(TEXT).unwrap(), ids);
        assert_eq!(again.vocab_size(), t.vocab_size());
    }

    /// WordPiece training gives one vocabulary for one text (`tokenizers`' own trainer gave a
    /// different one on each call, see [`train_wordpiece`]), made of BERT's pieces: the
    /// specials first, whole-word pieces and `##` continuations of the text's characters, no
    /// placeholder left over.
    #[test]
    fn wordpiece_is_the_same_on_every_run() {
        let text = TEXT.repeat(5) + "the theme thereof; whether tis nobler in the mind to suffer";
        let kind = TokenizerKind::WordPiece { vocab_size: 80 };
        let first = Tokenizer::train(kind, &text).unwrap().to_json().unwrap();
        for _ in 0..4 {
            assert_eq!(
                Tokenizer::train(kind, &text).unwrap().to_json().unwrap(),
                first
            );
        }
        let t = Tokenizer::train(kind, &text).unwrap();
        assert_eq!(t.vocab_size(), 80);
        let Tokenizer::Bpe(hf) = &t else {
            panic!("WordPiece is a Hugging Face tokenizer")
        };
        let vocab = hf.get_vocab(false);
        for (id, special) in SPECIALS.iter().enumerate() {
            assert_eq!(vocab[*special], id as u32);
        }
        let mut continuing = 0;
        for token in vocab.keys().filter(|t| !SPECIALS.contains(&t.as_str())) {
            let piece = token.strip_prefix("##").unwrap_or(token);
            continuing += usize::from(piece.len() < token.len());
            assert!(piece.chars().all(|c| text.contains(c)), "{token:?}");
        }
        assert!(continuing > 10, "{vocab:?}");
        let ids = t.encode("whether tis nobler").unwrap();
        assert_eq!(t.decode(&ids).unwrap(), "whether tis nobler");
    }

    #[test]
    fn char_round_trip_non_ascii() {
        round_trip(TokenizerKind::Char);
    }

    /// Unseen characters are an error that names them, or, once the user maps them to a known
    /// character, that character's id; the mapping survives `tokenizer.json`.
    #[test]
    fn unseen_characters_error_or_map_to_the_chosen_character() {
        let t = Tokenizer::train(TokenizerKind::Char, "to be or not to be?").unwrap();
        let err = t.encode("to bé").unwrap_err().to_string();
        assert!(err.contains("'é'"), "{err}");
        let err = t.clone().with_unknown('é').unwrap_err().to_string();
        assert!(err.contains("not in the vocabulary"), "{err}");
        let mapped = t.clone().with_unknown('?').unwrap();
        assert_eq!(mapped.encode("to bé").unwrap(), t.encode("to b?").unwrap());
        assert_eq!(mapped.vocab_size(), t.vocab_size());
        let again = Tokenizer::from_json(&mapped.to_json().unwrap()).unwrap();
        assert_eq!(again.encode("東").unwrap(), t.encode("?").unwrap());
    }

    /// A char vocabulary's file is Hugging Face's: `tokenizers` itself loads it and gives Kiln's
    /// ids and text, with the unknown-character mapping as `unk_token`; Kiln reads it back as a
    /// char tokenizer, and still reads the older `kiln_char_tokenizer` file.
    #[test]
    fn char_tokenizer_json_is_hugging_face_format() {
        let t = Tokenizer::train(TokenizerKind::Char, &TEXT.repeat(3)).unwrap();
        let hf: tokenizers::Tokenizer = t.to_json().unwrap().parse().unwrap();
        let ids = hf.encode(TEXT, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, t.encode(TEXT).unwrap());
        assert_eq!(hf.decode(&ids, false).unwrap(), TEXT);
        assert!(matches!(
            Tokenizer::from_json(&t.to_json().unwrap()).unwrap(),
            Tokenizer::Char(_)
        ));

        let mapped = t.clone().with_unknown('.').unwrap();
        let hf: tokenizers::Tokenizer = mapped.to_json().unwrap().parse().unwrap();
        let ids = hf.encode("né½", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, mapped.encode("né½").unwrap());
        assert_eq!(ids, t.encode("né.").unwrap());

        let legacy = r#"{"kiln_char_tokenizer":{"chars":["a","b","c"],"unknown":"a"}}"#;
        let old = Tokenizer::from_json(legacy).unwrap();
        assert_eq!(old.encode("cbz").unwrap(), vec![2, 1, 0]);
        let upgraded = Tokenizer::hf_json(legacy).unwrap();
        assert!(upgraded.parse::<tokenizers::Tokenizer>().is_ok());
        let upgraded = Tokenizer::from_json(&upgraded).unwrap();
        assert_eq!(upgraded.encode("cbz").unwrap(), vec![2, 1, 0]);
        let current = t.to_json().unwrap();
        assert_eq!(Tokenizer::hf_json(&current).unwrap(), current);
    }

    /// Byte-level BPE is never taken for a char vocabulary, even one whose merges are empty.
    #[test]
    fn only_the_char_form_reads_as_char() {
        let bpe = Tokenizer::train(TokenizerKind::Bpe { vocab_size: 256 }, TEXT).unwrap();
        let again = Tokenizer::from_json(&bpe.to_json().unwrap()).unwrap();
        assert!(matches!(again, Tokenizer::Bpe(_)));
        assert_eq!(again.encode(TEXT).unwrap(), bpe.encode(TEXT).unwrap());
    }

    #[test]
    fn bpe_round_trip_non_ascii() {
        round_trip(TokenizerKind::Bpe { vocab_size: 300 });
    }

    #[test]
    fn bpe_learns_merges() {
        let t = Tokenizer::train(TokenizerKind::Bpe { vocab_size: 300 }, &TEXT.repeat(20)).unwrap();
        assert!(
            t.vocab_size() > 256 && t.vocab_size() <= 300,
            "{}",
            t.vocab_size()
        );
        // Merges make the text shorter in tokens than in bytes.
        assert!(t.encode(TEXT).unwrap().len() < TEXT.len() / 2);
        assert!(Tokenizer::train(TokenizerKind::Bpe { vocab_size: 100 }, TEXT).is_err());
    }

    /// Found by tests/fuzz.rs: a syntax error inside the decoder makes `tokenizers` panic
    /// (still so in 0.23.2, as the first assertion shows); `from_json` returns an error.
    #[test]
    fn a_malformed_decoder_is_an_error_not_a_panic() {
        let t = Tokenizer::train(TokenizerKind::Bpe { vocab_size: 260 }, &TEXT.repeat(5)).unwrap();
        let json = t.to_json().unwrap();
        let decoder = json.find("\"decoder\"").unwrap();
        let at = decoder + json[decoder..].find("true").unwrap();
        let broken = format!("{}tru{}", &json[..at], &json[at + 4..]);
        let upstream = std::panic::catch_unwind(|| broken.parse::<tokenizers::Tokenizer>());
        assert!(upstream.is_err(), "tokenizers no longer panics here");
        let err = Tokenizer::from_json(&broken).unwrap_err().to_string();
        assert!(err.contains("not a tokenizer.json"), "{err}");
    }

    /// Found by tests/fuzz.rs: a merge longer than every vocabulary entry makes `tokenizers`
    /// panic (still so in 0.23.2, as the first assertion shows); `from_json` returns an error.
    #[test]
    fn a_merge_outside_the_vocabulary_is_an_error_not_a_panic() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
            "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
            "vocab":{"a":0,"b":1},"merges":[["a","b"]]}}"#;
        let upstream = std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>());
        assert!(upstream.is_err(), "tokenizers no longer panics here");
        let err = Tokenizer::from_json(json).unwrap_err().to_string();
        assert!(err.contains("not in the vocabulary"), "{err}");
        let fixed = json.replace(r#""b":1}"#, r#""b":1,"ab":2}"#);
        assert_eq!(
            Tokenizer::from_json(&fixed).unwrap().encode("ab").unwrap(),
            vec![2]
        );
    }

    #[test]
    fn unknown_char_and_bad_json_are_errors() {
        let t = Tokenizer::train(TokenizerKind::Char, "abc").unwrap();
        assert!(matches!(t.encode("abz"), Err(Error::Tokenizer(m)) if m.contains("'z'")));
        assert!(t.decode(&[7]).is_err());
        assert!(Tokenizer::from_json("{not json").is_err());
        assert!(Tokenizer::from_json(r#"{"kiln_char_tokenizer":{"chars":[]}}"#).is_err());
    }
}
