//! End-to-end tests: `dnslens trace --json` on the real kernel, watching real resolvers (glibc,
//! Python, dig, kdig, static musl, pure Go, Node's c-ares) query a dnsmasq server on a test node
//! built from network namespaces, with clients in Kubernetes-named cgroups. dnsmasq's query log
//! is the ground truth: every query it logged must be captured once, from the right process,
//! cgroup and namespace, with its response.
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI, which runs as
//! root). Each builds its own node with unique names, so they run in parallel.

mod node;
// The fake Kubernetes API server that the cluster crate's tests use too.
use dnslens_testkit::fake_apiserver;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::check::{assert_client_capture, report, server_side, stop_problems, traced};
use node::dnsmasq::{self, ADDR, ALIAS, BIG, HOST, NX, SRV, TXT};
use node::net::{Node, Run};
use node::resolvers::{self, tool};
use node::trace::{Stopped, Trace};
use node::{have_root, have_tool};
use serde_json::Value;

/// Checks the harness alone, without dnslens: namespaces, cgroups, dnsmasq and every resolver
/// work, dnsmasq logs what they ask, and cleanup leaves nothing behind.
#[test]
fn root_harness_resolvers_get_answers() {
    if !have_root() {
        return;
    }
    let mut node = Node::start(2);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let pod2 = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let getent = tool("getent");
    let srv = node.server.v4.to_string();
    let at_srv = format!("@{srv}");

    // The process really is in the pod's cgroups and the client's namespace.
    let cat = tool("cat");
    let cg = node.run("cgroup", 0, Some(&pod), &cat, &["/proc/self/cgroup"]);
    cg.expect_ok().expect_output(&format!("0::{}", pod.path));
    if PodCgroup::have_v1_memory() {
        cg.expect_output(&format!(":memory:{}", pod.path));
    }
    let readlink = tool("readlink");
    node.run("netns", 1, Some(&pod2), &readlink, &["/proc/self/ns/net"])
        .expect_ok()
        .expect_output(&format!("net:[{}]", node.clients[1].netns_ino));

    let run = node.run("getent", 0, Some(&pod), &getent, &["ahosts", HOST]);
    run.expect_ok()
        .expect_output(dnsmasq::HOST_V4)
        .expect_output(dnsmasq::HOST_V6)
        .expect_queries();
    let nx = node.run("getent-nx", 0, Some(&pod), &getent, &["ahosts", NX]);
    nx.expect_exit(2).expect_queries();
    let big = node.run("getent-big", 0, None, &getent, &["ahostsv4", BIG]);
    big.expect_ok()
        .expect_output(&dnsmasq::big_addr(dnsmasq::BIG_COUNT));
    let log = node.dnsmasq_log();
    assert!(
        big.log_queries
            .iter()
            .any(|q| log.is_tcp(q, node.dnsmasq_pid())),
        "glibc did not fall back to TCP for {BIG}: {:#?}",
        big.log_queries
    );
    assert_eq!(log.rcode(&nx.log_queries[0]), "NXDOMAIN");

    let python = resolvers::python();
    let script = resolvers::PYTHON_GETADDRINFO;
    node.run("python", 1, Some(&pod2), &python, &["-c", script, ADDR])
        .expect_ok()
        .expect_output(dnsmasq::ADDR_V4);

    let dig = tool("dig");
    let dig_args = ["+short", TXT, "TXT", SRV, "SRV", ALIAS, "A"];
    node.run("dig", 0, None, &dig, &dig_args)
        .expect_ok()
        .expect_output(dnsmasq::TXT_VALUE)
        .expect_output("1 2 53 host.dnslens.test.")
        .expect_output(dnsmasq::HOST_V4);
    let dig_big = node.run("dig-big", 0, None, &dig, &[BIG]);
    dig_big
        .expect_ok()
        .expect_output("Truncated, retrying in TCP mode");
    let kdig = tool("kdig");
    node.run(
        "kdig-tcp",
        0,
        None,
        &kdig,
        &[&at_srv, "+tcp", "+short", HOST],
    )
    .expect_ok()
    .expect_output(dnsmasq::HOST_V4);

    if have_tool("musl-gcc") {
        node.run("musl", 1, None, &resolvers::musl_resolve(), &[HOST])
            .expect_ok()
            .expect_output(dnsmasq::HOST_V6);
    }
    if have_tool("go") {
        let args = [HOST, "txt:txt.dnslens.test", "srv:_dns._udp.dnslens.test"];
        node.run("go", 1, None, &resolvers::goresolve(), &args)
            .expect_ok()
            .expect_output(dnsmasq::HOST_V4)
            .expect_output(dnsmasq::TXT_VALUE)
            .expect_output("1 2 53 host.dnslens.test.");
    }
    if have_tool("node") {
        let args = [
            "-e",
            resolvers::NODE_CARES,
            &srv,
            HOST,
            "txt:txt.dnslens.test",
        ];
        node.run("node", 1, None, &tool("node"), &args)
            .expect_ok()
            .expect_output(dnsmasq::HOST_V4)
            .expect_output(dnsmasq::TXT_VALUE);
    }

    node.write_resolv_conf(1, IpAddr::V6(node.server.v6));
    let v6 = node.run("getent-v6", 1, None, &getent, &["ahosts", HOST]);
    v6.expect_ok().expect_output(dnsmasq::HOST_V4);
    assert!(
        v6.log_queries.iter().all(|q| q.client.is_ipv6()),
        "queries did not use IPv6: {:#?}",
        v6.log_queries
    );

    // Cleanup leaves nothing behind.
    let namespaces: Vec<String> = std::iter::once(&node.server)
        .chain(&node.clients)
        .map(|h| h.ns.clone())
        .collect();
    let pod_dirs: Vec<std::path::PathBuf> = pod
        .procs_files()
        .into_iter()
        .chain(pod2.procs_files())
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    let tmp = node.dir.path().to_path_buf();
    drop((node, pod, pod2));
    for ns in &namespaces {
        assert!(
            !std::path::Path::new("/run/netns").join(ns).exists(),
            "{ns} left"
        );
        assert!(
            !std::path::Path::new("/etc/netns").join(ns).exists(),
            "{ns} left"
        );
    }
    for dir in &pod_dirs {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
    assert!(!tmp.exists(), "{} left", tmp.display());
}

/// The shape of most client tests: a node with one client, a pod cgroup in it, `body` running
/// resolvers there under `dnslens trace --json`, then the client-side check of every run. Returns
/// the node, the runs and what dnslens printed, for checks of their own.
fn client_capture_in_pod(
    title: &str,
    pod: (Driver, Hierarchies),
    body: impl FnOnce(&Node, &PodCgroup) -> Vec<Run>,
) -> (Node, Vec<Run>, Stopped) {
    let node = Node::start(1);
    let pod = PodCgroup::new(pod.0, pod.1);
    let (runs, stopped) = traced(&node, &[], || body(&node, &pod));
    assert_client_capture(title, &node, &runs, &stopped);
    (node, runs, stopped)
}

#[test]
fn root_trace_glibc_getent() {
    if !have_root() {
        return;
    }
    let getent = tool("getent");
    let pod = (Driver::Systemd, Hierarchies::Both);
    client_capture_in_pod("glibc getent", pod, |node, pod| {
        let run = |label, args: &[&str]| node.run(label, 0, Some(pod), &getent, args);
        let runs = vec![
            run("getent-ahosts", &["ahosts", HOST]),
            run("getent-hosts-cname", &["hosts", ALIAS]),
            run("getent-ahostsv4", &["ahostsv4", ADDR]),
            run("getent-nxdomain", &["ahosts", NX]),
        ];
        runs[..3].iter().for_each(|r| {
            r.expect_ok().expect_queries();
        });
        runs[3].expect_exit(2).expect_queries();
        runs
    });
}

#[test]
fn root_trace_python_and_getent_in_two_pods() {
    if !have_root() {
        return;
    }
    let node = Node::start(2);
    let pod_cgroupfs = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let pod_systemd = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let python = resolvers::python();
    let getent = tool("getent");
    let (runs, stopped) = traced(&node, &[], || {
        let script = resolvers::PYTHON_GETADDRINFO;
        let py = node.run(
            "python-getaddrinfo",
            0,
            Some(&pod_cgroupfs),
            &python,
            &["-c", script, HOST, ALIAS, NX],
        );
        py.expect_exit(2).expect_queries();
        let ge = node.run(
            "getent-other-pod",
            1,
            Some(&pod_systemd),
            &getent,
            &["ahosts", ADDR],
        );
        ge.expect_ok().expect_queries();
        vec![py, ge]
    });
    assert_client_capture("python + getent, two pods", &node, &runs, &stopped);
}

#[test]
fn root_trace_dig_udp_and_tcp() {
    if !have_root() {
        return;
    }
    let dig = tool("dig");
    client_capture_in_pod("dig", (Driver::Systemd, Hierarchies::Both), |node, pod| {
        let many = [
            "+tries=1", HOST, "A", HOST, "AAAA", TXT, "TXT", SRV, "SRV", ALIAS, "A", NX, "A",
        ];
        let udp = node.run("dig-udp", 0, Some(pod), &dig, &many);
        udp.expect_ok().expect_output("NXDOMAIN").expect_queries();
        let tcp = node.run("dig-tcp", 0, Some(pod), &dig, &["+tcp", HOST, "AAAA"]);
        tcp.expect_ok().expect_queries();
        vec![udp, tcp]
    });
}

#[test]
fn root_trace_kdig_udp_and_tcp() {
    if !have_root() {
        return;
    }
    let kdig = tool("kdig");
    client_capture_in_pod(
        "kdig",
        (Driver::Cgroupfs, Hierarchies::Both),
        |node, pod| {
            let at = format!("@{}", node.server.v4);
            let udp = node.run("kdig-udp", 0, Some(pod), &kdig, &[&at, HOST, "A"]);
            udp.expect_ok()
                .expect_output(dnsmasq::HOST_V4)
                .expect_queries();
            let tcp = node.run("kdig-tcp", 0, Some(pod), &kdig, &[&at, "+tcp", TXT, "TXT"]);
            tcp.expect_ok()
                .expect_output(dnsmasq::TXT_VALUE)
                .expect_queries();
            let nx = node.run("kdig-nx", 0, Some(pod), &kdig, &[&at, NX, "AAAA"]);
            nx.expect_ok().expect_output("NXDOMAIN").expect_queries();
            vec![udp, tcp, nx]
        },
    );
}

#[test]
fn root_trace_musl_static_binary() {
    if !have_root() || !have_tool("musl-gcc") {
        return;
    }
    let musl = resolvers::musl_resolve();
    let pod = (Driver::Systemd, Hierarchies::Both);
    client_capture_in_pod("static musl getaddrinfo", pod, |node, pod| {
        let run = node.run("musl", 0, Some(pod), &musl, &[HOST, ADDR, NX]);
        run.expect_exit(2)
            .expect_output(dnsmasq::ADDR_V6)
            .expect_queries();
        vec![run]
    });
}

#[test]
fn root_trace_go_pure_resolver() {
    if !have_root() || !have_tool("go") {
        return;
    }
    let go = resolvers::goresolve();
    let pod = (Driver::Cgroupfs, Hierarchies::Both);
    client_capture_in_pod("Go pure resolver", pod, |node, pod| {
        let args = [
            HOST,
            "txt:txt.dnslens.test",
            "srv:_dns._udp.dnslens.test",
            NX,
        ];
        let run = node.run("go", 0, Some(pod), &go, &args);
        run.expect_exit(2)
            .expect_output(dnsmasq::TXT_VALUE)
            .expect_queries();
        vec![run]
    });
}

#[test]
fn root_trace_node_cares() {
    if !have_root() || !have_tool("node") {
        return;
    }
    let nodejs = tool("node");
    client_capture_in_pod(
        "Node c-ares",
        (Driver::Systemd, Hierarchies::Both),
        |node, pod| {
            let srv = node.server.v4.to_string();
            let args = [
                "-e",
                resolvers::NODE_CARES,
                &srv,
                HOST,
                "txt:txt.dnslens.test",
                NX,
            ];
            let run = node.run("node-cares", 0, Some(pod), &nodejs, &args);
            run.expect_exit(2)
                .expect_output(dnsmasq::TXT_VALUE)
                .expect_queries();
            vec![run]
        },
    );
}

/// A UDP answer too big for the client's buffer is truncated; glibc and dig retry over TCP.
/// Both halves must be captured and the TCP answer decoded in full.
#[test]
fn root_trace_tcp_fallback() {
    if !have_root() {
        return;
    }
    let (getent, dig) = (tool("getent"), tool("dig"));
    let pod = (Driver::Systemd, Hierarchies::Both);
    let (node, runs, stopped) = client_capture_in_pod("TCP fallback", pod, |node, pod| {
        let glibc = node.run("getent-big", 0, Some(pod), &getent, &["ahostsv4", BIG]);
        glibc.expect_ok().expect_queries();
        let d = node.run("dig-big", 0, Some(pod), &dig, &[BIG]);
        d.expect_ok()
            .expect_output("Truncated, retrying in TCP mode")
            .expect_queries();
        vec![glibc, d]
    });
    let log = node.dnsmasq_log();
    for run in &runs {
        let tcp = run
            .log_queries
            .iter()
            .filter(|q| log.is_tcp(q, node.dnsmasq_pid()))
            .count();
        assert!(tcp > 0, "{}: no TCP query in the dnsmasq log", run.label);
    }
    // Beyond the per-query check: a decoded TCP response with every record, for each resolver.
    let full_tcp_answers = |pid: u32| {
        stopped.events.iter().any(|e| {
            e["kind"] == "response"
                && e["transport"] == "tcp"
                && e["qname"] == BIG
                && e["process"]["pid"] == pid
                && e["answers"].as_array().map(Vec::len) == Some(dnsmasq::BIG_COUNT as usize)
        })
    };
    for run in &runs {
        assert!(
            full_tcp_answers(run.pid),
            "{}",
            report(
                &format!(
                    "{}: no TCP response with {} answers",
                    run.label,
                    dnsmasq::BIG_COUNT
                ),
                &[],
                &node,
                &stopped
            )
        );
    }
}

/// Queries over IPv6: glibc with an IPv6 nameserver, dig -6 over UDP and TCP.
#[test]
fn root_trace_ipv6_transport() {
    if !have_root() {
        return;
    }
    let mut node = Node::start(1);
    node.write_resolv_conf(0, IpAddr::V6(node.server.v6));
    let pod = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let (getent, dig) = (tool("getent"), tool("dig"));
    let at = format!("@{}", node.server.v6);
    let (runs, stopped) = traced(&node, &[], || {
        let glibc = node.run("getent-v6", 0, Some(&pod), &getent, &["ahosts", HOST]);
        glibc.expect_ok().expect_queries();
        let udp = node.run("dig-v6", 0, Some(&pod), &dig, &["-6", &at, ALIAS, "AAAA"]);
        udp.expect_ok().expect_queries();
        let tcp = node.run(
            "dig-v6-tcp",
            0,
            Some(&pod),
            &dig,
            &["-6", &at, "+tcp", HOST],
        );
        tcp.expect_ok().expect_queries();
        vec![glibc, udp, tcp]
    });
    let all_v6 = runs
        .iter()
        .flat_map(|r| &r.log_queries)
        .all(|q| q.client.is_ipv6());
    assert!(all_v6, "a query did not go over IPv6: {runs:#?}");
    assert_client_capture("IPv6", &node, &runs, &stopped);
    // Addresses are printed as "[addr]:port".
    let server = format!("[{}]:53", node.server.v6);
    let client = format!("[{}]:", node.clients[0].v6);
    let bad: Vec<&Value> = stopped
        .events
        .iter()
        .filter(|e| e["role"] == "client" && e["netns"] == node.clients[0].netns_ino)
        .filter(|e| {
            let (src, dst) = (e["src"].as_str(), e["dst"].as_str());
            let (ours, theirs) = if e["direction"] == "send" {
                (src, dst)
            } else {
                (dst, src)
            };
            !(ours.is_some_and(|s| s.starts_with(&client)) && theirs == Some(server.as_str()))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "IPv6 events with src/dst not in [addr]:port form: {bad:#?}"
    );
}

/// A pod known only to the v1 memory hierarchy (the process stays in its own v2 cgroup), as on
/// hosts where the kubelet runs on cgroup v1: the cgroup must be resolved through v1.
#[test]
fn root_trace_cgroup_v1_only() {
    if !have_root() {
        return;
    }
    if !PodCgroup::have_v1_memory() {
        println!("skipped: this host has no cgroup v1 memory hierarchy");
        return;
    }
    let getent = tool("getent");
    let pod = (Driver::Cgroupfs, Hierarchies::V1Only);
    client_capture_in_pod("cgroup v1 only", pod, |node, pod| {
        let run = node.run("getent-v1", 0, Some(pod), &getent, &["ahosts", HOST]);
        run.expect_ok().expect_queries();
        vec![run]
    });
}

/// The server's side: dnsmasq receives each query (recvmsg; read on TCP, in a forked child) and
/// sends each response.
#[test]
fn root_trace_server_side_dnsmasq() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let (getent, dig) = (tool("getent"), tool("dig"));
    let (runs, stopped) = traced(&node, &[], || {
        let glibc = node.run("getent", 0, None, &getent, &["ahosts", HOST]);
        glibc.expect_ok().expect_queries();
        let tcp = node.run("dig-tcp", 0, None, &dig, &["+tcp", NX]);
        tcp.expect_ok().expect_queries();
        vec![glibc, tcp]
    });
    assert_client_capture("client side (server test)", &node, &runs, &stopped);
    let problems = server_side(&node, &stopped.events);
    assert!(
        problems.is_empty(),
        "{}",
        report("server side (dnsmasq)", &problems, &node, &stopped)
    );
}

/// `--comm` keeps only the named process's messages.
#[test]
fn root_trace_filter_comm() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let (getent, kdig) = (tool("getent"), tool("kdig"));
    let at = format!("@{}", node.server.v4);
    let (runs, stopped) = traced(&node, &["--comm", "getent"], || {
        let kept = node.run("getent", 0, None, &getent, &["ahosts", HOST]);
        kept.expect_ok().expect_queries();
        let dropped = node.run("kdig", 0, None, &kdig, &[&at, HOST]);
        dropped.expect_ok().expect_queries();
        vec![kept, dropped]
    });
    assert_client_capture("--comm getent", &node, &runs[..1], &stopped);
    let others: Vec<&Value> = stopped
        .events
        .iter()
        .filter(|e| e["process"]["comm"] != "getent")
        .collect();
    assert!(
        others.is_empty(),
        "--comm getent printed other processes' messages: {others:#?}"
    );
}

/// `--name` matches the process name (dig's messages move on a thread named otherwise) and
/// `--domain` keeps only names in that domain.
#[test]
fn root_trace_filter_name_and_domain() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let (getent, dig) = (tool("getent"), tool("dig"));
    let filters = ["--name", "dig", "--domain", HOST];
    let (runs, stopped) = traced(&node, &filters, || {
        let kept = node.run("dig-host", 0, None, &dig, &[HOST, "A", HOST, "AAAA"]);
        kept.expect_ok().expect_queries();
        let other_name = node.run("dig-txt", 0, None, &dig, &[TXT, "TXT"]);
        other_name.expect_ok().expect_queries();
        let other_process = node.run("getent", 0, None, &getent, &["ahosts", HOST]);
        other_process.expect_ok().expect_queries();
        vec![kept, other_name, other_process]
    });
    assert_client_capture("--name dig --domain host", &node, &runs[..1], &stopped);
    let others: Vec<&Value> = stopped
        .events
        .iter()
        .filter(|e| e["process"]["name"] != "dig" || e["qname"] != HOST)
        .collect();
    assert!(
        others.is_empty(),
        "the filters let other messages through: {others:#?}"
    );
}

/// `--count N` stops after N events and `--duration` after the given time, without a signal.
#[test]
fn root_trace_stops_by_itself() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let getent = tool("getent");
    let counted = Trace::start(&["--count", "2", "--comm", "getent"]);
    node.run("getent", 0, None, &getent, &["ahosts", HOST])
        .expect_ok()
        .expect_queries();
    let stopped = counted.wait_exit(Duration::from_secs(10));
    let mut problems = stop_problems(&stopped);
    // Alerts (about any process on the host) are not events: --count leaves them out.
    let n = stopped
        .events
        .iter()
        .filter(|e| e["kind"] != "alert")
        .count();
    if n != 2 {
        problems.push(format!("--count 2 printed {n} events"));
    }
    assert!(
        problems.is_empty(),
        "{}",
        report("--count", &problems, &node, &stopped)
    );

    let started = Instant::now();
    let timed = Trace::start(&["--duration", "1s"]);
    let stopped = timed.wait_exit(Duration::from_secs(10));
    let problems = stop_problems(&stopped);
    assert!(
        problems.is_empty(),
        "{}",
        report("--duration 1s", &problems, &node, &stopped)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "--duration 1s exited after {:?}",
        started.elapsed()
    );
}

/// Issue 14: `count --by qname --by rcode` counts each query dig asked once, under its name in
/// lower case and the code dnsmasq answered, one JSON field per key.
#[test]
fn root_count_by_qname_and_rcode() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let by = ["--by", "qname", "--by", "rcode", "--interval", "500ms"];
    let count = Trace::count(&[&by[..], &["--json", "--pod", &pod.pod_uid]].concat());
    let at = format!("@{}", node.server.v4);
    let upper = HOST.to_ascii_uppercase();
    let asked = [&at, "+tries=1", &upper, "A", HOST, "AAAA", NX, "A"];
    let dig = node.run("dig", 0, Some(&pod), &tool("dig"), &asked);
    dig.expect_ok().expect_output("NXDOMAIN").expect_queries();
    let counted = |lines: &[Value]| {
        let mut counts = std::collections::BTreeMap::new();
        for line in lines {
            assert_eq!(line["by"], serde_json::json!(["qname", "rcode"]), "{line}");
            for row in line["counts"].as_array().unwrap() {
                let key = (row["qname"].to_string(), row["rcode"].to_string());
                *counts.entry(key).or_insert(0) += row["queries"].as_u64().unwrap();
            }
        }
        counts
    };
    node::wait_until(Duration::from_secs(5), || {
        counted(&count.events()).values().sum::<u64>() >= 3
    });
    let stopped = count.stop();
    let problems = stop_problems(&stopped);
    assert!(problems.is_empty(), "{problems:?}\n{}", stopped.stderr);
    let want = [
        ((format!("{HOST:?}"), "\"NOERROR\"".to_string()), 2),
        ((format!("{NX:?}"), "\"NXDOMAIN\"".to_string()), 1),
    ];
    assert_eq!(
        counted(&stopped.events),
        want.into_iter().collect(),
        "{:#?}",
        stopped.events
    );
}

/// The fallback capture modes (for kernels without the socket tracepoints, or where BTF raw
/// tracepoints are refused) must see the same messages: glibc (connected, sendmmsg), kdig
/// (unconnected sendmsg/recvfrom, and TCP) and dig (recvmsg on a worker thread).
#[test]
fn root_trace_fallback_capture_modes() {
    if !have_root() {
        return;
    }
    let (getent, kdig, dig) = (tool("getent"), tool("kdig"), tool("dig"));
    let modes = [
        ("syscall-exit", "with syscall-exit raw tracepoint ("),
        ("syscall-tracepoints", "with syscall tracepoints ("),
    ];
    for (mode, announced) in modes {
        let node = Node::start(1);
        let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
        let (runs, stopped) = traced(&node, &["--capture", mode], || {
            let at = format!("@{}", node.server.v4);
            let runs = vec![
                node.run("getent", 0, Some(&pod), &getent, &["ahosts", HOST]),
                node.run("kdig-udp", 0, Some(&pod), &kdig, &[&at, HOST, "A"]),
                node.run("kdig-tcp", 0, Some(&pod), &kdig, &[&at, "+tcp", TXT, "TXT"]),
                node.run("dig-nx", 0, Some(&pod), &dig, &["+tries=1", NX, "A"]),
            ];
            runs.iter().for_each(|r| {
                r.expect_ok().expect_queries();
            });
            runs
        });
        assert!(
            stopped.stderr.contains(announced),
            "dnslens did not say it traces with {mode}: {}",
            stopped.stderr
        );
        assert_client_capture(&format!("--capture {mode}"), &node, &runs, &stopped);
    }
}

/// Without privileges: one clear line, a failing exit status, nothing attached. Runs as root and
/// drops to nobody with setpriv, so CI (root) exercises it.
#[test]
fn root_trace_without_privileges_says_so() {
    if !have_root() || !have_tool("setpriv") {
        return;
    }
    let output = std::process::Command::new(tool("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_dnslens"))
        .args(["trace", "--duration", "1s"])
        .output()
        .expect("run dnslens as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "dnslens succeeded without privileges: {stderr}"
    );
    assert_eq!(
        stderr.trim(),
        "dnslens: loading BPF needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; before Linux \
         5.11 also CAP_SYS_RESOURCE): run \
         dnslens with sudo"
    );
    assert!(output.stdout.is_empty());
}

/// Every cgroup layout (kubelet systemd and cgroupfs drivers, each QoS form, CRI-O, containerd,
/// a kind node's nesting, Docker and Podman outside Kubernetes, a pod known only to cgroup v1):
/// the events of a resolver that exits at once carry the right container id, runtime and pod
/// uid, from the cgroup the kernel reported (no Kubernetes API here).
#[test]
fn root_trace_container_and_pod_from_every_cgroup_layout() {
    if !have_root() {
        return;
    }
    let getent = tool("getent");
    let mut layouts: Vec<(Driver, Hierarchies)> = [
        Driver::Systemd,
        Driver::Cgroupfs,
        Driver::SystemdCrio,
        Driver::SystemdGuaranteed,
        Driver::CgroupfsGuaranteed,
        Driver::KindNested,
        Driver::Docker,
        Driver::Podman,
    ]
    .into_iter()
    .map(|driver| (driver, Hierarchies::Both))
    .collect();
    if PodCgroup::have_v1_memory() {
        layouts.push((Driver::Systemd, Hierarchies::V1Only));
    }
    let node = Node::start(1);
    let pods: Vec<PodCgroup> = layouts.iter().map(|&(d, h)| PodCgroup::new(d, h)).collect();
    let (runs, stopped) = traced(&node, &["--no-kubernetes"], || {
        pods.iter()
            .enumerate()
            .map(|(i, pod)| {
                let run = node.run(
                    &format!("getent-{i}"),
                    0,
                    Some(pod),
                    &getent,
                    &["ahosts", HOST],
                );
                run.expect_ok().expect_queries();
                run
            })
            .collect()
    });
    assert_client_capture("every cgroup layout", &node, &runs, &stopped);
    let mut problems = Vec::new();
    for (run, pod) in runs.iter().zip(&pods) {
        let events: Vec<&Value> = stopped
            .events
            .iter()
            .filter(|e| e["process"]["pid"] == run.pid)
            .collect();
        assert!(!events.is_empty(), "[{}] no events", run.label);
        for e in events {
            let want_pod = pod.driver.in_pod().then_some(pod.pod_uid.as_str());
            let got = (
                e["container"]["id"].as_str(),
                e["container"]["runtime"].as_str(),
                e["pod"]["uid"].as_str(),
                e["host"].as_bool(),
            );
            let want = (
                Some(pod.container_id.as_str()),
                Some(pod.driver.runtime()),
                want_pod,
                Some(false),
            );
            if got != want {
                problems.push(format!(
                    "[{} in {}] got (container, runtime, pod uid, host) {got:?}, want {want:?}",
                    run.label, pod.path
                ));
            }
        }
    }
    // dnsmasq runs in the test's own (host) cgroup.
    let server: Vec<&Value> = stopped
        .events
        .iter()
        .filter(|e| e["role"] == "server" && e["process"]["name"] == "dnsmasq")
        .collect();
    assert!(!server.is_empty(), "no server-side events");
    for e in server {
        if e["host"] != true || !e["container"].is_null() || !e["pod"].is_null() {
            problems.push(format!("dnsmasq is a host process: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The API server's view of the pod whose container runs in `cgroup` on `test-node`, owned by
/// `owner` (kind, name) and with one container named `container`.
fn api_pod(
    cgroup: &PodCgroup,
    namespace: &str,
    name: &str,
    owner: (&str, &str),
    container: &str,
) -> fake_apiserver::PodFixture {
    let mut pod = fake_apiserver::pod(namespace, name, "test-node")
        .owner("apps/v1", owner.0, owner.1)
        .container(container, &cgroup.container_id);
    pod.uid = cgroup.pod_uid.clone();
    pod
}

/// Stops dnslens and checks it exited cleanly.
fn stop_cleanly(trace: Trace) {
    let stopped = trace.stop();
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "{}",
        stopped.stderr
    );
}

/// Runs getent in `pod` until an event of it satisfies `ok` (the watch delivers pods on its own
/// schedule and enrichment never waits for it), at most 15 s. Returns that event.
fn lookup_until(
    node: &Node,
    pod: &PodCgroup,
    trace: &Trace,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let getent = tool("getent");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let run = node.run("getent", 0, Some(pod), &getent, &["ahosts", HOST]);
        run.expect_ok();
        let settle = Instant::now() + Duration::from_millis(500);
        while Instant::now() < settle {
            if let Some(e) = trace
                .events()
                .into_iter()
                .rev()
                .find(|e| e["process"]["pid"] == run.pid && e["kind"] == "response")
            {
                if ok(&e) {
                    return e;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no matching event within 15 s; last events:\n{}\nstderr:\n{}",
            trace
                .events()
                .iter()
                .rev()
                .take(3)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            trace.stderr()
        );
    }
}

/// Names come from a Kubernetes API endpoint started here on loopback, reached through a
/// kubeconfig: a pod appears and is named with its workload (Deployment via its ReplicaSet) and
/// container; its labels change; it is deleted and keeps its name (grace period); the endpoint
/// dies (events keep flowing, a warning says why) and comes back with a second pod.
#[test]
fn root_trace_names_pods_from_the_kubernetes_api() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let server = fake_apiserver::FakeApiServer::start();
    let dir = fake_apiserver::TempDir::new("e2e");
    let kubeconfig = fake_apiserver::write_kubeconfig(dir.path(), &server.url());
    let web = api_pod(
        &pod,
        "shop",
        "web-7d4b9f-xk2p1",
        ("ReplicaSet", "web-7d4b9f"),
        "app",
    )
    .label("app", "web");
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")))
    });
    server.add_pod(&web);
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let trace = Trace::start(&["--kubeconfig", &kubeconfig, "--node-name", "test-node"]);

    let e = lookup_until(&node, &pod, &trace, "named pod", |e| {
        e["pod"]["name"].is_string()
    });
    assert_eq!(e["pod"]["name"], "web-7d4b9f-xk2p1", "{e}");
    assert_eq!(e["pod"]["namespace"], "shop", "{e}");
    assert_eq!(e["pod"]["uid"], pod.pod_uid.as_str(), "{e}");
    assert_eq!(e["pod"]["workload"]["kind"], "Deployment", "{e}");
    assert_eq!(e["pod"]["workload"]["name"], "web", "{e}");
    assert_eq!(e["pod"]["labels"]["app"], "web", "{e}");
    assert_eq!(e["container"]["name"], "app", "{e}");
    assert_eq!(e["container"]["id"], pod.container_id.as_str(), "{e}");
    assert_eq!(e["node"], "test-node", "{e}");

    server.update_pod(&web.uid, |p| {
        p["metadata"]["labels"]["version"] = "v2".into()
    });
    lookup_until(&node, &pod, &trace, "changed labels", |e| {
        e["pod"]["labels"]["version"] == "v2"
    });

    server.delete_pod(&web.uid);
    let e = lookup_until(&node, &pod, &trace, "deleted pod", |e| e["pod"].is_object());
    assert_eq!(
        e["pod"]["name"], "web-7d4b9f-xk2p1",
        "a deleted pod keeps its name: {e}"
    );

    // The endpoint dies: events still flow, with the names already known.
    let port = server.port();
    let mut state = server.stop();
    let e = lookup_until(&node, &pod, &trace, "API down", |e| e["pod"].is_object());
    assert_eq!(e["pod"]["name"], "web-7d4b9f-xk2p1", "{e}");
    let warned = Instant::now() + Duration::from_secs(10);
    while !trace.stderr().contains("dnslens: kubernetes:") && Instant::now() < warned {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        trace.stderr().contains("dnslens: kubernetes:"),
        "no warning: {}",
        trace.stderr()
    );

    // It comes back with a second pod, which gets named.
    let other = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let api = api_pod(
        &other,
        "billing",
        "ledger-0",
        ("StatefulSet", "ledger"),
        "ledger",
    );
    state.add_pod(api.json());
    let _server = fake_apiserver::FakeApiServer::start_with(port, state);
    let e = lookup_until(&node, &other, &trace, "API back", |e| {
        e["pod"]["name"].is_string()
    });
    assert_eq!(e["pod"]["name"], "ledger-0", "{e}");
    assert_eq!(e["pod"]["workload"]["kind"], "StatefulSet", "{e}");
    stop_cleanly(trace);
}

/// The endpoint is absent when dnslens starts: events flow with container and pod ids, and the
/// names appear once the endpoint does.
#[test]
fn root_trace_kubernetes_api_absent_at_start() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::SystemdCrio, Hierarchies::Both);
    // Reserve a free port, then leave it empty.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = fake_apiserver::TempDir::new("e2e-absent");
    let kubeconfig =
        fake_apiserver::write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"));
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let trace = Trace::start(&["--kubeconfig", &kubeconfig, "--node-name", "test-node"]);
    let e = lookup_until(&node, &pod, &trace, "ids without API", |e| {
        e["pod"]["uid"].is_string()
    });
    assert_eq!(e["pod"]["uid"], pod.pod_uid.as_str(), "{e}");
    assert_eq!(e["container"]["runtime"], "cri-o", "{e}");
    assert!(e["pod"]["name"].is_null(), "{e}");

    let dns = api_pod(
        &pod,
        "kube-system",
        "coredns-5d78c9869d-abcde",
        ("ReplicaSet", "coredns-5d78c9869d"),
        "coredns",
    );
    let mut state = fake_apiserver::State::default();
    state.add_replicaset(
        "kube-system",
        "coredns-5d78c9869d",
        Some(("apps/v1", "Deployment", "coredns")),
    );
    state.add_pod(dns.json());
    let _server = fake_apiserver::FakeApiServer::start_with(port, state);
    let e = lookup_until(&node, &pod, &trace, "API appeared", |e| {
        e["pod"]["name"].is_string()
    });
    assert_eq!(e["pod"]["name"], "coredns-5d78c9869d-abcde", "{e}");
    assert_eq!(e["pod"]["workload"]["name"], "coredns", "{e}");
    stop_cleanly(trace);
}

/// `dnslens whois <pid>` for a live process in a pod's container: the chain down to the
/// workload, with names from the Kubernetes API endpoint on loopback.
#[test]
fn root_whois_shows_the_chain_for_a_live_process() {
    if !have_root() {
        return;
    }
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let join: String = pod
        .procs_files()
        .iter()
        .map(|f| format!("echo $$ > {}; ", f.display()))
        .collect();
    let mut sleeper = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{join}exec sleep 30"))
        .spawn()
        .expect("start sleep");
    let pid = sleeper.id().to_string();
    // Until the process has joined its cgroup.
    let joined = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .contains(&pod.container_id)
        && Instant::now() < joined
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = fake_apiserver::FakeApiServer::start();
    let dir = fake_apiserver::TempDir::new("e2e-whois");
    let kubeconfig = fake_apiserver::write_kubeconfig(dir.path(), &server.url());
    let web = api_pod(
        &pod,
        "shop",
        "web-7d4b9f-xk2p1",
        ("ReplicaSet", "web-7d4b9f"),
        "app",
    );
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")))
    });
    server.add_pod(&web);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dnslens"))
        .args(["whois", &pid, "--node-name", "test-node", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("run dnslens whois");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for want in [
        pod.path.as_str(),
        pod.container_id.as_str(),
        "containerd",
        "shop/web-7d4b9f-xk2p1",
        "Deployment",
        "sleep",
    ] {
        assert!(
            stdout.contains(want),
            "whois output lacks {want:?}:\n{stdout}"
        );
    }
}
