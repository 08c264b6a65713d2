//! `--dnstap` end to end (issue 17): `dnslens trace --dnstap unix:SOCKET` on the test node while
//! dig, glibc (getent in the pod's netns) and kdig +tcp query dnsmasq from a pod, received by
//! Debian's own dnstap tools: every query dnsmasq logged appears once as a client-side query
//! message with its response, parsed by `dnstap -u SOCKET -y`; the pod's uid is in `extra`
//! (which that tool does not print: a second dnslens writes `--dnstap file:`, read back here).
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
use node::dnsmasq::{HOST, NX};
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
    let text = fs::read_to_string(path).unwrap_or_default();
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

    let srv = format!("@{}", node.server.v4);
    let runs = vec![
        node.run("dig", 0, Some(&pod), &tool("dig"), &["+tries=1", HOST, "A"]),
        node.run(
            "dig-nx",
            0,
            Some(&pod),
            &tool("dig"),
            &["+tries=1", NX, "A"],
        ),
        node.run(
            "getent",
            0,
            Some(&pod),
            &tool("getent"),
            &["ahostsv4", HOST],
        ),
        node.run("kdig", 0, Some(&pod), &tool("kdig"), &[&srv, "+tcp", HOST]),
    ];
    for run in &runs {
        run.expect_queries();
    }
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
