//! Property loops without a dependency: random bytes, mutated real messages and chopped TCP
//! streams through the fuzz targets' bodies, which panic when an invariant breaks.

use dnslens_testkit::dns as support;

use dnslens_wire::fuzzing::{fuzz_decode, fuzz_tcp_framer};
use dnslens_wire::{decode, Frame, TcpFramer};
use support::{Builder, Part, Rng};

fn corpus() -> Vec<Vec<u8>> {
    let mut rich = Builder::new(3, 0x8580);
    rich.question("example.com", 255)
        .answer(
            "example.com",
            15,
            60,
            &[Part::U16(10), Part::Name("mail.example.com")],
        )
        .answer(
            "example.com",
            16,
            60,
            &[Part::Str(b"v=spf1 -all"), Part::Str(b"\x00\"")],
        )
        .answer(
            "example.com",
            65,
            60,
            &[
                Part::U16(1),
                Part::Name("."),
                Part::U16(1),
                Part::U16(3),
                Part::Bytes(b"\x02h2"),
            ],
        )
        .answer(
            "example.com",
            6,
            60,
            &[
                Part::Name("ns.example.com"),
                Part::Name("h.example.com"),
                Part::U32(1),
                Part::U32(2),
                Part::U32(3),
                Part::U32(4),
                Part::U32(5),
            ],
        )
        .answer(
            "example.com",
            33,
            60,
            &[
                Part::U16(1),
                Part::U16(2),
                Part::U16(3),
                Part::Name("sip.example.com"),
            ],
        )
        .answer(
            "example.com",
            46,
            60,
            &[
                Part::U16(1),
                Part::U8(8),
                Part::U8(2),
                Part::U32(3600),
                Part::U32(9),
                Part::U32(8),
                Part::U16(7),
                Part::Name("example.com"),
                Part::Bytes(b"sig"),
            ],
        )
        .record(
            support::AUTHORITY,
            "example.com",
            2,
            1,
            60,
            &[Part::Name("ns.example.com")],
        )
        .opt(1232, 0x8000, &[(10, &[7; 8])]);
    vec![
        support::typical_query(),
        support::typical_response(),
        support::large_response(),
        rich.build(),
    ]
}

#[test]
fn corpus_decodes() {
    for msg in corpus() {
        decode(&msg).unwrap();
        fuzz_decode(&msg);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5000 {
        let len = rng.below(600);
        let mut bytes = rng.bytes(len);
        // Plausible counts reach the name and record code more often than random ones.
        if bytes.len() >= 12 && rng.below(2) == 0 {
            for at in [4, 6, 8, 10] {
                bytes[at] = 0;
                bytes[at + 1] = rng.below(4) as u8;
            }
        }
        fuzz_decode(&bytes);
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let corpus = corpus();
    for _ in 0..20_000 {
        let mut msg = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(msg.len());
            match rng.below(6) {
                0 => msg[at] ^= 1 << rng.below(8),
                1 => msg[at] = rng.next() as u8,
                2 => msg[at] = [0x00, 0x3f, 0x40, 0x80, 0xc0, 0xff][rng.below(6)],
                3 => msg.truncate(at),
                4 => msg.insert(at, rng.next() as u8),
                _ => {
                    let end = (at + rng.below(16)).min(msg.len());
                    let copy = msg[at..end].to_vec();
                    let to = rng.below(msg.len());
                    msg.splice(to..to, copy);
                }
            }
            if msg.is_empty() {
                break;
            }
        }
        fuzz_decode(&msg);
    }
}

/// A DNS-over-TCP stream of 1..=`max` corpus messages, each with its length prefix.
fn stream(rng: &mut Rng, max: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let corpus = corpus();
    let messages = 1 + rng.below(max);
    let mut stream = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..messages {
        let msg = &corpus[rng.below(corpus.len())];
        stream.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        stream.extend_from_slice(msg);
        sent.push(msg.clone());
    }
    (stream, sent)
}

#[test]
fn any_chunking_of_a_clean_stream_gives_the_messages_back() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let (stream, sent) = stream(&mut rng, 6);
        let mut framer = TcpFramer::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((1 + rng.below(200)).min(rest.len()));
            rest = tail;
            framer.push(chunk, 0, &mut |frame| match frame {
                Frame::Message(m) => got.push(m.to_vec()),
                other => panic!("{other:?}"),
            });
        }
        assert_eq!(got, sent);
    }
}

#[test]
fn lossy_streams_keep_the_accounting() {
    let mut rng = Rng(7);
    for _ in 0..2000 {
        // Encode a chopped, lossy capture of a real stream in the fuzz target's input format.
        let (stream, _) = stream(&mut rng, 4);
        let mut input = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.below(128).min(rest.len()));
            let lost = if rng.below(4) == 0 {
                rng.below(64).min(tail.len() / 4)
            } else {
                0
            };
            input.push(chunk.len() as u8 | if lost > 0 { 0x80 } else { 0 });
            if lost > 0 {
                input.push(lost as u8);
            }
            input.extend_from_slice(chunk);
            rest = &tail[lost * 4..];
        }
        fuzz_tcp_framer(&input);
    }
    for _ in 0..2000 {
        let len = rng.below(400);
        fuzz_tcp_framer(&rng.bytes(len));
    }
}
