//! The JSON form of events, connects and alerts (docs/schema.md), written by hand into a byte
//! buffer. Writing one line per message was most of what `dnslens trace --json` spent: serde_json
//! escaped every key and formatted times and addresses through `fmt`, about 2 µs an event
//! (bench/HISTORY.md). Here text dnslens made (keys, times, addresses, mnemonics) is copied as is
//! and only text from outside (names, process fields, paths, labels) is escaped.

use dnslens_abi::Named;
use std::net::{IpAddr, SocketAddr};

use dnslens_abi::{Direction, Transport};

use crate::alert::Alert;
use crate::clock::Rfc3339;
use crate::model::{
    Answer, Attribution, ConnectEvent, Container, DnsEvent, MessageFlags, Pod, ProcessInfo, Served,
};

/// One event as a JSON object and a newline.
pub fn write_event_line(out: &mut Vec<u8>, e: &DnsEvent) {
    write_event(out, e);
    out.push(b'\n');
}

/// One event as a JSON object, its fields in the schema's order.
pub fn write_event(out: &mut Vec<u8>, e: &DnsEvent) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&Rfc3339(e.time_ns).bytes());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(e.kind.name().as_bytes());
    out.extend_from_slice(b"\",\"role\":\"");
    out.extend_from_slice(e.role.name().as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    write_int(out, e.id);
    out.extend_from_slice(b",\"qname\":");
    write_str(out, &e.qname);
    out.extend_from_slice(b",\"qtype\":");
    write_code(out, e.qtype.name(), "TYPE", e.qtype.0);
    out.extend_from_slice(b",\"qclass\":");
    write_class(out, e.qclass);
    out.extend_from_slice(b",\"rcode\":");
    match e.rcode {
        Some(rcode) => write_code(out, rcode.name(), "RCODE", rcode.0),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"flags\":");
    write_flags(out, &e.flags);
    out.extend_from_slice(b",\"answers\":[");
    for (i, answer) in e.answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_answer(out, answer);
    }
    out.extend_from_slice(b"],\"latency_us\":");
    write_opt_int(out, e.latency_us);
    if let Some(timeout_ms) = e.timeout_ms {
        out.extend_from_slice(b",\"timeout_ms\":");
        write_int(out, timeout_ms);
    }
    write_endpoints(out, e.transport, e.src, e.dst);
    out.extend_from_slice(b",\"syscall\":\"");
    out.extend_from_slice(e.syscall.name().as_bytes());
    out.extend_from_slice(match e.direction {
        Direction::Send => b"\",\"direction\":\"send\"",
        Direction::Recv => b"\",\"direction\":\"recv\"",
    });
    write_attribution(out, &e.who);
    out.extend_from_slice(b",\"socket\":");
    write_int(out, e.who.socket);
    out.extend_from_slice(b",\"size\":");
    write_int(out, e.size);
    out.extend_from_slice(b",\"truncated\":");
    write_bool(out, e.truncated);
    write_served(out, &e.served);
    out.push(b'}');
}

/// `,"served":[…]`, only on a forwarder's upstream query.
fn write_served(out: &mut Vec<u8>, served: &[Served]) {
    if served.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"served\":[");
    for (i, s) in served.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_client(out, s);
    }
    out.push(b']');
}

/// `pod` as events write it: the object, or `null`.
fn write_opt_pod(out: &mut Vec<u8>, pod: Option<&Pod>) {
    match pod {
        Some(pod) => write_pod(out, pod),
        None => out.extend_from_slice(b"null"),
    }
}

/// One client of a forwarder's upstream query: `{"pid":…,"name":…,"pod":…}`.
fn write_client(out: &mut Vec<u8>, s: &Served) {
    out.extend_from_slice(b"{\"pid\":");
    write_int(out, s.pid);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &s.name);
    out.extend_from_slice(b",\"pod\":");
    write_opt_pod(out, s.pod.as_ref());
    out.push(b'}');
}

/// Whom an event belongs to as one object, `{"socket":…,"process":…,…,"host":…}` and
/// `served` where the event has it, the fields as in an event line: dnstap's `extra`.
pub fn write_attribution_object(out: &mut Vec<u8>, e: &DnsEvent) {
    out.extend_from_slice(b"{\"socket\":");
    write_int(out, e.who.socket);
    write_attribution(out, &e.who);
    write_served(out, &e.served);
    out.push(b'}');
}

/// One connect as a JSON object and a newline.
pub fn write_connect_line(out: &mut Vec<u8>, c: &ConnectEvent) {
    write_connect(out, c);
    out.push(b'\n');
}

/// One connect as a JSON object, its fields in the schema's order.
pub fn write_connect(out: &mut Vec<u8>, c: &ConnectEvent) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&Rfc3339(c.time_ns).bytes());
    out.extend_from_slice(b"\",\"kind\":\"connect\"");
    write_endpoints(out, c.transport, c.src, c.dst);
    write_attribution(out, &c.who);
    out.extend_from_slice(b",\"socket\":");
    write_int(out, c.who.socket);
    out.push(b'}');
}

/// `,"transport":…,"src":…,"dst":…`
pub(super) fn write_endpoints(
    out: &mut Vec<u8>,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
) {
    out.extend_from_slice(match transport {
        Transport::Udp => b",\"transport\":\"udp\",\"src\":\"",
        Transport::Tcp => b",\"transport\":\"tcp\",\"src\":\"",
    });
    write_socket_addr(out, src);
    out.extend_from_slice(b"\",\"dst\":\"");
    write_socket_addr(out, dst);
    out.push(b'"');
}

/// `,"process":…` through `"host":…`: whom the line belongs to, the same in every kind of
/// line (events and connects add `socket` after it).
pub(super) fn write_attribution(out: &mut Vec<u8>, a: &Attribution) {
    out.extend_from_slice(b",\"process\":");
    write_process(out, &a.process);
    out.extend_from_slice(b",\"netns\":");
    write_int(out, a.netns);
    out.extend_from_slice(b",\"cgroup\":");
    write_str(out, &a.cgroup);
    out.extend_from_slice(b",\"container\":");
    match &a.container {
        Some(container) => write_container(out, container),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"pod\":");
    write_opt_pod(out, a.pod.as_ref());
    out.extend_from_slice(b",\"node\":");
    write_opt_str(out, a.node.as_deref());
    out.extend_from_slice(b",\"host\":");
    write_opt_bool(out, a.host);
}

/// One alert as a JSON object and a newline.
pub fn write_alert_line(out: &mut Vec<u8>, a: &Alert) {
    write_alert(out, a);
    out.push(b'\n');
}

/// One alert as a JSON object: `kind` first (alerts are read by their kind), then what raised
/// it, its evidence, and whom it is about. Alerts are few: the evidence, a struct of optional
/// fields, goes through serde.
pub fn write_alert(out: &mut Vec<u8>, a: &Alert) {
    out.extend_from_slice(b"{\"kind\":\"alert\",\"time\":\"");
    out.extend_from_slice(&Rfc3339(a.time_ns).bytes());
    out.extend_from_slice(b"\",\"detector\":\"");
    out.extend_from_slice(a.detector.name().as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(a.severity.name().as_bytes());
    out.extend_from_slice(b"\",\"summary\":");
    write_str(out, &a.summary);
    out.extend_from_slice(b",\"count\":");
    write_int(out, a.count);
    out.extend_from_slice(b",\"window_s\":");
    write_int(out, a.window_s);
    out.extend_from_slice(b",\"evidence\":");
    serde_json::to_writer(&mut *out, &a.evidence).expect("evidence always serializes");
    write_attribution(out, &a.who);
    // A replayed server's dnstap knows its clients by address alone.
    if let Some(client) = a.who.client {
        use std::io::Write;
        write!(out, ",\"client\":\"{client}\"").expect("writing to a Vec cannot fail");
    }
    out.push(b'}');
}

/// `process`: who moved the message.
pub fn write_process(out: &mut Vec<u8>, p: &ProcessInfo) {
    out.extend_from_slice(b"{\"pid\":");
    write_int(out, p.pid);
    out.extend_from_slice(b",\"tid\":");
    write_int(out, p.tid);
    out.extend_from_slice(b",\"comm\":");
    write_str(out, &p.comm);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &p.name);
    out.extend_from_slice(b",\"exe\":");
    write_opt_str(out, p.exe.as_deref());
    out.extend_from_slice(b",\"uid\":");
    write_int(out, p.uid);
    out.extend_from_slice(b",\"ppid\":");
    write_int(out, p.ppid);
    out.push(b'}');
}

/// `container`: id, runtime and the name in the pod spec.
pub fn write_container(out: &mut Vec<u8>, c: &Container) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, &c.id);
    out.extend_from_slice(b",\"runtime\":\"");
    out.extend_from_slice(c.runtime.name().as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    write_opt_str(out, c.name.as_deref());
    out.push(b'}');
}

/// `pod`: uid, and what the pod directory knows (nulls and no labels when it knows nothing).
pub fn write_pod(out: &mut Vec<u8>, pod: &Pod) {
    out.extend_from_slice(b"{\"uid\":");
    write_str(out, &pod.uid);
    out.extend_from_slice(b",\"name\":");
    write_opt_str(out, pod.name());
    out.extend_from_slice(b",\"namespace\":");
    write_opt_str(out, pod.namespace());
    out.extend_from_slice(b",\"workload\":");
    match pod.workload() {
        Some(w) => {
            out.extend_from_slice(b"{\"kind\":");
            write_str(out, &w.kind);
            out.extend_from_slice(b",\"name\":");
            write_str(out, &w.name);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"labels\":{");
    if let Some(info) = pod.info.as_deref() {
        for (i, (key, value)) in info.labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, key);
            out.push(b':');
            write_str(out, value);
        }
    }
    out.extend_from_slice(b"}}");
}

fn write_flags(out: &mut Vec<u8>, f: &MessageFlags) {
    out.extend_from_slice(b"{\"qr\":");
    write_bool(out, f.qr);
    out.extend_from_slice(b",\"opcode\":");
    write_int(out, f.opcode);
    for (key, value) in [
        (&b",\"aa\":"[..], f.aa),
        (b",\"tc\":", f.tc),
        (b",\"rd\":", f.rd),
        (b",\"ra\":", f.ra),
        (b",\"ad\":", f.ad),
        (b",\"cd\":", f.cd),
    ] {
        out.extend_from_slice(key);
        write_bool(out, value);
    }
    out.push(b'}');
}

fn write_answer(out: &mut Vec<u8>, a: &Answer) {
    out.extend_from_slice(b"{\"name\":");
    write_str(out, &a.name);
    out.extend_from_slice(b",\"type\":");
    write_code(out, a.rtype.name(), "TYPE", a.rtype.0);
    out.extend_from_slice(b",\"ttl\":");
    write_int(out, a.ttl);
    out.extend_from_slice(b",\"data\":");
    write_str(out, &a.data);
    out.push(b'}');
}

/// A mnemonic (`"AAAA"`), or the RFC 3597 form of a code without one (`"TYPE65280"`).
pub(super) fn write_code(out: &mut Vec<u8>, name: Option<&'static str>, prefix: &str, value: u16) {
    out.push(b'"');
    match name {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => {
            out.extend_from_slice(prefix.as_bytes());
            write_int(out, value);
        }
    }
    out.push(b'"');
}

/// Classes with a presentation name (RFC 1035 3.2.4, RFC 2136 for NONE); RFC 3597's `CLASSn`
/// for the rest.
const CLASSES: [(u16, &str); 5] = [(1, "IN"), (3, "CH"), (4, "HS"), (254, "NONE"), (255, "ANY")];

fn write_class(out: &mut Vec<u8>, class: u16) {
    let name = CLASSES.iter().find(|(c, _)| *c == class).map(|(_, n)| *n);
    write_code(out, name, "CLASS", class);
}

/// The class a written `qclass` names (the reader's side of [`write_class`]).
pub fn parse_class(text: &str) -> Option<u16> {
    match CLASSES.iter().find(|(_, n)| *n == text) {
        Some((class, _)) => Some(*class),
        None => text.strip_prefix("CLASS")?.parse().ok(),
    }
}

/// As `SocketAddr`'s `Display`: `10.0.0.1:53`, `[fd00::1]:53`.
pub(super) fn write_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_int(out, octet);
            }
        }
        IpAddr::V6(ip) => {
            use std::io::Write;
            // IPv6's shortest form has rules of its own (RFC 5952): std's Display keeps them.
            write!(out, "[{ip}]").expect("writing to a Vec cannot fail");
        }
    }
    out.push(b':');
    write_int(out, addr.port());
}

/// Digits written in place: formatting into a buffer first cost a `memcpy` call per number,
/// the largest part of the writer's time.
pub(super) fn write_int(out: &mut Vec<u8>, value: impl Into<u64>) {
    let mut value: u64 = value.into();
    let len = value.checked_ilog10().map_or(1, |log| log as usize + 1);
    out.reserve(len);
    let start = out.len();
    for slot in out.spare_capacity_mut()[..len].iter_mut().rev() {
        slot.write(b'0' + (value % 10) as u8);
        value /= 10;
    }
    // SAFETY: the `len` bytes past the old length were all written just above.
    unsafe { out.set_len(start + len) };
}

pub(super) fn write_opt_int(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(v) => write_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_bool(out: &mut Vec<u8>, value: bool) {
    // Two constant-length copies, which compile to plain stores rather than a `memcpy` call.
    if value {
        out.extend_from_slice(b"true");
    } else {
        out.extend_from_slice(b"false");
    }
}

fn write_opt_bool(out: &mut Vec<u8>, value: Option<bool>) {
    match value {
        Some(v) => write_bool(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// The bytes a JSON string must escape.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// A JSON string: quotes, and escapes for `"`, `\` and control characters (the forms
/// serde_json writes). Runs of plain bytes are copied whole.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every string needs no escape: a check without early exit vectorizes, then one copy.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[plain_from..i]);
        plain_from = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// The JSON of an event as text.
pub fn event_to_string(e: &DnsEvent) -> String {
    let mut out = Vec::new();
    write_event(&mut out, e);
    String::from_utf8(out).expect("the writer produces UTF-8")
}

/// The JSON of a connect as text.
pub fn connect_to_string(c: &ConnectEvent) -> String {
    let mut out = Vec::new();
    write_connect(&mut out, c);
    String::from_utf8(out).expect("the writer produces UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use dnslens_wire::RecordType;

    use crate::container::Runtime;
    use crate::model::{sample, Kind};
    use crate::pods::{PodInfo, Workload};

    #[test]
    fn schema_of_a_paired_response() {
        let q = sample::query(4660, "example.com", 1, 0);
        let mut e = sample::response(&q, 0, &["93.184.215.14"], 123_456_789);
        e.latency_us = Some(123);
        e.who.process.exe = Some("/usr/bin/dig".into());
        e.who.cgroup = "/user.slice/user-1000.slice/session-3.scope".into();
        e.who.host = Some(true);
        e.who.node = Some(Arc::from("node-1"));
        assert_eq!(
            event_to_string(&e),
            r#"{"time":"2026-11-26T10:54:55.123456789Z","kind":"response","role":"client","id":4660,"qname":"example.com","qtype":"A","qclass":"IN","rcode":"NOERROR","flags":{"qr":true,"opcode":0,"aa":false,"tc":false,"rd":true,"ra":true,"ad":false,"cd":false},"answers":[{"name":"example.com","type":"A","ttl":300,"data":"93.184.215.14"}],"latency_us":123,"transport":"udp","src":"10.1.1.1:53","dst":"10.1.1.2:45678","syscall":"recvmsg","direction":"recv","process":{"pid":123,"tid":124,"comm":"isc-net-0000","name":"dig","exe":"/usr/bin/dig","uid":0,"ppid":1},"netns":4026531840,"cgroup":"/user.slice/user-1000.slice/session-3.scope","container":null,"pod":null,"node":"node-1","host":true,"socket":12345,"size":61,"truncated":false}"#
        );
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    #[test]
    fn schema_of_a_connect() {
        let mut c = sample::connect("[2606:2800:220:1::1]:443", 5_000_000);
        c.who.process.exe = Some("/usr/bin/curl".into());
        c.who.process.name = "curl".into();
        c.who.process.comm = "curl".into();
        c.who.cgroup = format!("/kubepods/burstable/pod{UID}/{ID}").into();
        c.who.container = Some(Container {
            id: Arc::from(ID),
            runtime: Runtime::Unknown,
            name: Some("app".to_string()),
        });
        c.who.pod = Some(Pod {
            uid: Arc::from(UID),
            info: None,
        });
        c.who.node = Some(Arc::from("node-1"));
        c.who.host = Some(false);
        let mut line = Vec::new();
        write_connect_line(&mut line, &c);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!(
                r#"{{"time":"2026-11-26T10:54:55.005000000Z","kind":"connect","transport":"tcp","src":"10.1.1.2:0","dst":"[2606:2800:220:1::1]:443","process":{{"pid":123,"tid":124,"comm":"curl","name":"curl","exe":"/usr/bin/curl","uid":0,"ppid":1}},"netns":4026531840,"cgroup":"/kubepods/burstable/pod{UID}/{ID}","container":{{"id":"{ID}","runtime":"unknown","name":"app"}},"pod":{{"uid":"{UID}","name":null,"namespace":null,"workload":null,"labels":{{}}}},"node":"node-1","host":false,"socket":23456}}
"#
            )
        );
        let v: serde_json::Value =
            serde_json::from_str(&connect_to_string(&c)).expect("valid JSON");
        assert_eq!(v["process"]["exe"], "/usr/bin/curl");
    }

    /// The fields from `cgroup` on of a query from a container of a pod.
    fn attribution_json(container_name: Option<&str>, info: Option<PodInfo>) -> String {
        let mut q = sample::query(1, "payments.production.svc.cluster.local", 1, 0);
        q.who.cgroup = format!("/kubepods/burstable/pod{UID}/{ID}").into();
        q.who.container = Some(Container {
            id: Arc::from(ID),
            runtime: Runtime::Unknown,
            name: container_name.map(str::to_string),
        });
        q.who.pod = Some(Pod {
            uid: Arc::from(UID),
            info: info.map(Arc::new),
        });
        q.who.host = Some(false);
        let json = event_to_string(&q);
        let from = json.find(r#""cgroup""#).unwrap();
        json[from..].to_string()
    }

    #[test]
    fn schema_of_a_container_in_a_known_pod() {
        let info = PodInfo {
            uid: UID.to_string(),
            name: "payment-svc-7d4b9f-xk2p1".to_string(),
            namespace: "production".to_string(),
            node: Some("node-1".to_string()),
            pod_ip: Some("10.244.1.17".to_string()),
            service_account: None,
            labels: [("app", "payment-svc"), ("pod-template-hash", "7d4b9f")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload: Some(Workload {
                kind: "Deployment".to_string(),
                name: "payment-svc".to_string(),
            }),
            containers: Default::default(),
        };
        assert_eq!(
            attribution_json(Some("app"), Some(info)),
            format!(
                r#""cgroup":"/kubepods/burstable/pod{UID}/{ID}","container":{{"id":"{ID}","runtime":"unknown","name":"app"}},"pod":{{"uid":"{UID}","name":"payment-svc-7d4b9f-xk2p1","namespace":"production","workload":{{"kind":"Deployment","name":"payment-svc"}},"labels":{{"app":"payment-svc","pod-template-hash":"7d4b9f"}}}},"node":null,"host":false,"socket":12345,"size":45,"truncated":false}}"#
            )
        );
    }

    #[test]
    fn schema_of_a_pod_without_metadata() {
        assert_eq!(
            attribution_json(None, None),
            format!(
                r#""cgroup":"/kubepods/burstable/pod{UID}/{ID}","container":{{"id":"{ID}","runtime":"unknown","name":null}},"pod":{{"uid":"{UID}","name":null,"namespace":null,"workload":null,"labels":{{}}}},"node":null,"host":false,"socket":12345,"size":45,"truncated":false}}"#
            )
        );
    }

    fn parse(e: &DnsEvent) -> serde_json::Value {
        serde_json::from_str(&event_to_string(e)).expect("valid JSON")
    }

    #[test]
    fn schema_of_query_and_unanswered() {
        let mut q = sample::query(1, "example.org", 28, 0);
        q.src = "[fd00::2]:40000".parse().unwrap();
        q.dst = "[fd00::1]:53".parse().unwrap();
        q.qclass = 3;
        let v = parse(&q);
        assert_eq!(v["rcode"], serde_json::Value::Null);
        assert_eq!(v["latency_us"], serde_json::Value::Null);
        assert_eq!(v["process"]["exe"], serde_json::Value::Null);
        for unknown in ["container", "pod", "node", "host"] {
            assert_eq!(v[unknown], serde_json::Value::Null, "{unknown}");
        }
        assert_eq!(v["qtype"], "AAAA");
        assert_eq!(v["qclass"], "CH");
        assert_eq!(v["src"], "[fd00::2]:40000");
        assert_eq!(v["dst"], "[fd00::1]:53");
        assert!(v.get("timeout_ms").is_none());

        q.kind = Kind::Unanswered;
        q.timeout_ms = Some(5000);
        let v = parse(&q);
        assert_eq!(v["kind"], "unanswered");
        assert_eq!(v["timeout_ms"], 5000);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut expected = vec![
            "time",
            "kind",
            "role",
            "id",
            "qname",
            "qtype",
            "qclass",
            "rcode",
            "flags",
            "answers",
            "latency_us",
            "timeout_ms",
            "transport",
            "src",
            "dst",
            "syscall",
            "direction",
            "process",
            "netns",
            "cgroup",
            "container",
            "pod",
            "node",
            "host",
            "socket",
            "size",
            "truncated",
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn codes_without_mnemonics_use_the_rfc_3597_forms() {
        let mut q = sample::query(1, "x.example", 65_280, 0);
        q.qclass = 42;
        q.rcode = Some(dnslens_wire::Rcode(3000));
        let v = parse(&q);
        assert_eq!(v["qtype"], "TYPE65280");
        assert_eq!(v["qclass"], "CLASS42");
        assert_eq!(v["rcode"], "RCODE3000");
        assert_eq!(
            RecordType(65_280).to_string(),
            "TYPE65280",
            "as Display says"
        );
    }

    #[test]
    fn text_from_outside_is_escaped_and_reads_back_unchanged() {
        let hostile = "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é\u{2028}😀";
        let mut q = sample::query(1, hostile, 1, 0);
        q.who.process.comm = hostile.into();
        q.who.cgroup = hostile.into();
        let text = event_to_string(&q);
        assert!(!text.contains('\n'), "one line: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["qname"], hostile);
        // A comm holds at most 16 bytes, as in the kernel.
        assert_eq!(
            v["process"]["comm"],
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é"
        );
        assert_eq!(v["cgroup"], hostile);
        // The same bytes as serde_json writes.
        let mut mine = Vec::new();
        write_str(&mut mine, hostile);
        assert_eq!(mine, serde_json::to_vec(hostile).unwrap());
    }

    #[test]
    fn addresses_print_as_display_does() {
        for addr in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.96.0.10:53",
            "[::1]:53",
            "[fd00::a:0:1]:5353",
            "[::ffff:10.0.0.1]:53",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            write_socket_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }
}
