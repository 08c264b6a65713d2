//! The records fuzz target's body (`fuzz/fuzz_targets/records.rs`), kept here so that it also
//! runs as an ordinary test on stable. Ring-buffer records are the kernel's, but their payload is
//! any workload's bytes: whatever arrives, the pipeline must not panic, its tables must stay
//! within their bounds (entries and TCP bytes), and every event it emits must be written as a
//! JSON line the schema reads back.

use std::net::Ipv4Addr;

use dnslens_abi::{EventHeader, RECORD_CONNECT, RECORD_DNS};

use crate::cgroup::CgroupMounts;
use crate::clock::WallClock;
use crate::model::Kind;
use crate::schema::{self, Line};
use crate::served::ServerSide;
use crate::{Observed, Pipeline, PipelineConfig};

/// Small tables, so that the fuzzer reaches their bounds. The bytes: room for one stream's
/// largest message twice over, no more.
const PENDING: usize = 16;
const TCP_BYTES: usize = 4 * 65_538;

/// Feeds `data` as records through decode -> correlate -> enrich, then expires what is pending.
/// `data` is a sequence of chunks, each a control byte and a little-endian u16 length, then
/// that many bytes: control 0 sends the bytes as a whole record; otherwise they are the payload
/// of a well-formed DNS (or, for control 0xff, connect) record whose fields the control byte
/// and the running count choose, so that the decoder and the pairing are reached. Returns how
/// many events came out.
pub fn fuzz_records(data: &[u8]) -> usize {
    let mut pipeline = Pipeline::new(
        PipelineConfig {
            tcp_streams: 4,
            tcp_bytes: TCP_BYTES,
            pending_queries: PENDING,
            timeout_ns: 1_000_000_000,
            processes: 8,
            cgroups: 8,
            placements: 8,
            proc_root: "/nonexistent/dnslens-fuzz".into(),
            cgroup_mounts: CgroupMounts::default(),
            node: None,
            server_side: ServerSide::default(),
        },
        WallClock::with_offset(0),
    );
    let mut rest = data;
    let mut n = 0u64;
    let mut record = Vec::new();
    let mut events = 0;
    while let [control, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        n += 1;
        record.clear();
        if *control == 0 {
            record.extend_from_slice(bytes);
        } else {
            let header = header(*control, n, bytes.len());
            record.extend_from_slice(header.as_bytes());
            if header.kind == RECORD_DNS {
                record.extend_from_slice(bytes);
            }
        }
        pipeline.record(&record, &mut |observed| {
            check(observed);
            events += 1;
        });
        let stats = pipeline.stats();
        assert!(stats.correlate.pending <= PENDING as u64);
        assert!(stats.decode.tcp_bytes_held <= TCP_BYTES as u64);
    }
    pipeline.expire(u64::MAX / 2, &mut |event| {
        check(Observed::Dns(event, None));
        events += 1;
    });
    assert_eq!(pipeline.stats().correlate.pending, 0);
    events
}

/// A header the kernel could have written, its fields picked by `control` and the count `n`.
fn header(control: u8, n: u64, payload_len: usize) -> EventHeader {
    let mut h = EventHeader {
        kind: if control == 0xff {
            RECORD_CONNECT
        } else {
            RECORD_DNS
        },
        tgid: 100 + u32::from(control & 3),
        tid: 100 + u32::from(control & 3),
        timestamp_ns: n * 1_000_000,
        socket_ino: u64::from(control & 7),
        netns_ino: 1,
        family: 2,
        protocol: if control & 0x10 != 0 { 6 } else { 17 },
        direction: 1 + (control >> 5 & 1),
        syscall: 1 + (control >> 6) % 4,
        msg_len: payload_len as u32,
        payload_len: payload_len as u32,
        ..EventHeader::default()
    };
    if h.kind == RECORD_CONNECT {
        h.protocol = 6;
        (h.direction, h.syscall, h.msg_len, h.payload_len) = (1, 11, 0, 0);
    }
    let (local, remote) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    h.local_addr[..4].copy_from_slice(&local.octets());
    h.remote_addr[..4].copy_from_slice(&remote.octets());
    (h.local_port, h.remote_port) = (40_000 + u16::from(control & 3), 53);
    h.comm[..3].copy_from_slice(b"dig");
    h.leader_comm[..3].copy_from_slice(b"dig");
    h
}

/// What every event must be: a query keeps no answers, and its JSON line reads back.
fn check(observed: Observed<'_>) {
    match observed {
        Observed::Resend(e) => assert_eq!(e.kind, Kind::Query, "a resend is a query"),
        Observed::Dns(e, wire) => {
            // The bytes a pcapng packet carries are never more than the message.
            assert!(wire.is_none_or(|w| w.len() as u64 <= u64::from(e.size)));
            if e.kind == Kind::Query {
                assert!(e.answers.is_empty(), "a query kept answers");
            }
            let line = schema::event_to_string(e);
            match schema::parse_line(&line) {
                Ok(Some(Line::Event(read))) => assert_eq!(read.qname, e.qname, "{line}"),
                other => panic!("{other:?} for {line}"),
            }
        }
        Observed::Connect(c) => {
            let line = schema::connect_to_string(c);
            assert!(
                matches!(schema::parse_line(&line), Ok(Some(Line::Connect(_)))),
                "{line}"
            );
        }
        Observed::Libc(c) => {
            assert!(
                c.name.chars().count() <= dnslens_abi::LIBC_NAME_LEN,
                "name past its bound"
            );
        }
    }
}
