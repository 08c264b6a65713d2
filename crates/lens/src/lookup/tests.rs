//! The stitching rules with plain events and the clock passed to `expire`.

use super::*;
use crate::model::sample;
use std::net::SocketAddr;

const MS: u64 = 1_000_000;
const A: u16 = 1;
const AAAA: u16 = 28;
const NXDOMAIN: u16 = 3;
const SEARCH: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                      nameserver 10.96.0.10\noptions ndots:5\n";

/// A stage whose every process has `resolv` for its resolv.conf (`None`: unreadable).
fn stage(resolv: Option<&str>, config: LookupConfig) -> Lookups {
    let rc = resolv.map(|text| Arc::new(ResolvConf::parse(text)));
    Lookups::new(config, Box::new(move |_| rc.clone()))
}

/// Feeds `events`, then expires at `now`; the lookups that came out.
fn run(l: &mut Lookups, events: &[DnsEvent], now: u64) -> Vec<Lookup> {
    let mut out = Vec::new();
    for e in events {
        l.event(e, &mut |lookup| out.push(lookup.clone()));
    }
    l.expire(now, &mut |lookup| out.push(lookup.clone()));
    out
}

/// A query of process `pid` on `socket` to `server`.
fn query(
    pid: u32,
    socket: u64,
    id: u16,
    qname: &str,
    qtype: u16,
    server: &str,
    at: u64,
) -> DnsEvent {
    let mut q = sample::query(id, qname, qtype, at);
    q.who.process.pid = pid;
    q.who.socket = socket;
    q.dst = server.parse().unwrap();
    q
}

fn answer(q: &DnsEvent, rcode: u16, data: &[&str], at: u64) -> DnsEvent {
    let mut r = sample::response(q, rcode, data, at);
    r.who = q.who.clone();
    r.transport = q.transport;
    r.latency_us = Some((at - q.mono_ns) / 1000);
    r
}

fn unanswered(q: &DnsEvent, timeout_ms: u64) -> DnsEvent {
    let mut u = q.clone();
    u.kind = Kind::Unanswered;
    u.timeout_ms = Some(timeout_ms);
    u
}

/// glibc's walk for `name` with ndots:5: each search domain, then the name as is, A and AAAA
/// together on one socket; every candidate but the last NXDOMAIN.
fn glibc_walk(pid: u32, name: &str, start: u64) -> Vec<DnsEvent> {
    let mut events = Vec::new();
    let candidates = [
        format!("{name}.default.svc.cluster.local"),
        format!("{name}.svc.cluster.local"),
        format!("{name}.cluster.local"),
        name.to_string(),
    ];
    for (i, qname) in candidates.iter().enumerate() {
        let at = start + i as u64 * MS;
        let a = query(pid, 7, 2 * i as u16, qname, A, "10.96.0.10:53", at);
        let aaaa = query(pid, 7, 2 * i as u16 + 1, qname, AAAA, "10.96.0.10:53", at);
        let last = i == candidates.len() - 1;
        let (rcode, data): (u16, &[&str]) = if last {
            (0, &["192.0.2.7"])
        } else {
            (NXDOMAIN, &[])
        };
        let ra = answer(&a, rcode, data, at + 300_000);
        let raaaa = answer(&aaaa, rcode, data, at + 400_000);
        events.extend([a, aaaa, ra, raaaa]);
    }
    events
}

#[test]
fn a_search_walk_is_one_lookup_of_the_name_without_the_suffix() {
    for resolv in [Some(SEARCH), None] {
        let mut l = stage(resolv, LookupConfig::default());
        let out = run(&mut l, &glibc_walk(10, "api.example.com", 0), 0);
        assert_eq!(out.len(), 1, "{resolv:?}: {out:#?}");
        let lookup = &out[0];
        assert_eq!(lookup.name, "api.example.com", "{resolv:?}");
        assert_eq!(lookup.answer_name.as_deref(), Some("api.example.com"));
        assert_eq!(lookup.qtypes, [RecordType(A), RecordType(AAAA)]);
        assert_eq!(lookup.outcome, Outcome::Answered);
        assert_eq!((lookup.queries, lookup.timeouts), (8, 0));
        assert_eq!(lookup.attempts.len(), 8);
        assert_eq!(
            lookup.attempts[0].qname,
            "api.example.com.default.svc.cluster.local"
        );
        assert_eq!(lookup.attempts[0].rcode, Some(Rcode::NXDOMAIN));
        assert_eq!(lookup.latency_us, 3_400, "to the last response");
        assert_eq!(l.stats().open, 0);
        assert_eq!(l.stats().bytes, 0);
    }
}

#[test]
fn a_service_answered_at_the_first_search_domain_is_the_short_name() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let q = query(
        10,
        7,
        1,
        "web.default.svc.cluster.local",
        A,
        "10.96.0.10:53",
        0,
    );
    let out = run(&mut l, &[q.clone(), answer(&q, 0, &["10.0.0.9"], MS)], MS);
    assert_eq!(out[0].name, "web");
    assert_eq!(
        out[0].answer_name.as_deref(),
        Some("web.default.svc.cluster.local")
    );
}

#[test]
fn the_last_names_other_type_asked_late_stays_in_the_lookup() {
    // Go answers AAAA before it sends A for the last name of its walk.
    let mut walk = glibc_walk(10, "api.example.com", 0);
    let a = walk.remove(12);
    let ra = walk.remove(13);
    walk.extend([a, ra]);
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let out = run(&mut l, &walk, 10 * MS);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].queries, 8);
}

#[test]
fn a_dead_first_nameserver_times_out_then_the_next_answers() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let first = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let next = query(10, 8, 2, "api.example.com", A, "10.0.0.2:53", 1_000 * MS);
    let events = [
        first.clone(),
        next.clone(),
        answer(&next, 0, &["192.0.2.7"], 1_002 * MS),
    ];
    let out = run(&mut l, &events, 1_002 * MS);
    assert_eq!(out.len(), 1);
    let lookup = &out[0];
    assert_eq!(lookup.outcome, Outcome::Answered);
    assert_eq!((lookup.queries, lookup.timeouts), (2, 1));
    assert_eq!(lookup.latency_us, 1_002_000);
    assert_eq!(lookup.attempts[0].server.to_string(), "10.0.0.1:53");
    assert_eq!(lookup.attempts[0].rcode, None);
    assert_eq!(lookup.attempts[1].server.to_string(), "10.0.0.2:53");
    // The first query's own timeout, later, ends nothing and opens nothing.
    assert!(run(&mut l, &[unanswered(&first, 5_000)], 10_000 * MS).is_empty());
    assert_eq!(l.stats().lookups, 1);
}

#[test]
fn a_retransmit_after_a_timeout_counts_the_first_as_timed_out() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let q = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let again = query(10, 7, 2, "api.example.com", A, "10.0.0.1:53", 2_000 * MS);
    let out = run(
        &mut l,
        &[
            q,
            again.clone(),
            answer(&again, 0, &["192.0.2.7"], 2_001 * MS),
        ],
        0,
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].queries, out[0].timeouts), (2, 1));
}

#[test]
fn a_resend_on_the_same_socket_and_id_times_the_first_out() {
    // glibc `attempts:2` on one nameserver, musl's retry: pairing passes the resend on and pairs
    // the response with the first send.
    let mut l = stage(None, LookupConfig::default());
    let q = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let mut again = q.clone();
    again.mono_ns = 1_000 * MS;
    let mut r = answer(&again, 0, &["192.0.2.7"], 1_003 * MS);
    r.latency_us = Some(1_003_000);
    let out = run(&mut l, &[q, again, r], 0);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].queries, out[0].timeouts), (2, 1));
    assert_eq!(out[0].outcome, Outcome::Answered);
    assert_eq!(out[0].latency_us, 1_003_000);
    let latencies: Vec<_> = out[0].attempts.iter().map(|a| a.latency_us).collect();
    assert_eq!(latencies, [None, Some(3_000)], "the answer is the resend's");
}

#[test]
fn parallel_queries_to_every_nameserver_are_not_timeouts() {
    // musl asks each nameserver at once and takes the first answer.
    let mut l = stage(None, LookupConfig::default());
    let one = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let two = query(10, 7, 1, "api.example.com", A, "10.0.0.2:53", 10_000);
    let out = run(
        &mut l,
        &[one, two.clone(), answer(&two, 0, &["192.0.2.7"], MS)],
        MS,
    );
    assert_eq!(out.len(), 1, "ended by the first answer");
    assert_eq!((out[0].queries, out[0].timeouts), (2, 0));
    let rcodes: Vec<_> = out[0].attempts.iter().map(|a| a.rcode).collect();
    assert_eq!(
        rcodes,
        [None, Some(Rcode::NOERROR)],
        "the answer is the second server's"
    );
}

#[test]
fn a_truncated_answer_then_tcp_is_one_lookup() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let udp = query(10, 7, 1, "big.example.com", A, "10.0.0.1:53", 0);
    let mut tc = answer(&udp, 0, &["192.0.2.1"], MS);
    tc.flags.tc = true;
    let mut tcp = query(10, 8, 2, "big.example.com", A, "10.0.0.1:53", 2 * MS);
    tcp.transport = Transport::Tcp;
    let events = [
        udp,
        tc,
        tcp.clone(),
        answer(&tcp, 0, &["192.0.2.1", "192.0.2.2"], 3 * MS),
    ];
    let out = run(&mut l, &events, 3 * MS);
    assert_eq!(out.len(), 1, "{out:#?}");
    let transports: Vec<Transport> = out[0].attempts.iter().map(|a| a.transport).collect();
    assert_eq!(transports, [Transport::Udp, Transport::Tcp]);
    assert_eq!((out[0].queries, out[0].timeouts), (2, 0));
    assert_eq!(out[0].latency_us, 3_000);
}

#[test]
fn interleaved_lookups_of_two_processes_stay_apart() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let mut events = Vec::new();
    // Each step of one walk is followed by one of the other process's.
    for (a, b) in glibc_walk(10, "one.example.org", 0)
        .into_iter()
        .zip(glibc_walk(20, "two.example.net", 100_000))
    {
        events.extend([a, b]);
    }
    let mut out = run(&mut l, &events, 10 * MS);
    out.sort_by_key(|l| l.who.process.pid);
    let names: Vec<(u32, &str, u32)> = out
        .iter()
        .map(|l| (l.who.process.pid, l.name.as_str(), l.queries))
        .collect();
    assert_eq!(
        names,
        [(10, "one.example.org", 8), (20, "two.example.net", 8)]
    );
}

#[test]
fn an_unanswered_lookup_ends_as_a_timeout_after_its_query_does() {
    let linger = LookupConfig::default().linger_ns;
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let q = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    assert!(
        run(&mut l, std::slice::from_ref(&q), 4_999 * MS).is_empty(),
        "still waiting"
    );
    assert!(
        run(&mut l, &[unanswered(&q, 5_000)], 5_000 * MS).is_empty(),
        "lingers"
    );
    let out = run(&mut l, &[], 5_000 * MS + linger);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Outcome::Timeout);
    assert_eq!((out[0].queries, out[0].timeouts), (1, 1));
    assert_eq!(out[0].latency_us, 5_000_000);
    assert_eq!(out[0].answer_name, None);
}

#[test]
fn a_name_that_does_not_exist_ends_nxdomain_after_the_linger() {
    let linger = LookupConfig::default().linger_ns;
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let mut walk = glibc_walk(10, "nope.example.com", 0);
    // The last candidate fails too.
    let (a, aaaa) = (walk[12].clone(), walk[13].clone());
    walk.truncate(14);
    walk.extend([
        answer(&a, NXDOMAIN, &[], 4 * MS),
        answer(&aaaa, NXDOMAIN, &[], 4 * MS),
    ]);
    assert!(run(&mut l, &walk, 4 * MS + linger - 1).is_empty());
    let out = run(&mut l, &[], 4 * MS + linger);
    assert_eq!((out[0].outcome, out[0].queries), (Outcome::Nxdomain, 8));
    assert_eq!(out[0].name, "nope.example.com");
}

#[test]
fn asking_an_answered_question_again_is_a_new_lookup() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let q = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let nx = answer(&q, NXDOMAIN, &[], MS);
    let again = query(10, 7, 2, "api.example.com", A, "10.0.0.1:53", 2 * MS);
    let out = run(
        &mut l,
        &[q, nx, again],
        2 * MS + LookupConfig::default().linger_ns,
    );
    assert_eq!(out.len(), 1, "the first ended, the second waits: {out:#?}");
    assert_eq!((out[0].queries, out[0].outcome), (1, Outcome::Nxdomain));
    assert_eq!(l.stats().open, 1);
}

#[test]
fn a_process_with_a_hundred_lookups_in_flight_has_each_answered() {
    // dnsperf, a forwarder's upstream side: many names in flight from one socket, answered
    // out of order. None is pushed out as a timeout; each ends with its own response.
    let mut l = stage(None, LookupConfig::default());
    let queries: Vec<DnsEvent> = (0..100u16)
        .map(|i| {
            let name = format!("n{i}.Example.com");
            query(
                10,
                7,
                1000 + i,
                &name,
                A,
                "10.0.0.1:53",
                u64::from(i) * 1000,
            )
        })
        .collect();
    let mut events = queries.clone();
    // A retransmit of one, in another case, joins its lookup (the name bit ignores case).
    let mut again = query(10, 7, 1042, "N42.EXAMPLE.COM", A, "10.0.0.1:53", 2 * MS);
    again.mono_ns = queries[42].mono_ns + 2 * MS;
    events.push(again);
    events.extend(
        queries
            .iter()
            .rev()
            .map(|q| answer(q, 0, &["192.0.2.1"], 5 * MS)),
    );
    let out = run(&mut l, &events, 5 * MS);
    assert_eq!(out.len(), 100, "{:#?}", &out[..out.len().min(3)]);
    assert!(out.iter().all(|l| l.outcome == Outcome::Answered));
    let n42 = out.iter().find(|l| l.name == "n42.example.com").unwrap();
    assert_eq!(n42.queries, 2);
    assert_eq!((l.stats().evicted, l.stats().open), (0, 0));
}

#[test]
fn a_flood_of_distinct_names_stays_within_its_bounds_and_counts_evictions() {
    let config = LookupConfig {
        processes: 8,
        per_process: 4,
        max_bytes: 16 << 10,
        ..LookupConfig::default()
    };
    let max_bytes = config.max_bytes as u64;
    let mut l = stage(None, config);
    let mut emitted = 0u64;
    for i in 0..20_000u64 {
        // Random-looking names nobody answers, from few processes and from many.
        let pid = if i % 2 == 0 {
            10
        } else {
            100 + (i % 97) as u32
        };
        let name = format!(
            "x{:016x}.flood.example",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let q = query(pid, 7, i as u16, &name, A, "10.0.0.1:53", i * 1000);
        l.event(&q, &mut |_| emitted += 1);
        let stats = l.stats();
        assert!(stats.bytes <= max_bytes, "{stats:?}");
        assert!(stats.open <= 8 * 4, "{stats:?}");
    }
    let stats = l.stats();
    assert_eq!(emitted + stats.open, 20_000, "every lookup comes out once");
    assert_eq!(stats.evicted, emitted, "each pushed out early and counted");
    assert!(stats.evicted > 19_000);
    let mut rows = Vec::new();
    stats.counters(&mut rows);
    assert_eq!(rows[0].value, stats.evicted);
    // A lookup of one name asked again and again lists a bounded number of attempts.
    let mut l = stage(None, LookupConfig::default());
    for i in 0..1_000u64 {
        let q = query(
            10,
            7,
            i as u16,
            "slow.example",
            A,
            "10.0.0.1:53",
            i * 300 * MS,
        );
        l.event(&q, &mut |_| {});
    }
    assert_eq!(l.stats().open, 1);
    assert_eq!(l.stats().attempts_unlisted, 1_000 - 32);
    let out = run(&mut l, &[], u64::MAX);
    assert_eq!((out[0].queries, out[0].attempts.len()), (1_000, 32));
}

#[test]
fn a_lookup_line_is_written_in_the_schemas_form() {
    let mut l = stage(Some(SEARCH), LookupConfig::default());
    let first = query(10, 7, 1, "api.example.com", A, "10.0.0.1:53", 0);
    let next = query(10, 8, 2, "api.example.com", A, "10.0.0.2:53", 1_000 * MS);
    let events = [
        first,
        next.clone(),
        answer(&next, 0, &["192.0.2.7"], 1_002 * MS),
    ];
    let out = run(&mut l, &events, 1_002 * MS);
    let line = crate::schema::lookup_to_string(&out[0]);
    let head = r#"{"time":"2026-11-26T10:54:55.000000000Z","kind":"lookup","name":"api.example.com","answer_name":"api.example.com","qtypes":["A"],"outcome":"answered","latency_us":1002000,"queries":2,"timeouts":1,"attempts":[{"qname":"api.example.com","qtype":"A","server":"10.0.0.1:53","transport":"udp","rcode":null,"latency_us":null},{"qname":"api.example.com","qtype":"A","server":"10.0.0.2:53","transport":"udp","rcode":"NOERROR","latency_us":2000}],"via":null,"source":"dns","process":{"pid":10,"#;
    assert!(line.starts_with(head), "{line}");
    assert!(line.ends_with(r#""node":null,"host":null}"#), "{line}");
}

/// The messages of one lookup of client pid 10 through forwarder pid 20 on 127.0.0.53, which
/// asks 10.96.0.10 when `upstream`: the client's query, the forwarder's receipt, its upstream
/// exchange, its response and the client's receipt.
fn through_forwarder(id: u16, at: u64, upstream: bool) -> Vec<DnsEvent> {
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut q = query(10, 7, id, "web.example", A, "127.0.0.53:53", at);
    q.src = client;
    let mut received = q.clone();
    (received.role, received.who.process.pid, received.who.socket) = (Role::Server, 20, 8);
    received.who.process.name = "dnsmasq".into();
    let mut events = vec![q.clone(), received.clone()];
    if upstream {
        let mut up = query(20, 9, 999, "web.example", A, "10.96.0.10:53", at + MS);
        up.who.process.name = "dnsmasq".into();
        let up_answer = answer(&up, 0, &["192.0.2.9"], at + MS + 900_000);
        events.extend([up, up_answer]);
    }
    let mut sent = answer(&received, 0, &["192.0.2.9"], at + 2 * MS);
    (sent.src, sent.dst) = (received.dst, client);
    let mut got = answer(&q, 0, &["192.0.2.9"], at + 2 * MS + 10_000);
    (got.src, got.dst) = (q.dst, client);
    events.extend([sent, got]);
    events
}

#[test]
fn a_lookup_through_a_forwarder_names_it_and_its_upstream_or_its_cache() {
    let mut l = stage(None, LookupConfig::default());
    let client = |out: &[Lookup]| -> Lookup {
        let mine: Vec<&Lookup> = out.iter().filter(|l| l.who.process.pid == 10).collect();
        let [one] = mine[..] else { panic!("{out:#?}") };
        one.clone()
    };
    let miss = client(&run(&mut l, &through_forwarder(1, 0, true), 0));
    let via = miss.via.expect("through the forwarder");
    assert_eq!(
        (via.pid, &*via.name, via.cache),
        (20, "dnsmasq", via::Cache::Miss)
    );
    assert_eq!(via.upstream, Some("10.96.0.10:53".parse().unwrap()));
    assert_eq!(via.upstream_latency_us, Some(900));
    let hit = client(&run(&mut l, &through_forwarder(2, 1_000 * MS, false), 0));
    let via = hit.via.expect("through the forwarder");
    assert_eq!(
        (via.cache, via.upstream, via.upstream_latency_us),
        (via::Cache::Hit, None, None)
    );
    let stats = l.stats().via;
    assert_eq!((stats.misses, stats.hits, stats.evicted), (1, 1, 0));
}

#[test]
fn without_the_server_side_no_hop_is_made() {
    // The server side kept in the kernel: the forwarder's messages that still come up are
    // fragments, and the client's lookup is whole without a hop.
    let config = LookupConfig {
        server_side: false,
        ..LookupConfig::default()
    };
    let mut l = stage(None, config);
    let out = run(&mut l, &through_forwarder(1, 0, true), 0);
    let mine: Vec<&Lookup> = out.iter().filter(|l| l.who.process.pid == 10).collect();
    let [one] = mine[..] else { panic!("{out:#?}") };
    assert_eq!((one.outcome, one.via.as_ref()), (Outcome::Answered, None));
    assert_eq!(l.stats().via, via::ViaStats::default());
}

#[test]
fn forwarder_state_is_bounded_and_expires() {
    let mut l = stage(None, LookupConfig::default());
    // The forwarder receives queries it never answers.
    for id in 0..5_000u16 {
        let mut received = query(20, 8, id, &format!("n{id}.example"), A, "127.0.0.53:53", 0);
        received.role = Role::Server;
        run(&mut l, &[received], 0);
    }
    assert_eq!(l.stats().via.evicted, 5_000 - 4_096);
    run(&mut l, &[], via::WINDOW_NS);
    assert_eq!(l.stats().via.evicted, 5_000);
}

#[test]
fn a_forwarders_upstream_query_names_the_clients_it_serves() {
    let mut f = via::Forwards::new();
    let served: Vec<Vec<crate::model::Served>> = through_forwarder(1, 0, true)
        .iter()
        .map(|e| f.event(e))
        .collect();
    // The client's query, the forwarder's receipt, its upstream query, ...
    let [client, received, up, rest @ ..] = &served[..] else {
        panic!("{served:?}")
    };
    assert!(client.is_empty() && received.is_empty());
    assert!(rest.iter().all(Vec::is_empty), "{rest:?}");
    let [one] = &up[..] else { panic!("{up:?}") };
    assert_eq!((one.pid, &*one.name, &one.pod), (10, "dig", &None));

    // Clients past the 16 a question keeps are not named.
    let mut f = via::Forwards::new();
    for id in 0..20u16 {
        let mut q = query(
            100 + u32::from(id),
            7,
            id,
            "web.example",
            A,
            "127.0.0.53:53",
            0,
        );
        q.src = format!("127.0.0.1:{}", 40_000 + id).parse().unwrap();
        let mut received = q.clone();
        (received.role, received.who.process.pid) = (Role::Server, 20);
        f.event(&q);
        f.event(&received);
    }
    let up = query(20, 9, 999, "web.example", A, "10.96.0.10:53", MS);
    let pids: Vec<u32> = f.event(&up).iter().map(|s| s.pid).collect();
    assert_eq!(pids, (104..120).collect::<Vec<_>>());
    assert_eq!(f.stats().evicted, 4);
}
