//! All of the lens's counters in one value, for the exit report and for metrics.

use std::fmt;

use crate::cgroup::CgroupStats;
use crate::correlate::CorrelateStats;
use crate::counters::{Counter, CounterKind};
use crate::decode::DecodeStats;
use crate::enrich::ContainerStats;
use crate::process::ProcessStats;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub decode: DecodeStats,
    pub correlate: CorrelateStats,
    pub process: ProcessStats,
    pub cgroup: CgroupStats,
    pub containers: ContainerStats,
}

impl Stats {
    /// The lens's rows of the health table ([`crate::counters`]).
    pub fn counters(&self, out: &mut Vec<Counter>) {
        let d = &self.decode;
        let decode_error = |name, value| Counter {
            stage: "decode",
            name,
            kind: CounterKind::DecodeError,
            value,
        };
        out.push(decode_error("bad_record", d.bad_records));
        out.extend(d.errors.iter().map(|(&kind, &n)| decode_error(kind, n)));
        let miss = |stage, name, value| Counter {
            stage,
            name,
            kind: CounterKind::Miss,
            value,
        };
        out.extend([
            Counter::eviction("pairing", "pairing", self.correlate.evicted),
            Counter::eviction("decode", "tcp_streams", d.tcp_streams_evicted),
            Counter::eviction("attribution", "process_cache", self.process.evictions),
            Counter::eviction("attribution", "cgroup_cache", self.cgroup.evictions),
            Counter::eviction("attribution", "container_cache", self.containers.evictions),
            miss("attribution", "process", self.process.gone),
            miss("attribution", "cgroup", self.cgroup.misses),
            miss("attribution", "pod", self.containers.unknown),
        ]);
    }
}

/// One line per stage, for stderr.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decode;
        write!(
            f,
            "decode: {} records ({} exec, {} connect), {} messages, {} bad records, {} decode \
             errors",
            d.records,
            d.exec_records,
            d.connect_records,
            d.messages,
            d.bad_records,
            d.decode_errors()
        )?;
        if !d.errors.is_empty() {
            let kinds: Vec<String> = d.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write!(f, " ({})", kinds.join(", "))?;
        }
        writeln!(
            f,
            "; {} server-side messages not decoded (no output shows them); cut short by the \
             capture: {} decoded in part, {} undecodable",
            d.server_side_skipped, d.truncated_salvaged, d.truncated_undecoded
        )?;
        writeln!(
            f,
            "tcp: {} desyncs ({} bytes skipped), {} streams evicted, {} streams stopped inside \
             a message ({} bytes held)",
            d.tcp_desyncs,
            d.tcp_skipped_bytes,
            d.tcp_streams_evicted,
            d.tcp_streams_mid_message,
            d.tcp_bytes_held
        )?;
        let c = &self.correlate;
        writeln!(
            f,
            "pairing: {} queries, {} responses, {} paired, {} unmatched responses, {} retransmits, \
             {} unanswered ({} evicted from the full table before their timeout), {} pending",
            c.queries,
            c.responses,
            c.paired,
            c.unmatched_responses,
            c.retransmits,
            c.unanswered,
            c.evicted,
            c.pending
        )?;
        let (p, g) = (&self.process, &self.cgroup);
        writeln!(
            f,
            "attribution: {} processes read from /proc ({} gone without an exe, {} given their \
             parent's), {} evicted; cgroups: {} opened by handle, {} walks, {} misses ({} \
             rate-limited, {} not waited for), {} evicted",
            p.proc_reads,
            p.gone,
            p.from_parent,
            p.evictions,
            g.by_handle,
            g.walks,
            g.misses,
            g.rate_limited,
            g.unanswered,
            g.evictions
        )?;
        let k = &self.containers;
        write!(
            f,
            "containers: {} cgroup paths parsed, {} evicted; pods: {} lookups, {} found by \
             container id, {} by pod uid, {} not known to the directory",
            k.paths_parsed, k.evictions, k.pod_lookups, k.by_container, k.by_pod_uid, k.unknown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_one_line_per_stage() {
        let mut s = Stats::default();
        s.decode.errors.insert("truncated", 2);
        s.correlate.unmatched_responses = 3;
        let text = s.to_string();
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains("2 decode errors (truncated 2)"), "{text}");
        assert!(text.contains("3 unmatched responses"), "{text}");
    }

    #[test]
    fn counters_table_has_every_bounded_table_and_decode_error() {
        let mut s = Stats::default();
        s.decode.errors.insert("truncated", 2);
        s.correlate.evicted = 4;
        s.cgroup.evictions = 5;
        let mut rows = Vec::new();
        s.counters(&mut rows);
        assert_eq!(
            crate::counters::rows_text(&rows, CounterKind::Eviction),
            "pairing 4, tcp_streams 0, process_cache 0, cgroup_cache 5, container_cache 0"
        );
        let errors: Vec<(&str, u64)> = rows
            .iter()
            .filter(|c| c.kind == CounterKind::DecodeError)
            .map(|c| (c.name, c.value))
            .collect();
        assert_eq!(errors, [("bad_record", 0), ("truncated", 2)]);
    }
}
