//! What dnslens printed, compared with what dnsmasq logged. Every check returns the list of
//! problems found, each naming the query (as dnsmasq logged it) and what was wrong, so a failing
//! test reports all missing or wrong captures at once, with the JSON lines and log excerpt.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use super::dnsmasq::{self, DnsmasqLog, LogQuery};
use super::net::{Node, Run};
use super::trace::{Stopped, Trace};
use super::wait_until;

fn text<'a>(e: &'a Value, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Value::as_str)
}

fn sock(e: &Value, key: &str) -> Option<SocketAddr> {
    text(e, key).and_then(|s| s.parse().ok())
}

fn process<'a>(e: &'a Value, key: &str) -> Option<&'a Value> {
    e.get("process").and_then(|p| p.get(key))
}

/// Events whose source or destination is one of `ips`.
fn touching<'a>(events: &'a [Value], ips: &[IpAddr]) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            ["src", "dst"]
                .iter()
                .any(|k| sock(e, k).is_some_and(|a| ips.contains(&a.ip())))
        })
        .collect()
}

/// The addresses of the node's hosts: events touching them are this test's.
fn node_ips(node: &Node) -> Vec<IpAddr> {
    std::iter::once(&node.server)
        .chain(&node.clients)
        .flat_map(|h| h.ips())
        .collect()
}

fn describe(q: &LogQuery, tcp: bool) -> String {
    format!(
        "query[{}] {} from {} ({})",
        q.qtype,
        q.qname,
        q.client,
        if tcp { "tcp" } else { "udp" }
    )
}

fn compact(e: &Value) -> String {
    let mut s = e.to_string();
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The problems found with one captured message.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    /// Records a problem unless `got` is `want`.
    fn eq(&mut self, what: &str, got: Option<&Value>, want: impl Into<Value>) {
        let want = want.into();
        if got != Some(&want) {
            self.0
                .push(format!("{what}: got {}, want {want}", fmt_opt(got)));
        }
    }

    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }
}

fn fmt_opt(v: Option<&Value>) -> String {
    v.map_or_else(|| "nothing".to_string(), Value::to_string)
}

/// The side of the conversation being checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Who must have sent and received one logged query, on one side.
struct Want {
    pid: u32,
    name: String,
    cgroup: Option<String>,
    netns: u64,
}

/// Checks, on one side, the queries of one group: those dnsmasq logged with the same client
/// address, name and type (usually one; more when the client retried on the same socket). They
/// must be captured exactly as often as logged, from the right process, each with a matching,
/// decoded response.
fn check_group(
    node: &Node,
    log: &DnsmasqLog,
    group: &[&LogQuery],
    want: &Want,
    side: Side,
    events: &[&Value],
    problems: &mut Vec<String>,
) {
    let q = group[0];
    let main_pid = node.dnsmasq_pid();
    let tcp = group.iter().filter(|g| log.is_tcp(g, main_pid)).count();
    // Transport to expect, unless the group mixes both (a TCP port equal to a UDP one).
    let want_tcp = match tcp {
        0 => Some(false),
        n if n == group.len() => Some(true),
        _ => None,
    };
    let server = node.server_addr_for(q.client.ip());
    let role = if side == Side::Client {
        "client"
    } else {
        "server"
    };
    let (send, recv) = if side == Side::Client {
        ("send", "recv")
    } else {
        ("recv", "send")
    };
    let same_key = |e: &&&Value| {
        text(e, "qname") == Some(q.qname.as_str()) && text(e, "qtype") == Some(q.qtype.as_str())
    };
    let logged = log
        .queries
        .iter()
        .filter(|o| o.client == q.client && o.qname == q.qname && o.qtype == q.qtype)
        .count();
    let captured: Vec<&&Value> = events
        .iter()
        .filter(|e| text(e, "kind") == Some("query") && text(e, "role") == Some(role))
        .filter(|e| sock(e, "src") == Some(q.client) && sock(e, "dst") == Some(server))
        .filter(same_key)
        .collect();
    let mine: Vec<&&Value> = captured
        .iter()
        .copied()
        .filter(|e| process(e, "pid") == Some(&want.pid.into()))
        .collect();
    let head = format!(
        "{role} side of {}",
        describe(q, want_tcp.unwrap_or(log.is_tcp(q, main_pid)))
    );
    let mut local = Vec::new();
    if captured.len() != logged {
        local.push(format!(
            "captured {} time(s) as kind=query role={role}, dnsmasq logged it {logged} time(s)",
            captured.len()
        ));
        // Near misses: the same question on the same client port with other addresses.
        let near: Vec<String> = events
            .iter()
            .filter(|e| text(e, "kind") == Some("query") && text(e, "role") == Some(role))
            .filter(same_key)
            .filter(|e| !captured.contains(e))
            .filter(|e| sock(e, "src").map(|a| a.port()) == Some(q.client.port()))
            .map(|e| {
                let at = |k| text(e, k).unwrap_or("nothing");
                let pid = fmt_opt(process(e, "pid"));
                let (src, dst, call) = (at("src"), at("dst"), at("syscall"));
                format!(
                    "src {src} dst {dst} (syscall {call}, pid {pid}, id {})",
                    fmt_opt(e.get("id"))
                )
            })
            .collect();
        if !near.is_empty() {
            local.push(format!("captured instead with {}", near.join("; ")));
        }
    }
    if mine.len() != group.len() && !captured.is_empty() {
        local.push(format!(
            "captured {} time(s) from pid {}, which dnsmasq logged asking it {} time(s)",
            mine.len(),
            want.pid,
            group.len()
        ));
    }
    let checked = if mine.is_empty() { &captured } else { &mine };
    for query in checked {
        let mut p = Findings::default();
        if let Some(tcp) = want_tcp {
            p.eq("transport", query.get("transport"), tcp_str(tcp));
        }
        p.eq("direction", query.get("direction"), send);
        p.eq("process.pid", process(query, "pid"), want.pid);
        p.eq("process.name", process(query, "name"), want.name.as_str());
        if let Some(cg) = &want.cgroup {
            p.eq("cgroup", query.get("cgroup"), cg.as_str());
        }
        p.eq("netns", query.get("netns"), want.netns);
        if !query.get("id").is_some_and(Value::is_u64) {
            let got = fmt_opt(query.get("id"));
            p.push(format!("id: got {got}, want a number"));
        }
        let responses: Vec<&&Value> = events
            .iter()
            .filter(|e| text(e, "kind") == Some("response") && text(e, "role") == Some(role))
            .filter(|e| e.get("id") == query.get("id"))
            .filter(|e| e.get("transport") == query.get("transport"))
            .filter(|e| sock(e, "src") == Some(server) && sock(e, "dst") == Some(q.client))
            .filter(same_key)
            .collect();
        match responses.as_slice() {
            [r] => {
                p.eq("response rcode", r.get("rcode"), log.rcode(q));
                p.eq("response direction", r.get("direction"), recv);
                p.eq("response process.pid", process(r, "pid"), want.pid);
                if let Some(cg) = &want.cgroup {
                    p.eq("response cgroup", r.get("cgroup"), cg.as_str());
                }
                if !r.get("latency_us").is_some_and(Value::is_number) {
                    let got = fmt_opt(r.get("latency_us"));
                    p.push(format!("response latency_us: got {got}, want a number"));
                }
                let over_tcp = r.get("transport") == Some(&tcp_str(true));
                check_answers(log, q, over_tcp, r, &mut p);
            }
            _ => p.push(format!(
                "{} matching responses (kind=response role={role} id={} transport={} \
                 src={server} dst={}), want 1",
                responses.len(),
                fmt_opt(query.get("id")),
                fmt_opt(query.get("transport")),
                q.client
            )),
        }
        if !p.0.is_empty() {
            local.push(format!("in {}: {}", compact(query), p.0.join("; ")));
        }
    }
    if !local.is_empty() {
        let excerpts: Vec<String> = group.iter().map(|g| log.excerpt(g)).collect();
        problems.push(format!(
            "{head}:\n  - {}\n  dnsmasq log:\n{}",
            local.join("\n  - "),
            indent(&excerpts.join("\n"))
        ));
    }
}

/// Groups queries by (client address, name, type) and, for the server side, dnsmasq process,
/// keeping the log's order.
fn groups(queries: &[LogQuery], by_pid: bool) -> Vec<Vec<&LogQuery>> {
    let mut out: Vec<Vec<&LogQuery>> = Vec::new();
    for q in queries {
        let same = |g: &&LogQuery| {
            g.client == q.client
                && g.qname == q.qname
                && g.qtype == q.qtype
                && (!by_pid || g.dnsmasq_pid == q.dnsmasq_pid)
        };
        match out.iter_mut().find(|group| same(&group[0])) {
            Some(group) => group.push(q),
            None => out.push(vec![q]),
        }
    }
    out
}

fn tcp_str(tcp: bool) -> Value {
    if tcp { "tcp" } else { "udp" }.into()
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The answers must say what dnsmasq says it answered.
fn check_answers(log: &DnsmasqLog, q: &LogQuery, tcp: bool, r: &Value, p: &mut Findings) {
    if log.rcode(q) != "NOERROR" || (q.qname == dnsmasq::BIG && !tcp) {
        // A truncated UDP answer holds only what fitted.
        return;
    }
    let answers: Vec<&Value> = r
        .get("answers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let data_of = |rtype: &str| -> Vec<String> {
        answers
            .iter()
            .filter(|a| text(a, "type") == Some(rtype))
            .filter_map(|a| text(a, "data").map(str::to_string))
            .collect()
    };
    match q.qtype.as_str() {
        "A" | "AAAA" => {
            let got: BTreeSet<IpAddr> = data_of(&q.qtype)
                .iter()
                .filter_map(|d| d.parse().ok())
                .collect();
            let want = log.addresses(q);
            if got != want {
                p.push(format!(
                    "answers of type {}: got {got:?}, dnsmasq answered {want:?}",
                    q.qtype
                ));
            }
        }
        "TXT" if q.qname == dnsmasq::TXT => {
            let txt = data_of("TXT");
            if !txt.iter().any(|d| d.contains(dnsmasq::TXT_VALUE)) {
                p.push(format!("TXT answers {txt:?} lack {:?}", dnsmasq::TXT_VALUE));
            }
        }
        "SRV" if q.qname == dnsmasq::SRV => {
            let srv = data_of("SRV");
            if !srv.iter().any(|d| d.contains(dnsmasq::HOST)) {
                p.push(format!("SRV answers {srv:?} do not name {}", dnsmasq::HOST));
            }
        }
        _ => {}
    }
    if q.qname == dnsmasq::ALIAS
        && !data_of("CNAME")
            .iter()
            .any(|d| d.trim_end_matches('.') == dnsmasq::HOST)
    {
        p.push(format!(
            "no CNAME answer {} -> {}",
            dnsmasq::ALIAS,
            dnsmasq::HOST
        ));
    }
}

/// Client side: every query dnsmasq logged from a run was captured exactly once from that run's
/// process, cgroup and namespace, with its response; nothing else was captured from the clients,
/// and nothing of theirs is reported unanswered.
pub fn client_side(node: &Node, runs: &[Run], events: &[Value]) -> Vec<String> {
    let log = node.dnsmasq_log();
    let ours = touching(events, &node_ips(node));
    let mut problems = Vec::new();
    for run in runs {
        let want = Want {
            pid: run.pid,
            name: run.name.clone(),
            cgroup: run.cgroup.clone(),
            netns: node.clients[run.client].netns_ino,
        };
        for group in groups(&run.log_queries, false) {
            let mut p = Vec::new();
            check_group(node, &log, &group, &want, Side::Client, &ours, &mut p);
            problems.extend(p.into_iter().map(|p| format!("[{}] {p}", run.label)));
        }
    }
    // Keyed by client port rather than address, so that a query captured with a wrong source
    // address is reported once, as a near miss, not again here.
    let logged: BTreeSet<(u16, &str, &str)> = log
        .queries
        .iter()
        .map(|q| (q.client.port(), q.qname.as_str(), q.qtype.as_str()))
        .collect();
    for e in &ours {
        let key = (
            sock(e, "src").map(|a| a.port()).unwrap_or_default(),
            text(e, "qname").unwrap_or_default(),
            text(e, "qtype").unwrap_or_default(),
        );
        let is_client_query = text(e, "kind") == Some("query") && text(e, "role") == Some("client");
        if is_client_query && !logged.contains(&key) {
            problems.push(format!(
                "captured a client query that dnsmasq never logged: {}",
                compact(e)
            ));
        }
        if text(e, "kind") == Some("unanswered") {
            problems.push(format!(
                "reported unanswered, but dnsmasq answered: {}",
                compact(e)
            ));
        }
    }
    problems
}

/// Server side: every logged query was captured once as received by the dnsmasq process that
/// logged it (the main one for UDP, a forked child for TCP), with the response it sent.
pub fn server_side(node: &Node, events: &[Value]) -> Vec<String> {
    let log = node.dnsmasq_log();
    let ours = touching(events, &node_ips(node));
    let mut problems = Vec::new();
    for group in groups(&log.queries, true) {
        let want = Want {
            pid: group[0].dnsmasq_pid,
            name: "dnsmasq".to_string(),
            cgroup: None,
            netns: node.server.netns_ino,
        };
        check_group(
            node,
            &log,
            &group,
            &want,
            Side::Server,
            &ours,
            &mut problems,
        );
    }
    problems
}

/// A failure report: the problems, then what dnslens and dnsmasq printed.
pub fn report(title: &str, problems: &[String], node: &Node, stopped: &Stopped) -> String {
    let ours = touching(&stopped.events, &node_ips(node));
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    for e in &ours {
        let key = format!(
            "{}/{}/{}",
            text(e, "role").unwrap_or("?"),
            text(e, "kind").unwrap_or("?"),
            text(e, "transport").unwrap_or("?")
        );
        *by_kind.entry(key).or_default() += 1;
    }
    let mut by_kind: Vec<_> = by_kind.into_iter().collect();
    by_kind.sort();
    let log = node.dnsmasq_log();
    let mut s = format!(
        "{title}: {} problem(s)\n\n{}\n\n",
        problems.len(),
        problems.join("\n\n")
    );
    s += &format!(
        "--- dnslens: {} events in all, {} touching this node's clients {by_kind:?}; exit {:?}\n",
        stopped.events.len(),
        ours.len(),
        stopped.status
    );
    for e in ours.iter().take(150) {
        s += &compact(e);
        s.push('\n');
    }
    for line in stopped.bad_lines.iter().take(20) {
        s += &format!("not JSON: {line}\n");
    }
    s += &format!("--- dnslens stderr:\n{}\n", stopped.stderr);
    s += "--- dnsmasq queries:\n";
    for q in log.queries.iter().take(100) {
        s += &q.line;
        s.push('\n');
    }
    s
}

/// Runs `body` (which runs the resolvers) under `dnslens trace --json ARGS`, waits until the
/// client-side capture is complete (5 s at most), stops dnslens with SIGINT and returns the runs
/// and what it printed. With `DNSLENS_E2E_DUMP=DIR` set, also writes the JSON lines and the
/// dnsmasq log to `DIR/<node tag>.{jsonl,dnsmasq.log}` for inspection.
pub fn traced(node: &Node, args: &[&str], body: impl FnOnce() -> Vec<Run>) -> (Vec<Run>, Stopped) {
    let trace = Trace::start(args);
    let runs = body();
    wait_until(Duration::from_secs(5), || {
        client_side(node, &runs, &trace.events()).is_empty()
    });
    let stopped = trace.stop();
    if let Some(dir) = std::env::var_os("DNSLENS_E2E_DUMP") {
        let dir = std::path::Path::new(&dir);
        let _ = std::fs::create_dir_all(dir);
        let lines: String = stopped.events.iter().map(|e| format!("{e}\n")).collect();
        let _ = std::fs::write(dir.join(format!("{}.jsonl", node.tag)), lines);
        let _ = std::fs::copy(
            node.log_path(),
            dir.join(format!("{}.dnsmasq.log", node.tag)),
        );
    }
    (runs, stopped)
}

/// Problems with how dnslens stopped: it must exit by itself, successfully, after SIGINT, and
/// print only JSON lines on stdout.
pub fn stop_problems(stopped: &Stopped) -> Vec<String> {
    let mut problems = Vec::new();
    match stopped.status {
        Some(status) if status.success() => {}
        Some(status) => problems.push(format!("dnslens exited with {status} after SIGINT")),
        None => problems.push("dnslens did not exit within 10 s of SIGINT".to_string()),
    }
    if !stopped.bad_lines.is_empty() {
        problems.push(format!(
            "dnslens printed {} non-JSON line(s) on stdout",
            stopped.bad_lines.len()
        ));
    }
    problems
}

/// Asserts the client-side capture of `runs` (see `client_side`) and a clean stop.
pub fn assert_client_capture(title: &str, node: &Node, runs: &[Run], stopped: &Stopped) {
    let mut problems = client_side(node, runs, &stopped.events);
    problems.extend(stop_problems(stopped));
    assert!(
        problems.is_empty(),
        "{}",
        report(title, &problems, node, stopped)
    );
}
