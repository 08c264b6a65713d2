//! `trace --pcapng FILE` (`-w`): every DNS message captured, as a packet Wireshark opens, beside
//! the normal output. The kernel saw a message at a socket, not a packet on a wire, so each is
//! given IP (v4 or v6) and UDP or TCP headers from its addresses, ports and length, with
//! checksums; TCP messages keep their 2-byte length prefix and carry sequence numbers counted
//! per socket, so the two sides of one stream agree. The link type is `LINKTYPE_RAW` (101): a
//! packet starts at its IP header, as no link layer was seen. Each packet carries its kernel
//! time (ns, `if_tsresol` 9) and a comment naming the process, container and pod; each network
//! namespace is an interface, named `netns:[INODE]`.
//!
//! The blocks are encoded here, by hand: pcap-file 2.0 encodes them too, but its writer owns
//! the whole stream (one section, interface ids checked against the blocks it wrote), while
//! here the output thread numbers interfaces per file, as files rotate. Its reader checks our
//! output in the tests.
//!
//! The capture thread encodes Enhanced Packet Blocks whose interface field holds the network
//! namespace's inode; the output thread ([`super::writer`]) turns it into the interface's
//! number in the file ([`PcapngFile`]), writing an Interface Description Block before the
//! first packet of each namespace. A batch dropped while the disk stalls thus loses packets,
//! never an interface their followers need.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use dnslens_lens::bounded::Lru;
use dnslens_lens::identity::Identity;
use dnslens_lens::text::Printable;
use dnslens_lens::DnsEvent;
use dnslens_probe::{Direction, Transport};

use super::rotate::{Numbered, Rotation};
use super::writer::{OutputStats, Writer};

/// Where and how `--pcapng` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapngOutput {
    pub path: PathBuf,
    pub rotation: Option<Rotation>,
}

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_RAW: u16 = 101;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_DESCRIPTION: u16 = 3;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_TSRESOL: u16 = 9;
/// Bytes of a packet comment at most: the names in it are the workload's to choose.
pub const COMMENT_MAX: usize = 1024;
/// Interfaces in one section: past it a new file starts when files rotate, else a new section
/// (interface numbers start again), so the table of namespaces stays bounded.
const INTERFACES_MAX: usize = 1024;
/// TCP sockets whose byte counts (the sequence numbers) are kept; a socket forgotten starts
/// again at 1.
const TCP_SOCKETS: usize = 4096;
/// Bytes of blocks gathered before they are handed to the output thread.
const HAND_OVER_AT: usize = 64 << 10;

/// Appends one block: type, length, `body`, options, length. `body` is padded to 4 bytes.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8], options: &[(u16, &[u8])]) {
    let start = out.len();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(body);
    pad(out);
    if !options.is_empty() {
        for (code, value) in options {
            out.extend_from_slice(&code.to_le_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
            pad(out);
        }
        out.extend_from_slice(&OPT_END.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    let total = (out.len() - start + 4) as u32;
    out.extend_from_slice(&total.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A Section Header Block: little-endian, version 1.0, length unknown.
fn section_header(out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    let app = concat!("dnslens ", env!("CARGO_PKG_VERSION"));
    block(out, SHB, &body, &[(OPT_SHB_USERAPPL, app.as_bytes())]);
}

/// An Interface Description Block for network namespace `netns` (0: unknown).
fn interface(out: &mut Vec<u8>, netns: u32) {
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    // No snap length: messages are cut by the capture, not here.
    body.extend_from_slice(&0u32.to_le_bytes());
    let name = format!("netns:[{netns}]");
    let description =
        format!("DNS messages dnslens captured at sockets in network namespace {netns}");
    block(
        out,
        IDB,
        &body,
        &[
            (OPT_IF_NAME, name.as_bytes()),
            (OPT_IF_DESCRIPTION, description.as_bytes()),
            (OPT_IF_TSRESOL, &[9]),
        ],
    );
}

/// The packet comment: process (pid, name, exe), container and pod, control characters
/// written as `\xHH` and cut to [`COMMENT_MAX`] bytes at a character.
pub fn comment(event: &DnsEvent) -> String {
    let who = &event.who;
    let p = &who.process;
    let mut text = format!("pid {} {}", p.pid, Printable(p.display_name()));
    if let Some(exe) = &p.exe {
        let _ = write!(text, " exe {}", Printable(exe));
    }
    let identity = Identity::of(who);
    if let Some(c) = identity.container() {
        let _ = write!(text, "; container {}", c.short_id());
        if let Some(name) = &c.name {
            let _ = write!(text, " {}", Printable(name));
        }
    }
    match identity {
        Identity::Pod { pod, info, .. } => {
            if let Some(info) = info {
                let _ = write!(
                    text,
                    "; pod {}/{}",
                    Printable(&info.namespace),
                    Printable(&info.name)
                );
            }
            let _ = write!(text, "; pod uid {}", Printable(&pod.uid));
        }
        Identity::Host(_) => text.push_str("; host"),
        Identity::Container(_) | Identity::Unknown(_) | Identity::Client(_) => {}
    }
    for (i, client) in event.served.iter().enumerate() {
        let lead = if i == 0 { "; for" } else { "," };
        let _ = write!(
            text,
            "{lead} pid {} {}",
            client.pid,
            Printable(&client.name)
        );
        if let Some(pod) = client.pod.as_ref().and_then(|p| p.info.as_ref()) {
            let _ = write!(
                text,
                " (pod {}/{})",
                Printable(&pod.namespace),
                Printable(&pod.name)
            );
        }
    }
    if text.len() > COMMENT_MAX {
        let mut end = COMMENT_MAX - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The one's-complement sum of `bytes` (RFC 1071), added to `sum`.
fn sum16(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv6 addresses for a pair of which either is IPv6 (IPv4 ones mapped).
fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The packet of one message: IP and UDP or TCP headers, then `payload` (TCP's length prefix
/// included). `full` is the payload's length on the wire; when the capture cut it short the
/// headers still say `full` and the transport checksum is left 0 (it cannot be computed).
fn packet(
    out: &mut Vec<u8>,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    (seq, ack): (u32, u32),
    payload: &[&[u8]],
    full: usize,
) {
    let (proto, l4_len) = match transport {
        Transport::Udp => (17u8, 8),
        Transport::Tcp => (6u8, 20),
    };
    let segment = (l4_len + full).min(usize::from(u16::MAX) - 40) as u16;
    let captured: usize = payload.iter().map(|p| p.len()).sum();
    let start = out.len();
    // The pseudo-header's sum, for the transport checksum.
    let pseudo = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(20 + segment).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let check = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            out.extend_from_slice(&ip);
            sum16(sum16(0, &ip[12..20]), &[0, proto]) + u32::from(segment)
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&segment.to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&ip);
            sum16(sum16(0, &ip[8..40]), &[0, proto]) + u32::from(segment)
        }
    };
    let l4 = out.len();
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    match transport {
        Transport::Udp => {
            out.extend_from_slice(&segment.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        Transport::Tcp => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&ack.to_be_bytes());
            out.extend_from_slice(&[5 << 4, 0x18]); // 20 bytes, PSH ACK
            out.extend_from_slice(&u16::MAX.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
        }
    }
    let check_at = l4 + if transport == Transport::Udp { 6 } else { 16 };
    for p in payload {
        out.extend_from_slice(p);
    }
    if captured == full {
        let check = match fold(sum16(pseudo, &out[l4..])) {
            // UDP sends a computed 0 as all ones: 0 means "no checksum".
            0 if transport == Transport::Udp => 0xffff,
            check => check,
        };
        out[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    }
    debug_assert!(out.len() - start <= 60 + captured);
}

/// Bytes each side of a TCP socket has carried: the sequence numbers of its next segments.
#[derive(Clone, Copy, Default)]
struct Stream {
    sent: u32,
    received: u32,
}

/// Encodes messages into blocks on the capture thread and hands them to the output thread.
pub struct PcapngSink {
    writer: Writer<PcapngFile>,
    blocks: Vec<u8>,
    packet: Vec<u8>,
    streams: Lru<u64, Stream>,
}

impl PcapngSink {
    /// Creates (or empties, as tcpdump's `-w` does) the file and starts its writer.
    pub fn open(out: &PcapngOutput) -> anyhow::Result<PcapngSink> {
        let file = PcapngFile::create(&out.path, out.rotation).with_context(|| {
            format!(
                "--pcapng {}: cannot create it; give a writable file",
                out.path.display()
            )
        })?;
        Ok(PcapngSink::start(file))
    }

    fn start(file: PcapngFile) -> PcapngSink {
        PcapngSink {
            writer: Writer::start(file),
            blocks: Vec::with_capacity(HAND_OVER_AT + 4096),
            packet: Vec::with_capacity(1024),
            streams: Lru::new(TCP_SOCKETS),
        }
    }

    /// One message, `wire` its bytes as captured.
    pub fn message(&mut self, event: &DnsEvent, wire: &[u8]) -> io::Result<()> {
        let full = event.size as usize;
        let prefix = (event.size.min(u32::from(u16::MAX)) as u16).to_be_bytes();
        let (payload, full, seq_ack): (&[&[u8]], _, _) = match event.transport {
            Transport::Udp => (&[wire], full, (0, 0)),
            Transport::Tcp => {
                let stream = self
                    .streams
                    .get_or_insert_with(event.who.socket, Stream::default);
                let carried = (full + 2) as u32;
                // Both sides count the same bytes: a socket's send is its peer's receive.
                let (this, other) = match event.direction {
                    Direction::Send => (&mut stream.sent, stream.received),
                    Direction::Recv => (&mut stream.received, stream.sent),
                };
                let seq_ack = (this.wrapping_add(1), other.wrapping_add(1));
                *this = this.wrapping_add(carried);
                (&[&prefix, wire], full + 2, seq_ack)
            }
        };
        self.packet.clear();
        packet(
            &mut self.packet,
            event.transport,
            event.src,
            event.dst,
            seq_ack,
            payload,
            full,
        );
        let original = self.packet.len() + full - payload.iter().map(|p| p.len()).sum::<usize>();
        let mut body = Vec::with_capacity(20 + self.packet.len());
        body.extend_from_slice(&event.who.netns.to_le_bytes());
        body.extend_from_slice(&((event.time_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(event.time_ns as u32).to_le_bytes());
        body.extend_from_slice(&(self.packet.len() as u32).to_le_bytes());
        body.extend_from_slice(&(original as u32).to_le_bytes());
        body.extend_from_slice(&self.packet);
        let comment = comment(event);
        block(
            &mut self.blocks,
            EPB,
            &body,
            &[(OPT_COMMENT, comment.as_bytes())],
        );
        if self.blocks.len() >= HAND_OVER_AT {
            self.writer.hand_over(&mut self.blocks)?;
        }
        Ok(())
    }

    /// Hands over what is gathered; the run loop calls it after each batch of records.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.check()?;
        if self.blocks.is_empty() {
            return Ok(());
        }
        self.writer.hand_over(&mut self.blocks)
    }

    /// Writes out everything and closes the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.writer.close().map(drop)
    }

    /// What the writer cost so far (its "lines" are packets here).
    pub fn output(&self) -> OutputStats {
        self.writer.stats()
    }

    /// TCP sockets forgotten for want of room.
    pub fn streams_evicted(&self) -> u64 {
        self.streams.evictions()
    }
}

/// The file, on the output thread: takes whole blocks, numbers the namespaces' interfaces,
/// starts each file (and each section) with a Section Header Block and rotates between blocks.
pub struct PcapngFile {
    file: Numbered,
    rotation: Option<Rotation>,
    /// Network namespace inode -> interface number in the current section.
    interfaces: HashMap<u32, u32>,
    /// No packet in the current file yet: it is not rotated, however long the next one.
    empty: bool,
    out: Vec<u8>,
}

impl PcapngFile {
    pub fn create(path: &Path, rotation: Option<Rotation>) -> io::Result<PcapngFile> {
        let mut file = PcapngFile {
            file: Numbered::open(path, true)?,
            rotation,
            interfaces: HashMap::new(),
            empty: true,
            out: Vec::new(),
        };
        file.new_section();
        Ok(file)
    }

    fn new_section(&mut self) {
        self.interfaces.clear();
        section_header(&mut self.out);
    }

    /// One Enhanced Packet Block as the sink made it, its interface field a namespace.
    fn packet(&mut self, epb: &[u8]) -> io::Result<()> {
        let netns = u32::from_le_bytes(epb[8..12].try_into().expect("4 bytes"));
        let known = self.interfaces.contains_key(&netns);
        let full = !known && self.interfaces.len() >= INTERFACES_MAX;
        if let Some(Rotation { size, keep }) = self.rotation {
            // About what an interface block takes.
            let needed = epb.len() as u64 + if known { 0 } else { 128 };
            let written = self.file.size() + self.out.len() as u64;
            // Past the bound a new file rather than a new section: tshark 4.0 names the
            // interfaces of a second section after the first's.
            if (full || written + needed > size) && !self.empty {
                self.file.write_all(&self.out)?;
                self.out.clear();
                self.file.rotate(keep)?;
                self.empty = true;
                self.new_section();
            }
        }
        if !self.interfaces.contains_key(&netns) && self.interfaces.len() >= INTERFACES_MAX {
            self.new_section();
        }
        let next = self.interfaces.len() as u32;
        let id = *self.interfaces.entry(netns).or_insert_with(|| {
            interface(&mut self.out, netns);
            next
        });
        self.out.extend_from_slice(&epb[..8]);
        self.out.extend_from_slice(&id.to_le_bytes());
        self.out.extend_from_slice(&epb[12..]);
        self.empty = false;
        Ok(())
    }
}

impl Write for PcapngFile {
    /// `buf` is whole blocks: the sink hands over only those, and the writer thread writes
    /// each buffer with one call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while rest.len() >= 12 {
            let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            let (epb, after) = rest.split_at(len.clamp(12, rest.len()));
            self.packet(epb)?;
            rest = after;
        }
        self.file.write_all(&self.out)?;
        self.out.clear();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests;
