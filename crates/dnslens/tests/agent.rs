//! `dnslens agent` end to end (issue 6): the agent on the real kernel, scraped by a real
//! Prometheus (Debian's `prometheus`) on loopback while real resolvers query dnsmasq from two
//! pods of the test node; PromQL through Prometheus's HTTP API must give each pod's query
//! counts by type and its response counts by rcode, as dnsmasq logged them. `promtool check
//! metrics` must accept the exposition, and SIGTERM must end the agent cleanly with its counters.
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI, which runs as root).
//! Everything they start is stopped by its pid, and everything they create is removed, also on
//! failure.

mod node;
// The fake Kubernetes API server that the cluster crate's tests use too.
use dnslens_testkit::fake_apiserver;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node::agent::{free_port, get, promtool_check, Agent};
use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::dnsmasq::{HOST, NX};
use node::net::{Node, Run};
use node::resolvers::tool;
use node::{have_root, have_tool, unique_tag, wait_until, ChildGuard, TempDir};
use serde_json::Value;

/// `%XX` for everything but unreserved characters: a PromQL query in a URL.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scraping `target` every second, its data in a temporary directory.
struct Prometheus {
    child: ChildGuard,
    address: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let (tag, _) = unique_tag();
        let dir = TempDir::new(&format!("{tag}-prometheus"));
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: dnslens\n    honor_labels: true\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut prometheus = Prometheus {
            child: ChildGuard::new(child),
            address,
            dir,
        };
        let ready = wait_until(Duration::from_secs(60), || {
            prometheus.child.wait_timeout(Duration::ZERO).is_some()
                || get(address, "/-/ready").is_some_and(|(code, _)| code == 200)
        });
        assert!(
            ready && prometheus.child.wait_timeout(Duration::ZERO).is_none(),
            "prometheus did not start:\n{}",
            prometheus.log()
        );
        prometheus
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant PromQL query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (code, body) = get(self.address, &path).expect("the Prometheus API answers");
        assert_eq!(code, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// `sum by (pod, BY) (METRIC{SELECTOR})` as `(pod, BY value) -> count`.
    fn counts(&self, metric: &str, selector: &str, by: &str) -> Counts {
        self.query(&format!("sum by (pod, {by}) ({metric}{{{selector}}})"))
            .into_iter()
            .map(|(l, v)| ((l["pod"].clone(), l[by].clone()), v as u64))
            .collect()
    }
}

/// Counts by (pod uid, qtype or rcode).
type Counts = BTreeMap<(String, String), u64>;

/// Adds what dnsmasq logged for the runs in `pod`: queries by type, responses by rcode.
fn expect(
    node: &Node,
    pod: &PodCgroup,
    runs: &[Run],
    queries: &mut Counts,
    responses: &mut Counts,
) {
    let log = node.dnsmasq_log();
    for q in runs.iter().flat_map(|r| &r.log_queries) {
        *queries
            .entry((pod.pod_uid.clone(), q.qtype.clone()))
            .or_default() += 1;
        *responses
            .entry((pod.pod_uid.clone(), log.rcode(q).to_string()))
            .or_default() += 1;
    }
}

/// The agent with `--no-kubernetes`, a real Prometheus scraping it every second, and real
/// resolvers (dig, glibc getent) in two pods: per-pod counts by qtype and rcode through PromQL
/// equal dnsmasq's log; the JSON lines hold the same queries; promtool accepts the scrape;
/// SIGTERM ends the agent with exit 0 and its counters.
#[test]
fn root_agent_metrics_reach_a_real_prometheus() {
    if !have_root() || !have_tool("prometheus") || !have_tool("promtool") {
        return;
    }
    let node = Node::start(1);
    let web = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let batch = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-agent"));
    let output = dir.path().join("events.jsonl");
    let mut agent = Agent::start(&[
        "--no-kubernetes",
        "--output",
        output.to_str().unwrap(),
        "--timeout",
        "2s",
    ]);
    agent.wait_ready();
    let (code, body) = get(agent.address, "/healthz").expect("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let prometheus = Prometheus::start(agent.address);

    // web: dig, 4 names that exist and 2 that do not; batch: glibc, 3 lookups of A records
    // (ahostsv4) and one of a name that does not exist.
    let dig = tool("dig");
    let getent = tool("getent");
    let mut web_runs = Vec::new();
    for name in [HOST, HOST, HOST, HOST, NX, NX] {
        let run = node.run("dig", 0, Some(&web), &dig, &["+tries=1", name, "A"]);
        run.expect_ok().expect_queries();
        web_runs.push(run);
    }
    let mut batch_runs = Vec::new();
    for (name, code) in [(HOST, 0), (HOST, 0), (HOST, 0), (NX, 2)] {
        let run = node.run("getent", 0, Some(&batch), &getent, &["ahostsv4", name]);
        run.expect_exit(code).expect_queries();
        batch_runs.push(run);
    }
    let (mut want_queries, mut want_responses) = (Counts::new(), Counts::new());
    expect(
        &node,
        &web,
        &web_runs,
        &mut want_queries,
        &mut want_responses,
    );
    expect(
        &node,
        &batch,
        &batch_runs,
        &mut want_queries,
        &mut want_responses,
    );
    assert!(want_responses.contains_key(&(web.pod_uid.clone(), "NXDOMAIN".to_string())));

    let pods = format!("pod=~\"{}|{}\"", web.pod_uid, batch.pod_uid);
    let mut got = (BTreeMap::new(), BTreeMap::new());
    let matched = wait_until(Duration::from_secs(30), || {
        got = (
            prometheus.counts("dnslens_queries_total", &pods, "qtype"),
            prometheus.counts("dnslens_responses_total", &pods, "rcode"),
        );
        got == (want_queries.clone(), want_responses.clone())
    });
    assert!(
        matched,
        "PromQL per-pod counts differ from dnsmasq's log\n queries: got {:?}\n  wanted {want_queries:?}\n responses: got {:?}\n  wanted {want_responses:?}\nagent stderr:\n{}\nprometheus log:\n{}",
        got.0,
        got.1,
        agent.stderr(),
        prometheus.log()
    );

    // Labels: without a cluster, pods by uid, containers by short id, namespace and workload
    // (unknown); process names are not labels of pods.
    let series = prometheus.query(&format!("dnslens_queries_total{{pod=\"{}\"}}", web.pod_uid));
    let labels = &series.first().expect("web's queries").0;
    assert_eq!(labels["namespace"], "(unknown)", "{labels:?}");
    assert_eq!(labels["workload"], "(unknown)", "{labels:?}");
    assert_eq!(labels["container"], &web.container_id[..12], "{labels:?}");
    let latency = prometheus.query(
        "sum(dnslens_response_latency_seconds_count{namespace=\"(unknown)\", workload=\"(unknown)\"})",
    );
    let answered: u64 = want_responses.values().sum();
    assert!(
        latency.first().is_some_and(|(_, v)| *v as u64 >= answered),
        "{latency:?}"
    );
    let up = prometheus.query("up{job=\"dnslens\"}");
    assert_eq!(up.first().map(|(_, v)| *v), Some(1.0), "{up:?}");
    for health in [
        "dnslens_events_lost_total",
        "dnslens_ringbuf_size_bytes",
        "dnslens_events_captured_total",
        "dnslens_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(
            !prometheus.query(health).is_empty(),
            "{health} was not scraped"
        );
    }

    // The exposition as curl and promtool read it.
    let (code, text) = get(agent.address, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    let checked = promtool_check(&text);
    assert!(
        checked.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let (status, stderr) = agent.terminate();
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "SIGTERM: exit {status:?}\n{stderr}"
    );
    for counters in [
        "dnslens: kernel:",
        "dnslens: pairing:",
        "dnslens: detectors:",
    ] {
        assert!(
            stderr.contains(counters),
            "no {counters:?} on exit:\n{stderr}"
        );
    }

    // The JSON lines hold every query of the pods (no sampling asked), whole.
    let text = fs::read_to_string(&output).expect("the output file");
    assert!(text.ends_with('\n'));
    let mut in_file = Counts::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let uid = e["pod"]["uid"].as_str().unwrap_or("");
        if e["kind"] == "query"
            && e["role"] == "client"
            && (uid == web.pod_uid || uid == batch.pod_uid)
        {
            *in_file
                .entry((uid.to_string(), e["qtype"].as_str().unwrap().to_string()))
                .or_default() += 1;
        }
    }
    assert_eq!(in_file, want_queries, "queries in {}", output.display());
    drop(prometheus);
    assert!(Path::new(&output).exists());
}

/// With a cluster, `/readyz` waits for the first pod list (an API server that refuses the list
/// keeps the agent unready, and one that grants it makes it ready), and the metrics name the
/// pod, its namespace, workload and container.
#[test]
fn root_agent_is_ready_once_pods_are_listed_and_names_them() {
    if !have_root() {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let server = fake_apiserver::FakeApiServer::start();
    let dir = fake_apiserver::TempDir::new("agent");
    let kubeconfig = fake_apiserver::write_kubeconfig(dir.path(), &server.url());
    let mut web = fake_apiserver::pod("shop", "web-7d4b9f-xk2p1", "test-node")
        .owner("apps/v1", "ReplicaSet", "web-7d4b9f")
        .container("app", &pod.container_id);
    web.uid = pod.pod_uid.clone();
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")));
        s.forbid("pods");
    });
    server.add_pod(&web);
    let mut agent = Agent::start(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "test-node",
        "--no-detect",
    ]);
    let live = wait_until(Duration::from_secs(60), || {
        get(agent.address, "/healthz").is_some_and(|(code, _)| code == 200)
    });
    assert!(live, "never live:\n{}", agent.stderr());
    let (code, body) = get(agent.address, "/readyz").expect("/readyz");
    assert_eq!(
        (code, body.as_str()),
        (503, "waiting for the first pod list from the API server\n"),
        "{}",
        agent.stderr()
    );
    server.with_state(|s| s.allow("pods"));
    agent.wait_ready();

    let getent = tool("getent");
    let metrics = || {
        get(agent.address, "/metrics")
            .map(|(_, text)| text)
            .unwrap_or_default()
    };
    let want = "dnslens_queries_total{namespace=\"shop\",workload=\"Deployment/web\",pod=\"web-7d4b9f-xk2p1\",container=\"app\",qtype=\"A\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while !metrics().contains(want) && Instant::now() < deadline {
        node.run("getent", 0, Some(&pod), &getent, &["ahostsv4", HOST])
            .expect_ok();
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = metrics();
    assert!(
        text.contains(want),
        "no {want} in:\n{text}\nstderr:\n{}",
        agent.stderr()
    );
    assert!(
        text.contains("dnslens_response_latency_seconds_count{namespace=\"shop\",workload=\"Deployment/web\"}"),
        "{text}"
    );
    let (status, stderr) = agent.terminate();
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
}

/// The capability sets and no_new_privs of each thread of `pid`, from /proc/PID/task/*/status.
fn thread_privileges(pid: u32) -> Vec<BTreeMap<String, u64>> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("the agent's threads");
    tasks
        .map(|task| {
            let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .filter_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    let value = value.trim();
                    let parsed = match key {
                        "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                            u64::from_str_radix(value, 16).ok()?
                        }
                        "NoNewPrivs" => value.parse().ok()?,
                        _ => return None,
                    };
                    Some((key.to_string(), parsed))
                })
                .collect()
        })
        .collect()
}

/// Once attached (issue 13), every thread of the agent has given up CAP_BPF, CAP_SYS_ADMIN,
/// CAP_NET_ADMIN and CAP_PERFMON from its effective, permitted and bounding sets, keeps
/// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (and CAP_DAC_OVERRIDE, for its --output file), has
/// nothing inheritable or ambient and no_new_privs set; and what it kept suffices: a query that
/// a resolver run as another user (`nobody`) makes afterwards is captured with its pod and its
/// executable's path.
#[test]
fn root_agent_drops_capabilities_after_attaching() {
    if !have_root() || !have_tool("setpriv") {
        return;
    }
    const DAC_OVERRIDE: u64 = 1 << 1;
    const DAC_READ_SEARCH: u64 = 1 << 2;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_PTRACE: u64 = 1 << 19;
    const SYS_ADMIN: u64 = 1 << 21;
    const PERFMON: u64 = 1 << 38;
    const BPF: u64 = 1 << 39;
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-agent-caps"));
    let output = dir.path().join("events.jsonl");
    let mut agent = Agent::start(&[
        "--no-kubernetes",
        "--no-detect",
        "--output",
        output.to_str().unwrap(),
    ]);
    agent.wait_ready();
    let threads = thread_privileges(agent.child.pid());
    assert!(threads.len() > 1, "the agent's threads: {threads:?}");
    for t in &threads {
        for set in ["CapEff", "CapPrm"] {
            assert_eq!(
                t[set],
                SYS_PTRACE | DAC_READ_SEARCH | DAC_OVERRIDE,
                "{set} of a thread: {t:?}\n{}",
                agent.stderr()
            );
        }
        assert_eq!(
            t["CapBnd"] & (BPF | SYS_ADMIN | NET_ADMIN | PERFMON),
            0,
            "{t:?}"
        );
        assert_eq!(
            (t["CapInh"], t["CapAmb"], t["NoNewPrivs"]),
            (0, 0, 1),
            "{t:?}"
        );
    }

    let dig = tool("dig");
    let run = node.run(
        "dig-nobody",
        0,
        Some(&pod),
        Path::new("/usr/bin/setpriv"),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            dig.to_str().unwrap(),
            "+tries=1",
            HOST,
            "A",
        ],
    );
    run.expect_ok().expect_queries();
    let want_exe = dig.display().to_string();
    let mut seen = Vec::new();
    let captured = wait_until(Duration::from_secs(15), || {
        let text = fs::read_to_string(&output).unwrap_or_default();
        seen = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["kind"] == "query" && e["process"]["pid"] == run.pid)
            .collect();
        !seen.is_empty()
    });
    assert!(
        captured,
        "the query of pid {} was not captured\nstderr:\n{}",
        run.pid,
        agent.stderr()
    );
    for e in &seen {
        assert_eq!(e["process"]["exe"], want_exe.as_str(), "{e}");
        assert_eq!(e["process"]["uid"], 65534, "{e}");
        assert_eq!(e["pod"]["uid"], pod.pod_uid.as_str(), "{e}");
    }
    let (status, stderr) = agent.terminate();
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
