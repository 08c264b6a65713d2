//! The kernel/user boundary: the Rust view of `bpf/dnslens.h`. The records (`struct
//! dnslens_event` for DNS messages and connects, which are its header alone, and libc resolver
//! calls, its header and a `struct dnslens_libc_call`; `struct dnslens_exec_event`), and one list each of the values its enums name: record kinds,
//! directions, syscalls and counters. `tests/layout.rs` compiles the C header and checks every
//! offset, size and enum value against this file; change both together.
//!
//! No I/O and no BPF library: the pure crates (lens, detect) depend on this, not on the loader.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `DNSLENS_MAX_PAYLOAD`: bytes of one message copied per event.
pub const MAX_PAYLOAD: usize = 4096;
const COMM_LEN: usize = 16;
/// `DNSLENS_MAX_PORTS`: ports that count as DNS.
pub const MAX_PORTS: usize = 8;
/// `DNSLENS_CGROUP_NAME_LEN`.
pub const CGROUP_NAME_LEN: usize = 128;
/// `DNSLENS_PATH_LEN`.
pub const PATH_LEN: usize = 256;
/// `DNSLENS_RESOLVER_RENEWAL_NS`: where no output shows a DNS server's side, one of a server
/// process's messages per this many nanoseconds goes on, enough for the detectors to know it
/// serves DNS; the kernel keeps the rest, and the decoder applies the same rule to what it reads.
pub const RESOLVER_RENEWAL_NS: u64 = 10_000_000_000;
/// `enum dnslens_record_kind`: the first field of every record.
pub const RECORD_DNS: u32 = 1;
pub const RECORD_EXEC: u32 = 2;
pub const RECORD_CONNECT: u32 = 3;
pub const RECORD_LIBC: u32 = 4;
/// `DNSLENS_LIBC_NAME_LEN`: bytes kept of the name a resolver call was passed.
pub const LIBC_NAME_LEN: usize = 256;
const AF_INET6: u16 = 10;

/// Fixed part of an event; the ring buffer record is this header followed by `payload_len`
/// payload bytes (none for a connect).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub tgid: u32,
    pub timestamp_ns: u64,
    pub process_start_ns: u64,
    pub cgroup_id: u64,
    pub cgroup_v1_id: u64,
    pub socket_ino: u64,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub netns_ino: u32,
    pub msg_len: u32,
    pub payload_len: u32,
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub protocol: u8,
    pub direction: u8,
    pub syscall: u8,
    pub msg_index: u8,
    pub _pad: [u8; 6],
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
    pub leader_comm: [u8; COMM_LEN],
    pub cgroup_name: [u8; CGROUP_NAME_LEN],
    pub cgroup_parent_name: [u8; CGROUP_NAME_LEN],
}

impl EventHeader {
    /// The cgroup's path as far as the kernel named it: `/parent/leaf`, `/leaf` under the root,
    /// `/` for the root. Outlives the cgroup, unlike a path looked up from the id.
    pub fn cgroup_names(&self) -> String {
        match (c_str(&self.cgroup_parent_name), c_str(&self.cgroup_name)) {
            (_, "") => "/".to_string(),
            ("", leaf) => format!("/{leaf}"),
            (parent, leaf) => format!("/{parent}/{leaf}"),
        }
    }

    pub fn transport(&self) -> Result<Transport, EventError> {
        match self.protocol {
            libc_proto::UDP => Ok(Transport::Udp),
            libc_proto::TCP => Ok(Transport::Tcp),
            v => Err(EventError::Unknown {
                field: "protocol",
                value: v.into(),
            }),
        }
    }

    pub fn direction(&self) -> Result<Direction, EventError> {
        match self.direction {
            1 => Ok(Direction::Send),
            2 => Ok(Direction::Recv),
            v => Err(EventError::Unknown {
                field: "direction",
                value: v.into(),
            }),
        }
    }

    pub fn syscall(&self) -> Result<Syscall, EventError> {
        Ok(match self.syscall {
            1 => Syscall::Sendto,
            2 => Syscall::Sendmsg,
            3 => Syscall::Sendmmsg,
            4 => Syscall::Write,
            5 => Syscall::Writev,
            6 => Syscall::Recvfrom,
            7 => Syscall::Recvmsg,
            8 => Syscall::Recvmmsg,
            9 => Syscall::Read,
            10 => Syscall::Readv,
            11 => Syscall::Connect,
            v => {
                return Err(EventError::Unknown {
                    field: "syscall",
                    value: v.into(),
                })
            }
        })
    }

    /// The socket's own address (a connect's source).
    pub fn local(&self) -> SocketAddr {
        socket_addr(self.family, &self.local_addr, self.local_port)
    }

    /// The peer (a connect's destination).
    pub fn remote(&self) -> SocketAddr {
        socket_addr(self.family, &self.remote_addr, self.remote_port)
    }

    /// Thread name.
    pub fn comm(&self) -> &str {
        c_str(&self.comm)
    }

    /// Process (thread-group leader) name.
    pub fn leader_comm(&self) -> &str {
        c_str(&self.leader_comm)
    }

    /// Checks the fields a record's readers interpret.
    fn validate(&self) -> Result<(), EventError> {
        self.transport()?;
        self.direction()?;
        self.syscall()?;
        Ok(())
    }
}

impl EventHeader {
    /// The header's bytes as the kernel writes them (tests and fuzzing build records so).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C), integers and byte arrays only, with the padding an explicit field:
        // every byte is initialized.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const EventHeader).cast::<u8>(),
                std::mem::size_of::<EventHeader>(),
            )
        }
    }
}

impl Default for EventHeader {
    /// All zero, as the kernel side starts from (arrays past 32 elements have no derived Default).
    fn default() -> Self {
        // SAFETY: integers and byte arrays only: all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
}

/// An enum whose values have fixed names (the JSON schema's, the metrics' labels): one list,
/// read both ways. Every enum that derives strum's `IntoStaticStr` and `VariantArray` has it;
/// the names are strum's `serialize_all` (or a variant's own `serialize`).
pub trait Named: Copy + 'static {
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

impl<T> Named for T
where
    T: Copy + strum::VariantArray + Into<&'static str>,
{
    const ALL: &'static [Self] = T::VARIANTS;

    fn name(self) -> &'static str {
        self.into()
    }
}

/// Transport of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Whether the process sent or received the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Direction {
    Send,
    Recv,
}

/// The syscall that moved the bytes (`enum dnslens_syscall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum Syscall {
    Sendto,
    Sendmsg,
    Sendmmsg,
    Write,
    Writev,
    Recvfrom,
    Recvmsg,
    Recvmmsg,
    Read,
    Readv,
    /// A TCP connect (connect records only).
    Connect,
}

impl Syscall {
    /// The syscalls that move DNS messages (all but `Connect`): the per-syscall tracepoints.
    pub const MESSAGES: &'static [Syscall] = &[
        Syscall::Sendto,
        Syscall::Sendmsg,
        Syscall::Sendmmsg,
        Syscall::Write,
        Syscall::Writev,
        Syscall::Recvfrom,
        Syscall::Recvmsg,
        Syscall::Recvmmsg,
        Syscall::Read,
        Syscall::Readv,
    ];
}

/// `enum dnslens_counter`: the kernel side's counters, in index order. The name is the metrics'
/// `kind` label and, upper-cased, the C enum's (`DNSLENS_CNT_<NAME>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum KernelCounter {
    /// Events (DNS messages and connects) written to the ring buffer.
    Events,
    /// Events lost because the ring buffer was full.
    RingbufFull,
    /// Events lost because user memory could not be read.
    ReadFailed,
    /// Events whose payload was cut at [`MAX_PAYLOAD`].
    Truncated,
    /// Messages past the per-call limit in one sendmmsg/recvmmsg, not captured.
    MmsgSkipped,
    /// Messages with more iovecs than are read; the tail was not captured.
    IovSkipped,
    /// DNS socket I/O not from a hooked syscall (sendfile, io_uring, kernel callers).
    OtherPath,
    /// Exec records lost because the ring buffer was full (those processes' exe may be null).
    ExecLost,
    /// Events dropped because their cgroup was over its share of a ring buffer under pressure.
    OverShare,
    /// A server's side of UDP exchanges kept in the kernel because no output shows it (see
    /// [`RESOLVER_RENEWAL_NS`]); not a loss.
    ServerSide,
}

impl KernelCounter {
    /// What the final report calls it, after the number.
    pub fn phrase(self) -> &'static str {
        match self {
            KernelCounter::Events => "events",
            KernelCounter::RingbufFull => "ring buffer full",
            KernelCounter::ReadFailed => "read failed",
            KernelCounter::Truncated => "cut at the payload limit",
            KernelCounter::MmsgSkipped => "past the sendmmsg/recvmmsg limit",
            KernelCounter::IovSkipped => "with iovecs past the limit",
            KernelCounter::OtherPath => "not from a hooked syscall",
            KernelCounter::ExecLost => "exec records lost",
            KernelCounter::OverShare => "over their cgroup's share",
            KernelCounter::ServerSide => {
                "server-side messages kept in the kernel (no output shows them)"
            }
        }
    }

    /// Whether it counts DNS messages the kernel side saw but did not deliver whole.
    pub fn is_loss(self) -> bool {
        matches!(
            self,
            KernelCounter::RingbufFull
                | KernelCounter::OverShare
                | KernelCounter::ReadFailed
                | KernelCounter::MmsgSkipped
                | KernelCounter::OtherPath
        )
    }
}

/// The kernel side's counters, summed over CPUs, indexed by [`KernelCounter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; <KernelCounter as strum::VariantArray>::VARIANTS.len()]);

impl KernelCounters {
    pub fn get(&self, counter: KernelCounter) -> u64 {
        self.0[counter as usize]
    }

    pub fn set(&mut self, counter: KernelCounter, value: u64) {
        self.0[counter as usize] = value;
    }

    /// Messages the kernel side saw but did not deliver whole.
    pub fn lost(&self) -> u64 {
        KernelCounter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|&c| self.get(c))
            .sum()
    }

    /// Every counter with its value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (KernelCounter, u64)> + '_ {
        KernelCounter::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

impl std::fmt::Display for KernelCounters {
    /// The final report's sentence: `18 events, 0 lost (ring buffer full 0, ...), 0 cut at ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events, {} lost (",
            self.get(KernelCounter::Events),
            self.lost()
        )?;
        let losses = self.iter().filter(|(c, _)| c.is_loss());
        for (i, (c, n)) in losses.enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            write!(f, "{sep}{} {n}", c.phrase())?;
        }
        f.write_str(")")?;
        let others = self
            .iter()
            .filter(|(c, _)| *c != KernelCounter::Events && !c.is_loss());
        for (c, n) in others {
            write!(f, ", {n} {}", c.phrase())?;
        }
        Ok(())
    }
}

/// `DNSLENS_MAX_SOURCES`: cgroups whose share of the ring buffer the kernel tracks at once.
pub const MAX_SOURCES: usize = 4096;

/// `struct dnslens_source_key`: the cgroup the kernel charges an event to, by the event's ids.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub cgroup_id: u64,
    pub cgroup_v1_id: u64,
}

/// `struct dnslens_source`: a cgroup's budget window and what it lost, counted since it was
/// first tracked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub window_start_ns: u64,
    pub window_bytes: u64,
    /// Events dropped as [`KernelCounter::OverShare`].
    pub over_share: u64,
    /// Events dropped as [`KernelCounter::RingbufFull`].
    pub ringbuf_full: u64,
    /// The process of the last dropped event, and its name (NUL-padded).
    pub last_tgid: u32,
    pub _pad: u32,
    pub last_comm: [u8; COMM_LEN],
}

impl SourceKey {
    /// From the map key's words, in field order (a BPF map reader hands out plain arrays).
    pub fn from_words([cgroup_id, cgroup_v1_id]: [u64; 2]) -> Self {
        SourceKey {
            cgroup_id,
            cgroup_v1_id,
        }
    }
}

impl Source {
    /// Words in a `struct dnslens_source`.
    pub const WORDS: usize = std::mem::size_of::<Source>() / 8;

    /// From the map value's words, in field order.
    pub fn from_words(words: [u64; Source::WORDS]) -> Self {
        let tgid_word = words[4].to_ne_bytes();
        let half = |at: usize| u32::from_ne_bytes(tgid_word[at..at + 4].try_into().expect("4"));
        let mut last_comm = [0u8; COMM_LEN];
        for (chunk, word) in last_comm.chunks_exact_mut(8).zip(&words[5..]) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        Source {
            window_start_ns: words[0],
            window_bytes: words[1],
            over_share: words[2],
            ringbuf_full: words[3],
            last_tgid: half(0),
            _pad: half(4),
            last_comm,
        }
    }

    /// The name of the last dropped event's process.
    pub fn last_comm(&self) -> &str {
        c_str(&self.last_comm)
    }
}

/// Why bytes from the ring buffer are not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The record is shorter than the header or than its own `payload_len`.
    #[error("ring-buffer record of {0} bytes is shorter than its header says")]
    Short(usize),
    /// A field holds a value the kernel side never writes.
    #[error("ring-buffer record has an unknown {field} value {value}")]
    Unknown { field: &'static str, value: u32 },
}

/// `struct dnslens_exec_event`: a process image was replaced.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecHeader {
    pub kind: u32,
    pub tgid: u32,
    pub process_start_ns: u64,
    pub filename: [u8; PATH_LEN],
}

/// An exec seen by the kernel: the path passed to execve, kept for processes gone from /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub tgid: u32,
    pub process_start_ns: u64,
    pub filename: String,
}

/// A TCP connect by a process: the event header alone (`payload_len` 0), attributed as DNS
/// events are. `local()` is the source, `remote()` the destination; the source port is 0 when
/// the kernel had not chosen it yet (an unbound socket, the usual case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRecord {
    pub header: EventHeader,
}

impl ConnectRecord {
    /// Reads a connect record. Never panics on short or odd input.
    pub fn parse(record: &[u8]) -> Result<Self, EventError> {
        let header: EventHeader = read_pod(record)?;
        if header.kind != RECORD_CONNECT {
            return Err(EventError::Unknown {
                field: "kind",
                value: header.kind,
            });
        }
        header.validate()?;
        Ok(ConnectRecord { header })
    }
}

/// `enum dnslens_libc_function`: the libc resolver functions hooked. `gethostbyname` and
/// `gethostbyname2` run the `_r` ones' code, and show as them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum LibcFunction {
    Getaddrinfo = 1,
    GethostbynameR = 2,
    Gethostbyname2R = 3,
}

/// `struct dnslens_libc_call`: the payload of a libc record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LibcCallTail {
    pub entry_ns: u64,
    pub status: i32,
    pub function: u8,
    pub _pad: [u8; 3],
    pub name: [u8; LIBC_NAME_LEN],
}

/// A resolver call in libc that returned: the calling task in the event header (no socket;
/// `timestamp_ns` is the return), and what the call was passed and returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibcCall {
    pub header: EventHeader,
    pub function: LibcFunction,
    /// The name as the application passed it (lossy UTF-8).
    pub name: String,
    /// See `struct dnslens_libc_call`: getaddrinfo's return, or for the `_r` functions 0 on
    /// success, else `h_errno` (-1 when unreadable).
    pub status: i32,
    pub entry_ns: u64,
}

impl LibcCall {
    /// Reads a libc record. Never panics on short or odd input.
    pub fn parse(record: &[u8]) -> Result<Self, EventError> {
        let header: EventHeader = read_pod(record)?;
        let at = std::mem::size_of::<EventHeader>();
        if header.kind != RECORD_LIBC {
            return Err(EventError::Unknown {
                field: "kind",
                value: header.kind,
            });
        }
        let tail: LibcCallTail = read_pod(record.get(at..).unwrap_or_default())?;
        let function = LibcFunction::ALL
            .iter()
            .copied()
            .find(|&f| f as u8 == tail.function)
            .ok_or(EventError::Unknown {
                field: "function",
                value: tail.function.into(),
            })?;
        Ok(LibcCall {
            header,
            function,
            name: String::from_utf8_lossy(c_bytes(&tail.name)).into_owned(),
            status: tail.status,
            entry_ns: tail.entry_ns,
        })
    }

    /// From the call to its return.
    pub fn latency_ns(&self) -> u64 {
        self.header.timestamp_ns.saturating_sub(self.entry_ns)
    }
}

/// Any ring-buffer record.
// Made per record and consumed at once: boxing the large variants would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Record<'a> {
    Dns(RawEvent<'a>),
    Exec(ExecEvent),
    Connect(ConnectRecord),
    Libc(LibcCall),
}

impl<'a> Record<'a> {
    /// Reads a ring-buffer record of either kind. Never panics on short or odd input.
    pub fn parse(record: &'a [u8]) -> Result<Self, EventError> {
        let kind = record
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(EventError::Short(record.len()))?;
        match kind {
            RECORD_DNS => RawEvent::parse(record).map(Record::Dns),
            RECORD_CONNECT => ConnectRecord::parse(record).map(Record::Connect),
            RECORD_LIBC => LibcCall::parse(record).map(Record::Libc),
            RECORD_EXEC => {
                let header: ExecHeader = read_pod(record)?;
                Ok(Record::Exec(ExecEvent {
                    tgid: header.tgid,
                    process_start_ns: header.process_start_ns,
                    filename: String::from_utf8_lossy(c_bytes(&header.filename)).into_owned(),
                }))
            }
            value => Err(EventError::Unknown {
                field: "kind",
                value,
            }),
        }
    }
}

/// Copies a plain-old-data header from the front of a record.
fn read_pod<T: Copy>(record: &[u8]) -> Result<T, EventError> {
    if record.len() < std::mem::size_of::<T>() {
        return Err(EventError::Short(record.len()));
    }
    // SAFETY: the length was checked; T is a repr(C) struct of integers and byte arrays (any bit
    // pattern is valid); the record may be unaligned, hence read_unaligned.
    Ok(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}

/// One captured message: the header fields and the payload bytes, borrowed from the ring buffer.
#[derive(Clone, Copy, Debug)]
pub struct RawEvent<'a> {
    pub header: EventHeader,
    pub payload: &'a [u8],
}

impl<'a> RawEvent<'a> {
    /// Reads a ring-buffer record. Never panics on short or odd input.
    pub fn parse(record: &'a [u8]) -> Result<Self, EventError> {
        let header_len = std::mem::size_of::<EventHeader>();
        let header: EventHeader = read_pod(record)?;
        if header.kind != RECORD_DNS {
            return Err(EventError::Unknown {
                field: "kind",
                value: header.kind,
            });
        }
        let end = header_len + header.payload_len as usize;
        if header.payload_len as usize > MAX_PAYLOAD || record.len() < end {
            return Err(EventError::Short(record.len()));
        }
        header.validate()?;
        Ok(RawEvent {
            header,
            payload: &record[header_len..end],
        })
    }

    pub fn transport(&self) -> Result<Transport, EventError> {
        self.header.transport()
    }

    pub fn direction(&self) -> Result<Direction, EventError> {
        self.header.direction()
    }

    pub fn syscall(&self) -> Result<Syscall, EventError> {
        self.header.syscall()
    }

    /// Whether the message was longer than what was captured.
    pub fn truncated(&self) -> bool {
        self.header.msg_len > self.header.payload_len
    }

    pub fn local(&self) -> SocketAddr {
        self.header.local()
    }

    pub fn remote(&self) -> SocketAddr {
        self.header.remote()
    }

    /// Thread name.
    pub fn comm(&self) -> &str {
        self.header.comm()
    }

    /// Process (thread-group leader) name.
    pub fn leader_comm(&self) -> &str {
        self.header.leader_comm()
    }
}

mod libc_proto {
    pub const UDP: u8 = 17;
    pub const TCP: u8 = 6;
}

/// IPv4-mapped IPv6 addresses (a dual-stack socket talking IPv4) are shown as IPv4.
fn socket_addr(family: u16, addr: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*addr);
        v6.to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, port)
}

fn c_bytes(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn c_str(bytes: &[u8]) -> &str {
    let bytes = c_bytes(bytes);
    // comm is set by the process and need not be UTF-8; keep the valid prefix.
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_counters_report_losses_first_then_the_rest() {
        let mut k = KernelCounters::default();
        for (i, &c) in KernelCounter::ALL.iter().enumerate() {
            k.set(c, 10 + i as u64);
        }
        assert_eq!(k.lost(), 11 + 12 + 14 + 16 + 18);
        assert_eq!(
            k.to_string(),
            "10 events, 71 lost (ring buffer full 11, read failed 12, \
             past the sendmmsg/recvmmsg limit 14, not from a hooked syscall 16, \
             over their cgroup's share 18), \
             13 cut at the payload limit, 15 with iovecs past the limit, 17 exec records lost, \
             19 server-side messages kept in the kernel (no output shows them)"
        );
    }

    fn bytes(header: &EventHeader) -> Vec<u8> {
        // SAFETY: a repr(C) struct of integers and byte arrays with explicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (header as *const EventHeader).cast::<u8>(),
                std::mem::size_of::<EventHeader>(),
            )
        }
        .to_vec()
    }

    fn connect_header() -> EventHeader {
        let mut h = EventHeader {
            kind: RECORD_CONNECT,
            tgid: 7,
            family: AF_INET6,
            remote_port: 443,
            protocol: libc_proto::TCP,
            direction: 1,
            syscall: 11,
            ..EventHeader::default()
        };
        h.remote_addr = "::ffff:198.18.77.1".parse::<Ipv6Addr>().unwrap().octets();
        h.comm[..4].copy_from_slice(b"curl");
        h
    }

    #[test]
    fn connect_records_parse_into_the_shared_header() {
        let record = bytes(&connect_header());
        let Ok(Record::Connect(c)) = Record::parse(&record) else {
            panic!("not a connect record");
        };
        assert_eq!(c.header.tgid, 7);
        assert_eq!(c.header.syscall(), Ok(Syscall::Connect));
        assert_eq!(c.header.transport(), Ok(Transport::Tcp));
        assert_eq!(c.header.remote().to_string(), "198.18.77.1:443");
        assert_eq!(c.header.local().to_string(), "[::]:0");
        assert_eq!(c.header.comm(), "curl");
        assert_eq!(Syscall::Connect.name(), "connect");
    }

    #[test]
    fn odd_connect_records_are_errors() {
        let record = bytes(&connect_header());
        assert_eq!(
            Record::parse(&record[..100]).unwrap_err(),
            EventError::Short(100)
        );
        let mut bad = connect_header();
        bad.protocol = 1;
        assert_eq!(
            Record::parse(&bytes(&bad)).unwrap_err(),
            EventError::Unknown {
                field: "protocol",
                value: 1
            }
        );
        assert!(ConnectRecord::parse(&bytes(&EventHeader {
            kind: RECORD_DNS,
            ..connect_header()
        }))
        .is_err());
    }

    fn libc_record(function: u8, name: &[u8]) -> Vec<u8> {
        let mut record = bytes(&EventHeader {
            kind: RECORD_LIBC,
            tgid: 9,
            timestamp_ns: 5_000,
            ..EventHeader::default()
        });
        let mut tail = LibcCallTail {
            entry_ns: 1_000,
            status: -2,
            function,
            _pad: [0; 3],
            name: [0; LIBC_NAME_LEN],
        };
        tail.name[..name.len()].copy_from_slice(name);
        // SAFETY: a repr(C) struct of integers and byte arrays with explicit padding.
        record.extend_from_slice(unsafe {
            std::slice::from_raw_parts(
                (&tail as *const LibcCallTail).cast::<u8>(),
                std::mem::size_of::<LibcCallTail>(),
            )
        });
        record
    }

    #[test]
    fn libc_records_carry_the_name_status_and_both_times() {
        let Ok(Record::Libc(call)) = Record::parse(&libc_record(1, b"db.internal")) else {
            panic!("not a libc record");
        };
        assert_eq!(call.header.tgid, 9);
        assert_eq!(call.function, LibcFunction::Getaddrinfo);
        assert_eq!(call.function.name(), "getaddrinfo");
        assert_eq!((call.name.as_str(), call.status), ("db.internal", -2));
        assert_eq!(call.latency_ns(), 4_000);
    }

    #[test]
    fn odd_libc_records_are_errors() {
        let record = libc_record(3, b"x");
        let short = record.len() - 1;
        assert_eq!(
            Record::parse(&record[..short]).unwrap_err(),
            EventError::Short(short - std::mem::size_of::<EventHeader>())
        );
        assert_eq!(
            Record::parse(&libc_record(7, b"x")).unwrap_err(),
            EventError::Unknown {
                field: "function",
                value: 7
            }
        );
        // Not NUL-terminated and not UTF-8: kept whole, lossily.
        let name = [0xffu8; LIBC_NAME_LEN];
        let Ok(Record::Libc(call)) = Record::parse(&libc_record(2, &name)) else {
            panic!("not a libc record");
        };
        assert_eq!(call.name.chars().count(), LIBC_NAME_LEN);
    }
}
