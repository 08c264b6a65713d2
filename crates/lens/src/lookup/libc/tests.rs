//! Libc calls and wire lookups, with plain events and the clock passed to `expire`.

use super::super::{LookupConfig, Lookups};
use super::*;
use crate::model::{sample, DnsEvent};
use crate::resolv::ResolvConf;
use std::sync::Arc;

const MS: u64 = 1_000_000;
const SEARCH: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n";

/// A stage that holds wire lookups for calls, every process with the search list above.
fn stage() -> Lookups {
    let rc = Arc::new(ResolvConf::parse(SEARCH));
    let mut l = Lookups::new(LookupConfig::default(), Box::new(move |_| Some(rc.clone())));
    l.hold_for_libc();
    l
}

fn query(pid: u32, id: u16, qname: &str, at: u64) -> DnsEvent {
    let mut q = sample::query(id, qname, 1, at);
    q.who.process.pid = pid;
    q
}

fn answer(q: &DnsEvent, rcode: u16, data: &[&str], at: u64) -> DnsEvent {
    let mut r = sample::response(q, rcode, data, at);
    r.who = q.who.clone();
    r
}

/// getaddrinfo(`name`) of process `pid` from `entry` to `ret`, returning `status`.
fn call(pid: u32, name: &str, status: i32, entry: u64, ret: u64) -> LibcEvent {
    let mut who = sample::query(0, name, 1, entry).who;
    who.process.pid = pid;
    who.socket = 0;
    LibcEvent {
        time_ns: 1_795_690_495_000_000_000 + entry,
        entry_mono_ns: entry,
        mono_ns: ret,
        function: LibcFunction::Getaddrinfo,
        name: name.to_string(),
        status,
        who,
    }
}

fn feed(l: &mut Lookups, events: &[DnsEvent], out: &mut Vec<Lookup>) {
    for e in events {
        l.event(e, &mut |lookup| out.push(lookup.clone()));
    }
}

#[test]
fn a_call_takes_the_wire_lookup_it_made_after_its_answer() {
    let mut l = stage();
    let mut out = Vec::new();
    let q = query(7, 1, "web.default.svc.cluster.local", 2 * MS);
    feed(
        &mut l,
        &[q.clone(), answer(&q, 0, &["10.0.0.9"], 3 * MS)],
        &mut out,
    );
    assert!(out.is_empty(), "held for the call: {out:?}");
    l.libc(&call(7, "web.default", 0, MS, 4 * MS), &mut |x| {
        out.push(x.clone())
    });
    let [one] = &out[..] else {
        panic!("want one lookup: {out:#?}")
    };
    assert_eq!(one.source, Source::LibcDns);
    assert_eq!(
        one.name, "web.default",
        "the application's words, not the wire's guess"
    );
    assert_eq!(
        one.answer_name.as_deref(),
        Some("web.default.svc.cluster.local")
    );
    assert_eq!(
        (one.outcome, one.queries, one.latency_us),
        (Outcome::Answered, 1, 3_000)
    );
    assert_eq!(
        one.time_ns,
        1_795_690_495_000_000_000 + MS,
        "when the call began"
    );
    let stats = l.stats();
    assert_eq!(
        (stats.libc.matched, stats.libc.alone, stats.open),
        (1, 0, 0)
    );
    assert_eq!(stats.lookups, 1);
}

#[test]
fn a_call_ends_a_failed_walk_still_open() {
    let mut l = stage();
    let mut out = Vec::new();
    let q1 = query(7, 1, "db.default.svc.cluster.local", 2 * MS);
    let q2 = query(7, 2, "db", 4 * MS);
    feed(
        &mut l,
        &[
            q1.clone(),
            answer(&q1, 3, &[], 3 * MS),
            q2.clone(),
            answer(&q2, 3, &[], 5 * MS),
        ],
        &mut out,
    );
    assert!(out.is_empty(), "lingering: {out:?}");
    l.libc(&call(7, "db", EAI_NONAME, MS, 6 * MS), &mut |x| {
        out.push(x.clone())
    });
    let [one] = &out[..] else {
        panic!("want one lookup: {out:#?}")
    };
    assert_eq!(
        (one.source, one.outcome),
        (Source::LibcDns, Outcome::Nxdomain)
    );
    assert_eq!((one.queries, one.answer_name.as_deref()), (2, None));
    assert_eq!(l.stats().open, 0);
}

#[test]
fn a_call_that_sent_nothing_is_a_lookup_of_its_own() {
    let mut l = stage();
    let mut out = Vec::new();
    l.libc(&call(7, "db.internal", 0, MS, MS + 40_000), &mut |x| {
        out.push(x.clone())
    });
    let [one] = &out[..] else {
        panic!("want one lookup: {out:#?}")
    };
    assert_eq!(one.source, Source::Libc);
    assert_eq!(
        (one.name.as_str(), one.outcome),
        ("db.internal", Outcome::Answered)
    );
    assert_eq!((one.queries, one.latency_us), (0, 40));
    assert!(one.attempts.is_empty() && one.qtypes.is_empty());
    assert_eq!(one.answer_name.as_deref(), Some("db.internal"));
    assert_eq!(l.stats().libc.alone, 1);
}

#[test]
fn an_absolute_name_is_written_without_its_dot_as_the_wire_writes_it() {
    let mut l = stage();
    let mut out = Vec::new();
    let q = query(7, 1, "api.example.com", 2 * MS);
    feed(
        &mut l,
        &[q.clone(), answer(&q, 0, &["10.0.0.9"], 3 * MS)],
        &mut out,
    );
    l.libc(&call(7, "api.example.com.", 0, MS, 4 * MS), &mut |x| {
        out.push(x.clone())
    });
    l.libc(&call(7, "db.internal.", 0, 5 * MS, 6 * MS), &mut |x| {
        out.push(x.clone())
    });
    l.libc(&call(7, ".", 0, 7 * MS, 8 * MS), &mut |x| {
        out.push(x.clone())
    });
    let names: Vec<_> = out
        .iter()
        .map(|x| (x.source, x.name.as_str(), x.answer_name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (Source::LibcDns, "api.example.com", Some("api.example.com")),
            (Source::Libc, "db.internal", Some("db.internal")),
            (Source::Libc, ".", Some(".")),
        ]
    );
}

#[test]
fn wire_lookups_no_call_takes_are_dns() {
    let mut l = stage();
    let mut out = Vec::new();
    let q = query(7, 1, "example.com", 2 * MS);
    feed(
        &mut l,
        &[q.clone(), answer(&q, 0, &["192.0.2.1"], 3 * MS)],
        &mut out,
    );
    // Another process, another name, or a lookup begun outside the call: not taken.
    for c in [
        call(8, "example.com", 0, MS, 4 * MS),
        call(7, "example.org", 0, MS, 4 * MS),
        call(7, "example.com", 0, 2 * MS + 1, 4 * MS),
        call(7, "example", 0, MS, 4 * MS),
    ] {
        l.libc(&c, &mut |x| out.push(x.clone()));
    }
    assert!(out.iter().all(|x| x.source == Source::Libc), "{out:#?}");
    l.expire(3 * MS + HOLD_NS - 1, &mut |x| out.push(x.clone()));
    assert_eq!(out.len(), 4, "still held");
    l.expire(3 * MS + HOLD_NS, &mut |x| out.push(x.clone()));
    assert_eq!(out.len(), 5);
    assert_eq!(
        (out[4].source, out[4].name.as_str()),
        (Source::Dns, "example.com")
    );

    // Without uprobes nothing is held.
    let mut l = Lookups::new(LookupConfig::default(), Box::new(|_| None));
    let mut out = Vec::new();
    feed(
        &mut l,
        &[q.clone(), answer(&q, 0, &["192.0.2.1"], 3 * MS)],
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].source, Source::Dns);
}

#[test]
fn held_lookups_are_bounded_and_the_evicted_counted() {
    let mut l = stage();
    let mut out = Vec::new();
    for i in 0..=MAX_HELD as u32 {
        let q = query(1_000 + i, 1, "example.com", MS);
        feed(
            &mut l,
            &[q.clone(), answer(&q, 0, &["192.0.2.1"], 2 * MS)],
            &mut out,
        );
    }
    assert_eq!(out.len(), 1, "the oldest pushed out as it stands");
    assert_eq!(
        (out[0].source, out[0].who.process.pid),
        (Source::Dns, 1_000)
    );
    let stats = l.stats();
    assert_eq!((stats.libc.evicted, stats.open), (1, MAX_HELD as u64));
}

#[test]
fn statuses_map_to_outcomes() {
    let with = |function, status| LibcEvent {
        function,
        status,
        ..call(7, "x", 0, 0, 0)
    };
    let gai = LibcFunction::Getaddrinfo;
    let r = LibcFunction::GethostbynameR;
    for (function, status, wire, want) in [
        (gai, 0, None, Outcome::Answered),
        (gai, EAI_NONAME, None, Outcome::Nxdomain),
        (gai, EAI_NODATA, None, Outcome::Nodata),
        (gai, EAI_AGAIN, None, Outcome::Servfail),
        (gai, EAI_AGAIN, Some(Outcome::Servfail), Outcome::Servfail),
        (gai, EAI_AGAIN, Some(Outcome::Timeout), Outcome::Timeout),
        (gai, -4, Some(Outcome::Answered), Outcome::Error),
        (r, 0, None, Outcome::Answered),
        (r, HOST_NOT_FOUND, None, Outcome::Nxdomain),
        (r, NO_DATA, None, Outcome::Nodata),
        (r, TRY_AGAIN, Some(Outcome::Timeout), Outcome::Timeout),
        (r, TRY_AGAIN, None, Outcome::Servfail),
        (r, 3, None, Outcome::Error),
        (r, -1, None, Outcome::Error),
    ] {
        assert_eq!(
            outcome(&with(function, status), wire),
            want,
            "{function:?} {status}"
        );
    }
}
