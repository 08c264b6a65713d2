//! The stages in their one order, decode -> correlate -> enrich, behind two calls: `record` for
//! each ring-buffer record and `expire` once per poll turn. Connects and libc calls skip pairing
//! and are enriched as DNS events are. What to do with the events (filter, sinks, detectors) is the
//! caller's.

use std::path::PathBuf;
use std::sync::Arc;

use dnslens_abi::{Source, SourceKey};

use crate::cgroup::{self, CgroupMounts, CgroupResolver};
use crate::clock::WallClock;
use crate::correlate::{self, Correlator, Passed};
use crate::decode::{self, Decoder, Output};
use crate::enrich::{self, Enricher};
use crate::model::{
    Attribution, ConnectEvent, DnsEvent, KernelIds, LibcEvent, ProcessInfo, TaskName,
};
use crate::pods::PodDirectory;
use crate::process::{self, ProcessCache};
use crate::served::{ServedGate, ServerSide};
use crate::stats::Stats;

/// Sizes, timeout, where to read /proc and cgroups, and the node name events carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    pub tcp_streams: usize,
    /// Bytes the TCP streams may hold in all.
    pub tcp_bytes: usize,
    pub pending_queries: usize,
    pub timeout_ns: u64,
    pub processes: usize,
    pub cgroups: usize,
    /// Cgroup paths whose container and pod are remembered.
    pub placements: usize,
    pub proc_root: PathBuf,
    pub cgroup_mounts: CgroupMounts,
    /// The Kubernetes node name, when known.
    pub node: Option<String>,
    /// Whether the server side's messages become events.
    pub server_side: ServerSide,
}

impl Default for PipelineConfig {
    /// Default sizes, `/proc`, and no cgroup mounts (see [`PipelineConfig::for_host`]).
    fn default() -> Self {
        PipelineConfig {
            tcp_streams: decode::DEFAULT_TCP_STREAMS,
            tcp_bytes: decode::DEFAULT_TCP_BYTES,
            pending_queries: correlate::DEFAULT_CAPACITY,
            timeout_ns: correlate::DEFAULT_TIMEOUT_NS,
            processes: process::DEFAULT_CAPACITY,
            cgroups: cgroup::DEFAULT_CAPACITY,
            placements: enrich::DEFAULT_PLACEMENTS,
            proc_root: PathBuf::from("/proc"),
            cgroup_mounts: CgroupMounts::default(),
            node: None,
            server_side: ServerSide::default(),
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

/// An event that leaves the pipeline.
#[derive(Clone, Copy, Debug)]
pub enum Observed<'a> {
    /// An event, and the bytes of its message as captured (`None` for an unanswered query,
    /// which is no message).
    Dns(&'a DnsEvent, Option<&'a [u8]>),
    /// A query sent again while the first waits ([`Passed::Resend`]): for the lookup stage,
    /// which counts it as a query and the first as timed out; no message to show or judge.
    Resend(&'a DnsEvent),
    Connect(&'a ConnectEvent),
    /// A libc resolver call that returned: for the lookup stage.
    Libc(&'a LibcEvent),
}

pub struct Pipeline {
    decoder: Decoder,
    correlator: Correlator,
    enricher: Enricher,
    clock: WallClock,
}

impl Pipeline {
    pub fn new(config: PipelineConfig, clock: WallClock) -> Self {
        let mut enricher = Enricher::new(
            ProcessCache::new(config.proc_root, config.processes),
            CgroupResolver::new(config.cgroup_mounts, config.cgroups),
            config.placements,
        );
        enricher.set_node(config.node.as_deref());
        Pipeline {
            decoder: Decoder::new(config.tcp_streams, config.tcp_bytes)
                .with_server_side(ServedGate::new(config.server_side, config.processes)),
            correlator: Correlator::new(config.timeout_ns, config.pending_queries),
            enricher,
            clock,
        }
    }

    /// Names pods and containers from `pods` (the cluster layer's watch); without it events
    /// carry container ids and pod uids only.
    pub fn with_pod_directory(mut self, pods: Option<Arc<dyn PodDirectory>>) -> Self {
        if let Some(pods) = pods {
            self.enricher.set_pod_directory(pods);
        }
        self
    }

    /// Feeds one ring-buffer record; `out` gets every event it produces.
    pub fn record(&mut self, record: &[u8], out: &mut impl FnMut(Observed<'_>)) {
        let Pipeline {
            decoder,
            correlator,
            enricher,
            clock,
        } = self;
        decoder.record(record, &mut |output| match output {
            Output::Message(capture, decoded, bytes) => {
                let time_ns = clock.wall_ns(capture.header.timestamp_ns);
                let event = DnsEvent::new(capture, decoded, time_ns);
                correlator.event(event, &mut |event, passed| {
                    enricher.enrich(&mut event.who, event.mono_ns, || {
                        capture.header.cgroup_names()
                    });
                    out(match passed {
                        Passed::Message => Observed::Dns(event, Some(bytes)),
                        Passed::Resend => Observed::Resend(event),
                    });
                });
            }
            Output::Connect(capture) => {
                let time_ns = clock.wall_ns(capture.header.timestamp_ns);
                let mut event = ConnectEvent::new(capture, time_ns);
                enricher.enrich(&mut event.who, event.mono_ns, || {
                    capture.header.cgroup_names()
                });
                out(Observed::Connect(&event));
            }
            Output::Exec(exec) => enricher.record_exec(exec),
            Output::Libc(call) => {
                let mut event = LibcEvent::new(call, |mono| clock.wall_ns(mono));
                enricher.enrich(&mut event.who, event.mono_ns, || call.header.cgroup_names());
                out(Observed::Libc(&event));
            }
        });
    }

    /// Whom the events the kernel dropped for cgroup `key` belong to: its container and pod,
    /// and the process of the last one dropped (`source`).
    pub fn attribute_source(
        &mut self,
        key: SourceKey,
        source: &Source,
        mono_ns: u64,
    ) -> Attribution {
        let name = TaskName::new(source.last_comm());
        let process = ProcessInfo {
            pid: source.last_tgid,
            tid: source.last_tgid,
            comm: name,
            name,
            ..ProcessInfo::default()
        };
        let ids = KernelIds {
            process_start_ns: 0,
            cgroup_id: key.cgroup_id,
            cgroup_v1_id: key.cgroup_v1_id,
        };
        let mut who = Attribution::unenriched(process, 0, 0, ids);
        self.enricher.enrich_cgroup(&mut who, mono_ns, String::new);
        who
    }

    /// Reports queries unanswered at `now_mono_ns` (CLOCK_MONOTONIC). They were enriched when
    /// sent, while their process and cgroup still existed.
    pub fn expire(&mut self, now_mono_ns: u64, out: &mut impl FnMut(&DnsEvent)) {
        self.correlator.expire(now_mono_ns, &mut |event| out(event));
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
            containers: self.enricher.container_stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Role};
    use crate::testutil::{
        connect_header, dns_message, exec_record, header, libc_record, record, TempDir,
    };
    use std::os::unix::fs::MetadataExt;

    const MS: u64 = 1_000_000;

    /// The DNS events one record yields; a connect fails the test.
    fn dns_events(p: &mut Pipeline, record: &[u8]) -> Vec<DnsEvent> {
        let mut out = Vec::new();
        p.record(record, &mut |o| match o {
            Observed::Dns(e, _) => out.push(e.clone()),
            other => panic!("unexpected {other:?}"),
        });
        out
    }

    #[test]
    fn query_and_response_records_become_enriched_paired_events() {
        let proc_root = TempDir::new("proc");
        std::fs::create_dir(proc_root.path().join("123")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dig", proc_root.path().join("123/exe")).unwrap();
        let cg = TempDir::new("cg");
        let uid = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let id = "ab".repeat(32);
        let pod = cg.path().join(format!("kubepods/pod{uid}/{id}"));
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
        out.extend(dns_events(&mut p, &record(&h, &q)));
        let r = dns_message(0x1234, true, 0, "example.com", 1, &[[93, 184, 215, 14]]);
        let mut h = header(false, 12 * MS + 345_000, r.len());
        h.cgroup_id = std::fs::metadata(&pod).unwrap().ino();
        out.extend(dns_events(&mut p, &record(&h, &r)));

        assert_eq!(out.len(), 2);
        let (query, response) = (&out[0], &out[1]);
        assert_eq!(query.kind, Kind::Query);
        assert_eq!(query.src.to_string(), "10.0.0.2:40000");
        assert_eq!(response.kind, Kind::Response);
        assert_eq!(response.role, crate::Role::Client);
        assert_eq!(response.src.to_string(), "10.0.0.1:53");
        assert_eq!(response.latency_us, Some(2_345));
        assert_eq!(response.answers[0].data, "93.184.215.14");
        assert_eq!(response.who.process.exe.as_deref(), Some("/usr/bin/dig"));
        assert_eq!(&*response.who.cgroup, format!("/kubepods/pod{uid}/{id}"));
        assert_eq!(response.who.container.as_ref().map(|c| &*c.id), Some(&*id));
        assert_eq!(response.who.pod.as_ref().map(|p| &*p.uid), Some(uid));
        assert_eq!(response.who.host, Some(false));
        assert_eq!(
            crate::clock::format_rfc3339(response.time_ns),
            "2026-11-26T10:54:55.012345000Z"
        );

        // A connect of the same process: passed on at once, enriched by the same caches.
        let mut h = connect_header(13 * MS);
        h.cgroup_id = std::fs::metadata(&pod).unwrap().ino();
        let mut connects = Vec::new();
        p.record(&record(&h, &[]), &mut |o| match o {
            Observed::Connect(c) => connects.push(c.clone()),
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(connects.len(), 1);
        let c = &connects[0];
        assert_eq!(
            (c.src.to_string(), c.dst.to_string()),
            ("10.0.0.2:0".into(), "10.0.0.1:443".into())
        );
        assert_eq!(c.transport, dnslens_abi::Transport::Tcp);
        assert_eq!(
            (c.who.process.pid, c.who.process.tid, c.who.socket),
            (123, 124, 777)
        );
        assert_eq!(c.who.process.exe.as_deref(), Some("/usr/bin/dig"));
        assert_eq!(c.who.cgroup, response.who.cgroup);
        assert_eq!(c.who.container, response.who.container);
        assert_eq!(c.who.pod, response.who.pod);
        assert_eq!(c.who.host, Some(false));
        assert_eq!(c.mono_ns, 13 * MS);
        assert_eq!(
            crate::clock::format_rfc3339(c.time_ns),
            "2026-11-26T10:54:55.013000000Z"
        );

        let stats = p.stats();
        assert_eq!(stats.correlate.paired, 1);
        assert_eq!(stats.decode.connect_records, 1);
        assert_eq!(stats.process.proc_reads, 1, "one /proc read for both kinds");
    }

    /// A pipeline that reads nothing of this host: an empty /proc, no cgroup mounts.
    fn without_host() -> (Pipeline, TempDir) {
        let empty = TempDir::new("proc");
        let p = Pipeline::new(
            PipelineConfig {
                proc_root: empty.path().to_path_buf(),
                ..PipelineConfig::default()
            },
            WallClock::with_offset(0),
        );
        (p, empty)
    }

    #[test]
    fn with_no_output_for_them_a_servers_messages_stop_after_the_first() {
        let empty = TempDir::new("proc");
        let mut p = Pipeline::new(
            PipelineConfig {
                proc_root: empty.path().to_path_buf(),
                server_side: ServerSide::Resolvers,
                ..PipelineConfig::default()
            },
            WallClock::with_offset(0),
        );
        let mut roles = Vec::new();
        for (i, at) in [0, MS, 2 * MS].into_iter().enumerate() {
            let id = i as u16;
            let q = dns_message(id, false, 0, "a.example", 1, &[]);
            let r = dns_message(id, true, 0, "a.example", 1, &[[10, 0, 0, 1]]);
            // The server receives the query and sends the response; the client, another
            // process, does the opposite.
            for (send, payload, tgid) in
                [(false, &q, 7), (true, &r, 7), (true, &q, 8), (false, &r, 8)]
            {
                let mut h = header(send, at, payload.len());
                h.tgid = tgid;
                roles.extend(
                    dns_events(&mut p, &record(&h, payload))
                        .iter()
                        .map(|e| (e.role, e.kind)),
                );
            }
        }
        let server = roles
            .iter()
            .filter(|(role, _)| *role == Role::Server)
            .count();
        let client = roles
            .iter()
            .filter(|(role, _)| *role == Role::Client)
            .count();
        assert_eq!(server, 1, "the server is named once: {roles:?}");
        assert_eq!(client, 6, "every client query and response");
        assert_eq!(p.stats().decode.server_side_skipped, 5);
    }

    #[test]
    fn a_removed_cgroup_is_named_from_the_kernel_event() {
        let (mut p, _empty) = without_host();
        let id = "a".repeat(64);
        let (parent, leaf) = (
            "kubepods-besteffort-pod1f2e3d4c_0000_4000_8000_000000000001.slice".to_string(),
            format!("cri-containerd-{id}.scope"),
        );
        let q = dns_message(7, false, 0, "gone.example", 1, &[]);
        let mut h = header(true, 0, q.len());
        // Ids no hierarchy on this host has: only the names can place the event.
        h.cgroup_id = u64::MAX - 1;
        h.cgroup_parent_name[..parent.len()].copy_from_slice(parent.as_bytes());
        h.cgroup_name[..leaf.len()].copy_from_slice(leaf.as_bytes());
        let out = dns_events(&mut p, &record(&h, &q));
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].who.cgroup, format!("/{parent}/{leaf}"));
        let container = out[0]
            .who
            .container
            .as_ref()
            .expect("container from the names");
        assert_eq!(&*container.id, id.as_str());
        let pod = out[0].who.pod.as_ref().expect("pod from the names");
        assert_eq!(&*pod.uid, "1f2e3d4c-0000-4000-8000-000000000001");
        assert_eq!(out[0].who.host, Some(false));
    }

    /// The answer section of a query is the sender's to fill: it is not kept, so crafted
    /// queries (a CNAME bomb to a port nothing answers) cannot fill the pending table with it.
    #[test]
    fn queries_keep_no_answers() {
        let (mut p, _empty) = without_host();
        let bomb: Vec<[u8; 4]> = (0..200u8).map(|i| [10, 0, 0, i]).collect();
        let q = dns_message(1, false, 0, "bomb.example", 1, &bomb);
        let events = dns_events(&mut p, &record(&header(true, 0, q.len()), &q));
        assert_eq!(events.len(), 1);
        assert!(
            events[0].answers.is_empty(),
            "{} answers kept",
            events[0].answers.len()
        );
        let r = dns_message(1, true, 0, "bomb.example", 1, &bomb);
        let events = dns_events(&mut p, &record(&header(false, MS, r.len()), &r));
        assert_eq!(events[0].answers.len(), 200, "a response keeps its answers");
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
        dns_events(&mut p, &record(&header(true, 0, q.len()), &q));
        let mut out = Vec::new();
        p.expire(999 * MS, &mut |e| out.push(e.clone()));
        assert!(out.is_empty());
        p.expire(1_000 * MS, &mut |e| out.push(e.clone()));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Unanswered);
        assert_eq!(out[0].timeout_ms, Some(1_000));
        assert_eq!(out[0].who.process.exe, None, "process gone from /proc");
        assert_eq!(
            &*out[0].who.cgroup, "/",
            "not resolvable here: the kernel's names (the root)"
        );

        // An exec record fills in the exe of a process already gone from /proc (named after
        // it: the header's process is `dig`).
        assert!(dns_events(&mut p, &exec_record(123, 99, "/usr/bin/dig")).is_empty());
        let q = dns_message(2, false, 0, "later.example", 1, &[]);
        let mut h = header(true, 2_000 * MS, q.len());
        h.process_start_ns = 99;
        let mut out = Vec::new();
        out.extend(dns_events(&mut p, &record(&h, &q)));
        assert_eq!(out[0].who.process.exe.as_deref(), Some("/usr/bin/dig"));
        assert_eq!(p.stats().decode.exec_records, 1);
        assert_eq!(p.stats().correlate.unanswered, 1);
    }

    #[test]
    fn libc_calls_pass_on_enriched_with_the_calls_times() {
        let (mut p, _empty) = without_host();
        let mut calls = Vec::new();
        p.record(
            &libc_record("db.internal", -2, 5 * MS, 7 * MS),
            &mut |o| match o {
                Observed::Libc(c) => calls.push(c.clone()),
                other => panic!("unexpected {other:?}"),
            },
        );
        let [call] = &calls[..] else {
            panic!("want one call: {calls:?}")
        };
        assert_eq!((call.name.as_str(), call.status), ("db.internal", -2));
        assert_eq!(
            (call.entry_mono_ns, call.mono_ns, call.time_ns),
            (5 * MS, 7 * MS, 5 * MS)
        );
        assert_eq!((call.who.process.pid, call.who.socket), (123, 0));
        assert_eq!(
            call.who.host,
            Some(true),
            "placed by enrichment: the root cgroup"
        );
        assert_eq!(p.stats().decode.libc_records, 1);
    }
}
