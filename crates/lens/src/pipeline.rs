//! The stages in their one order, decode -> correlate -> enrich, behind two calls: `record` for
//! each ring-buffer record and `expire` once per poll turn. What to do with the events (filter,
//! sinks) is the caller's.

use std::path::PathBuf;

use crate::cgroup::{self, CgroupMounts, CgroupResolver};
use crate::clock::WallClock;
use crate::correlate::{self, Correlator};
use crate::decode::{self, Decoder};
use crate::enrich::Enricher;
use crate::model::DnsEvent;
use crate::process::{self, ProcessCache};
use crate::stats::Stats;

/// Sizes, timeout and where to read /proc and cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    pub tcp_streams: usize,
    pub pending_queries: usize,
    pub timeout_ns: u64,
    pub processes: usize,
    pub cgroups: usize,
    pub proc_root: PathBuf,
    pub cgroup_mounts: CgroupMounts,
}

impl Default for PipelineConfig {
    /// Default sizes, `/proc`, and no cgroup mounts (see [`PipelineConfig::for_host`]).
    fn default() -> Self {
        PipelineConfig {
            tcp_streams: decode::DEFAULT_TCP_STREAMS,
            pending_queries: correlate::DEFAULT_CAPACITY,
            timeout_ns: correlate::DEFAULT_TIMEOUT_NS,
            processes: process::DEFAULT_CAPACITY,
            cgroups: cgroup::DEFAULT_CAPACITY,
            proc_root: PathBuf::from("/proc"),
            cgroup_mounts: CgroupMounts::default(),
        }
    }
}

impl PipelineConfig {
    /// Defaults with the cgroup mounts of this host (none when mountinfo is unreadable).
    pub fn for_host() -> Self {
        PipelineConfig {
            cgroup_mounts: CgroupMounts::discover().unwrap_or_default(),
            ..PipelineConfig::default()
        }
    }
}

pub struct Pipeline {
    decoder: Decoder,
    correlator: Correlator,
    enricher: Enricher,
    clock: WallClock,
}

impl Pipeline {
    pub fn new(config: PipelineConfig, clock: WallClock) -> Self {
        Pipeline {
            decoder: Decoder::new(config.tcp_streams),
            correlator: Correlator::new(config.timeout_ns, config.pending_queries),
            enricher: Enricher::new(
                ProcessCache::new(config.proc_root, config.processes),
                CgroupResolver::new(config.cgroup_mounts, config.cgroups),
            ),
            clock,
        }
    }

    /// Feeds one ring-buffer record; `out` gets every event it produces.
    pub fn record(&mut self, record: &[u8], out: &mut impl FnMut(DnsEvent)) {
        let Pipeline {
            decoder,
            correlator,
            enricher,
            clock,
        } = self;
        let exec = decoder.record(record, &mut |capture, decoded| {
            let time_ns = clock.wall_ns(capture.header.timestamp_ns);
            let event = DnsEvent::new(capture, decoded, time_ns);
            correlator.event(event, &mut |mut event| {
                enricher.enrich(&mut event);
                out(event);
            });
        });
        if let Some(exec) = exec {
            enricher.record_exec(exec);
        }
    }

    /// Reports queries unanswered at `now_mono_ns` (CLOCK_MONOTONIC).
    pub fn expire(&mut self, now_mono_ns: u64, out: &mut impl FnMut(DnsEvent)) {
        let Pipeline {
            correlator,
            enricher,
            ..
        } = self;
        correlator.expire(now_mono_ns, &mut |mut event| {
            enricher.enrich(&mut event);
            out(event);
        });
    }

    /// The wall clock, to re-measure after the system time was stepped.
    pub fn clock_mut(&mut self) -> &mut WallClock {
        &mut self.clock
    }

    pub fn stats(&self) -> Stats {
        Stats {
            decode: self.decoder.stats(),
            correlate: self.correlator.stats(),
            process: self.enricher.process_stats(),
            cgroup: self.enricher.cgroup_stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::testutil::{dns_message, exec_record, header, record, TempDir};
    use std::os::unix::fs::MetadataExt;

    const MS: u64 = 1_000_000;

    #[test]
    fn query_and_response_records_become_enriched_paired_events() {
        let proc_root = TempDir::new("proc");
        std::fs::create_dir(proc_root.path().join("123")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dig", proc_root.path().join("123/exe")).unwrap();
        let cg = TempDir::new("cg");
        let pod = cg.path().join("kubepods/pod1");
        std::fs::create_dir_all(&pod).unwrap();

        let mut p = Pipeline::new(
            PipelineConfig {
                proc_root: proc_root.path().to_path_buf(),
                cgroup_mounts: CgroupMounts {
                    v2: Some(cg.path().to_path_buf()),
                    v1_memory: None,
                },
                ..PipelineConfig::default()
            },
            WallClock::with_offset(1_795_690_495_000_000_000),
        );
        let mut out = Vec::new();
        let q = dns_message(0x1234, false, 0, "example.com", 1, &[]);
        let mut h = header(true, 10 * MS, q.len());
        h.cgroup_id = std::fs::metadata(&pod).unwrap().ino();
        p.record(&record(&h, &q), &mut |e| out.push(e));
        let r = dns_message(0x1234, true, 0, "example.com", 1, &[[93, 184, 215, 14]]);
        let mut h = header(false, 12 * MS + 345_000, r.len());
        h.cgroup_id = std::fs::metadata(&pod).unwrap().ino();
        p.record(&record(&h, &r), &mut |e| out.push(e));

        assert_eq!(out.len(), 2);
        let (query, response) = (&out[0], &out[1]);
        assert_eq!(query.kind, Kind::Query);
        assert_eq!(query.src.to_string(), "10.0.0.2:40000");
        assert_eq!(response.kind, Kind::Response);
        assert_eq!(response.role, crate::Role::Client);
        assert_eq!(response.src.to_string(), "10.0.0.1:53");
        assert_eq!(response.latency_us, Some(2_345));
        assert_eq!(response.answers[0].data, "93.184.215.14");
        assert_eq!(response.process.exe.as_deref(), Some("/usr/bin/dig"));
        assert_eq!(response.cgroup, "/kubepods/pod1");
        assert_eq!(
            crate::clock::format_rfc3339(response.time_ns),
            "2026-11-26T10:54:55.012345000Z"
        );
        let stats = p.stats();
        assert_eq!(stats.correlate.paired, 1);
        assert_eq!(stats.process.proc_reads, 1);
    }

    #[test]
    fn unanswered_queries_come_out_of_expire() {
        let empty = TempDir::new("proc");
        let mut p = Pipeline::new(
            PipelineConfig {
                proc_root: empty.path().to_path_buf(),
                timeout_ns: 1_000 * MS,
                ..PipelineConfig::default()
            },
            WallClock::with_offset(0),
        );
        let q = dns_message(1, false, 0, "lost.example", 28, &[]);
        p.record(&record(&header(true, 0, q.len()), &q), &mut |_| {});
        let mut out = Vec::new();
        p.expire(999 * MS, &mut |e| out.push(e));
        assert!(out.is_empty());
        p.expire(1_000 * MS, &mut |e| out.push(e));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Unanswered);
        assert_eq!(out[0].timeout_ms, Some(1_000));
        assert_eq!(out[0].process.exe, None, "process gone from /proc");
        assert_eq!(out[0].cgroup, "");

        // An exec record fills in the exe of a process already gone from /proc.
        p.record(&exec_record(123, 99, "/usr/bin/getent"), &mut |_| {});
        let q = dns_message(2, false, 0, "later.example", 1, &[]);
        let mut h = header(true, 2_000 * MS, q.len());
        h.process_start_ns = 99;
        let mut out = Vec::new();
        p.record(&record(&h, &q), &mut |e| out.push(e));
        assert_eq!(out[0].process.exe.as_deref(), Some("/usr/bin/getent"));
        assert_eq!(p.stats().decode.exec_records, 1);
        assert_eq!(p.stats().correlate.unanswered, 1);
    }
}
