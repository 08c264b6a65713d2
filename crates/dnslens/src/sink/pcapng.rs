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
/// Interfaces in one section: past it a new section starts (interface numbers start again),
/// so the table of namespaces stays bounded.
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
        if let Some(Rotation { size, keep }) = self.rotation {
            // About what an interface block takes.
            let needed = epb.len() as u64 + if known { 0 } else { 128 };
            let written = self.file.size() + self.out.len() as u64;
            if written + needed > size && !self.empty {
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
mod tests {
    use std::sync::Arc;

    use dnslens_lens::model::{sample, Container, Pod};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use pcap_file::DataLink;

    use super::*;
    use crate::sink::test_dir::Dir;

    /// A query and its response of `qname`, its wire bytes (`id` 0x1234, type A).
    fn exchange(qname: &str) -> [(DnsEvent, Vec<u8>); 2] {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in qname.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x83;
        let mut query = sample::query(0x1234, qname, 1, 1_000);
        query.size = q.len() as u32;
        let mut response = sample::response(&query, 3, &[], 2_500);
        response.size = r.len() as u32;
        [(query, q), (response, r)]
    }

    /// Blocks of the file at `path` after its Section Header Block (the reader fails without
    /// one), read by pcap-file.
    fn blocks(path: &Path) -> Vec<Block<'static>> {
        let mut reader = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut blocks = Vec::new();
        while let Some(block) = reader.next_block() {
            blocks.push(block.unwrap().into_owned());
        }
        blocks
    }

    fn write(path: &Path, rotation: Option<Rotation>, events: &[(DnsEvent, Vec<u8>)]) {
        let mut sink = PcapngSink::start(PcapngFile::create(path, rotation).unwrap());
        for (event, wire) in events {
            sink.message(event, wire).unwrap();
            sink.flush().unwrap();
        }
        sink.finish().unwrap();
    }

    fn sum_is_valid(bytes: &[u8], pseudo: u32) -> bool {
        fold(sum16(pseudo, bytes)) == 0
    }

    #[test]
    fn packets_read_back_with_interfaces_times_comments_and_checksums() {
        let dir = Dir::new("pcapng-read");
        let path = dir.0.join("dns.pcapng");
        let [(q, qw), (mut r, rw)] = exchange("www.example.com");
        // The response seen in another namespace, over IPv6.
        r.who.netns = 4_026_532_000;
        r.src = "[2001:db8::1]:53".parse().unwrap();
        r.dst = "[2001:db8::2]:40000".parse().unwrap();
        write(
            &path,
            None,
            &[(q.clone(), qw.clone()), (r.clone(), rw.clone())],
        );
        let blocks = blocks(&path);
        let idbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| b.clone().into_interface_description())
            .collect();
        assert_eq!(idbs.len(), 2);
        for (idb, netns) in idbs.iter().zip([q.who.netns, r.who.netns]) {
            assert_eq!(idb.linktype, DataLink::RAW);
            assert!(idb
                .options
                .contains(&InterfaceDescriptionOption::IfTsResol(9)));
            let name = format!("netns:[{netns}]");
            assert!(idb
                .options
                .contains(&InterfaceDescriptionOption::IfName(name.into())));
        }
        let epbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| b.clone().into_enhanced_packet())
            .collect();
        assert_eq!(epbs.len(), 2);
        // pcap-file reads the stamp as ns whatever if_tsresol says; 9 makes that right.
        assert_eq!(epbs[0].timestamp.as_nanos(), u128::from(q.time_ns));
        assert_eq!(epbs[1].timestamp.as_nanos(), u128::from(r.time_ns));
        assert_eq!((epbs[0].interface_id, epbs[1].interface_id), (0, 1));
        let v4 = &epbs[0].data;
        assert_eq!((v4[0], v4.len()), (0x45, 20 + 8 + qw.len()));
        assert_eq!(&v4[28..], &qw[..]);
        assert!(sum_is_valid(&v4[..20], 0), "IPv4 header checksum");
        let pseudo = sum16(sum16(0, &v4[12..20]), &[0, 17]) + (8 + qw.len()) as u32;
        assert!(sum_is_valid(&v4[20..], pseudo), "UDP checksum");
        let v6 = &epbs[1].data;
        assert_eq!((v6[0] >> 4, v6[6], v6.len()), (6, 17, 40 + 8 + rw.len()));
        let pseudo = sum16(sum16(0, &v6[8..40]), &[0, 17]) + (8 + rw.len()) as u32;
        assert!(sum_is_valid(&v6[40..], pseudo), "UDP over IPv6 checksum");
        assert_eq!(
            epbs[0].options,
            [EnhancedPacketOption::Comment(
                "pid 123 dig".to_string().into()
            )]
        );
    }

    #[test]
    fn tcp_messages_keep_their_prefix_and_both_sides_agree_on_sequence_numbers() {
        let dir = Dir::new("pcapng-tcp");
        let path = dir.0.join("dns.pcapng");
        let [(mut q, qw), (mut r, rw)] = exchange("big.example");
        q.transport = Transport::Tcp;
        r.transport = Transport::Tcp;
        // The server's socket: the same query received, the same response sent.
        let mut served_q = q.clone();
        served_q.direction = Direction::Recv;
        served_q.who.socket = 999;
        let mut served_r = r.clone();
        served_r.direction = Direction::Send;
        served_r.who.socket = 999;
        let events = [
            (q, qw.clone()),
            (served_q, qw.clone()),
            (served_r, rw.clone()),
            (r, rw.clone()),
        ];
        write(&path, None, &events);
        let epbs: Vec<_> = blocks(&path)
            .into_iter()
            .filter_map(Block::into_enhanced_packet)
            .collect();
        let seq_ack = |data: &[u8]| {
            let tcp = &data[20..];
            (
                u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            )
        };
        let qlen = qw.len() as u32 + 2;
        let seen: Vec<_> = epbs.iter().map(|e| seq_ack(&e.data)).collect();
        assert_eq!(seen, [(1, 1), (1, 1), (1, 1 + qlen), (1, 1 + qlen)]);
        for (e, wire) in epbs.iter().zip([&qw, &qw, &rw, &rw]) {
            let payload = &e.data[40..];
            assert_eq!(&payload[..2], &(wire.len() as u16).to_be_bytes());
            assert_eq!(&payload[2..], &wire[..]);
            let pseudo = sum16(sum16(0, &e.data[12..20]), &[0, 6]) + (20 + wire.len() + 2) as u32;
            assert!(sum_is_valid(&e.data[20..], pseudo), "TCP checksum");
        }
    }

    #[test]
    fn a_cut_message_keeps_its_original_length() {
        let dir = Dir::new("pcapng-cut");
        let path = dir.0.join("dns.pcapng");
        let [_, (mut r, rw)] = exchange("cut.example");
        r.size = 3000;
        r.truncated = true;
        write(&path, None, &[(r, rw.clone())]);
        let epb = blocks(&path)
            .into_iter()
            .find_map(Block::into_enhanced_packet)
            .unwrap();
        assert_eq!(epb.data.len(), 28 + rw.len());
        assert_eq!(epb.original_len, 28 + 3000);
        assert_eq!(u16::from_be_bytes([epb.data[2], epb.data[3]]), 28 + 3000);
    }

    #[test]
    fn comments_name_process_container_and_pod_escaped_and_bounded() {
        let [(mut q, _), _] = exchange("x.example");
        q.who.process.exe = Some(Arc::from("/usr/bin/dig"));
        q.who.container = Some(Container {
            id: Arc::from("0d2d06bae0964ff0d2d06bae0964ff0d2d06bae0964ff0d2d06bae0964ff0aa"),
            runtime: dnslens_lens::container::Runtime::Containerd,
            name: Some("app\nx".to_string()),
        });
        q.who.pod = Some(Pod {
            uid: Arc::from("u-1"),
            info: Some(sample::pod_info(None)),
        });
        assert_eq!(
            comment(&q),
            "pid 123 dig exe /usr/bin/dig; container 0d2d06bae096 app\\x0ax; pod \
             shop/web-7d4b9f-xk2p1; pod uid u-1"
        );
        q.who.process.exe = Some(Arc::from(format!("/{}", "é".repeat(2000)).as_str()));
        let long = comment(&q);
        assert!(
            long.len() <= COMMENT_MAX && long.ends_with('…'),
            "{}",
            long.len()
        );
    }

    #[test]
    fn rotated_files_each_start_a_section_with_their_interfaces() {
        let dir = Dir::new("pcapng-rotate");
        let path = dir.0.join("dns.pcapng");
        let events: Vec<_> = (0..12)
            .flat_map(|n| exchange(&format!("n{n}.example")))
            .collect();
        write(&path, Some(Rotation { size: 600, keep: 2 }), &events);
        let mut packets = 0;
        for name in ["dns.pcapng", "dns.pcapng.1", "dns.pcapng.2"] {
            let file = dir.0.join(name);
            assert!(std::fs::metadata(&file).unwrap().len() <= 600, "{name}");
            let blocks = blocks(&file);
            assert!(
                matches!(blocks[0], Block::InterfaceDescription(_)),
                "{name}"
            );
            packets += blocks.len() - 1;
        }
        assert!(!dir.0.join("dns.pcapng.3").exists());
        assert!(packets > 0 && packets < events.len());
    }
}
