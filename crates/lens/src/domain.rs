//! Registered domains: the domain a name was registered under, by the compiled-in public suffix
//! list. The one definition for everything that groups names by their owner: the detectors and
//! `count --by domain`.

/// `name` is `zone` or a name under it. Both normalised; an empty zone matches nothing.
pub fn is_under(name: &str, zone: &str) -> bool {
    !zone.is_empty()
        && name.ends_with(zone)
        && (name.len() == zone.len() || name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// The domain a (normalised) name was registered under: one label more than its public suffix
/// (`api.eu.example.co.uk` -> `example.co.uk`). Reverse names map to their zone, so one
/// process's PTR lookups share a key. Names that are only a suffix (single labels, `co.uk`)
/// are their own key. Names under suffixes the list does not know (`.internal`, `.corp`) take
/// the last two labels, as the list's default rule says.
pub fn registered_domain(name: &str) -> &str {
    if is_under(name, "in-addr.arpa") {
        return "in-addr.arpa";
    }
    if is_under(name, "ip6.arpa") {
        return "ip6.arpa";
    }
    psl::domain_str(name).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones() {
        assert!(is_under("a.cluster.local", "cluster.local"));
        assert!(is_under("cluster.local", "cluster.local"));
        assert!(!is_under("acluster.local", "cluster.local"));
        assert!(!is_under("local", "cluster.local"));
        assert!(!is_under("x", ""));
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        for (name, want) in [
            ("www.example.com", "example.com"),
            ("example.com", "example.com"),
            ("a.b.example.co.uk", "example.co.uk"),
            ("bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com"),
            ("x.y.cloudfront.net", "y.cloudfront.net"),
            ("4.3.2.1.in-addr.arpa", "in-addr.arpa"),
            ("host.corp.internal", "corp.internal"),
            ("localhost", "localhost"),
            ("co.uk", "co.uk"),
            (".", "."),
            ("", ""),
        ] {
            assert_eq!(registered_domain(name), want, "{name}");
        }
    }
}
