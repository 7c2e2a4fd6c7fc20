//! One error type for every path that touches user input. Each message is a sentence for the user.

/// What went wrong, by kind, so callers (CLI, page) can react to the kind and show the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An impossible or unknown configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Input data that cannot be used as a corpus (empty, not UTF-8, binary, too short).
    #[error("{0}")]
    Data(String),
    /// Text the tokenizer cannot encode, or a tokenizer file it cannot read.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A checkpoint that is corrupt, of another version, or does not fit the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A backend (device) that cannot be created or failed while running.
    #[error("backend: {0}")]
    Backend(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
