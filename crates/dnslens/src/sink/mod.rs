//! Output formats as equals behind one trait, as ripgrep's printers: the run loop hands every
//! event and alert to a [`Sink`] and knows nothing of how it is shown. The table, the JSON lines,
//! `count`, `top` and the agent's metrics all live here; [`build`] is the one place a sink is
//! made from the settings' [`Output`]. What only one sink has (connects and writer costs for the
//! JSON lines, intervals for `count`, the run's health for the agent) are its own methods, which
//! the owner of an [`AnySink`] calls.
//!
//! Nothing here knows the flags, the settings or the run loop: they depend on this module.

pub mod agent;
mod count;
pub mod dnstap;
pub mod http;
mod json;
pub mod metrics;
pub mod pcapng;
pub mod rotate;
mod table;
#[cfg(test)]
mod test_dir;
pub mod top;
mod writer;

use std::io::{self, BufWriter, IsTerminal, Stdout, StdoutLock, Write};
use std::time::{Duration, Instant};

use dnslens_cluster::ClusterStatus;
use dnslens_detect::{Alert, DetectStats};
use dnslens_lens::count::{self as counting, CountBy, CountedAt, Counter};
use dnslens_lens::counters::Counter as HealthCounter;
use dnslens_lens::filter::Filter;
use dnslens_lens::lookup::{Lookup, LookupStats};
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::served::ServerSide;
use dnslens_lens::{DnsEvent, Role, Stats};
use dnslens_probe::KernelCounters;

use crate::losses::Lost;

pub use agent::{AgentOutput, AgentSink};
pub use count::{CountFormat, CountSink};
pub use json::JsonSink;
pub use table::{Cell as TableColumn, TableSink, TableStyle};
pub use top::{Grouping, TopSink};
pub use writer::{OutputStats, PATIENCE as OUTPUT_PATIENCE};

/// Bytes of output gathered before a write: a batch of records is written in few syscalls.
const OUTPUT_BUFFER: usize = 64 << 10;

/// What every sink does with the stream.
pub trait Sink {
    /// Shows one event, or takes it into account. Returns whether something was printed for
    /// it (what `--count` counts).
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool>;

    /// Shows one lookup (`trace --lookups`). Returns whether it was printed; sinks that show
    /// none keep this default.
    fn lookup(&mut self, _lookup: &Lookup) -> io::Result<bool> {
        Ok(false)
    }

    /// Shows one alert of the detectors, in the same stream as the events. Sinks that show
    /// none (`count`, whose runs have no detectors) keep this default.
    fn alert(&mut self, _alert: &Alert) -> io::Result<()> {
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

/// What a command shows, and how: what [`build`] makes a sink from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `trace` (and `detect`'s alerts): JSON lines or the table.
    Trace {
        json: bool,
        color: bool,
        /// Stop after this many events printed (alerts, with `alerts_only`).
        max_events: Option<u64>,
        /// `--alerts`: alerts only, no events.
        alerts_only: bool,
        /// `--connects`: JSON lines of connects too.
        connects: bool,
        /// `--lookups`: lookups instead of messages.
        lookups: bool,
        /// `--columns`: the table's columns, instead of the defaults.
        columns: Option<Vec<TableColumn>>,
    },
    /// `count`.
    Count {
        /// The keys, in the order of their columns.
        by: Vec<CountBy>,
        at: CountedAt,
        interval: Duration,
        json: bool,
    },
    /// `top`: the live view, redrawn every `interval`.
    Top { by: Grouping, interval: Duration },
    /// `agent`: metrics on HTTP, JSON lines to stdout or a file.
    Agent(AgentOutput),
}

impl Output {
    /// Whether the run feeds the lookup stage: `trace --lookups` shows lookups, `count
    /// --lookups`, `top` and the agent count them.
    pub fn lookups(&self) -> bool {
        self.hooks_libc() || matches!(self, Output::Agent(_))
    }

    /// Whether glibc's resolver calls are hooked (uprobes attached as resolving processes show
    /// up): where a person looks at lookups (`trace`, `count --lookups`, `top`), not the agent.
    pub fn hooks_libc(&self) -> bool {
        self.lookups_only() || matches!(self, Output::Top { .. })
    }

    /// Whether the output shows lookups and no messages (`trace --lookups`, `count --lookups`):
    /// messages then go to the lookup stage only.
    pub fn lookups_only(&self) -> bool {
        matches!(
            self,
            Output::Trace { lookups: true, .. }
                | Output::Count {
                    at: CountedAt::Lookup,
                    ..
                }
        )
    }

    /// Whether the server side's messages become events: only where a line may show them.
    /// `count`, `top` and the metrics count the client side alone (a server's queries received
    /// are not its own lookups), so for them a server's messages only tell the detectors it is
    /// one. `copied`: `--pcapng` or `--dnstap` writes every message the filter lets through.
    /// The agent with `--sample 0` keeps it in the kernel too, so its lookups have no `via`
    /// (the forwarder cache metric: docs/metrics.md, "Lookups").
    pub fn server_side(&self, filter: &Filter, copied: bool) -> ServerSide {
        let servers = filter.roles.is_empty() || filter.roles.contains(&Role::Server);
        let shown = copied && servers
            || match self {
                Output::Trace { alerts_only, .. } => !alerts_only && servers,
                Output::Count { .. } | Output::Top { .. } => false,
                Output::Agent(agent) => agent.sample.keeps_any(),
            };
        if shown {
            ServerSide::Events
        } else {
            ServerSide::Resolvers
        }
    }
}

/// The sink [`build`] made, of its kind, so that what only one kind has can be reached.
pub enum AnySink {
    Table(TableSink<BufWriter<StdoutLock<'static>>>),
    Json(JsonSink<Stdout>),
    Count(CountSink<BufWriter<StdoutLock<'static>>>),
    Top(TopSink),
    // Boxed: the metrics' tables make it the largest by far.
    Agent(Box<AgentSink<Box<dyn Write + Send>>>),
}

/// Builds the sink `output` asks for, on stdout (or the agent's file): the one place a sink is
/// made. `pods`: a pod directory names pods, so the table shows POD and CONTAINER.
pub fn build(output: &Output, pods: bool) -> anyhow::Result<AnySink> {
    let out = || BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout().lock());
    Ok(match output {
        // Its own thread writes, to stdout unlocked.
        &Output::Trace {
            json: true,
            connects,
            ..
        } => AnySink::Json(JsonSink::new(io::stdout(), connects)),
        Output::Trace {
            color,
            columns,
            lookups,
            ..
        } => {
            let table = TableSink::new(
                out(),
                TableStyle {
                    color: *color,
                    width: terminal_width(),
                    utc_offset: local_utc_offset,
                    pods,
                    columns: columns.clone(),
                },
            );
            AnySink::Table(if *lookups {
                table.with_lookups()
            } else {
                table
            })
        }
        Output::Count {
            by,
            at,
            interval,
            json,
        } => {
            let format = if *json {
                CountFormat::Json
            } else {
                CountFormat::Table {
                    utc_offset: local_utc_offset,
                }
            };
            let counter = Counter::new(by.clone(), *at, counting::DEFAULT_CAPACITY);
            AnySink::Count(CountSink::new(out(), counter, *interval, format))
        }
        // Draws from a thread of its own, which takes stdout.
        &Output::Top { by, interval } => AnySink::Top(TopSink::start(by, interval)),
        Output::Agent(agent) => AnySink::Agent(Box::new(AgentSink::open(agent)?)),
    })
}

impl AnySink {
    pub fn as_sink(&mut self) -> &mut dyn Sink {
        match self {
            AnySink::Table(s) => s,
            AnySink::Json(s) => s,
            AnySink::Count(s) => s,
            AnySink::Top(s) => s,
            AnySink::Agent(s) => &mut **s,
        }
    }

    /// One TCP connect: only the JSON lines of `trace --connects` show them, for `dnslens
    /// detect` to replay.
    pub fn connect(&mut self, connect: &ConnectEvent) -> io::Result<()> {
        match self {
            AnySink::Json(s) => s.connect(connect),
            _ => Ok(()),
        }
    }

    /// What the output cost so far: the run loop's waits for room in the JSON writer's queue
    /// (the time a loss of the ring buffer can be blamed on the output) and lines dropped while
    /// it was stalled. Sinks without a writer thread cost none.
    pub fn output(&self) -> OutputStats {
        match self {
            AnySink::Json(s) => s.output(),
            AnySink::Agent(s) => s.output(),
            AnySink::Table(_) | AnySink::Count(_) | AnySink::Top(_) => OutputStats::default(),
        }
    }
}

/// The run's own counters and health at `now`, for the agent's sink, which exports them.
#[derive(Clone, Debug)]
pub struct Status {
    pub now: Instant,
    /// `None` when the kernel's counters could not be read.
    pub kernel: Option<KernelCounters>,
    /// Ring-buffer bytes not read yet, and its size.
    pub ring: (u64, u64),
    /// What each source lost since the last status.
    pub lost: Vec<Lost>,
    /// The sink's [`AnySink::output`].
    pub output: OutputStats,
    pub lens: Stats,
    /// `None` without the lookup stage.
    pub lookups: Option<LookupStats>,
    /// `None` without detectors.
    pub detect: Option<DetectStats>,
    /// `None` without a cluster.
    pub cluster: Option<ClusterStatus>,
    /// `None` without `--dnstap`.
    pub dnstap: Option<dnstap::DnstapStats>,
}

impl Status {
    /// Every stage's rows of the health table ([`dnslens_lens::counters`]).
    pub fn counters(&self) -> Vec<HealthCounter> {
        let mut rows = Vec::new();
        self.lens.counters(&mut rows);
        if let Some(l) = &self.lookups {
            l.counters(&mut rows);
        }
        if let Some(d) = &self.detect {
            d.counters(&mut rows);
        }
        if let Some(c) = &self.cluster {
            c.counters(&mut rows);
        }
        rows
    }
}

/// Whether `e` says a reader of the output went away (`dnslens trace | head`): the run then
/// ends quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Columns of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    if !io::stdout().is_terminal() {
        return None;
    }
    let (columns, _rows) = ratatui::crossterm::terminal::size().ok()?;
    (columns > 0).then_some(usize::from(columns))
}

/// Seconds east of UTC in the local time zone at `wall_ns`.
pub fn local_utc_offset(wall_ns: u64) -> i64 {
    let t = (wall_ns / 1_000_000_000) as libc::time_t;
    // SAFETY: localtime_r only writes the tm passed; both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

#[cfg(test)]
mod tests {
    use super::agent::Sampler;
    use super::*;

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn server_side_events_are_made_only_where_a_line_may_show_them() {
        let trace = |alerts_only| Output::Trace {
            json: true,
            color: false,
            max_events: None,
            alerts_only,
            connects: false,
            lookups: false,
            columns: None,
        };
        let agent = |fraction| {
            Output::Agent(AgentOutput {
                metrics_address: "127.0.0.1:9153".parse().unwrap(),
                access: Default::default(),
                path: None,
                rotation: None,
                sample: Sampler::new(fraction),
            })
        };
        let all = Filter::default();
        let clients = Filter {
            roles: vec![Role::Client],
            ..Filter::default()
        };
        let count = Output::Count {
            by: vec![],
            at: CountedAt::Query,
            interval: Duration::from_secs(1),
            json: false,
        };
        let top = Output::Top {
            by: Grouping::Pod,
            interval: Duration::from_secs(1),
        };
        for (output, filter, pcapng, want) in [
            (trace(false), &all, false, ServerSide::Events),
            (trace(false), &clients, false, ServerSide::Resolvers),
            (trace(true), &all, false, ServerSide::Resolvers),
            (trace(true), &all, true, ServerSide::Events),
            (trace(true), &clients, true, ServerSide::Resolvers),
            (count, &all, false, ServerSide::Resolvers),
            (top.clone(), &all, false, ServerSide::Resolvers),
            (agent(0.01), &all, false, ServerSide::Events),
            (agent(0.0), &all, false, ServerSide::Resolvers),
        ] {
            assert_eq!(output.server_side(filter, pcapng), want, "{output:?}");
        }
        assert!(agent(0.0).lookups() && !agent(0.0).lookups_only() && !trace(false).lookups());
        let count = |at| Output::Count {
            by: vec![CountBy::Name],
            at,
            interval: Duration::from_secs(1),
            json: false,
        };
        assert!(count(CountedAt::Lookup).lookups() && count(CountedAt::Lookup).lookups_only());
        assert!(!count(CountedAt::Query).lookups());
        assert!(top.lookups() && top.hooks_libc() && !top.lookups_only());
        assert!(!agent(0.0).hooks_libc() && count(CountedAt::Lookup).hooks_libc());
    }
}
