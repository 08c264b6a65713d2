//! Why a message failed to decode: one variant per failure, each with a stable metric label.

use crate::types::RecordType;
use std::fmt;

/// The part of a message being read when decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Question,
    Answer,
    Authority,
    Additional,
}

impl Section {
    /// Lower-case name, as used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Question => "question",
            Section::Answer => "answer",
            Section::Authority => "authority",
            Section::Additional => "additional",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that cannot be decoded. Offsets are byte offsets into the message.
///
/// Only broken structure (header, counts, names, record framing) is an error. A record whose
/// typed data does not parse is kept, with its data shown as RFC 3597 `\# LEN HEX`, so one odd
/// record never hides the question.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the 12-byte header.
    #[error("message of {len} bytes is shorter than the 12-byte DNS header")]
    ShortHeader { len: usize },
    /// The message ends inside an entry of `section`; more bytes were needed at `offset`.
    #[error("message ends inside the {section} section: bytes needed at offset {offset}")]
    Truncated { section: Section, offset: usize },
    /// The header counts more entries than the rest of the message could hold even if every
    /// entry had the smallest possible size (a question needs 5 bytes, a record 11).
    #[error("header counts {count} {section} entries, more than the message bytes can hold")]
    TooManyRecords { section: Section, count: u16 },
    /// A compression pointer targets an offset past the end of the message.
    #[error(
        "compression pointer at offset {offset} targets {target}, past the end of the message"
    )]
    PointerOutOfRange { offset: usize, target: usize },
    /// A compression pointer targets a later offset; only backward pointers are valid.
    #[error("compression pointer at offset {offset} points forward to {target}")]
    PointerForward { offset: usize, target: usize },
    /// A compression pointer targets bytes of the same name already read (itself included):
    /// following it would loop.
    #[error("compression pointer at offset {offset} points back into its own name at {target}")]
    PointerLoop { offset: usize, target: usize },
    /// The name starting at `offset` needs more compression pointers than any real encoder
    /// would use (one per label).
    #[error("name at offset {offset} follows more than 127 compression pointers")]
    TooManyPointers { offset: usize },
    /// A label length byte of 64..=127: a label longer than 63 octets (the `0b01` prefix was
    /// the extended label type of RFC 2671, withdrawn by RFC 6891).
    #[error("label at offset {offset} claims {len} octets, more than 63")]
    LabelTooLong { offset: usize, len: u8 },
    /// A label length byte with the reserved `0b10` prefix.
    #[error("label at offset {offset} has the reserved type byte {byte:#04x}")]
    BadLabelType { offset: usize, byte: u8 },
    /// The name starting at `offset` is longer than 255 octets in wire form.
    #[error("name at offset {offset} is longer than 255 octets")]
    NameTooLong { offset: usize },
    /// Record data that must parse for the message to make sense does not: the EDNS OPT
    /// record, whose options overrun its data.
    #[error("{rtype} record data at offset {offset} is malformed")]
    BadRdata { rtype: RecordType, offset: usize },
    /// A second OPT record (RFC 6891 section 6.1.1: the message is malformed).
    #[error("second OPT record at offset {offset}")]
    DuplicateOpt { offset: usize },
}

impl DecodeError {
    /// A short stable label for metrics, e.g. `"pointer_loop"`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::ShortHeader { .. } => "short_header",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::TooManyRecords { .. } => "too_many_records",
            DecodeError::PointerOutOfRange { .. } => "pointer_out_of_range",
            DecodeError::PointerForward { .. } => "pointer_forward",
            DecodeError::PointerLoop { .. } => "pointer_loop",
            DecodeError::TooManyPointers { .. } => "too_many_pointers",
            DecodeError::LabelTooLong { .. } => "label_too_long",
            DecodeError::BadLabelType { .. } => "bad_label_type",
            DecodeError::NameTooLong { .. } => "name_too_long",
            DecodeError::BadRdata { .. } => "bad_rdata",
            DecodeError::DuplicateOpt { .. } => "duplicate_opt",
        }
    }
}
