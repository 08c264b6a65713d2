//! Scenario tests of the whole stage: synthetic event streams in event time, per detector at
//! and just below its thresholds, aggregation, bounded state, and a quiet minute of an
//! ordinary cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dnslens_lens::container::Runtime;
use dnslens_lens::model::{sample, Answer, Attribution, Container, KernelIds, Pod};
use dnslens_lens::pods::{PodInfo, Workload};
use dnslens_lens::{ConnectEvent, DnsEvent, Kind, Role};
use dnslens_wire::RecordType;

use crate::{Alert, Baseline, Config, Detector, Detectors, FakeProcesses, Severity, Transport};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// Event time starts here; processes that started before it predate the detectors.
const T0: u64 = 1_000 * SEC;

const POD_RESOLV: &str = "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
                          nameserver 10.96.0.10\noptions ndots:5\n";

/// A process that sends queries and opens connections.
#[derive(Clone)]
struct P {
    pid: u32,
    start: u64,
    name: &'static str,
    exe: Option<String>,
    netns: u32,
    pod: Option<Pod>,
    server: SocketAddr,
}

fn pod(ns: &str, kind: &str, workload: &str, uid: &str) -> Pod {
    Pod {
        uid: Arc::from(uid),
        info: Some(Arc::new(PodInfo {
            uid: uid.to_string(),
            name: format!("{workload}-7d4b9f-{}", &uid[..5]),
            namespace: ns.to_string(),
            node: Some("node-1".to_string()),
            pod_ip: None,
            service_account: None,
            labels: [("app".to_string(), workload.to_string())].into(),
            workload: Some(Workload {
                kind: kind.to_string(),
                name: workload.to_string(),
            }),
            containers: Default::default(),
        })),
    }
}

impl P {
    /// A process of Deployment `ns/workload`, using the cluster DNS service.
    fn in_pod(pid: u32, ns: &str, workload: &str, exe: &str) -> P {
        P {
            pid,
            start: SEC,
            name: "app",
            exe: Some(exe.to_string()),
            netns: 4_026_532_000 + pid,
            pod: Some(pod(ns, "Deployment", workload, &format!("{pid:05}-uid"))),
            server: "10.96.0.10:53".parse().unwrap(),
        }
    }

    /// A host process using systemd-resolved's stub.
    fn host(pid: u32, name: &'static str, exe: &str) -> P {
        P {
            pid,
            start: SEC,
            name,
            exe: Some(exe.to_string()),
            netns: 4_026_531_840,
            pod: None,
            server: "127.0.0.53:53".parse().unwrap(),
        }
    }

    fn started_at(mut self, start: u64) -> P {
        self.start = start;
        self
    }

    fn base(&self, qname: &str, qtype: u16, t: u64) -> DnsEvent {
        let mut e = sample::query(7, qname, qtype, t);
        e.who.process.pid = self.pid;
        e.who.process.tid = self.pid;
        e.who.process.name = self.name.into();
        e.who.process.comm = self.name.into();
        e.who.process.exe = self.exe.as_deref().map(Into::into);
        e.who.netns = self.netns;
        e.who.pod = self.pod.clone();
        e.who.container = self.pod.as_ref().map(|p| Container {
            id: Arc::from(
                format!("{:064x}", p.uid.len() as u64 * 7 + u64::from(self.pid)).as_str(),
            ),
            runtime: Runtime::Containerd,
            name: Some("app".to_string()),
        });
        e.who.host = Some(self.pod.is_none());
        e.who.node = Some(Arc::from("node-1"));
        e.dst = self.server;
        e.who.ids = KernelIds {
            process_start_ns: self.start,
            ..KernelIds::default()
        };
        e
    }

    fn query(&self, qname: &str, qtype: u16, t: u64) -> DnsEvent {
        self.base(qname, qtype, t)
    }

    /// A response; answers are addresses (A or AAAA by their form) or CNAME targets.
    fn response(&self, qname: &str, qtype: u16, rcode: u16, answers: &[&str], t: u64) -> DnsEvent {
        let q = self.base(qname, qtype, t);
        let mut r = sample::response(&q, rcode, &[], t);
        r.answers = answers
            .iter()
            .map(|data| Answer {
                name: qname.to_string(),
                rtype: if data.parse::<std::net::Ipv4Addr>().is_ok() {
                    RecordType::A
                } else if data.parse::<std::net::Ipv6Addr>().is_ok() {
                    RecordType::AAAA
                } else {
                    RecordType::CNAME
                },
                ttl: 30,
                data: data.to_string(),
            })
            .collect();
        r
    }

    /// The same message seen on the answering side (a resolver receiving a query).
    fn served(&self, qname: &str, t: u64) -> DnsEvent {
        let mut e = self.base(qname, 1, t);
        e.role = Role::Server;
        e
    }

    fn connect(&self, dst: &str, t: u64) -> ConnectEvent {
        let e = self.base("", 1, t);
        ConnectEvent {
            mono_ns: t,
            time_ns: e.time_ns,
            src: e.src,
            dst: dst.parse().unwrap(),
            transport: Transport::Tcp,
            who: Attribution {
                netns: self.netns,
                ..e.who
            },
        }
    }
}

struct Sim {
    d: Detectors,
    alerts: Vec<Alert>,
}

impl Sim {
    fn new(config: Config) -> Sim {
        Sim::with_view(config, FakeProcesses::default())
    }

    fn with_view(config: Config, view: FakeProcesses) -> Sim {
        Sim {
            d: Detectors::with_view(config, Box::new(view)),
            alerts: Vec::new(),
        }
    }

    fn feed(&mut self, e: &DnsEvent) {
        let alerts = &mut self.alerts;
        self.d.event(e, &mut |a| alerts.push(a));
    }

    fn connect(&mut self, c: &ConnectEvent) {
        let alerts = &mut self.alerts;
        self.d.connect(c, &mut |a| alerts.push(a));
    }

    fn tick(&mut self, now: u64) {
        let alerts = &mut self.alerts;
        self.d.tick(now, &mut |a| alerts.push(a));
    }

    fn of(&self, d: Detector) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.detector == d).collect()
    }

    /// A query and its response.
    fn exchange(&mut self, p: &P, name: &str, qtype: u16, rcode: u16, answers: &[&str], t: u64) {
        self.feed(&p.query(name, qtype, t));
        self.feed(&p.response(name, qtype, rcode, answers, t + MS));
    }

    /// A glibc/Go lookup with `ndots:5` and the pod's search list (plus `extra`): A and AAAA
    /// for each candidate in order until `found` (the name that exists, and its address).
    /// Returns the time after it.
    fn lookup(
        &mut self,
        p: &P,
        name: &str,
        extra: &[&str],
        found: Option<(&str, &str)>,
        t: u64,
    ) -> u64 {
        let ns = p
            .pod
            .as_ref()
            .and_then(|p| p.namespace())
            .unwrap_or("default");
        let mut search: Vec<String> = vec![
            format!("{ns}.svc.cluster.local"),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ];
        search.extend(extra.iter().map(|s| s.to_string()));
        let expansions = search.iter().map(|s| format!("{name}.{s}"));
        let candidates: Vec<String> = if name.matches('.').count() >= 5 {
            std::iter::once(name.to_string())
                .chain(expansions)
                .collect()
        } else {
            expansions
                .chain(std::iter::once(name.to_string()))
                .collect()
        };
        let mut t = t;
        for c in candidates {
            for qtype in [1, 28] {
                self.feed(&p.query(&c, qtype, t));
            }
            t += 2 * MS;
            match found {
                Some((exists, addr)) if exists == c => {
                    self.feed(&p.response(&c, 1, 0, &[addr], t));
                    self.feed(&p.response(&c, 28, 0, &[], t));
                    return t + MS;
                }
                _ => {
                    for qtype in [1, 28] {
                        self.feed(&p.response(&c, qtype, 3, &[], t));
                    }
                }
            }
            t += MS;
        }
        t
    }
}

/// A fixed xorshift stream, so random-looking names are the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn label(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }

    fn base32(&mut self, len: usize) -> String {
        self.label(b"abcdefghijklmnopqrstuvwxyz234567", len)
    }

    fn letters(&mut self, len: usize) -> String {
        self.label(b"abcdefghijklmnopqrstuvwxyz", len)
    }
}

fn config() -> Config {
    Config::default()
}

/// `n` queries of `qtype` for random 40-character labels under `domain`, evenly over 10 s.
fn tunnel(sim: &mut Sim, p: &P, domain: &str, n: u64, qtype: u16, from: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ from);
    for i in 0..n {
        let name = format!("{}.{}", rng.base32(40), domain);
        sim.feed(&p.query(&name, qtype, from + i * (10 * SEC / n)));
    }
}

fn baselined(workload: &str, domains: &[&str]) -> Baseline {
    let mut b = Baseline::default();
    let w = b.workloads.entry(workload.to_string()).or_default();
    w.domains = domains.iter().map(|d| d.to_string()).collect();
    b
}

mod bypass;
mod connects;
mod drift;
mod lookups;
mod stage;
mod tunneling;
