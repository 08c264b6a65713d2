//! What `dnslens top` knows: per row (a pod, or a process) the client side of DNS over a
//! sliding window (queries, responses by rcode, unanswered queries, a latency histogram; the
//! lookups that ended, their queries and a histogram of their latency), the total, and the
//! row's top domains; the recent alerts of every row. Both groupings are kept at once, so `g`
//! switches instantly and with history. [`Controls`] is what the keys change (grouping, sort,
//! selection); [`Model::snapshot`] turns both into sorted plain rows for the view. Pure: time
//! comes in as CLOCK_MONOTONIC ns (the clock of event stamps), nothing here touches the
//! terminal.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use dnslens_detect::{Alert, Detector, Severity};
use dnslens_lens::bounded::Lru;
use dnslens_lens::identity::{write_into, Identity};
use dnslens_lens::lookup::Lookup;
use dnslens_lens::model::Attribution;
use dnslens_lens::topk::TopK;
use dnslens_lens::{DnsEvent, Kind, Role};
use dnslens_wire::Rcode;

use super::controls::{Column, Controls, Grouping, Sort};

/// Seconds the rates, percentages, unanswered counts and percentiles cover.
pub const WINDOW_S: u64 = 10;
/// Rows kept per grouping; the one seen longest ago is evicted (and counted) for a new one.
pub const MAX_ROWS: usize = 5_000;
/// Alerts kept, newest first, of every row.
pub const MAX_ALERTS: usize = 50;
/// Domains tracked per row (space-saving, so the top few are right) and how many are shown.
const DOMAINS_TRACKED: usize = 16;
pub const DOMAINS_SHOWN: usize = 5;

const NS_PER_S: u64 = 1_000_000_000;

/// Latency buckets: below 16 µs, then two per power of two ([2^k, 1.5·2^k) and
/// [1.5·2^k, 2^(k+1))) up to 2^23 µs (8.4 s), the last open-ended: an estimate is within 25%
/// of the true value, in 41 counters.
const BUCKETS: usize = 41;
const FIRST_BOUND_US: u64 = 16;

fn bucket(us: u64) -> usize {
    if us < FIRST_BOUND_US {
        return 0;
    }
    let high = 63 - us.leading_zeros() as usize;
    let upper_half = ((us >> (high - 1)) & 1) as usize;
    ((high - 4) * 2 + upper_half + 1).min(BUCKETS - 1)
}

/// The lower bound of bucket `i` (i >= 1), in µs.
fn bucket_floor(i: usize) -> u64 {
    let power = 1u64 << ((i - 1) / 2 + 4);
    if (i - 1).is_multiple_of(2) {
        power
    } else {
        power + power / 2
    }
}

/// The value reported for a bucket: its middle (its floor for the open-ended last one).
fn bucket_value(i: usize) -> u64 {
    match i {
        0 => FIRST_BOUND_US / 2,
        i if i == BUCKETS - 1 => bucket_floor(i),
        i => (bucket_floor(i) + bucket_floor(i + 1)) / 2,
    }
}

/// Latencies counted by [`bucket`]: of one second (`u32`) or of the window (`u64`).
#[derive(Clone, Debug, PartialEq)]
struct Histogram<N>([N; BUCKETS]);

impl Histogram<u32> {
    fn add(&mut self, us: u64) {
        self.0[bucket(us)] += 1;
    }
}

impl Histogram<u64> {
    fn add_second(&mut self, second: &Histogram<u32>) {
        for (sum, &n) in self.0.iter_mut().zip(&second.0) {
            *sum += u64::from(n);
        }
    }

    /// The latency at quantile `q` (0..=1): `None` when empty.
    fn percentile(&self, q: f64) -> Option<u64> {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        self.0
            .iter()
            .position(|&c| {
                seen += c;
                seen >= rank
            })
            .map(bucket_value)
    }
}

/// Counts of one second.
#[derive(Clone, Debug)]
struct Slot {
    second: u64,
    queries: u32,
    responses: u32,
    nxdomain: u32,
    servfail: u32,
    unanswered: u32,
    latency: Histogram<u32>,
    /// Lookups that ended (reached the model) in this second, and their queries.
    lookups: u32,
    lookup_queries: u32,
    lookup_latency: Histogram<u32>,
}

impl Slot {
    fn empty(second: u64) -> Slot {
        Slot {
            second,
            queries: 0,
            responses: 0,
            nxdomain: 0,
            servfail: 0,
            unanswered: 0,
            latency: Histogram([0; BUCKETS]),
            lookups: 0,
            lookup_queries: 0,
            lookup_latency: Histogram([0; BUCKETS]),
        }
    }
}

/// The last [`WINDOW_S`] seconds, one slot each, reused round the ring.
#[derive(Clone, Debug)]
struct Window {
    slots: Vec<Slot>,
}

/// A window's counts added up.
#[derive(Clone, Debug, PartialEq)]
struct Sums {
    queries: u64,
    responses: u64,
    nxdomain: u64,
    servfail: u64,
    unanswered: u64,
    latency: Histogram<u64>,
    lookups: u64,
    lookup_queries: u64,
    lookup_latency: Histogram<u64>,
}

impl Window {
    fn new() -> Window {
        Window {
            slots: (0..WINDOW_S).map(|_| Slot::empty(u64::MAX)).collect(),
        }
    }

    /// The slot of `mono_ns`'s second, emptied if it held an older second; `None` when that
    /// second is already out of the ring (an unanswered query is reported a timeout late).
    fn slot(&mut self, mono_ns: u64) -> Option<&mut Slot> {
        let second = mono_ns / NS_PER_S;
        let slot = &mut self.slots[(second % WINDOW_S) as usize];
        if slot.second == u64::MAX || slot.second < second {
            *slot = Slot::empty(second);
        }
        (slot.second == second).then_some(slot)
    }

    fn record(&mut self, e: &DnsEvent) {
        let Some(slot) = self.slot(e.mono_ns) else {
            return;
        };
        match e.kind {
            Kind::Query => slot.queries += 1,
            Kind::Unanswered => slot.unanswered += 1,
            Kind::Response => {
                slot.responses += 1;
                match e.rcode {
                    Some(Rcode::NXDOMAIN) => slot.nxdomain += 1,
                    Some(Rcode::SERVFAIL) => slot.servfail += 1,
                    _ => {}
                }
                if let Some(us) = e.latency_us {
                    slot.latency.add(us);
                }
            }
        }
    }

    /// `lookup` ended at `now_ns` (when it reached the model: within `linger` of its end).
    fn lookup(&mut self, lookup: &Lookup, now_ns: u64) {
        let Some(slot) = self.slot(now_ns) else {
            return;
        };
        slot.lookups += 1;
        slot.lookup_queries += lookup.queries;
        slot.lookup_latency.add(lookup.latency_us);
    }

    /// The counts of the seconds in `(now - WINDOW_S, now]`.
    fn sums(&self, now_ns: u64) -> Sums {
        let now = now_ns / NS_PER_S;
        let mut sums = Sums {
            queries: 0,
            responses: 0,
            nxdomain: 0,
            servfail: 0,
            unanswered: 0,
            latency: Histogram([0; BUCKETS]),
            lookups: 0,
            lookup_queries: 0,
            lookup_latency: Histogram([0; BUCKETS]),
        };
        for s in &self.slots {
            if s.second > now || now - s.second >= WINDOW_S {
                continue;
            }
            sums.queries += u64::from(s.queries);
            sums.responses += u64::from(s.responses);
            sums.nxdomain += u64::from(s.nxdomain);
            sums.servfail += u64::from(s.servfail);
            sums.unanswered += u64::from(s.unanswered);
            sums.latency.add_second(&s.latency);
            sums.lookups += u64::from(s.lookups);
            sums.lookup_queries += u64::from(s.lookup_queries);
            sums.lookup_latency.add_second(&s.lookup_latency);
        }
        sums
    }
}

impl Sums {
    fn percent(&self, part: u64) -> Option<f64> {
        (self.responses > 0).then(|| 100.0 * part as f64 / self.responses as f64)
    }
}

/// The process row's key: pid and name (a reused pid is another process).
fn process_key(who: &Attribution, out: &mut String) {
    write_into(
        out,
        format_args!("{} {}", who.process.pid, who.process.display_name()),
    );
}

/// One row's state.
#[derive(Debug)]
struct Row {
    key: String,
    /// Process rows: the pid.
    pid: Option<u32>,
    /// The label: the pod row's key, or the process's name.
    name: String,
    /// Process rows: where the process runs (the pod row's label).
    place: String,
    /// Process rows: the executable, as last seen.
    exe: Option<Arc<str>>,
    window: Window,
    /// Queries since the row was made.
    total: u64,
    domains: TopK,
}

/// One grouping's rows.
#[derive(Debug)]
struct Table {
    rows: Lru<String, Row>,
}

/// One row's figures at a time, for the view.
#[derive(Clone, Debug, PartialEq)]
pub struct RowStats {
    pub key: String,
    pub pid: Option<u32>,
    pub name: String,
    pub place: String,
    pub exe: Option<Arc<str>>,
    /// Queries per second over the window.
    pub qps: f64,
    /// Of the responses in the window; `None` without any.
    pub nxdomain_pct: Option<f64>,
    pub servfail_pct: Option<f64>,
    /// Queries of the window that got no response within the timeout.
    pub unanswered: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Lookups that ended per second over the window, their 99th percentile latency, and
    /// their queries per lookup (`None` without lookups; a libc lookup sent none).
    pub lps: f64,
    pub lookup_p99_us: Option<u64>,
    pub queries_per_lookup: Option<f64>,
    /// Queries since the row was made.
    pub total: u64,
}

/// An alert as the view lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertLine {
    /// Wall-clock ns.
    pub time_ns: u64,
    pub detector: Detector,
    pub severity: Severity,
    /// Whom it is about, as the current grouping names rows.
    pub subject: String,
    pub summary: String,
    /// About the selected row.
    pub selected: bool,
}

#[derive(Debug)]
struct StoredAlert {
    time_ns: u64,
    detector: Detector,
    severity: Severity,
    summary: String,
    /// The row keys per grouping.
    keys: [String; 2],
    /// The subject per grouping: the pod label, `name[pid]`.
    subjects: [String; 2],
}

/// What the view shows at one moment: plain values, sorted.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub grouping: Grouping,
    pub sort: Sort,
    pub rows: Vec<RowStats>,
    /// Index into `rows`.
    pub selected: Option<usize>,
    /// The selected row's top domains, most queried first, and its queries of other domains.
    pub domains: Vec<(String, u64)>,
    pub domains_other: u64,
    /// Newest first.
    pub alerts: Vec<AlertLine>,
    /// Every client's queries per second over the window.
    pub qps: f64,
    /// Client events taken in since the start.
    pub events: u64,
    pub alerts_total: u64,
    /// Rows of this grouping evicted to make room for new ones.
    pub evicted: u64,
}

pub struct Model {
    /// When counting began (the window is shorter until it has passed).
    start_ns: u64,
    tables: [Table; 2],
    all: Window,
    events: u64,
    alerts: VecDeque<StoredAlert>,
    alerts_total: u64,
    /// Reused for row keys, so that an event of a known row allocates nothing.
    key: String,
}

impl Model {
    pub fn new(start_ns: u64) -> Model {
        Model::with_capacity(start_ns, MAX_ROWS)
    }

    pub fn with_capacity(start_ns: u64, max_rows: usize) -> Model {
        let table = || Table {
            rows: Lru::new(max_rows),
        };
        Model {
            start_ns,
            tables: [table(), table()],
            all: Window::new(),
            events: 0,
            alerts: VecDeque::with_capacity(MAX_ALERTS),
            alerts_total: 0,
            key: String::new(),
        }
    }

    /// Takes in one event. Only the client side counts (the process that asked): a DNS
    /// server's queries received and responses sent are not its own lookups.
    pub fn event(&mut self, e: &DnsEvent) {
        if e.role != Role::Client {
            return;
        }
        self.events += 1;
        self.all.record(e);
        for grouping in [Grouping::Pod, Grouping::Process] {
            let row = self.row(grouping, &e.who);
            row.window.record(e);
            if e.kind == Kind::Query {
                row.total += 1;
                row.domains.add(&e.qname, 1);
            }
        }
    }

    /// Takes in a lookup that ended, at `now_ns`: its row is the process of its first query
    /// (or of its libc call). Lookups are of the client side only.
    pub fn lookup(&mut self, lookup: &Lookup, now_ns: u64) {
        for grouping in [Grouping::Pod, Grouping::Process] {
            self.row(grouping, &lookup.who)
                .window
                .lookup(lookup, now_ns);
        }
    }

    /// The row of `who` in `grouping`, made if new (evicting the least recent when full);
    /// a process row takes the executable `who` names.
    fn row(&mut self, grouping: Grouping, who: &Attribution) -> &mut Row {
        match grouping {
            Grouping::Pod => write_into(&mut self.key, Identity::of(who)),
            Grouping::Process => process_key(who, &mut self.key),
        }
        let rows = &mut self.tables[grouping.index()].rows;
        if rows.contains(self.key.as_str()) {
            let row = rows.get(self.key.as_str()).expect("present");
            if grouping == Grouping::Process && who.process.exe.is_some() {
                row.exe.clone_from(&who.process.exe);
            }
            return row;
        }
        let (pid, name, place) = match grouping {
            Grouping::Pod => (None, self.key.clone(), String::new()),
            Grouping::Process => {
                let place = Identity::of(who).to_string();
                let name = who.process.display_name().to_string();
                (Some(who.process.pid), name, place)
            }
        };
        rows.get_or_insert_with(self.key.clone(), || Row {
            key: self.key.clone(),
            pid,
            name,
            place,
            exe: (grouping == Grouping::Process)
                .then(|| who.process.exe.clone())
                .flatten(),
            window: Window::new(),
            total: 0,
            domains: TopK::new(DOMAINS_TRACKED),
        })
    }

    /// Keeps `alert` among the recent ones.
    pub fn alert(&mut self, alert: &Alert) {
        let who = &alert.who;
        let mut keys = [String::new(), String::new()];
        write_into(&mut keys[Grouping::Pod.index()], Identity::of(who));
        process_key(who, &mut keys[Grouping::Process.index()]);
        let subjects = [
            keys[Grouping::Pod.index()].clone(),
            format!("{}[{}]", who.process.display_name(), who.process.pid),
        ];
        if self.alerts.len() == MAX_ALERTS {
            self.alerts.pop_back();
        }
        self.alerts.push_front(StoredAlert {
            time_ns: alert.time_ns,
            detector: alert.detector,
            severity: alert.severity,
            summary: alert.summary.clone(),
            keys,
            subjects,
        });
        self.alerts_total += 1;
    }

    /// The rows of `controls`' grouping at `now_ns`, in its order, and the selected row's
    /// details. A selection whose row is gone falls back to the first row.
    pub fn snapshot(&self, now_ns: u64, controls: &Controls) -> Snapshot {
        let grouping = controls.grouping;
        let table = &self.tables[grouping.index()];
        let span_ns = self.span_ns(now_ns);
        let mut rows: Vec<RowStats> = table
            .rows
            .values()
            .map(|row| stats(row, now_ns, span_ns))
            .collect();
        let sort = controls.sort;
        rows.sort_by(|a, b| {
            let order = compare(sort.column, a, b);
            let order = if sort.descending {
                order.reverse()
            } else {
                order
            };
            order.then_with(|| a.key.cmp(&b.key))
        });
        let selected = match controls.selected() {
            Some(key) => rows.iter().position(|r| r.key == key),
            None => None,
        }
        .or((!rows.is_empty()).then_some(0));
        let selected_key = selected.map(|i| rows[i].key.as_str());
        let (domains, domains_other) = selected_key
            .and_then(|key| table.rows.peek(key))
            .map(|row| {
                let top: Vec<(String, u64)> = row
                    .domains
                    .top(DOMAINS_SHOWN)
                    .into_iter()
                    .map(|(d, n)| (d.to_string(), n))
                    .collect();
                let shown: u64 = top.iter().map(|(_, n)| n).sum();
                (top, row.domains.total() - shown)
            })
            .unwrap_or_default();
        let alerts = self
            .alerts
            .iter()
            .map(|a| AlertLine {
                time_ns: a.time_ns,
                detector: a.detector,
                severity: a.severity,
                subject: a.subjects[grouping.index()].clone(),
                summary: a.summary.clone(),
                selected: selected_key == Some(a.keys[grouping.index()].as_str()),
            })
            .collect();
        Snapshot {
            grouping,
            sort,
            selected,
            domains,
            domains_other,
            alerts,
            qps: rate(self.all.sums(now_ns).queries, span_ns),
            events: self.events,
            alerts_total: self.alerts_total,
            evicted: table.rows.evictions(),
            rows,
        }
    }

    /// How much of the window has passed: [`WINDOW_S`] less the part of its first second
    /// still to come, or less when counting began within it.
    fn span_ns(&self, now_ns: u64) -> u64 {
        let window_start = (now_ns / NS_PER_S + 1).saturating_sub(WINDOW_S) * NS_PER_S;
        now_ns.saturating_sub(window_start.max(self.start_ns))
    }
}

fn rate(count: u64, span_ns: u64) -> f64 {
    if span_ns == 0 {
        return 0.0;
    }
    count as f64 * NS_PER_S as f64 / span_ns as f64
}

fn stats(row: &Row, now_ns: u64, span_ns: u64) -> RowStats {
    let sums = row.window.sums(now_ns);
    RowStats {
        key: row.key.clone(),
        pid: row.pid,
        name: row.name.clone(),
        place: row.place.clone(),
        exe: row.exe.clone(),
        qps: rate(sums.queries, span_ns),
        nxdomain_pct: sums.percent(sums.nxdomain),
        servfail_pct: sums.percent(sums.servfail),
        unanswered: sums.unanswered,
        p50_us: sums.latency.percentile(0.50),
        p99_us: sums.latency.percentile(0.99),
        lps: rate(sums.lookups, span_ns),
        lookup_p99_us: sums.lookup_latency.percentile(0.99),
        queries_per_lookup: (sums.lookups > 0)
            .then(|| sums.lookup_queries as f64 / sums.lookups as f64),
        total: row.total,
    }
}

/// Ascending order of `column`; a missing value (no responses) is below every value.
fn compare(column: Column, a: &RowStats, b: &RowStats) -> Ordering {
    let float = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    };
    match column {
        Column::Name => a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)),
        Column::Qps => a.qps.total_cmp(&b.qps),
        Column::Nxdomain => float(a.nxdomain_pct, b.nxdomain_pct),
        Column::Servfail => float(a.servfail_pct, b.servfail_pct),
        Column::Unanswered => a.unanswered.cmp(&b.unanswered),
        Column::P50 => a.p50_us.cmp(&b.p50_us),
        Column::P99 => a.p99_us.cmp(&b.p99_us),
        Column::Lps => a.lps.total_cmp(&b.lps),
        Column::LookupP99 => a.lookup_p99_us.cmp(&b.lookup_p99_us),
        Column::QueriesPerLookup => float(a.queries_per_lookup, b.queries_per_lookup),
        Column::Total => a.total.cmp(&b.total),
    }
}

#[cfg(test)]
pub(crate) mod tests;
