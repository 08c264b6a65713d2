//! The enriched events that leave the lens: DNS messages and TCP connects. Their JSON form is
//! [`crate::schema`]'s, documented field by field in docs/schema.md.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::container::Runtime;
use crate::pods::PodInfo;
use dnslens_abi::{
    Direction, EventError, EventHeader, LibcCall, LibcFunction, RawEvent, Syscall, Transport,
};
use dnslens_wire::{Message, Rcode, RecordType};

/// What the event reports; its name is the JSON `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Kind {
    Query,
    Response,
    /// A query that got no response within the timeout.
    Unanswered,
}

/// What stands in a response code's place for an unanswered query: the table's RCODE, the
/// `rcode` key of `count`.
pub const TIMEOUT: &str = "TIMEOUT";

/// Which end of the exchange the process is. Its name is the JSON value and the table's ROLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
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
}

/// Header flags of the message. Read back from JSON by `dnslens detect --input`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    /// Presentation form: an address, a name, or the record's text form.
    pub data: String,
}

/// A thread or process name as the kernel keeps it (`comm`, at most 16 bytes), held inline:
/// every event carries two, and allocating them was a measurable share of the pipeline.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TaskName {
    bytes: [u8; TaskName::CAPACITY],
    len: u8,
}

impl TaskName {
    pub const CAPACITY: usize = 16;

    /// `name`, cut at a character boundary to [`TaskName::CAPACITY`] bytes.
    pub fn new(name: &str) -> TaskName {
        let mut len = name.len().min(Self::CAPACITY);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        TaskName {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        self
    }
}

impl std::ops::Deref for TaskName {
    type Target = str;
    fn deref(&self) -> &str {
        // SAFETY: `new` copies the bytes of a `str` up to one of its character boundaries, so
        // they are UTF-8; a checked conversion here showed up in the detectors' profile.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..usize::from(self.len)]) }
    }
}

impl From<&str> for TaskName {
    fn from(name: &str) -> TaskName {
        TaskName::new(name)
    }
}

impl PartialEq<str> for TaskName {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for TaskName {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// The process that moved the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Thread-group id: the pid as userspace knows it (in the initial pid namespace).
    pub pid: u32,
    pub tid: u32,
    /// Thread name.
    pub comm: TaskName,
    /// Process (thread-group leader) name.
    pub name: TaskName,
    /// Executable path from /proc; `None` when the process was gone before dnslens looked.
    pub exe: Option<Arc<str>>,
    pub uid: u32,
    pub ppid: u32,
}

impl ProcessInfo {
    /// The process name, or the thread name when the leader's is unknown.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.comm
        } else {
            &self.name
        }
    }
}

/// One DNS message seen in a process, or one query that was never answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    /// Wall-clock ns since the epoch; serialized as RFC 3339 UTC with ns.
    pub time_ns: u64,
    /// The kernel's CLOCK_MONOTONIC stamp, the clock that pairing and timeouts use.
    pub mono_ns: u64,
    pub kind: Kind,
    pub role: Role,
    pub id: u16,
    /// First question's name, no trailing dot (root is "."); "" when the message has none.
    pub qname: String,
    pub qtype: RecordType,
    pub qclass: u16,
    /// Responses only.
    pub rcode: Option<Rcode>,
    pub flags: MessageFlags,
    pub answers: Vec<Answer>,
    /// Responses paired with their query: response time minus query time.
    pub latency_us: Option<u64>,
    /// Unanswered events only: the timeout that expired.
    pub timeout_ms: Option<u64>,
    pub transport: Transport,
    /// The sender of the message.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub syscall: Syscall,
    pub direction: Direction,
    /// Length of the DNS message in bytes (for TCP without the 2-byte length prefix).
    pub size: u32,
    /// Whether only part of the message was captured.
    pub truncated: bool,
    pub who: Attribution,
    /// A forwarder's upstream query: the clients whose queries to it wait on the question
    /// (`lookup::via`), at most 16; empty on every other event.
    pub served: Vec<Served>,
}

/// A client a forwarder on this node served: whom its query to the forwarder belonged to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub pid: u32,
    pub name: TaskName,
    pub pod: Option<Pod>,
}

/// Whom an event belongs to: the process, where it runs and the socket it used. Every event
/// kind and every alert carries one; [`crate::identity::Identity::of`] names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub process: ProcessInfo,
    /// Inode of the network namespace of the socket's process.
    pub netns: u32,
    /// Cgroup path relative to the cgroup mount ("/" is the root); "" until enriched.
    pub cgroup: Arc<str>,
    /// The container the process runs in, from the cgroup path (and its name from the pod
    /// directory); `None` outside containers.
    pub container: Option<Container>,
    /// The pod the process runs in; `None` outside pods.
    pub pod: Option<Pod>,
    /// The Kubernetes node name, when known.
    pub node: Option<Arc<str>>,
    /// Whether the process runs outside any container and pod; `None` when the cgroup is not
    /// resolved.
    pub host: Option<bool>,
    /// Socket inode, as in /proc/PID/fd "socket:[INODE]".
    pub socket: u64,
    /// Kernel ids kept for enrichment, not part of the output.
    pub ids: KernelIds,
    /// A client known only by its address, with no process, cgroup or pod: a DNS server's
    /// dnstap replayed by `detect`. Never set in a capture.
    pub client: Option<IpAddr>,
}

impl Attribution {
    /// What the kernel said, before enrichment (`exe` None, `cgroup` "").
    pub fn unenriched(process: ProcessInfo, netns: u32, socket: u64, ids: KernelIds) -> Self {
        Attribution {
            process,
            netns,
            cgroup: no_cgroup(),
            container: None,
            pod: None,
            node: None,
            host: None,
            socket,
            ids,
            client: None,
        }
    }
}

/// A TCP connect by a process (loopback destinations are not reported), attributed as DNS
/// events are: the input of the connect-side detectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    /// Wall-clock ns since the epoch; serialized as RFC 3339 UTC with ns.
    pub time_ns: u64,
    /// The kernel's CLOCK_MONOTONIC stamp, the detectors' clock.
    pub mono_ns: u64,
    /// The socket's source address; its port is 0 when the kernel had not chosen it yet (an
    /// unbound socket, the usual case).
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub who: Attribution,
}

impl ConnectEvent {
    /// A connect, not yet enriched (`exe` None, `cgroup` "").
    pub fn new(capture: &Capture<'_>, time_ns: u64) -> ConnectEvent {
        let h = capture.header;
        ConnectEvent {
            time_ns,
            mono_ns: h.timestamp_ns,
            src: capture.local,
            dst: capture.remote,
            transport: capture.transport,
            who: capture.attribution(),
        }
    }
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

/// Identifiers the enrichment stage resolves into names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelIds {
    pub process_start_ns: u64,
    pub cgroup_id: u64,
    pub cgroup_v1_id: u64,
}

/// The capture-side facts of one ring-buffer record (a DNS message or a connect), checked
/// once, shared by every message the record holds. The names borrow from the record: they are
/// copied only into the events made from it.
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
        Capture::from_header(&raw.header)
    }

    pub fn from_header(header: &'a EventHeader) -> Result<Capture<'a>, EventError> {
        Ok(Capture {
            header,
            transport: header.transport()?,
            direction: header.direction()?,
            syscall: header.syscall()?,
            local: header.local(),
            remote: header.remote(),
            comm: header.comm(),
            name: header.leader_comm(),
        })
    }

    /// Whom the record belongs to, as far as the kernel said.
    fn attribution(&self) -> Attribution {
        kernel_attribution(self.header)
    }
}

/// Whom a record's header says it belongs to (`exe` and placement are enrichment's).
fn kernel_attribution(h: &EventHeader) -> Attribution {
    let process = ProcessInfo {
        pid: h.tgid,
        tid: h.tid,
        comm: TaskName::new(h.comm()),
        name: TaskName::new(h.leader_comm()),
        exe: None,
        uid: h.uid,
        ppid: h.ppid,
    };
    let ids = KernelIds {
        process_start_ns: h.process_start_ns,
        cgroup_id: h.cgroup_id,
        cgroup_v1_id: h.cgroup_v1_id,
    };
    Attribution::unenriched(process, h.netns_ino, h.socket_ino, ids)
}

/// A resolver call in libc that returned (a uprobe's record), attributed as DNS events are:
/// what the application asked for, in its own words, and what it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibcEvent {
    /// Wall-clock ns of the call.
    pub time_ns: u64,
    /// CLOCK_MONOTONIC of the call and of its return.
    pub entry_mono_ns: u64,
    pub mono_ns: u64,
    pub function: LibcFunction,
    /// The name as passed.
    pub name: String,
    /// As `LibcCall::status`: getaddrinfo's return (EAI_*), or 0 / `h_errno` for the `_r` ones.
    pub status: i32,
    pub who: Attribution,
}

impl LibcEvent {
    /// A call, not yet enriched; `wall_ns` turns a monotonic stamp into wall-clock ns.
    pub fn new(call: &LibcCall, wall_ns: impl Fn(u64) -> u64) -> LibcEvent {
        LibcEvent {
            time_ns: wall_ns(call.entry_ns),
            entry_mono_ns: call.entry_ns,
            mono_ns: call.header.timestamp_ns,
            function: call.function,
            name: call.name.clone(),
            status: call.status,
            who: kernel_attribution(&call.header),
        }
    }
}

/// How and when a message moved, beside its bytes: from a capture, or from a dnstap message.
#[derive(Clone, Copy, Debug)]
pub struct Moved {
    /// Wall-clock ns since the epoch.
    pub time_ns: u64,
    /// CLOCK_MONOTONIC ns (pairing and the detectors' windows).
    pub mono_ns: u64,
    pub transport: Transport,
    /// The sender.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub syscall: Syscall,
    pub direction: Direction,
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
    pub fn new(capture: &Capture<'_>, decoded: Decoded, time_ns: u64) -> DnsEvent {
        let (src, dst) = match capture.direction {
            Direction::Send => (capture.local, capture.remote),
            Direction::Recv => (capture.remote, capture.local),
        };
        let moved = Moved {
            time_ns,
            mono_ns: capture.header.timestamp_ns,
            transport: capture.transport,
            src,
            dst,
            syscall: capture.syscall,
            direction: capture.direction,
        };
        DnsEvent::of_message(decoded, moved, capture.attribution())
    }

    /// The event of a decoded message that moved as `moved` said, for `who`. Takes the message
    /// by value so that its names and record data move into the event rather than being copied.
    pub fn of_message(decoded: Decoded, moved: Moved, who: Attribution) -> DnsEvent {
        let is_response = decoded.message.is_response();
        let Message {
            id,
            flags,
            rcode,
            questions,
            answers,
            ..
        } = decoded.message;
        let (qname, qtype, qclass) = match questions.into_iter().next() {
            Some(q) => (q.name, q.qtype, q.qclass),
            None => (String::new(), RecordType(0), 0),
        };
        DnsEvent {
            time_ns: moved.time_ns,
            mono_ns: moved.mono_ns,
            kind: if is_response {
                Kind::Response
            } else {
                Kind::Query
            },
            role: Role::of(is_response, moved.direction),
            id,
            qname,
            qtype,
            qclass,
            rcode: is_response.then_some(rcode),
            flags: MessageFlags::from(&flags),
            // A query's are none: decode_brief skips them (crafted queries full of records
            // would fill the pending table).
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
            transport: moved.transport,
            src: moved.src,
            dst: moved.dst,
            syscall: moved.syscall,
            direction: moved.direction,
            size: decoded.size,
            truncated: decoded.truncated,
            who,
            served: Vec::new(),
        }
    }

    /// True for the events that end an exchange: responses and unanswered queries.
    pub fn is_exchange(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::Unanswered)
    }
}

/// The empty cgroup path of an event not yet enriched, shared rather than allocated per event.
fn no_cgroup() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// Builders of plain events, for the tests of this crate and of the sinks that consume it.
#[doc(hidden)]
pub mod sample {
    use super::*;
    use crate::lookup::libc::Source;
    use crate::lookup::{Lookup, Outcome};
    use crate::pods::Workload;

    /// The pod `shop/web-7d4b9f-xk2p1` (uid `u-1`) as the cluster names it, run by `workload`.
    pub fn pod_info(workload: Option<Workload>) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            uid: "u-1".into(),
            name: "web-7d4b9f-xk2p1".into(),
            namespace: "shop".into(),
            node: None,
            pod_ip: None,
            service_account: None,
            labels: Default::default(),
            workload,
            containers: Default::default(),
        })
    }

    /// A lookup of `q`'s name by `q`'s process, made of that one query on the wire and ended
    /// with `outcome` after 1 ms: tests change what they need with `..lookup(q, outcome)`.
    pub fn lookup(q: &DnsEvent, outcome: Outcome) -> Lookup {
        Lookup {
            time_ns: q.time_ns,
            name: q.qname.clone(),
            answer_name: None,
            qtypes: vec![q.qtype],
            outcome,
            latency_us: 1_000,
            queries: 1,
            timeouts: 0,
            attempts: Vec::new(),
            via: None,
            who: q.who.clone(),
            source: Source::Dns,
        }
    }

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
            size: 45,
            truncated: false,
            who: Attribution::unenriched(
                ProcessInfo {
                    pid: 123,
                    tid: 124,
                    comm: "isc-net-0000".into(),
                    name: "dig".into(),
                    exe: None,
                    uid: 0,
                    ppid: 1,
                },
                4_026_531_840,
                12_345,
                KernelIds::default(),
            ),
            served: Vec::new(),
        }
    }

    /// A connect by the process of [`query`] from 10.1.1.2 (port not yet chosen) to `dst`.
    pub fn connect(dst: &str, mono_ns: u64) -> ConnectEvent {
        let q = query(1, "", 1, mono_ns);
        ConnectEvent {
            time_ns: q.time_ns,
            mono_ns,
            src: "10.1.1.2:0".parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport: Transport::Tcp,
            who: Attribution {
                socket: 23_456,
                ..q.who
            },
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
    fn task_names_keep_at_most_16_bytes_cut_at_a_character() {
        assert_eq!(TaskName::new("isc-net-0000"), "isc-net-0000");
        assert_eq!(TaskName::new(""), "");
        assert_eq!(TaskName::new("0123456789abcdef"), "0123456789abcdef");
        assert_eq!(TaskName::new("0123456789abcdefg"), "0123456789abcdef");
        // 'é' takes bytes 15 and 16; 'ü' would straddle the limit and is dropped whole.
        assert_eq!(TaskName::new("0123456789abcdé"), "0123456789abcdé");
        assert_eq!(TaskName::new("0123456789abcdeü"), "0123456789abcde");
    }

    #[test]
    fn role_follows_message_and_direction() {
        assert_eq!(Role::of(false, Direction::Send), Role::Client);
        assert_eq!(Role::of(true, Direction::Recv), Role::Client);
        assert_eq!(Role::of(false, Direction::Recv), Role::Server);
        assert_eq!(Role::of(true, Direction::Send), Role::Server);
    }
}
