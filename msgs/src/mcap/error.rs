//! [`McapError`], everything that can go wrong recording or reading an MCAP file, and [`Truncation`], where a
//! linear read stopped.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::MsgError;

/// Everything that can go wrong recording or reading an MCAP file. Messages name the file and, for file
/// contents, the record and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum McapError {
    /// Opening, reading or creating a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start like an MCAP file (magic and Header record); nothing in it can be trusted.
    #[error("{}: not an MCAP file: {reason}", path.display())]
    NotMcap { path: PathBuf, reason: String },
    /// The file is damaged or unfinished (returned by [`McapEpisode::check_complete`](super::McapEpisode::check_complete)).
    #[error("{}: {damage}", path.display())]
    Damaged { path: PathBuf, damage: Truncation },
    /// The `mcap` writer failed (usually an I/O error underneath).
    #[error("{}: writing MCAP: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: ::mcap::McapError,
    },
    /// A topic was given a second message type (or a different schema for the same type).
    #[error("{}: topic {topic:?} is recorded as {existing}, cannot also record {requested} on it", path.display())]
    TopicConflict {
        path: PathBuf,
        topic: String,
        existing: String,
        requested: String,
    },
    /// A message could not be CDR-encoded.
    #[error("{}: encoding {type_name} for topic {topic:?}: {source}", path.display())]
    Encode {
        path: PathBuf,
        topic: String,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`RecordedMessage::decode`](super::RecordedMessage::decode) was asked for a type other than the channel's.
    #[error("message on {topic:?} at {log_time_ns} ns is {actual:?}, not {expected}")]
    TypeMismatch {
        topic: String,
        log_time_ns: u64,
        actual: String,
        expected: &'static str,
    },
    /// A recorded payload is not valid CDR for its type.
    #[error("message on {topic:?} at {log_time_ns} ns does not decode as {type_name}: {source}")]
    Decode {
        topic: String,
        log_time_ns: u64,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`recover`](super::recover) was asked to overwrite its input.
    #[error("{}: recover would overwrite its own input", path.display())]
    SamePath { path: PathBuf },
}

/// Where and why a linear read stopped before a finished file's end. Everything before `offset` was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset of the record that could not be used (the file's length if it simply ended).
    pub offset: u64,
    /// Index of that record among the file's top-level records (0 is the Header).
    pub record: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} at byte {}: {} (everything before it was kept)",
            self.record, self.offset, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers put these errors in `anyhow` and across threads.
    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<McapError>();
    }
}
