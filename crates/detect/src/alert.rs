//! Detector-side alert helpers: [`Subject`] (who state and alerts are about, and when) and the
//! bounded evidence lists. The alert record itself is the lens's ([`dnslens_lens::alert`]);
//! its JSON line is the schema's ([`dnslens_lens::schema`]).

use std::collections::BTreeMap;

use dnslens_lens::model::Attribution;
use dnslens_lens::{ConnectEvent, DnsEvent};

pub use dnslens_lens::alert::{Alert, Detector, Evidence, Severity, MAX_EXAMPLES};

/// Who a detector's state or alert is about, and when: an event's attribution with its
/// wall-clock time. Reads through to the [`Attribution`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Wall-clock ns since the epoch.
    pub time_ns: u64,
    pub who: Attribution,
}

impl Subject {
    pub fn of_event(e: &DnsEvent) -> Self {
        Subject {
            time_ns: e.time_ns,
            who: e.who.clone(),
        }
    }

    pub fn of_connect(c: &ConnectEvent) -> Self {
        Subject {
            time_ns: c.time_ns,
            who: c.who.clone(),
        }
    }
}

impl std::ops::Deref for Subject {
    type Target = Attribution;

    fn deref(&self) -> &Attribution {
        &self.who
    }
}

/// Adds `n` queries of a type to `map`: at most 8 types by name, the rest as `other`.
pub fn count_qtype(map: &mut BTreeMap<String, u64>, qtype: &str, n: u64) {
    if let Some(c) = map.get_mut(qtype) {
        *c += n;
    } else if map.len() < 8 {
        map.insert(qtype.to_string(), n);
    } else {
        *map.entry("other".to_string()).or_default() += n;
    }
}

/// Adds `name` to `examples` unless it is there or the list is full.
pub fn add_example(examples: &mut Vec<String>, name: &str) {
    if examples.len() < MAX_EXAMPLES && !examples.iter().any(|e| e == name) {
        examples.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_abi::Named;

    #[test]
    fn evidence_lists_stay_bounded() {
        let mut m = BTreeMap::new();
        for t in [
            "A", "AAAA", "TXT", "MX", "NS", "SRV", "PTR", "CNAME", "NULL", "ANY",
        ] {
            count_qtype(&mut m, t, 2);
        }
        count_qtype(&mut m, "A", 1);
        assert_eq!(m.len(), 9);
        assert_eq!(m["A"], 3);
        assert_eq!(m["other"], 4);
        let mut ex = Vec::new();
        for i in 0..20 {
            add_example(&mut ex, &format!("n{}", i % 12));
            add_example(&mut ex, "n0");
        }
        assert_eq!(ex.len(), MAX_EXAMPLES);
        assert_eq!(ex[..3], ["n0", "n1", "n2"]);
        let indexes: Vec<usize> = Detector::ALL.iter().map(|d| d.index()).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Detector::NewDomainConnect.to_string(), "new_domain_connect");
    }
}
