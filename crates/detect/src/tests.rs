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

// ---- tunneling ----

/// `n` queries of `qtype` for random 40-character labels under `domain`, evenly over 10 s.
fn tunnel(sim: &mut Sim, p: &P, domain: &str, n: u64, qtype: u16, from: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ from);
    for i in 0..n {
        let name = format!("{}.{}", rng.base32(40), domain);
        sim.feed(&p.query(&name, qtype, from + i * (10 * SEC / n)));
    }
}

#[test]
fn tunneling_at_the_rate_threshold_alerts_and_just_below_does_not() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "t.evil-tunnel.com", 499, 16, T0);
    sim.tick(T0 + 11 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "t.evil-tunnel.com", 500, 16, T0);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    let a = a[0];
    assert_eq!(a.severity, Severity::High, "TXT queries");
    assert_eq!(a.count, 1);
    assert_eq!(a.window_s, 10);
    let ev = &a.evidence;
    assert_eq!(ev.domain.as_deref(), Some("evil-tunnel.com"));
    assert_eq!(ev.queries, Some(500));
    assert_eq!(ev.rate_per_s, Some(50.0));
    let distinct = ev.distinct_names.unwrap();
    // An estimate under a hash keyed per run: within five standard errors (1.6% each).
    assert!((460..=540).contains(&distinct), "{distinct}");
    assert_eq!(ev.long_or_random, Some(500));
    assert_eq!(ev.qtypes, BTreeMap::from([("TXT".to_string(), 500)]));
    assert_eq!(ev.examples.len(), 10);
    assert_eq!(ev.workload.as_deref(), Some("shop/Deployment/web"));
    assert!(
        a.summary.contains("possible DNS tunneling"),
        "{}",
        a.summary
    );
    assert_eq!(sim.alerts.len(), 1, "nothing else fired");
}

#[test]
fn tunneling_severity_follows_query_types() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "evil-tunnel.com", 600, 1, T0);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium, "A queries only");
}

#[test]
fn tunneling_needs_distinct_long_names_outside_the_cluster() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    let mut rng = Rng(7);
    let mut t = T0;
    for i in 0..1000u64 {
        // The same long name over and over: cached lookups, not a tunnel.
        sim.feed(&p.query(&format!("{}.same.example.com", "a".repeat(40)), 16, t));
        // Many distinct short ordinary names.
        sim.feed(&p.query(&format!("host{i}.example.net"), 1, t));
        // Long random names in the cluster and reverse zones.
        sim.feed(&p.query(&format!("{}.shop.svc.cluster.local", rng.base32(40)), 1, t));
        sim.feed(&p.query(&format!("{}.10.in-addr.arpa", i % 250), 12, t));
        // A reputation service that carries hashes in names.
        sim.feed(&p.query(&format!("{}.sophosxl.net", rng.base32(40)), 1, t));
        t += 10 * MS;
    }
    sim.tick(t + 20 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

#[test]
fn repeats_are_aggregated_into_one_summary_per_window() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    // Six windows of tunneling in one minute: six triggers.
    for w in 0..6 {
        tunnel(&mut sim, &p, "evil-tunnel.com", 600, 16, T0 + w * 10 * SEC);
    }
    assert_eq!(
        sim.of(Detector::Tunneling).len(),
        1,
        "first trigger at once"
    );
    // The window opened with the 500th query of the first batch, 8.3 s in.
    sim.tick(T0 + 308 * SEC);
    assert_eq!(sim.of(Detector::Tunneling).len(), 1, "window still open");
    sim.tick(T0 + 309 * SEC);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].count, a[1].count), (1, 5));
    assert_eq!(a[1].window_s, 300);
    assert!(a[1]
        .summary
        .ends_with("(5 more times in the 300 s since the first alert)"));
    let stats = sim.d.stats();
    assert_eq!(stats.alerts(Detector::Tunneling), 2);
    assert_eq!(stats.aggregated, 5);
    // A new window opens with the next trigger.
    tunnel(&mut sim, &p, "evil-tunnel.com", 600, 16, T0 + 400 * SEC);
    assert_eq!(sim.of(Detector::Tunneling).len(), 3);
    assert_eq!(sim.of(Detector::Tunneling)[2].count, 1);
}

// ---- nxdomain ----

/// `n` failed lookups of distinct names (`distinct` of them), one a second, each a bare
/// NXDOMAIN as a host resolver makes them; then `ok` successful responses.
fn failures(sim: &mut Sim, p: &P, n: u64, distinct: u64, ok: u64) -> u64 {
    let mut t = T0;
    for i in 0..ok {
        sim.exchange(
            p,
            &format!("ok{i}.example.org"),
            1,
            0,
            &["93.184.215.14"],
            t,
        );
        t += 10 * MS;
    }
    for i in 0..n {
        sim.exchange(
            p,
            &format!("nope{}.example.org", i % distinct),
            1,
            3,
            &[],
            t,
        );
        t += SEC;
    }
    t += 10 * SEC;
    sim.tick(t);
    t
}

#[test]
fn nxdomain_at_the_threshold_alerts_and_just_below_does_not() {
    let p = P::host(20, "scanner", "/usr/bin/scanner");
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 19, 19, 0);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 0);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::Low);
    assert_eq!(a[0].evidence.failed_lookups, Some(20));
    assert_eq!(a[0].evidence.distinct_failed, Some(20));
    assert_eq!(
        a[0].evidence.workload.as_deref(),
        Some("exe:/usr/bin/scanner")
    );
    assert_eq!(sim.alerts.len(), 1, "ordinary names are no DGA");
}

#[test]
fn nxdomain_needs_distinct_names_and_a_high_share() {
    let p = P::host(20, "app", "/usr/bin/app");
    // A misconfigured client retrying five missing names.
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 40, 5, 0);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    // Failures that are under half of the responses.
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 21);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 20);
    assert_eq!(sim.of(Detector::Nxdomain).len(), 1, "exactly half");
}

/// Every failure counts, to see exactly what counts as one.
fn sensitive() -> Config {
    let mut c = config();
    c.nxdomain.min_failures = 1;
    c.nxdomain.min_distinct = 1;
    c.nxdomain.min_ratio = 0.0;
    c
}

#[test]
fn search_list_walks_that_succeed_never_count() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let go = P::in_pod(31, "shop", "api", "/usr/local/bin/api");
    // The kubelet appends the node's search domains (here a cloud's) to the pod's.
    let view = FakeProcesses::default()
        .with_resolv(
            30,
            &POD_RESOLV.replace("cluster.local\n", "cluster.local ec2.internal\n"),
        )
        .with_resolv(31, POD_RESOLV);
    let mut sim = Sim::with_view(sensitive(), view);
    let mut t = T0;
    for _ in 0..200 {
        t = sim.lookup(
            &web,
            "api.example.com",
            &["ec2.internal"],
            Some(("api.example.com", "93.184.215.14")),
            t,
        );
        t = sim.lookup(
            &web,
            "orders",
            &[],
            Some(("orders.shop.svc.cluster.local", "10.96.1.5")),
            t,
        );
        t = sim.lookup(
            &go,
            "kubernetes.default.svc",
            &[],
            Some(("kubernetes.default.svc.cluster.local", "10.96.0.1")),
            t,
        );
        t = sim.lookup(
            &go,
            "db.shop.svc.cluster.local",
            &[],
            Some(("db.shop.svc.cluster.local", "10.96.2.2")),
            t,
        );
        t = sim.lookup(
            &go,
            "a.b.c.d.example.com",
            &[],
            Some(("a.b.c.d.example.com", "93.184.215.15")),
            t,
        );
        t += 100 * MS;
    }
    sim.tick(t + 60 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

#[test]
fn a_missing_service_is_one_failed_lookup() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let view = FakeProcesses::default().with_resolv(30, POD_RESOLV);
    let mut sim = Sim::with_view(sensitive(), view);
    // Four names, A and AAAA each: eight NXDOMAIN responses.
    let t = sim.lookup(&web, "missing-svc", &[], None, T0);
    sim.tick(t + 4 * SEC);
    assert!(sim.alerts.is_empty(), "not yet timed out");
    sim.tick(t + 6 * SEC);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].evidence.failed_lookups, Some(1));
    assert_eq!(a[0].evidence.examples, ["missing-svc"]);
    // Names with ndots or more dots try the bare name first: still one lookup.
    let t = sim.lookup(&web, "a.b.c.d.e.missing", &[], None, t + 7 * SEC);
    sim.tick(t + 400 * SEC);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[1].evidence.failed_lookups, Some(1));
    assert_eq!(a[1].evidence.examples, ["a.b.c.d.e.missing"]);
}

#[test]
fn a_few_missing_services_do_not_alert() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let mut sim = Sim::with_view(
        config(),
        FakeProcesses::default().with_resolv(30, POD_RESOLV),
    );
    let mut t = T0;
    for i in 0..60 {
        t = sim.lookup(&web, &format!("missing-{}", i % 3), &[], None, t) + SEC;
    }
    sim.tick(t + 10 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

// ---- dga ----

/// `n` failed lookups of random-looking registered domains (the scorer catches most random
/// labels, not all: only the ones it catches are used, as this tests the threshold).
fn dga(sim: &mut Sim, p: &P, n: u64) {
    let mut rng = Rng(42);
    let mut t = T0;
    let mut made = 0;
    while made < n {
        let label = rng.label(b"abcdefghijklmnopqrstuvwxyz0123456789", 14);
        if !crate::score::looks_random(&label) {
            continue;
        }
        t = sim.lookup(p, &format!("{label}.com"), &[], None, t) + 500 * MS;
        made += 1;
    }
    sim.tick(t + 10 * SEC);
}

#[test]
fn dga_at_the_threshold_alerts_and_just_below_does_not() {
    let p = P::in_pod(40, "shop", "web", "/app/web");
    let view = || FakeProcesses::default().with_resolv(40, POD_RESOLV);
    let mut sim = Sim::with_view(config(), view());
    dga(&mut sim, &p, 9);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut sim = Sim::with_view(config(), view());
    dga(&mut sim, &p, 10);
    let a = sim.of(Detector::Dga);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::High);
    assert_eq!(a[0].evidence.random_domains, Some(10));
    assert!(a[0]
        .evidence
        .examples
        .iter()
        .all(|d| d.ends_with(".com") && d.len() == 18));
    assert!(
        sim.of(Detector::Nxdomain).is_empty(),
        "10 failures are below nxdomain's 20"
    );
}

#[test]
fn dga_ignores_real_words_and_random_subdomains_of_one_domain() {
    let p = P::host(41, "app", "/usr/bin/app");
    let mut sim = Sim::new(config());
    let mut rng = Rng(5);
    let mut t = T0;
    for word in [
        "payments",
        "checkout",
        "inventory",
        "analytics",
        "marketing",
        "customer",
        "internal",
        "downloads",
        "mirrorlist",
        "telemetry",
        "updates",
        "metrics",
    ] {
        sim.exchange(&p, &format!("{word}-gateway.com"), 1, 3, &[], t);
        // Random names under one registered domain are not a DGA's registrations.
        sim.exchange(
            &p,
            &format!("{}.example.com", rng.letters(14)),
            1,
            3,
            &[],
            t,
        );
        t += SEC;
    }
    sim.tick(t + 10 * SEC);
    assert!(sim.of(Detector::Dga).is_empty(), "{:?}", sim.alerts);
}

// ---- new domain, then connect ----

fn baselined(workload: &str, domains: &[&str]) -> Baseline {
    let mut b = Baseline::default();
    let w = b.workloads.entry(workload.to_string()).or_default();
    w.domains = domains.iter().map(|d| d.to_string()).collect();
    b
}

#[test]
fn new_domain_then_connect_within_the_window() {
    let p = P::in_pod(50, "shop", "web", "/app/web");
    let other = P {
        pid: 51,
        ..p.clone()
    };
    let run = |connector: &P, delay: u64, domain: &str| {
        let mut sim = Sim::new(config());
        sim.d
            .set_baseline(baselined("shop/Deployment/web", &["stripe.com"]));
        sim.exchange(&p, &format!("cdn.{domain}"), 1, 0, &["203.0.113.7"], T0);
        sim.connect(&connector.connect("203.0.113.7:443", T0 + MS + delay));
        sim
    };
    let sim = run(&p, 2000 * MS, "evil-c2.net");
    let a = sim.of(Detector::NewDomainConnect);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::High);
    assert_eq!(a[0].evidence.domain.as_deref(), Some("evil-c2.net"));
    assert_eq!(a[0].evidence.examples, ["cdn.evil-c2.net"]);
    assert_eq!(a[0].evidence.address.as_deref(), Some("203.0.113.7:443"));
    assert_eq!(a[0].evidence.after_ms, Some(2000));
    // The baseline makes the lookup itself unexpected too.
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 1);
    assert_eq!(sim.alerts.len(), 2);

    let c2 = |sim: Sim| sim.of(Detector::NewDomainConnect).len();
    assert_eq!(c2(run(&p, 2001 * MS, "evil-c2.net")), 0, "too late");
    assert_eq!(
        c2(run(&other, 10 * MS, "evil-c2.net")),
        0,
        "another process"
    );
    assert!(
        run(&p, 10 * MS, "stripe.com").alerts.is_empty(),
        "a known domain"
    );
}

#[test]
fn new_domains_count_only_after_the_warmup_without_a_baseline() {
    let p = P::in_pod(50, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.exchange(&p, "api.first.com", 1, 0, &["203.0.113.7"], T0);
    sim.connect(&p.connect("203.0.113.7:443", T0 + 10 * MS));
    let t = T0 + 601 * SEC;
    sim.exchange(&p, "api.first.com", 1, 0, &["203.0.113.7"], t);
    sim.connect(&p.connect("203.0.113.7:443", t + 10 * MS));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.exchange(&p, "x.second.com", 1, 0, &["203.0.113.8"], t + SEC);
    sim.connect(&p.connect("203.0.113.8:443", t + SEC + 10 * MS));
    assert_eq!(sim.of(Detector::NewDomainConnect).len(), 1);
    // An internal answer is not command-and-control by default.
    sim.exchange(&p, "db.corp-new.com", 1, 0, &["10.20.30.40"], t + 2 * SEC);
    sim.connect(&p.connect("10.20.30.40:5432", t + 2 * SEC + 10 * MS));
    assert_eq!(sim.alerts.len(), 1, "{:?}", sim.alerts);
}

// ---- unresolved connect ----

#[test]
fn connects_to_addresses_no_answer_gave() {
    let p = P::in_pod(60, "shop", "web", "/app/web").started_at(T0 + SEC);
    let mut sim = Sim::new(config());
    sim.tick(T0);
    sim.exchange(
        &p,
        "api.stripe.com",
        1,
        0,
        &["54.187.174.169"],
        T0 + 2 * SEC,
    );
    sim.connect(&p.connect("54.187.174.169:443", T0 + 3 * SEC));
    sim.connect(&p.connect("10.96.1.5:8080", T0 + 3 * SEC));
    sim.connect(&p.connect("[fd00::1]:8080", T0 + 3 * SEC));
    sim.connect(&p.connect("169.254.169.254:80", T0 + 3 * SEC));
    sim.connect(&p.connect("8.8.8.8:53", T0 + 3 * SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.connect(&p.connect("198.51.100.9:443", T0 + 4 * SEC));
    let a = sim.of(Detector::UnresolvedConnect);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Low);
    assert_eq!(a[0].evidence.address.as_deref(), Some("198.51.100.9:443"));
    assert_eq!(a[0].evidence.transport.as_deref(), Some("tcp"));
    // The answer was in another network namespace.
    let other = P::in_pod(61, "shop", "api", "/app/api").started_at(T0 + SEC);
    sim.connect(&other.connect("54.187.174.169:443", T0 + 5 * SEC));
    assert_eq!(sim.of(Detector::UnresolvedConnect).len(), 2);
    // Answers are kept for their TTL (30 s) raised to answer_min_ttl_s (300 s), then expire.
    sim.connect(&p.connect("54.187.174.169:443", T0 + 301 * SEC));
    assert_eq!(sim.d.stats().aggregated, 0);
    sim.connect(&p.connect("54.187.174.169:443", T0 + 303 * SEC));
    assert_eq!(
        sim.of(Detector::UnresolvedConnect).len(),
        2,
        "same workload: aggregated"
    );
    assert_eq!(sim.d.stats().aggregated, 1);
}

#[test]
fn processes_older_than_the_detectors_are_not_judged_on_unresolved_connects() {
    let old = P::in_pod(62, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.exchange(&old, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.connect(&old.connect("198.51.100.9:443", T0 + SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

// ---- unexpected domain ----

#[test]
fn learned_baseline_then_unexpected_domains_alert_once_per_window() {
    let p = P::in_pod(70, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.d.set_learning(true);
    sim.exchange(&p, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.exchange(
        &p,
        "orders.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.5"],
        T0,
    );
    sim.d.set_learning(false);
    let learned = sim.d.baseline().workload("shop/Deployment/web").unwrap();
    assert_eq!(
        learned.domains.iter().collect::<Vec<_>>(),
        ["orders.shop.svc.cluster.local", "stripe.com"]
    );
    assert_eq!(learned.executables.iter().collect::<Vec<_>>(), ["/app/web"]);
    let mut t = T0 + SEC;
    sim.exchange(&p, "files.stripe.com", 1, 0, &["54.187.174.170"], t);
    sim.exchange(
        &p,
        "payments.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.6"],
        t,
    );
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    for _ in 0..5 {
        sim.exchange(&p, "paste.evil.io", 1, 0, &["198.51.100.1"], t);
        t += SEC;
    }
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium);
    assert_eq!(a[0].evidence.domain.as_deref(), Some("evil.io"));
    assert_eq!(a[0].evidence.cluster_only, Some(false));
    sim.tick(T0 + 400 * SEC);
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].count, 4);
    // A workload with no baseline and no allowlist is not judged.
    let stranger = P::in_pod(71, "shop", "batch", "/app/batch");
    sim.exchange(
        &stranger,
        "paste.evil.io",
        1,
        0,
        &["198.51.100.1"],
        T0 + 500 * SEC,
    );
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 2);
}

#[test]
fn cluster_only_workloads_resolving_outside_names_are_called_out() {
    let p = P::in_pod(72, "shop", "db", "/usr/bin/postgres");
    let mut sim = Sim::new(config());
    sim.d.set_baseline(baselined(
        "shop/StatefulSet/db",
        &["orders.shop.svc.cluster.local"],
    ));
    let mut p = p;
    p.pod = Some(pod("shop", "StatefulSet", "db", "00072-uid"));
    sim.exchange(&p, "ifconfig.me", 1, 0, &["34.160.111.145"], T0);
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].evidence.cluster_only, Some(true));
    assert!(
        a[0].summary.contains("holds only cluster names"),
        "{}",
        a[0].summary
    );
}

#[test]
fn allowlists_judge_workloads_without_a_baseline() {
    let mut c = config();
    c.allow = vec![crate::config::Allow {
        namespace: Some("shop".into()),
        workload: Some("*/Deployment/web".into()),
        domains: vec!["*.amazonaws.com".into(), "stripe.com".into()],
        executables: vec![],
    }];
    let p = P::in_pod(73, "shop", "web", "/app/web");
    let mut sim = Sim::new(c);
    sim.exchange(&p, "s3.eu-west-1.amazonaws.com", 1, 0, &["52.218.1.1"], T0);
    sim.exchange(&p, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.exchange(
        &p,
        "orders.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.5"],
        T0,
    );
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.exchange(&p, "example.com", 1, 0, &["93.184.215.14"], T0);
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 1);
}

// ---- unknown binary ----

#[test]
fn binaries_in_temporary_places_or_deleted_alert() {
    let mut view = FakeProcesses::default();
    for pid in [80, 81, 82, 83] {
        view.known.insert(pid);
    }
    // pid 82's binary was replaced by an upgrade: the path exists again.
    view.files.insert((82, "/usr/sbin/sshd".to_string()));
    let mut sim = Sim::with_view(config(), view);
    let mk = |pid, exe: &str| P::host(pid, "x", exe);
    sim.feed(&mk(80, "/tmp/.x/miner").query("pool.example.com", 1, T0));
    sim.feed(&mk(81, "/opt/tool (deleted)").query("c2.example.com", 1, T0));
    sim.feed(&mk(82, "/usr/sbin/sshd (deleted)").query("example.com", 1, T0));
    sim.feed(&mk(83, "/memfd:payload (deleted)").query("example.com", 1, T0));
    sim.feed(&mk(84, "/dev/shm/x").query("example.com", 1, T0));
    sim.feed(&mk(85, "/usr/bin/tmpreaper").query("example.com", 1, T0));
    sim.feed(&mk(86, "/tmpfoo/bin").query("example.com", 1, T0));
    // Exited before its root could be checked.
    sim.feed(&mk(87, "/usr/bin/gone (deleted)").query("example.com", 1, T0));
    // Paths as passed to execve, which the process chose.
    sim.feed(&mk(88, "//tmp/x").query("example.com", 1, T0));
    sim.feed(&mk(89, "/usr/../dev/shm/./y").query("example.com", 1, T0));
    let a = sim.of(Detector::UnknownBinary);
    let reasons: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a.evidence.exe.as_deref().unwrap(),
                a.evidence.reason.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("/tmp/.x/miner", "temporary directory"),
            ("/opt/tool (deleted)", "deleted"),
            ("/memfd:payload (deleted)", "memfd"),
            ("/dev/shm/x", "temporary directory"),
            ("/usr/bin/gone (deleted)", "deleted"),
            ("//tmp/x", "temporary directory"),
            ("/usr/../dev/shm/./y", "temporary directory"),
        ]
    );
    let severities: Vec<Severity> = a.iter().map(|a| a.severity).collect();
    use Severity::{High, Medium};
    assert_eq!(severities, [High, High, High, High, Medium, High, High]);
    assert!(
        a[0].summary.contains("/tmp/.x/miner (temporary directory)"),
        "{}",
        a[0].summary
    );
}

#[test]
fn executables_outside_the_baseline_alert_medium() {
    let web = P::in_pod(90, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.d.set_learning(true);
    sim.feed(&web.query("api.stripe.com", 1, T0));
    sim.d.set_learning(false);
    sim.feed(&web.query("api.stripe.com", 1, T0 + SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut shell = web.clone();
    shell.pid = 91;
    shell.exe = Some("/usr/bin/wget".to_string());
    sim.feed(&shell.query("api.stripe.com", 1, T0 + 2 * SEC));
    let a = sim.of(Detector::UnknownBinary);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium);
    assert_eq!(a[0].evidence.reason.as_deref(), Some("not in baseline"));
    // Another workload has no baseline: not judged.
    let other = P::in_pod(92, "shop", "api", "/usr/bin/wget");
    sim.feed(&other.query("api.stripe.com", 1, T0 + 3 * SEC));
    assert_eq!(sim.of(Detector::UnknownBinary).len(), 1);
}

// ---- resolver bypass ----

#[test]
fn queries_to_other_servers_or_dot_bypass_the_resolver() {
    let view = FakeProcesses::default()
        .with_resolv(100, POD_RESOLV)
        .with_resolv(101, "nameserver 127.0.0.53\nsearch ec2.internal\n");
    let mut sim = Sim::with_view(config(), view);
    let mut p = P::in_pod(100, "shop", "web", "/app/web");
    sim.feed(&p.query("example.com", 1, T0));
    let mut host = P::host(101, "curl", "/usr/bin/curl");
    sim.feed(&host.query("example.com", 1, T0));
    // mDNS is not a resolver.
    p.server = "224.0.0.251:5353".parse().unwrap();
    sim.feed(&p.query("printer.local", 1, T0));
    // A process that is gone: nothing to compare with.
    let gone = P::in_pod(102, "shop", "web", "/app/web");
    let mut gone = gone;
    gone.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&gone.query("example.com", 1, T0));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    p.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&p.query("example.com", 1, T0 + SEC));
    host.server = "127.0.0.1:53".parse().unwrap();
    sim.feed(&host.query("example.com", 1, T0 + SEC));
    p.server = "1.1.1.1:853".parse().unwrap();
    sim.feed(&p.query("example.com", 1, T0 + SEC));
    sim.connect(&gone.connect("9.9.9.9:853", T0 + SEC));
    let a = sim.of(Detector::ResolverBypass);
    let got: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a.evidence.server.as_deref().unwrap(),
                a.evidence.reason.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("8.8.8.8:53", "other server"),
            ("127.0.0.1:53", "other server"),
            ("1.1.1.1:853", "dns over tls"),
            ("9.9.9.9:853", "dns over tls"),
        ]
    );
    assert_eq!(a[0].evidence.configured, ["10.96.0.10"]);
    assert!(a.iter().all(|a| a.severity == Severity::Medium));
}

#[test]
fn an_operators_dig_on_the_host_is_no_bypass_but_a_pods_is() {
    let view = FakeProcesses::default()
        .with_resolv(110, "nameserver 127.0.0.53\n")
        .with_resolv(111, POD_RESOLV)
        .with_resolv(112, "nameserver 127.0.0.53\n");
    let mut sim = Sim::with_view(config(), view);
    let mut operator = P::host(110, "dig", "/usr/bin/dig");
    operator.server = "127.0.0.1:5300".parse().unwrap();
    sim.feed(&operator.query("example.com", 1, T0));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    // The same tool in a pod is judged, and so is a host process that only takes its name.
    let mut in_pod = P::in_pod(111, "shop", "web", "/usr/bin/dig");
    in_pod.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&in_pod.query("example.com", 1, T0));
    let mut named = P::host(112, "dig", "/tmp/dig-not");
    named.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&named.query("example.com", 1, T0));
    assert_eq!(sim.of(Detector::ResolverBypass).len(), 2);
}

#[test]
fn resolvers_and_forwarders_are_exempt() {
    // dnsmasq answers a client, then forwards upstream: long random names at a high rate
    // (a client's tunnel, seen from its forwarder) and many NXDOMAINs.
    let dnsmasq = P::host(110, "dnsmasq", "/usr/sbin/dnsmasq");
    let mut upstream = dnsmasq.clone();
    upstream.server = "10.0.0.2:53".parse().unwrap();
    let view = FakeProcesses::default().with_resolv(110, "nameserver 127.0.0.1\n");
    let mut sim = Sim::with_view(config(), view);
    let mut rng = Rng(3);
    sim.feed(&dnsmasq.served("first.example.com", T0));
    let mut t = T0 + MS;
    for i in 0..2000 {
        let name = format!("{}.evil-tunnel.com", rng.base32(40));
        sim.feed(&upstream.query(&name, 16, t));
        sim.feed(&upstream.response(&format!("{}.com", rng.letters(14)), 1, 3, &[], t));
        sim.feed(&upstream.response(&format!("n{i}.example.org"), 1, 3, &[], t));
        t += 5 * MS;
    }
    sim.tick(t + 60 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

// ---- configuration ----

#[test]
fn namespace_overrides_disable_and_reweigh_detectors() {
    let c = Config::parse(
        "[namespaces.kube-system.tunneling]\nenabled = false\n\
         [namespaces.batch.tunneling]\nseverity = \"low\"\n",
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let mut sim = Sim::new(c);
    tunnel(
        &mut sim,
        &P::in_pod(120, "kube-system", "agent", "/agent"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    assert!(sim.alerts.is_empty());
    tunnel(
        &mut sim,
        &P::in_pod(121, "batch", "job", "/job"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    tunnel(
        &mut sim,
        &P::in_pod(122, "shop", "web", "/web"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    let sev: Vec<Severity> = sim.alerts.iter().map(|a| a.severity).collect();
    assert_eq!(sev, [Severity::Low, Severity::High]);
}

// ---- bounded state ----

#[test]
fn state_stays_bounded_under_100k_distinct_keys() {
    let mut c = config();
    c.limits.processes = 1000;
    c.limits.tunnels = 500;
    c.limits.lookups = 500;
    c.limits.workloads = 300;
    c.limits.answers = 2000;
    c.limits.aggregates = 400;
    let mut sim = Sim::new(c);
    let mut t = T0;
    for i in 0..100_000u32 {
        let mut p = P::in_pod(i, "ns", "w", "/tmp/x");
        // Distinct pods without names: distinct workloads.
        p.pod = Some(Pod {
            uid: Arc::from(format!("uid-{i}").as_str()),
            info: None,
        });
        p.exe = Some(format!("/tmp/bin{i}"));
        let name = format!("h{i}.d{i}.example.com");
        sim.feed(&p.query(&name, 1, t));
        sim.feed(&p.response(&name, 1, 3, &[], t));
        let ok = format!("ok{i}.example.net");
        let addr = format!("198.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        sim.feed(&p.response(&ok, 1, 0, &[&addr], t));
        t += MS;
    }
    let s = sim.d.stats();
    let caps = [
        (
            "processes",
            s.entries.processes,
            s.evictions.processes,
            1000,
        ),
        ("tunnels", s.entries.tunnels, s.evictions.tunnels, 500),
        ("lookups", s.entries.lookups, s.evictions.lookups, 500),
        ("workloads", s.entries.workloads, s.evictions.workloads, 300),
        ("answers", s.entries.answers, s.evictions.answers, 2000),
        (
            "aggregates",
            s.entries.aggregates,
            s.evictions.aggregates,
            400,
        ),
    ];
    for (table, len, evicted, cap) in caps {
        assert!(len <= cap, "{table}: {len} > {cap}");
        assert!(evicted > 0, "{table}: nothing evicted");
    }
    assert_eq!(s.entries.processes, 1000);
    assert_eq!(s.entries.answers, 2000);
    assert_eq!(
        s.alerts(Detector::UnknownBinary),
        sim.of(Detector::UnknownBinary).len() as u64
    );
}

// ---- the quiet minute ----

/// A minute of an ordinary node: glibc and Go clients resolving cluster services through the
/// search list, external names through it too, a missing service, PTR lookups, CoreDNS and
/// systemd-resolved forwarding, host tools, a job started every 10 s, and connects to what
/// was resolved.
fn quiet_minute(sim: &mut Sim, from: u64) -> u64 {
    let web = P::in_pod(1001, "shop", "web", "/app/web");
    let api = P::in_pod(1002, "shop", "api", "/usr/local/bin/api");
    let coredns = P::in_pod(900, "kube-system", "coredns", "/coredns");
    let mut coredns_up = coredns.clone();
    coredns_up.server = "10.0.0.2:53".parse().unwrap();
    let resolved = P::host(500, "systemd-resolve", "/usr/lib/systemd/systemd-resolved");
    let mut resolved_up = resolved.clone();
    resolved_up.server = "10.0.0.2:53".parse().unwrap();
    let apt = P::host(600, "apt", "/usr/bin/apt");
    let kubelet = P::host(700, "kubelet", "/usr/bin/kubelet");
    let worker = P::in_pod(1003, "shop", "worker", "/app/worker");

    let mut t = from;
    for s in 0..60u64 {
        let sec = from + s * SEC;
        t = t.max(sec);
        t = sim.lookup(
            &web,
            "orders",
            &[],
            Some(("orders.shop.svc.cluster.local", "10.96.1.5")),
            t,
        );
        sim.connect(&web.connect("10.96.1.5:8080", t + MS));
        sim.feed(&coredns.served("orders.shop.svc.cluster.local", t));
        if s % 2 == 0 {
            t = sim.lookup(
                &api,
                "kubernetes.default.svc",
                &[],
                Some(("kubernetes.default.svc.cluster.local", "10.96.0.1")),
                t,
            );
            sim.connect(&api.connect("10.96.0.1:443", t + MS));
            // nginx-style reverse lookups of clients without PTR records.
            sim.exchange(
                &web,
                &format!("{}.1.244.10.in-addr.arpa", s % 200),
                12,
                3,
                &[],
                t,
            );
        }
        if s % 3 == 0 {
            t = sim.lookup(
                &api,
                "db.shop.svc.cluster.local",
                &[],
                Some(("db.shop.svc.cluster.local", "10.96.2.2")),
                t,
            );
        }
        if s % 5 == 0 {
            t = sim.lookup(
                &web,
                "api.stripe.com",
                &[],
                Some(("api.stripe.com", "54.187.174.169")),
                t,
            );
            sim.connect(&web.connect("54.187.174.169:443", t + 20 * MS));
            sim.feed(&coredns.served("api.stripe.com", t));
            sim.exchange(&coredns_up, "api.stripe.com", 1, 0, &["54.187.174.169"], t);
        }
        if s % 6 == 0 {
            // A worker that only calls outside APIs: each lookup walks the search list first.
            let host = EXTERNAL[(s / 6) as usize];
            t = sim.lookup(&worker, host, &[], Some((host, "52.94.133.131")), t);
            sim.connect(&worker.connect("52.94.133.131:443", t + MS));
        }
        if s % 7 == 0 {
            t = sim.lookup(
                &api,
                "storage.googleapis.com",
                &[],
                Some(("storage.googleapis.com", "142.250.74.59")),
                t,
            );
            sim.connect(&api.connect("142.250.74.59:443", t + 5 * MS));
        }
        if s % 10 == 0 {
            t = sim.lookup(&web, "missing-svc", &[], None, t);
            for name in ["missing-svc.shop.svc.cluster.local", "missing-svc"] {
                sim.feed(&coredns.served(name, t));
                sim.exchange(&coredns_up, name, 1, 3, &[], t);
            }
            // A short-lived job started after the detectors, resolving and connecting.
            let job = P::in_pod(2000 + s as u32, "batch", "report", "/usr/bin/curl").started_at(t);
            t = sim.lookup(
                &job,
                "example.com",
                &[],
                Some(("example.com", "93.184.215.14")),
                t + MS,
            );
            sim.connect(&job.connect("93.184.215.14:443", t + MS));
            // Host tools through systemd-resolved, which forwards.
            sim.feed(&resolved.served("deb.debian.org", t));
            sim.exchange(&resolved_up, "deb.debian.org", 1, 0, &["151.101.2.132"], t);
            sim.exchange(&apt, "deb.debian.org", 1, 0, &["151.101.2.132"], t);
            sim.exchange(&apt, "deb.debian.org", 28, 0, &["2a04:4e42::644"], t);
            sim.connect(&apt.connect("151.101.2.132:80", t + 2 * MS));
            sim.exchange(&kubelet, "registry.k8s.io", 1, 0, &["34.96.108.209"], t);
            sim.connect(&kubelet.connect("34.96.108.209:443", t + 2 * MS));
        }
        sim.tick(sec + 900 * MS);
    }
    t
}

/// Services the quiet worker calls, one every 6 s.
const EXTERNAL: [&str; 10] = [
    "api.stripe.com",
    "sqs.eu-west-1.amazonaws.com",
    "dynamodb.eu-west-1.amazonaws.com",
    "o123456.ingest.sentry.io",
    "http-intake.logs.datadoghq.eu",
    "hooks.slack.com",
    "api.twilio.com",
    "api.github.com",
    "oauth2.googleapis.com",
    "api.sendgrid.com",
];

fn quiet_view() -> FakeProcesses {
    let mut v = FakeProcesses::default();
    for pid in [1001, 1002, 1003, 900] {
        v = v.with_resolv(pid, POD_RESOLV);
    }
    for s in (0..60).step_by(10) {
        v = v.with_resolv(2000 + s, &POD_RESOLV.replace("shop", "batch"));
    }
    for pid in [500, 600, 700] {
        v = v.with_resolv(pid, "nameserver 127.0.0.53\nsearch ec2.internal\n");
    }
    v
}

#[test]
fn a_quiet_minute_raises_nothing() {
    let mut sim = Sim::with_view(config(), quiet_view());
    let t = quiet_minute(&mut sim, T0);
    sim.tick(t + 400 * SEC);
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
    let alerts = &mut sim.alerts;
    sim.d.finish(&mut |a| alerts.push(a));
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
}

#[test]
fn a_quiet_minute_after_learning_it_raises_nothing() {
    let mut sim = Sim::with_view(config(), quiet_view());
    sim.d.set_learning(true);
    let t = quiet_minute(&mut sim, T0);
    sim.d.set_learning(false);
    assert!(sim.d.baseline().workload("shop/Deployment/web").is_some());
    let t = quiet_minute(&mut sim, t + 11 * 60 * SEC);
    sim.tick(t + 400 * SEC);
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
}

#[test]
fn a_learned_baseline_survives_save_and_load() {
    let mut sim = Sim::with_view(config(), quiet_view());
    sim.d.set_learning(true);
    quiet_minute(&mut sim, T0);
    let path = std::env::temp_dir().join(format!(
        "dnslens-detect-learned-{}.json",
        std::process::id()
    ));
    sim.d.baseline().save(&path).unwrap();
    let loaded = Baseline::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&loaded, sim.d.baseline());
    let web = &loaded.workloads["shop/Deployment/web"];
    assert!(web.domains.contains("stripe.com"));
    assert!(web.domains.contains("orders.shop.svc.cluster.local"));
    assert!(web.executables.contains("/app/web"));
    // Expansions that failed are not learned.
    assert!(
        web.domains.iter().all(|d| !d.contains("missing-svc")),
        "{:?}",
        web.domains
    );
}

// ---- the JSON line ----

#[test]
fn alert_json_shape() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "evil-tunnel.com", 500, 16, 0);
    let mut a = sim.alerts[0].clone();
    a.evidence.examples.truncate(2);
    // The distinct count is an estimate under a hash keyed per run: the shape is pinned here,
    // not the estimate (1.6% standard error: within five of them).
    let estimate = a.evidence.distinct_names.take().unwrap();
    assert!((460..=540).contains(&estimate), "{estimate}");
    a.summary = a
        .summary
        .replace(&format!("for {estimate} distinct"), "for 500 distinct");
    a.evidence.distinct_names = Some(500);
    let json = a.to_json_line();
    let ex = &a.evidence.examples;
    let cid = &a.who.container.as_ref().unwrap().id;
    assert_eq!(
        json,
        format!(
            concat!(
                r#"{{"kind":"alert","time":"2026-11-26T10:55:04.980000000Z","detector":"tunneling","severity":"high","#,
                r#""summary":"app (pid 10) in pod shop/web-7d4b9f-00010 sent 500 queries in 10 s for 500 distinct names under evil-tunnel.com, most with long or random labels: possible DNS tunneling","#,
                r#""count":1,"window_s":10,"evidence":{{"workload":"shop/Deployment/web","domain":"evil-tunnel.com","examples":["{}","{}"],"#,
                r#""queries":500,"rate_per_s":50.0,"distinct_names":500,"long_or_random":500,"qtypes":{{"TXT":500}}}},"#,
                r#""process":{{"pid":10,"tid":10,"comm":"app","name":"app","exe":"/app/web","uid":0,"ppid":1}},"netns":4026532010,"cgroup":"","#,
                r#""container":{{"id":"{}","runtime":"containerd","name":"app"}},"#,
                r#""pod":{{"uid":"00010-uid","name":"web-7d4b9f-00010","namespace":"shop","workload":{{"kind":"Deployment","name":"web"}},"labels":{{"app":"web"}}}},"#,
                r#""node":"node-1","host":false}}"#,
                "\n"
            ),
            ex[0], ex[1], cid
        )
    );
}

#[test]
fn attribution_json_matches_the_events() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let e = p.query("example.com", 1, T0);
    let mut sim = Sim::with_view(
        config(),
        FakeProcesses::default().with_resolv(10, POD_RESOLV),
    );
    let mut q = e.clone();
    q.dst = "8.8.8.8:53".parse().unwrap();
    sim.feed(&q);
    let alert: serde_json::Value = serde_json::from_str(&sim.alerts[0].to_json_line()).unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&dnslens_lens::schema::event_to_string(&e)).unwrap();
    for key in [
        "process",
        "netns",
        "cgroup",
        "container",
        "pod",
        "node",
        "host",
    ] {
        assert_eq!(alert[key], event[key], "{key}");
    }
    assert_eq!(alert["kind"], "alert");
    assert_eq!(event["kind"], "query");
    assert_eq!(e.kind, Kind::Query);
}

#[test]
fn the_stage_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Detectors>();
    send::<Alert>();
}
