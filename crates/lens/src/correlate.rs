//! Pairing: matches each response with its query to measure latency, reports queries left
//! without a response past the timeout, and folds retransmitted queries into the first: a resend
//! is passed on apart ([`Passed::Resend`]), for the lookup stage only. State is bounded and time
//! comes from the event stamps, so tests need no clock and no sleeps.

use crate::bounded::Lru;
use crate::model::{DnsEvent, Kind, Role};

/// How long a query waits for its response before it is reported unanswered.
pub const DEFAULT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Queries waiting for a response at once.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What identifies an exchange. The socket and namespace keep apart processes and hosts that
/// reuse ids; the role keeps apart the two ends when both are on this host and share a socket
/// inode view. The name enters as a hash of its lowercase form (0x20 randomization changes
/// case): the key stays small and needs no allocation; the pending query's own name is
/// compared on a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    netns: u32,
    socket: u64,
    role: Role,
    id: u16,
    qtype: u16,
    qname_hash: u64,
}

impl Key {
    fn of(event: &DnsEvent) -> Key {
        Key {
            netns: event.who.netns,
            socket: event.who.socket,
            role: event.role,
            id: event.id,
            qtype: event.qtype.0,
            qname_hash: lowercase_hash(&event.qname),
        }
    }
}

fn lowercase_hash(name: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
    let mut chunk = [0u8; 64];
    for part in name.as_bytes().chunks(chunk.len()) {
        let lower = &mut chunk[..part.len()];
        lower.copy_from_slice(part);
        lower.make_ascii_lowercase();
        hasher.write(lower);
    }
    hasher.finish()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorrelateStats {
    pub queries: u64,
    pub responses: u64,
    /// Responses paired with their query.
    pub paired: u64,
    /// Responses with no pending query: the query was sent before dnslens started, was not
    /// captured, was evicted or expired, or this is a duplicate response.
    pub unmatched_responses: u64,
    /// Queries identical to one still pending (same key): passed on as resends, not as queries.
    pub retransmits: u64,
    /// Queries reported unanswered: after the timeout, or evicted.
    pub unanswered: u64,
    /// Of those, queries reported before their timeout because the pending map was full and
    /// they were the oldest.
    pub evicted: u64,
    /// Queries waiting for a response now.
    pub pending: u64,
}

/// How an event leaves the pairing stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passed {
    /// A message (or an unanswered query) of its own.
    Message,
    /// A query sent again with the key of one still waiting (same socket, id and question):
    /// the response pairs with the first, so it is no message to pair, count or judge, but it
    /// is a query sent (a retry after a timeout) to whoever follows lookups.
    Resend,
}

/// Pairs queries and responses.
pub struct Correlator {
    timeout_ns: u64,
    /// The queries waiting for their response, kept whole as they were emitted: an expired one
    /// is reported with all of its fields.
    pending: Lru<Key, DnsEvent>,
    /// Queries pushed out of a full `pending`, reported unanswered by the next `expire`. At
    /// most one poll turn's worth: `expire` empties it.
    evicted: Vec<DnsEvent>,
    stats: CorrelateStats,
}

impl Correlator {
    pub fn new(timeout_ns: u64, capacity: usize) -> Self {
        Correlator {
            timeout_ns,
            pending: Lru::new(capacity),
            evicted: Vec::new(),
            stats: CorrelateStats::default(),
        }
    }

    /// Takes a query or response event and passes on what should be emitted: a new query as
    /// is, a response with `latency_us` set when its query is known, a retransmission as a
    /// [`Passed::Resend`] that stays out of the pending table. `out` may complete the event
    /// (enrichment); a query is kept pending as `out` left it, so it is moved, never copied.
    pub fn event(&mut self, mut event: DnsEvent, out: &mut impl FnMut(&mut DnsEvent, Passed)) {
        match event.kind {
            Kind::Query => {
                self.stats.queries += 1;
                let key = Key::of(&event);
                if self
                    .pending
                    .peek(&key)
                    .is_some_and(|q| same_name(q, &event))
                {
                    self.stats.retransmits += 1;
                    out(&mut event, Passed::Resend);
                    return;
                }
                out(&mut event, Passed::Message);
                if let Some((_, oldest)) = self.pending.insert(key, event) {
                    self.evicted.push(oldest);
                }
            }
            Kind::Response => {
                self.stats.responses += 1;
                let key = Key::of(&event);
                match self.pending.remove(&key) {
                    Some(query) if same_name(&query, &event) => {
                        self.stats.paired += 1;
                        event.latency_us = Some(event.mono_ns.saturating_sub(query.mono_ns) / 1000);
                    }
                    Some(other) => {
                        // Two names with one hash: not this response's query.
                        self.pending.insert(key, other);
                        self.stats.unmatched_responses += 1;
                    }
                    None => self.stats.unmatched_responses += 1,
                }
                out(&mut event, Passed::Message);
            }
            Kind::Unanswered => out(&mut event, Passed::Message),
        }
    }

    /// Reports the queries whose timeout has passed at `now_mono_ns` (CLOCK_MONOTONIC, the
    /// clock of event stamps) as unanswered events carrying the query's fields and time, and
    /// before them those evicted since the last call, with the time they waited (a flood of
    /// unanswered names, water torture, still shows every query's end).
    pub fn expire(&mut self, now_mono_ns: u64, out: &mut impl FnMut(&mut DnsEvent)) {
        for mut query in std::mem::take(&mut self.evicted) {
            self.stats.unanswered += 1;
            self.stats.evicted += 1;
            query.kind = Kind::Unanswered;
            query.timeout_ms = Some(now_mono_ns.saturating_sub(query.mono_ns) / 1_000_000);
            out(&mut query);
        }
        while let Some((_, oldest)) = self.pending.peek_oldest() {
            if oldest.mono_ns.saturating_add(self.timeout_ns) > now_mono_ns {
                break;
            }
            let (_, mut query) = self.pending.pop_oldest().expect("peeked above");
            self.stats.unanswered += 1;
            query.kind = Kind::Unanswered;
            query.timeout_ms = Some(self.timeout_ns / 1_000_000);
            out(&mut query);
        }
    }

    pub fn stats(&self) -> CorrelateStats {
        CorrelateStats {
            pending: self.pending.len() as u64,
            ..self.stats
        }
    }
}

fn same_name(query: &DnsEvent, response: &DnsEvent) -> bool {
    query.qname.eq_ignore_ascii_case(&response.qname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample;

    const MS: u64 = 1_000_000;

    /// The messages passed on; a resend fails the test.
    fn run(c: &mut Correlator, e: DnsEvent) -> Vec<DnsEvent> {
        let mut out = Vec::new();
        c.event(e, &mut |e, passed| {
            assert_eq!(passed, Passed::Message, "{e:?}");
            out.push(e.clone());
        });
        out
    }

    fn expire(c: &mut Correlator, now: u64) -> Vec<DnsEvent> {
        let mut out = Vec::new();
        c.expire(now, &mut |e| out.push(e.clone()));
        out
    }

    #[test]
    fn pairs_response_with_query_and_measures_latency() {
        let mut c = Correlator::new(DEFAULT_TIMEOUT_NS, 16);
        let q = sample::query(7, "Example.COM", 1, 1_000 * MS);
        assert_eq!(run(&mut c, q.clone()), vec![q.clone()]);
        // Case differs (0x20 randomization): still the same exchange.
        let mut r = sample::response(&q, 0, &["192.0.2.1"], 1_000 * MS + 1_234_567);
        r.qname = "example.com".into();
        let out = run(&mut c, r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].latency_us, Some(1_234));
        assert_eq!(out[0].kind, Kind::Response);
        assert!(expire(&mut c, u64::MAX).is_empty());
        let s = c.stats();
        assert_eq!((s.queries, s.responses, s.paired, s.pending), (1, 1, 1, 0));
    }

    #[test]
    fn unanswered_after_timeout_with_query_time() {
        let mut c = Correlator::new(5_000 * MS, 16);
        let q = sample::query(1, "slow.example", 1, 100 * MS);
        run(&mut c, q.clone());
        assert!(expire(&mut c, 5_099 * MS).is_empty());
        let out = expire(&mut c, 5_100 * MS);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Unanswered);
        assert_eq!(out[0].time_ns, q.time_ns);
        assert_eq!(out[0].timeout_ms, Some(5_000));
        assert_eq!(out[0].latency_us, None);
        // A late response is unmatched, still emitted.
        let late = run(&mut c, sample::response(&q, 0, &[], 6_000 * MS));
        assert_eq!(late[0].latency_us, None);
        let s = c.stats();
        assert_eq!((s.unanswered, s.unmatched_responses), (1, 1));
    }

    #[test]
    fn retransmits_are_passed_as_resends_and_latency_is_from_the_first() {
        let mut c = Correlator::new(DEFAULT_TIMEOUT_NS, 16);
        let q = sample::query(9, "example.net", 28, 0);
        assert_eq!(run(&mut c, q.clone()).len(), 1);
        let mut again = q.clone();
        again.mono_ns = 1_000 * MS;
        let mut resent = Vec::new();
        c.event(again.clone(), &mut |e, passed| {
            resent.push((e.clone(), passed))
        });
        assert_eq!(resent, vec![(again, Passed::Resend)]);
        assert_eq!(c.stats().pending, 1, "the first still waits");
        let out = run(&mut c, sample::response(&q, 0, &[], 1_010 * MS));
        assert_eq!(out[0].latency_us, Some(1_010_000));
        assert_eq!(c.stats().retransmits, 1);
        assert_eq!(c.stats().queries, 2);
    }

    #[test]
    fn keys_separate_sockets_ids_types_and_roles() {
        let mut c = Correlator::new(DEFAULT_TIMEOUT_NS, 16);
        let q = sample::query(1, "a.example", 1, 0);
        run(&mut c, q.clone());
        let changes: [fn(&mut DnsEvent); 6] = [
            |r: &mut DnsEvent| r.who.socket += 1,
            |r: &mut DnsEvent| r.who.netns += 1,
            |r: &mut DnsEvent| r.id += 1,
            |r: &mut DnsEvent| r.qtype.0 = 28,
            |r: &mut DnsEvent| r.qname.push('x'),
            |r: &mut DnsEvent| r.role = Role::Server,
        ];
        for change in changes {
            let mut r = sample::response(&q, 0, &[], 10);
            change(&mut r);
            assert_eq!(run(&mut c, r)[0].latency_us, None);
        }
        assert_eq!(c.stats().unmatched_responses, 6);
        assert_eq!(c.stats().pending, 1);
    }

    #[test]
    fn pending_map_is_bounded_and_counts_evictions() {
        let mut c = Correlator::new(DEFAULT_TIMEOUT_NS, 2);
        for id in 0..3 {
            run(&mut c, sample::query(id, "x.example", 1, u64::from(id)));
        }
        assert_eq!(c.stats().pending, 2);
        // The oldest was evicted: its response is unmatched, and the next expiry reports it
        // unanswered with the time it waited, before its timeout.
        let r = sample::response(&sample::query(0, "x.example", 1, 0), 0, &[], 10);
        assert_eq!(run(&mut c, r)[0].latency_us, None);
        let early = expire(&mut c, 7 * MS);
        assert_eq!(early.len(), 1);
        assert_eq!((early[0].id, early[0].kind), (0, Kind::Unanswered));
        assert_eq!(early[0].timeout_ms, Some(7));
        assert_eq!((c.stats().evicted, c.stats().unanswered), (1, 1));
        assert_eq!(expire(&mut c, u64::MAX).len(), 2);
        assert_eq!((c.stats().evicted, c.stats().unanswered), (1, 3));
    }

    #[test]
    fn server_side_pairs_received_query_with_sent_response() {
        let mut c = Correlator::new(DEFAULT_TIMEOUT_NS, 16);
        let mut q = sample::query(5, "svc.cluster.local", 1, 0);
        q.role = Role::Server;
        run(&mut c, q.clone());
        let mut r = sample::response(&q, 0, &["10.0.0.1"], 300_000);
        r.role = Role::Server;
        assert_eq!(run(&mut c, r)[0].latency_us, Some(300));
    }
}
