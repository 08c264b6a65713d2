//! The detectors on the real kernel: `dnslens trace --json` watching simulators in the test
//! node, each in a pod cgroup named as the kubelet names it, must raise exactly the alert its
//! behaviour calls for, naming that pod and process; ordinary workloads must raise none. A
//! saved trace replayed with `dnslens detect --input` raises the same alert.
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI, which runs as
//! root). They run in parallel, each on its own node, and every dnslens sees the whole host's
//! DNS: alerts are judged by the pod they name.

mod node;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dnslens_detect::score::looks_random;
use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::check::stop_problems;
use node::dnsmasq::{self, HOST};
use node::net::{Node, Run};
use node::resolvers::{self, python, tool};
use node::trace::{Stopped, Trace};
use node::{have_root, have_tool, run_ok, unique_tag, wait_until, ChildGuard, TempDir};
use serde_json::Value;

/// Sends DNS queries over one connected UDP socket, paced, and prints how many were answered:
/// `SERVER QTYPE RATE LINGER NAME...`; a NAME `b32:N:DOMAIN` stands for N names under DOMAIN
/// with a random 40-character base32 label each (a tunnel's encoding). It stays LINGER
/// seconds after the last answer, so dnslens can still read its /proc (resolv.conf).
const DNS_SIM: &str = r#"
import base64, os, socket, struct, sys, time
server, qtype, rate, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
names = []
for arg in sys.argv[5:]:
    if arg.startswith("b32:"):
        _, n, domain = arg.split(":", 2)
        for _ in range(int(n)):
            names.append(base64.b32encode(os.urandom(25)).decode().lower() + "." + domain)
    else:
        names.append(arg)
s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.settimeout(1.0)
answered = 0
start = time.monotonic()
for i, name in enumerate(names):
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    s.send(q)
    try:
        while s.recv(4096)[:2] != q[:2]:
            pass
        answered += 1
    except socket.timeout:
        pass
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
time.sleep(linger)
print("answered", answered, "of", len(names))
"#;

/// An implant: deletes its own executable, then resolves each argument a second apart.
const DELETED_SELF: &str = r#"
import os, socket, sys, time
os.unlink(sys.executable)
for name in sys.argv[1:]:
    print(name, sorted({a[4][0] for a in socket.getaddrinfo(name, None)}))
    time.sleep(1)
"#;

/// Query types as DNS_SIM takes them.
const TXT: &str = "16";
const A: &str = "1";

/// The alerts dnslens printed about `pod`.
fn pod_alerts<'a>(events: &'a [Value], pod: &PodCgroup) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "alert" && e["cgroup"] == pod.path.as_str())
        .collect()
}

/// Runs `body` (the simulators) under `dnslens trace --json ARGS`, waits (up to `wait`) until
/// an alert names `pod`, then stops dnslens (whose end fails pending lookups and prints
/// summaries, so a wrong late alert shows too).
fn traced(
    args: &[&str],
    pod: &PodCgroup,
    wait: Duration,
    body: impl FnOnce() -> Vec<Run>,
) -> (Vec<Run>, Stopped) {
    let trace = Trace::with_detectors(args);
    let runs = body();
    wait_until(wait, || !pod_alerts(&trace.events(), pod).is_empty());
    (runs, trace.stop())
}

/// What went wrong with the alerts about `pod`: they must all come from `detector`, the first
/// (count 1) exactly once, with `severity`, naming the pod and `run`'s process.
fn alert_problems(
    stopped: &Stopped,
    pod: &PodCgroup,
    run: &Run,
    detector: &str,
    severity: &str,
) -> Vec<String> {
    let alerts = pod_alerts(&stopped.events, pod);
    let mut problems = stop_problems(stopped);
    let of_detector: Vec<&&Value> = alerts
        .iter()
        .filter(|a| a["detector"] == detector)
        .collect();
    if of_detector.is_empty() {
        problems.push(format!("no {detector} alert about the pod"));
    }
    let others: Vec<&&Value> = alerts
        .iter()
        .filter(|a| a["detector"] != detector)
        .collect();
    if !others.is_empty() {
        problems.push(format!(
            "alerts of other detectors about the pod: {others:?}"
        ));
    }
    // A summary of repeats spans the aggregation window (300 s); a first alert its detector's.
    let firsts = of_detector.iter().filter(|a| a["window_s"] != 300).count();
    if firsts > 1 {
        problems.push(format!("{firsts} first {detector} alerts, wanted one"));
    }
    for a in of_detector {
        let want = [
            ("severity", &a["severity"], Value::from(severity)),
            ("process.pid", &a["process"]["pid"], Value::from(run.pid)),
            (
                "process.name",
                &a["process"]["name"],
                Value::from(run.name.as_str()),
            ),
            (
                "pod.uid",
                &a["pod"]["uid"],
                Value::from(pod.pod_uid.as_str()),
            ),
            (
                "container.id",
                &a["container"]["id"],
                Value::from(pod.container_id.as_str()),
            ),
        ];
        for (what, got, want) in want {
            if *got != want {
                problems.push(format!(
                    "{detector} alert: {what} is {got}, wanted {want}: {a}"
                ));
            }
        }
    }
    problems
}

/// A failure report: the problems, the runs' output, this pod's alerts, dnslens's stderr.
fn report(problems: &[String], pod: &PodCgroup, runs: &[Run], stopped: &Stopped) -> String {
    let mut s = format!("{} problem(s):\n{}\n", problems.len(), problems.join("\n"));
    for run in runs {
        let _ = writeln!(
            s,
            "--- run {} (pid {}, {}): {}{}",
            run.label, run.pid, run.status, run.stdout, run.stderr
        );
    }
    s += "--- alerts about the pod:\n";
    for a in pod_alerts(&stopped.events, pod) {
        let _ = writeln!(s, "{a}");
    }
    let alerts = stopped
        .events
        .iter()
        .filter(|e| e["kind"] == "alert")
        .count();
    let _ = writeln!(
        s,
        "--- {alerts} alerts in all; dnslens stderr:\n{}",
        stopped.stderr
    );
    s
}

fn assert_alert(stopped: &Stopped, pod: &PodCgroup, runs: &[Run], detector: &str, severity: &str) {
    let problems = alert_problems(stopped, pod, &runs[0], detector, severity);
    assert!(
        problems.is_empty(),
        "{}",
        report(&problems, pod, runs, stopped)
    );
}

/// `dnslens detect --input FILE ARGS` over `events` written back as JSON lines: its alerts,
/// and its stderr.
fn replay(events: &[Value], args: &[&str]) -> (Vec<Value>, String) {
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-replay"));
    let input = dir.path().join("trace.jsonl");
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&input, lines).expect("write the trace");
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_dnslens"))
            .args(["detect", "--json", "--input"])
            .arg(&input)
            .args(args),
    );
    let alerts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (alerts, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A tunnel client: 100 TXT queries a second for 7 s, each for a random base32 label under one
/// domain that dnsmasq answers (NOERROR, no data). Only tunneling (high, TXT) fires. The trace
/// replayed with `dnslens detect` raises it again.
#[test]
fn root_detect_tunnel_client() {
    if !have_root() {
        return;
    }
    const ZONE: &str = "dnslens-tunnel.net";
    let zone = [
        format!("--local=/{ZONE}/"),
        format!("--address=/{ZONE}/203.0.113.50"),
    ];
    let node = Node::start_with(1, &zone);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let server = node.server.v4.to_string();
    let names = format!("b32:700:x.{ZONE}");
    let (runs, stopped) = traced(&[], &pod, Duration::from_secs(5), || {
        let args = ["-c", DNS_SIM, &server, TXT, "100", "0.5", &names];
        vec![node.run("tunnel", 0, Some(&pod), &python(), &args)]
    });
    runs[0].expect_ok().expect_output("answered 700 of 700");
    assert_alert(&stopped, &pod, &runs, "tunneling", "high");
    let alert = pod_alerts(&stopped.events, &pod)[0];
    assert_eq!(alert["evidence"]["domain"], ZONE, "{alert}");
    assert!(
        alert["evidence"]["queries"].as_u64() >= Some(500),
        "{alert}"
    );

    let (alerts, stderr) = replay(&stopped.events, &[]);
    let ours: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["cgroup"] == pod.path.as_str())
        .collect();
    assert!(
        !ours.is_empty()
            && ours
                .iter()
                .all(|a| a["detector"] == "tunneling" && a["process"]["pid"] == runs[0].pid),
        "replayed: {ours:?}\n{stderr}"
    );
    assert!(stderr.contains(" 0 bad lines skipped"), "{stderr}");
}

/// A DGA: random-looking names under .com, .net and .org, each answered NXDOMAIN (sent as
/// they are, so no search list adds lookups): dga (high), not nxdomain (12 failed lookups,
/// under its 20).
#[test]
fn root_detect_dga() {
    if !have_root() {
        return;
    }
    let zone = ["com", "net", "org"].map(|tld| format!("--local=/{tld}/"));
    let node = Node::start_with(1, &zone);
    let pod = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let names = random_domains(12);
    let server = node.server.v4.to_string();
    let (runs, stopped) = traced(&[], &pod, Duration::from_secs(15), || {
        let mut args = vec!["-c", DNS_SIM, &server, A, "5", "0"];
        args.extend(names.iter().map(String::as_str));
        vec![node.run("dga", 0, Some(&pod), &python(), &args)]
    });
    runs[0].expect_ok().expect_output("answered 12 of 12");
    let log = node.dnsmasq_log();
    assert!(
        runs[0]
            .log_queries
            .iter()
            .all(|q| log.rcode(q) == "NXDOMAIN"),
        "{:?}",
        runs[0].log_queries
    );
    assert_alert(&stopped, &pod, &runs, "dga", "high");
}

/// A DNS server's own log, replayed: `trace --role server --dnstap file:` records dnsmasq's
/// side (CLIENT_QUERY, CLIENT_RESPONSE) while the tunnel simulator queries from one client
/// and the DGA from another; `detect --input` on that file judges each client address as a
/// process and raises tunneling for the first and dga for the second, naming the address.
#[test]
fn root_detect_replays_a_servers_dnstap_per_client_address() {
    if !have_root() {
        return;
    }
    const ZONE: &str = "dnslens-tunnel.net";
    let mut zone = vec![
        format!("--local=/{ZONE}/"),
        format!("--address=/{ZONE}/203.0.113.50"),
    ];
    zone.extend(["com", "net", "org"].map(|tld| format!("--local=/{tld}/")));
    let node = Node::start_with(2, &zone);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-dnstap"));
    let file = dir.path().join("server.dnstap");
    let tap = format!("file:{}", file.display());
    let trace = Trace::start(&["--role", "server", "--dnstap", &tap]);
    let server = node.server.v4.to_string();
    let names = format!("b32:700:x.{ZONE}");
    let tunnel = ["-c", DNS_SIM, &server, TXT, "100", "0", &names];
    let tunnel = node.run("tunnel", 0, None, &python(), &tunnel);
    let domains = random_domains(12);
    let mut dga = vec!["-c", DNS_SIM, &server, A, "5", "0"];
    dga.extend(domains.iter().map(String::as_str));
    let dga = node.run("dga", 1, None, &python(), &dga);
    tunnel.expect_ok().expect_output("answered 700 of 700");
    dga.expect_ok().expect_output("answered 12 of 12");
    let stopped = trace.stop();
    assert!(stopped.stderr.contains(" 0 dropped"), "{}", stopped.stderr);

    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_dnslens"))
            .args(["detect", "--json", "--input"])
            .arg(&file),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (client, detector) in [(0, "tunneling"), (1, "dga")] {
        let subject = format!("client {} ", node.clients[client].v4);
        let about: Vec<&str> = alerts
            .iter()
            .filter(|a| a["summary"].as_str().is_some_and(|s| s.contains(&subject)))
            .inspect(|a| assert_eq!(a["client"], node.clients[client].v4.to_string(), "{a}"))
            .map(|a| a["detector"].as_str().unwrap_or_default())
            .collect();
        assert!(
            !about.is_empty() && about.iter().all(|d| *d == detector),
            "{subject}: {about:?}\n{alerts:?}\n{stderr}"
        );
    }
    assert!(stderr.contains(" 0 bad messages skipped"), "{stderr}");
}

/// `n` registered domains whose label the detectors' scorer calls random, as a DGA makes them.
fn random_domains(n: usize) -> Vec<String> {
    let mut seed = u64::from(std::process::id()) | 1;
    let mut names = Vec::new();
    let tlds = ["com", "net", "org"];
    while names.len() < n {
        let label: String = (0..13)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed % 36) as usize] as char
            })
            .collect();
        if looks_random(&label) {
            names.push(format!("{label}.{}", tlds[names.len() % 3]));
        }
    }
    names
}

/// A program copied to /tmp, started, and deleted while it resolves names: unknown_binary
/// (high: it runs from a temporary directory, and its file is gone).
#[test]
fn root_detect_binary_deleted_from_tmp() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::SystemdCrio, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-implant"));
    assert!(dir.path().starts_with("/tmp"), "{}", dir.path().display());
    let implant = dir.path().join("implant");
    std::fs::copy(python(), &implant).expect("copy python to /tmp");
    let (runs, stopped) = traced(&[], &pod, Duration::from_secs(5), || {
        let args = ["-c", DELETED_SELF, HOST, HOST];
        vec![node.run("implant", 0, Some(&pod), &implant, &args)]
    });
    runs[0].expect_ok().expect_output(dnsmasq::HOST_V4);
    assert!(!implant.exists(), "the implant did not delete itself");
    assert_alert(&stopped, &pod, &runs, "unknown_binary", "high");
    let alert = pod_alerts(&stopped.events, &pod)[0];
    let exe = alert["evidence"]["exe"].as_str().unwrap_or_default();
    assert_eq!(exe, format!("{} (deleted)", implant.display()), "{alert}");
}

/// A query sent straight to a second DNS server in the node, not the one resolv.conf names:
/// resolver_bypass (medium), naming that server.
#[test]
fn root_detect_resolver_bypass() {
    if !have_root() {
        return;
    }
    let mut node = Node::start(1);
    let second = node.start_second_server().to_string();
    let pod = PodCgroup::new(Driver::SystemdGuaranteed, Hierarchies::Both);
    let (runs, stopped) = traced(&[], &pod, Duration::from_secs(5), || {
        let args = ["-c", DNS_SIM, &second, A, "10", "1.5", HOST];
        vec![node.run("bypass", 0, Some(&pod), &python(), &args)]
    });
    runs[0].expect_ok().expect_output("answered 1 of 1");
    assert_alert(&stopped, &pod, &runs, "resolver_bypass", "medium");
    let alert = pod_alerts(&stopped.events, &pod)[0];
    assert_eq!(
        alert["evidence"]["server"],
        format!("{second}:53"),
        "{alert}"
    );
    assert_eq!(
        alert["evidence"]["configured"],
        serde_json::json!([node.server.v4.to_string()]),
        "{alert}"
    );
}

/// Accepts TCP connections on `ADDR PORT` until killed.
const LISTENER: &str = r#"
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// Command-and-control: resolves its server's name, connects to it over TCP at once, and
/// stays a moment (`NAME PORT`).
const BEACON: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("connected to", c.getpeername()[0])
c.close()
time.sleep(0.5)
"#;

/// A C2-style beacon: a name the workload never resolved, then a TCP connect to its answer (a
/// listener in the node's server namespace, on an address that stands for one outside):
/// new_domain_connect (high). The workload is new, so the test config turns the warm-up off
/// (`warmup_s = 0`). Replayed with `dnslens detect` (the trace has `--connects`), it fires
/// again.
#[test]
fn root_detect_c2_lookup_then_connect() {
    if !have_root() {
        return;
    }
    const ZONE: &str = "dnslens-c2.net";
    const C2_ADDR: &str = "203.0.113.80";
    const PORT: &str = "8443";
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-c2"));
    let config = dir.path().join("detect.toml");
    let config_text = "[new_domain_connect]\nwarmup_s = 0\n";
    std::fs::write(&config, config_text).expect("write the detector config");
    let config = config.to_str().unwrap();
    let zone = [
        format!("--local=/{ZONE}/"),
        format!("--address=/{ZONE}/{C2_ADDR}"),
    ];
    let mut node = Node::start_with(1, &zone);
    node.add_outside_address(C2_ADDR.parse().unwrap());
    let pod = PodCgroup::new(Driver::KindNested, Hierarchies::Both);
    let mut listener = ChildGuard::new(
        Command::new(tool("ip"))
            .args(["netns", "exec", &node.server.ns])
            .arg(python())
            .args(["-c", LISTENER, C2_ADDR, PORT])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the listener"),
    );
    let mut ready = String::new();
    let stdout = listener.child.stdout.take().expect("listener stdout");
    BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("read the listener");
    assert_eq!(ready.trim(), "listening");
    let name = format!("beacon.{ZONE}");
    let args = ["--detect-config", config, "--connects"];
    let (runs, stopped) = traced(&args, &pod, Duration::from_secs(5), || {
        let args = ["-c", BEACON, &name, PORT];
        vec![node.run("beacon", 0, Some(&pod), &python(), &args)]
    });
    drop(listener);
    runs[0]
        .expect_ok()
        .expect_output(&format!("connected to {C2_ADDR}"));
    assert_alert(&stopped, &pod, &runs, "new_domain_connect", "high");
    let alert = pod_alerts(&stopped.events, &pod)[0];
    assert_eq!(alert["evidence"]["domain"], ZONE, "{alert}");
    assert_eq!(
        alert["evidence"]["address"],
        format!("{C2_ADDR}:{PORT}"),
        "{alert}"
    );
    let connects = stopped
        .events
        .iter()
        .filter(|e| e["kind"] == "connect" && e["cgroup"] == pod.path.as_str())
        .count();
    assert_eq!(connects, 1, "connect lines of the pod");

    let (alerts, stderr) = replay(&stopped.events, &["--detect-config", config]);
    let ours: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["cgroup"] == pod.path.as_str())
        .collect();
    assert!(
        !ours.is_empty() && ours.iter().all(|a| a["detector"] == "new_domain_connect"),
        "replayed: {ours:?}\n{stderr}"
    );
}

/// A minute of ordinary workloads in a pod whose resolv.conf is a cluster's (search list,
/// ndots:5): glibc `getent` for services of its namespace and another, Python for a name
/// outside the cluster (the search list is walked first), Go's resolver, and a missing
/// service (NXDOMAIN for every expansion). The first 10 s are learned into a baseline
/// (`--learn`), which is saved; after it the unexpected-domain and unknown-binary checks judge
/// against it. Not one alert may name the pod.
#[test]
fn root_detect_ordinary_workloads_stay_quiet() {
    if !have_root() {
        return;
    }
    let zone = [
        "--local=/cluster.local/".to_string(),
        "--host-record=web.default.svc.cluster.local,10.96.0.20".to_string(),
        "--host-record=db.other.svc.cluster.local,10.96.0.30".to_string(),
        // Single-label names (the last try for `missing-svc`) get NXDOMAIN, as upstream would.
        "--domain-needed".to_string(),
    ];
    let mut node = Node::start_with(1, &zone);
    node.write_resolv_conf_text(
        0,
        &format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {}\noptions ndots:5 timeout:2 attempts:2\n",
            node.server.v4
        ),
    );
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-baseline"));
    let baseline = dir.path().join("baseline.json");
    let baseline_arg = baseline.to_str().unwrap();
    // Installed, not run from target/: a checkout under /tmp would make it a temp-dir binary.
    let go = have_tool("go").then(|| resolvers::Installed::new(&resolvers::goresolve(), &tag));
    let getent = tool("getent");
    let py = python();
    let trace = Trace::with_detectors(&["--learn", "10s", "--baseline", baseline_arg]);
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut turn = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let turn_start = Instant::now();
        let label = |what: &str| format!("{what}-{turn}");
        let run = |what: &str, program: &Path, args: &[&str]| {
            node.run(&label(what), 0, Some(&pod), program, args)
        };
        runs.push(run("getent-svc", &getent, &["ahosts", "web"]));
        runs.push(run("getent-other-ns", &getent, &["ahosts", "db.other"]));
        let py_args = ["-c", resolvers::PYTHON_GETADDRINFO, HOST];
        runs.push(run("python-outside", &py, &py_args));
        if let Some(go) = &go {
            let args = ["db.other.svc.cluster.local", "web"];
            runs.push(run("go-svc", go.path(), &args));
        }
        if turn % 5 == 0 {
            runs.push(run("getent-missing", &getent, &["ahosts", "missing-svc"]));
        }
        turn += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(turn_start.elapsed()));
    }
    // Every lookup as it should be: the harness works, so silence means something.
    for run in &runs {
        if run.label.starts_with("getent-missing") {
            run.expect_exit(2);
        } else {
            run.expect_ok();
        }
    }
    let learned = wait_until(Duration::from_secs(5), || baseline.exists());
    let stopped = trace.stop();
    let mut problems = stop_problems(&stopped);
    let alerts = pod_alerts(&stopped.events, &pod);
    if !alerts.is_empty() {
        problems.push(format!("{} alerts about the pod", alerts.len()));
    }
    if !learned || !stopped.stderr.contains("judging against it from now on") {
        problems.push("the learned baseline was not saved after 10 s".to_string());
    }
    let saved: Value = std::fs::read_to_string(&baseline)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let workload = &saved["workloads"][format!("pod:{}", pod.pod_uid)];
    for (what, want) in [
        ("domains", "dnslens.test"),
        ("domains", "web.default.svc.cluster.local"),
        ("executables", getent.to_str().unwrap()),
    ] {
        let has = workload[what]
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d == want));
        if !has {
            problems.push(format!("the baseline's {what} lack {want}: {saved}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}",
        report(&problems, &pod, &runs[..1], &stopped)
    );
}
