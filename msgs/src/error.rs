//! The one error type of this crate.

use std::fmt::Display;

/// Why a message could not be encoded, decoded or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The buffer is shorter than the 4-byte encapsulation header.
    #[error("CDR buffer is {len} bytes, too short for the 4-byte encapsulation header")]
    MissingHeader { len: usize },
    /// The encapsulation header is not CDR_LE (`00 01 00 00`, options 0..=3 tolerated).
    #[error("unsupported CDR encapsulation header {found:02x?}: expected CDR_LE [00, 01, 00, 00]")]
    BadHeader { found: [u8; 4] },
    /// The data ends in the middle of a value (offsets are relative to the start of the payload after the header).
    #[error("CDR data truncated at payload offset {offset}: need {needed} more bytes, only {remaining} left")]
    UnexpectedEof {
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    /// A string, byte or sequence length prefix claims more than the buffer holds.
    #[error("length prefix {len} at payload offset {offset} exceeds the {remaining} remaining bytes")]
    LengthTooLarge { offset: usize, len: u64, remaining: usize },
    /// A string is not valid UTF-8.
    #[error("string at payload offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    /// A string's last byte is not the NUL terminator, or a NUL occurs inside it.
    #[error("string at payload offset {offset} is not a NUL-terminated C string: {reason}")]
    BadString { offset: usize, reason: &'static str },
    /// A `bool` byte other than 0 or 1.
    #[error("invalid bool byte {value:#04x} at payload offset {offset}")]
    InvalidBool { offset: usize, value: u8 },
    /// Bytes left after the message that are not up to 3 zero padding bytes.
    #[error("{count} unexpected trailing bytes after the message at payload offset {offset} (only up to 3 zero padding bytes are allowed)")]
    TrailingBytes { offset: usize, count: usize },
    /// A string that cannot be represented in CDR (interior NUL) was given to `encode`.
    #[error("cannot encode string containing a NUL byte at index {index}")]
    NulInString { index: usize },
    /// A string, byte buffer or sequence longer than `u32::MAX`.
    #[error("length {len} does not fit the u32 CDR length prefix")]
    TooLong { len: usize },
    /// A Rust/serde construct with no ROS 2 CDR equivalent (maps, options, `deserialize_any`, ...).
    #[error("unsupported in ROS 2 CDR: {0}")]
    Unsupported(&'static str),
    /// An error reported by a serde `Serialize`/`Deserialize` implementation.
    #[error("{0}")]
    Custom(String),
    /// A `sensor_msgs/Image` whose fields are inconsistent (see `Image::validate`).
    #[error("invalid sensor_msgs/Image: {0}")]
    InvalidImage(String),
}

impl serde::ser::Error for MsgError {
    fn custom<T: Display>(msg: T) -> Self {
        MsgError::Custom(msg.to_string())
    }
}

impl serde::de::Error for MsgError {
    fn custom<T: Display>(msg: T) -> Self {
        MsgError::Custom(msg.to_string())
    }
}
