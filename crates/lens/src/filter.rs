//! Filters: which events reach the sinks. Any value of one filter may match; every filter
//! given must match. Filters look at the query side: a response or unanswered event matches by
//! its question and by the process that handled it.

use std::str::FromStr;

use dnslens_wire::{Rcode, RecordType};

use crate::model::DnsEvent;

/// Why a filter value is unusable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// A domain filter with nothing in it.
    #[error("empty domain filter: give a name such as example.com, or \".\" for every name")]
    EmptyDomain,
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
    /// Only responses carry an rcode: with this set, queries and unanswered events never match.
    pub rcodes: Vec<Rcode>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    pub fn matches(&self, e: &DnsEvent) -> bool {
        let p = &e.process;
        (self.pids.is_empty() || self.pids.contains(&p.pid))
            && (self.uids.is_empty() || self.uids.contains(&p.uid))
            && (self.comms.is_empty()
                || self
                    .comms
                    .iter()
                    .any(|g| g.is_match(&p.comm) || g.is_match(&p.name)))
            && (self.names.is_empty() || self.names.iter().any(|g| g.is_match(&p.name)))
            && (self.domains.is_empty() || self.domains.iter().any(|d| d.matches(&e.qname)))
            && !self.exclude_domains.iter().any(|d| d.matches(&e.qname))
            && (self.qtypes.is_empty() || self.qtypes.contains(&e.qtype))
            && (self.rcodes.is_empty() || e.rcode.is_some_and(|r| self.rcodes.contains(&r)))
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
}
