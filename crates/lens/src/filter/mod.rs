//! Filters: which events reach the sinks. Any value of one filter may match; every filter
//! given must match. Filters look at the query side: a response or unanswered event matches by
//! its question and by the process that handled it. Filters on pod metadata (namespace, pod
//! name, workload) match only events whose pod the directory knows; `--exclude-namespace` keeps
//! the events whose namespace is not known. Lookups are filtered by the rule of [`lookup`].

mod lookup;

use std::str::FromStr;

use dnslens_wire::{Rcode, RecordType};

use crate::model::{Attribution, Container, DnsEvent, Kind, Pod, Role};
use crate::pods::Workload;

/// Why a filter value is unusable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// A domain filter with nothing in it.
    #[error("empty domain filter: give a name such as example.com, or \".\" for every name")]
    EmptyDomain,
    /// A name filter with nothing in it.
    #[error("empty filter: give a name, or a glob such as web-*")]
    EmptyName,
    /// A domain filter with characters no name or glob here has.
    #[error("{0:?} is not a domain or a glob: globs have * and ? only (no [...] classes), and names no spaces")]
    BadDomain(String),
    /// A workload filter that is neither NAME nor KIND/NAME.
    #[error("not a workload: give its name (web, web-*) or its kind and name (deployment/web)")]
    BadWorkload,
}

/// A shell-style pattern: `*` matches any run of bytes, `?` one byte, everything else itself.
/// Without wildcards it is an exact match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    ignore_case: bool,
}

impl Glob {
    /// Case-sensitive, as process names are.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
            ignore_case: false,
        }
    }

    /// ASCII case-insensitive, as domain names are.
    pub fn new_ignore_case(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_ascii_lowercase(),
            ignore_case: true,
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        glob_match(self.pattern.as_bytes(), text.as_bytes(), self.ignore_case)
    }
}

/// Iterative matcher: on a mismatch, go back to the last `*` and let it swallow one more byte.
/// Linear in practice, O(n·m) at worst.
fn glob_match(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let same = |p: u8, t: u8| p == t || (ignore_case && p == t.to_ascii_lowercase());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == b'?' || same(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A domain filter: `example.com` matches that name and every name under it; a pattern with
/// `*` or `?` is a glob over the whole name. Case-insensitive; a trailing dot is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainPattern {
    Suffix(String),
    Glob(Glob),
}

impl DomainPattern {
    pub fn new(pattern: &str) -> Result<DomainPattern, FilterError> {
        let trimmed = pattern.trim();
        if trimmed == "." {
            return Ok(DomainPattern::Suffix(String::new()));
        }
        let name = trimmed.trim_end_matches('.');
        if name.is_empty() {
            return Err(FilterError::EmptyDomain);
        }
        if name.contains(|c: char| matches!(c, '[' | ']' | '{' | '}') || c.is_whitespace()) {
            return Err(FilterError::BadDomain(trimmed.to_string()));
        }
        Ok(if name.contains(['*', '?']) {
            DomainPattern::Glob(Glob::new_ignore_case(name))
        } else {
            DomainPattern::Suffix(name.to_ascii_lowercase())
        })
    }

    pub fn matches(&self, qname: &str) -> bool {
        let qname = qname.strip_suffix('.').unwrap_or(qname);
        match self {
            DomainPattern::Suffix(domain) if domain.is_empty() => true,
            DomainPattern::Suffix(domain) => {
                let (n, d) = (qname.as_bytes(), domain.as_bytes());
                n.len() >= d.len()
                    && n[n.len() - d.len()..].eq_ignore_ascii_case(d)
                    && (n.len() == d.len() || n[n.len() - d.len() - 1] == b'.')
            }
            DomainPattern::Glob(glob) => glob.is_match(qname),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = FilterError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        DomainPattern::new(pattern)
    }
}

/// A container filter: the container's name (exact or glob), or the start of its id (4 hex
/// digits or more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPattern {
    name: Glob,
    id_prefix: Option<String>,
}

/// Fewer hex digits than this are taken as a name only: a short name made of hex letters
/// (`cafe`) would otherwise match many ids.
const MIN_ID_PREFIX: usize = 4;

impl ContainerPattern {
    pub fn new(pattern: &str) -> Result<ContainerPattern, FilterError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(FilterError::EmptyName);
        }
        let id = pattern.to_ascii_lowercase();
        let is_id = id.len() >= MIN_ID_PREFIX && id.bytes().all(|b| b.is_ascii_hexdigit());
        Ok(ContainerPattern {
            name: Glob::new(pattern),
            id_prefix: is_id.then_some(id),
        })
    }

    pub fn matches(&self, c: &Container) -> bool {
        self.id_prefix
            .as_ref()
            .is_some_and(|p| c.id.starts_with(p.as_str()))
            || c.name.as_deref().is_some_and(|n| self.name.is_match(n))
    }
}

impl FromStr for ContainerPattern {
    type Err = FilterError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        ContainerPattern::new(pattern)
    }
}

/// A workload filter: `NAME` or `KIND/NAME`, each exact or a glob. The kind is compared without
/// case and may be kubectl's short name (`deploy`, `sts`, `ds`, `cj`, `rs`) or plural.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadPattern {
    kind: Option<Glob>,
    name: Glob,
}

impl WorkloadPattern {
    pub fn new(pattern: &str) -> Result<WorkloadPattern, FilterError> {
        let pattern = pattern.trim();
        let (kind, name) = match pattern.split_once('/') {
            Some((kind, name)) => (Some(kind.trim()), name.trim()),
            None => (None, pattern),
        };
        if name.is_empty() || name.contains('/') || kind.is_some_and(str::is_empty) {
            return Err(if pattern.is_empty() {
                FilterError::EmptyName
            } else {
                FilterError::BadWorkload
            });
        }
        Ok(WorkloadPattern {
            kind: kind.map(|k| Glob::new_ignore_case(kind_alias(k))),
            name: Glob::new(name),
        })
    }

    pub fn matches(&self, w: &Workload) -> bool {
        self.kind.as_ref().is_none_or(|k| k.is_match(&w.kind)) && self.name.is_match(&w.name)
    }
}

impl FromStr for WorkloadPattern {
    type Err = FilterError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        WorkloadPattern::new(pattern)
    }
}

/// The kind kubectl means by a short or plural name; other text as given.
fn kind_alias(kind: &str) -> &str {
    match kind.to_ascii_lowercase().as_str() {
        "deploy" | "deployment" | "deployments" => "Deployment",
        "sts" | "statefulset" | "statefulsets" => "StatefulSet",
        "ds" | "daemonset" | "daemonsets" => "DaemonSet",
        "job" | "jobs" => "Job",
        "cj" | "cronjob" | "cronjobs" => "CronJob",
        "rs" | "replicaset" | "replicasets" => "ReplicaSet",
        _ => kind,
    }
}

/// The filters of one run. Empty lists do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Process ids (tgid).
    pub pids: Vec<u32>,
    pub uids: Vec<u32>,
    /// Matched against the thread name and the process name.
    pub comms: Vec<Glob>,
    /// Matched against the process name only.
    pub names: Vec<Glob>,
    pub domains: Vec<DomainPattern>,
    pub exclude_domains: Vec<DomainPattern>,
    pub qtypes: Vec<RecordType>,
    /// Only responses carry an rcode: with this set, queries never match, and unanswered
    /// events only with `unanswered`.
    pub rcodes: Vec<Rcode>,
    /// Queries left unanswered (the table's TIMEOUT): alone, only they match; with `rcodes`,
    /// they match besides those responses.
    pub unanswered: bool,
    /// Which end of the exchange: empty for both.
    pub roles: Vec<Role>,
    /// Only exchanges that took at least this long: responses with a latency at or above it,
    /// and unanswered queries (they took longer than any).
    pub min_latency_us: Option<u64>,
    /// Pod namespaces: events whose pod's namespace is not known never match.
    pub namespaces: Vec<Glob>,
    /// Pod namespaces to leave out: events whose namespace is not known are kept.
    pub exclude_namespaces: Vec<Glob>,
    /// Matched against the pod's name and its uid.
    pub pods: Vec<Glob>,
    pub containers: Vec<ContainerPattern>,
    pub workloads: Vec<WorkloadPattern>,
    /// `Some(true)`: only processes outside containers and pods; `Some(false)`: leave them out
    /// (events whose cgroup was not resolved are kept).
    pub host: Option<bool>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a filter needs the pod metadata only the pod directory has (namespace,
    /// workload): without a cluster it matches nothing (or, to exclude, excludes nothing).
    pub fn needs_pod_metadata(&self) -> bool {
        !(self.namespaces.is_empty()
            && self.exclude_namespaces.is_empty()
            && self.workloads.is_empty())
    }

    pub fn matches(&self, e: &DnsEvent) -> bool {
        self.matches_message(e) && self.matches_owner(&e.who)
    }

    /// The filters on whom an event or lookup belongs to: its process and where it runs.
    fn matches_owner(&self, who: &Attribution) -> bool {
        let p = &who.process;
        (self.pids.is_empty() || self.pids.contains(&p.pid))
            && (self.uids.is_empty() || self.uids.contains(&p.uid))
            && (self.comms.is_empty()
                || self
                    .comms
                    .iter()
                    .any(|g| g.is_match(&p.comm) || g.is_match(&p.name)))
            && (self.names.is_empty() || self.names.iter().any(|g| g.is_match(&p.name)))
            && self.matches_placement(who)
    }

    fn matches_message(&self, e: &DnsEvent) -> bool {
        (self.domains.is_empty() || self.domains.iter().any(|d| d.matches(&e.qname)))
            && !self.exclude_domains.iter().any(|d| d.matches(&e.qname))
            && (self.qtypes.is_empty() || self.qtypes.contains(&e.qtype))
            && self.matches_outcome(e)
            && (self.roles.is_empty() || self.roles.contains(&e.role))
            && self.min_latency_us.is_none_or(|min| match e.kind {
                Kind::Unanswered => true,
                _ => e.latency_us.is_some_and(|us| us >= min),
            })
    }

    /// The rcode and unanswered filters, which any of may match.
    fn matches_outcome(&self, e: &DnsEvent) -> bool {
        if self.rcodes.is_empty() && !self.unanswered {
            return true;
        }
        match e.kind {
            Kind::Unanswered => self.unanswered,
            _ => e.rcode.is_some_and(|r| self.rcodes.contains(&r)),
        }
    }

    /// Host, container, pod, namespace and workload filters.
    fn matches_placement(&self, who: &Attribution) -> bool {
        let pod = who.pod.as_ref();
        let namespace = pod.and_then(Pod::namespace);
        let any = |globs: &[Glob], text: Option<&str>| {
            text.is_some_and(|t| globs.iter().any(|g| g.is_match(t)))
        };
        (self.namespaces.is_empty() || any(&self.namespaces, namespace))
            && !any(&self.exclude_namespaces, namespace)
            && (self.pods.is_empty()
                || any(&self.pods, pod.and_then(Pod::name))
                || any(&self.pods, pod.map(|p| &*p.uid)))
            && (self.containers.is_empty()
                || who
                    .container
                    .as_ref()
                    .is_some_and(|c: &Container| self.containers.iter().any(|m| m.matches(c))))
            && (self.workloads.is_empty()
                || pod
                    .and_then(Pod::workload)
                    .is_some_and(|w| self.workloads.iter().any(|m| m.matches(w))))
            && match self.host {
                None => true,
                Some(true) => who.host == Some(true),
                Some(false) => who.host != Some(true),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample;

    #[test]
    fn globs() {
        let cases = [
            ("dig", "dig", true),
            ("dig", "digg", false),
            ("di*", "dig", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("*net*", "isc-net-0000", true),
            ("isc-net-????", "isc-net-0000", true),
            ("isc-net-????", "isc-net-000", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*.svc", "x.svc.cluster", false),
            ("**a", "bba", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).is_match(text),
                want,
                "{pattern} ~ {text}"
            );
        }
        assert!(!Glob::new("DIG").is_match("dig"));
        assert!(Glob::new_ignore_case("*.EXAMPLE.com").is_match("a.example.COM"));
    }

    #[test]
    fn domain_suffix_and_glob() {
        let d = DomainPattern::new("Example.com.").unwrap();
        assert!(d.matches("example.com"));
        assert!(d.matches("a.b.EXAMPLE.com"));
        assert!(d.matches("example.com."));
        assert!(!d.matches("notexample.com"));
        assert!(!d.matches("com"));
        let g = DomainPattern::new("*.example.com").unwrap();
        assert!(g.matches("a.example.com"));
        assert!(!g.matches("example.com"));
        let all = DomainPattern::new(".").unwrap();
        assert!(all.matches("anything") && all.matches("."));
        assert_eq!(DomainPattern::new(" "), Err(FilterError::EmptyDomain));
        assert_eq!(DomainPattern::new(".."), Err(FilterError::EmptyDomain));
        for bad in ["[", "a[bc].example", "a b.example"] {
            assert!(
                matches!(DomainPattern::new(bad), Err(FilterError::BadDomain(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_given_filter_must_match() {
        let q = sample::query(1, "api.example.com", 1, 0);
        let r = sample::response(&q, 3, &[], 10);
        assert!(Filter::default().is_empty());
        assert!(Filter::default().matches(&q));

        let f = |build: fn(&mut Filter)| {
            let mut f = Filter::default();
            build(&mut f);
            (f.matches(&q), f.matches(&r))
        };
        assert_eq!(f(|f| f.pids = vec![123]), (true, true));
        assert_eq!(f(|f| f.pids = vec![1, 2]), (false, false));
        assert_eq!(f(|f| f.uids = vec![0]), (true, true));
        assert_eq!(f(|f| f.comms = vec![Glob::new("dig")]), (true, true));
        assert_eq!(f(|f| f.comms = vec![Glob::new("isc-*")]), (true, true));
        assert_eq!(f(|f| f.names = vec![Glob::new("isc-*")]), (false, false));
        assert_eq!(f(|f| f.names = vec![Glob::new("d?g")]), (true, true));
        assert_eq!(
            f(|f| f.domains = vec![DomainPattern::new("example.com").unwrap()]),
            (true, true)
        );
        assert_eq!(
            f(|f| f.exclude_domains = vec![DomainPattern::new("example.com").unwrap()]),
            (false, false)
        );
        assert_eq!(
            f(|f| f.qtypes = vec![RecordType::AAAA, RecordType::A]),
            (true, true)
        );
        assert_eq!(f(|f| f.qtypes = vec![RecordType::MX]), (false, false));
        assert_eq!(f(|f| f.rcodes = vec![Rcode::NXDOMAIN]), (false, true));
        assert_eq!(f(|f| f.rcodes = vec![Rcode::SERVFAIL]), (false, false));
        assert_eq!(
            f(|f| {
                f.pids = vec![123];
                f.qtypes = vec![RecordType::MX];
            }),
            (false, false)
        );
    }

    #[test]
    fn role_latency_and_unanswered_filters() {
        let q = sample::query(1, "api.example.com", 1, 0);
        let mut fast = sample::response(&q, 0, &[], 2_000_000);
        fast.latency_us = Some(2_000);
        let mut slow = fast.clone();
        slow.latency_us = Some(250_000);
        let mut timeout = q.clone();
        timeout.kind = Kind::Unanswered;
        let mut served = fast.clone();
        served.role = Role::Server;
        let matching = |build: fn(&mut Filter)| {
            let mut f = Filter::default();
            build(&mut f);
            [&q, &fast, &slow, &timeout, &served].map(|e| f.matches(e))
        };
        assert_eq!(
            matching(|f| f.roles = vec![Role::Server]),
            [false, false, false, false, true]
        );
        assert_eq!(
            matching(|f| f.min_latency_us = Some(100_000)),
            [false, false, true, true, false]
        );
        assert_eq!(
            matching(|f| f.unanswered = true),
            [false, false, false, true, false]
        );
        assert_eq!(
            matching(|f| {
                f.unanswered = true;
                f.rcodes = vec![Rcode::NOERROR];
            }),
            [false, true, true, true, true]
        );
        assert_eq!(
            matching(|f| f.rcodes = vec![Rcode::NOERROR]),
            [false, true, true, false, true]
        );
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    /// Events from a host process, from a container of a known pod, from a container of a pod
    /// the directory does not know, from a container outside pods, and with an unresolved
    /// cgroup.
    fn placed_events() -> [DnsEvent; 5] {
        use crate::container::Runtime;
        use crate::pods::PodInfo;
        use std::sync::Arc;
        let q = sample::query(1, "example.com", 1, 0);
        let mut host = q.clone();
        host.who.host = Some(true);
        let container = |name: Option<&str>| Container {
            id: Arc::from(ID),
            runtime: Runtime::Containerd,
            name: name.map(str::to_string),
        };
        let info = PodInfo {
            uid: UID.to_string(),
            name: "coredns-5d78c9869d-4xk2p".to_string(),
            namespace: "kube-system".to_string(),
            node: None,
            pod_ip: None,
            service_account: None,
            labels: Default::default(),
            workload: Some(Workload {
                kind: "Deployment".to_string(),
                name: "coredns".to_string(),
            }),
            containers: Default::default(),
        };
        let mut known = q.clone();
        known.who.host = Some(false);
        known.who.container = Some(container(Some("coredns")));
        known.who.pod = Some(Pod {
            uid: Arc::from(UID),
            info: Some(Arc::new(info)),
        });
        let mut unknown = known.clone();
        unknown.who.container = Some(container(None));
        unknown.who.pod.as_mut().unwrap().info = None;
        let mut docker = unknown.clone();
        docker.who.pod = None;
        let unresolved = q;
        [host, known, unknown, docker, unresolved]
    }

    #[test]
    fn pod_container_workload_and_host_filters() {
        let events = placed_events();
        let f = |build: &dyn Fn(&mut Filter)| {
            let mut f = Filter::default();
            build(&mut f);
            events.iter().map(|e| f.matches(e)).collect::<Vec<bool>>()
        };
        // [host, known pod, unknown pod, container outside pods, unresolved]
        let globs = |v: &[&str]| v.iter().map(|g| Glob::new(g)).collect::<Vec<_>>();
        assert_eq!(
            f(&|f| f.namespaces = globs(&["kube-*"])),
            [false, true, false, false, false]
        );
        assert_eq!(
            f(&|f| f.exclude_namespaces = globs(&["kube-system"])),
            [true, false, true, true, true]
        );
        assert_eq!(
            f(&|f| f.pods = globs(&["coredns-*"])),
            [false, true, false, false, false]
        );
        assert_eq!(
            f(&|f| f.pods = globs(&[UID])),
            [false, true, true, false, false]
        );
        let containers = |v: &[&str]| v.iter().map(|c| c.parse().unwrap()).collect::<Vec<_>>();
        assert_eq!(
            f(&|f| f.containers = containers(&["coredns"])),
            [false, true, false, false, false]
        );
        assert_eq!(
            f(&|f| f.containers = containers(&["0123"])),
            [false, true, true, true, false]
        );
        assert_eq!(
            f(&|f| f.containers = containers(&["012"])),
            [false, false, false, false, false],
            "3 hex digits are a name"
        );
        let workloads = |v: &[&str]| v.iter().map(|c| c.parse().unwrap()).collect::<Vec<_>>();
        for w in ["coredns", "deploy/coredns", "Deployment/core*", "*/coredns"] {
            assert_eq!(
                f(&|f| f.workloads = workloads(&[w])),
                [false, true, false, false, false],
                "{w}"
            );
        }
        assert_eq!(
            f(&|f| f.workloads = workloads(&["sts/coredns"])),
            [false; 5]
        );
        assert_eq!(
            f(&|f| f.host = Some(true)),
            [true, false, false, false, false]
        );
        assert_eq!(
            f(&|f| f.host = Some(false)),
            [false, true, true, true, true]
        );
        assert_eq!(
            f(&|f| {
                f.host = Some(false);
                f.exclude_namespaces = globs(&["kube-system"]);
            }),
            [false, false, true, true, true]
        );
        assert!(!Filter::default().needs_pod_metadata());
        let needs = Filter {
            exclude_namespaces: globs(&["kube-system"]),
            ..Filter::default()
        };
        assert!(needs.needs_pod_metadata());
    }

    #[test]
    fn pattern_errors() {
        assert_eq!(ContainerPattern::new(" "), Err(FilterError::EmptyName));
        assert_eq!(WorkloadPattern::new(""), Err(FilterError::EmptyName));
        for bad in ["deploy/", "/web", "a/b/c"] {
            assert_eq!(
                WorkloadPattern::new(bad),
                Err(FilterError::BadWorkload),
                "{bad}"
            );
        }
        let w = WorkloadPattern::new("StatefulSets/db-*").unwrap();
        assert!(w.matches(&Workload {
            kind: "StatefulSet".to_string(),
            name: "db-0".to_string()
        }));
    }
}
