//! `--dnstap` end to end (issue 17): `dnslens trace --dnstap unix:SOCKET` on the test node while
//! dig, glibc (getent in the pod's netns) and kdig +tcp query dnsmasq from a pod, received by
//! Debian's own dnstap tools: every query dnsmasq logged appears once as a client-side query
//! message with its response, parsed by `dnstap -u SOCKET -y`; the pod's uid is in `extra`
//! (which that tool does not print: a second dnslens writes `--dnstap file:`, read back here).
//! The same through `fstrm_capture` into a file read back by `dnstap -r`; and a receiver killed
//! and restarted mid-run: dnslens reconnects, counts what it dropped, and sends the rest.
//!
//! The tests named `root_*` need root (they skip without it, and fail in CI). Everything they
//! start is stopped by its pid, and everything they create is removed, also on failure.

mod node;

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::check::client_side;
use node::dnsmasq::{DOMAIN, HOST, NX};
use node::net::{Node, Run};
use node::resolvers::tool;
use node::trace::Trace;
use node::{have_root, have_tool, unique_tag, wait_until, ChildGuard, TempDir};
use serde_json::Value;

/// `dnstap -u SOCKET -y` writing its YAML documents to `out` (`-j` leaves out `extra`).
fn receiver(socket: &Path, out: &Path) -> ChildGuard {
    let _ = fs::remove_file(socket);
    let child = Command::new("dnstap")
        .arg("-u")
        .arg(socket)
        .arg("-y")
        .stdin(Stdio::null())
        .stdout(File::create(out).expect("receiver output"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnstap");
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "dnstap -u made no socket"
    );
    ChildGuard::new(child)
}

/// The complete YAML documents received so far, as JSON values.
fn lines(path: &Path) -> Vec<Value> {
    documents(&fs::read_to_string(path).unwrap_or_default())
}

/// `dnstap -y` output as JSON values.
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .filter_map(|doc| serde_yaml_ng::from_str::<Value>(doc.trim_start_matches("---\n")).ok())
        .filter(Value::is_object)
        .collect()
}

/// The problems with `taps` (dnstap's JSON) against what dnsmasq logged for `runs`: each
/// logged query once as a client-side query from its client port, with one response.
fn problems(taps: &[Value], runs: &[Run]) -> Vec<String> {
    let mut problems = Vec::new();
    for run in runs {
        for q in &run.log_queries {
            let port = u64::from(q.client.port());
            let of = |suffix: &str| -> Vec<&Value> {
                taps.iter()
                    .filter(|t| {
                        let m = &t["message"];
                        // The client side's: dnsmasq's own (CLIENT_*) share the port.
                        m["type"].as_str().is_some_and(|ty| {
                            ty.ends_with(suffix)
                                && (ty.starts_with("STUB_") || ty.starts_with("TOOL_"))
                        }) && m["query_port"].as_u64() == Some(port)
                            && t.to_string().contains(&q.qname)
                    })
                    .collect()
            };
            let (queries, responses) = (of("_QUERY"), of("_RESPONSE"));
            if queries.len() != 1 || responses.len() != 1 {
                problems.push(format!(
                    "[{}] {} {} from port {port}: {} queries, {} responses in dnstap",
                    run.label,
                    q.qtype,
                    q.qname,
                    queries.len(),
                    responses.len()
                ));
            }
            for t in queries.iter().chain(&responses) {
                let m = &t["message"];
                let ty = m["type"].as_str().unwrap_or_default();
                let want = if run.name == "getent" {
                    "STUB_"
                } else {
                    "TOOL_"
                };
                if !ty.starts_with(want) || t["version"] != "dnslens 0.1.0" {
                    problems.push(format!("[{}] type or version wrong: {t}", run.label));
                }
            }
        }
    }
    problems
}

/// Each message of a dnstap file: the initiator's port and `extra` as JSON.
fn extras(path: &Path) -> Vec<(String, Value)> {
    use prost::Message as _;
    let bytes = fs::read(path).expect("the dnstap file");
    let mut reader = dnslens_dnstap::Reader::new(&bytes[..]);
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().expect("Frame Streams") {
        let tap = dnslens_dnstap::Dnstap::decode(&frame[..]).expect("dnstap");
        let port = tap.message.and_then(|m| m.query_port).unwrap_or_default();
        let extra = serde_json::from_slice(&tap.extra.unwrap_or_default()).expect("extra");
        out.push((port.to_string(), extra));
    }
    out
}

/// The end report's dnstap counts: (sent, dropped, reconnects).
fn report(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .filter(|l| l.ends_with(" reconnects"))
        .find_map(|l| l.strip_prefix("dnslens: dnstap: "))
        .unwrap_or_else(|| panic!("no dnstap report:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [sent, dropped, reconnects] => (sent, dropped, reconnects),
        _ => panic!("unexpected dnstap report: {line}"),
    }
}

/// The messages dnslens made: one per query or response it showed.
fn messages(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == "query" || e["kind"] == "response")
        .count()
}

/// dig, dig (NXDOMAIN), glibc and kdig +tcp from `pod`.
fn queries(node: &Node, pod: &PodCgroup) -> Vec<Run> {
    let srv = format!("@{}", node.server.v4);
    let runs = vec![
        node.run("dig", 0, Some(pod), &tool("dig"), &["+tries=1", HOST, "A"]),
        node.run("dig-nx", 0, Some(pod), &tool("dig"), &["+tries=1", NX, "A"]),
        node.run("getent", 0, Some(pod), &tool("getent"), &["ahostsv4", HOST]),
        node.run("kdig", 0, Some(pod), &tool("kdig"), &[&srv, "+tcp", HOST]),
    ];
    for run in &runs {
        run.expect_queries();
    }
    runs
}

#[test]
fn root_dnstap_to_a_unix_socket_carries_every_client_message_with_its_pod() {
    if !have_root() || !have_tool("dnstap") {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-dnstap"));
    let socket = dir.path().join("tap.sock");
    let received = dir.path().join("received.jsonl");
    let mut dnstap = receiver(&socket, &received);
    let address = format!("unix:{}", socket.display());
    let trace = Trace::start(&["--dnstap", &address]);
    let file = dir.path().join("tap.fstrm");
    let to_file = Trace::start(&["--dnstap", &format!("file:{}", file.display())]);

    let runs = queries(&node, &pod);
    wait_until(Duration::from_secs(5), || {
        client_side(&node, &runs, &trace.events()).is_empty()
            && problems(&lines(&received), &runs).is_empty()
    });
    let stopped = trace.stop();
    to_file.stop();
    let extras = extras(&file);
    for run in &runs {
        for q in &run.log_queries {
            let port = q.client.port().to_string();
            let found = extras.iter().filter(|(p, _)| *p == port).count();
            let with_pod = extras
                .iter()
                .filter(|(p, extra)| *p == port && extra["pod"]["uid"] == pod.pod_uid.as_str())
                .count();
            // The client's query and response, and dnsmasq's (no pod) for the same port.
            assert_eq!(
                (found, with_pod),
                (4, 2),
                "[{}] {q:?}: {extras:?}",
                run.label
            );
        }
    }
    let taps = lines(&received);
    let found = problems(&taps, &runs);
    let dump: String = taps.iter().map(|t| format!("{t}\n")).collect();
    assert!(
        found.is_empty(),
        "{found:#?}\ndnstap received:\n{dump}\ndnslens stderr:\n{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("dnslens: dnstap: ") && stopped.stderr.contains(" 0 dropped"),
        "{}",
        stopped.stderr
    );
    dnstap.signal(libc::SIGTERM);
    dnstap.wait_timeout(Duration::from_secs(5));
}

#[test]
fn root_dnstap_through_fstrm_capture_to_a_file_read_back_by_dnstap() {
    if !have_root() || !have_tool("dnstap") || !have_tool("fstrm_capture") {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-fstrm"));
    let (socket, file) = (dir.path().join("tap.sock"), dir.path().join("tap.fstrm"));
    let capture = Command::new("fstrm_capture")
        .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
        .arg(&socket)
        .arg("-w")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.path().join("capture.err")).expect("capture stderr"))
        .spawn()
        .expect("spawn fstrm_capture");
    let mut capture = ChildGuard::new(capture);
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "fstrm_capture made no socket"
    );
    let trace = Trace::start(&["--dnstap", &format!("unix:{}", socket.display())]);
    let runs = queries(&node, &pod);
    wait_until(Duration::from_secs(5), || {
        client_side(&node, &runs, &trace.events()).is_empty()
    });
    // dnslens ends its stream (STOP, FINISH) before fstrm_capture is stopped, which closes
    // the file on SIGINT.
    let stopped = trace.stop();
    capture.signal(libc::SIGINT);
    let status = capture.wait_timeout(Duration::from_secs(5));
    let capture_err = fs::read_to_string(dir.path().join("capture.err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "fstrm_capture: {status:?}\n{capture_err}"
    );
    let read = Command::new("dnstap")
        .arg("-r")
        .arg(&file)
        .arg("-y")
        .output()
        .expect("run dnstap -r");
    assert!(
        read.status.success(),
        "dnstap -r: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let taps = documents(&String::from_utf8_lossy(&read.stdout));
    let found = problems(&taps, &runs);
    let (sent, dropped, _) = report(&stopped.stderr);
    assert!(
        found.is_empty() && dropped == 0 && sent == taps.len() as u64,
        "{found:#?}\n{} messages read back\ndnslens stderr:\n{}\nfstrm_capture:\n{capture_err}",
        taps.len(),
        stopped.stderr
    );
    assert_eq!(sent as usize, messages(&stopped.events));
}

#[test]
fn root_dnstap_receiver_killed_and_restarted_gets_the_rest_and_drops_are_counted() {
    if !have_root() || !have_tool("dnstap") {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-restart"));
    let socket = dir.path().join("tap.sock");
    let outs = [
        dir.path().join("first.yaml"),
        dir.path().join("second.yaml"),
    ];
    let mut receiving = receiver(&socket, &outs[0]);
    let trace = Trace::start(&["--dnstap", &format!("unix:{}", socket.display())]);
    // One query every 150 ms from the pod throughout; the receiver is killed after the 8th
    // (once it has everything dnslens made so far) and back before the 14th.
    let (kill_at, back_at, total) = (8, 14, 22);
    let mut runs = Vec::new();
    for i in 0..total {
        if i == kill_at {
            let caught_up = wait_until(Duration::from_secs(5), || {
                lines(&outs[0]).len() == messages(&trace.events())
            });
            assert!(caught_up, "the first receiver never had every message");
            receiving.signal(libc::SIGKILL);
            receiving.wait_timeout(Duration::from_secs(5));
        }
        if i == back_at {
            receiving = receiver(&socket, &outs[1]);
        }
        let name = format!("q{i}.{DOMAIN}");
        let run = node.run(
            &format!("dig-{i}"),
            0,
            Some(&pod),
            &tool("dig"),
            &["+tries=1", &name],
        );
        run.expect_queries();
        runs.push(run);
        std::thread::sleep(Duration::from_millis(150));
    }
    // The backoff is 5 s at most.
    let after = &runs[back_at..];
    wait_until(Duration::from_secs(7), || {
        problems(&lines(&outs[1]), after).is_empty()
    });
    let stopped = trace.stop();
    receiving.signal(libc::SIGTERM);
    receiving.wait_timeout(Duration::from_secs(5));
    let (first, second) = (lines(&outs[0]), lines(&outs[1]));
    let found = problems(&second, after);
    let (sent, dropped, reconnects) = report(&stopped.stderr);
    let made = messages(&stopped.events) as u64;
    assert!(
        found.is_empty()
            && reconnects >= 1
            && dropped >= 1
            && sent + dropped == made
            && (first.len() + second.len()) as u64 == sent,
        "{found:#?}\nmade {made}, received {} + {}\ndnslens stderr:\n{}",
        first.len(),
        second.len(),
        stopped.stderr
    );
}
