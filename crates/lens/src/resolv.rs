//! resolv.conf(5) as glibc reads it: the nameservers a process is configured to ask (the
//! detectors') and its search list (the lookup stage's). Reading the file of a live process is
//! the caller's (dnslens-detect's `ProcFs`, on a worker thread).

use std::net::IpAddr;

/// The parts of resolv.conf(5) dnslens uses: the detectors' nameservers, the lookup stage's
/// search list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// Up to three, as glibc uses; 127.0.0.1 and ::1 when the file names none.
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: u8,
}

impl ResolvConf {
    /// Parses as glibc does: `nameserver` lines (first three), the last of `search`/`domain`,
    /// `options ndots:N` (default 1, at most 15); comments start with `#` or `;`.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf {
            ndots: 1,
            ..ResolvConf::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") if rc.nameservers.len() < 3 => {
                    // A scoped IPv6 server (`fe80::1%eth0`) keeps its address.
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.split('%').next())
                        .and_then(|w| w.parse::<IpAddr>().ok())
                    {
                        rc.nameservers.push(canonical(ip));
                    }
                }
                Some("search") | Some("domain") => {
                    rc.search = words
                        .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
                        .collect();
                }
                Some("options") => {
                    for opt in words {
                        if let Some(n) = opt.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            rc.ndots = u8::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        if rc.nameservers.is_empty() {
            rc.nameservers = vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().unwrap()];
        }
        rc
    }

    pub fn names(&self, ip: IpAddr) -> bool {
        self.nameservers.contains(&canonical(ip))
    }
}

/// `name` with the search domain `domain` taken off its end (`a.b` of `a.b.svc.cluster.local`
/// and `svc.cluster.local`); never empty.
pub fn without_search_domain<'a>(name: &'a str, domain: &str) -> Option<&'a str> {
    name.strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|base| !base.is_empty())
}

/// IPv4-mapped IPv6 addresses as IPv4, as sockets of dual-stack programs report them.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_glibc() {
        let rc = ResolvConf::parse(
            "# kubelet\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10 ; cluster DNS\nnameserver fe80::1%eth0\n\
             nameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:5 timeout:2\n",
        );
        assert_eq!(
            rc.nameservers,
            ["10.96.0.10", "fe80::1", "1.1.1.1"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            rc.search,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(rc.ndots, 5);
        assert!(rc.names("::ffff:10.96.0.10".parse().unwrap()));
        let rc = ResolvConf::parse("search a.example\ndomain b.example.\noptions ndots:99\n");
        assert_eq!(
            rc.search,
            ["b.example"],
            "the last of search and domain wins"
        );
        assert_eq!(rc.ndots, 15);
        assert!(
            rc.names("127.0.0.1".parse().unwrap()),
            "no nameserver: localhost"
        );
    }
}
