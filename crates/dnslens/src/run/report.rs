//! What the run says on stderr: the cluster it names pods from, the hooks it attached, what it
//! lost while running, and the end's report.

use std::time::Duration;

use dnslens_lens::counters::{self, CounterKind};
use dnslens_lens::lookup::Lookups;
use dnslens_lens::text::counted;
use dnslens_lens::Pipeline;
use dnslens_probe::{CaptureMode, HookStatus, KernelCounter, KernelCounters, Probe};

use super::LOSS_CHECK;
use crate::detect::Detection;
use crate::sink::{OutputStats, OUTPUT_PATIENCE};

/// What is said about the cluster before tracing starts: which node's pods name events, or, when
/// filters need pod names and no cluster was found, that they will see none.
pub(super) fn kubernetes_line(
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
    let port_word = if ports.len() == 1 { "port" } else { "ports" };
    lines.push(format!(
        "dnslens: tracing DNS on {port_word} {} with {mode} ({} attached)",
        ports.join(", "),
        counted(attached as u64, "hook", "hooks")
    ));
    lines
}

/// The warnings for what was lost since the last check: messages the kernel dropped because
/// the ring buffer was full, in which the run loop waited `output.waited` for the output, and
/// lines the output dropped while stalled.
pub(super) fn loss_warnings(newly_lost: u64, output: OutputStats) -> Vec<String> {
    let every = LOSS_CHECK.as_secs();
    let mut lines = Vec::new();
    if newly_lost > 0 {
        let why = if output.waited >= Duration::from_millis(1) {
            format!(
                "the ring buffer was full while the output held up reading for {} ms (it takes \
                 lines more slowly than they come); a faster output, narrower filters or a \
                 larger --ring-buffer-size help",
                output.waited.as_millis()
            )
        } else {
            "the ring buffer was full (read too slowly); a larger --ring-buffer-size or \
             narrower filters help"
                .to_string()
        };
        lines.push(format!(
            "dnslens: {newly_lost} messages lost in the last {every}s: {why}"
        ));
    }
    if output.dropped_lines > 0 {
        lines.push(format!(
            "dnslens: {} lines not written in the last {every}s: the output took none for {} s \
             or more (a reader of stdout that stopped, a full disk), so they were dropped and \
             capture went on",
            output.dropped_lines,
            OUTPUT_PATIENCE.as_secs()
        ));
    }
    lines
}

/// What was printed and lost in one line on stderr; with `verbose`, or when the kernel lost
/// messages, every stage's counters. `shown`: how many of what `trace` printed.
pub(super) fn report(
    probe: &Probe,
    pipeline: &Pipeline,
    lookups: Option<&Lookups>,
    detection: Option<&Detection>,
    shown: Option<(u64, (&str, &str))>,
    verbose: bool,
) {
    let kernel = probe.counters();
    let stats = pipeline.stats();
    let alerts = detection.map(|d| d.stats().alerts.iter().sum());
    let lost = kernel.as_ref().map_or(0, KernelCounters::lost);
    if !verbose && lost == 0 && kernel.is_ok() {
        // Those kept in the kernel were captured too: no output here shows them.
        let captured = kernel.as_ref().map_or(0, |k| {
            k.get(KernelCounter::Events) + k.get(KernelCounter::ServerSide)
        });
        let unanswered = stats.correlate.unanswered;
        say!("dnslens: {}", summary(shown, captured, unanswered, alerts));
        return;
    }
    match kernel {
        Ok(k) => say!("dnslens: kernel: {k}"),
        Err(e) => say!("dnslens: kernel counters unavailable: {e}"),
    }
    for line in stats.to_string().lines() {
        say!("dnslens: {line}");
    }
    let mut rows = Vec::new();
    stats.counters(&mut rows);
    if let Some(l) = lookups.map(Lookups::stats) {
        say!(
            "dnslens: lookups: {} ended ({} early, pushed out of full tables), {} open holding {} bytes",
            l.lookups,
            l.evicted,
            l.open,
            l.bytes
        );
        l.counters(&mut rows);
    }
    say!(
        "dnslens: pipeline state, entries evicted from full tables: {}",
        counters::rows_text(&rows, CounterKind::Eviction)
    );
    for line in detection.iter().flat_map(|d| d.report()) {
        say!("dnslens: {line}");
    }
    if let Some((n, (one, many))) = shown {
        say!("dnslens: {} printed", counted(n, one, many));
    }
}

/// The end's one line: what was printed (or captured), lost (none, or the detail is shown
/// instead), unanswered, and alerted.
fn summary(
    shown: Option<(u64, (&str, &str))>,
    captured: u64,
    unanswered: u64,
    alerts: Option<u64>,
) -> String {
    let mut line = match shown {
        Some((n, (one, many))) => format!("{} printed", counted(n, one, many)),
        None => format!("{} captured", counted(captured, "message", "messages")),
    };
    line += &format!(", 0 lost, {} unanswered", unanswered);
    if let Some(alerts) = alerts {
        line += &format!(", {}", counted(alerts, "alert", "alerts"));
    }
    line + " (-v for every stage's counters)"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_warned_only_when_it_grew() {
        let waited = |ms| OutputStats {
            waited: Duration::from_millis(ms),
            dropped_lines: 0,
        };
        assert!(loss_warnings(0, waited(1000)).is_empty());
        let [line] = &loss_warnings(42, waited(0))[..] else {
            panic!("one line")
        };
        assert!(
            line.starts_with("dnslens: 42 messages lost in the last 5s: the ring buffer was full (read too slowly)"),
            "{line}"
        );
        let [line] = &loss_warnings(42, waited(320))[..] else {
            panic!("one line")
        };
        assert!(
            line.contains("while the output held up reading for 320 ms"),
            "{line}"
        );
        let dropped = OutputStats {
            dropped_lines: 7,
            ..waited(1500)
        };
        let lines = loss_warnings(0, dropped);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "dnslens: 7 lines not written in the last 5s: the output took none for 1 s"
            ),
            "{lines:?}"
        );
        assert_eq!(loss_warnings(3, dropped).len(), 2);
    }

    #[test]
    fn the_end_is_one_line_with_the_right_nouns() {
        assert_eq!(
            summary(Some((1, ("event", "events"))), 9, 0, Some(1)),
            "1 event printed, 0 lost, 0 unanswered, 1 alert (-v for every stage's counters)"
        );
        assert_eq!(
            summary(None, 1, 2, None),
            "1 message captured, 0 lost, 2 unanswered (-v for every stage's counters)"
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
        assert_eq!(
            announce(&hooks[..1], &[53], CaptureMode::Sockets),
            vec!["dnslens: tracing DNS on port 53 with socket tracepoints (1 hook attached)"]
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
}
