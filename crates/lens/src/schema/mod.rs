//! The JSON lines dnslens writes and reads back (docs/schema.md): DNS events, lookups,
//! connects and alerts. Both directions live here so that a field is named once; `tests/schema_doc.rs`
//! checks every written field against the doc and every documented field against the output.

mod lookup;
mod read;
mod write;

pub use lookup::{lookup_to_string, write_lookup_line};
pub use read::{parse_line, Line, ReadError};
pub use write::*;
