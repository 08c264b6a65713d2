//! The enriched DNS event that leaves the lens, and its JSON form. The field names and value
//! forms here are the public schema: docs/schema.md documents them field by field and the
//! tests below pin them.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use dnslens_probe::{Direction, EventError, EventHeader, RawEvent, Syscall, Transport};
use dnslens_wire::{Message, Rcode, RecordType};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::clock;
use crate::container::Runtime;
use crate::pods::PodInfo;

/// What the event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Query,
    Response,
    /// A query that got no response within the timeout.
    Unanswered,
}

/// Which end of the exchange the process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The process sent a query or received a response.
    Client,
    /// The process received a query or sent a response.
    Server,
}

impl Role {
    pub fn of(is_response: bool, direction: Direction) -> Role {
        match (is_response, direction) {
            (false, Direction::Send) | (true, Direction::Recv) => Role::Client,
            (false, Direction::Recv) | (true, Direction::Send) => Role::Server,
        }
    }

    /// The JSON value, also the table's ROLE cell.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// Header flags of the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessageFlags {
    pub qr: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
}

impl From<&dnslens_wire::Flags> for MessageFlags {
    fn from(f: &dnslens_wire::Flags) -> Self {
        MessageFlags {
            qr: f.qr,
            opcode: f.opcode,
            aa: f.aa,
            tc: f.tc,
            rd: f.rd,
            ra: f.ra,
            ad: f.ad,
            cd: f.cd,
        }
    }
}

/// One record of the answer section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub name: String,
    #[serde(rename = "type", serialize_with = "display")]
    pub rtype: RecordType,
    pub ttl: u32,
    /// Presentation form: an address, a name, or the record's text form.
    pub data: String,
}

/// The process that moved the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Thread-group id: the pid as userspace knows it (in the initial pid namespace).
    pub pid: u32,
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// Process (thread-group leader) name.
    pub name: String,
    /// Executable path from /proc; `None` when the process was gone before dnslens looked.
    pub exe: Option<String>,
    pub uid: u32,
    pub ppid: u32,
}

/// One DNS message seen in a process, or one query that was never answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsEvent {
    /// Wall-clock ns since the epoch; serialized as RFC 3339 UTC with ns.
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub time_ns: u64,
    /// The kernel's CLOCK_MONOTONIC stamp, the clock that pairing and timeouts use.
    #[serde(skip)]
    pub mono_ns: u64,
    pub kind: Kind,
    pub role: Role,
    pub id: u16,
    /// First question's name, no trailing dot (root is "."); "" when the message has none.
    pub qname: String,
    #[serde(serialize_with = "display")]
    pub qtype: RecordType,
    #[serde(serialize_with = "class_name")]
    pub qclass: u16,
    /// Responses only.
    #[serde(serialize_with = "display_opt")]
    pub rcode: Option<Rcode>,
    pub flags: MessageFlags,
    pub answers: Vec<Answer>,
    /// Responses paired with their query: response time minus query time.
    pub latency_us: Option<u64>,
    /// Unanswered events only: the timeout that expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(serialize_with = "transport_name")]
    pub transport: Transport,
    /// The sender of the message.
    #[serde(serialize_with = "display")]
    pub src: SocketAddr,
    #[serde(serialize_with = "display")]
    pub dst: SocketAddr,
    #[serde(serialize_with = "syscall_name")]
    pub syscall: Syscall,
    #[serde(serialize_with = "direction_name")]
    pub direction: Direction,
    pub process: ProcessInfo,
    /// Inode of the network namespace of the socket's process.
    pub netns: u32,
    /// Cgroup path relative to the cgroup mount ("/" is the root); "" when unresolved.
    pub cgroup: String,
    /// The container the process runs in, from the cgroup path (and its name from the pod
    /// directory); `None` outside containers.
    pub container: Option<Container>,
    /// The pod the process runs in; `None` outside pods.
    pub pod: Option<Pod>,
    /// The Kubernetes node name, when known.
    #[serde(serialize_with = "str_opt")]
    pub node: Option<Arc<str>>,
    /// Whether the process runs outside any container and pod; `None` when the cgroup is not
    /// resolved.
    pub host: Option<bool>,
    /// Socket inode, as in /proc/PID/fd "socket:[INODE]".
    pub socket: u64,
    /// Length of the DNS message in bytes (for TCP without the 2-byte length prefix).
    pub size: u32,
    /// Whether only part of the message was captured.
    pub truncated: bool,
    /// Kernel ids kept for enrichment, not part of the output.
    #[serde(skip)]
    pub ids: KernelIds,
}

/// A container, as the cgroup path and the pod directory describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// 64 hex digits, as in the cgroup path.
    pub id: Arc<str>,
    pub runtime: Runtime,
    /// The name in the pod spec, when the pod directory knows the container.
    pub name: Option<String>,
}

impl Container {
    /// The first 12 hex digits of the id, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

impl Serialize for Container {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Container", 3)?;
        st.serialize_field("id", &*self.id)?;
        st.serialize_field("runtime", self.runtime.as_str())?;
        st.serialize_field("name", &self.name)?;
        st.end()
    }
}

/// A pod: its uid from the cgroup path, and what the pod directory knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Dashed, as `metadata.uid` (a static pod's cgroup carries its 32-hex config hash).
    pub uid: Arc<str>,
    /// `None` while the directory does not know the pod (no cluster, not yet listed).
    pub info: Option<Arc<PodInfo>>,
}

impl Pod {
    pub fn name(&self) -> Option<&str> {
        self.info.as_deref().map(|p| p.name.as_str())
    }

    pub fn namespace(&self) -> Option<&str> {
        self.info.as_deref().map(|p| p.namespace.as_str())
    }

    pub fn workload(&self) -> Option<&crate::pods::Workload> {
        self.info.as_deref().and_then(|p| p.workload.as_ref())
    }
}

impl Serialize for Pod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WorkloadJson<'a> {
            kind: &'a str,
            name: &'a str,
        }
        static NO_LABELS: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        let mut st = s.serialize_struct("Pod", 5)?;
        st.serialize_field("uid", &*self.uid)?;
        st.serialize_field("name", &self.name())?;
        st.serialize_field("namespace", &self.namespace())?;
        let workload = self.workload().map(|w| WorkloadJson {
            kind: &w.kind,
            name: &w.name,
        });
        st.serialize_field("workload", &workload)?;
        let labels = self.info.as_deref().map_or(&NO_LABELS, |p| &p.labels);
        st.serialize_field("labels", labels)?;
        st.end()
    }
}

/// Identifiers the enrichment stage resolves into names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelIds {
    pub process_start_ns: u64,
    pub cgroup_id: u64,
    pub cgroup_v1_id: u64,
}

/// The capture-side facts of one ring-buffer record, checked once, shared by every message
/// the record holds. The names borrow from the record: they are copied only into the events
/// made from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capture<'a> {
    pub header: &'a EventHeader,
    pub transport: Transport,
    pub direction: Direction,
    pub syscall: Syscall,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub comm: &'a str,
    pub name: &'a str,
}

impl<'a> Capture<'a> {
    pub fn from_raw(raw: &'a RawEvent<'_>) -> Result<Capture<'a>, EventError> {
        Ok(Capture {
            header: &raw.header,
            transport: raw.transport()?,
            direction: raw.direction()?,
            syscall: raw.syscall()?,
            local: raw.local(),
            remote: raw.remote(),
            comm: raw.comm(),
            name: raw.leader_comm(),
        })
    }
}

/// A message as decoded, with what the decode stage knows about its bytes.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub message: Message,
    /// Message length in bytes.
    pub size: u32,
    /// Whether the message bytes were cut short in the capture.
    pub truncated: bool,
}

impl DnsEvent {
    /// A query or response event, not yet paired nor enriched (`exe` None, `cgroup` "").
    /// Takes the decoded message by value so that its names and record data move into the
    /// event rather than being copied.
    pub fn new(capture: &Capture<'_>, decoded: Decoded, time_ns: u64) -> DnsEvent {
        let h = capture.header;
        let is_response = decoded.message.is_response();
        let Message {
            id,
            flags,
            rcode,
            questions,
            answers,
            ..
        } = decoded.message;
        let (src, dst) = match capture.direction {
            Direction::Send => (capture.local, capture.remote),
            Direction::Recv => (capture.remote, capture.local),
        };
        let (qname, qtype, qclass) = match questions.into_iter().next() {
            Some(q) => (q.name, q.qtype, q.qclass),
            None => (String::new(), RecordType(0), 0),
        };
        DnsEvent {
            time_ns,
            mono_ns: h.timestamp_ns,
            kind: if is_response {
                Kind::Response
            } else {
                Kind::Query
            },
            role: Role::of(is_response, capture.direction),
            id,
            qname,
            qtype,
            qclass,
            rcode: is_response.then_some(rcode),
            flags: MessageFlags::from(&flags),
            answers: answers
                .into_iter()
                .map(|r| Answer {
                    name: r.name,
                    rtype: r.rtype,
                    ttl: r.ttl,
                    data: r.data,
                })
                .collect(),
            latency_us: None,
            timeout_ms: None,
            transport: capture.transport,
            src,
            dst,
            syscall: capture.syscall,
            direction: capture.direction,
            process: ProcessInfo {
                pid: h.tgid,
                tid: h.tid,
                comm: capture.comm.to_owned(),
                name: capture.name.to_owned(),
                exe: None,
                uid: h.uid,
                ppid: h.ppid,
            },
            netns: h.netns_ino,
            // What the kernel named; enrichment replaces it with the full path when the cgroup
            // still exists to be looked up.
            cgroup: h.cgroup_names(),
            container: None,
            pod: None,
            node: None,
            host: None,
            socket: h.socket_ino,
            size: decoded.size,
            truncated: decoded.truncated,
            ids: KernelIds {
                process_start_ns: h.process_start_ns,
                cgroup_id: h.cgroup_id,
                cgroup_v1_id: h.cgroup_v1_id,
            },
        }
    }

    /// True for the events that end an exchange: responses and unanswered queries.
    pub fn is_exchange(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::Unanswered)
    }
}

/// Presentation name of a class (RFC 1035 3.2.4, RFC 2136 for NONE, RFC 3597 for the rest).
fn class_str(class: u16) -> std::borrow::Cow<'static, str> {
    match class {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        n => format!("CLASS{n}").into(),
    }
}

fn transport_str(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Send => "send",
        Direction::Recv => "recv",
    }
}

fn rfc3339<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&clock::Rfc3339(*ns))
}

fn display<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn display_opt<T: Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn str_opt<S: Serializer>(value: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(v),
        None => s.serialize_none(),
    }
}

fn class_name<S: Serializer>(class: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&class_str(*class))
}

fn transport_name<S: Serializer>(t: &Transport, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(transport_str(*t))
}

fn syscall_name<S: Serializer>(c: &Syscall, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

fn direction_name<S: Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(direction_str(*d))
}

/// Builders of plain events, for the tests of this crate and of the sinks that consume it.
#[doc(hidden)]
pub mod sample {
    use super::*;

    /// A client query for `qname`/`qtype` sent by pid 123 (`dig`) at `mono_ns`.
    pub fn query(id: u16, qname: &str, qtype: u16, mono_ns: u64) -> DnsEvent {
        DnsEvent {
            time_ns: 1_795_690_495_000_000_000 + mono_ns,
            mono_ns,
            kind: Kind::Query,
            role: Role::Client,
            id,
            qname: qname.to_string(),
            qtype: RecordType(qtype),
            qclass: 1,
            rcode: None,
            flags: MessageFlags {
                rd: true,
                ..MessageFlags::default()
            },
            answers: Vec::new(),
            latency_us: None,
            timeout_ms: None,
            transport: Transport::Udp,
            src: "10.1.1.2:45678".parse().unwrap(),
            dst: "10.1.1.1:53".parse().unwrap(),
            syscall: Syscall::Sendmmsg,
            direction: Direction::Send,
            process: ProcessInfo {
                pid: 123,
                tid: 124,
                comm: "isc-net-0000".to_string(),
                name: "dig".to_string(),
                exe: None,
                uid: 0,
                ppid: 1,
            },
            netns: 4_026_531_840,
            cgroup: String::new(),
            container: None,
            pod: None,
            node: None,
            host: None,
            socket: 12_345,
            size: 45,
            truncated: false,
            ids: KernelIds::default(),
        }
    }

    /// The response to `query` received at `mono_ns`, with `rcode` and answers of type A.
    pub fn response(query: &DnsEvent, rcode: u16, answers: &[&str], mono_ns: u64) -> DnsEvent {
        DnsEvent {
            time_ns: 1_795_690_495_000_000_000 + mono_ns,
            mono_ns,
            kind: Kind::Response,
            rcode: Some(Rcode(rcode)),
            flags: MessageFlags {
                qr: true,
                rd: true,
                ra: true,
                ..MessageFlags::default()
            },
            answers: answers
                .iter()
                .map(|data| Answer {
                    name: query.qname.clone(),
                    rtype: RecordType(1),
                    ttl: 300,
                    data: data.to_string(),
                })
                .collect(),
            src: query.dst,
            dst: query.src,
            syscall: Syscall::Recvmsg,
            direction: Direction::Recv,
            size: 61,
            ..query.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_follows_message_and_direction() {
        assert_eq!(Role::of(false, Direction::Send), Role::Client);
        assert_eq!(Role::of(true, Direction::Recv), Role::Client);
        assert_eq!(Role::of(false, Direction::Recv), Role::Server);
        assert_eq!(Role::of(true, Direction::Send), Role::Server);
    }

    #[test]
    fn json_schema_of_a_paired_response() {
        let q = sample::query(4660, "example.com", 1, 0);
        let mut e = sample::response(&q, 0, &["93.184.215.14"], 123_456_789);
        e.latency_us = Some(123);
        e.process.exe = Some("/usr/bin/dig".to_string());
        e.cgroup = "/user.slice/user-1000.slice/session-3.scope".to_string();
        e.host = Some(true);
        e.node = Some(Arc::from("node-1"));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"time":"2026-11-26T10:54:55.123456789Z","kind":"response","role":"client","id":4660,"qname":"example.com","qtype":"A","qclass":"IN","rcode":"NOERROR","flags":{"qr":true,"opcode":0,"aa":false,"tc":false,"rd":true,"ra":true,"ad":false,"cd":false},"answers":[{"name":"example.com","type":"A","ttl":300,"data":"93.184.215.14"}],"latency_us":123,"transport":"udp","src":"10.1.1.1:53","dst":"10.1.1.2:45678","syscall":"recvmsg","direction":"recv","process":{"pid":123,"tid":124,"comm":"isc-net-0000","name":"dig","exe":"/usr/bin/dig","uid":0,"ppid":1},"netns":4026531840,"cgroup":"/user.slice/user-1000.slice/session-3.scope","container":null,"pod":null,"node":"node-1","host":true,"socket":12345,"size":61,"truncated":false}"#
        );
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    /// The fields after `netns` of a query from a container of a pod.
    fn attribution_json(container_name: Option<&str>, info: Option<PodInfo>) -> String {
        let mut q = sample::query(1, "payments.production.svc.cluster.local", 1, 0);
        q.cgroup = format!("/kubepods/burstable/pod{UID}/{ID}");
        q.container = Some(Container {
            id: Arc::from(ID),
            runtime: Runtime::Unknown,
            name: container_name.map(str::to_string),
        });
        q.pod = Some(Pod {
            uid: Arc::from(UID),
            info: info.map(Arc::new),
        });
        q.host = Some(false);
        let json = serde_json::to_string(&q).unwrap();
        let from = json.find(r#""cgroup""#).unwrap();
        json[from..].to_string()
    }

    #[test]
    fn json_schema_of_a_container_in_a_known_pod() {
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
            workload: Some(crate::pods::Workload {
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
    fn json_schema_of_a_pod_without_metadata() {
        assert_eq!(
            attribution_json(None, None),
            format!(
                r#""cgroup":"/kubepods/burstable/pod{UID}/{ID}","container":{{"id":"{ID}","runtime":"unknown","name":null}},"pod":{{"uid":"{UID}","name":null,"namespace":null,"workload":null,"labels":{{}}}},"node":null,"host":false,"socket":12345,"size":45,"truncated":false}}"#
            )
        );
    }

    #[test]
    fn json_schema_of_query_and_unanswered() {
        let mut q = sample::query(1, "example.org", 28, 0);
        q.src = "[fd00::2]:40000".parse().unwrap();
        q.dst = "[fd00::1]:53".parse().unwrap();
        q.qclass = 3;
        let v: serde_json::Value = serde_json::to_value(&q).unwrap();
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
        let v: serde_json::Value = serde_json::to_value(&q).unwrap();
        assert_eq!(v["kind"], "unanswered");
        assert_eq!(v["timeout_ms"], 5000);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
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
        let mut keys = keys;
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn class_names() {
        assert_eq!(class_str(1), "IN");
        assert_eq!(class_str(255), "ANY");
        assert_eq!(class_str(42), "CLASS42");
    }
}
