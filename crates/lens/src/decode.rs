//! Decode stage: ring-buffer records to DNS messages. A UDP payload is one message; TCP bytes
//! go through one framer per (socket, direction), kept in a bounded map. Failures are counted
//! by kind, never printed one by one, never fatal. Connect, exec and libc records are checked
//! and passed on as they are.

use std::collections::BTreeMap;

use dnslens_abi::{Direction, ExecEvent, LibcCall, Record, Transport};
use dnslens_wire::{DecodeError, Frame, Message, Section, TcpFramer};

use crate::bounded::Lru;
use crate::model::{Capture, Decoded, Role};
use crate::served::{ServedGate, ServerSide};

/// TCP streams followed at once.
pub const DEFAULT_TCP_STREAMS: usize = 4096;
/// Bytes the followed TCP streams may hold in all: past it the least recently used streams are
/// dropped (and counted), so peers that each promise a 64 KiB message and send most of it cost
/// at most this, not 4,096 times 128 KiB.
pub const DEFAULT_TCP_BYTES: usize = 32 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Ring-buffer records seen.
    pub records: u64,
    /// Records that are not events (short, or an unknown field value).
    pub bad_records: u64,
    /// Exec records (process executable paths), passed on to the process cache.
    pub exec_records: u64,
    /// Connect records (outgoing TCP connections), passed on to enrichment.
    pub connect_records: u64,
    /// Libc resolver-call records (only uprobes a caller attached make them), passed on.
    pub libc_records: u64,
    /// Messages decoded.
    pub messages: u64,
    /// Messages that failed to decode, by `DecodeError::kind()`.
    pub errors: BTreeMap<&'static str, u64>,
    /// Messages cut short in the capture of which only the header and question (and the
    /// sections before the cut) were decoded.
    pub truncated_salvaged: u64,
    /// Messages cut short in the capture that did not decode even in part.
    pub truncated_undecoded: u64,
    /// Times a TCP stream lost its framing and the framer resynchronized.
    pub tcp_desyncs: u64,
    /// Bytes skipped while resynchronizing.
    pub tcp_skipped_bytes: u64,
    /// TCP streams forgotten because the stream map was full, or held too many bytes.
    pub tcp_streams_evicted: u64,
    /// TCP streams followed now that stopped inside a message: a peer that promised more than
    /// it sent (and maybe closed), or one still sending. Counted when the stats are taken.
    pub tcp_streams_mid_message: u64,
    /// Bytes those streams hold (length prefixes included), never decoded unless the rest
    /// arrives.
    pub tcp_bytes_held: u64,
    /// Server-side messages left undecoded because no output shows them ([`crate::served`]).
    pub server_side_skipped: u64,
}

impl DecodeStats {
    pub fn decode_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What a record yields.
#[derive(Debug)]
pub enum Output<'a> {
    /// A DNS message, with the capture-side facts of its record and its bytes as captured
    /// (without TCP's length prefix).
    Message(&'a Capture<'a>, Decoded, &'a [u8]),
    /// A connect record's facts.
    Connect(&'a Capture<'a>),
    /// An exec record, for the process cache.
    Exec(ExecEvent),
    /// A libc resolver call that returned.
    Libc(&'a LibcCall),
}

/// Turns raw records into decoded messages.
pub struct Decoder {
    streams: Lru<(u64, Direction), TcpFramer>,
    /// Bytes the streams' buffers have reserved, and how many they may.
    stream_bytes: usize,
    stream_budget: usize,
    served: ServedGate,
    stats: DecodeStats,
}

impl Decoder {
    /// `tcp_streams`: how many (socket, direction) framers to keep, `tcp_bytes`: how many bytes
    /// they may reserve in all; the least recently used are dropped (and counted) when a new
    /// stream needs room or the bytes run out.
    pub fn new(tcp_streams: usize, tcp_bytes: usize) -> Self {
        Decoder {
            // One more than the streams kept: room is made here, so that the bytes of a stream
            // dropped are known.
            streams: Lru::new(tcp_streams + 1),
            stream_bytes: 0,
            stream_budget: tcp_bytes,
            served: ServedGate::new(ServerSide::Events, 1),
            stats: DecodeStats::default(),
        }
    }

    /// Decodes the server side's messages only as far as `served` lets them through.
    pub fn with_server_side(mut self, served: ServedGate) -> Self {
        self.served = served;
        self
    }

    /// Drops the least recently used stream, and counts it.
    fn drop_oldest_stream(&mut self) {
        if let Some((_, framer)) = self.streams.pop_oldest() {
            self.stream_bytes -= framer.buffer_capacity();
            self.stats.tcp_streams_evicted += 1;
        }
    }

    /// Parses one ring-buffer record and calls `out` with each message it completes, or with
    /// the connect or exec it is.
    pub fn record(&mut self, record: &[u8], out: &mut impl FnMut(Output<'_>)) {
        self.stats.records += 1;
        match Record::parse(record) {
            Ok(Record::Dns(raw)) => match Capture::from_raw(&raw) {
                Ok(capture) => self.decode(&capture, raw.payload, out),
                Err(_) => self.stats.bad_records += 1,
            },
            Ok(Record::Connect(connect)) => match Capture::from_header(&connect.header) {
                Ok(capture) => {
                    self.stats.connect_records += 1;
                    out(Output::Connect(&capture));
                }
                Err(_) => self.stats.bad_records += 1,
            },
            Ok(Record::Exec(exec)) => {
                self.stats.exec_records += 1;
                out(Output::Exec(exec));
            }
            Ok(Record::Libc(call)) => {
                self.stats.libc_records += 1;
                out(Output::Libc(&call));
            }
            Err(_) => self.stats.bad_records += 1,
        }
    }

    fn decode(&mut self, capture: &Capture<'_>, payload: &[u8], out: &mut impl FnMut(Output<'_>)) {
        let msg_len = capture.header.msg_len;
        let missing = (msg_len as usize).saturating_sub(payload.len());
        match capture.transport {
            Transport::Udp => {
                let size = msg_len.max(payload.len() as u32);
                if !admitted(&mut self.served, capture, payload) {
                    return;
                }
                if let Some(decoded) = decode_one(&mut self.stats, payload, size, missing > 0) {
                    out(Output::Message(capture, decoded, payload));
                }
            }
            Transport::Tcp => {
                let key = (capture.header.socket_ino, capture.direction);
                if !self.streams.contains(&key) && self.streams.len() + 1 >= self.streams.capacity()
                {
                    self.drop_oldest_stream();
                }
                let (stats, served) = (&mut self.stats, &mut self.served);
                let framer = self.streams.get_or_insert_with(key, TcpFramer::new);
                let before = framer.buffer_capacity();
                framer.push(payload, missing, &mut |frame| match frame {
                    Frame::Message(bytes) => {
                        if !admitted(served, capture, bytes) {
                            return;
                        }
                        if let Some(d) = decode_one(stats, bytes, bytes.len() as u32, false) {
                            out(Output::Message(capture, d, bytes));
                        }
                    }
                    Frame::Partial { prefix, total_len } => {
                        if !admitted(served, capture, prefix) {
                            return;
                        }
                        if let Some(d) = decode_one(stats, prefix, total_len as u32, true) {
                            out(Output::Message(capture, d, prefix));
                        }
                    }
                    Frame::Desync { skipped } => {
                        stats.tcp_desyncs += 1;
                        stats.tcp_skipped_bytes += skipped as u64;
                    }
                });
                self.stream_bytes = self.stream_bytes - before + framer.buffer_capacity();
                // The stream just used is the most recent: the others go first.
                while self.stream_bytes > self.stream_budget && self.streams.len() > 1 {
                    self.drop_oldest_stream();
                }
            }
        }
    }

    pub fn stats(&self) -> DecodeStats {
        let held: Vec<usize> = self
            .streams
            .values()
            .map(TcpFramer::held)
            .filter(|&held| held > 0)
            .collect();
        DecodeStats {
            tcp_streams_mid_message: held.len() as u64,
            tcp_bytes_held: held.iter().map(|&n| n as u64).sum(),
            server_side_skipped: self.served.dropped(),
            ..self.stats.clone()
        }
    }
}

/// Whether message `bytes` of `capture` is decoded: its role, from the header's QR bit and the
/// direction, read before any decoding; a server's goes only as far as `served` lets it.
fn admitted(served: &mut ServedGate, capture: &Capture<'_>, bytes: &[u8]) -> bool {
    let Some(&flags) = bytes.get(2) else {
        // Too short to have a role: decoding it counts the error.
        return true;
    };
    let h = capture.header;
    Role::of(flags & 0x80 != 0, capture.direction) != Role::Server
        || served.passes(h.tgid, h.process_start_ns, h.timestamp_ns)
}

fn decode_one(
    stats: &mut DecodeStats,
    bytes: &[u8],
    size: u32,
    truncated: bool,
) -> Option<Decoded> {
    let message = match dnslens_wire::decode_brief(bytes) {
        Ok(message) => message,
        Err(error) => match truncated.then(|| salvage(bytes, &error)).flatten() {
            Some(message) => {
                stats.truncated_salvaged += 1;
                message
            }
            None => {
                *stats.errors.entry(error.kind()).or_default() += 1;
                stats.truncated_undecoded += u64::from(truncated);
                return None;
            }
        },
    };
    stats.messages += 1;
    Some(Decoded {
        message,
        size,
        truncated,
    })
}

/// Decodes what precedes the cut of a message the capture cut short (a large response past
/// the payload limit), by zeroing the counts of the section where the bytes ran out and of
/// every later one. The question survives, so the response still pairs with its query.
fn salvage(bytes: &[u8], error: &DecodeError) -> Option<Message> {
    let section = match error {
        DecodeError::Truncated { section, .. } | DecodeError::TooManyRecords { section, .. } => {
            *section
        }
        _ => return None,
    };
    let first = match section {
        Section::Question => return None,
        Section::Answer => 1,
        Section::Authority => 2,
        Section::Additional => 3,
    };
    if bytes.len() < 12 {
        return None;
    }
    let mut copy = bytes.to_vec();
    for count in first..4 {
        copy[4 + 2 * count] = 0;
        copy[5 + 2 * count] = 0;
    }
    dnslens_wire::decode_brief(&copy).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{connect_header, dns_message, exec_record, header, record};

    /// The (thread name, message) pairs that one record yields.
    fn run(d: &mut Decoder, rec: &[u8]) -> Vec<(String, Decoded)> {
        let mut out = Vec::new();
        d.record(rec, &mut |o| match o {
            Output::Message(c, m, _) => out.push((c.comm.to_string(), m)),
            other => panic!("not a message: {other:?}"),
        });
        out
    }

    fn tcp(send: bool, data: &[u8], msg_len: usize) -> Vec<u8> {
        let mut h = header(send, 0, data.len());
        h.protocol = 6;
        h.msg_len = msg_len as u32;
        record(&h, data)
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn udp_payload_is_one_message() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        let msg = dns_message(0x1234, false, 0, "example.com", 1, &[]);
        let out = run(&mut d, &record(&header(true, 5, msg.len()), &msg));
        assert_eq!(out.len(), 1);
        let (comm, decoded) = &out[0];
        assert_eq!(comm, "dig");
        assert_eq!(decoded.message.id, 0x1234);
        assert_eq!(decoded.message.question().unwrap().name, "example.com");
        assert_eq!(decoded.size as usize, msg.len());
        assert!(!decoded.truncated);
        assert_eq!(d.stats().messages, 1);
    }

    #[test]
    fn errors_are_counted_by_kind_and_bad_records_apart() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        assert!(run(&mut d, &record(&header(true, 0, 3), b"abc")).is_empty());
        assert!(run(&mut d, b"short").is_empty());
        let mut bad = header(true, 0, 0);
        bad.direction = 9;
        assert!(run(&mut d, &record(&bad, b"")).is_empty());
        let stats = d.stats();
        assert_eq!(stats.errors.get("short_header"), Some(&1));
        assert_eq!(
            (stats.records, stats.bad_records, stats.messages),
            (3, 2, 0)
        );
    }

    #[test]
    fn truncated_udp_response_keeps_its_question() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        let msg = dns_message(7, true, 0, "big.example", 16, &[[1, 2, 3, 4], [5, 6, 7, 8]]);
        let cut = &msg[..msg.len() - 3];
        let mut h = header(false, 0, cut.len());
        h.msg_len = 5000;
        let out = run(&mut d, &record(&h, cut));
        assert_eq!(out.len(), 1);
        let decoded = &out[0].1;
        assert!(decoded.truncated);
        assert_eq!(decoded.size, 5000);
        assert_eq!(decoded.message.question().unwrap().name, "big.example");
        assert!(decoded.message.answers.is_empty());
        assert_eq!(d.stats().truncated_salvaged, 1);

        // Cut inside the question: nothing to salvage.
        let mut h = header(false, 0, 15);
        h.msg_len = 5000;
        assert!(run(&mut d, &record(&h, &msg[..15])).is_empty());
        assert_eq!(d.stats().truncated_undecoded, 1);
        assert_eq!(d.stats().decode_errors(), 1);
    }

    #[test]
    fn a_servers_tcp_messages_past_the_first_are_not_decoded_when_nothing_shows_them() {
        use crate::served::ServerSide;
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES)
            .with_server_side(ServedGate::new(ServerSide::Resolvers, 4));
        let q = framed(&dns_message(1, false, 0, "a.example", 1, &[]));
        let r = framed(&dns_message(1, true, 0, "a.example", 1, &[[9, 9, 9, 9]]));
        // A server receives two queries and sends a response: server side, one decoded.
        let both = [q.as_slice(), q.as_slice()].concat();
        assert_eq!(run(&mut d, &tcp(false, &both, both.len())).len(), 1);
        assert!(run(&mut d, &tcp(true, &r, r.len())).is_empty());
        // Its client receives the response: client side, decoded.
        let mut h = header(false, 0, r.len());
        (h.protocol, h.tgid, h.socket_ino) = (6, 999, 5);
        assert_eq!(run(&mut d, &record(&h, &r)).len(), 1);
        let stats = d.stats();
        assert_eq!((stats.messages, stats.server_side_skipped), (2, 2));
    }

    #[test]
    fn tcp_messages_are_reassembled_per_socket_and_direction() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        let q = framed(&dns_message(1, false, 0, "a.example", 1, &[]));
        let r = framed(&dns_message(1, true, 0, "a.example", 1, &[[9, 9, 9, 9]]));
        // The query arrives in two writes; the response's first half sits in between on the
        // other direction of the same socket.
        assert!(run(&mut d, &tcp(true, &q[..5], 5)).is_empty());
        assert!(run(&mut d, &tcp(false, &r[..7], 7)).is_empty());
        let out = run(&mut d, &tcp(true, &q[5..], q.len() - 5));
        assert_eq!(out.len(), 1);
        assert!(!out[0].1.message.is_response());
        assert_eq!(out[0].1.size as usize, q.len() - 2);
        let out = run(&mut d, &tcp(false, &r[7..], r.len() - 7));
        assert_eq!(out[0].1.message.answers[0].data, "9.9.9.9");

        // Two messages in one read.
        let both = [q.clone(), q.clone()].concat();
        assert_eq!(run(&mut d, &tcp(true, &both, both.len())).len(), 2);
    }

    #[test]
    fn tcp_stream_map_is_bounded() {
        let mut d = Decoder::new(1, DEFAULT_TCP_BYTES);
        let q = framed(&dns_message(1, false, 0, "a.example", 1, &[]));
        run(&mut d, &tcp(true, &q[..5], 5));
        // Another stream takes the only slot; the first one's tail then cannot frame.
        run(&mut d, &tcp(false, &q[..5], 5));
        assert!(run(&mut d, &tcp(true, &q[5..], q.len() - 5)).len() <= 1);
        assert_eq!(d.stats().tcp_streams_evicted, 2);
    }

    /// Peers that each promise a large message and send most of it: the streams' bytes stay
    /// within the budget, the oldest streams dropped and counted.
    #[test]
    fn tcp_stream_bytes_are_bounded() {
        const BUDGET: usize = 256 << 10;
        let mut d = Decoder::new(64, BUDGET);
        let part = [&60_000u16.to_be_bytes()[..], &[7; 40_000]].concat();
        for socket in 0..32 {
            // In reads of 4,000 bytes: a record carries at most MAX_PAYLOAD.
            for read in part.chunks(4_000) {
                let mut h = header(true, 0, read.len());
                (h.protocol, h.socket_ino) = (6, socket);
                assert!(run(&mut d, &record(&h, read)).is_empty());
                assert!(d.stream_bytes <= BUDGET, "{} bytes", d.stream_bytes);
            }
        }
        let stats = d.stats();
        assert!(stats.tcp_bytes_held <= BUDGET as u64, "{stats:?}");
        assert!(stats.tcp_streams_evicted >= 32 - 6, "{stats:?}");
        assert!(
            stats.tcp_streams_mid_message >= 2,
            "the newest are kept: {stats:?}"
        );
    }

    /// Regression: a TCP peer that sent a length prefix promising more than it then sent (and
    /// closed) left no trace in the counters; its bytes sat in the stream map unreported.
    #[test]
    fn lying_tcp_length_is_reported_as_a_stream_stopped_mid_message() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        let lie = [&5000u16.to_be_bytes()[..], &[7; 20]].concat();
        assert!(run(&mut d, &tcp(true, &lie, lie.len())).is_empty());
        let q = framed(&dns_message(1, false, 0, "a.example", 1, &[]));
        assert_eq!(run(&mut d, &tcp(false, &q, q.len())).len(), 1);
        let stats = d.stats();
        assert_eq!(
            (stats.tcp_streams_mid_message, stats.tcp_bytes_held),
            (1, 22)
        );
    }

    #[test]
    fn connect_and_exec_records_pass_through_counted() {
        let mut d = Decoder::new(4, DEFAULT_TCP_BYTES);
        let mut seen = Vec::new();
        let mut h = connect_header(5);
        d.record(&record(&h, &[]), &mut |o| match o {
            Output::Connect(c) => seen.push(format!("{} {}->{}", c.comm, c.local, c.remote)),
            other => panic!("{other:?}"),
        });
        d.record(&exec_record(123, 99, "/usr/bin/curl"), &mut |o| match o {
            Output::Exec(e) => seen.push(e.filename),
            other => panic!("{other:?}"),
        });
        h.syscall = 99;
        d.record(&record(&h, &[]), &mut |o| panic!("{o:?}"));
        assert_eq!(seen, ["dig 10.0.0.2:0->10.0.0.1:443", "/usr/bin/curl"]);
        let stats = d.stats();
        assert_eq!(
            (
                stats.records,
                stats.connect_records,
                stats.exec_records,
                stats.bad_records
            ),
            (3, 1, 1, 1)
        );
    }
}
