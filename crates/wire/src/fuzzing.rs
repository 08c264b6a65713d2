//! The fuzz targets' bodies, kept here so they also run as ordinary tests on stable and the
//! `fuzz/` project stays a thin wrapper. Each panics when an invariant breaks.

use crate::{decode, decode_brief, peek_header, Frame, Message, TcpFramer};

/// Decodes arbitrary bytes; a message that decodes must be self-consistent and its names and
/// data must be safe, unambiguous presentation text.
pub fn fuzz_decode(data: &[u8]) {
    let decoded = decode(data);
    check_brief(data, &decoded);
    let Ok(msg) = decoded else {
        return;
    };
    check_message(data, &msg);
}

/// [`decode_brief`] agrees with [`decode`]: the same error, or the same header, question, EDNS
/// and (for a response) answers, and no other records.
fn check_brief(data: &[u8], full: &Result<Message, crate::DecodeError>) {
    let brief = decode_brief(data);
    match (full, &brief) {
        (Err(a), Err(b)) => assert_eq!(a, b, "the same error"),
        (Ok(full), Ok(brief)) => {
            assert_eq!(
                (full.id, full.flags, full.rcode, &full.questions, &full.edns),
                (
                    brief.id,
                    brief.flags,
                    brief.rcode,
                    &brief.questions,
                    &brief.edns
                )
            );
            let answers: &[crate::Record] = if full.flags.qr { &full.answers } else { &[] };
            assert_eq!(brief.answers, answers);
            assert!(brief.authority.is_empty() && brief.additional.is_empty());
        }
        _ => panic!("decode gave {full:?}, decode_brief {brief:?}"),
    }
}

/// Replays `data` as a captured TCP stream: each chunk is a control byte (low 7 bits: captured
/// length; high bit: a next byte follows giving `missing / 4`) and then the captured bytes.
pub fn fuzz_tcp_framer(data: &[u8]) {
    let mut framer = TcpFramer::new();
    let (mut fed, mut reported) = (0usize, 0usize);
    let mut stream = Vec::new();
    let (mut lossy, mut desync) = (false, false);
    let mut messages = Vec::new();
    let mut input = data;
    while let Some((&control, rest)) = input.split_first() {
        input = rest;
        let mut missing = 0;
        if control & 0x80 != 0 {
            if let Some((&m, rest)) = input.split_first() {
                missing = usize::from(m) * 4;
                input = rest;
            }
        }
        let (chunk, rest) = input.split_at(usize::from(control & 0x7f).min(input.len()));
        input = rest;
        stream.extend_from_slice(chunk);
        lossy |= missing > 0;
        fed += chunk.len() + missing;
        framer.push(chunk, missing, &mut |frame| {
            reported += check_frame(&frame);
            match frame {
                Frame::Message(m) => {
                    fuzz_decode(m);
                    messages.push(m.to_vec());
                }
                Frame::Partial { .. } => {}
                Frame::Desync { .. } => desync = true,
            }
        });
        let (held, owed) = framer.in_flight();
        assert!(held <= 65_535 + 2, "holds {held} bytes");
        // Memory follows the bytes that arrived, not what a length prefix promised.
        let capacity = framer.buffer_capacity();
        assert!(
            capacity <= (2 * held).max(crate::tcp::KEEP_CAPACITY),
            "reserves {capacity} bytes for {held} held"
        );
        assert_eq!(
            fed + owed,
            reported + held,
            "every stream byte is accounted for once"
        );
    }
    if !lossy && !desync {
        // Chunk boundaries must not change what a clean stream frames into.
        let mut whole = Vec::new();
        TcpFramer::new().push(&stream, 0, &mut |frame| match frame {
            Frame::Message(m) => whole.push(m.to_vec()),
            other => panic!("clean stream gave {other:?}"),
        });
        assert_eq!(messages, whole);
    }
}

/// Checks one frame and returns how many stream bytes it reports.
fn check_frame(frame: &Frame<'_>) -> usize {
    match *frame {
        Frame::Message(m) => {
            assert!(m.len() >= 12, "message of {} bytes", m.len());
            m.len() + 2
        }
        Frame::Partial { prefix, total_len } => {
            assert!(total_len >= 12 && prefix.len() < total_len, "{frame:?}");
            total_len + 2
        }
        Frame::Desync { skipped } => {
            assert!(skipped > 0, "empty desync");
            skipped
        }
    }
}

fn check_message(data: &[u8], msg: &Message) {
    let (id, flags, qdcount) = peek_header(data).expect("a decoded message has a header");
    assert_eq!((id, flags), (msg.id, msg.flags));
    let count = |at: usize| usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
    assert_eq!(msg.questions.len(), usize::from(qdcount));
    assert_eq!(msg.answers.len(), count(6));
    assert_eq!(msg.authority.len(), count(8));
    assert_eq!(
        msg.additional.len() + usize::from(msg.edns.is_some()),
        count(10)
    );
    let rcode_bits = if msg.edns.is_some() { 12 } else { 4 };
    assert!(msg.rcode.0 < 1 << rcode_bits, "rcode {}", msg.rcode.0);

    for q in &msg.questions {
        check_name(&q.name);
    }
    for r in msg
        .answers
        .iter()
        .chain(&msg.authority)
        .chain(&msg.additional)
    {
        check_name(&r.name);
        assert!(
            r.data.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "unprintable data {:?}",
            r.data
        );
    }
    assert_eq!(decode(data).as_ref(), Ok(msg), "decoding is deterministic");
}

/// The presentation text must be printable, and must split back into labels of 1..=63 octets
/// making at most 255 octets on the wire.
fn check_name(name: &str) {
    assert!(
        name.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "unprintable name {name:?}"
    );
    if name == "." {
        return;
    }
    let mut octets = 1;
    let mut label = 0;
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'.' => {
                assert!(label > 0, "empty label in {name:?}");
                octets += 1 + label;
                label = 0;
            }
            b'\\' => {
                let escaped = bytes.next().expect("dangling escape");
                if escaped.is_ascii_digit() {
                    let digits = [
                        escaped,
                        bytes.next().unwrap_or(0),
                        bytes.next().unwrap_or(0),
                    ];
                    assert!(
                        digits.iter().all(u8::is_ascii_digit),
                        "bad \\DDD in {name:?}"
                    );
                }
                label += 1;
            }
            _ => label += 1,
        }
        assert!(label <= 63, "label over 63 octets in {name:?}");
    }
    assert!(label > 0, "trailing dot in {name:?}");
    octets += 1 + label;
    assert!(octets <= 255, "{octets} octets in {name:?}");
}
