//! Failed lookups, the input of the nxdomain and dga detectors.
//!
//! A resolver walking the search list (`ndots:5`: `name.ns.svc.cluster.local`,
//! `name.svc.cluster.local`, `name.cluster.local`, then `name`) gets NXDOMAIN for every
//! expansion but the one that exists. So an NXDOMAIN does not count by itself: it opens (or
//! joins) a pending lookup keyed by the process and the name's base (the name without a search
//! suffix). A success for the base or any of its expansions closes the lookup as resolved; a
//! lookup still pending `lookup_timeout_s` after its last NXDOMAIN counts as one failed lookup,
//! however many names and types it tried. A missing service is therefore one failure per
//! attempt, not six.
//!
//! Per process, in tumbling windows: nxdomain fires on many failed lookups of many distinct
//! names that are most of the process's responses; dga fires on many distinct random-looking
//! registered domains among them.

use dnslens_lens::DnsEvent;
use dnslens_wire::Rcode;

use crate::alert::{add_example, Detector, Evidence, Severity, Subject};
use crate::keys::{namespace, subject, workload_key, ProcKey};
use crate::names::{
    has_known_suffix, is_reverse, registered_domain, registered_label, SearchSuffixes,
};
use crate::score::looks_random;
use crate::sketch::{hash64, CappedSet};
use crate::stage::{Detectors, Settings, NS};

/// Distinct failed names counted per window at most (enough for any sane threshold).
const DISTINCT_CAP: usize = 256;
/// Names of one lookup kept as examples.
const LOOKUP_NAMES: usize = 4;

/// A name (and its expansions) that got NXDOMAIN and nothing better yet.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub deadline: u64,
    proc: ProcKey,
    base: String,
    names: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct NxWindow {
    start: Option<u64>,
    failures: u64,
    ok: u64,
    distinct: CappedSet,
    examples: Vec<String>,
    fired: bool,
}

impl NxWindow {
    fn roll(&mut self, now: u64, window_s: u64) {
        if self
            .start
            .is_none_or(|s| now >= s.saturating_add(window_s.saturating_mul(NS)))
        {
            *self = NxWindow {
                start: Some(now),
                ..NxWindow::default()
            };
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct DgaWindow {
    start: Option<u64>,
    domains: CappedSet,
    examples: Vec<String>,
    fired: bool,
}

/// The names `name` may be an expansion of, and `name` itself.
fn candidates<'a>(suffixes: &SearchSuffixes, name: &'a str, more: &[String]) -> Vec<&'a str> {
    let mut c = vec![name];
    suffixes.bases(name, more, |b| c.push(b));
    c
}

/// The registered domain of a failed base name when it looks machine-made.
fn random_domain<'a>(base: &'a str, suffixes: &SearchSuffixes) -> Option<&'a str> {
    if !base.contains('.')
        || suffixes.is_cluster(base)
        || is_reverse(base)
        || !has_known_suffix(base)
    {
        return None;
    }
    looks_random(registered_label(base)?).then(|| registered_domain(base))
}

impl Detectors {
    /// A client response: NXDOMAIN opens or joins a lookup, NOERROR resolves one.
    pub(crate) fn lookups_response(
        &mut self,
        e: &DnsEvent,
        pk: ProcKey,
        name: &str,
        set: &Settings,
    ) {
        let Some(rcode) = e.rcode else { return };
        if name.is_empty()
            || is_reverse(name)
            || (rcode != Rcode::NXDOMAIN && rcode != Rcode::NOERROR)
        {
            return;
        }
        let p = self.proc_state(pk, || Subject::of_event(e));
        // Names the cluster had not given yet: take them as they come.
        if p.who.pod.as_ref().is_some_and(|pod| pod.info.is_none())
            && e.who.pod.as_ref().is_some_and(|pod| pod.info.is_some())
        {
            p.who = Subject::of_event(e);
        }
        let rc = p.resolv.as_ref().and_then(|(rc, _)| rc.clone());
        let more = rc.as_deref().map_or(&[][..], |r| &r.search[..]);
        let cands = candidates(&self.suffixes, name, more);
        let now = self.now;
        if rcode == Rcode::NOERROR {
            for c in &cands {
                self.lookups.remove(&(pk, hash64(c.as_bytes())));
            }
            let p = self.procs.peek_mut(&pk).expect("made above");
            p.nx.roll(now, set.s.nxdomain.window_s);
            p.nx.ok += 1;
            return;
        }
        let deadline = now.saturating_add(self.config.lookup_timeout_s.saturating_mul(NS));
        for c in &cands {
            let key = (pk, hash64(c.as_bytes()));
            if let Some(l) = self.lookups.peek_mut(&key) {
                l.deadline = deadline;
                if l.names.len() < LOOKUP_NAMES && !l.names.iter().any(|n| n == name) {
                    l.names.push(name.to_string());
                }
                self.lookups.touch(&key);
                return;
            }
        }
        // The shortest base is the one left after the longest suffix: the name the program
        // asked for.
        let base = cands.iter().min_by_key(|c| c.len()).unwrap_or(&name);
        let lookup = Lookup {
            deadline,
            proc: pk,
            base: base.to_string(),
            names: vec![name.to_string()],
        };
        // A lookup pushed out of a full table is counted now rather than lost.
        if let Some((_, evicted)) = self.lookups.insert((pk, hash64(base.as_bytes())), lookup) {
            self.lookup_failed(evicted);
        }
    }

    /// A lookup that never succeeded: one failure for nxdomain, and for dga if it looks
    /// machine-made.
    pub(crate) fn lookup_failed(&mut self, l: Lookup) {
        let now = self.now;
        let wall = self.wall_now();
        let Some(p) = self.procs.peek(&l.proc) else {
            return;
        };
        let set = self.settings(namespace(p.who.pod.as_ref()));
        let random = random_domain(&l.base, &self.suffixes).map(str::to_string);
        let p = self.procs.peek_mut(&l.proc).expect("checked above");
        let mut who = p.who.clone();
        who.time_ns = wall;
        let wkey = workload_key(&who);

        let nx = &set.s.nxdomain;
        p.nx.roll(now, nx.window_s);
        let w = &mut p.nx;
        w.failures += 1;
        w.distinct.insert(hash64(l.base.as_bytes()), DISTINCT_CAP);
        add_example(&mut w.examples, &l.base);
        let total = (w.failures + w.ok) as f64;
        let nx_alert = (nx.enabled
            && !w.fired
            && w.failures >= nx.min_failures
            && w.distinct.len() as u64 >= nx.min_distinct
            && w.failures as f64 >= nx.min_ratio * total)
            .then(|| {
                w.fired = true;
                let summary = format!(
                    "{}: {} lookups of {} distinct names failed with NXDOMAIN in {} s, against {} NOERROR responses",
                    subject(&who),
                    w.failures,
                    w.distinct.len(),
                    nx.window_s,
                    w.ok
                );
                let evidence = Evidence {
                    examples: w.examples.clone(),
                    failed_lookups: Some(w.failures),
                    distinct_failed: Some(w.distinct.len() as u64),
                    ok_responses: Some(w.ok),
                    ..Evidence::default()
                };
                (summary, evidence)
            });

        let dga = &set.s.dga;
        let dga_alert = match random {
            Some(domain) if dga.enabled => {
                let w = &mut p.dga;
                if w.start
                    .is_none_or(|s| now >= s.saturating_add(dga.window_s.saturating_mul(NS)))
                {
                    *w = DgaWindow {
                        start: Some(now),
                        ..DgaWindow::default()
                    };
                }
                let cap = (dga.min_domains as usize).max(64);
                w.domains.insert(hash64(domain.as_bytes()), cap);
                add_example(&mut w.examples, &domain);
                (!w.fired && w.domains.len() as u64 >= dga.min_domains).then(|| {
                    w.fired = true;
                    let summary = format!(
                        "{} failed to resolve {} random-looking domains in {} s ({}, ...): possible DGA malware looking for its server",
                        subject(&who),
                        w.domains.len(),
                        dga.window_s,
                        w.examples.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    );
                    let evidence = Evidence {
                        examples: w.examples.clone(),
                        random_domains: Some(w.domains.len() as u64),
                        ..Evidence::default()
                    };
                    (summary, evidence)
                })
            }
            _ => None,
        };

        if let Some((summary, evidence)) = nx_alert {
            self.raise(
                Detector::Nxdomain,
                wkey.clone(),
                Severity::Low,
                nx.severity,
                summary,
                nx.window_s,
                evidence,
                who.clone(),
            );
        }
        if let Some((summary, evidence)) = dga_alert {
            self.raise(
                Detector::Dga,
                wkey,
                Severity::High,
                dga.severity,
                summary,
                dga.window_s,
                evidence,
                who,
            );
        }
    }
}
