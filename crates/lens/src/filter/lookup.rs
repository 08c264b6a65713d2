//! The filters applied to a lookup (`trace --lookups`), each to the part of it that it names:
//!
//! - whom it belongs to (`--pid`, `--uid`, `--comm`, `--name`, `--namespace`,
//!   `--exclude-namespace`, `--pod`, `--container`, `--workload`, `--host`, `--no-host`): the
//!   process of its first query, as for events;
//! - its names: `--domain` keeps it when the name asked, the name that answered or any query's
//!   name matches (`--domain cluster.local` shows every walk through the search list);
//!   `--exclude-domain` leaves it out when the name asked or the name that answered matches, not
//!   for a search-list candidate it tried on the way; `--qtype` when it asked that type;
//! - how it ended: `--rcode` by its outcome (NOERROR: `answered` or `nodata`; NXDOMAIN,
//!   SERVFAIL, REFUSED: theirs; TIMEOUT or `--unanswered`: `timeout`; any other code: `error`),
//!   `--min-latency` by its latency (a `timeout` always passes); `--role server` keeps none (a
//!   lookup is the client's).

use dnslens_wire::Rcode;

use super::Filter;
use crate::lookup::{Lookup, Outcome};
use crate::model::Role;

impl Filter {
    pub fn matches_lookup(&self, l: &Lookup) -> bool {
        let names = || {
            std::iter::once(l.name.as_str())
                .chain(l.answer_name.as_deref())
                .chain(l.attempts.iter().map(|a| a.qname.as_str()))
        };
        let asked = || std::iter::once(l.name.as_str()).chain(l.answer_name.as_deref());
        self.matches_owner(&l.who)
            && (self.domains.is_empty()
                || names().any(|n| self.domains.iter().any(|d| d.matches(n))))
            && !asked().any(|n| self.exclude_domains.iter().any(|d| d.matches(n)))
            && (self.qtypes.is_empty() || l.qtypes.iter().any(|t| self.qtypes.contains(t)))
            && (self.roles.is_empty() || self.roles.contains(&Role::Client))
            && self.matches_lookup_outcome(l.outcome)
            && self
                .min_latency_us
                .is_none_or(|min| l.outcome == Outcome::Timeout || l.latency_us >= min)
    }

    fn matches_lookup_outcome(&self, outcome: Outcome) -> bool {
        if self.rcodes.is_empty() && !self.unanswered {
            return true;
        }
        let of = |rcode: Rcode| match rcode {
            Rcode::NOERROR => matches!(outcome, Outcome::Answered | Outcome::Nodata),
            Rcode::NXDOMAIN => outcome == Outcome::Nxdomain,
            Rcode::SERVFAIL => outcome == Outcome::Servfail,
            Rcode::REFUSED => outcome == Outcome::Refused,
            _ => outcome == Outcome::Error,
        };
        (self.unanswered && outcome == Outcome::Timeout) || self.rcodes.iter().any(|&r| of(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::DomainPattern;
    use crate::lookup::{LookupConfig, Lookups};
    use crate::model::{sample, DnsEvent, Kind};
    use dnslens_wire::RecordType;

    const MS: u64 = 1_000_000;

    /// The lookup of process 10 that a walk through `names` makes, the last answered with
    /// `rcode` after `last_ms` (no response at all when `None`).
    fn lookup(names: &[&str], rcode: Option<u16>, last_ms: u64) -> Lookup {
        let mut stage = Lookups::new(LookupConfig::default(), Box::new(|_| None));
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut q = sample::query(i as u16, name, 1, i as u64 * MS);
            q.who.process.pid = 10;
            let last = i + 1 == names.len();
            let end: DnsEvent = match (last, rcode) {
                (false, _) => sample::response(&q, 3, &[], q.mono_ns + MS),
                (true, Some(0)) => sample::response(&q, 0, &["192.0.2.1"], last_ms * MS),
                (true, Some(rcode)) => sample::response(&q, rcode, &[], last_ms * MS),
                (true, None) => DnsEvent {
                    kind: Kind::Unanswered,
                    timeout_ms: Some(last_ms),
                    ..q.clone()
                },
            };
            let end = DnsEvent {
                who: q.who.clone(),
                ..end
            };
            stage.event(&q, &mut |l| out.push(l.clone()));
            stage.event(&end, &mut |l| out.push(l.clone()));
        }
        stage.expire(u64::MAX, &mut |l| out.push(l.clone()));
        let [one] = &out[..] else {
            panic!("want one lookup: {out:#?}")
        };
        one.clone()
    }

    fn domains(list: &[&str]) -> Vec<DomainPattern> {
        list.iter()
            .map(|d| DomainPattern::new(d).unwrap())
            .collect()
    }

    #[test]
    fn owner_filters_judge_the_first_query_s_process() {
        let l = lookup(&["api.example.com"], Some(0), 2);
        let pid = |pids: Vec<u32>| Filter {
            pids,
            ..Filter::default()
        };
        assert!(pid(vec![10]).matches_lookup(&l));
        assert!(!pid(vec![11]).matches_lookup(&l));
        let role = |roles| Filter {
            roles,
            ..Filter::default()
        };
        assert!(role(vec![Role::Client]).matches_lookup(&l));
        assert!(
            !role(vec![Role::Server]).matches_lookup(&l),
            "a lookup is the client's"
        );
    }

    #[test]
    fn domain_matches_any_name_tried_and_exclude_only_the_name_asked() {
        let walk = [
            "api.example.com.default.svc.cluster.local",
            "api.example.com",
        ];
        let l = lookup(&walk, Some(0), 5);
        assert_eq!(l.name, "api.example.com");
        let domain = |list| Filter {
            domains: domains(list),
            ..Filter::default()
        };
        let exclude = |list| Filter {
            exclude_domains: domains(list),
            ..Filter::default()
        };
        assert!(
            domain(&["example.com"]).matches_lookup(&l),
            "the answer's name"
        );
        assert!(domain(&["cluster.local"]).matches_lookup(&l), "a candidate");
        assert!(!domain(&["example.org"]).matches_lookup(&l));
        assert!(
            exclude(&["cluster.local"]).matches_lookup(&l),
            "only tried on the way"
        );
        assert!(!exclude(&["example.com"]).matches_lookup(&l));
        let qtype = |t: u16| Filter {
            qtypes: vec![RecordType(t)],
            ..Filter::default()
        };
        assert!(qtype(1).matches_lookup(&l));
        assert!(!qtype(28).matches_lookup(&l));
    }

    #[test]
    fn rcode_and_latency_judge_the_outcome() {
        let answered = lookup(&["a.example"], Some(0), 2);
        let nodata = {
            let mut l = answered.clone();
            l.outcome = Outcome::Nodata;
            l
        };
        let nxdomain = lookup(&["nx.example"], Some(3), 2);
        let timeout = lookup(&["lost.example"], None, 5_000);
        let refused = lookup(&["r.example"], Some(5), 2);
        let notimp = lookup(&["n.example"], Some(4), 2);
        assert_eq!(
            [&nxdomain, &timeout, &refused, &notimp].map(|l| l.outcome),
            [
                Outcome::Nxdomain,
                Outcome::Timeout,
                Outcome::Refused,
                Outcome::Error
            ]
        );
        let rcode = |codes: &[u16], unanswered| Filter {
            rcodes: codes.iter().map(|&c| Rcode(c)).collect(),
            unanswered,
            ..Filter::default()
        };
        let all = [&answered, &nodata, &nxdomain, &timeout, &refused, &notimp];
        let kept = |f: &Filter| all.map(|l| f.matches_lookup(l));
        assert_eq!(
            kept(&rcode(&[0], false)),
            [true, true, false, false, false, false]
        );
        assert_eq!(
            kept(&rcode(&[3], true)),
            [false, false, true, true, false, false]
        );
        assert_eq!(
            kept(&rcode(&[5, 4], false)),
            [false, false, false, false, true, true]
        );
        let slow = Filter {
            min_latency_us: Some(1_500),
            ..Filter::default()
        };
        assert!(slow.matches_lookup(&answered), "2 ms");
        let quick = lookup(&["q.example"], Some(0), 1);
        assert!(!slow.matches_lookup(&quick), "1 ms");
        assert!(slow.matches_lookup(&timeout));
    }
}
