//! Tunneling: one process sends many queries to many distinct names under one registered
//! domain, with long or random-looking labels. Counted per (process, registered domain) in
//! tumbling windows; the alert fires as soon as a window meets every threshold, once per
//! window. TXT, NULL, CNAME, MX and ANY queries (the types tunnels use to carry data back)
//! raise the severity when they are 30% or more.

use std::collections::BTreeMap;

use dnslens_lens::DnsEvent;
use dnslens_wire::RecordType;

use crate::alert::{add_example, count_qtype, Detector, Evidence, Severity, Subject};
use crate::keys::{subject, ProcKey};
use crate::names::{is_reverse, registered_domain, subdomain};
use crate::score::looks_random;
use crate::sketch::{hash64, Distinct};
use crate::stage::{Detectors, Settings, NS};

/// One window of one process's queries under one registered domain.
#[derive(Debug)]
pub(crate) struct TunnelWindow {
    pub ends: u64,
    queries: u64,
    long: u64,
    data_types: u64,
    distinct: Distinct,
    /// Queries by type; turned into names only for an alert.
    qtypes: Vec<(RecordType, u64)>,
    /// Names with long or random labels, the telling ones.
    examples: Vec<String>,
    fired: bool,
}

impl TunnelWindow {
    fn new(ends: u64) -> Self {
        TunnelWindow {
            ends,
            queries: 0,
            long: 0,
            data_types: 0,
            distinct: Distinct::default(),
            qtypes: Vec::new(),
            examples: Vec::new(),
            fired: false,
        }
    }
}

/// Query types that carry data back in answers.
fn carries_data(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::TXT | RecordType::NULL | RecordType::CNAME | RecordType::MX | RecordType::ANY
    )
}

/// A label of 30 characters or more, a name of 60 or more, or a random-looking label.
fn long_or_random(name: &str, sub: &str, long_label: usize, long_name: usize) -> bool {
    name.len() >= long_name
        || sub
            .split('.')
            .any(|l| l.len() >= long_label || looks_random(l))
}

impl Detectors {
    pub(crate) fn tunneling(
        &mut self,
        e: &DnsEvent,
        pk: ProcKey,
        name: &str,
        set: &Settings,
        wkey: &str,
    ) {
        let t = &set.s.tunneling;
        if !t.enabled
            || !name.contains('.')
            || self.suffixes.is_cluster(name)
            || is_reverse(name)
            || set.tunnel_ignore.iter().any(|p| p.matches(name))
        {
            return;
        }
        let domain = registered_domain(name);
        let key = (pk, hash64(domain.as_bytes()));
        let now = self.now;
        let window_ns = t.window_s.saturating_mul(NS);
        let fresh = match self.tunnels.peek(&key) {
            Some(w) => w.ends <= now,
            None => true,
        };
        if fresh {
            // Inserting again makes it the newest, so the table stays ordered by window end.
            self.tunnels
                .insert(key, TunnelWindow::new(now.saturating_add(window_ns)));
        }
        let w = self.tunnels.peek_mut(&key).expect("window present");
        let sub = subdomain(name, domain);
        w.queries += 1;
        w.distinct.insert(name);
        if long_or_random(name, sub, t.long_label, t.long_name) {
            w.long += 1;
            add_example(&mut w.examples, name);
        }
        if carries_data(e.qtype) {
            w.data_types += 1;
        }
        match w.qtypes.iter_mut().find(|(t, _)| *t == e.qtype) {
            Some((_, n)) => *n += 1,
            None => w.qtypes.push((e.qtype, 1)),
        }

        let min_queries = (t.min_rate * t.window_s as f64).ceil() as u64;
        let q = w.queries as f64;
        let distinct = w.distinct.estimate();
        if w.fired
            || w.queries < min_queries
            || (distinct as f64) < t.min_distinct_ratio * q
            || (w.long as f64) < t.min_long_share * q
        {
            return;
        }
        w.fired = true;
        let severity = if w.data_types as f64 >= 0.3 * q {
            Severity::High
        } else {
            Severity::Medium
        };
        let evidence = Evidence {
            domain: Some(domain.to_string()),
            examples: w.examples.clone(),
            queries: Some(w.queries),
            rate_per_s: Some(q / t.window_s as f64),
            distinct_names: Some(distinct),
            long_or_random: Some(w.long),
            qtypes: {
                let mut m = BTreeMap::new();
                for &(t, n) in &w.qtypes {
                    count_qtype(&mut m, &t.to_string(), n);
                }
                m
            },
            ..Evidence::default()
        };
        let who = Subject::of_event(e);
        let summary = format!(
            "{} sent {} queries in {} s for {} distinct names under {}, most with long or random labels: possible DNS tunneling",
            subject(&who),
            w.queries,
            t.window_s,
            distinct,
            domain
        );
        let key = format!("{wkey}\0{domain}");
        let (window_s, configured) = (t.window_s, t.severity);
        self.raise(
            Detector::Tunneling,
            key,
            severity,
            configured,
            summary,
            window_s,
            evidence,
            who,
        );
    }
}
