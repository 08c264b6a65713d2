//! The detectors' settings: one TOML file (docs/detectors.md shows it whole), every key
//! optional with the defaults below, unknown keys rejected with the file, line and key named.
//! Each detector's section can be overridden per Kubernetes namespace
//! (`[namespaces.kube-system.tunneling]`); allowlists name workloads by namespace and glob.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::alert::Severity;
use crate::connect::canonical;
use dnslens_lens::filter::{DomainPattern, Glob};

use crate::names::domain_pattern;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read detector config {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type; `message` names the line and key.
    #[error("detector config {path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value out of range.
    #[error("detector config {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// Defines a detector's settings, their defaults, and the all-optional "patch" form a
/// namespace override uses, so the two can never disagree.
macro_rules! section {
    ($(#[$meta:meta])* $name:ident, $patch:ident {
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        #[doc = concat!("[`", stringify!($name), "`] with every key optional: a namespace's override.")]
        #[derive(Clone, Debug, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $patch {
            $( pub $field: Option<$ty>, )*
        }

        impl $patch {
            pub fn apply(&self, to: &mut $name) {
                $( if let Some(v) = &self.$field { to.$field = v.clone(); } )*
            }
        }
    };
}

section!(
    /// `[tunneling]`: data carried in query names.
    Tunneling, TunnelingPatch {
        enabled: bool = true,
        /// Replaces the detector's own severity (medium; high when TXT/NULL/CNAME/MX/ANY make
        /// up 30% of the queries).
        severity: Option<Severity> = None,
        window_s: u64 = 10,
        /// Queries per second to one registered domain, averaged over the window.
        min_rate: f64 = 50.0,
        /// Distinct names / queries.
        min_distinct_ratio: f64 = 0.5,
        /// Share of queries with a long or random-looking label.
        min_long_share: f64 = 0.5,
        long_label: usize = 30,
        long_name: usize = 60,
        /// Domains whose own protocols carry data in names (reputation lookups).
        ignore_domains: Vec<String> = ["sophosxl.net", "e5.sk", "dq.spamhaus.net"]
            .map(String::from).to_vec(),
    }
);

section!(
    /// `[nxdomain]`: lookups that fail, per process.
    Nxdomain, NxdomainPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        window_s: u64 = 60,
        min_failures: u64 = 20,
        min_distinct: u64 = 10,
        /// Failed lookups / (failed lookups + NOERROR responses).
        min_ratio: f64 = 0.5,
    }
);

section!(
    /// `[dga]`: random-looking registered domains among a process's failed lookups.
    Dga, DgaPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        window_s: u64 = 60,
        min_domains: u64 = 10,
    }
);

section!(
    /// `[new_domain_connect]`: a new domain resolved, then connected to at once.
    NewDomainConnect, NewDomainConnectPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        connect_window_ms: u64 = 2000,
        /// How long a workload without a baseline is watched before its new domains count.
        warmup_s: u64 = 600,
        /// Also alert when the answer is an internal address.
        internal_addresses: bool = false,
    }
);

section!(
    /// `[unresolved_connect]`: connects to external addresses no answer produced.
    UnresolvedConnect, UnresolvedConnectPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        ignore_ports: Vec<u16> = Vec::new(),
    }
);

section!(
    /// `[unexpected_domain]`: names outside the workload's baseline and allowlist.
    UnexpectedDomain, UnexpectedDomainPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        /// Judge names in the cluster domain too.
        cluster_names: bool = false,
    }
);

section!(
    /// `[unknown_binary]`: queries from deleted, temporary or unexpected executables.
    UnknownBinary, UnknownBinaryPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        temp_dirs: Vec<String> = ["/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/"]
            .map(String::from).to_vec(),
    }
);

section!(
    /// `[resolver_bypass]`: queries to servers other than the configured nameservers.
    ResolverBypass, ResolverBypassPatch {
        enabled: bool = true,
        severity: Option<Severity> = None,
        dot_ports: Vec<u16> = vec![853],
        /// Servers every process may use.
        allowed_servers: Vec<Cidr> = Vec::new(),
        /// Executables (file names) that ask a server given on their command line by design:
        /// an operator's `dig @server` on the node is no bypass. Host processes only; in a pod
        /// they are judged as any process is.
        tools: Vec<String> = ["dig", "kdig", "nslookup", "host", "drill", "delv", "dnsperf",
            "resperf", "q", "doggo", "dog", "dnslookup"]
            .map(String::from).to_vec(),
    }
);

/// `[limits]`: the size of every table the detectors keep. When one is full, its oldest entry
/// is evicted and counted ([`crate::DetectStats`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub processes: usize,
    pub tunnels: usize,
    pub lookups: usize,
    pub answers: usize,
    pub workloads: usize,
    pub domains_per_workload: usize,
    pub aggregates: usize,
    pub baseline_workloads: usize,
    pub baseline_domains: usize,
    pub baseline_executables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            processes: 16_384,
            tunnels: 4_096,
            lookups: 16_384,
            answers: 65_536,
            workloads: 2_048,
            domains_per_workload: 512,
            aggregates: 8_192,
            baseline_workloads: 4_096,
            baseline_domains: 2_048,
            baseline_executables: 64,
        }
    }
}

/// `[[allow]]`: what some workloads may resolve and run. The entry applies to workloads whose
/// namespace and key match the given globs (none given: every workload).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Glob over the pod's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Glob over the workload key (`shop/Deployment/web`, `exe:/usr/bin/curl`).
    #[serde(default)]
    pub workload: Option<String>,
    /// `example.com` (and names under it) or globs (`*.amazonaws.com`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Globs over executable paths.
    #[serde(default)]
    pub executables: Vec<String>,
}

/// The detector sections a namespace may override.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceOverride {
    pub tunneling: Option<TunnelingPatch>,
    pub nxdomain: Option<NxdomainPatch>,
    pub dga: Option<DgaPatch>,
    pub new_domain_connect: Option<NewDomainConnectPatch>,
    pub unresolved_connect: Option<UnresolvedConnectPatch>,
    pub unexpected_domain: Option<UnexpectedDomainPatch>,
    pub unknown_binary: Option<UnknownBinaryPatch>,
    pub resolver_bypass: Option<ResolverBypassPatch>,
}

/// Every detector's settings as they apply in one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sections {
    pub tunneling: Tunneling,
    pub nxdomain: Nxdomain,
    pub dga: Dga,
    pub new_domain_connect: NewDomainConnect,
    pub unresolved_connect: UnresolvedConnect,
    pub unexpected_domain: UnexpectedDomain,
    pub unknown_binary: UnknownBinary,
    pub resolver_bypass: ResolverBypass,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The cluster's DNS domain (kubelet `clusterDomain`).
    pub cluster_domain: String,
    /// Search domains besides the cluster's (`<ns>.svc.<cd>`, `svc.<cd>`, `<cd>`), e.g. a
    /// cloud's `ec2.internal`; each process's own resolv.conf search list is added when known.
    pub search_domains: Vec<String>,
    /// Address ranges that are not "external"; loopback, link-local, multicast and unspecified
    /// addresses never are.
    pub internal_cidrs: Vec<Cidr>,
    /// Ports of plain DNS: connects to them are left to the resolver-bypass detector.
    pub dns_ports: Vec<u16>,
    /// Leave processes seen answering queries (resolvers, forwarders) out of the tunneling,
    /// nxdomain, dga and unexpected-domain detectors (they relay other processes' lookups) and
    /// of unresolved_connect. Resolver bypass never judges them.
    pub exclude_resolvers: bool,
    /// Repeats of one alert (detector and key) within this window are counted, and reported in
    /// one summary when it ends.
    pub alert_window_s: u64,
    /// After this long without success, a failed name and its search-list expansions count as
    /// one failed lookup.
    pub lookup_timeout_s: u64,
    /// Addresses from answers are remembered for their TTL, clamped to these bounds.
    pub answer_min_ttl_s: u64,
    pub answer_max_ttl_s: u64,
    pub limits: Limits,
    pub tunneling: Tunneling,
    pub nxdomain: Nxdomain,
    pub dga: Dga,
    pub new_domain_connect: NewDomainConnect,
    pub unresolved_connect: UnresolvedConnect,
    pub unexpected_domain: UnexpectedDomain,
    pub unknown_binary: UnknownBinary,
    pub resolver_bypass: ResolverBypass,
    pub allow: Vec<Allow>,
    pub namespaces: BTreeMap<String, NamespaceOverride>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_domain: "cluster.local".to_string(),
            search_domains: Vec::new(),
            internal_cidrs: [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "fc00::/7",
            ]
            .iter()
            .map(|c| c.parse().expect("valid default CIDR"))
            .collect(),
            dns_ports: vec![53],
            exclude_resolvers: true,
            alert_window_s: 300,
            lookup_timeout_s: 5,
            answer_min_ttl_s: 300,
            answer_max_ttl_s: 86_400,
            limits: Limits::default(),
            tunneling: Tunneling::default(),
            nxdomain: Nxdomain::default(),
            dga: Dga::default(),
            new_domain_connect: NewDomainConnect::default(),
            unresolved_connect: UnresolvedConnect::default(),
            unexpected_domain: UnexpectedDomain::default(),
            unknown_binary: UnknownBinary::default(),
            resolver_bypass: ResolverBypass::default(),
            allow: Vec::new(),
            namespaces: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let (line, column) = line_column(text, at);
            let table = enclosing_table(text, line);
            ConfigError::Parse {
                path: origin.to_path_buf(),
                line,
                column,
                message: match table {
                    Some(t) => format!("in [{t}]: {}", e.message()),
                    None => e.message().to_string(),
                },
            }
        })?;
        config
            .check()
            .map_err(|(key, reason)| ConfigError::Invalid {
                path: origin.to_path_buf(),
                key,
                reason,
            })?;
        Ok(config)
    }

    /// The sections as they apply outside any namespace override.
    pub fn sections(&self) -> Sections {
        Sections {
            tunneling: self.tunneling.clone(),
            nxdomain: self.nxdomain.clone(),
            dga: self.dga.clone(),
            new_domain_connect: self.new_domain_connect.clone(),
            unresolved_connect: self.unresolved_connect.clone(),
            unexpected_domain: self.unexpected_domain.clone(),
            unknown_binary: self.unknown_binary.clone(),
            resolver_bypass: self.resolver_bypass.clone(),
        }
    }

    /// The sections in `namespace`, its override applied.
    pub fn sections_for(&self, namespace: &str) -> Sections {
        let mut s = self.sections();
        if let Some(o) = self.namespaces.get(namespace) {
            macro_rules! apply {
                ($($f:ident),*) => { $( if let Some(p) = &o.$f { p.apply(&mut s.$f); } )* };
            }
            apply!(
                tunneling,
                nxdomain,
                dga,
                new_domain_connect,
                unresolved_connect,
                unexpected_domain,
                unknown_binary,
                resolver_bypass
            );
        }
        s
    }

    /// Whether `ip` is internal: loopback, link-local, multicast, unspecified, broadcast, or
    /// in `internal_cidrs`.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let special = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_link_local()
                    || v4.is_multicast()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_multicast()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        special || self.internal_cidrs.iter().any(|c| c.contains(ip))
    }

    /// The first value out of range, as (key, reason).
    fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((key.to_string(), reason.to_string()));
        if domain_pattern(&self.cluster_domain).is_none() {
            return bad(
                "cluster_domain",
                "must name a domain, such as cluster.local",
            );
        }
        for (key, v) in [
            ("alert_window_s", self.alert_window_s),
            ("lookup_timeout_s", self.lookup_timeout_s),
            ("answer_max_ttl_s", self.answer_max_ttl_s),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.answer_min_ttl_s > self.answer_max_ttl_s {
            return bad("answer_min_ttl_s", "must not exceed answer_max_ttl_s");
        }
        let l = &self.limits;
        for (key, v) in [
            ("processes", l.processes),
            ("tunnels", l.tunnels),
            ("lookups", l.lookups),
            ("answers", l.answers),
            ("workloads", l.workloads),
            ("domains_per_workload", l.domains_per_workload),
            ("aggregates", l.aggregates),
            ("baseline_workloads", l.baseline_workloads),
            ("baseline_domains", l.baseline_domains),
            ("baseline_executables", l.baseline_executables),
        ] {
            if v == 0 {
                return bad(&format!("limits.{key}"), "must be at least 1");
            }
        }
        for (i, a) in self.allow.iter().enumerate() {
            if a.domains.iter().any(|d| domain_pattern(d).is_none()) {
                return bad(&format!("allow[{i}].domains"), "empty pattern");
            }
        }
        check_sections(&self.sections(), "")?;
        for ns in self.namespaces.keys() {
            check_sections(&self.sections_for(ns), &format!("namespaces.{ns}."))?;
        }
        Ok(())
    }
}

fn check_sections(s: &Sections, prefix: &str) -> Result<(), (String, String)> {
    let err = |key: &str, reason: &str| Err((format!("{prefix}{key}"), reason.to_string()));
    for (key, v) in [
        ("tunneling.window_s", s.tunneling.window_s),
        ("nxdomain.window_s", s.nxdomain.window_s),
        ("dga.window_s", s.dga.window_s),
        ("dga.min_domains", s.dga.min_domains),
        ("nxdomain.min_failures", s.nxdomain.min_failures),
    ] {
        if v == 0 {
            return err(key, "must be at least 1");
        }
    }
    for (key, v) in [
        (
            "tunneling.min_distinct_ratio",
            s.tunneling.min_distinct_ratio,
        ),
        ("tunneling.min_long_share", s.tunneling.min_long_share),
        ("nxdomain.min_ratio", s.nxdomain.min_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return err(key, "must be between 0 and 1");
        }
    }
    if !(s.tunneling.min_rate > 0.0 && s.tunneling.min_rate.is_finite()) {
        return err("tunneling.min_rate", "must be a positive number");
    }
    if s.tunneling
        .ignore_domains
        .iter()
        .any(|d| domain_pattern(d).is_none())
    {
        return err("tunneling.ignore_domains", "empty pattern");
    }
    Ok(())
}

/// 1-based line and column of byte `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The `[table]` header in force at `line`, for error messages.
fn enclosing_table(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|r| r.split_once("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.split_once(']')))
                .map(|(name, _)| name.trim().to_string())
        })
        .last()
}

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address range such as 10.0.0.0/8"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0-{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The allowlist entries, compiled, and which apply to a workload.
#[derive(Clone, Debug, Default)]
pub struct Allowlists {
    entries: Vec<CompiledAllow>,
}

#[derive(Clone, Debug)]
struct CompiledAllow {
    namespace: Option<Glob>,
    workload: Option<Glob>,
    domains: Vec<DomainPattern>,
    executables: Vec<Glob>,
}

impl Allowlists {
    pub fn new(allow: &[Allow]) -> Self {
        Allowlists {
            entries: allow
                .iter()
                .map(|a| CompiledAllow {
                    namespace: a.namespace.as_deref().map(Glob::new),
                    workload: a.workload.as_deref().map(Glob::new),
                    domains: a.domains.iter().filter_map(|d| domain_pattern(d)).collect(),
                    executables: a.executables.iter().map(|e| Glob::new(e)).collect(),
                })
                .collect(),
        }
    }

    fn applying<'a>(
        &'a self,
        namespace: Option<&'a str>,
        workload: &'a str,
    ) -> impl Iterator<Item = &'a CompiledAllow> + 'a {
        self.entries.iter().filter(move |a| {
            a.namespace
                .as_ref()
                .is_none_or(|g| namespace.is_some_and(|ns| g.is_match(ns)))
                && a.workload.as_ref().is_none_or(|g| g.is_match(workload))
        })
    }

    /// Whether any entry names domains for this workload (then it is judged even without a
    /// baseline).
    pub fn has_domains(&self, namespace: Option<&str>, workload: &str) -> bool {
        self.applying(namespace, workload)
            .any(|a| !a.domains.is_empty())
    }

    pub fn has_executables(&self, namespace: Option<&str>, workload: &str) -> bool {
        self.applying(namespace, workload)
            .any(|a| !a.executables.is_empty())
    }

    /// `name` normalised.
    pub fn allows_domain(&self, namespace: Option<&str>, workload: &str, name: &str) -> bool {
        self.applying(namespace, workload)
            .any(|a| a.domains.iter().any(|p| p.matches(name)))
    }

    pub fn allows_exe(&self, namespace: Option<&str>, workload: &str, exe: &str) -> bool {
        self.applying(namespace, workload)
            .any(|a| a.executables.iter().any(|g| g.is_match(exe)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/dnslens/detect.toml"))
    }

    /// The ```toml blocks of docs/detectors.md.
    fn documented() -> Vec<String> {
        let doc = include_str!("../../../docs/detectors.md");
        doc.split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let blocks = documented();
        assert_eq!(blocks.len(), 2);
        assert_eq!(parse(&blocks[0]).unwrap(), Config::default());
        let example = parse(&blocks[1]).unwrap();
        assert_eq!(example.allow.len(), 2);
        assert_eq!(example.search_domains, ["ec2.internal"]);
        assert!(!example.sections_for("kube-system").tunneling.enabled);
        assert!(!example.sections_for("cert-manager").resolver_bypass.enabled);
        let batch = example.sections_for("batch");
        assert_eq!(batch.nxdomain.min_failures, 100);
        assert_eq!(batch.unresolved_connect.ignore_ports, [123]);
        assert!(example.sections().resolver_bypass.enabled);
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_file_line_and_table() {
        let err = parse("cluster_domain = \"c.local\"\n\n[tunneling]\nwindow_s = 5\nwindw_s = 1\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("detector config /etc/dnslens/detect.toml:5:1: in [tunneling]: "),
            "{msg}"
        );
        assert!(msg.contains("unknown field `windw_s`"), "{msg}");

        let msg = parse("[namespaces.kube-system.dga]\nmin_domain = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(":2:1: in [namespaces.kube-system.dga]"),
            "{msg}"
        );
        assert!(msg.contains("min_domain"), "{msg}");
        let msg = parse("[bogus]\n").unwrap_err().to_string();
        assert!(msg.contains(":1:") && msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn wrong_types_and_ranges_are_named() {
        let msg = parse("[nxdomain]\nmin_failures = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(":2:") && msg.contains("in [nxdomain]"),
            "{msg}"
        );
        let msg = parse("[tunneling]\nmin_distinct_ratio = 1.5\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "detector config /etc/dnslens/detect.toml: tunneling.min_distinct_ratio: must be between 0 and 1"
        );
        let msg = parse("[namespaces.x.dga]\nwindow_s = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with("namespaces.x.dga.window_s: must be at least 1"),
            "{msg}"
        );
        let msg = parse("internal_cidrs = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(":1:") && msg.contains("prefix length"),
            "{msg}"
        );
        let msg = parse("[limits]\nanswers = 0\n").unwrap_err().to_string();
        assert!(msg.ends_with("limits.answers: must be at least 1"), "{msg}");
        let msg = parse("[[allow]]\ndomains = [\"\"]\n")
            .unwrap_err()
            .to_string();
        assert!(msg.ends_with("allow[0].domains: empty pattern"), "{msg}");
        let err = Config::load("/nonexistent/dnslens-detect.toml").unwrap_err();
        // The cause is the source, not in the message too: printed with its chain, it comes
        // out once.
        assert_eq!(
            err.to_string(),
            "cannot read detector config /nonexistent/dnslens-detect.toml"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn namespace_overrides_apply_only_there() {
        let c = parse(
            "[tunneling]\nmin_rate = 80.0\n\
             [namespaces.kube-system.tunneling]\nenabled = false\n\
             [namespaces.batch]\nnxdomain = { min_failures = 100, severity = \"medium\" }\n",
        )
        .unwrap();
        assert_eq!(c.sections().tunneling.min_rate, 80.0);
        let ks = c.sections_for("kube-system");
        assert!(!ks.tunneling.enabled);
        assert_eq!(
            ks.tunneling.min_rate, 80.0,
            "unset keys keep the file's value"
        );
        let batch = c.sections_for("batch");
        assert_eq!(batch.nxdomain.min_failures, 100);
        assert_eq!(batch.nxdomain.severity, Some(Severity::Medium));
        assert!(batch.tunneling.enabled);
        assert_eq!(c.sections_for("other"), c.sections());
    }

    #[test]
    fn cidrs_and_internal_addresses() {
        let c = Config::default();
        for internal in [
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.53",
            "169.254.169.254",
            "224.0.0.251",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(c.is_internal(internal.parse().unwrap()), "{internal}");
        }
        for external in ["93.184.215.14", "172.32.0.1", "2606:4700::1111", "8.8.8.8"] {
            assert!(!c.is_internal(external.parse().unwrap()), "{external}");
        }
        let host: Cidr = "1.2.3.4".parse().unwrap();
        assert!(host.contains("1.2.3.4".parse().unwrap()));
        assert!(!host.contains("1.2.3.5".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::2".parse().unwrap()));
        assert_eq!(host.to_string(), "1.2.3.4/32");
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn allowlists_select_workloads_by_namespace_and_glob() {
        let a = Allowlists::new(&[
            Allow {
                namespace: Some("shop".into()),
                domains: vec!["*.amazonaws.com".into(), "api.stripe.com".into()],
                ..Allow::default()
            },
            Allow {
                workload: Some("*/Deployment/web".into()),
                executables: vec!["/app/*".into()],
                ..Allow::default()
            },
        ]);
        let web = "shop/Deployment/web";
        assert!(a.allows_domain(Some("shop"), web, "s3.amazonaws.com"));
        assert!(a.allows_domain(Some("shop"), web, "v1.api.stripe.com"));
        assert!(!a.allows_domain(Some("shop"), web, "stripe.com"));
        assert!(!a.allows_domain(Some("other"), "other/Deployment/x", "s3.amazonaws.com"));
        assert!(!a.allows_domain(None, "exe:/bin/curl", "s3.amazonaws.com"));
        assert!(a.has_domains(Some("shop"), web));
        assert!(!a.has_domains(Some("dev"), "dev/Deployment/web"));
        assert!(a.has_executables(Some("dev"), "dev/Deployment/web"));
        assert!(a.allows_exe(Some("dev"), "dev/Deployment/web", "/app/server"));
        assert!(!a.allows_exe(Some("dev"), "dev/Deployment/web", "/tmp/x"));
    }
}
