//! Decode speed of dnslens-wire against hickory-proto on the same messages, in the same run,
//! and TcpFramer throughput.
//!
//! `hickory-proto` parses into typed values; `hickory-proto+text` also renders the names and
//! data to strings, which is the output dnslens-wire produces.

use dnslens_testkit::dns as support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dnslens_wire::{decode, TcpFramer};
use hickory_proto::op::Message as HMessage;
use std::hint::black_box;

fn hickory_text(bytes: &[u8]) -> usize {
    let msg = HMessage::from_vec(bytes).unwrap();
    let mut len = 0;
    for q in msg.queries() {
        len += q.name().to_string().len();
    }
    for r in msg
        .answers()
        .iter()
        .chain(msg.name_servers())
        .chain(msg.additionals())
    {
        len += r.name().to_string().len() + r.data().to_string().len();
    }
    len
}

fn decoders(c: &mut Criterion) {
    let messages = [
        ("query", support::typical_query()),
        ("response", support::typical_response()),
        ("large", support::large_response()),
    ];
    for (kind, bytes) in &messages {
        let mut group = c.benchmark_group(format!("decode/{kind}"));
        group.bench_function("dnslens-wire", |b| {
            b.iter(|| decode(black_box(bytes)).unwrap())
        });
        group.bench_function("hickory-proto", |b| {
            b.iter(|| HMessage::from_vec(black_box(bytes)).unwrap())
        });
        group.bench_function("hickory-proto+text", |b| {
            b.iter(|| hickory_text(black_box(bytes)))
        });
        group.finish();
    }
}

fn framer(c: &mut Criterion) {
    // 64 typical responses per stream, captured in 4096-byte chunks.
    let msg = support::typical_response();
    let mut stream = Vec::new();
    for _ in 0..64 {
        stream.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        stream.extend_from_slice(&msg);
    }
    let mut group = c.benchmark_group("tcp_framer");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("4096-byte chunks", |b| {
        b.iter(|| {
            let mut framer = TcpFramer::new();
            let mut n = 0;
            for chunk in black_box(&stream).chunks(4096) {
                framer.push(chunk, 0, &mut |_| n += 1);
            }
            assert_eq!(n, 64);
        })
    });
    group.finish();
}

criterion_group!(benches, decoders, framer);
criterion_main!(benches);
