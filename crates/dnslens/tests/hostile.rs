//! Hostile workloads against a live `dnslens agent` (issue 13): each attack runs while a victim
//! pod in another network namespace and cgroup resolves names, and the agent must go on seeing
//! the victim, answering /healthz within a second, staying under its memory bound, and stopping
//! on SIGTERM within 5 s without a panic. The attacks: a pod flooding the ring buffer, HTTP
//! clients that try to stop the endpoints, a CNAME bomb of records in queries, a TCP flood that
//! promises 64 KiB messages and sends most of them, and a process whose resolv.conf is a FIFO.
//! (A hostile process name on a terminal is in faults.rs, with the other table checks.)
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI, which runs as
//! root). All traffic stays inside the test node's namespaces.

mod node;

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dnslens_testkit::http_attacks;
use node::agent::{get, Agent};
use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::dnsmasq::DOMAIN;
use node::net::Node;
use node::resolvers::{python, tool};
use node::{have_root, unique_tag, wait_until, TempDir};
use serde_json::Value;

/// The agent's peak RSS bound through every attack here (docs/security.md).
const PEAK_RSS_BOUND_KIB: u64 = 256 << 10;

/// The tests here flood: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Sends 4 KiB datagrams to `argv[1]`:53 for `argv[2]` seconds, as fast as it can.
const FLOOD: &str = r#"
import socket, sys, time
dst, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" * 4084
end = time.monotonic() + seconds
sent = 0
while time.monotonic() < end:
    for _ in range(64):
        s.sendto(payload, (dst, 53))
    sent += 64
print("sent", sent)
"#;

/// 2,000 queries (QR=0) of 4 KiB to `argv[1]`:53, each with 290 CNAME records pointing at one
/// 249-octet name of unprintable bytes: formatted, each would be ~1 KB of escapes.
const CNAME_BOMB: &str = r#"
import socket, struct, sys
dst = sys.argv[1]
label = bytes(range(1, 64))
name = (bytes([63]) + label) * 3 + bytes([60]) + label[:60] + b"\0"
question = name + struct.pack(">HH", 1, 1)
record = struct.pack(">HHHIHH", 0xC00C, 5, 1, 60, 2, 0xC00C)
count = (4096 - 12 - len(question)) // len(record)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    header = struct.pack(">HHHHHH", i, 0x0100, 1, count, 0, 0)
    s.sendto(header + question + record * count, (dst, 53))
print("sent", count, "records each")
"#;

/// In its own namespace: a listener on 127.0.0.1:53 that reads everything, and 400 connections
/// to it that each promise a 65,535-byte message and send 60,000 bytes of it in writes small
/// enough to be captured whole (so the reassembler holds them), then hold.
const TCP_FLOOD: &str = r#"
import socket, threading, time
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 53))
srv.listen(512)
def drain(c):
    while c.recv(65536):
        pass
def accept():
    while True:
        c, _ = srv.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
held = []
for i in range(400):
    c = socket.create_connection(("127.0.0.1", 53))
    c.sendall(b"\xff\xff")
    for _ in range(15):
        c.sendall(bytes([i & 0xff]) * 4000)
    held.append(c)
time.sleep(1)
print("sent", len(held))
"#;

/// Sends one query to `argv[1]`:53 from a process whose /etc/resolv.conf is a FIFO (the
/// resolver-bypass detector reads it for a server it does not list).
const QUERY: &str = r#"
import socket, struct, sys
dst, qname = sys.argv[1], sys.argv[2]
wire = b"".join(bytes([len(l)]) + l.encode() for l in qname.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1), (dst, 53))
print("asked")
"#;

/// A victim: client 1, a pod of its own.
struct Victim<'a> {
    node: &'a Node,
    pod: PodCgroup,
}

impl Victim<'_> {
    /// Resolves a fresh name with dig through the namespace's resolver; returns the name.
    fn resolve(&self, label: &str) -> String {
        let (tag, _) = unique_tag();
        let name = format!("{label}-{tag}.{DOMAIN}");
        self.node
            .run(
                label,
                1,
                Some(&self.pod),
                &tool("dig"),
                &["+tries=1", "+time=3", &name, "A"],
            )
            .expect_ok()
            .expect_queries();
        name
    }
}

/// A running agent writing JSON lines to a file, with what the test reads of it.
struct Watched {
    agent: Agent,
    output: PathBuf,
    _dir: TempDir,
}

impl Watched {
    fn start(args: &[&str]) -> Watched {
        let (tag, _) = unique_tag();
        let dir = TempDir::new(&format!("{tag}-hostile"));
        let output = dir.path().join("events.jsonl");
        let mut all = vec!["--output", output.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        let mut agent = Agent::start(&all);
        agent.wait_ready();
        Watched {
            agent,
            output,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<Value> {
        fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether the client's query and response for `name` were written within 3 s.
    fn saw_exchange(&self, name: &str) -> bool {
        wait_until(Duration::from_secs(3), || {
            let events = self.events();
            ["query", "response"].iter().all(|kind| {
                events
                    .iter()
                    .any(|e| e["kind"] == *kind && e["role"] == "client" && e["qname"] == name)
            })
        })
    }

    /// /healthz answered 200 within a second.
    fn healthy(&self) -> Result<(), String> {
        let asked = Instant::now();
        match get(self.agent.address, "/healthz") {
            Some((200, _)) if asked.elapsed() < Duration::from_secs(1) => Ok(()),
            other => Err(format!(
                "/healthz gave {other:?} after {:?}",
                asked.elapsed()
            )),
        }
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.agent.child.pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM: the problems with how it stopped, and its stderr.
    fn stop(self, problems: &mut Vec<String>) -> String {
        let asked = Instant::now();
        let (status, stderr) = self.agent.terminate();
        if !status.is_some_and(|s| s.success()) || asked.elapsed() > Duration::from_secs(5) {
            problems.push(format!(
                "SIGTERM: exit {status:?} after {:?} (wanted success within 5 s)",
                asked.elapsed()
            ));
        }
        if stderr.contains("panicked") {
            problems.push("the agent panicked".to_string());
        }
        stderr
    }
}

fn assert_no_problems(title: &str, problems: &[String], stderr: &str) {
    assert!(
        problems.is_empty(),
        "{title}:\n{}\n--- agent stderr:\n{stderr}",
        problems.join("\n")
    );
}

/// The sum of a family's samples whose labels include `labels`, from the exposition text.
fn sample_sum(exposition: &str, family: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(family) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A pod floods the ring buffer with 4 KiB datagrams. It loses its own events (over its share,
/// counted against its pod in the warning and the metrics); the victim pod loses none.
#[test]
fn root_a_flooding_pod_loses_only_its_own_events() {
    if !have_root() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let node = Node::start(2);
    let victim = Victim {
        node: &node,
        pod: PodCgroup::new(Driver::Systemd, Hierarchies::Both),
    };
    let flooder = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    // A small ring buffer, so that a single Python sender fills it faster than it is read.
    let watched = Watched::start(&["--no-detect", "--ring-buffer-size", "1MiB"]);
    let nowhere = node.nowhere().to_string();
    let mut problems = Vec::new();
    let mut names = Vec::new();
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            node.run(
                "flood",
                0,
                Some(&flooder),
                &python(),
                &["-c", FLOOD, &nowhere, "6"],
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        for i in 0..10 {
            names.push(victim.resolve(&format!("victim{i}")));
            if let Err(e) = watched.healthy() {
                problems.push(format!("during the flood: {e}"));
            }
        }
        flood.join().expect("flood").expect_ok();
    });
    for name in &names {
        if !watched.saw_exchange(name) {
            problems.push(format!("the victim's {name} was not captured"));
        }
    }
    let warned = wait_until(Duration::from_secs(8), || {
        watched
            .agent
            .stderr()
            .lines()
            .any(|l| l.contains("lost by source: ") && l.contains(&flooder.pod_uid))
    });
    if !warned {
        problems.push(format!(
            "no 'lost by source' warning naming the flooding pod {}",
            flooder.pod_uid
        ));
    }
    let (_, metrics) = get(watched.agent.address, "/metrics").unwrap_or_default();
    let flooder_label = format!("pod=\"{}\"", flooder.pod_uid);
    let victim_label = format!("pod=\"{}\"", victim.pod.pod_uid);
    let over_share = sample_sum(
        &metrics,
        "dnslens_events_lost_total{",
        &["reason=\"over_share\"", &flooder_label],
    );
    if over_share == 0.0 {
        problems.push("dnslens_events_lost_total has no over_share loss for the flooder".into());
    }
    let victim_lost = sample_sum(&metrics, "dnslens_events_lost_total{", &[&victim_label]);
    if victim_lost > 0.0 {
        problems.push(format!("the victim lost {victim_lost} events"));
    }
    println!("flood: the flooder lost {over_share} events over its share; the victim none");
    let stderr = watched.stop(&mut problems);
    assert_no_problems("a flooding pod", &problems, &stderr);
}

/// One agent through HTTP clients that try to stop it, a CNAME bomb, a TCP flood and a FIFO for
/// resolv.conf: the victim is seen after each, /healthz answers within a second during and
/// after, the peak RSS stays under the bound, and SIGTERM still stops it.
#[test]
fn root_hostile_clients_bytes_and_files_cannot_stop_the_agent() {
    if !have_root() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let node = Node::start(2);
    let victim = Victim {
        node: &node,
        pod: PodCgroup::new(Driver::Systemd, Hierarchies::Both),
    };
    let attacker = PodCgroup::new(Driver::Cgroupfs, Hierarchies::Both);
    let watched = Watched::start(&[]);
    let nowhere = node.nowhere().to_string();
    let mut problems = Vec::new();
    let after = |what: &str, problems: &mut Vec<String>| {
        if let Err(e) = watched.healthy() {
            problems.push(format!("after {what}: {e}"));
        }
        let name = victim.resolve("victim");
        if !watched.saw_exchange(&name) {
            problems.push(format!(
                "after {what}: the victim's {name} was not captured"
            ));
        }
    };

    let attack = http_attacks::attack(watched.agent.address).expect("attack the HTTP port");
    for _ in 0..3 {
        if let Err(e) = watched.healthy() {
            problems.push(format!("during the HTTP attack: {e}"));
        }
    }
    after("the HTTP attack", &mut problems);
    drop(attack);

    let bomb = ["-c", CNAME_BOMB, nowhere.as_str()];
    node.run("cname-bomb", 0, Some(&attacker), &python(), &bomb)
        .expect_ok();
    after("the CNAME bomb", &mut problems);

    node.run(
        "tcp-flood",
        0,
        Some(&attacker),
        &python(),
        &["-c", TCP_FLOOD],
    )
    .expect_ok()
    .expect_output("sent 400");
    after("the TCP flood", &mut problems);

    // Client 0's resolv.conf becomes a FIFO that no one writes: opening it would block.
    let resolv = PathBuf::from("/etc/netns")
        .join(&node.clients[0].ns)
        .join("resolv.conf");
    let _ = fs::remove_file(&resolv);
    let made = std::process::Command::new("mkfifo")
        .arg(&resolv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo {}", resolv.display());
    let (tag, _) = unique_tag();
    let fifo_name = format!("fifo-{tag}.{DOMAIN}");
    let query = ["-c", QUERY, nowhere.as_str(), fifo_name.as_str()];
    node.run("fifo", 0, Some(&attacker), &python(), &query)
        .expect_ok()
        .expect_output("asked");
    after("a resolv.conf that is a FIFO", &mut problems);

    let peak = watched.peak_rss_kib();
    if peak > PEAK_RSS_BOUND_KIB {
        problems.push(format!(
            "peak RSS {peak} KiB is over the bound of {PEAK_RSS_BOUND_KIB} KiB"
        ));
    }
    println!("hostile: peak RSS {} MiB", peak / 1024);
    let address: SocketAddr = watched.agent.address;
    let stderr = watched.stop(&mut problems);
    if get(address, "/healthz").is_some() {
        problems.push("the port still answers after the agent stopped".to_string());
    }
    assert_no_problems("hostile clients, bytes and files", &problems, &stderr);
}
