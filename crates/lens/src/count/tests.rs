//! The counter, with plain events and lookups.

use super::*;
use crate::lookup::libc::Source;
use crate::lookup::Outcome;
use crate::model::sample;
use strum::VariantArray;

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
                count: 2
            },
            CountRow {
                key: vec!["curl".into()],
                name: None,
                count: 1
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
    assert_eq!((row.count, row.name.as_deref()), (2, Some("app2")));
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
                placement_key(by, &e.who, &mut key);
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
    assert_eq!((rows[0].key[0].as_str(), rows[0].count), (UNKNOWN, 3));
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
        .map(|r| (r.key.iter().map(String::as_str).collect(), r.count))
        .collect()
}

#[test]
fn composite_keys_of_qname_and_rcode_count_each_query_at_its_answer() {
    let by = vec![CountBy::Qname, CountBy::Rcode];
    let at = CountedAt::needed(&by, false, false);
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
    assert_eq!(
        CountedAt::needed(&[CountBy::Pod], true, false),
        CountedAt::Answer
    );
    assert_eq!(
        CountedAt::needed(&[CountBy::Pod], false, false),
        CountedAt::Query
    );
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
    assert_eq!(other.count, 2);
    let one = rows.iter().find(|r| r.key[0] == "1").unwrap();
    assert_eq!((one.key[1].as_str(), one.count), ("example.com", 2));
    assert_eq!(c.folded(), 2);
    assert_eq!(rows.len(), 3, "the table holds 2 keys and (other)");
}

/// A lookup of `name` by pid `pid` (process `process`) that ended with `outcome`.
fn lookup(pid: u32, process: &str, name: &str, outcome: Outcome, source: Source) -> Lookup {
    Lookup {
        name: name.to_string(),
        queries: 2,
        source,
        ..sample::lookup(&query(pid, "t", process), outcome)
    }
}

/// Issue 16 item 4: `count --lookups --by` counts lookups, one each, by who asked and by
/// the name asked, its domain, the outcome and the source; messages are not counted then.
#[test]
fn counts_lookups_by_who_name_outcome_and_source() {
    let by = vec![CountBy::Process, CountBy::Name, CountBy::Outcome];
    let at = CountedAt::needed(&by, true, true);
    assert_eq!(at, CountedAt::Lookup);
    let mut c = Counter::new(by, at, 100);
    let nx = lookup(
        1,
        "curl",
        "Nope.example.com",
        Outcome::Nxdomain,
        Source::Dns,
    );
    for l in [
        lookup(1, "curl", "API.example.com", Outcome::Answered, Source::Dns),
        lookup(
            2,
            "curl",
            "api.example.com",
            Outcome::Answered,
            Source::Libc,
        ),
        nx.clone(),
    ] {
        assert!(c.lookup(&l));
    }
    assert!(!c.event(&query(1, "t", "curl")), "messages are not lookups");
    assert_eq!(
        keys(&c.take()),
        [
            (vec!["curl", "api.example.com", "answered"], 2),
            (vec!["curl", "nope.example.com", "nxdomain"], 1),
        ]
    );
    let mut c = Counter::new(
        vec![CountBy::Pid, CountBy::Domain, CountBy::Source],
        CountedAt::Lookup,
        100,
    );
    assert!(c.lookup(&lookup(
        7,
        "app",
        "a.b.Example.co.uk",
        Outcome::Timeout,
        Source::LibcDns
    )));
    let row = c.take().remove(0);
    assert_eq!(
        (row.key, row.name.as_deref(), row.count),
        (
            vec!["7".to_string(), "example.co.uk".into(), "libc+dns".into()],
            Some("app"),
            1
        )
    );
    let mut queries = Counter::new(vec![CountBy::Process], CountedAt::Query, 100);
    assert!(
        !queries.lookup(&nx),
        "a counter of queries counts no lookup"
    );
}

/// Which keys apply to lookups, and which to queries: a query's type, rcode and server are
/// not a lookup's; the name asked, outcome and source are only a lookup's.
#[test]
fn keys_apply_to_lookups_or_queries() {
    let lookups: Vec<&str> = CountBy::VARIANTS
        .iter()
        .filter(|b| b.applies(CountedAt::Lookup))
        .map(|&b| b.into())
        .collect();
    assert_eq!(
        lookups,
        [
            "comm",
            "process",
            "pid",
            "cgroup",
            "pod",
            "namespace",
            "workload",
            "container",
            "name",
            "domain",
            "outcome",
            "source"
        ]
    );
    for at in [CountedAt::Query, CountedAt::Answer] {
        let queries: Vec<CountBy> = CountBy::VARIANTS
            .iter()
            .copied()
            .filter(|b| !b.applies(at))
            .collect();
        assert_eq!(queries, [CountBy::Name, CountBy::Outcome, CountBy::Source]);
    }
}

#[test]
#[should_panic(expected = "does not apply")]
fn a_counter_refuses_a_key_that_does_not_apply() {
    Counter::new(vec![CountBy::Qtype], CountedAt::Lookup, 10);
}
