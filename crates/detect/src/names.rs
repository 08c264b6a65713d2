//! Domain names as the detectors see them: normalised (lowercase, no trailing dot), split at the
//! registered domain with the compiled-in public suffix list (the split itself is
//! `dnslens_lens::domain`'s, which `count` shares), classified as cluster-internal or reverse,
//! recognised as search-list expansions, and matched against allowlist patterns.

use std::borrow::Cow;

pub use dnslens_lens::domain::{is_under, registered_domain};
use dnslens_lens::filter::DomainPattern;
use dnslens_lens::resolv::without_search_domain;

/// `name` in lowercase without a trailing dot; borrows when it already is.
pub fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// A reverse-mapping name (PTR lookups of addresses).
pub fn is_reverse(name: &str) -> bool {
    is_under(name, "in-addr.arpa") || is_under(name, "ip6.arpa")
}

/// Whether the name's public suffix is on the list (a name a DGA could have registered).
pub fn has_known_suffix(name: &str) -> bool {
    psl::domain(name.as_bytes()).is_some_and(|d| d.suffix().is_known())
}

/// The leftmost label of the registered domain: the part its owner chose (`example` in
/// `www.example.co.uk`).
pub fn registered_label(name: &str) -> Option<&str> {
    let domain = psl::domain(name.as_bytes())?;
    let suffix_len = domain.suffix().as_bytes().len();
    let d = domain.as_bytes();
    let label = &d[..d.len().checked_sub(suffix_len + 1)?];
    std::str::from_utf8(label).ok()
}

/// The labels of `name` left of its registered domain (`a.b` in `a.b.example.com`).
pub fn subdomain<'a>(name: &'a str, registered: &str) -> &'a str {
    name.strip_suffix(registered)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or("")
}

/// The search suffixes a resolver may have appended to a name: the cluster's
/// (`<namespace>.svc.<cd>`, `svc.<cd>`, `<cd>`) and configured or per-process extras.
#[derive(Clone, Debug)]
pub struct SearchSuffixes {
    cluster_domain: String,
    svc: String,
    extra: Vec<String>,
}

impl SearchSuffixes {
    pub fn new(cluster_domain: &str, extra: &[String]) -> Self {
        let cd = normalize(cluster_domain).into_owned();
        SearchSuffixes {
            svc: format!("svc.{cd}"),
            cluster_domain: cd,
            extra: extra.iter().map(|s| normalize(s).into_owned()).collect(),
        }
    }

    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// A name in the cluster's zone.
    pub fn is_cluster(&self, name: &str) -> bool {
        is_under(name, &self.cluster_domain)
    }

    /// Every way to read `name` as `base.suffix` with a search suffix, calling `f(base)`:
    /// `a.b.ns.svc.cluster.local` gives `a.b` (namespace `ns`), `a.b.ns` (`svc.cluster.local`)
    /// and `a.b.ns.svc` (`cluster.local`). Bases are never empty. `more` are the process's own
    /// search domains, when known.
    pub fn bases<'a>(&self, name: &'a str, more: &[String], mut f: impl FnMut(&'a str)) {
        let strip = |suffix: &str| without_search_domain(name, suffix);
        if is_under(name, &self.cluster_domain) {
            if let Some(base) = strip(&self.cluster_domain) {
                f(base);
            }
            if let Some(before_svc) = name
                .strip_suffix(self.svc.as_str())
                .and_then(|r| r.strip_suffix('.'))
            {
                if !before_svc.is_empty() {
                    f(before_svc);
                }
                // `<base>.<namespace>.svc.<cd>`: the namespace is one label.
                if let Some((base, _ns)) = before_svc.rsplit_once('.') {
                    if !base.is_empty() {
                        f(base);
                    }
                }
            }
        }
        for suffix in self.extra.iter().chain(more) {
            if suffix.is_empty() || suffix == &self.cluster_domain {
                continue;
            }
            if let Some(base) = strip(suffix) {
                f(base);
            }
        }
    }
}

/// An allowlist pattern, as `dnslens trace --domain` reads it (`example.com`: that name and
/// every name under it; with `*` or `?`: a glob over the whole name, `*` crossing dots).
/// `None` for a pattern matching every name (empty, `.`): no allowlist means that.
pub fn domain_pattern(pattern: &str) -> Option<DomainPattern> {
    let pattern = pattern.trim();
    if normalize(pattern).is_empty() {
        return None;
    }
    DomainPattern::new(pattern).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(normalize("Example.COM."), "example.com");
        assert!(matches!(normalize("a.b"), Cow::Borrowed("a.b")));
        assert_eq!(normalize("."), "");
    }

    #[test]
    fn reverse_names() {
        assert!(is_reverse("4.3.2.1.in-addr.arpa"));
        assert!(is_reverse("b.a.9.8.ip6.arpa"));
        assert!(!is_reverse("arpa.example.com"));
    }

    #[test]
    fn public_suffixes() {
        assert!(has_known_suffix("www.example.com"));
        assert!(!has_known_suffix("host.corp.notatld"));
        assert!(!has_known_suffix("localhost"));
        assert_eq!(registered_label("www.example.co.uk"), Some("example"));
        assert_eq!(registered_label("co.uk"), None);
        assert_eq!(subdomain("a.b.example.com", "example.com"), "a.b");
        assert_eq!(subdomain("example.com", "example.com"), "");
    }

    fn bases(s: &SearchSuffixes, name: &str, more: &[String]) -> Vec<String> {
        let mut v = Vec::new();
        s.bases(name, more, |b| v.push(b.to_string()));
        v.sort();
        v
    }

    #[test]
    fn search_list_bases() {
        let s = SearchSuffixes::new("cluster.local", &["ec2.internal".to_string()]);
        assert_eq!(
            bases(&s, "api.example.com.shop.svc.cluster.local", &[]),
            [
                "api.example.com",
                "api.example.com.shop",
                "api.example.com.shop.svc"
            ]
        );
        assert_eq!(
            bases(&s, "orders.svc.cluster.local", &[]),
            ["orders", "orders.svc"]
        );
        assert_eq!(bases(&s, "x.ec2.internal", &[]), ["x"]);
        assert_eq!(
            bases(&s, "x.corp.example", &["corp.example".to_string()]),
            ["x"]
        );
        assert!(bases(&s, "svc.cluster.local", &[]).contains(&"svc".to_string()));
        assert!(bases(&s, "cluster.local", &[]).is_empty());
        assert!(bases(&s, "example.com", &[]).is_empty());
        assert!(s.is_cluster("a.b.svc.cluster.local"));
        assert!(!s.is_cluster("cluster.local.example.com"));
    }

    #[test]
    fn domain_patterns() {
        let p = |s: &str| domain_pattern(s).unwrap();
        assert!(p("example.com").matches("example.com"));
        assert!(p("Example.com.").matches("api.example.com"));
        assert!(!p("example.com").matches("badexample.com"));
        assert!(p("*.amazonaws.com").matches("s3.eu-west-1.amazonaws.com"));
        assert!(!p("*.amazonaws.com").matches("amazonaws.com"));
        assert!(p("api-?.example.com").matches("api-1.example.com"));
        assert!(!p("api-?.example.com").matches("api-12.example.com"));
        assert!(domain_pattern(" . ").is_none());
    }
}
