//! Counting: queries sent by clients per interval, keyed by one or more of: who asked (thread
//! name, process name, pid, cgroup, pod, namespace, workload, container), what was asked (name,
//! registered domain, type), whom (the server) and what came back (rcode); or lookups, keyed by
//! who asked, the name asked, its domain, the outcome and the source. [`CountBy::applies`] is the
//! one place that says which keys apply to which. The key table is bounded, since a workload
//! chooses its names: keys past the bound are folded into one `(other)` row, and counted.

use std::collections::HashMap;
use std::fmt::Write;

use crate::domain::registered_domain;
use crate::identity::{write_into, Identity};
use crate::lookup::Lookup;
use crate::model::{Attribution, Container, DnsEvent, Kind, Role, TIMEOUT};

/// Distinct keys counted per interval before new keys fold into [`OTHER`].
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The row that collects keys past the capacity.
pub const OTHER: &str = "(other)";
/// The keys of processes outside containers and pods, of events whose cgroup was not
/// resolved or whose pod the directory does not know, and of what a process lacks (the pod of a
/// container outside pods, the container of a process in a pod's own cgroup).
pub use crate::identity::{HOST, NONE, UNKNOWN};

/// What queries or lookups are counted by; its name is the JSON `by` and field, and the flag's
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum CountBy {
    /// Thread name.
    Comm,
    /// Process name.
    Process,
    /// Process id (with the process name).
    Pid,
    Cgroup,
    /// `namespace/name`, or the uid while the pod directory does not know the pod.
    Pod,
    Namespace,
    /// `namespace/Kind/name`; a pod without an owner is its own workload (`namespace/Pod/name`).
    Workload,
    /// `namespace/pod/container`, or the first 12 hex digits of the id when the name is not
    /// known.
    Container,
    /// The name asked, lower-cased.
    Qname,
    /// The name the application asked for, lower-cased: a lookup's, its search list taken off.
    Name,
    /// The registered domain of the name (`example.co.uk` for `www.example.co.uk`).
    Domain,
    /// The query type: A, AAAA, TYPE65280...
    Qtype,
    /// The response code, TIMEOUT when none came (counts a query when its answer comes).
    Rcode,
    /// The server asked: address:port.
    Server,
    /// How a lookup ended: answered, nxdomain, nodata, servfail, refused, timeout, error.
    Outcome,
    /// Where a lookup was seen: dns (the wire), libc (a call that sent no query), libc+dns.
    Source,
}

impl CountBy {
    /// Whether the key applies to what `at` counts: a query's type, rcode and server are not a
    /// lookup's (it may ask several of each), and outcome, source and the name asked are only a
    /// lookup's.
    pub fn applies(self, at: CountedAt) -> bool {
        let lookups = at == CountedAt::Lookup;
        match self {
            CountBy::Comm
            | CountBy::Process
            | CountBy::Pid
            | CountBy::Cgroup
            | CountBy::Pod
            | CountBy::Namespace
            | CountBy::Workload
            | CountBy::Container
            | CountBy::Domain => true,
            CountBy::Qname | CountBy::Qtype | CountBy::Rcode | CountBy::Server => !lookups,
            CountBy::Name | CountBy::Outcome | CountBy::Source => lookups,
        }
    }
}

/// When a query is counted, or that lookups are counted instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountedAt {
    /// When the client sends it.
    Query,
    /// When its answer comes (a response paired with it) or its timeout passes: what keys by
    /// rcode or filters by it need. Each query counts once, in the interval its answer is in.
    Answer,
    /// Lookups, not queries, each when it ends.
    Lookup,
}

impl CountedAt {
    /// The moment `by` and an rcode filter (`filters_rcode`) need; `lookups` counts lookups.
    pub fn needed(by: &[CountBy], filters_rcode: bool, lookups: bool) -> CountedAt {
        if lookups {
            CountedAt::Lookup
        } else if filters_rcode || by.contains(&CountBy::Rcode) {
            CountedAt::Answer
        } else {
            CountedAt::Query
        }
    }
}

/// Writes the pod, namespace, workload or container key of `who` into `out` (cleared first).
fn placement_key(by: CountBy, who: &Attribution, out: &mut String) {
    let id = Identity::of(who);
    match (id, by) {
        (Identity::Unknown(_), _) => write_into(out, UNKNOWN),
        (Identity::Host(_), _) => write_into(out, HOST),
        // Never in a capture, which is all `count` reads.
        (Identity::Client(_), _) => write_into(out, id),
        (_, CountBy::Container) => match (id.container(), id) {
            (None, _) => write_into(out, NONE),
            (Some(Container { name: Some(c), .. }), Identity::Pod { info: Some(p), .. }) => {
                write_into(out, format_args!("{}/{}/{c}", p.namespace, p.name))
            }
            (Some(c), _) => write_into(out, c.short_id()),
        },
        (Identity::Container(_), _) => write_into(out, NONE),
        (Identity::Pod { info: None, .. }, CountBy::Pod) => write_into(out, id),
        (Identity::Pod { info: None, .. }, _) => write_into(out, UNKNOWN),
        (Identity::Pod { info: Some(p), .. }, by) => match (by, id.workload()) {
            (CountBy::Namespace, _) => write_into(out, &p.namespace),
            (CountBy::Workload, Some(w)) => write_into(out, w),
            _ => write_into(out, id),
        },
    }
}

/// What is counted: a message event or a lookup.
#[derive(Clone, Copy)]
enum Item<'a> {
    Event(&'a DnsEvent),
    Lookup(&'a Lookup),
}

impl Item<'_> {
    fn who(&self) -> &Attribution {
        match self {
            Item::Event(e) => &e.who,
            Item::Lookup(l) => &l.who,
        }
    }

    /// The name asked: the query's, or the lookup's.
    fn name(&self) -> &str {
        match self {
            Item::Event(e) => &e.qname,
            Item::Lookup(l) => &l.name,
        }
    }
}

/// Writes the `by` key of `item` into `out` (cleared first). `by` applies to `item`
/// ([`Counter::new`] holds it).
fn write_key(by: CountBy, item: Item<'_>, out: &mut String) {
    let who = item.who();
    let p = &who.process;
    out.clear();
    match (by, item) {
        (CountBy::Comm, _) => out.push_str(&p.comm),
        (CountBy::Process, _) => out.push_str(&p.name),
        (CountBy::Pid, _) => write!(out, "{}", p.pid).expect("writing to a String cannot fail"),
        (CountBy::Cgroup, _) => out.push_str(&who.cgroup),
        (CountBy::Pod | CountBy::Namespace | CountBy::Workload | CountBy::Container, _) => {
            placement_key(by, who, out)
        }
        (CountBy::Qname | CountBy::Name, _) => {
            out.extend(item.name().chars().map(|c| c.to_ascii_lowercase()))
        }
        (CountBy::Domain, _) => {
            out.extend(item.name().chars().map(|c| c.to_ascii_lowercase()));
            let domain = registered_domain(out);
            let start = out.len() - domain.len();
            out.drain(..start);
        }
        (CountBy::Qtype, Item::Event(e)) => {
            write!(out, "{}", e.qtype).expect("writing to a String cannot fail")
        }
        (CountBy::Rcode, Item::Event(e)) => match (e.kind, e.rcode) {
            (Kind::Response, Some(rcode)) => {
                write!(out, "{rcode}").expect("writing to a String cannot fail")
            }
            _ => out.push_str(TIMEOUT),
        },
        (CountBy::Server, Item::Event(e)) => {
            // A response comes from the server; a query (answered or not) goes to it.
            let server = if e.kind == Kind::Response {
                e.src
            } else {
                e.dst
            };
            write!(out, "{server}").expect("writing to a String cannot fail")
        }
        (CountBy::Outcome, Item::Lookup(l)) => out.push_str(l.outcome.into()),
        (CountBy::Source, Item::Lookup(l)) => out.push_str(l.source.into()),
        (CountBy::Qtype | CountBy::Rcode | CountBy::Server, Item::Lookup(_))
        | (CountBy::Outcome | CountBy::Source, Item::Event(_)) => {
            unreachable!("Counter::new refuses a key that does not apply")
        }
    }
}

/// One row of an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountRow {
    /// One value per key, in the order of the keys.
    pub key: Vec<String>,
    /// The process name, for rows keyed by pid (the latest seen).
    pub name: Option<String>,
    /// Queries, or lookups.
    pub count: u64,
}

/// Counts of the current interval.
#[derive(Debug)]
pub struct Counter {
    by: Vec<CountBy>,
    at: CountedAt,
    capacity: usize,
    /// Key -> (count, process name for pid keys).
    counts: HashMap<Vec<String>, (u64, Option<String>)>,
    folded: u64,
    /// Reused for the key of the event being counted, so that counting a known key allocates
    /// nothing.
    key: Vec<String>,
    /// The key of the `(other)` row.
    other: Vec<String>,
}

impl Counter {
    /// Counts by the keys of `by` (at least one, each applying to `at`), in their order.
    pub fn new(by: Vec<CountBy>, at: CountedAt, capacity: usize) -> Self {
        assert!(!by.is_empty(), "counting needs a key");
        if let Some(b) = by.iter().find(|b| !b.applies(at)) {
            panic!("the key {b:?} does not apply to {at:?}");
        }
        Counter {
            key: vec![String::new(); by.len()],
            other: vec![OTHER.to_string(); by.len()],
            by,
            at,
            capacity: capacity.max(1),
            counts: HashMap::new(),
            folded: 0,
        }
    }

    pub fn by(&self) -> &[CountBy] {
        &self.by
    }

    pub fn at(&self) -> CountedAt {
        self.at
    }

    /// Counts `event` if it stands for a query sent by a client at this counter's moment: the
    /// query itself, or its paired response or timeout. Returns whether it counted.
    pub fn event(&mut self, event: &DnsEvent) -> bool {
        let counted = match (self.at, event.kind) {
            (CountedAt::Query, Kind::Query) | (CountedAt::Answer, Kind::Unanswered) => true,
            // An unpaired response is a late one (its query already timed out) or one whose
            // query came before the capture: neither is a query of its own.
            (CountedAt::Answer, Kind::Response) => event.latency_us.is_some(),
            _ => false,
        };
        counted && event.role == Role::Client && self.count(Item::Event(event))
    }

    /// Counts `lookup` if this counter counts lookups. Returns whether it counted.
    pub fn lookup(&mut self, lookup: &Lookup) -> bool {
        self.at == CountedAt::Lookup && self.count(Item::Lookup(lookup))
    }

    fn count(&mut self, item: Item<'_>) -> bool {
        for (&by, part) in self.by.iter().zip(&mut self.key) {
            write_key(by, item, part);
        }
        let key = if self.counts.contains_key(&self.key) || self.counts.len() < self.capacity {
            &self.key
        } else {
            self.folded += 1;
            &self.other
        };
        let entry = match self.counts.get_mut(key) {
            Some(entry) => entry,
            None => self.counts.entry(key.clone()).or_default(),
        };
        entry.0 += 1;
        if self.by.contains(&CountBy::Pid) {
            let name = item.who().process.name.as_str();
            if entry.1.as_deref() != Some(name) {
                entry.1 = Some(name.to_owned());
            }
        }
        true
    }

    /// The rows of the interval, most counted first (ties by key), and starts a new interval.
    pub fn take(&mut self) -> Vec<CountRow> {
        let mut rows: Vec<CountRow> = self
            .counts
            .drain()
            .map(|(key, (count, name))| CountRow { key, name, count })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows
    }

    /// Queries or lookups folded into `(other)` since the start, because the key table was full.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

#[cfg(test)]
mod tests;
