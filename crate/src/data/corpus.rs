//! Text corpus: bytes of one or more files -> checked UTF-8 text -> a deterministic train/val split.

use crate::error::{Error, Result};

/// Fraction of the characters that train; the rest, at the end, validate (as nanoGPT does).
pub const TRAIN_FRACTION: f64 = 0.9;

/// The corpus text and where it splits.
#[derive(Clone, Debug)]
pub struct Corpus {
    text: String,
    /// Byte offset (on a char boundary) where the validation part begins.
    split: usize,
}

impl Corpus {
    /// Builds a corpus from named files, in the order given, joined by a blank line.
    ///
    /// Each file must be non-empty UTF-8 text; CRLF and lone CR line ends become LF.
    pub fn from_files<N: AsRef<str>, B: AsRef<[u8]>>(files: &[(N, B)]) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Data("no input files were given".into()));
        }
        let mut text = String::new();
        for (name, bytes) in files {
            let part = decode(name.as_ref(), bytes.as_ref())?;
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&part);
        }
        Self::from_text(text)
    }

    /// Builds a corpus from text already in memory (normalising line ends).
    pub fn from_text(text: String) -> Result<Self> {
        let text = normalise(text);
        let chars = text.chars().count();
        if chars < 2 {
            return Err(Error::Data(
                "the text is empty: there is nothing to learn from".into(),
            ));
        }
        let train_chars = ((chars as f64 * TRAIN_FRACTION) as usize).clamp(1, chars - 1);
        let split = text
            .char_indices()
            .nth(train_chars)
            .map_or(text.len(), |(i, _)| i);
        Ok(Self { text, split })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn train_text(&self) -> &str {
        &self.text[..self.split]
    }

    pub fn val_text(&self) -> &str {
        &self.text[self.split..]
    }
}

/// Checks one file's bytes and returns its text; the error names the file and what is wrong.
fn decode(name: &str, bytes: &[u8]) -> Result<String> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Data(format!(
            "{name} is empty: there is no text to learn from"
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // UTF-8 byte-order mark
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::Data(format!(
            "{name} is not UTF-8 text (invalid byte at offset {}); save it as UTF-8 plain text",
            e.valid_up_to()
        ))
    })?;
    // Valid UTF-8 can still be binary: NUL and other control bytes do not occur in prose.
    let control = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        .count();
    if text.contains('\0') || control * 100 > text.len() {
        return Err(Error::Data(format!(
            "{name} looks like a binary file, not text ({control} control characters)"
        )));
    }
    Ok(text.to_owned())
}

fn normalise(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

/// Reads files, and the `.txt` files of directories (sorted by name), from disk.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_paths(paths: &[std::path::PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for path in paths {
        let describe =
            |e: std::io::Error| Error::Data(format!("cannot read {}: {e}", path.display()));
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .map_err(describe)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(Error::Data(format!(
                    "{} holds no .txt files",
                    path.display()
                )));
            }
            for p in entries {
                let bytes = std::fs::read(&p).map_err(describe)?;
                files.push((p.display().to_string(), bytes));
            }
        } else {
            files.push((
                path.display().to_string(),
                std::fs::read(path).map_err(describe)?,
            ));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_ninety_ten_and_deterministic() {
        let c = Corpus::from_files(&[("a", "0123456789".repeat(10))]).unwrap();
        assert_eq!(c.train_text().len(), 90);
        assert_eq!(c.val_text(), "0123456789");
    }

    #[test]
    fn crlf_is_normalised_and_files_join() {
        let c = Corpus::from_files(&[("a", "one\r\ntwo"), ("b", "three\rfour")]).unwrap();
        assert_eq!(c.text(), "one\ntwo\n\nthree\nfour");
    }

    #[test]
    fn split_respects_char_boundaries() {
        let c = Corpus::from_text("é".repeat(15)).unwrap();
        assert_eq!(c.train_text().chars().count(), 13);
        assert_eq!(c.val_text().chars().count(), 2);
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let err = |bytes: &[u8]| Corpus::from_files(&[("f.txt", bytes)]).unwrap_err();
        assert!(matches!(err(b""), Error::Data(m) if m.contains("empty")));
        assert!(matches!(err(b" \n\n"), Error::Data(m) if m.contains("empty")));
        assert!(matches!(err(b"caf\xe9 latin-1"), Error::Data(m) if m.contains("not UTF-8")));
        let binary: Vec<u8> = (0u8..=127).cycle().take(4096).collect();
        assert!(matches!(err(&binary), Error::Data(m) if m.contains("binary")));
        let no_files: &[(&str, &[u8])] = &[];
        assert!(Corpus::from_files(no_files).is_err());
    }
}
