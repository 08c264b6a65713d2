//! Resolver bypass: a client query to a server other than the nameservers its process's
//! resolv.conf names, or any query or connection to a DNS-over-TLS port. Processes seen
//! answering queries (forwarders, caches) are exempt, as are multicast destinations (mDNS,
//! LLMNR), `allowed_servers`, and DNS tools run on the host (`dig @server`). When the process's
//! resolv.conf cannot be read (it exited), nothing is judged.

use dnslens_lens::{ConnectEvent, DnsEvent};

use crate::alert::{Detector, Evidence, Severity, Subject};
use crate::c2::transport_str;
use crate::connect::canonical;
use crate::keys::{subject, workload_key, ProcKey};
use crate::stage::{Detectors, Settings};

/// A DNS tool on the host (by its executable's file name): an operator asking a server by hand.
fn is_host_tool(e: &DnsEvent, tools: &[String]) -> bool {
    let file_name = e
        .who
        .process
        .exe
        .as_deref()
        .and_then(|p| p.rsplit('/').next());
    e.who.host == Some(true) && file_name.is_some_and(|f| tools.iter().any(|t| t == f))
}

impl Detectors {
    pub(crate) fn bypass(&mut self, e: &DnsEvent, pk: ProcKey, set: &Settings, wkey: &str) {
        let b = &set.s.resolver_bypass;
        let ip = canonical(e.dst.ip());
        if !b.enabled
            || ip.is_unspecified()
            || ip.is_multicast()
            || b.allowed_servers.iter().any(|s| s.contains(ip))
            || is_host_tool(e, &b.tools)
        {
            return;
        }
        let dot = b.dot_ports.contains(&e.dst.port());
        let mut configured = Vec::new();
        if !dot {
            self.proc_state(pk, || Subject::of_event(e));
            let Some(rc) = self.resolv_conf(pk) else {
                return;
            };
            if rc.names(ip) {
                return;
            }
            configured = rc.nameservers.iter().map(|a| a.to_string()).collect();
        }
        let who = Subject::of_event(e);
        let (reason, summary) = if dot {
            (
                "dns over tls",
                format!(
                    "{} sent a DNS query for {} straight to {}, a DNS-over-TLS port",
                    subject(&who),
                    e.qname,
                    e.dst
                ),
            )
        } else {
            (
                "other server",
                format!(
                    "{} sent a DNS query for {} to {}, not a nameserver its resolv.conf names ({})",
                    subject(&who),
                    e.qname,
                    e.dst,
                    configured.join(", ")
                ),
            )
        };
        let evidence = Evidence {
            examples: vec![e.qname.to_string()],
            server: Some(e.dst.to_string()),
            configured,
            reason: Some(reason.to_string()),
            ..Evidence::default()
        };
        self.raise(
            Detector::ResolverBypass,
            format!("{wkey}\0{ip}"),
            Severity::Medium,
            b.severity,
            summary,
            0,
            evidence,
            who,
        );
    }

    /// A connection to a DNS-over-TLS port (the caller checked exemptions).
    pub(crate) fn dot_connect(&mut self, c: &ConnectEvent, set: &Settings) {
        let who = Subject::of_connect(c);
        let wkey = workload_key(&c.who);
        let summary = format!(
            "{} connected to {}, a DNS-over-TLS port, bypassing its configured resolver",
            subject(&who),
            c.dst
        );
        let evidence = Evidence {
            server: Some(c.dst.to_string()),
            address: Some(c.dst.to_string()),
            transport: Some(transport_str(c.transport).to_string()),
            reason: Some("dns over tls".to_string()),
            ..Evidence::default()
        };
        self.raise(
            Detector::ResolverBypass,
            format!("{wkey}\0{}", canonical(c.dst.ip())),
            Severity::Medium,
            set.s.resolver_bypass.severity,
            summary,
            0,
            evidence,
            who,
        );
    }
}
