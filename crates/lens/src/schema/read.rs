//! Reads back the JSON lines `dnslens trace --json [--connects]` writes (docs/schema.md): the
//! inverse of [`super::write`], for `dnslens detect --input`. Alert lines of the run that wrote
//! the trace are recognised and skipped (the replay raises its own).
//!
//! What the JSON does not carry is filled in as a replay needs it:
//! - `mono_ns`, the detectors' clock, is the line's wall time (`time`): lines are fed in
//!   file order, and the detectors take time as the largest stamp seen, so a wall clock stepped
//!   back during the trace holds their time still until it catches up;
//! - kernel ids are 0: processes are told apart by pid alone, and the process start time that
//!   unresolved_connect needs is unknown;
//! - of a pod, what the schema prints (uid, name, namespace, workload, labels); `node`,
//!   `pod_ip`, the service account and the container map stay empty.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dnslens_abi::Named;
use dnslens_wire::{Rcode, RecordType};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::clock::parse_rfc3339;
use crate::model::{
    Answer, Attribution, ConnectEvent, Container, DnsEvent, KernelIds, Kind, MessageFlags, Pod,
    ProcessInfo, Served, TaskName,
};
use crate::pods::{PodInfo, Workload};
use crate::schema::parse_class;

/// Why a line is not one the schema reads: which field and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(String);

impl From<serde_json::Error> for ReadError {
    fn from(e: serde_json::Error) -> Self {
        ReadError(e.to_string())
    }
}

/// `field: why`, as a context on an error.
fn context(field: &str) -> impl Fn(&dyn std::fmt::Display) -> ReadError + '_ {
    move |e| ReadError(format!("{field}: {e}"))
}

/// One line of a trace.
#[derive(Debug)]
pub enum Line {
    Event(Box<DnsEvent>),
    Connect(Box<ConnectEvent>),
    /// An alert written by the traced run.
    Alert,
}

/// Parses one line; `Ok(None)` for a blank one. Errors say which field and why; the caller
/// adds the line number.
pub fn parse_line(line: &str) -> Result<Option<Line>, ReadError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let (kind, e) = match serde_json::from_str::<LineJson>(line)? {
        LineJson::Alert(_) => return Ok(Some(Line::Alert)),
        LineJson::Connect(c) => return Ok(Some(Line::Connect(Box::new(c.into_connect()?)))),
        LineJson::Query(e) => (Kind::Query, e),
        LineJson::Response(e) => (Kind::Response, e),
        LineJson::Unanswered(e) => (Kind::Unanswered, e),
    };
    Ok(Some(Line::Event(Box::new(e.into_event(kind)?))))
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum LineJson {
    Query(EventJson),
    Response(EventJson),
    Unanswered(EventJson),
    Connect(ConnectJson),
    Alert(IgnoredAny),
}

/// A connect line's fields after `kind`.
#[derive(Deserialize)]
struct ConnectJson {
    time: String,
    transport: String,
    src: SocketAddr,
    dst: SocketAddr,
    #[serde(flatten)]
    who: AttributionJson,
}

/// An event line's fields after `kind`, as the writer names them.
#[derive(Deserialize)]
struct EventJson {
    time: String,
    role: String,
    id: u16,
    qname: String,
    qtype: String,
    qclass: String,
    rcode: Option<String>,
    flags: MessageFlags,
    answers: Vec<AnswerJson>,
    latency_us: Option<u64>,
    timeout_ms: Option<u64>,
    transport: String,
    src: SocketAddr,
    dst: SocketAddr,
    syscall: String,
    direction: String,
    #[serde(flatten)]
    who: AttributionJson,
    size: u32,
    truncated: bool,
    #[serde(default)]
    served: Vec<ServedJson>,
}

/// Whom a line belongs to: the same fields in events and connects.
#[derive(Deserialize)]
struct AttributionJson {
    process: ProcessJson,
    netns: u32,
    cgroup: String,
    container: Option<ContainerJson>,
    pod: Option<PodJson>,
    node: Option<String>,
    host: Option<bool>,
    socket: u64,
}

impl TryFrom<AttributionJson> for Attribution {
    type Error = ReadError;

    fn try_from(a: AttributionJson) -> Result<Attribution, ReadError> {
        Ok(Attribution {
            process: a.process.into(),
            netns: a.netns,
            cgroup: Arc::from(a.cgroup),
            container: a.container.map(Container::try_from).transpose()?,
            pod: a.pod.map(Pod::from),
            node: a.node.map(Arc::from),
            host: a.host,
            socket: a.socket,
            ids: KernelIds::default(),
            client: None,
        })
    }
}

#[derive(Deserialize)]
struct AnswerJson {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    data: String,
}

#[derive(Deserialize)]
struct ProcessJson {
    pid: u32,
    tid: u32,
    comm: String,
    name: String,
    exe: Option<String>,
    uid: u32,
    ppid: u32,
}

#[derive(Deserialize)]
struct ServedJson {
    pid: u32,
    name: String,
    pod: Option<PodJson>,
}

#[derive(Deserialize)]
struct ContainerJson {
    id: String,
    runtime: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct PodJson {
    uid: String,
    name: Option<String>,
    namespace: Option<String>,
    workload: Option<Workload>,
    labels: BTreeMap<String, String>,
}

fn time(text: &str) -> Result<u64, ReadError> {
    parse_rfc3339(text).ok_or_else(|| ReadError(format!("time {text:?}: not an RFC 3339 UTC time")))
}

impl ConnectJson {
    fn into_connect(self) -> Result<ConnectEvent, ReadError> {
        let time_ns = time(&self.time)?;
        Ok(ConnectEvent {
            time_ns,
            mono_ns: time_ns,
            src: self.src,
            dst: self.dst,
            transport: named("transport", &self.transport)?,
            who: self.who.try_into()?,
        })
    }
}

impl EventJson {
    fn into_event(self, kind: Kind) -> Result<DnsEvent, ReadError> {
        let time_ns = time(&self.time)?;
        let qtype: RecordType = self.qtype.parse().map_err(|e| context("qtype")(&e))?;
        let rcode = self
            .rcode
            .as_deref()
            .map(str::parse::<Rcode>)
            .transpose()
            .map_err(|e| context("rcode")(&e))?;
        let answers = self
            .answers
            .into_iter()
            .map(|a| {
                Ok(Answer {
                    rtype: a.rtype.parse().map_err(|e| context("answers: type")(&e))?,
                    name: a.name,
                    ttl: a.ttl,
                    data: a.data,
                })
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(DnsEvent {
            time_ns,
            mono_ns: time_ns,
            kind,
            role: named("role", &self.role)?,
            id: self.id,
            qname: self.qname,
            qtype,
            qclass: parse_class(&self.qclass).ok_or_else(|| {
                ReadError(format!(
                    "qclass {:?}: expected IN, CH, HS, NONE, ANY or CLASSn",
                    self.qclass
                ))
            })?,
            rcode,
            flags: self.flags,
            answers,
            latency_us: self.latency_us,
            timeout_ms: self.timeout_ms,
            transport: named("transport", &self.transport)?,
            src: self.src,
            dst: self.dst,
            syscall: named("syscall", &self.syscall)?,
            direction: named("direction", &self.direction)?,
            size: self.size,
            truncated: self.truncated,
            who: self.who.try_into()?,
            served: self
                .served
                .into_iter()
                .map(|s| Served {
                    pid: s.pid,
                    name: TaskName::new(&s.name),
                    pod: s.pod.map(Pod::from),
                })
                .collect(),
        })
    }
}

impl From<ProcessJson> for ProcessInfo {
    fn from(p: ProcessJson) -> ProcessInfo {
        ProcessInfo {
            pid: p.pid,
            tid: p.tid,
            comm: TaskName::new(&p.comm),
            name: TaskName::new(&p.name),
            exe: p.exe.map(Arc::from),
            uid: p.uid,
            ppid: p.ppid,
        }
    }
}

impl TryFrom<ContainerJson> for Container {
    type Error = ReadError;

    fn try_from(c: ContainerJson) -> Result<Container, ReadError> {
        Ok(Container {
            id: Arc::from(c.id),
            runtime: named("container.runtime", &c.runtime)?,
            name: c.name,
        })
    }
}

impl From<PodJson> for Pod {
    /// A pod the API had named carries its name and namespace; one it had not, nulls.
    fn from(p: PodJson) -> Pod {
        let info = match (p.name, p.namespace) {
            (Some(name), Some(namespace)) => Some(Arc::new(PodInfo {
                uid: p.uid.clone(),
                name,
                namespace,
                node: None,
                pod_ip: None,
                service_account: None,
                labels: p.labels,
                workload: p.workload,
                containers: BTreeMap::new(),
            })),
            _ => None,
        };
        Pod {
            uid: Arc::from(p.uid),
            info,
        }
    }
}

/// A value of one of the schema's named enums (`role`, `syscall`, ...).
fn named<T: Named>(field: &str, text: &str) -> Result<T, ReadError> {
    T::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
        ReadError(format!(
            "{field} {text:?}: expected one of {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Runtime;
    use crate::model::{sample, Role};
    use crate::schema::{connect_to_string, event_to_string};
    use dnslens_abi::{Direction, Syscall, Transport};

    /// What reading back the writer's line of `e` must give: the wall time as the clock, no
    /// kernel ids.
    fn as_read(e: &DnsEvent) -> DnsEvent {
        let mut read = e.clone();
        read.mono_ns = e.time_ns;
        read.who.ids = KernelIds::default();
        read
    }

    fn read(e: &DnsEvent) -> DnsEvent {
        match parse_line(&event_to_string(e)) {
            Ok(Some(Line::Event(read))) => *read,
            other => panic!("{other:?} for {}", event_to_string(e)),
        }
    }

    fn pod(uid: &str, info: Option<PodInfo>) -> Pod {
        Pod {
            uid: Arc::from(uid),
            info: info.map(Arc::new),
        }
    }

    #[test]
    fn events_read_back_as_written() {
        let q = sample::query(4660, "example.com", 1, 5_000);
        let mut r = sample::response(&q, 0, &["93.184.215.14", "93.184.215.15"], 123_456_789);
        r.latency_us = Some(123);
        r.who.process.exe = Some(Arc::from("/usr/bin/dig"));
        r.who.cgroup = Arc::from("/user.slice/user-1000.slice/session-3.scope");
        r.who.host = Some(true);
        r.who.node = Some(Arc::from("node-1"));
        r.who.ids.process_start_ns = 42;
        let mut nx = sample::response(&q, 3, &[], 7);
        nx.transport = Transport::Tcp;
        nx.syscall = Syscall::Read;
        let mut u = sample::query(9, "slow.example", 28, 1_000_000_000);
        u.kind = Kind::Unanswered;
        u.timeout_ms = Some(5_000);
        u.src = "[fd00::2]:40000".parse().unwrap();
        u.dst = "[fd00::1]:53".parse().unwrap();
        let mut server = r.clone();
        server.role = Role::Server;
        server.direction = Direction::Send;
        server.syscall = Syscall::Sendmsg;
        let mut up = q.clone();
        up.served = vec![
            Served {
                pid: 10,
                name: "getent".into(),
                pod: Some(pod("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", None)),
            },
            Served {
                pid: 11,
                name: "curl".into(),
                pod: None,
            },
        ];
        for e in [q, r, nx, u, server, up] {
            assert_eq!(read(&e), as_read(&e), "{}", event_to_string(&e));
        }
    }

    #[test]
    fn containers_and_pods_read_back_as_written() {
        let id = "0123456789abcdef".repeat(4);
        let uid = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let mut e = sample::query(1, "payments.production.svc.cluster.local", 1, 0);
        e.who.host = Some(false);
        for (runtime, name) in [
            (Runtime::Containerd, Some("app")),
            (Runtime::CriO, None),
            (Runtime::Docker, None),
            (Runtime::Podman, None),
            (Runtime::Unknown, Some("sidecar")),
        ] {
            e.who.container = Some(Container {
                id: Arc::from(id.as_str()),
                runtime,
                name: name.map(str::to_string),
            });
            assert_eq!(read(&e), as_read(&e));
        }
        e.who.pod = Some(pod(uid, None));
        assert_eq!(read(&e), as_read(&e), "a pod the API had not named");
        let info = |workload: Option<Workload>| PodInfo {
            uid: uid.to_string(),
            name: "payment-svc-7d4b9f-xk2p1".to_string(),
            namespace: "production".to_string(),
            node: None,
            pod_ip: None,
            service_account: None,
            labels: [("app", "payment-svc"), ("quote\"d", "a\\b")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload,
            containers: BTreeMap::new(),
        };
        e.who.pod = Some(pod(uid, Some(info(None))));
        assert_eq!(read(&e), as_read(&e), "a pod without owner");
        let deployment = Workload {
            kind: "Deployment".to_string(),
            name: "payment-svc".to_string(),
        };
        e.who.pod = Some(pod(uid, Some(info(Some(deployment)))));
        assert_eq!(read(&e), as_read(&e));
    }

    #[test]
    fn edge_cases_read_back_as_written() {
        // Hostile text, codes without mnemonics, no question, every flag set, odd answers.
        let hostile = "a\"b\\c\n\r\t\u{1}\u{7f}é\u{2028}😀";
        let mut e = sample::query(65_535, hostile, 65_280, u64::MAX / 4);
        e.qclass = 42;
        e.who.process.comm = hostile.into();
        e.who.process.name = TaskName::default();
        e.who.cgroup = Arc::from(hostile);
        e.kind = Kind::Response;
        e.rcode = Some(Rcode(3_000));
        e.flags = MessageFlags {
            qr: true,
            opcode: 15,
            aa: true,
            tc: true,
            rd: true,
            ra: true,
            ad: true,
            cd: true,
        };
        e.answers = vec![
            Answer {
                name: "x.example".to_string(),
                rtype: RecordType::TXT,
                ttl: u32::MAX,
                data: "\"text with \\\"quotes\\\"\"".to_string(),
            },
            Answer {
                name: ".".to_string(),
                rtype: RecordType(65_280),
                ttl: 0,
                data: "\\# 2 abcd".to_string(),
            },
        ];
        e.truncated = true;
        e.size = u32::MAX;
        e.who.socket = u64::MAX;
        e.who.netns = u32::MAX;
        assert_eq!(read(&e), as_read(&e));
        let mut none = sample::query(0, "", 0, 0);
        none.qclass = 0;
        assert_eq!(read(&none), as_read(&none), "a message without a question");
        for class in [1, 3, 4, 254, 255, 0, 2, 65_535] {
            none.qclass = class;
            assert_eq!(read(&none).qclass, class);
        }
    }

    #[test]
    fn connects_read_back_as_written() {
        let mut c = sample::connect("[2606:2800:220:1::1]:443", 5_000_000);
        c.who.process.exe = Some(Arc::from("/usr/bin/curl"));
        c.who.ids.process_start_ns = 7;
        c.who.pod = Some(pod("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b", None));
        c.who.host = Some(false);
        let mut want = c.clone();
        want.mono_ns = c.time_ns;
        want.who.ids = KernelIds::default();
        match parse_line(&connect_to_string(&c)) {
            Ok(Some(Line::Connect(read))) => assert_eq!(*read, want),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alert_and_blank_lines_are_told_apart_and_bad_lines_say_why() {
        let alert = r#"{"kind":"alert","time":"2026-11-26T10:55:04.980000000Z","detector":"dga"}"#;
        assert!(matches!(parse_line(alert), Ok(Some(Line::Alert))));
        assert!(matches!(parse_line("  "), Ok(None)));
        let good = event_to_string(&sample::query(1, "example.com", 1, 0));
        let error = |line: &str| format!("{:#}", parse_line(line).unwrap_err());
        for (bad, says) in [
            ("not json", "expected ident"),
            (r#"{"kind":"metric"}"#, "unknown variant `metric`"),
            (
                &good.replace("\"qtype\":\"A\"", "\"qtype\":\"AAA\""),
                "qtype",
            ),
            (&good.replace("\"IN\"", "\"XX\""), "qclass \"XX\""),
            (
                &good.replace("\"udp\"", "\"sctp\""),
                "transport \"sctp\": expected one of udp, tcp",
            ),
            (&good.replace("10.1.1.1:53", "10.1.1.1"), "socket address"),
            (
                &good.replace(",\"netns\":4026531840", ""),
                "missing field `netns`",
            ),
            (
                &good.replace("T10:54:55", "T25:54:55"),
                "time \"2026-11-26T25",
            ),
        ] {
            let e = error(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
