//! The JSON lines dnslens writes and reads back (docs/schema.md): DNS events, connects and
//! alerts. Both directions live here so that a field is named once; `tests/schema_doc.rs`
//! checks every written field against the doc and every documented field against the output.

mod read;
mod write;

pub use read::{parse_line, Line, ReadError};
pub use write::*;
