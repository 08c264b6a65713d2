//! The per-network-namespace cache of addresses that DNS answers produced, which the
//! connect-side detectors (new domain then connect, connect to an address no answer produced,
//! DNS over TLS) look outgoing connections up in. The connections themselves are the lens's
//! [`dnslens_lens::ConnectEvent`]s.

use std::net::IpAddr;
use std::sync::Arc;

pub use dnslens_abi::Transport;

use dnslens_lens::bounded::Lru;

/// What one answer said about an address.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub qname: Arc<str>,
    pub domain: Arc<str>,
    pub resolved_mono: u64,
    pub expires_mono: u64,
    /// The process that received the answer: (pid, start).
    pub process: (u32, u64),
    /// The domain was new to the workload, whose new-domain detection was armed.
    pub new_domain: bool,
}

/// Addresses from answers, per network namespace, until their (clamped) TTL runs out. The
/// latest answer for an address wins.
#[derive(Debug)]
pub struct AnswerCache {
    map: Lru<(u32, IpAddr), Resolved>,
}

impl AnswerCache {
    pub fn new(capacity: usize) -> Self {
        AnswerCache {
            map: Lru::new(capacity),
        }
    }

    pub fn insert(&mut self, netns: u32, addr: IpAddr, r: Resolved) {
        self.map.insert((netns, canonical(addr)), r);
    }

    /// The live answer for `addr` in `netns`; an expired one is removed.
    pub fn lookup(&mut self, netns: u32, addr: IpAddr, now: u64) -> Option<&Resolved> {
        let key = (netns, canonical(addr));
        if self.map.peek(&key)?.expires_mono <= now {
            self.map.remove(&key);
            return None;
        }
        self.map.peek(&key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.map.evictions()
    }
}

pub use dnslens_lens::resolv::canonical;

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(expires: u64) -> Resolved {
        Resolved {
            qname: Arc::from("a.example.com"),
            domain: Arc::from("example.com"),
            resolved_mono: 0,
            expires_mono: expires,
            process: (1, 0),
            new_domain: false,
        }
    }

    #[test]
    fn answers_expire_and_are_per_netns() {
        let mut c = AnswerCache::new(2);
        let a: IpAddr = "93.184.215.14".parse().unwrap();
        c.insert(1, a, resolved(100));
        assert!(c.lookup(1, a, 99).is_some());
        assert!(c.lookup(2, a, 99).is_none(), "another netns");
        let mapped: IpAddr = "::ffff:93.184.215.14".parse().unwrap();
        assert!(
            c.lookup(1, mapped, 99).is_some(),
            "v4-mapped is the same address"
        );
        assert!(c.lookup(1, a, 100).is_none());
        assert!(c.is_empty(), "expired entries are dropped");
        for i in 0..3u8 {
            c.insert(1, IpAddr::from([1, 1, 1, i]), resolved(100));
        }
        assert_eq!((c.len(), c.evictions()), (2, 1));
    }
}
