//! `dnslens trace --pcapng` end to end (issue 17): the capture of dig, glibc and `kdig +tcp`
//! querying dnsmasq from a pod of the test node, read back by Debian's real tshark. dnsmasq's
//! query log is the ground truth: every query it logged and its response must be dissected as
//! DNS, over UDP and TCP, the client's packets commented with the process and the pod.
//!
//! The test named `root_*` needs root (it skips without it, and fails in CI, which runs as root).

mod node;

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use node::cgroup::{Driver, Hierarchies, PodCgroup};
use node::check::{assert_client_capture, traced};
use node::dnsmasq::{self, DnsmasqLog, LogQuery, HOST, NX, TXT};
use node::net::{Host, Node, Run};
use node::resolvers::tool;
use node::{have_root, have_tool, unique_tag, TempDir};

/// The fields asked of tshark, in the order [`Packet::parse`] reads them.
const FIELDS: [&str; 12] = [
    "frame.interface_name",
    "frame.comment",
    "ip.proto",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "dns.flags.response",
    "dns.qry.name",
    "dns.qry.type",
];

/// One packet tshark dissected as DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Packet {
    interface: String,
    comment: String,
    tcp: bool,
    src: SocketAddr,
    dst: SocketAddr,
    response: bool,
    qname: String,
    qtype: String,
}

impl Packet {
    /// One line of `tshark -T fields` (tab-separated, [`FIELDS`]).
    fn parse(line: &str) -> Option<Packet> {
        let f: Vec<&str> = line.split('\t').collect();
        let [interface, comment, proto, src, dst, usport, udport, tsport, tdport, response, qname, qtype] =
            f[..]
        else {
            return None;
        };
        let tcp = proto == "6";
        let (sport, dport) = if tcp {
            (tsport, tdport)
        } else {
            (usport, udport)
        };
        let addr = |ip: &str, port: &str| -> Option<SocketAddr> {
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        };
        Some(Packet {
            interface: interface.to_string(),
            comment: comment.to_string(),
            tcp,
            src: addr(src, sport)?,
            dst: addr(dst, dport)?,
            response: response == "1",
            qname: qname.to_string(),
            qtype: qtype_name(qtype).to_string(),
        })
    }
}

/// The name of a query type tshark printed as its number, for the types this test asks.
fn qtype_name(number: &str) -> &str {
    match number {
        "1" => "A",
        "16" => "TXT",
        "28" => "AAAA",
        other => other,
    }
}

/// How tshark reads the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reading {
    /// As it comes: the second copy of a TCP message is a retransmission, not DNS.
    AsItComes,
    /// `-o tcp.analyze_sequence_numbers:FALSE`, the switch README.md gives: every copy is DNS.
    EveryCopy,
}

/// What tshark printed when it read `file` on stdin, as nobody (as root it warns on stderr), in
/// an environment of its own: nobody's home has no Wireshark profile to read.
struct Dissected {
    packets: Vec<Packet>,
    stdout: String,
    stderr: String,
    success: bool,
}

fn tshark(file: &Path, reading: Reading) -> Dissected {
    let mut cmd = Command::new(tool("setpriv"));
    cmd.env_clear()
        .env("HOME", "/nonexistent")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(tool("tshark"));
    if reading == Reading::EveryCopy {
        cmd.args(["-o", "tcp.analyze_sequence_numbers:FALSE"]);
    }
    cmd.args(["-r", "-", "-Y", "dns", "-T", "fields"]);
    for field in FIELDS {
        cmd.args(["-e", field]);
    }
    let out = cmd
        .stdin(File::open(file).expect("the pcapng file"))
        .output()
        .expect("run tshark");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Dissected {
        packets: stdout.lines().filter_map(Packet::parse).collect(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

/// The interface dnslens gives a namespace of the node.
fn interface(host: &Host) -> String {
    format!("netns:[{}]", host.netns_ino)
}

/// The problems with how one logged query of `run` and its response were dissected: each of
/// the four copies (client and server, query and response) once as DNS on its namespace's
/// interface, commented with its process (the client's with its pod too); over TCP, read as
/// it comes, the server's query and the client's response are second copies, never DNS.
fn check_query(
    node: &Node,
    log: &DnsmasqLog,
    q: &LogQuery,
    run: &Run,
    pod: &PodCgroup,
    dissected: &Dissected,
    reading: Reading,
) -> Vec<String> {
    let tcp = log.is_tcp(q, node.dnsmasq_pid());
    let server = SocketAddr::new(IpAddr::V4(node.server.v4), 53);
    let client_comment = format!("pid {} {} ", run.pid, run.name);
    let pod_comment = format!("; pod uid {}", pod.pod_uid);
    let server_comment = format!("pid {} dnsmasq ", q.dnsmasq_pid);
    let client = &node.clients[run.client];
    let second_copies = if tcp && reading == Reading::AsItComes {
        0
    } else {
        1
    };
    let copies = [
        ("the client's query", false, client, 1),
        ("the server's query", false, &node.server, second_copies),
        ("the server's response", true, &node.server, 1),
        ("the client's response", true, client, second_copies),
    ];
    let mut problems = Vec::new();
    for (what, response, at, want) in copies {
        let (src, dst) = if response {
            (server, q.client)
        } else {
            (q.client, server)
        };
        let commented = |c: &str| {
            if at.ns == client.ns {
                c.starts_with(&client_comment) && c.contains(&pod_comment)
            } else {
                c.starts_with(&server_comment)
            }
        };
        let found = dissected
            .packets
            .iter()
            .filter(|p| {
                (p.src, p.dst, p.response, p.tcp) == (src, dst, response, tcp)
                    && (p.qname.as_str(), p.qtype.as_str()) == (q.qname.as_str(), q.qtype.as_str())
                    && p.interface == interface(at)
                    && commented(&p.comment)
            })
            .count();
        if found != want {
            problems.push(format!(
                "[{}] {} ({}, {reading:?}): {what} dissected {found} times with its comment, \
                 want {want}",
                run.label,
                q.line,
                if tcp { "tcp" } else { "udp" }
            ));
        }
    }
    problems
}

#[test]
fn root_pcapng_is_dissected_by_tshark_with_process_and_pod() {
    if !have_root() || !have_tool("tshark") {
        return;
    }
    let node = Node::start(1);
    let pod = PodCgroup::new(Driver::Systemd, Hierarchies::Both);
    let (tag, _) = unique_tag();
    let dir = TempDir::new(&format!("{tag}-pcapng"));
    let file = dir.path().join("dns.pcapng");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let (dig, getent, kdig) = (tool("dig"), tool("getent"), tool("kdig"));
    let at = format!("@{}", node.server.v4);
    let (runs, stopped) = traced(&node, &["--pcapng", file_arg], || {
        let dig = node.run(
            "dig",
            0,
            Some(&pod),
            &dig,
            &[&at, "+tries=1", HOST, "A", NX, "AAAA"],
        );
        dig.expect_ok().expect_output("NXDOMAIN").expect_queries();
        // In the pod's namespace, whose resolv.conf names the node's dnsmasq.
        let glibc = node.run("getent", 0, Some(&pod), &getent, &["ahosts", HOST]);
        glibc.expect_ok().expect_queries();
        let tcp = node.run("kdig-tcp", 0, Some(&pod), &kdig, &[&at, "+tcp", TXT, "TXT"]);
        tcp.expect_ok()
            .expect_output(dnsmasq::TXT_VALUE)
            .expect_queries();
        vec![dig, glibc, tcp]
    });
    assert_client_capture("--pcapng beside --json", &node, &runs, &stopped);
    if let Some(dump) = std::env::var_os("DNSLENS_E2E_DUMP") {
        let _ = std::fs::copy(&file, Path::new(&dump).join(format!("{}.pcapng", node.tag)));
    }
    let log = node.dnsmasq_log();
    for reading in [Reading::AsItComes, Reading::EveryCopy] {
        let dissected = tshark(&file, reading);
        assert!(
            dissected.success && dissected.stderr.is_empty(),
            "tshark ({reading:?}) failed or complained:\n{}",
            dissected.stderr
        );
        let problems: Vec<String> = runs
            .iter()
            .flat_map(|run| {
                run.log_queries
                    .iter()
                    .flat_map(|q| check_query(&node, &log, q, run, &pod, &dissected, reading))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{} problem(s):\n{}\n--- tshark ({reading:?}):\n{}",
            problems.len(),
            problems.join("\n"),
            dissected.stdout
        );
    }
}
