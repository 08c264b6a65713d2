//! Connect-side detectors.
//!
//! new_domain_connect: a workload resolves a registered domain it never resolved before, and
//! the same process connects to one of the answer's addresses within `connect_window_ms`:
//! the pattern of malware reaching its command-and-control server. "Never before" is a
//! per-workload set of domains, seeded from the baseline; a workload without a baseline is
//! watched for `warmup_s` before its new domains count, and one that resolved more distinct
//! domains than the set holds (a crawler) is not judged.
//!
//! unresolved_connect: a connect to an external address that no answer in the process's
//! network namespace produced (within the answer's clamped TTL), by a process that started
//! after the detectors did (so its lookups were all seen).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use dnslens_abi::Transport;
use dnslens_lens::{ConnectEvent, DnsEvent};
use dnslens_wire::{Rcode, RecordType};

use crate::alert::{Detector, Evidence, Severity, Subject};
use crate::connect::{canonical, Resolved};
use crate::keys::{namespace, subject, workload_key, ProcKey};
use crate::names::{is_reverse, registered_domain};
use crate::sketch::hash64;
use crate::stage::{Detectors, Settings, NS};

/// The registered domains one workload has resolved.
#[derive(Debug)]
pub(crate) struct WorkloadState {
    first_seen: u64,
    /// The baseline knew the workload: no warm-up needed.
    baselined: bool,
    seen: HashSet<u64>,
    /// More domains than the set holds: new ones are no signal.
    saturated: bool,
}

impl Detectors {
    /// A client response: remembers its addresses, and whether its domain was new.
    pub(crate) fn answers_response(
        &mut self,
        e: &DnsEvent,
        pk: ProcKey,
        name: &str,
        set: &Settings,
        wkey: &str,
    ) {
        if e.rcode != Some(Rcode::NOERROR)
            || name.is_empty()
            || self.suffixes.is_cluster(name)
            || is_reverse(name)
        {
            return;
        }
        let addrs: Vec<(IpAddr, u32)> = e
            .answers
            .iter()
            .filter(|a| a.rtype == RecordType::A || a.rtype == RecordType::AAAA)
            .filter_map(|a| Some((a.data.parse::<IpAddr>().ok()?, a.ttl)))
            .collect();
        if addrs.is_empty() {
            return;
        }
        let domain = registered_domain(name);
        let h = hash64(domain.as_bytes());
        let now = self.now;
        let cap = self.config.limits.domains_per_workload;
        if self.workloads.peek(wkey).is_none() {
            let mut seen = HashSet::new();
            let baseline = self.baseline.workload(wkey);
            for d in baseline.iter().flat_map(|b| b.domains.iter()).take(cap) {
                seen.insert(hash64(d.as_bytes()));
            }
            let state = WorkloadState {
                first_seen: now,
                // While learning, the baseline being learned says nothing yet.
                baselined: baseline.is_some() && !self.learning,
                seen,
                saturated: false,
            };
            self.workloads.insert(wkey.to_string(), state);
        } else {
            self.workloads.touch(wkey);
        }
        let w = self.workloads.peek_mut(wkey).expect("present");
        let new = !w.seen.contains(&h);
        if new {
            if w.seen.len() < cap {
                w.seen.insert(h);
            } else {
                w.saturated = true;
            }
        }
        let n = &set.s.new_domain_connect;
        let armed = n.enabled
            && !self.learning
            && !w.saturated
            && (w.baselined || now >= w.first_seen.saturating_add(n.warmup_s.saturating_mul(NS)));
        let new_domain = new
            && armed
            && !self
                .allow
                .allows_domain(namespace(e.who.pod.as_ref()), wkey, name);
        let qname: Arc<str> = Arc::from(name);
        let domain: Arc<str> = Arc::from(domain);
        for (addr, ttl) in addrs {
            let ttl =
                u64::from(ttl).clamp(self.config.answer_min_ttl_s, self.config.answer_max_ttl_s);
            let r = Resolved {
                qname: qname.clone(),
                domain: domain.clone(),
                resolved_mono: now,
                expires_mono: now.saturating_add(ttl.saturating_mul(NS)),
                process: (pk.pid, pk.start_ns),
                new_domain,
            };
            self.answers.insert(e.who.netns, addr, r);
        }
    }

    pub(crate) fn on_connect(&mut self, c: &ConnectEvent, set: &Settings) {
        let pk = ProcKey::new(c.who.process.pid, c.who.ids.process_start_ns);
        let resolver = self.procs.peek(&pk).is_some_and(|p| p.resolver);
        let ip = canonical(c.dst.ip());
        let port = c.dst.port();
        let b = &set.s.resolver_bypass;
        if b.dot_ports.contains(&port) {
            if b.enabled && !resolver && !b.allowed_servers.iter().any(|s| s.contains(ip)) {
                self.dot_connect(c, set);
            }
            return;
        }
        if self.config.dns_ports.contains(&port) || ip.is_unspecified() {
            return;
        }
        let now = self.now;
        let wkey = workload_key(&c.who);
        let internal = self.config.is_internal(ip);
        if let Some(r) = self.answers.lookup(c.who.netns, ip, now) {
            let n = &set.s.new_domain_connect;
            let after = now.saturating_sub(r.resolved_mono);
            if r.new_domain
                && n.enabled
                && ProcKey::new(r.process.0, r.process.1).same(&pk)
                && after <= n.connect_window_ms.saturating_mul(1_000_000)
                && (n.internal_addresses || !internal)
            {
                let who = Subject::of_connect(c);
                let summary = format!(
                    "{} connected to {} {} ms after first resolving {} ({}), a domain its workload never resolved before: possible command-and-control",
                    subject(&who),
                    c.dst,
                    after / 1_000_000,
                    r.qname,
                    r.domain
                );
                let evidence = Evidence {
                    domain: Some(r.domain.to_string()),
                    examples: vec![r.qname.to_string()],
                    address: Some(c.dst.to_string()),
                    transport: Some(transport_str(c.transport).to_string()),
                    after_ms: Some(after / 1_000_000),
                    ..Evidence::default()
                };
                let key = format!("{wkey}\0{}", r.domain);
                self.raise(
                    Detector::NewDomainConnect,
                    key,
                    Severity::High,
                    n.severity,
                    summary,
                    n.connect_window_ms.div_ceil(1000),
                    evidence,
                    who,
                );
            }
            return;
        }
        let u = &set.s.unresolved_connect;
        let started_after = self
            .epoch
            .is_some_and(|epoch| c.who.ids.process_start_ns > epoch);
        if !u.enabled
            || internal
            || u.ignore_ports.contains(&port)
            || (resolver && self.config.exclude_resolvers)
            || !started_after
        {
            return;
        }
        let who = Subject::of_connect(c);
        let summary = format!(
            "{} connected to {}, an external address no DNS answer in its network namespace gave",
            subject(&who),
            c.dst
        );
        let evidence = Evidence {
            address: Some(c.dst.to_string()),
            transport: Some(transport_str(c.transport).to_string()),
            ..Evidence::default()
        };
        self.raise(
            Detector::UnresolvedConnect,
            wkey,
            Severity::Low,
            u.severity,
            summary,
            0,
            evidence,
            who,
        );
    }
}

pub(crate) fn transport_str(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}
