//! The run, in libbpf-bootstrap's order: load and attach, announce, poll -> pipeline -> filter
//! -> sink until stopped, then the counters on stderr.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use dnslens_lens::clock::{self, WallClock};
use dnslens_lens::count::{self, Counter};
use dnslens_lens::filter::Filter;
use dnslens_lens::{DnsEvent, Observed, Pipeline, PipelineConfig};
use dnslens_probe::{CaptureMode, HookStatus, Probe};

use crate::cluster::Connection;
use crate::settings::{Output, Settings};
use crate::sink::{CountFormat, CountSink, JsonSink, Sink, TableSink, TableStyle};

/// How long one poll waits for records: also how late a stop, a timeout or an interval can be.
const POLL: Duration = Duration::from_millis(100);
/// The wall-clock offset is measured again this often, in case the system time was stepped.
const REMEASURE: Duration = Duration::from_secs(60);
/// A turn that read fewer records than this waits [`GATHER`] before the next one.
const SMALL_BATCH: usize = 256;
/// How long records may gather in the ring buffer after a small turn: output is this much
/// later at worst; at 200,000 messages a second the ring buffer holds 400 more records.
const GATHER: Duration = Duration::from_millis(2);
/// Bytes of output gathered before a write: a batch of records is written in few syscalls.
const OUTPUT_BUFFER: usize = 64 << 10;
/// How often the kernel's loss counters are checked while running.
const LOSS_CHECK: Duration = Duration::from_secs(5);

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let mut probe = Probe::load(&settings.probe)?;
    // Started before tracing is announced, so that the first list is under way; it runs on a
    // thread of its own and enrichment only reads what it has.
    let cluster = Connection::start(&settings.kubernetes)?;
    let pods = cluster.directory();
    if let Some(line) = kubernetes_line(
        pods.is_some(),
        cluster.node(),
        settings.kubernetes.enabled && settings.filter.needs_pod_metadata(),
    ) {
        eprintln!("{line}");
    }
    for line in announce(probe.hooks(), &settings.probe.ports, probe.mode()) {
        eprintln!("{line}");
    }
    signals::install().context("installing the SIGINT/SIGTERM handlers")?;

    let config = PipelineConfig {
        timeout_ns: settings.timeout.as_nanos().min(u128::from(u64::MAX)) as u64,
        node: cluster.node().map(str::to_string),
        ..PipelineConfig::for_host()
    };
    let mut pipeline = Pipeline::new(config, WallClock::measure()).with_pod_directory(pods.clone());
    let mut sink = build_sink(
        &settings.output,
        pods.is_some(),
        BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout().lock()),
    );
    let (interval, max_events) = match settings.output {
        Output::Trace { max_events, .. } => (None, max_events),
        Output::Count { interval, .. } => (Some(interval), None),
    };

    let mut ran = Run {
        probe: &mut probe,
        pipeline: &mut pipeline,
        filter: &settings.filter,
        sink: sink.as_mut(),
        shown: 0,
        max_events,
    };
    let result = ran.poll_until_stopped(settings.duration, interval);
    let shown = ran.shown;
    let finished = sink.finish(clock::realtime_now_ns());

    report(&probe, &pipeline, interval.is_none().then_some(shown));
    if let Some(line) = cluster.report() {
        eprintln!("dnslens: {line}");
    }
    match result.and(finished.map_err(Into::into)) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// What is said about the cluster before tracing starts: which node's pods name events, or, when
/// filters need pod names and no cluster was found, that they will see none.
fn kubernetes_line(
    connected: bool,
    node: Option<&str>,
    filters_need_names: bool,
) -> Option<String> {
    match (connected, node) {
        (true, Some(node)) => Some(format!(
            "dnslens: kubernetes: naming the pods of node {node} from the API server"
        )),
        (true, None) => Some("dnslens: kubernetes: naming pods from the API server".to_string()),
        (false, _) if filters_need_names => Some(
            "dnslens: kubernetes: no in-cluster configuration and no kubeconfig found, so \
             pods have no names: --namespace and --workload match no event, \
             --exclude-namespace leaves none out"
                .to_string(),
        ),
        (false, _) => None,
    }
}

/// The lines printed once the probe is attached: one per hook that failed (optional hooks are
/// skipped, not fatal), then the one that says tracing has started.
pub fn announce(hooks: &[HookStatus], ports: &[u16], mode: CaptureMode) -> Vec<String> {
    let mut lines: Vec<String> = hooks
        .iter()
        .filter(|h| !h.attached)
        .map(|h| {
            format!(
                "dnslens: hook {} not attached, skipped: {}",
                h.name,
                h.error.as_deref().unwrap_or("no reason given")
            )
        })
        .collect();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let attached = hooks.iter().filter(|h| h.attached).count();
    lines.push(format!(
        "dnslens: tracing DNS on ports {} with {mode} ({attached} hooks attached)",
        ports.join(", ")
    ));
    lines
}

/// `pods`: a pod directory names pods, so the table shows POD and CONTAINER.
fn build_sink<'a, W: Write + 'a>(output: &Output, pods: bool, out: W) -> Box<dyn Sink + 'a> {
    match *output {
        Output::Trace { json: true, .. } => Box::new(JsonSink::new(out)),
        Output::Trace { color, .. } => Box::new(TableSink::new(
            out,
            TableStyle {
                color,
                width: terminal_width(),
                utc_offset: local_utc_offset,
                pods,
            },
        )),
        Output::Count { by, interval, json } => {
            let format = if json {
                CountFormat::Json
            } else {
                CountFormat::Table {
                    utc_offset: local_utc_offset,
                }
            };
            let counter = Counter::new(by, count::DEFAULT_CAPACITY);
            Box::new(CountSink::new(out, counter, interval, format))
        }
    }
}

struct Run<'a> {
    probe: &'a mut Probe,
    pipeline: &'a mut Pipeline,
    filter: &'a Filter,
    sink: &'a mut dyn Sink,
    shown: u64,
    max_events: Option<u64>,
}

impl Run<'_> {
    fn poll_until_stopped(
        &mut self,
        duration: Option<Duration>,
        interval: Option<Duration>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let deadline = duration.map(|d| start + d);
        let mut next_interval = interval.map(|i| start + i);
        let mut next_remeasure = start + REMEASURE;
        let mut next_loss_check = start + LOSS_CHECK;
        let mut lost_reported = 0;
        let mut last_seen = 0;
        while !signals::stopped() {
            let mut failed: Option<io::Error> = None;
            let Run {
                probe,
                pipeline,
                filter,
                sink,
                shown,
                max_events,
            } = self;
            let mut emit = |event: &DnsEvent| {
                let full = max_events.is_some_and(|max| *shown >= max);
                if failed.is_some() || full || !filter.matches(event) {
                    return;
                }
                match sink.event(event) {
                    Ok(true) => *shown += 1,
                    Ok(false) => {}
                    Err(e) => failed = Some(e),
                }
            };
            if (1..SMALL_BATCH).contains(&last_seen) {
                // The kernel wakes the reader for each record it finds caught up, so at a few
                // thousand messages a second every turn (wake-up, expiry, write) was paid per
                // message. Letting records gather makes turns rare and writes large. Waiting
                // before the read, not after, so a stop still reads what came meanwhile.
                std::thread::sleep(GATHER);
            }
            last_seen = probe.poll(POLL, |record| {
                pipeline.record(record, &mut |observed| {
                    if let Observed::Dns(event) = observed {
                        emit(event);
                    }
                })
            })?;
            pipeline.expire(clock::monotonic_now_ns(), &mut emit);
            if let Some(e) = failed {
                return Err(e).context("writing to stdout");
            }
            // Every sink is flushed once per batch of records.
            sink.flush().context("writing to stdout")?;
            if max_events.is_some_and(|max| *shown >= max) {
                break;
            }
            let now = Instant::now();
            if let (Some(next), Some(every)) = (next_interval.as_mut(), interval) {
                if now >= *next {
                    sink.interval(clock::realtime_now_ns())
                        .context("writing to stdout")?;
                    while *next <= now {
                        *next += every;
                    }
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if now >= next_loss_check {
                // Loss is said when it happens, not only in the final counters.
                if let Ok(counters) = self.probe.counters() {
                    if let Some(line) = loss_warning(counters.ringbuf_full - lost_reported) {
                        eprintln!("{line}");
                    }
                    lost_reported = counters.ringbuf_full;
                }
                next_loss_check = now + LOSS_CHECK;
            }
            if now >= next_remeasure {
                pipeline.clock_mut().remeasure();
                next_remeasure = now + REMEASURE;
            }
        }
        Ok(())
    }
}

/// The warning for messages dropped because the ring buffer was full since the last check.
fn loss_warning(newly_lost: u64) -> Option<String> {
    (newly_lost > 0).then(|| {
        format!(
            "dnslens: {newly_lost} messages lost in the last {}s: the ring buffer was full \
             (read too slowly); a larger --ring-buffer-size or narrower filters help",
            LOSS_CHECK.as_secs()
        )
    })
}

/// The counters, on stderr, one line per stage.
fn report(probe: &Probe, pipeline: &Pipeline, shown: Option<u64>) {
    match probe.counters() {
        Ok(k) => eprintln!(
            "dnslens: kernel: {} events, {} lost (ring buffer full {}, read failed {}, \
             past the sendmmsg/recvmmsg limit {}, not from a hooked syscall {}), \
             {} cut at the payload limit, {} with iovecs past the limit, {} exec records lost",
            k.events,
            k.lost(),
            k.ringbuf_full,
            k.read_failed,
            k.mmsg_skipped,
            k.other_path,
            k.truncated,
            k.iov_skipped,
            k.exec_lost
        ),
        Err(e) => eprintln!("dnslens: kernel counters unavailable: {e}"),
    }
    for line in pipeline.stats().to_string().lines() {
        eprintln!("dnslens: {line}");
    }
    if let Some(shown) = shown {
        eprintln!("dnslens: {shown} events printed");
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
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
    // SAFETY: TIOCGWINSZ writes a winsize into the struct passed; fd 1 is stdout.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Seconds east of UTC in the local time zone at `wall_ns`.
fn local_utc_offset(wall_ns: u64) -> i64 {
    let t = (wall_ns / 1_000_000_000) as libc::time_t;
    // SAFETY: localtime_r only writes the tm passed; both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// SIGINT and SIGTERM set a flag that the poll loop checks; a second one ends the process at
/// once (SA_RESETHAND restores the default action).
mod signals {
    use super::*;

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }

    pub fn install() -> io::Result<()> {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which
            // is async-signal-safe.
            let rc = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn stopped() -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_warned_only_when_it_grew() {
        assert_eq!(loss_warning(0), None);
        let line = loss_warning(42).unwrap();
        assert!(
            line.starts_with("dnslens: 42 messages lost in the last 5s"),
            "{line}"
        );
    }

    #[test]
    fn announce_lists_failed_hooks_then_says_tracing() {
        let hook = |name: &str, error: Option<&str>| HookStatus {
            name: name.to_string(),
            attached: error.is_none(),
            error: error.map(str::to_string),
        };
        let hooks = [
            hook("syscalls/sys_exit_sendto", None),
            hook("syscalls/sys_exit_sendto", None),
            hook("sched/sched_process_exec", Some("tracepoint not found")),
        ];
        assert_eq!(
            announce(&hooks, &[53, 5353], CaptureMode::SyscallTracepoints),
            vec![
                "dnslens: hook sched/sched_process_exec not attached, skipped: tracepoint not found",
                "dnslens: tracing DNS on ports 53, 5353 with syscall tracepoints (2 hooks attached)",
            ]
        );
    }

    #[test]
    fn kubernetes_line_names_the_node_or_warns_about_filters() {
        assert_eq!(
            kubernetes_line(true, Some("node-1"), false).as_deref(),
            Some("dnslens: kubernetes: naming the pods of node node-1 from the API server")
        );
        assert_eq!(kubernetes_line(false, Some("node-1"), false), None);
        let warning = kubernetes_line(false, None, true).unwrap();
        assert!(
            warning.contains("--namespace and --workload match no event"),
            "{warning}"
        );
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
