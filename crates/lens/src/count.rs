//! Counting: queries sent by clients per interval, keyed by one or more of: who asked (thread
//! name, process name, pid, cgroup, pod, namespace, workload, container), what was asked (name,
//! registered domain, type), whom (the server) and what came back (rcode). The key table is
//! bounded, since a workload chooses its names: keys past the bound are folded into one
//! `(other)` row, and counted.

use std::collections::HashMap;
use std::fmt::Write;

use crate::domain::registered_domain;
use crate::identity::{write_into, Identity};
use crate::model::{Container, DnsEvent, Kind, Role, TIMEOUT};

/// Distinct keys counted per interval before new keys fold into [`OTHER`].
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The row that collects keys past the capacity.
pub const OTHER: &str = "(other)";
/// The keys of processes outside containers and pods, of events whose cgroup was not
/// resolved or whose pod the directory does not know, and of what a process lacks (the pod of a
/// container outside pods, the container of a process in a pod's own cgroup).
pub use crate::identity::{HOST, NONE, UNKNOWN};

/// What the queries are counted by; its name is the JSON `by` and field, and the flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum CountBy {
    /// Thread name.
    Comm,
    /// Process name.
    Process,
    /// Process id (with the process name).
    Pid,
    Cgroup,
    /// `namespace/name`, or the uid while the pod directory does not know the pod.
    Pod,
    Namespace,
    /// `namespace/Kind/name`; a pod without an owner is its own workload (`namespace/Pod/name`).
    Workload,
    /// `namespace/pod/container`, or the first 12 hex digits of the id when the name is not
    /// known.
    Container,
    /// The name asked, lower-cased.
    Qname,
    /// The registered domain of the name (`example.co.uk` for `www.example.co.uk`).
    Domain,
    /// The query type: A, AAAA, TYPE65280...
    Qtype,
    /// The response code, TIMEOUT when none came (counts a query when its answer comes).
    Rcode,
    /// The server asked: address:port.
    Server,
}

/// When a query is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountedAt {
    /// When the client sends it.
    Query,
    /// When its answer comes (a response paired with it) or its timeout passes: what keys by
    /// rcode or filters by it need. Each query counts once, in the interval its answer is in.
    Answer,
}

impl CountedAt {
    /// The moment `by` and an rcode filter (`filters_rcode`) need.
    pub fn needed(by: &[CountBy], filters_rcode: bool) -> CountedAt {
        if filters_rcode || by.contains(&CountBy::Rcode) {
            CountedAt::Answer
        } else {
            CountedAt::Query
        }
    }
}

/// Writes the pod, namespace, workload or container key of `e` into `out` (cleared first).
fn placement_key(by: CountBy, e: &DnsEvent, out: &mut String) {
    let id = Identity::of(&e.who);
    match (id, by) {
        (Identity::Unknown(_), _) => write_into(out, UNKNOWN),
        (Identity::Host(_), _) => write_into(out, HOST),
        // Never in a capture, which is all `count` reads.
        (Identity::Client(_), _) => write_into(out, id),
        (_, CountBy::Container) => match (id.container(), id) {
            (None, _) => write_into(out, NONE),
            (Some(Container { name: Some(c), .. }), Identity::Pod { info: Some(p), .. }) => {
                write_into(out, format_args!("{}/{}/{c}", p.namespace, p.name))
            }
            (Some(c), _) => write_into(out, c.short_id()),
        },
        (Identity::Container(_), _) => write_into(out, NONE),
        (Identity::Pod { info: None, .. }, CountBy::Pod) => write_into(out, id),
        (Identity::Pod { info: None, .. }, _) => write_into(out, UNKNOWN),
        (Identity::Pod { info: Some(p), .. }, by) => match (by, id.workload()) {
            (CountBy::Namespace, _) => write_into(out, &p.namespace),
            (CountBy::Workload, Some(w)) => write_into(out, w),
            _ => write_into(out, id),
        },
    }
}

/// Writes the `by` key of `e` into `out` (cleared first).
fn write_key(by: CountBy, e: &DnsEvent, out: &mut String) {
    let p = &e.who.process;
    out.clear();
    match by {
        CountBy::Comm => out.push_str(&p.comm),
        CountBy::Process => out.push_str(&p.name),
        CountBy::Pid => write!(out, "{}", p.pid).expect("writing to a String cannot fail"),
        CountBy::Cgroup => out.push_str(&e.who.cgroup),
        CountBy::Pod | CountBy::Namespace | CountBy::Workload | CountBy::Container => {
            placement_key(by, e, out)
        }
        CountBy::Qname => out.extend(e.qname.chars().map(|c| c.to_ascii_lowercase())),
        CountBy::Domain => {
            out.extend(e.qname.chars().map(|c| c.to_ascii_lowercase()));
            let domain = registered_domain(out);
            let start = out.len() - domain.len();
            out.drain(..start);
        }
        CountBy::Qtype => write!(out, "{}", e.qtype).expect("writing to a String cannot fail"),
        CountBy::Rcode => match (e.kind, e.rcode) {
            (Kind::Response, Some(rcode)) => {
                write!(out, "{rcode}").expect("writing to a String cannot fail")
            }
            _ => out.push_str(TIMEOUT),
        },
        CountBy::Server => {
            // A response comes from the server; a query (answered or not) goes to it.
            let server = if e.kind == Kind::Response {
                e.src
            } else {
                e.dst
            };
            write!(out, "{server}").expect("writing to a String cannot fail")
        }
    }
}

/// One row of an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRow {
    /// One value per key, in the order of the keys.
    pub key: Vec<String>,
    /// The process name, for rows keyed by pid (the latest seen).
    pub name: Option<String>,
    pub queries: u64,
}

/// Counts of the current interval.
#[derive(Debug)]
pub struct Counter {
    by: Vec<CountBy>,
    at: CountedAt,
    capacity: usize,
    /// Key -> (queries, process name for pid keys).
    counts: HashMap<Vec<String>, (u64, Option<String>)>,
    folded: u64,
    /// Reused for the key of the event being counted, so that counting a known key allocates
    /// nothing.
    key: Vec<String>,
    /// The key of the `(other)` row.
    other: Vec<String>,
}

impl Counter {
    /// Counts by the keys of `by` (at least one), in their order.
    pub fn new(by: Vec<CountBy>, at: CountedAt, capacity: usize) -> Self {
        assert!(!by.is_empty(), "counting needs a key");
        Counter {
            key: vec![String::new(); by.len()],
            other: vec![OTHER.to_string(); by.len()],
            by,
            at,
            capacity: capacity.max(1),
            counts: HashMap::new(),
            folded: 0,
        }
    }

    pub fn by(&self) -> &[CountBy] {
        &self.by
    }

    /// Counts `event` if it stands for a query sent by a client at this counter's moment: the
    /// query itself, or its paired response or timeout. Returns whether it counted.
    pub fn event(&mut self, event: &DnsEvent) -> bool {
        let counted = match (self.at, event.kind) {
            (CountedAt::Query, Kind::Query) | (CountedAt::Answer, Kind::Unanswered) => true,
            // An unpaired response is a late one (its query already timed out) or one whose
            // query came before the capture: neither is a query of its own.
            (CountedAt::Answer, Kind::Response) => event.latency_us.is_some(),
            _ => false,
        };
        if !counted || event.role != Role::Client {
            return false;
        }
        for (&by, part) in self.by.iter().zip(&mut self.key) {
            write_key(by, event, part);
        }
        let key = if self.counts.contains_key(&self.key) || self.counts.len() < self.capacity {
            &self.key
        } else {
            self.folded += 1;
            &self.other
        };
        let entry = match self.counts.get_mut(key) {
            Some(entry) => entry,
            None => self.counts.entry(key.clone()).or_default(),
        };
        entry.0 += 1;
        if self.by.contains(&CountBy::Pid) {
            let name = event.who.process.name.as_str();
            if entry.1.as_deref() != Some(name) {
                entry.1 = Some(name.to_owned());
            }
        }
        true
    }

    /// The rows of the interval, most queries first (ties by key), and starts a new interval.
    pub fn take(&mut self) -> Vec<CountRow> {
        let mut rows: Vec<CountRow> = self
            .counts
            .drain()
            .map(|(key, (queries, name))| CountRow { key, name, queries })
            .collect();
        rows.sort_by(|a, b| b.queries.cmp(&a.queries).then_with(|| a.key.cmp(&b.key)));
        rows
    }

    /// Queries folded into `(other)` since the start, because the key table was full.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample;

    fn query(pid: u32, comm: &str, name: &str) -> DnsEvent {
        let mut q = sample::query(1, "example.com", 1, 0);
        q.who.process.pid = pid;
        q.who.process.comm = comm.into();
        q.who.process.name = name.into();
        q.who.cgroup = format!("/cg{pid}").into();
        q
    }

    #[test]
    fn counts_client_queries_sorted_by_count() {
        let mut c = Counter::new(vec![CountBy::Process], CountedAt::Query, 100);
        for e in [
            query(1, "t1", "curl"),
            query(2, "t2", "dig"),
            query(3, "t3", "dig"),
        ] {
            assert!(c.event(&e));
        }
        let q = query(1, "t1", "curl");
        assert!(!c.event(&sample::response(&q, 0, &[], 1)));
        let mut server = q.clone();
        server.role = Role::Server;
        assert!(!c.event(&server));
        let rows = c.take();
        assert_eq!(
            rows,
            vec![
                CountRow {
                    key: vec!["dig".into()],
                    name: None,
                    queries: 2
                },
                CountRow {
                    key: vec!["curl".into()],
                    name: None,
                    queries: 1
                },
            ]
        );
        assert!(c.take().is_empty(), "take starts a new interval");
    }

    #[test]
    fn keys_by_comm_pid_and_cgroup() {
        let e = query(42, "worker", "app");
        let key = |by| {
            let mut c = Counter::new(vec![by], CountedAt::Query, 10);
            c.event(&e);
            c.take().remove(0)
        };
        assert_eq!(key(CountBy::Comm).key, ["worker"]);
        let pid = key(CountBy::Pid);
        assert_eq!(
            (&pid.key[..], pid.name.as_deref()),
            (&["42".to_string()][..], Some("app"))
        );
        assert_eq!(key(CountBy::Cgroup).key, ["/cg42"]);

        // A pid row names the process last seen with that pid (it may have exec'd).
        let mut c = Counter::new(vec![CountBy::Pid], CountedAt::Query, 10);
        c.event(&e);
        c.event(&query(42, "worker", "app2"));
        let row = c.take().remove(0);
        assert_eq!((row.queries, row.name.as_deref()), (2, Some("app2")));
    }

    #[test]
    fn keys_by_pod_namespace_workload_and_container() {
        use crate::container::Runtime;
        use crate::model::Pod;
        use crate::pods::{PodInfo, Workload};
        use std::sync::Arc;

        let id = "0123456789abcdef".repeat(4);
        let uid = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let info = |workload: Option<(&str, &str)>| {
            Arc::new(PodInfo {
                uid: uid.to_string(),
                name: "web-7d4b9f-xk2p1".to_string(),
                namespace: "shop".to_string(),
                node: None,
                pod_ip: None,
                service_account: None,
                labels: Default::default(),
                workload: workload.map(|(kind, name)| Workload {
                    kind: kind.to_string(),
                    name: name.to_string(),
                }),
                containers: Default::default(),
            })
        };
        let event = |host, container: Option<Option<&str>>, pod: Option<Option<Arc<PodInfo>>>| {
            let mut e = query(1, "t", "p");
            e.who.host = host;
            e.who.container = container.map(|name| Container {
                id: Arc::from(id.as_str()),
                runtime: Runtime::Containerd,
                name: name.map(str::to_string),
            });
            e.who.pod = pod.map(|info| Pod {
                uid: Arc::from(uid),
                info,
            });
            e
        };
        let deployment = Some(info(Some(("Deployment", "web"))));
        let events = [
            event(Some(false), Some(Some("app")), Some(deployment.clone())),
            event(Some(false), Some(None), Some(Some(info(None)))),
            event(Some(false), Some(None), Some(None)),
            event(Some(false), Some(None), None),
            event(Some(false), None, Some(None)),
            event(Some(true), None, None),
            event(None, None, None),
        ];
        let keys = |by| {
            events
                .iter()
                .map(|e| {
                    let mut key = String::new();
                    placement_key(by, e, &mut key);
                    key
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(CountBy::Pod),
            [
                "shop/web-7d4b9f-xk2p1",
                "shop/web-7d4b9f-xk2p1",
                uid,
                NONE,
                uid,
                HOST,
                UNKNOWN
            ]
        );
        assert_eq!(
            keys(CountBy::Namespace),
            ["shop", "shop", UNKNOWN, NONE, UNKNOWN, HOST, UNKNOWN]
        );
        assert_eq!(
            keys(CountBy::Workload),
            [
                "shop/Deployment/web",
                "shop/Pod/web-7d4b9f-xk2p1",
                UNKNOWN,
                NONE,
                UNKNOWN,
                HOST,
                UNKNOWN
            ]
        );
        assert_eq!(
            keys(CountBy::Container),
            [
                "shop/web-7d4b9f-xk2p1/app",
                "0123456789ab",
                "0123456789ab",
                "0123456789ab",
                NONE,
                HOST,
                UNKNOWN
            ]
        );
        let mut c = Counter::new(vec![CountBy::Workload], CountedAt::Query, 10);
        for e in &events {
            assert!(c.event(e));
        }
        let rows = c.take();
        assert_eq!((rows[0].key[0].as_str(), rows[0].queries), (UNKNOWN, 3));
    }

    /// A client's query of `qname` (type `qtype`) to `server`, and its response with `rcode`
    /// (paired: it has a latency).
    fn exchange(qname: &str, qtype: u16, server: &str, rcode: u16) -> (DnsEvent, DnsEvent) {
        let mut q = sample::query(1, qname, qtype, 0);
        q.dst = server.parse().unwrap();
        let mut r = sample::response(&q, rcode, &[], 1_000);
        r.latency_us = Some(1);
        (q, r)
    }

    fn keys(rows: &[CountRow]) -> Vec<(Vec<&str>, u64)> {
        rows.iter()
            .map(|r| (r.key.iter().map(String::as_str).collect(), r.queries))
            .collect()
    }

    #[test]
    fn composite_keys_of_qname_and_rcode_count_each_query_at_its_answer() {
        let by = vec![CountBy::Qname, CountBy::Rcode];
        let at = CountedAt::needed(&by, false);
        assert_eq!(at, CountedAt::Answer);
        let mut c = Counter::new(by, at, 100);
        let (q, ok) = exchange("WWW.Example.com", 1, "10.1.1.1:53", 0);
        let (_, nx) = exchange("nope.example.com", 1, "10.1.1.1:53", 3);
        assert!(!c.event(&q), "a query waits for its answer");
        for r in [&ok, &ok, &nx] {
            assert!(c.event(r));
        }
        let timeout = DnsEvent {
            kind: Kind::Unanswered,
            ..q.clone()
        };
        assert!(c.event(&timeout));
        let late = DnsEvent {
            latency_us: None,
            ..ok.clone()
        };
        assert!(!c.event(&late), "a late response's query timed out already");
        let served = DnsEvent {
            role: Role::Server,
            ..ok.clone()
        };
        assert!(!c.event(&served));
        assert_eq!(
            keys(&c.take()),
            [
                (vec!["www.example.com", "NOERROR"], 2),
                (vec!["nope.example.com", "NXDOMAIN"], 1),
                (vec!["www.example.com", TIMEOUT], 1),
            ]
        );
        // Filtering by rcode needs the answer too; other keys count the query when sent.
        assert_eq!(CountedAt::needed(&[CountBy::Pod], true), CountedAt::Answer);
        assert_eq!(CountedAt::needed(&[CountBy::Pod], false), CountedAt::Query);
        let mut c = Counter::new(vec![CountBy::Qname], CountedAt::Query, 100);
        assert!(c.event(&q) && !c.event(&ok) && !c.event(&timeout));
    }

    #[test]
    fn keys_by_domain_qtype_and_server_in_the_order_given() {
        let (q, r) = exchange("API.eu.Example.co.uk", 28, "[fd00::1]:5353", 0);
        let by = vec![CountBy::Server, CountBy::Domain, CountBy::Qtype];
        let mut queries = Counter::new(by.clone(), CountedAt::Query, 10);
        let mut answers = Counter::new(by, CountedAt::Answer, 10);
        assert!(queries.event(&q) && answers.event(&r));
        let want = [(vec!["[fd00::1]:5353", "example.co.uk", "AAAA"], 1)];
        assert_eq!(keys(&queries.take()), want);
        assert_eq!(
            keys(&answers.take()),
            want,
            "the server is the response's sender"
        );
        let (q, _) = exchange("4.3.2.1.in-addr.arpa", 65280, "10.1.1.1:53", 0);
        let mut c = Counter::new(vec![CountBy::Domain, CountBy::Qtype], CountedAt::Query, 10);
        c.event(&q);
        assert_eq!(keys(&c.take()), [(vec!["in-addr.arpa", "TYPE65280"], 1)]);
    }

    #[test]
    fn keys_past_capacity_fold_into_other() {
        let mut c = Counter::new(vec![CountBy::Pid, CountBy::Qname], CountedAt::Query, 2);
        for pid in [1, 2, 3, 4, 1] {
            c.event(&query(pid, "t", "p"));
        }
        let rows = c.take();
        let other = rows.iter().find(|r| r.key == [OTHER, OTHER]).unwrap();
        assert_eq!(other.queries, 2);
        let one = rows.iter().find(|r| r.key[0] == "1").unwrap();
        assert_eq!((one.key[1].as_str(), one.queries), ("example.com", 2));
        assert_eq!(c.folded(), 2);
        assert_eq!(rows.len(), 3, "the table holds 2 keys and (other)");
    }
}
