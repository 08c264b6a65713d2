//! Lookups end to end (issue 16): `dnslens trace --json --lookups` on the real kernel while
//! real resolvers (glibc, static musl, pure Go) query dnsmasq on the test node. dnsmasq's query
//! log is the ground truth: each resolver run is one lookup whose `queries` are the queries the
//! log holds for it (plus those sent to a server that is not there), named without the search
//! list. With glibc's calls hooked (uprobes), a getent run is one `libc+dns` lookup, or a
//! `libc` one that sent no query. Tests named `root_*` need root (they skip without it and fail in CI).

mod node;

use std::net::IpAddr;
use std::time::Duration;

use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::dnsmasq::{self, ADDR, BIG, HOST, NX};
use node::net::{Node, Run};
use node::relay::Relay;
use node::resolvers::{self, tool};
use node::trace::Trace;
use node::{have_root, have_tool, wait_until};
use serde_json::Value;

/// A cluster's resolv.conf: three search domains, ndots:5, `nameserver` lines as given.
fn cluster_resolv_conf(servers: &[IpAddr], options: &str) -> String {
    let mut text = "search default.svc.cluster.local svc.cluster.local cluster.local\n".to_string();
    for server in servers {
        text += &format!("nameserver {server}\n");
    }
    text + &format!("options ndots:5 {options}\n")
}

/// A node whose dnsmasq answers the search list's names NXDOMAIN, as a cluster DNS would.
fn cluster_node() -> Node {
    Node::start_with(1, &["--local=/cluster.local/".to_string()])
}

/// The lookup lines of process `pid`.
fn lookups_by(events: &[Value], pid: u32) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "lookup" && e["process"]["pid"] == pid)
        .cloned()
        .collect()
}

/// Runs `body` under `trace --json --lookups` and returns each run with its lookup lines, once
/// every run has one (10 s at most).
fn lookups_of(body: impl FnOnce() -> Vec<Run>) -> Vec<(Run, Vec<Value>)> {
    let trace = Trace::start(&["--lookups"]);
    let runs = body();
    wait_until(Duration::from_secs(10), || {
        let events = trace.events();
        runs.iter().all(|r| !lookups_by(&events, r.pid).is_empty())
    });
    let stopped = trace.stop();
    runs.into_iter()
        .map(|run| {
            let lookups = lookups_by(&stopped.events, run.pid);
            (run, lookups)
        })
        .collect()
}

/// The one lookup of `run`, answered, named `name`, with the queries the log holds for it
/// (`unlogged` more that went where nothing answers).
fn assert_one_answered_lookup(run: &Run, lookups: &[Value], name: &str, unlogged: usize) -> Value {
    let [lookup] = lookups else {
        panic!(
            "{}: want one lookup, got {lookups:#?}\n{:#?}",
            run.label, run.log_queries
        )
    };
    assert_eq!(lookup["name"], name, "{}: {lookup:#}", run.label);
    assert_eq!(lookup["outcome"], "answered", "{}: {lookup:#}", run.label);
    let logged = run.log_queries.len();
    assert!(logged > 0, "{}: dnsmasq logged nothing", run.label);
    assert_eq!(
        lookup["queries"],
        logged + unlogged,
        "{}: {lookup:#}\nlogged: {:#?}",
        run.label,
        run.log_queries
    );
    assert_eq!(
        lookup["attempts"].as_array().map(Vec::len),
        Some(logged + unlogged)
    );
    lookup.clone()
}

#[test]
fn root_lookups_glibc_search_walk_is_one_lookup_of_eight_queries() {
    if !have_root() {
        return;
    }
    let mut node = cluster_node();
    let text = cluster_resolv_conf(&[IpAddr::V4(node.server.v4)], "timeout:2 attempts:2");
    node.write_resolv_conf_text(0, &text);
    let getent = tool("getent");
    let found = lookups_of(|| {
        let run = node.run("getent-walk", 0, None, &getent, &["ahosts", HOST]);
        run.expect_ok().expect_queries();
        vec![run]
    });
    let (run, lookups) = &found[0];
    assert_eq!(run.log_queries.len(), 8, "{:#?}", run.log_queries);
    let lookup = assert_one_answered_lookup(run, lookups, HOST, 0);
    assert_eq!(lookup["answer_name"], HOST);
    assert_eq!(lookup["qtypes"], serde_json::json!(["A", "AAAA"]));
    assert_eq!(lookup["timeouts"], 0);
    assert_eq!(
        lookup["attempts"][0]["qname"],
        format!("{HOST}.default.svc.cluster.local")
    );
}

#[test]
fn root_lookups_dead_first_nameserver_is_one_timeout_then_an_answer() {
    if !have_root() {
        return;
    }
    let mut node = cluster_node();
    let dead = node.nowhere();
    let servers = [IpAddr::V4(dead), IpAddr::V4(node.server.v4)];
    node.write_resolv_conf_text(0, &cluster_resolv_conf(&servers, "timeout:1 attempts:1"));
    let getent = tool("getent");
    // An absolute name: no walk, only the switch of servers.
    let name = format!("{ADDR}.");
    let found = lookups_of(|| {
        let run = node.run("getent-dead", 0, None, &getent, &["ahostsv4", &name]);
        run.expect_ok().expect_queries();
        vec![run]
    });
    let (run, lookups) = &found[0];
    let lookup = assert_one_answered_lookup(run, lookups, ADDR, 1);
    assert_eq!(lookup["timeouts"], 1, "{lookup:#}");
    assert!(
        lookup["latency_us"].as_u64().unwrap() > 1_000_000,
        "{lookup:#}"
    );
    assert_eq!(lookup["attempts"][0]["server"], format!("{dead}:53"));
    assert_eq!(lookup["attempts"][0]["rcode"], Value::Null);
}

#[test]
fn root_lookups_tcp_fallback_musl_and_go() {
    if !have_root() {
        return;
    }
    let mut node = cluster_node();
    let text = cluster_resolv_conf(&[IpAddr::V4(node.server.v4)], "timeout:2 attempts:2");
    node.write_resolv_conf_text(0, &text);
    let getent = tool("getent");
    let musl = have_tool("musl-gcc").then(resolvers::musl_resolve);
    let go = have_tool("go").then(resolvers::goresolve);
    let big = format!("{BIG}.");
    let found = lookups_of(|| {
        let mut runs = vec![node.run("getent-big", 0, None, &getent, &["ahostsv4", &big])];
        runs[0].expect_ok().expect_queries();
        if let Some(musl) = &musl {
            runs.push(node.run("musl", 0, None, musl, &[HOST]));
            runs.last()
                .unwrap()
                .expect_ok()
                .expect_output(dnsmasq::HOST_V4);
        }
        if let Some(go) = &go {
            runs.push(node.run("go", 0, None, go, &[HOST]));
            runs.last()
                .unwrap()
                .expect_ok()
                .expect_output(dnsmasq::HOST_V4);
        }
        runs
    });
    for (run, lookups) in &found {
        if run.label != "getent-big" {
            assert_one_answered_lookup(run, lookups, HOST, 0);
            continue;
        }
        // getent asks twice (the answer, then its canonical name): two lookups, each a
        // truncated UDP answer and the TCP retry, every query in dnsmasq's log.
        let total: u64 = lookups.iter().map(|l| l["queries"].as_u64().unwrap()).sum();
        assert_eq!(total as usize, run.log_queries.len(), "{lookups:#?}");
        for lookup in lookups {
            assert_eq!(
                (&lookup["name"], &lookup["outcome"]),
                (&BIG.into(), &"answered".into())
            );
            let transports: Vec<&Value> = lookup["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| &a["transport"])
                .collect();
            assert_eq!(transports, ["udp", "tcp"], "{lookup:#}");
        }
    }
}

#[test]
fn root_lookups_a_dropped_first_query_is_one_timeout_then_the_resend() {
    if !have_root() {
        return;
    }
    let mut cases = vec![(
        "getent-resend",
        tool("getent"),
        vec!["ahostsv4", ADDR],
        "timeout:1 attempts:2",
    )];
    if have_tool("musl-gcc") {
        // musl retries every timeout/attempts, on the socket and with the id of the first send.
        let musl = resolvers::musl_resolve();
        cases.push(("musl-resend", musl, vec![HOST], "timeout:2 attempts:2"));
    }
    for (label, program, args, options) in cases {
        let mut node = cluster_node();
        let relay = Relay::start(&node, 1);
        let text = format!("nameserver {}\noptions {options}\n", relay.addr);
        node.write_resolv_conf_text(0, &text);
        let found = lookups_of(|| {
            let run = node.run(label, 0, None, &program, &args);
            run.expect_ok().expect_queries();
            vec![run]
        });
        let (run, lookups) = &found[0];
        assert_eq!(relay.dropped(), 1, "{label}");
        let name = args.last().unwrap();
        let lookup = assert_one_answered_lookup(run, lookups, name, 1);
        assert_eq!(lookup["timeouts"], 1, "{label}: {lookup:#}");
        assert!(
            lookup["latency_us"].as_u64().unwrap() > 900_000,
            "{label}: {lookup:#}"
        );
        assert_eq!(lookup["attempts"][0]["rcode"], Value::Null, "{lookup:#}");
    }
}

#[test]
fn root_lookups_through_a_local_forwarder_miss_then_hit() {
    if !have_root() {
        return;
    }
    // A TTL the forwarder caches (local names have 0 by default).
    let mut node = Node::start_with(1, &["--local-ttl=60".to_string()]);
    let (forwarder, forwarder_log) = node.start_local_forwarder(0);
    node.write_resolv_conf_text(0, "nameserver 127.0.0.53\noptions timeout:2 attempts:1\n");
    let getent = tool("getent");
    let name = format!("{ADDR}.");
    // Beside it, the messages: the forwarder's upstream query names the client it serves.
    let messages = Trace::start(&[]);
    let found = lookups_of(|| {
        let args = ["ahostsv4", name.as_str()];
        let first = node.run("getent-miss", 0, None, &getent, &args);
        first.expect_ok().expect_queries();
        let second = node.run("getent-hit", 0, None, &getent, &args);
        second.expect_ok();
        vec![first, second]
    });
    let forwarded = dnsmasq::DnsmasqLog::parse(&std::fs::read_to_string(forwarder_log).unwrap());
    assert_eq!(forwarded.queries.len(), 2, "the forwarder was asked twice");
    let [(miss, miss_lookups), (hit, hit_lookups)] = &found[..] else {
        panic!("two runs")
    };
    assert_eq!(
        miss.log_queries.len(),
        1,
        "the cluster DNS was asked once: {miss:#?}"
    );
    assert!(
        hit.log_queries.is_empty(),
        "the second was the cache's: {hit:#?}"
    );
    // One query each, to the forwarder, which logged both.
    let via = |run: &Run, lookups: &[Value]| {
        let [lookup] = lookups else {
            panic!("{}: want one lookup, got {lookups:#?}", run.label)
        };
        assert_eq!(
            (&lookup["name"], &lookup["outcome"], &lookup["queries"]),
            (&ADDR.into(), &"answered".into(), &1.into()),
            "{lookup:#}"
        );
        assert_eq!(lookup["via"]["process"]["pid"], forwarder, "{lookup:#}");
        assert_eq!(lookup["via"]["process"]["name"], "dnsmasq", "{lookup:#}");
        lookup["via"].clone()
    };
    let first = via(miss, miss_lookups);
    assert_eq!(first["cache"], "miss", "{first:#}");
    assert_eq!(first["upstream"], format!("{}:53", node.server.v4));
    assert!(first["upstream_latency_us"].is_u64(), "{first:#}");
    let second = via(hit, hit_lookups);
    assert_eq!(second["cache"], "hit", "{second:#}");
    assert_eq!(second["upstream"], Value::Null);

    let events = messages.stop().events;
    let upstream: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "query" && e["role"] == "client")
        .filter(|e| e["process"]["pid"] == forwarder)
        .collect();
    let [up] = &upstream[..] else {
        panic!("want the forwarder's one upstream query, got {upstream:#?}")
    };
    let served = &up["served"];
    assert_eq!(served.as_array().map(Vec::len), Some(1), "{up:#}");
    assert_eq!(served[0]["pid"], miss.pid, "{up:#}");
    assert_eq!(served[0]["name"], "getent", "{up:#}");
    assert_eq!(served[0]["pod"], miss_lookups[0]["pod"], "{up:#}");
}

#[test]
fn root_lookups_glibc_calls_from_hosts_and_from_the_wire() {
    if !have_root() {
        return;
    }
    const LOCAL: &str = "hosts-only.dnslens.test";
    let mut node = Node::start(1);
    node.write_etc(
        0,
        "hosts",
        &format!("127.0.0.1 localhost\n203.0.113.99 {LOCAL}\n"),
    );
    let getent = tool("getent");
    let trace = Trace::start(&["--lookups"]);
    let of = |pid: u32| lookups_by(&trace.events(), pid);
    // The libc is hooked a moment after the start (the worker's scan of /proc): a call made
    // before that is not seen, and /etc/hosts sends nothing on the wire. Asked until seen.
    let mut local = Vec::new();
    for _ in 0..10 {
        let run = node.run("getent-hosts", 0, None, &getent, &["ahosts", LOCAL]);
        run.expect_ok().expect_output("203.0.113.99");
        wait_until(Duration::from_secs(1), || {
            local = of(run.pid);
            !local.is_empty()
        });
        if !local.is_empty() {
            break;
        }
    }
    let [hosts] = &local[..] else {
        panic!(
            "want one lookup from /etc/hosts, got {local:#?}\n{}",
            trace.stderr()
        )
    };
    assert_eq!(
        (&hosts["name"], &hosts["source"], &hosts["queries"]),
        (&LOCAL.into(), &"libc".into(), &0.into()),
        "{hosts:#}"
    );
    assert_eq!(hosts["outcome"], "answered", "{hosts:#}");
    // Hooked now: a call that goes to dnsmasq is the call and its queries.
    let run = node.run("getent-dns", 0, None, &getent, &["ahosts", HOST]);
    run.expect_ok().expect_queries();
    wait_until(Duration::from_secs(10), || !of(run.pid).is_empty());
    let stopped = trace.stop();
    let lookups = lookups_by(&stopped.events, run.pid);
    let lookup = assert_one_answered_lookup(&run, &lookups, HOST, 0);
    assert_eq!(lookup["source"], "libc+dns", "{lookup:#}");
}

#[test]
fn root_count_lookups_by_name_outcome_and_source() {
    if !have_root() {
        return;
    }
    // A query's keys are refused before anything is attached, with the keys that do apply.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dnslens"))
        .args(["count", "--lookups", "--by", "qname"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--by qname is a query's key"), "{stderr}");
    assert!(stderr.contains("name, domain, outcome, source"), "{stderr}");

    let mut node = cluster_node();
    let text = cluster_resolv_conf(&[IpAddr::V4(node.server.v4)], "timeout:2 attempts:2");
    node.write_resolv_conf_text(0, &text);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let by = ["--by", "name", "--by", "outcome", "--by", "source"];
    let args = [
        &by[..],
        &["--json", "--interval", "500ms", "--pod", &pod.pod_uid],
    ]
    .concat();
    let count = Trace::count(&["--lookups"].into_iter().chain(args).collect::<Vec<_>>());
    let getent = tool("getent");
    let found = node.run("getent-found", 0, Some(&pod), &getent, &["ahostsv4", HOST]);
    found.expect_ok().expect_queries();
    let missing = node.run("getent-nx", 0, Some(&pod), &getent, &["ahostsv4", NX]);
    missing.expect_exit(2).expect_queries();
    // Rows summed over the intervals: (name, outcome) -> (lookups, sources seen).
    let counted = |lines: &[Value]| {
        let mut counts = std::collections::BTreeMap::<(String, String), (u64, Vec<String>)>::new();
        for line in lines {
            assert_eq!(line["by"], serde_json::json!(["name", "outcome", "source"]));
            for row in line["counts"].as_array().unwrap() {
                let key = (row["name"].to_string(), row["outcome"].to_string());
                let entry = counts.entry(key).or_default();
                entry.0 += row["lookups"].as_u64().unwrap();
                entry.1.push(row["source"].as_str().unwrap().to_string());
            }
        }
        counts
    };
    wait_until(Duration::from_secs(10), || {
        counted(&count.events()).values().map(|c| c.0).sum::<u64>() >= 2
    });
    let stopped = count.stop();
    let counts = counted(&stopped.events);
    let logged = (found.log_queries.len(), missing.log_queries.len());
    assert_eq!(logged, (4, 4), "a search walk of four A queries each");
    assert_eq!(
        counts
            .iter()
            .map(|(k, v)| (k.clone(), v.0))
            .collect::<Vec<_>>(),
        [
            ((format!("{HOST:?}"), "\"answered\"".into()), 1),
            ((format!("{NX:?}"), "\"nxdomain\"".into()), 1),
        ],
        "{counts:?}\n{}",
        stopped.stderr
    );
    // The first getent may resolve before its libc is hooked.
    for (_, sources) in counts.values() {
        assert!(
            sources.iter().all(|s| s == "dns" || s == "libc+dns"),
            "{sources:?}"
        );
    }
}
