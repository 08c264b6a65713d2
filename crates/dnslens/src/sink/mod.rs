//! Output formats as equals behind one trait, as ripgrep's printers: the run loop hands every
//! event and alert to a sink and knows nothing of how it is shown.

mod count;
mod json;
mod table;
mod writer;

use std::io;
use std::time::Instant;

use dnslens_cluster::ClusterStatus;
use dnslens_detect::{Alert, DetectStats};
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::{DnsEvent, Stats};
use dnslens_probe::KernelCounters;

pub use count::{CountFormat, CountSink};
pub use json::JsonSink;
pub use table::{TableSink, TableStyle};
pub use writer::{OutputStats, PATIENCE as OUTPUT_PATIENCE};

pub trait Sink {
    /// Shows one event, or takes it into account. Returns whether something was printed for
    /// it (what `--count` counts).
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool>;

    /// Shows one TCP connect. Only the JSON sink of `trace --connects` shows them, for
    /// `dnslens detect` to replay.
    fn connect(&mut self, _connect: &ConnectEvent) -> io::Result<()> {
        Ok(())
    }

    /// Shows one alert of the detectors, in the same stream as the events. Sinks that show
    /// none (`count`, whose runs have no detectors) keep this default.
    fn alert(&mut self, _alert: &Alert) -> io::Result<()> {
        Ok(())
    }

    /// An interval ended at wall-clock `wall_ns` (sinks that report per interval print then).
    fn interval(&mut self, _wall_ns: u64) -> io::Result<()> {
        Ok(())
    }

    /// Writes out anything buffered. The run loop calls it after each batch of records, so
    /// `event` need not.
    fn flush(&mut self) -> io::Result<()>;

    /// What the output cost so far: the run loop's waits for room in the writer's queue (the
    /// time a loss of the ring buffer can be blamed on the output) and lines dropped while it
    /// was stalled. Sinks without a writer thread cost none.
    fn output(&self) -> OutputStats {
        OutputStats::default()
    }

    /// The run is over at `wall_ns`: print what is left.
    fn finish(&mut self, _wall_ns: u64) -> io::Result<()> {
        self.flush()
    }

    /// Whether the sink exports the run's own health (the agent's metrics): then the run loop
    /// gathers a [`Status`] for it about once a second.
    fn wants_status(&self) -> bool {
        false
    }

    /// The run's own counters and health, gathered by the run loop.
    fn status(&mut self, _status: &Status) {}
}

/// The run's own counters and health at `now`, for sinks that export them.
#[derive(Clone, Debug)]
pub struct Status {
    pub now: Instant,
    /// `None` when the kernel's counters could not be read.
    pub kernel: Option<KernelCounters>,
    /// Ring-buffer bytes not read yet, and its size.
    pub ring: (u64, u64),
    /// The sink's [`Sink::output`].
    pub output: OutputStats,
    pub lens: Stats,
    /// `None` without detectors.
    pub detect: Option<DetectStats>,
    /// `None` without a cluster.
    pub cluster: Option<ClusterStatus>,
}
