//! The model's tests: plain events, the clock passed in.

use super::*;
use crate::sink::top::controls::{Command, Overlay};
use dnslens_detect::Evidence;
use dnslens_lens::lookup::libc::Source;
use dnslens_lens::lookup::Outcome;
use dnslens_lens::model::{sample, Pod};
use dnslens_lens::pods::PodInfo;

pub const S: u64 = NS_PER_S;
/// A start well past zero, as CLOCK_MONOTONIC is.
pub const T0: u64 = 1_000 * S;

/// A client query of `pid`/`name` in pod `ns/pod` (or on the host with `pod` empty).
pub fn query(pid: u32, name: &str, pod: &str, qname: &str, at: u64) -> DnsEvent {
    let mut q = sample::query(1, qname, 1, at);
    q.who.process.pid = pid;
    q.who.process.name = name.into();
    q.who.process.exe = Some(Arc::from(format!("/usr/bin/{name}")));
    match pod.split_once('/') {
        Some((ns, name)) => {
            q.who.host = Some(false);
            q.who.pod = Some(Pod {
                uid: Arc::from(format!("uid-{name}")),
                info: Some(Arc::new(PodInfo {
                    uid: format!("uid-{name}"),
                    name: name.to_string(),
                    namespace: ns.to_string(),
                    node: None,
                    pod_ip: None,
                    service_account: None,
                    labels: Default::default(),
                    workload: None,
                    containers: Default::default(),
                })),
            });
        }
        None => q.who.host = Some(true),
    }
    q
}

pub fn response(q: &DnsEvent, rcode: Rcode, latency_us: u64) -> DnsEvent {
    let mut r = sample::response(q, rcode.0, &[], q.mono_ns + latency_us * 1000);
    r.latency_us = Some(latency_us);
    r
}

pub fn unanswered(q: &DnsEvent) -> DnsEvent {
    DnsEvent {
        kind: Kind::Unanswered,
        timeout_ms: Some(5000),
        ..q.clone()
    }
}

/// A lookup of `q`'s process and name that sent `queries` (none: a libc call answered alone)
/// and took `latency_us`.
pub fn lookup(q: &DnsEvent, queries: u32, latency_us: u64) -> Lookup {
    Lookup {
        answer_name: Some(q.qname.clone()),
        latency_us,
        queries,
        source: match queries {
            0 => Source::Libc,
            _ => Source::Dns,
        },
        ..sample::lookup(q, Outcome::Answered)
    }
}

pub fn alert(q: &DnsEvent, detector: Detector, summary: &str) -> Alert {
    Alert {
        detector,
        severity: Severity::High,
        summary: summary.to_string(),
        count: 1,
        window_s: 60,
        evidence: Evidence::default(),
        time_ns: q.time_ns,
        who: q.who.clone(),
    }
}

fn snap(model: &Model, now: u64, controls: &Controls) -> Snapshot {
    model.snapshot(now, controls)
}

fn row<'a>(s: &'a Snapshot, key: &str) -> &'a RowStats {
    s.rows
        .iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("no row {key} in {:?}", s.rows))
}

#[test]
fn rate_is_over_the_window_or_since_the_start() {
    let mut m = Model::new(T0);
    // 20 queries a second for 15 s.
    for i in 0..300 {
        m.event(&query(
            7,
            "getent",
            "shop/web",
            "a.example",
            T0 + i * S / 20,
        ));
    }
    let c = Controls::new(Grouping::Pod);
    // After 2 s: 40 queries over 2 s.
    let mut early = Model::new(T0);
    for i in 0..40 {
        early.event(&query(
            7,
            "getent",
            "shop/web",
            "a.example",
            T0 + i * S / 20,
        ));
    }
    assert_eq!(row(&snap(&early, T0 + 2 * S, &c), "shop/web").qps, 20.0);
    // At T0 + 15 s the window is seconds 1006..=1015 (of which 1015 not yet begun):
    // 9 full seconds, 180 queries.
    let s = snap(&m, T0 + 15 * S, &c);
    assert_eq!(row(&s, "shop/web").qps, 20.0);
    assert_eq!(s.qps, 20.0);
    assert_eq!(row(&s, "shop/web").total, 300);
    // Half a second later, half the last second is in.
    assert_eq!(
        row(&snap(&m, T0 + 15 * S + S / 2, &c), "shop/web").qps,
        180.0 / 9.5
    );
    // Long after, nothing in the window; the total stays.
    let quiet = snap(&m, T0 + 60 * S, &c);
    assert_eq!(
        (row(&quiet, "shop/web").qps, row(&quiet, "shop/web").total),
        (0.0, 300)
    );
}

#[test]
fn rcode_percentages_and_unanswered_in_the_window() {
    let mut m = Model::new(T0);
    let q = query(7, "dig", "shop/web", "x.example", T0);
    m.event(&q);
    for (i, rcode) in [
        Rcode::NOERROR,
        Rcode::NXDOMAIN,
        Rcode::NXDOMAIN,
        Rcode::SERVFAIL,
    ]
    .into_iter()
    .enumerate()
    {
        m.event(&response(&q, rcode, 100 + i as u64));
    }
    m.event(&unanswered(&q));
    let mut server = response(&q, Rcode::NXDOMAIN, 5);
    server.role = Role::Server;
    m.event(&server);
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    let r = row(&s, "shop/web");
    assert_eq!(
        (r.nxdomain_pct, r.servfail_pct, r.unanswered),
        (Some(50.0), Some(25.0), 1)
    );
    assert_eq!(s.events, 6, "the server's side is not counted");
    // A row with queries only has no percentages.
    let mut m = Model::new(T0);
    m.event(&q);
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    assert_eq!(row(&s, "shop/web").nxdomain_pct, None);
    // An unanswered query reported after its second left the ring is not in the window.
    let mut m = Model::new(T0);
    m.event(&query(7, "dig", "shop/web", "x.example", T0 + 20 * S));
    m.event(&unanswered(&q));
    let s = snap(&m, T0 + 20 * S, &Controls::new(Grouping::Pod));
    assert_eq!(row(&s, "shop/web").unanswered, 0);
}

#[test]
fn percentiles_come_from_the_histogram() {
    // Buckets: below 16 us, then [2^k, 1.5*2^k) and [1.5*2^k, 2^(k+1)).
    assert_eq!(
        (bucket(0), bucket(15), bucket(16), bucket(23)),
        (0, 0, 1, 1)
    );
    assert_eq!((bucket(24), bucket(32), bucket(1_000)), (2, 3, 12));
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    for us in [16, 100, 999, 1_000, 54_321, 1 << 22] {
        let i = bucket(us);
        assert!(bucket_floor(i) <= us && us < bucket_floor(i + 1), "{us}");
    }
    let mut m = Model::new(T0);
    let q = query(7, "dig", "shop/web", "x.example", T0);
    // 90 responses at 100 us, 9 at 2 ms, 1 at 80 ms.
    for (n, us) in [(90, 100), (9, 2_000), (1, 80_000)] {
        for _ in 0..n {
            m.event(&response(&q, Rcode::NOERROR, us));
        }
    }
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    let r = row(&s, "shop/web");
    // 100 us is in [96, 128): reported 112; 2 ms in [1536, 2048): 1792.
    assert_eq!((r.p50_us, r.p99_us), (Some(112), Some(1_792)));
    m.event(&response(&q, Rcode::NOERROR, 80_000));
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    // 2 of 101 at 80 ms: the 100th is one of them, in [65536, 98304).
    assert_eq!(row(&s, "shop/web").p99_us, Some(81_920));
    for (true_us, got) in [(100, 112), (2_000, 1_792), (80_000, 81_920)] {
        assert!((got as f64 - true_us as f64).abs() / (true_us as f64) < 0.25);
    }
}

#[test]
fn grouping_switches_between_pods_and_processes() {
    let mut m = Model::new(T0);
    m.event(&query(7, "getent", "shop/web", "a.example", T0));
    m.event(&query(8, "python3", "shop/web", "b.example", T0));
    m.event(&query(9, "dnsmasq", "", "c.example", T0));
    let mut c = Controls::new(Grouping::Pod);
    c.sort.column = Column::Name;
    c.sort.descending = false;
    let keys = |s: &Snapshot| s.rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    let s = snap(&m, T0 + S, &c);
    assert_eq!(keys(&s), ["(host) dnsmasq", "shop/web"]);
    assert_eq!(row(&s, "shop/web").total, 2);
    assert!(c.apply(Command::Group, &s));
    let s = snap(&m, T0 + S, &c);
    assert_eq!(s.grouping, Grouping::Process);
    assert_eq!(keys(&s), ["9 dnsmasq", "7 getent", "8 python3"]);
    let getent = row(&s, "7 getent");
    assert_eq!(
        (getent.pid, getent.name.as_str(), getent.place.as_str()),
        (Some(7), "getent", "shop/web")
    );
    assert_eq!(getent.exe.as_deref(), Some("/usr/bin/getent"));
}

#[test]
fn sort_by_each_column_and_reverse() {
    let mut m = Model::new(T0);
    // a: 3 queries, all NXDOMAIN at 1 ms; b: 1 query, NOERROR at 100 us; c: 2 queries,
    // one unanswered.
    for (pod, n, rcode, us) in [
        ("ns/a", 3, Rcode::NXDOMAIN, 1_000),
        ("ns/b", 1, Rcode::NOERROR, 100),
    ] {
        for _ in 0..n {
            let q = query(1, "x", pod, "q.example", T0);
            m.event(&q);
            m.event(&response(&q, rcode, us));
        }
    }
    let c_query = query(1, "x", "ns/c", "q.example", T0);
    m.event(&c_query);
    m.event(&c_query);
    m.event(&unanswered(&c_query));
    // Lookups: a one of 3 queries at 1 ms; b two of 2 at 5 ms; c one from libc at 50 ms.
    for (pod, n, queries, us) in [
        ("ns/a", 1, 3, 1_000),
        ("ns/b", 2, 2, 5_000),
        ("ns/c", 1, 0, 50_000),
    ] {
        for _ in 0..n {
            m.lookup(
                &lookup(&query(1, "x", pod, "q.example", T0), queries, us),
                T0,
            );
        }
    }
    let mut c = Controls::new(Grouping::Pod);
    let shown = snap(&m, T0 + S, &c);
    let order = |c: &Controls| {
        snap(&m, T0 + S, c)
            .rows
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(order(&c), "ns/a ns/c ns/b", "q/s, largest first");
    assert!(c.apply(Command::Reverse, &shown));
    assert_eq!(order(&c), "ns/b ns/c ns/a");
    let mut seen = Vec::new();
    for _ in 0..Column::ALL.len() {
        assert!(c.apply(Command::SortNext, &shown));
        seen.push((c.sort.column, c.sort.descending, order(&c)));
    }
    assert_eq!(
        seen,
        [
            (Column::Nxdomain, true, "ns/a ns/b ns/c".into()),
            (Column::Servfail, true, "ns/a ns/b ns/c".into()),
            (Column::Unanswered, true, "ns/c ns/a ns/b".into()),
            (Column::P50, true, "ns/a ns/b ns/c".into()),
            (Column::P99, true, "ns/a ns/b ns/c".into()),
            (Column::Lps, true, "ns/b ns/a ns/c".into()),
            (Column::LookupP99, true, "ns/c ns/b ns/a".into()),
            (Column::QueriesPerLookup, true, "ns/a ns/b ns/c".into()),
            (Column::Total, true, "ns/a ns/c ns/b".into()),
            (Column::Name, false, "ns/a ns/b ns/c".into()),
            (Column::Qps, true, "ns/a ns/c ns/b".into()),
        ]
    );
    assert!(c.apply(Command::SortPrev, &shown));
    assert_eq!(c.sort.column, Column::Name);
    // A narrower view shows fewer columns: the keys move over those, and from one gone to
    // the first.
    c.columns = vec![Column::Name, Column::Qps, Column::P99, Column::Lps];
    for (command, want) in [
        (Command::SortPrev, Column::Lps),
        (Command::SortPrev, Column::P99),
        (Command::SortNext, Column::Lps),
        (Command::SortNext, Column::Name),
    ] {
        assert!(c.apply(command, &shown));
        assert_eq!(c.sort.column, want, "{command:?}");
    }
    c.sort.column = Column::Total;
    assert!(c.apply(Command::SortNext, &shown));
    assert_eq!(c.sort.column, Column::Name);
}

/// Issue 16: lookups per second over the window, their p99 from the same kind of histogram
/// as the responses', and queries per lookup, a libc lookup counting with none.
#[test]
fn lookups_per_second_their_p99_and_queries_per_lookup() {
    let mut m = Model::new(T0);
    let web = query(7, "getent", "shop/web", "a.example", T0);
    m.event(&web);
    // 20 lookups over 2 s: 17 of one query at 1 ms, 2 of three (a walk) at 2 ms and one
    // from /etc/hosts (libc, no query) at 80 ms.
    for i in 0..20u64 {
        let (queries, us) = match i {
            0..17 => (1, 1_000),
            17..19 => (3, 2_000),
            _ => (0, 80_000),
        };
        m.lookup(&lookup(&web, queries, us), T0 + i * S / 10);
    }
    // A process that only ever asked libc: a row without queries.
    let hosts = query(9, "ping", "shop/hosts", "h.example", T0);
    m.lookup(&lookup(&hosts, 0, 10), T0);
    for grouping in [Grouping::Pod, Grouping::Process] {
        let s = snap(&m, T0 + 2 * S, &Controls::new(grouping));
        let key = match grouping {
            Grouping::Pod => "shop/web",
            Grouping::Process => "7 getent",
        };
        let r = row(&s, key);
        assert_eq!(r.lps, 10.0, "{grouping:?}");
        // 23 queries in 20 lookups; the 20th latency is the 80 ms one, in [65536, 98304).
        assert_eq!(r.queries_per_lookup, Some(23.0 / 20.0));
        assert_eq!(r.lookup_p99_us, Some(81_920));
        assert_eq!((r.qps, r.p99_us), (0.5, None), "messages apart");
    }
    let s = snap(&m, T0 + 2 * S, &Controls::new(Grouping::Pod));
    let h = row(&s, "shop/hosts");
    assert_eq!((h.qps, h.lps, h.queries_per_lookup), (0.0, 0.5, Some(0.0)));
    // Below 16 us: reported 8.
    assert_eq!((h.lookup_p99_us, h.total), (Some(8), 0));
    // Out of the window: no rate, no figures.
    let s = snap(&m, T0 + 60 * S, &Controls::new(Grouping::Pod));
    let r = row(&s, "shop/web");
    assert_eq!(
        (r.lps, r.lookup_p99_us, r.queries_per_lookup),
        (0.0, None, None)
    );
}

#[test]
fn selection_follows_its_row_and_moves_with_keys() {
    let mut m = Model::new(T0);
    for (pod, n) in [("ns/a", 3), ("ns/b", 2), ("ns/c", 1)] {
        for _ in 0..n {
            m.event(&query(1, "x", pod, "q.example", T0));
        }
    }
    let mut c = Controls::new(Grouping::Pod);
    let s = snap(&m, T0 + S, &c);
    assert_eq!(s.selected, Some(0), "the first row until one is chosen");
    assert!(c.apply(Command::Down, &s));
    assert!(c.apply(Command::Down, &s));
    assert!(c.apply(Command::Down, &s), "stays on the last");
    assert_eq!(c.selected(), Some("ns/c"));
    assert!(c.apply(Command::Reverse, &s));
    assert_eq!(snap(&m, T0 + S, &c).selected, Some(0), "ns/c is now first");
    assert!(c.apply(Command::First, &s));
    assert_eq!(c.selected(), Some("ns/a"));
    assert!(c.apply(Command::PageDown, &s));
    assert_eq!(c.selected(), Some("ns/c"));
    assert!(!c.apply(Command::Quit, &s));
}

/// Issue 14: sorting kept the selection by key only once a row was chosen; the first row,
/// selected by default, lost it to whichever row the new order put first.
#[test]
fn the_selected_row_stays_selected_across_a_sort() {
    let mut m = Model::new(T0);
    for (pod, n) in [("ns/a", 1), ("ns/b", 2), ("ns/c", 3)] {
        for _ in 0..n {
            m.event(&query(1, "x", pod, "q.example", T0));
        }
    }
    let mut c = Controls::new(Grouping::Pod);
    let selected = |c: &Controls| {
        let s = snap(&m, T0 + S, c);
        (s.rows[s.selected.unwrap()].key.clone(), s)
    };
    let (key, s) = selected(&c);
    assert_eq!(
        (key.as_str(), s.selected),
        ("ns/c", Some(0)),
        "busiest first"
    );
    assert!(c.apply(Command::SortPrev, &s));
    let (key, s) = selected(&c);
    assert_eq!(
        (key.as_str(), s.selected),
        ("ns/c", Some(2)),
        "by name: a b c"
    );
    assert!(c.apply(Command::Up, &s));
    assert!(c.apply(Command::Reverse, &selected(&c).1));
    let (key, s) = selected(&c);
    assert_eq!((key.as_str(), s.selected), ("ns/b", Some(1)), "c b a");
}

#[test]
fn help_and_alerts_cover_the_table_and_the_arrows_scroll_the_alerts() {
    let mut m = Model::new(T0);
    let q = query(1, "x", "ns/web", "q.example", T0);
    m.event(&q);
    m.event(&query(2, "y", "ns/db", "q.example", T0));
    for i in 0..3 {
        m.alert(&alert(&q, Detector::Dga, &format!("alert {i}")));
    }
    let mut c = Controls::new(Grouping::Pod);
    let s = snap(&m, T0 + S, &c);
    assert!(c.apply(Command::Help, &s));
    assert_eq!(c.overlay, Overlay::Help);
    assert!(c.apply(Command::Help, &s));
    assert_eq!(c.overlay, Overlay::None, "? again closes");
    assert!(c.apply(Command::Alerts, &s));
    for (command, first) in [
        (Command::Down, 1),
        (Command::Down, 2),
        (Command::Down, 2),
        (Command::Up, 1),
        (Command::Last, 2),
        (Command::PageUp, 0),
    ] {
        assert!(c.apply(command, &s));
        assert_eq!(c.overlay, Overlay::Alerts { first }, "{command:?}");
    }
    let first_row = Some(s.rows[0].key.as_str());
    assert_eq!(c.selected(), first_row, "the arrows left the rows alone");
    assert!(c.apply(Command::Close, &s));
    assert_eq!(c.overlay, Overlay::None);
    assert!(c.apply(Command::Down, &s));
    assert_eq!(c.selected(), Some(s.rows[1].key.as_str()));
    assert!(!c.apply(Command::Quit, &s));
}

#[test]
fn rows_are_bounded_and_evictions_counted() {
    let mut m = Model::with_capacity(T0, 3);
    for pod in ["ns/a", "ns/b", "ns/c"] {
        m.event(&query(1, "x", pod, "q.example", T0));
    }
    // a is used again, so b is the least recent when d comes.
    m.event(&query(1, "x", "ns/a", "q.example", T0));
    m.event(&query(1, "x", "ns/d", "q.example", T0));
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    let mut keys: Vec<&str> = s.rows.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["ns/a", "ns/c", "ns/d"]);
    assert_eq!(s.evicted, 1);
}

#[test]
fn top_domains_of_the_selected_row() {
    let mut m = Model::new(T0);
    for (name, n) in [("a.example", 5), ("b.example", 3), ("c.example", 1)] {
        for _ in 0..n {
            m.event(&query(1, "x", "ns/web", name, T0));
        }
    }
    for i in 0..(DOMAINS_SHOWN as u64 + 2) {
        m.event(&query(1, "x", "ns/web", &format!("rare{i}.example"), T0));
    }
    m.event(&query(2, "y", "ns/other", "z.example", T0));
    let s = snap(&m, T0 + S, &Controls::new(Grouping::Pod));
    assert_eq!(s.rows[s.selected.unwrap()].key, "ns/web");
    let top: Vec<(&str, u64)> = s.domains.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    assert_eq!(
        top,
        [
            ("a.example", 5),
            ("b.example", 3),
            ("c.example", 1),
            ("rare0.example", 1),
            ("rare1.example", 1)
        ]
    );
    assert_eq!(s.domains_other, 5);
}

#[test]
fn recent_alerts_are_a_ring_marking_the_selected_row() {
    let mut m = Model::new(T0);
    let web = query(1, "x", "ns/web", "q.example", T0);
    let db = query(2, "y", "ns/db", "q.example", T0);
    m.event(&web);
    m.event(&web);
    m.event(&db);
    for i in 0..MAX_ALERTS + 3 {
        let q = if i % 2 == 0 { &web } else { &db };
        m.alert(&alert(q, Detector::Dga, &format!("alert {i}")));
    }
    let c = Controls::new(Grouping::Pod);
    let s = snap(&m, T0 + S, &c);
    assert_eq!(
        (s.alerts.len(), s.alerts_total),
        (MAX_ALERTS, MAX_ALERTS as u64 + 3)
    );
    let newest = &s.alerts[0];
    let last = MAX_ALERTS + 2;
    assert_eq!(newest.summary, format!("alert {last}"));
    assert_eq!((newest.subject.as_str(), newest.selected), ("ns/web", true));
    assert_eq!(
        (s.alerts[1].subject.as_str(), s.alerts[1].selected),
        ("ns/db", false)
    );
    assert_eq!(s.alerts.last().unwrap().summary, "alert 3");
    let mut c = c;
    c.apply(Command::Group, &s);
    let s = snap(&m, T0 + S, &c);
    assert_eq!(s.alerts[0].subject, "x[1]");
    assert!(
        s.alerts[0].selected,
        "process x is the busiest, so selected"
    );
}
