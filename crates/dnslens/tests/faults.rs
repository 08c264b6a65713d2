//! Faults and bad input (issue 4): dnslens killed outright, two instances at once, a ring buffer
//! too small for a burst, a host without tracefs or BTF, bad flags and configuration, hostile
//! bytes on port 53 and a process that leaves thousands of queries unanswered. Each ends with
//! dnslens either working or saying in one line why not, with nothing left attached and every
//! loss counted.
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI, which runs as
//! root). They run in parallel, each on its own test node, and see each other's traffic (and
//! any other DNS on the host): assertions are about this test's names and about counters that
//! other traffic can only raise, or are checked against dnslens's own output.

mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use node::dnsmasq::DOMAIN;
use node::net::{Node, Run};
use node::resolvers::{python, tool};
use node::trace::{Stopped, Trace};
use node::{bpf, have_root, have_tool, unique_tag, wait_until, TempDir};
use serde_json::Value;

/// The floods (a burst into a tiny ring buffer, a sustained load) overflow every dnslens on
/// the host, not only their own: they hold this for writing, the tests that need every message
/// captured hold it for reading.
static FLOODS: RwLock<()> = RwLock::new(());

/// Held while a test must see every message: no flood of this binary runs meanwhile.
fn no_flood() -> RwLockReadGuard<'static, ()> {
    FLOODS.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while a test floods.
fn flooding() -> RwLockWriteGuard<'static, ()> {
    FLOODS.write().unwrap_or_else(|e| e.into_inner())
}

fn text<'a>(e: &'a Value, field: &str) -> &'a str {
    e[field].as_str().unwrap_or("")
}

/// Events of `kind` ("query", "response", "unanswered") for `qname`, from role client.
fn client_events<'a>(events: &'a [Value], kind: &str, qname: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            text(e, "kind") == kind
                && text(e, "role") == "client"
                && text(e, "qname").eq_ignore_ascii_case(qname)
        })
        .collect()
}

/// The line of dnslens's final counters that starts with `dnslens: STAGE:`.
fn counter_line<'a>(stderr: &'a str, stage: &str) -> &'a str {
    let prefix = format!("dnslens: {stage}:");
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in dnslens's stderr:\n{stderr}"))
}

/// The number written right before `label` in `line` ("3 decode errors" -> 3 for
/// "decode errors"), or right after it when `label` ends in a space ("pointer_loop 2").
fn number(line: &str, label: &str) -> u64 {
    let parse = |s: &str| s.parse::<u64>().ok();
    let found = if label.ends_with(' ') {
        line.find(label).and_then(|at| {
            let rest = &line[at + label.len()..];
            parse(rest.split(|c: char| !c.is_ascii_digit()).next()?)
        })
    } else {
        line.find(&format!(" {label}")).and_then(|at| {
            let before = line[..at].rsplit(|c: char| !c.is_ascii_digit()).next()?;
            parse(before)
        })
    };
    found.unwrap_or_else(|| panic!("no number for {label:?} in {line:?}"))
}

/// A name under the test zone unique to this test: dnsmasq answers NXDOMAIN for it.
/// Events the kernel line says were dropped for want of room: past half full a cgroup over its
/// share loses its events, and with the buffer full everyone does.
fn lost_for_room(kernel: &str) -> u64 {
    number(kernel, "ring buffer full ") + number(kernel, "over their cgroup's share ")
}

fn unique_name(label: &str) -> String {
    let (tag, _) = unique_tag();
    format!("{label}-{tag}.{DOMAIN}")
}

/// `dig NAME A` in client 0 of `node`, one try.
fn dig(node: &Node, name: &str) -> Run {
    let run = node.run(
        "dig",
        0,
        None,
        &tool("dig"),
        &["+tries=1", "+time=3", name, "A"],
    );
    run.expect_ok().expect_queries();
    run
}

/// Problems with how `stopped` captured the client's exchange for `name`: one query, one
/// response, no unanswered report.
fn exchange_problems(who: &str, stopped: &Stopped, name: &str) -> Vec<String> {
    let count = |kind| client_events(&stopped.events, kind, name).len();
    let (q, r, u) = (count("query"), count("response"), count("unanswered"));
    if (q, r, u) == (1, 1, 0) {
        Vec::new()
    } else {
        vec![format!(
            "{who}: {name}: {q} queries, {r} responses, {u} unanswered (wanted 1, 1, 0)"
        )]
    }
}

fn assert_no_problems(title: &str, problems: &[String], stopped: &[&Stopped]) {
    if problems.is_empty() {
        return;
    }
    let mut s = format!("{title}:\n{}\n", problems.join("\n"));
    for (i, st) in stopped.iter().enumerate() {
        s += &format!(
            "--- dnslens #{i}: exit {:?}, {} events, stderr:\n{}\n",
            st.status,
            st.events.len(),
            st.stderr
        );
    }
    panic!("{s}");
}

/// A clean stop: exit 0 after SIGINT, only JSON on stdout.
fn stop_problems(who: &str, stopped: &Stopped) -> Vec<String> {
    let mut problems = Vec::new();
    if !stopped.status.is_some_and(|s| s.success()) {
        problems.push(format!("{who} exited with {:?}", stopped.status));
    }
    if !stopped.bad_lines.is_empty() {
        problems.push(format!("{who} printed non-JSON: {:?}", stopped.bad_lines));
    }
    problems
}

/// SIGKILL gives dnslens no chance to detach anything: every program and link it had must go
/// with its descriptors, and a new instance must start and capture. Then two instances run at
/// once and each captures the same exchange.
#[test]
fn root_sigkill_leaves_nothing_attached_and_instances_coexist() {
    if !have_root() {
        return;
    }
    let _guard = no_flood();
    let node = Node::start(1);
    let orphans_before = bpf::orphans();
    // Only this zone is printed: the host may carry other DNS (a load bench, say).
    let only_ours = ["--domain", DOMAIN];
    let mut killed = Trace::start(&only_ours);
    let held = bpf::held_by(killed.pid());
    assert!(
        held.progs.len() >= 2 && !held.links.is_empty(),
        "a tracing dnslens should hold its programs and links, holds {held:?}"
    );
    killed.signal(libc::SIGKILL);
    let stopped = killed.wait_exit(Duration::from_secs(5));
    assert_eq!(
        stopped
            .status
            .and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        Some(libc::SIGKILL)
    );
    let left = bpf::still_existing(&held, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "5 s after SIGKILL these BPF objects of dnslens still exist: {left:?}"
    );
    let leaked = bpf::new_orphans(&orphans_before, Duration::from_secs(5));
    assert!(leaked.is_empty(), "orphaned BPF objects: {leaked:?}");

    // A new instance, then a second one beside it.
    let first = Trace::start(&only_ours);
    let name = unique_name("after-kill");
    dig(&node, &name);
    let second = Trace::start(&only_ours);
    let both = unique_name("both");
    dig(&node, &both);
    wait_until(Duration::from_secs(5), || {
        [&first, &second]
            .iter()
            .all(|t| t.stdout_text().matches(both.as_str()).count() >= 2)
    });
    let (first_pid, second_pid) = (first.pid(), second.pid());
    let held = [bpf::held_by(first_pid), bpf::held_by(second_pid)];
    let first = first.stop();
    let second = second.stop();
    let mut problems = stop_problems("first", &first);
    problems.extend(stop_problems("second", &second));
    problems.extend(exchange_problems("restarted", &first, &name));
    problems.extend(exchange_problems("first of two", &first, &both));
    problems.extend(exchange_problems("second of two", &second, &both));
    for ids in &held {
        let left = bpf::still_existing(ids, Duration::from_secs(5));
        if !left.is_empty() {
            problems.push(format!("after SIGINT these BPF objects remain: {left:?}"));
        }
    }
    assert_no_problems("restart and two instances", &problems, &[&first, &second]);
}

/// Sends `count` queries for `NAME-i` as fast as Python can from one UDP socket to `dst`:53.
const BURST: &str = r#"
import socket, struct, sys
dst, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
def query(qid, name):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(query(i & 0xffff, f"{prefix}-{i}"), (dst, 53))
"#;

/// A 4 KiB ring buffer holds a few dozen records: a burst overflows it. The loss must be
/// warned while running (within the 5 s check) and in the final counters, and the very next
/// query must be captured.
#[test]
fn root_ring_buffer_overflow_is_warned_and_capture_recovers_at_once() {
    if !have_root() {
        return;
    }
    let _guard = flooding();
    let node = Node::start(1);
    let trace = Trace::start(&["--ring-buffer-size", "4KiB", "--domain", DOMAIN]);
    let started = Instant::now();
    let (tag, _) = unique_tag();
    let prefix = format!("burst-{tag}.{DOMAIN}");
    node.run(
        "burst",
        0,
        None,
        &python(),
        &["-c", BURST, &node.nowhere().to_string(), &prefix, "3000"],
    )
    .expect_ok();
    // Recovery at once: the next query, sent right after the burst, is captured.
    let name = unique_name("after-burst");
    dig(&node, &name);
    let recovered = wait_until(Duration::from_secs(3), || {
        trace.stdout_text().matches(name.as_str()).count() >= 2
    });
    let recovered_after = started.elapsed();
    let warned = wait_until(Duration::from_secs(8), || {
        trace.stderr().contains("messages lost in the last 5s")
    });
    let stopped = trace.stop();
    let mut problems = stop_problems("dnslens", &stopped);
    if !recovered {
        problems.push(format!("{name} not captured within 3 s of the burst"));
    }
    problems.extend(exchange_problems("after the burst", &stopped, &name));
    if !warned {
        problems.push("no loss warning while running".to_string());
    }
    let kernel = counter_line(&stopped.stderr, "kernel");
    let full = lost_for_room(kernel);
    if full == 0 {
        problems.push(format!("no ring-buffer loss counted: {kernel}"));
    }
    let burst = stopped
        .events
        .iter()
        .filter(|e| text(e, "kind") == "query" && text(e, "qname").ends_with(&prefix))
        .count();
    if burst >= 3000 {
        problems.push(format!(
            "all {burst} queries of the burst fit: the ring buffer did not overflow"
        ));
    }
    println!("overflow: {burst} of 3000 burst queries captured, {full} lost, recovered after {recovered_after:?}");
    assert_no_problems("ring buffer overflow", &problems, &[&stopped]);
}

/// A reader of stdout that stops reading (a stalled log shipper): the lines wait in the output
/// thread's bounded queue, then the reading of the ring buffer waits, the ring buffer fills and
/// the kernel drops; after a second without room the output counts as stalled and its lines
/// are dropped instead, so capture goes on. Both losses are counted and warned, the warning
/// names the output as the cause, and once stdout is read again the next query is captured.
#[test]
fn root_stalled_output_is_named_as_the_cause_of_loss() {
    if !have_root() {
        return;
    }
    let _guard = flooding();
    let node = Node::start(1);
    let dst = node.nowhere().to_string();
    let mut trace = node::ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_dnslens"))
            .args([
                "trace",
                "--json",
                "--no-detect",
                "--ring-buffer-size",
                "64KiB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnslens"),
    );
    let stderr = node::trace::collect_stderr(&mut trace.child);
    let stdout = trace.child.stdout.take().expect("stdout pipe");
    let said = |what: &str| stderr.lock().unwrap().contains(what);
    assert!(
        wait_until(Duration::from_secs(60), || said("tracing DNS")),
        "dnslens did not start: {}",
        stderr.lock().unwrap()
    );
    // Nobody reads stdout while the load runs.
    let (tag, _) = unique_tag();
    let prefix = format!("stall-{tag}.{DOMAIN}");
    let load = start_load(&node, &dst, &prefix, &["12", "fresh"]);
    let warned = wait_until(Duration::from_secs(15), || {
        said("while the output held up reading for") && said("lines not written in the last")
    });
    drop(load);
    // Read again, as the shipper would once back.
    let read = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let read = Arc::clone(&read);
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut chunk = [0u8; 64 << 10];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                read.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let name = unique_name("after-stall");
    dig(&node, &name);
    let recovered = wait_until(Duration::from_secs(10), || {
        String::from_utf8_lossy(&read.lock().unwrap()).contains(&name)
    });
    trace.signal(libc::SIGINT);
    let status = trace.wait_timeout(Duration::from_secs(10));
    reader.join().expect("stdout reader");
    std::thread::sleep(Duration::from_millis(50));
    let stderr = stderr.lock().unwrap().clone();

    let mut problems = Vec::new();
    if !warned {
        problems.push("no warnings of the ring buffer's loss and the dropped lines, naming the output, within 15 s".to_string());
    }
    if !recovered {
        problems.push(format!("{name} not captured once stdout was read again"));
    }
    if !status.is_some_and(|s| s.success()) {
        problems.push(format!("dnslens exited with {status:?}"));
    }
    let dropped = number(counter_line(&stderr, "output"), "lines dropped");
    if dropped == 0 {
        problems.push("no dropped lines in the final report".to_string());
    }
    let full = lost_for_room(counter_line(&stderr, "kernel"));
    if full == 0 {
        problems.push("no ring-buffer loss counted".to_string());
    }
    let text = String::from_utf8_lossy(&read.lock().unwrap()).into_owned();
    let bad = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).map_or(true, |v| !v.is_object()))
        .count();
    if bad > 0 {
        problems.push(format!("{bad} lines on stdout are not JSON objects"));
    }
    println!(
        "stalled output: {full} lost, {dropped} lines dropped, {} lines read after the stall",
        text.lines().count()
    );
    assert!(
        problems.is_empty(),
        "{}\nstderr:\n{stderr}",
        problems.join("\n")
    );
}

/// Sends queries for `NAME-i` from one UDP socket to `dst`:53 as fast as it can for `secs`:
/// the same 1,000 over and over (dnslens prints the repeats as retransmits, not at all), or
/// with a fourth argument every one a new name, each printed.
const LOAD: &str = r#"
import socket, struct, sys, time
dst, prefix, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
fresh = len(sys.argv) > 4
def query(qid, name):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1)
def batch(first):
    return [query(i, f"{prefix}-{i}") for i in range(first, first + 1000)]
msgs, sent = batch(0), 0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + secs
while time.monotonic() < end:
    for m in msgs:
        s.sendto(m, (dst, 53))
    sent += 1000
    if fresh:
        msgs = batch(sent)
"#;

/// [`LOAD`] from client 0 of `node`, with `args` after `dst` and `prefix`; ended when dropped.
fn start_load(node: &Node, dst: &str, prefix: &str, args: &[&str]) -> node::ChildGuard {
    let child = Command::new(tool("ip"))
        .args(["netns", "exec", &node.clients[0].ns])
        .arg(python())
        .args(["-c", LOAD, dst, prefix])
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the load");
    node::ChildGuard::new(child)
}

/// Regression: the reader drained the ring buffer until it was empty before looking at
/// anything else, so while messages kept coming faster than it decoded them it never saw
/// SIGINT (nor ran its timeouts and loss checks): only a second signal, which kills it, ended
/// it. Under a flood it must stop within a poll or so of SIGINT, with its counters.
#[test]
fn root_sigint_stops_dnslens_under_sustained_load() {
    if !have_root() {
        return;
    }
    let _guard = flooding();
    let node = Node::start(1);
    let dst = node.nowhere().to_string();
    let mut trace = Trace::start(&["--domain", "not-this-zone.invalid"]);
    let (tag, _) = unique_tag();
    let prefix = format!("flood-{tag}.{DOMAIN}");
    // Two senders, so the flood outpaces the reader on any machine this runs on.
    let _load = [
        start_load(&node, &dst, &prefix, &["8"]),
        start_load(&node, &dst, &prefix, &["8"]),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    trace.signal(libc::SIGINT);
    let stopped = trace.wait_exit(Duration::from_secs(4));
    let took = asked.elapsed();
    let mut problems = Vec::new();
    if !stopped.status.is_some_and(|s| s.success()) {
        problems.push(format!(
            "dnslens did not exit within 4 s of SIGINT under load (exit {:?})",
            stopped.status
        ));
    }
    if !stopped.stderr.contains("dnslens: pairing:") {
        problems.push("no final counters".to_string());
    }
    println!("stopped {took:?} after SIGINT");
    assert_no_problems("SIGINT under load", &problems, &[&stopped]);
}

/// `dnslens trace ARGS` run to its end (it must end by itself within 20 s).
fn dnslens(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dnslens"));
    cmd.arg("trace").arg("-v").args(args);
    run_with_timeout(cmd)
}

fn run_with_timeout(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("wait for dnslens"),
        Err(_) => {
            // SAFETY: kill by the pid of our own unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not finish in 20 s");
        }
    }
}

/// A failed start: non-zero exit, nothing on stdout, and the first stderr line the one that
/// says why (`want` is a part of it). `one_line`: stderr is that line alone (clap's usage
/// errors add its "For more information, try '--help'" hint).
fn failure_problems(what: &str, out: &Output, want: &str, one_line: bool) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut problems = Vec::new();
    if out.status.success() {
        problems.push(format!("{what}: exited 0"));
    }
    if !out.stdout.is_empty() {
        problems.push(format!(
            "{what}: printed on stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let first_ok = lines.first().is_some_and(|l| l.contains(want));
    if !first_ok || (one_line && lines.len() != 1) {
        problems.push(format!(
            "{what}: wanted {} line containing {want:?}, got:\n{stderr}",
            if one_line { "one" } else { "a first" }
        ));
    }
    problems
}

/// Bad ports, an unreadable or malformed kubeconfig, a detector config with an unknown key or
/// missing, a missing baseline: one clear line each, a failing exit, nothing attached.
#[test]
fn root_bad_flags_and_config_say_why_in_one_line_and_attach_nothing() {
    if !have_root() {
        return;
    }
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-config"));
    let malformed = dir.path().join("kubeconfig");
    std::fs::write(&malformed, "apiVersion: v1\nclusters: [\n").expect("write kubeconfig");
    let not_a_file = dir.path().to_str().unwrap().to_string();
    let malformed = malformed.to_str().unwrap().to_string();
    let missing = format!("{not_a_file}/missing");
    let detect_config = dir.path().join("detect.toml");
    std::fs::write(&detect_config, "\n[tunneling]\nwindw_s = 3\n").expect("write detect.toml");
    let detect_config = detect_config.to_str().unwrap().to_string();
    let nine: Vec<String> = (1..=8).map(|p| format!("--port={}", 5300 + p)).collect();
    let mut nine_ports: Vec<&str> = nine.iter().map(String::as_str).collect();
    nine_ports.push("--duration=1s");
    let cases: Vec<(&str, Vec<&str>, String, bool)> = vec![
        (
            "--port 0",
            vec!["--port", "0", "--duration", "1s"],
            "invalid value '0' for '--port <PORT>': 0 is not in 1..=65535".into(),
            false,
        ),
        (
            "--port 70000",
            vec!["--port", "70000", "--duration", "1s"],
            "invalid value '70000' for '--port <PORT>'".into(),
            false,
        ),
        (
            "--port abc",
            vec!["--port", "abc", "--duration", "1s"],
            "invalid value 'abc' for '--port <PORT>'".into(),
            false,
        ),
        (
            "nine ports",
            nine_ports,
            "dnslens: 9 ports given with 53 included, at most 8 can be traced".into(),
            true,
        ),
        (
            "kubeconfig is a directory",
            vec!["--kubeconfig", &not_a_file, "--duration", "1s"],
            format!("dnslens: kubernetes: kubeconfig {not_a_file}: is a directory"),
            true,
        ),
        (
            "kubeconfig missing",
            vec!["--kubeconfig", &missing, "--duration", "1s"],
            format!("dnslens: kubernetes: kubeconfig {missing}: no such file"),
            true,
        ),
        (
            "kubeconfig malformed",
            vec!["--kubeconfig", &malformed, "--duration", "1s"],
            format!("dnslens: kubernetes: kubeconfig {malformed}: failed to parse"),
            true,
        ),
        (
            "detector config with an unknown key",
            vec!["--detect-config", &detect_config, "--duration", "1s"],
            format!(
                "dnslens: detector config {detect_config}:3:1: in [tunneling]: unknown field \
                 `windw_s`"
            ),
            true,
        ),
        (
            "detector config missing",
            vec!["--detect-config", &missing, "--duration", "1s"],
            format!("dnslens: cannot read detector config {missing}: No such file"),
            true,
        ),
        (
            "baseline missing",
            vec!["--baseline", &missing, "--duration", "1s"],
            format!("dnslens: --baseline {missing}: learn one first with --learn 10m"),
            true,
        ),
    ];
    let orphans_before = bpf::orphans();
    let mut problems = Vec::new();
    for (what, args, want, one_line) in &cases {
        let out = dnslens(args);
        problems.extend(failure_problems(what, &out, want, *one_line));
    }
    let leaked = bpf::new_orphans(&orphans_before, Duration::from_secs(5));
    if !leaked.is_empty() {
        problems.push(format!("BPF objects left behind: {leaked:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Runs `script` (sh) in a private mount namespace, where it may unmount and hide what it
/// likes, with `$DNSLENS` set to the binary and `$DIR` to a scratch directory.
fn in_private_mounts(script: &str, dir: &Path) -> Output {
    let mut cmd = Command::new(tool("unshare"));
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("DNSLENS", env!("CARGO_BIN_EXE_dnslens"))
        .env("DIR", dir);
    run_with_timeout(cmd)
}

/// Unmounts every tracefs (also the one under debugfs) in the private namespace.
const UNMOUNT_TRACEFS: &str = "umount /sys/kernel/debug/tracing 2>/dev/null; \
    umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; \
    if grep -q ' tracefs ' /proc/self/mountinfo; then echo 'tracefs still mounted' >&2; exit 99; fi;";

/// tracefs not mounted: dnslens mounts it (here in a private mount namespace, so the host is
/// untouched) and traces, in the default mode and in the mode that needs tracefs most
/// (per-syscall tracepoints). Where it cannot be mounted (its mount point hidden) or the kernel
/// has no BTF (hidden too), one line says so and what to do.
#[test]
fn root_no_tracefs_is_mounted_or_said_and_no_btf_is_said() {
    if !have_root() || !have_tool("unshare") {
        return;
    }
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-mounts"));
    let orphans_before = bpf::orphans();
    let mut problems = Vec::new();
    for mode in ["auto", "syscall-tracepoints"] {
        let script = format!(
            "{UNMOUNT_TRACEFS} \"$DNSLENS\" trace --capture {mode} --duration 1s >/dev/null || exit; \
             grep -q ' /sys/kernel/tracing .* - tracefs ' /proc/self/mountinfo || \
             {{ echo 'tracefs was not mounted by dnslens' >&2; exit 98; }}"
        );
        let out = in_private_mounts(&script, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !stderr.contains("dnslens: tracing DNS on ports 53 with") {
            problems.push(format!(
                "--capture {mode} without tracefs: exit {}, stderr:\n{stderr}",
                out.status
            ));
        }
    }
    // Hide /sys/kernel (keeping its btf directory): no mount point for tracefs.
    let hide_tracefs = format!(
        "{UNMOUNT_TRACEFS} mkdir -p \"$DIR/btf\" && mount --bind /sys/kernel/btf \"$DIR/btf\" && \
         mount -t tmpfs tmpfs /sys/kernel && mkdir /sys/kernel/btf && \
         mount --bind \"$DIR/btf\" /sys/kernel/btf || exit 97; \
         exec \"$DNSLENS\" trace --capture syscall-tracepoints --duration 1s"
    );
    let out = in_private_mounts(&hide_tracefs, dir.path());
    problems.extend(failure_problems(
        "tracefs cannot be mounted",
        &out,
        "dnslens: tracefs is not mounted and could not be mounted",
        true,
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("mount -t tracefs tracefs /sys/kernel/tracing") {
        problems.push(format!("the tracefs error says not what to do: {stderr}"));
    }
    // The socket capture needs no tracefs: only the optional exec hook is skipped, and said.
    let socket_mode = hide_tracefs.replace("--capture syscall-tracepoints", "--capture sockets");
    let out = in_private_mounts(&socket_mode, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        || !stderr.contains("hook sched/sched_process_exec not attached, skipped: tracefs")
    {
        problems.push(format!(
            "socket capture without tracefs: exit {:?}, stderr:\n{stderr}",
            out.status.code()
        ));
    }
    let hide_btf = "mount -t tmpfs tmpfs /sys/kernel/btf || exit 97; \
                    exec \"$DNSLENS\" trace --duration 1s";
    let out = in_private_mounts(hide_btf, dir.path());
    problems.extend(failure_problems(
        "no BTF",
        &out,
        "dnslens: kernel has no BTF (/sys/kernel/btf/vmlinux missing): need a kernel built \
         with CONFIG_DEBUG_INFO_BTF=y",
        true,
    ));
    let leaked = bpf::new_orphans(&orphans_before, Duration::from_secs(5));
    if !leaked.is_empty() {
        problems.push(format!("BPF objects left behind: {leaked:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Hostile traffic to the server: malformed datagrams on one connected UDP socket, then a valid
/// query on it and on a new socket; TCP connections whose length prefix lies (5000 promised,
/// 20 sent, closed; 0xffff promised), is 0, or is garbage below a header's size; then a valid
/// query on a new connection. Prints what the server answered to the valid ones.
const HOSTILE: &str = r#"
import random, socket, struct, sys
server, same, new, tcp = sys.argv[1:5]
rng = random.Random(4)
def wire(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
def header(qid, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, 0x0100, qd, an, ns, ar)
def query(qid, name):
    return header(qid) + wire(name) + struct.pack(">HH", 1, 1)
def answer(sock, qid):
    sock.settimeout(3)
    while True:
        data = sock.recv(4096)
        if len(data) >= 4 and struct.unpack(">H", data[:2])[0] == qid:
            return data
hostile = [
    bytes(rng.getrandbits(8) for _ in range(3)),                       # short_header
    header(0x0101, 65535, 65535, 65535, 65535) + b"\0\0\1\0\1",        # too_many_records
    query(0x0102, "cut.example.test")[:20],                             # truncated
    header(0x0103) + b"\xc0\x0c\0\1\0\1",                               # pointer_loop (itself)
    header(0x0104) + b"\x01a\xc0\x0c\0\1\0\1",                          # pointer_loop (label, back)
    header(0x0105) + b"\x40" + b"a" * 64 + b"\0\0\1\0\1",               # label_too_long
    header(0x0106) + b"\x03abc\xc0\x14\0\1\0\1",                        # pointer_forward
] + [bytes(rng.getrandbits(8) for _ in range(rng.randrange(12, 200))) for _ in range(20)]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect((server, 53))
for msg in hostile:
    udp.send(msg)
udp.send(query(0x5a5a, same))
answer(udp, 0x5a5a)
fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fresh.connect((server, 53))
fresh.send(query(0x5b5b, new))
answer(fresh, 0x5b5b)
for lie in [struct.pack(">H", 5000) + b"x" * 20, struct.pack(">H", 0xffff) + b"y" * 10,
            b"\0\0" + b"z" * 30, b"\0\x05hello world"]:
    c = socket.create_connection((server, 53), timeout=3)
    c.sendall(lie)
    c.close()
c = socket.create_connection((server, 53), timeout=3)
msg = query(0x5c5c, tcp)
c.sendall(struct.pack(">H", len(msg)) + msg)
length = b""
while len(length) < 2:
    length += c.recv(2 - len(length))
body = b""
while len(body) < struct.unpack(">H", length)[0]:
    body += c.recv(4096)
print("answered", len(body))
"#;

/// Hostile bytes on port 53: dnslens counts them by kind and keeps capturing, on the same
/// socket and on new ones, over UDP and TCP.
#[test]
fn root_hostile_traffic_is_counted_and_capture_goes_on() {
    if !have_root() {
        return;
    }
    let _guard = no_flood();
    let node = Node::start(1);
    let trace = Trace::start(&["--domain", DOMAIN]);
    let (same, new, tcp) = (
        unique_name("same-socket"),
        unique_name("new-socket"),
        unique_name("tcp"),
    );
    let server = node.server.v4.to_string();
    let run = node.run(
        "hostile",
        0,
        None,
        &python(),
        &["-c", HOSTILE, &server, &same, &new, &tcp],
    );
    run.expect_ok().expect_output("answered");
    wait_until(Duration::from_secs(5), || {
        let out = trace.stdout_text();
        [&same, &new, &tcp]
            .iter()
            .all(|n| out.matches(n.as_str()).count() >= 4)
    });
    let stopped = trace.stop();
    let mut problems = stop_problems("dnslens", &stopped);
    for name in [&same, &new, &tcp] {
        problems.extend(exchange_problems("after hostile traffic", &stopped, name));
    }
    let tcp_events = client_events(&stopped.events, "response", &tcp);
    if tcp_events.iter().any(|e| text(e, "transport") != "tcp") {
        problems.push(format!("{tcp} was not captured over TCP"));
    }
    let decode = counter_line(&stopped.stderr, "decode");
    // Each hostile datagram is seen twice: sent by the client, received by dnsmasq.
    for kind in [
        "short_header",
        "too_many_records",
        "truncated",
        "pointer_loop",
        "label_too_long",
        "pointer_forward",
    ] {
        let label = format!("{kind} ");
        if !decode.contains(&label) || number(decode, &label) < 2 {
            problems.push(format!("{kind} not counted twice: {decode}"));
        }
    }
    let tcp_line = counter_line(&stopped.stderr, "tcp");
    // Prefix 0 and prefix 5: a desync each on the client's side.
    if number(tcp_line, "desyncs") < 2 {
        problems.push(format!("fewer than 2 TCP desyncs counted: {tcp_line}"));
    }
    // Prefixes of 5000 and 65535 with the bytes never sent: held, and said.
    if number(tcp_line, "streams stopped inside a message") < 2 {
        problems.push(format!(
            "the lying TCP lengths are not reported: {tcp_line}"
        ));
    }
    assert_no_problems("hostile traffic", &problems, &[&stopped]);
}

/// Sends one query from each of `count` UDP sockets to `dst`:53 (kept open while the
/// descriptor limit allows), and exits at once: no response can come.
const MANY_SOCKETS: &str = r#"
import resource, socket, struct, sys
dst, suffix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    want = count + 64 if hard == resource.RLIM_INFINITY else min(hard, count + 64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
except (ValueError, OSError):
    pass
limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64
def query(qid, name):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1)
kept = []
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(query(i & 0xffff, f"q{i}.{suffix}"), (dst, 53))
    if len(kept) < limit:
        kept.append(s)
    else:
        s.close()
print("sent", count, "kept open", len(kept))
"#;

/// Names a process for itself (`\x1b[2J` clears a terminal, `\x1b[1;1H` homes the cursor), then
/// resolves `argv[1]` through the libc resolver.
const FORGED_NAME: &str = r#"
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"\x1b[2J\x1b[1;1Hforged\x07", 0, 0, 0)
try:
    socket.getaddrinfo(sys.argv[1], None, socket.AF_INET)
except OSError:
    pass
print("asked")
"#;

/// A process name is the workload's to choose: the table on a terminal shows its control
/// characters written out, never the bytes themselves.
#[test]
fn root_a_hostile_process_name_reaches_no_terminal() {
    if !have_root() {
        return;
    }
    let _guard = no_flood();
    let node = Node::start(1);
    let trace = Trace::printing(&["--no-detect", "--color", "never", "--domain", DOMAIN]);
    let name = unique_name("forged");
    let run = node.run("forged", 0, None, &python(), &["-c", FORGED_NAME, &name]);
    run.expect_ok().expect_output("asked");
    wait_until(Duration::from_secs(5), || {
        trace.stdout_text().contains(&name)
    });
    let stopped = trace.stop();
    // The table's rows are what a JSON reader calls bad lines.
    let table = stopped.bad_lines.join("\n");
    let mut problems = Vec::new();
    if !table.contains(&name) {
        problems.push(format!("{name} is not in the table:\n{table}"));
    }
    if let Some(c) = table.chars().find(|&c| c.is_control() && c != '\n') {
        problems.push(format!(
            "a control character {c:?} reached the table: {table:?}"
        ));
    }
    if !table.contains("\\x1b[2J") {
        problems.push(format!("the name is not shown written out: {table:?}"));
    }
    assert_no_problems("hostile process name", &problems, &[&stopped]);
}

/// The pairing key dnslens uses (crates/lens/src/correlate.rs), from a JSON event.
fn pairing_key(e: &Value) -> (u64, u64, String, u64, String, String) {
    (
        e["netns"].as_u64().unwrap_or(0),
        e["socket"].as_u64().unwrap_or(0),
        text(e, "role").to_string(),
        e["id"].as_u64().unwrap_or(0),
        text(e, "qname").to_ascii_lowercase(),
        text(e, "qtype").to_string(),
    )
}

/// Queries that dnslens printed and never closed (no paired response, no unanswered report):
/// what its pending map must hold at the end.
fn open_queries(events: &[Value]) -> usize {
    let mut open = BTreeSet::new();
    for e in events {
        match text(e, "kind") {
            "query" => {
                open.insert(pairing_key(e));
            }
            "response" if !e["latency_us"].is_null() => {
                open.remove(&pairing_key(e));
            }
            "unanswered" => {
                open.remove(&pairing_key(e));
            }
            _ => {}
        }
    }
    open.len()
}

/// 5,000 sockets, one query each, into the void, and the process gone: every query is reported
/// unanswered after `--timeout 1s`, none is evicted, and the pending map ends holding only what
/// the output shows still open (nothing of ours).
#[test]
fn root_thousands_of_sockets_leave_no_pending_state() {
    if !have_root() {
        return;
    }
    let _guard = no_flood();
    const COUNT: usize = 5000;
    let node = Node::start(1);
    let trace = Trace::start(&["--timeout", "1s"]);
    let (tag, _) = unique_tag();
    let suffix = format!("many-{tag}.{DOMAIN}");
    let count = COUNT.to_string();
    let dst = node.nowhere().to_string();
    let run = node.run(
        "many-sockets",
        0,
        None,
        &python(),
        &["-c", MANY_SOCKETS, &dst, &suffix, &count],
    );
    run.expect_ok().expect_output("sent 5000");
    let needle = format!(".{suffix}\",\"qtype\"");
    let all_out = wait_until(Duration::from_secs(15), || {
        let out = trace.stdout_text();
        out.lines()
            .filter(|l| l.contains("\"kind\":\"unanswered\"") && l.contains(&needle))
            .count()
            >= COUNT
    });
    let stopped = trace.stop();
    let mut problems = stop_problems("dnslens", &stopped);
    if !all_out {
        problems.push("not every query came out unanswered within 15 s".to_string());
    }
    let mut per_name: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in &stopped.events {
        let qname = text(e, "qname");
        if !qname.ends_with(&suffix) || text(e, "role") != "client" {
            continue;
        }
        let slot = per_name.entry(qname).or_default();
        match text(e, "kind") {
            "query" => slot.0 += 1,
            "unanswered" => slot.1 += 1,
            other => problems.push(format!("{qname}: unexpected {other}")),
        }
    }
    let wrong: Vec<_> = per_name.iter().filter(|(_, &c)| c != (1, 1)).collect();
    if per_name.len() != COUNT || !wrong.is_empty() {
        problems.push(format!(
            "{} of {COUNT} names seen; not one query and one unanswered each: {:?}",
            per_name.len(),
            wrong.iter().take(10).collect::<Vec<_>>()
        ));
    }
    let pairing = counter_line(&stopped.stderr, "pairing");
    let open = open_queries(&stopped.events) as u64;
    let (pending, evicted) = (number(pairing, "pending"), number(pairing, "evicted"));
    if pending != open || evicted != 0 {
        problems.push(format!(
            "pending state: {pending} pending (the output leaves {open} open), {evicted} \
             evicted: {pairing}"
        ));
    }
    if number(pairing, "unanswered") < COUNT as u64 {
        problems.push(format!("fewer than {COUNT} unanswered counted: {pairing}"));
    }
    assert_no_problems("thousands of sockets", &problems, &[&stopped]);
}

#[test]
fn counter_numbers_are_read_before_and_after_labels() {
    let line = "dnslens: pairing: 3 queries, 0 unanswered, 12 evicted, 7 pending";
    assert_eq!(number(line, "pending"), 7);
    assert_eq!(number(line, "evicted"), 12);
    let decode = "dnslens: decode: 9 decode errors (pointer_loop 2, truncated 14)";
    assert_eq!(number(decode, "pointer_loop "), 2);
    assert_eq!(number(decode, "truncated "), 14);
    assert_eq!(number(decode, "decode errors"), 9);
}
