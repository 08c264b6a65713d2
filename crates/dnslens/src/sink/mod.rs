//! Output formats as equals behind one trait, as ripgrep's printers: the run loop hands every
//! event to a sink and knows nothing of how it is shown.

mod count;
mod json;
mod table;

use std::io;

use dnslens_lens::DnsEvent;

pub use count::{CountFormat, CountSink};
pub use json::JsonSink;
pub use table::{TableSink, TableStyle};

pub trait Sink {
    /// Shows one event, or takes it into account. Returns whether something was printed for
    /// it (what `--count` counts).
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool>;

    /// An interval ended at wall-clock `wall_ns` (sinks that report per interval print then).
    fn interval(&mut self, _wall_ns: u64) -> io::Result<()> {
        Ok(())
    }

    /// Writes out anything buffered. The run loop calls it after each batch of records, so
    /// `event` need not.
    fn flush(&mut self) -> io::Result<()>;

    /// The run is over at `wall_ns`: print what is left.
    fn finish(&mut self, _wall_ns: u64) -> io::Result<()> {
        self.flush()
    }
}
