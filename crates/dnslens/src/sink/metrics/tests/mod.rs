use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::sink::dnstap::DnstapStats;
use crate::sink::OutputStats;
use dnslens_detect::{Detector, Evidence, Severity};
use dnslens_lens::container::Runtime;
use dnslens_lens::lookup::Outcome;
use dnslens_lens::model::sample;
use dnslens_lens::model::Pod;
use dnslens_lens::pods::{PodInfo, Workload as PodWorkload};
use dnslens_lens::Stats;
use dnslens_probe::{KernelCounter, KernelCounters};
use names::Type;

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_label_values(mut rest: &str, labels: &mut BTreeMap<String, String>) {
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().map_or('\\', |(_, c)| c)),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
}

fn scrape(sink: &MetricsSink) -> Vec<Series> {
    let text = encode(&sink.registry(), false);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').expect("NAME VALUE");
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => {
                    let mut labels = BTreeMap::new();
                    parse_label_values(rest.strip_suffix('}').unwrap(), &mut labels);
                    (name.to_string(), labels)
                }
                None => (head.to_string(), BTreeMap::new()),
            };
            Series {
                name,
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

/// The value of the series `name` whose labels include `want`.
fn value(series: &[Series], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Series> = series
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {want:?}: {found:?}");
    found.first().map(|s| s.value)
}

fn pod(namespace: &str, name: &str, workload: Option<(&str, &str)>) -> Pod {
    let uid = format!("uid-{namespace}-{name}");
    Pod {
        uid: Arc::from(uid.as_str()),
        info: Some(Arc::new(PodInfo {
            uid,
            name: name.to_string(),
            namespace: namespace.to_string(),
            node: None,
            pod_ip: None,
            service_account: None,
            labels: BTreeMap::new(),
            workload: workload.map(|(kind, name)| PodWorkload {
                kind: kind.to_string(),
                name: name.to_string(),
            }),
            containers: BTreeMap::new(),
        })),
    }
}

fn container(name: Option<&str>) -> Container {
    Container {
        id: Arc::from("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        runtime: Runtime::Containerd,
        name: name.map(str::to_string),
    }
}

fn in_pod(mut e: DnsEvent, pod: &Pod, c: Option<&str>) -> DnsEvent {
    e.who.host = Some(false);
    e.who.pod = Some(pod.clone());
    e.who.container = Some(container(c));
    e
}

fn answered(q: &DnsEvent, rcode: u16, latency_us: u64) -> DnsEvent {
    let mut r = sample::response(q, rcode, &[], q.mono_ns + latency_us * 1000);
    r.latency_us = Some(latency_us);
    r
}

pub(super) fn status(now: Instant) -> Status {
    Status {
        now,
        kernel: None,
        ring: (0, 4096),
        lost: Vec::new(),
        output: OutputStats::default(),
        lens: Stats::default(),
        lookups: None,
        detect: None,
        cluster: None,
        dnstap: None,
    }
}

#[test]
fn labels_name_the_namespace_workload_pod_and_container() {
    let mut sink = MetricsSink::new(Limits::default());
    let web = pod("shop", "web-7d9f-abcde", Some(("Deployment", "web")));
    let q = in_pod(sample::query(1, "Api.Example.COM", 1, 0), &web, Some("app"));
    sink.event(&q).unwrap();
    sink.event(&answered(&q, 3, 2_000)).unwrap();
    let mut aaaa = in_pod(
        sample::query(2, "api.example.com", 28, 0),
        &web,
        Some("app"),
    );
    sink.event(&aaaa).unwrap();
    aaaa.kind = Kind::Unanswered;
    sink.event(&aaaa).unwrap();
    // A resolver's side of a lookup is not counted: the client side is.
    let mut served = q.clone();
    served.role = Role::Server;
    sink.event(&served).unwrap();

    let bare = pod("batch", "once", None);
    sink.event(&in_pod(sample::query(3, "x.test", 16, 0), &bare, None))
        .unwrap();
    let mut host = sample::query(4, "host.test", 1, 0);
    host.who.host = Some(true);
    sink.event(&host).unwrap();
    let mut unnamed = in_pod(sample::query(5, "u.test", 65280, 0), &web, None);
    unnamed.who.pod.as_mut().unwrap().info = None;
    sink.event(&unnamed).unwrap();
    let mut docker = sample::query(6, "d.test", 1, 0);
    docker.who.host = Some(false);
    docker.who.container = Some(container(None));
    sink.event(&docker).unwrap();
    let unknown = sample::query(7, "n.test", 1, 0);
    sink.event(&unknown).unwrap();

    let s = scrape(&sink);
    let app = [
        ("namespace", "shop"),
        ("workload", "Deployment/web"),
        ("pod", "web-7d9f-abcde"),
        ("container", "app"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = app.to_vec();
        l.extend_from_slice(extra);
        l
    };
    let q_total = "dnslens_queries_total";
    assert_eq!(value(&s, q_total, &with(&[("qtype", "A")])), Some(1.0));
    assert_eq!(value(&s, q_total, &with(&[("qtype", "AAAA")])), Some(1.0));
    let r = with(&[("qtype", "A"), ("rcode", "NXDOMAIN")]);
    assert_eq!(value(&s, "dnslens_responses_total", &r), Some(1.0));
    assert_eq!(value(&s, "dnslens_unanswered_total", &app), Some(1.0));
    let wl = [("namespace", "shop"), ("workload", "Deployment/web")];
    let lat = |le: &'static str| {
        let mut l = wl.to_vec();
        l.push(("le", le));
        value(&s, "dnslens_response_latency_seconds_bucket", &l)
    };
    assert_eq!((lat("0.001"), lat("0.0025")), (Some(0.0), Some(1.0)));
    assert_eq!(
        value(&s, "dnslens_response_latency_seconds_count", &wl),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "dnslens_response_latency_seconds_sum", &wl),
        Some(0.002)
    );

    let only = |labels: [(&'static str, &'static str); 5]| value(&s, q_total, &labels);
    assert_eq!(
        only([
            ("namespace", "batch"),
            ("workload", "Pod/once"),
            ("pod", "once"),
            ("container", "0123456789ab"),
            ("qtype", "TXT")
        ]),
        Some(1.0)
    );
    assert_eq!(
        only([
            ("namespace", "(host)"),
            ("workload", "dig"),
            ("pod", ""),
            ("container", ""),
            ("qtype", "A")
        ]),
        Some(1.0)
    );
    assert_eq!(
        only([
            ("namespace", "(unknown)"),
            ("workload", "(unknown)"),
            ("pod", "uid-shop-web-7d9f-abcde"),
            ("container", "0123456789ab"),
            ("qtype", "other")
        ]),
        Some(1.0)
    );
    assert_eq!(
        only([
            ("namespace", "(none)"),
            ("workload", "(none)"),
            ("pod", ""),
            ("container", "0123456789ab"),
            ("qtype", "A")
        ]),
        Some(1.0)
    );
    assert_eq!(
        only([
            ("namespace", "(unknown)"),
            ("workload", "(unknown)"),
            ("pod", ""),
            ("container", ""),
            ("qtype", "A")
        ]),
        Some(1.0)
    );
    let queries: f64 = s
        .iter()
        .filter(|x| x.name == q_total)
        .map(|x| x.value)
        .sum();
    assert_eq!(queries, 7.0, "the server side is not counted");

    // An alert, by the workload it is about.
    let alert = Alert {
        detector: Detector::Dga,
        severity: Severity::High,
        summary: String::new(),
        count: 1,
        window_s: 60,
        evidence: Evidence::default(),
        time_ns: q.time_ns,
        who: q.who.clone(),
    };
    sink.alert(&alert).unwrap();
    let s = scrape(&sink);
    let a = [
        ("detector", "dga"),
        ("severity", "high"),
        ("namespace", "shop"),
        ("workload", "Deployment/web"),
    ];
    assert_eq!(value(&s, "dnslens_alerts_total", &a), Some(1.0));
}

#[test]
fn top_domains_take_free_places_at_once_and_the_rest_is_other() {
    let limits = Limits {
        top_domains: 2,
        tracked_domains: 8,
        ..Limits::default()
    };
    let mut sink = MetricsSink::new(limits);
    let web = pod("shop", "web-1", Some(("Deployment", "web")));
    let ask = |sink: &mut MetricsSink, name: &str, n: usize| {
        for _ in 0..n {
            sink.event(&in_pod(sample::query(1, name, 1, 0), &web, Some("app")))
                .unwrap();
        }
    };
    ask(&mut sink, "a.example", 5);
    ask(&mut sink, "b.example", 3);
    ask(&mut sink, "c.example", 1);
    let top = "dnslens_top_domains_queries_total";
    let d = |s: &[Series], domain: &'static str| {
        value(
            s,
            top,
            &[
                ("namespace", "shop"),
                ("workload", "Deployment/web"),
                ("domain", domain),
            ],
        )
    };
    // The first two domains took the two places with their first query: no series reads
    // 0 for a name that was queried, beside an `other` that holds its queries.
    let s = scrape(&sink);
    assert_eq!(
        (d(&s, "a.example"), d(&s, "b.example")),
        (Some(5.0), Some(3.0))
    );
    assert_eq!((d(&s, "c.example"), d(&s, "other")), (None, Some(1.0)));
    sink.status(&status(Instant::now()));
    ask(&mut sink, "A.EXAMPLE", 2);
    ask(&mut sink, "c.example", 1);
    let s = scrape(&sink);
    assert_eq!(d(&s, "a.example"), Some(7.0), "names are lower-cased");
    assert_eq!((d(&s, "c.example"), d(&s, "other")), (None, Some(2.0)));
    // c, with more than twice b's queries, takes b's place: b's series leaves, c's starts
    // at 0 (its earlier queries stay in other).
    ask(&mut sink, "c.example", 5);
    sink.status(&status(Instant::now()));
    ask(&mut sink, "c.example", 1);
    let s = scrape(&sink);
    assert_eq!((d(&s, "b.example"), d(&s, "c.example")), (None, Some(1.0)));
    let sum: f64 = s.iter().filter(|x| x.name == top).map(|x| x.value).sum();
    assert_eq!(
        sum + 3.0,
        18.0,
        "every query is under one domain series, or was (b's 3)"
    );
}

/// A process name is the workload's to choose: a control character (the key's separator
/// among them) neither shifts the labels nor reaches the exposition.
#[test]
fn hostile_process_names_keep_their_label() {
    let mut sink = MetricsSink::new(Limits::default());
    let mut q = sample::query(1, "x.example", 1, 0);
    q.who.host = Some(true);
    q.who.process.name = "a\x1fb\x1b[2J".into();
    sink.event(&q).unwrap();
    let s = scrape(&sink);
    let labels = [
        ("namespace", "(host)"),
        ("workload", "a\\x1fb\\x1b[2J"),
        ("pod", ""),
        ("container", ""),
        ("qtype", "A"),
    ];
    assert_eq!(value(&s, "dnslens_queries_total", &labels), Some(1.0));
    let text = encode(&sink.registry(), true);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

/// Names made up to rotate cannot churn the top-domain series: a domain enters only with
/// more than twice the queries of the one it replaces, and new series an hour are bounded
/// for all workloads together (the refused are folded and counted).
#[test]
fn rotating_names_mint_no_series_and_new_series_are_budgeted() {
    let limits = Limits {
        top_domains: 2,
        tracked_domains: 8,
        new_domain_series: 5,
        ..Limits::default()
    };
    let mut sink = MetricsSink::new(limits);
    let ask = |sink: &mut MetricsSink, pod: &Pod, name: &str, n: usize| {
        for _ in 0..n {
            sink.event(&in_pod(sample::query(1, name, 1, 0), pod, Some("app")))
                .unwrap();
        }
    };
    let top = "dnslens_top_domains_queries_total";
    let exported = |sink: &MetricsSink| -> BTreeSet<String> {
        scrape(sink)
            .into_iter()
            .filter(|s| s.name == top)
            .map(|s| s.labels["domain"].clone())
            .filter(|d| d != OTHER)
            .collect()
    };
    let web = pod("shop", "web-1", Some(("Deployment", "web")));
    ask(&mut sink, &web, "a.example", 10);
    ask(&mut sink, &web, "b.example", 10);
    sink.status(&status(Instant::now()));
    let want: BTreeSet<String> = ["a.example", "b.example"].map(String::from).into();
    assert_eq!(exported(&sink), want);
    // Two new names, each queried more than a and b: without hysteresis they would take
    // both places, and a name made up each second would mint a series each second.
    ask(&mut sink, &web, "r1.example", 15);
    ask(&mut sink, &web, "r2.example", 15);
    sink.status(&status(Instant::now()));
    assert_eq!(exported(&sink), want, "15 queries do not displace 10");
    ask(&mut sink, &web, "hot.example", 21);
    sink.status(&status(Instant::now()));
    let now: BTreeSet<String> = exported(&sink);
    assert!(now.contains("hot.example") && now.len() == 2, "{now:?}");
    // Three more workloads with two busy domains each: 6 new series, room for 2.
    for w in 0..3 {
        let p = pod(
            "shop",
            &format!("w{w}-1"),
            Some(("Deployment", &format!("w{w}"))),
        );
        ask(&mut sink, &p, &format!("x{w}.example"), 5);
        ask(&mut sink, &p, &format!("y{w}.example"), 5);
    }
    sink.status(&status(Instant::now()));
    assert_eq!(exported(&sink).len(), 2 + 2);
    let folded = value(
        &scrape(&sink),
        "dnslens_metrics_folded_total",
        &[("table", "top_domains")],
    );
    assert_eq!(folded, Some(4.0));
}

/// The key kept from the last event is taken again only for the same placement: a pod named
/// later, another container name or another host process each get their own series.
#[test]
fn a_placement_is_keyed_again_when_what_names_it_changes() {
    let mut sink = MetricsSink::new(Limits::default());
    let web = pod("shop", "web-1", Some(("Deployment", "web")));
    let mut unnamed = web.clone();
    unnamed.info = None;
    let q = |pod: &Pod, c: Option<&str>| in_pod(sample::query(1, "a.test", 1, 0), pod, c);
    let mut shared = q(&unnamed, Some("app"));
    sink.event(&shared).unwrap();
    // The same uid, now known to the directory; then another container name.
    shared.who.pod = Some(web.clone());
    sink.event(&shared).unwrap();
    shared.who.container.as_mut().unwrap().name = Some("sidecar".into());
    sink.event(&shared).unwrap();
    sink.event(&shared).unwrap();
    let mut host = sample::query(2, "h.test", 1, 0);
    host.who.host = Some(true);
    sink.event(&host).unwrap();
    host.who.process.name = TaskName::new("other");
    sink.event(&host).unwrap();

    let s = scrape(&sink);
    let queries = |labels: &[(&str, &str)]| value(&s, "dnslens_queries_total", labels);
    let app = [("workload", "Deployment/web"), ("container", "app")];
    let sidecar = [("workload", "Deployment/web"), ("container", "sidecar")];
    assert_eq!(queries(&app), Some(1.0));
    assert_eq!(queries(&sidecar), Some(2.0));
    assert_eq!(queries(&[("pod", "uid-shop-web-1")]), Some(1.0));
    let named = |name: &str| {
        s.iter()
            .filter(|x| x.name == "dnslens_queries_total")
            .filter(|x| x.labels.get("workload").is_some_and(|w| w == name))
            .count()
    };
    assert_eq!((named("dig"), named("other")), (1, 1), "{s:?}");
}

/// Any process can take a name, and every host process name is a workload: host
/// processes get their share of the tables, and pods the rest.
#[test]
fn host_process_names_cannot_crowd_out_the_pods() {
    let limits = Limits {
        placements: 10,
        workloads: 10,
        host_share: HostShare {
            placements: 3,
            workloads: 3,
        },
        ..Limits::default()
    };
    let mut sink = MetricsSink::new(limits);
    for i in 0..50 {
        let mut q = sample::query(1, "x.example", 1, 0);
        q.who.host = Some(true);
        q.who.process.name = format!("tool{i}").as_str().into();
        sink.event(&q).unwrap();
    }
    let web = pod("shop", "web-1", Some(("Deployment", "web")));
    sink.event(&in_pod(
        sample::query(1, "x.example", 1, 0),
        &web,
        Some("app"),
    ))
    .unwrap();
    let s = scrape(&sink);
    let hosts = s
        .iter()
        .filter(|x| x.name == "dnslens_queries_total" && x.labels["namespace"] == HOST)
        .count();
    assert_eq!(hosts, 3, "host processes keep to their share");
    let pod_labels = [
        ("namespace", "shop"),
        ("workload", "Deployment/web"),
        ("pod", "web-1"),
        ("container", "app"),
        ("qtype", "A"),
    ];
    assert_eq!(value(&s, "dnslens_queries_total", &pod_labels), Some(1.0));
    let folded = value(
        &s,
        "dnslens_metrics_folded_total",
        &[("table", "placements")],
    );
    assert_eq!(folded, Some(47.0));
}

/// 100,000 random names from 20,000 pods: the series stay within the limits, the rest is
/// counted under `other` labels, and the folds are counted.
#[test]
fn cardinality_is_bounded_under_a_flood_of_names_and_pods() {
    let limits = Limits {
        placements: 1_000,
        workloads: 100,
        ..Limits::default()
    };
    let mut sink = MetricsSink::new(limits);
    let pods: Vec<Pod> = (0..20_000)
        .map(|i| {
            pod(
                &format!("ns{}", i % 50),
                &format!("p{i}"),
                Some(("Deployment", &format!("d{}", i % 400))),
            )
        })
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..100_000u64 {
        let p = &pods[(next() % 20_000) as usize];
        let q = in_pod(
            sample::query(i as u16, &format!("{:x}.flood.example", next()), 1, 0),
            p,
            Some("app"),
        );
        sink.event(&q).unwrap();
        sink.event(&answered(&q, 3, 100)).unwrap();
        if i % 10_000 == 0 {
            sink.status(&status(Instant::now()));
        }
    }
    sink.status(&status(Instant::now()));
    let s = scrape(&sink);
    let count = |name: &str| s.iter().filter(|x| x.name == name).count();
    assert_eq!(
        count("dnslens_queries_total"),
        1_001,
        "1,000 placements and the fold"
    );
    assert_eq!(count("dnslens_responses_total"), 1_001);
    assert!(count("dnslens_response_latency_seconds_count") <= 101);
    // Per workload: the top 10 and other.
    assert!(
        count("dnslens_top_domains_queries_total") <= 101 * 11,
        "{}",
        count("dnslens_top_domains_queries_total")
    );
    assert!(s.len() < 30_000, "{} series in all", s.len());
    let folded =
        |table| value(&s, "dnslens_metrics_folded_total", &[("table", table)]).unwrap_or(0.0);
    let in_fold = value(
        &s,
        "dnslens_queries_total",
        &[
            ("namespace", "_other"),
            ("workload", "other"),
            ("pod", "other"),
            ("container", "other"),
        ],
    )
    .unwrap();
    assert!(in_fold > 90_000.0, "{in_fold}");
    let total: f64 = s
        .iter()
        .filter(|x| x.name == "dnslens_queries_total")
        .map(|x| x.value)
        .sum();
    assert_eq!(total, 100_000.0, "every query is counted once");
    assert_eq!(
        folded("placements"),
        2.0 * in_fold,
        "queries and responses folded"
    );
    assert!(folded("workloads") > 0.0);
    assert!(sink.placements.len() <= 1_000 && sink.workloads.len() <= 100);
    assert!(sink
        .workloads
        .values()
        .all(|w| w.domains.len() <= limits.tracked_domains));
}

#[test]
fn idle_series_leave_and_make_room() {
    let limits = Limits {
        placements: 1,
        idle: Duration::from_secs(600),
        ..Limits::default()
    };
    let mut sink = MetricsSink::new(limits);
    let start = Instant::now();
    let a = pod("a", "a-1", None);
    let b = pod("b", "b-1", None);
    sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &a, None))
        .unwrap();
    sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &b, None))
        .unwrap();
    let s = scrape(&sink);
    assert_eq!(
        value(&s, "dnslens_queries_total", &[("pod", "a-1")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "dnslens_queries_total", &[("pod", "other")]),
        Some(1.0)
    );
    sink.status(&status(start + Duration::from_secs(3600)));
    let s = scrape(&sink);
    assert_eq!(value(&s, "dnslens_queries_total", &[("pod", "a-1")]), None);
    assert_eq!(
        value(
            &s,
            "dnslens_response_latency_seconds_count",
            &[("namespace", "a")]
        ),
        None
    );
    assert_eq!(
        value(
            &s,
            "dnslens_top_domains_queries_total",
            &[("namespace", "a")]
        ),
        None
    );
    sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &b, None))
        .unwrap();
    let s = scrape(&sink);
    assert_eq!(
        value(&s, "dnslens_queries_total", &[("pod", "b-1")]),
        Some(1.0)
    );
}

/// The exposition itself: health, the kernel's counters and the names table, as promtool reads them.
mod exposition;
