//! Detector cost per message, beside the pipeline's (crates/lens/benches/pipeline.rs): the
//! events of a dnsperf-like load (a client's query and response and the resolver's received
//! query and sent response, 1,000 distinct names, one process each side) through
//! `Detectors::event`, timed in thread CPU as the pipeline bench is.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dnslens_detect::{Config, Detectors, FakeProcesses};
use dnslens_lens::clock::thread_cpu_time;
use dnslens_lens::model::sample;
use dnslens_lens::{DnsEvent, Role};

const LOOKUPS: u64 = 1_000;

fn exchange_events(start_ns: u64) -> Vec<DnsEvent> {
    let mut events = Vec::new();
    for i in 0..LOOKUPS {
        let t = start_ns + i * 20_000;
        let name = format!("host-{i}.bench.test");
        let query = sample::query(i as u16, &name, 1, t);
        let response = sample::response(&query, 0, &["198.18.9.9"], t + 9_000);
        let (mut received, mut answered) = (query.clone(), response.clone());
        for server_side in [&mut received, &mut answered] {
            server_side.role = Role::Server;
            server_side.who.process.pid = 200;
            server_side.who.process.name = "dnsmasq".into();
        }
        received.mono_ns += 3_000;
        answered.mono_ns += 6_000;
        events.extend([query, received, answered, response]);
    }
    events
}

fn detectors_per_message(c: &mut Criterion) {
    let view = FakeProcesses::default().with_resolv(123, "nameserver 10.1.1.1\n");
    let mut detectors = Detectors::with_view(Config::default(), Box::new(view));
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(LOOKUPS * 4));
    let mut start = 1_000_000_000u64;
    let mut alerts = 0u64;
    group.bench_function("events", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                start += 1_000_000_000;
                let events = exchange_events(start);
                let before = thread_cpu_time();
                for e in &events {
                    detectors.event(black_box(e), &mut |_| alerts += 1);
                }
                spent += thread_cpu_time() - before;
            }
            spent
        })
    });
    group.finish();
    assert_eq!(alerts, 0, "an ordinary load raises nothing");
}

criterion_group!(benches, detectors_per_message);
criterion_main!(benches);
