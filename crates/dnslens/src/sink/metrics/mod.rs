//! The agent's Prometheus metrics: [`MetricsSink`] is a sink like the table and JSON ones. It
//! counts what processes resolved (queries, responses, latency, unanswered, top domains, lookups)
//! and the alerts, and once a second takes dnslens's own counters from the run's [`Status`]. The
//! registry it fills is what the HTTP server encodes (names and labels: [`names`]).
//!
//! Cardinality is bounded by design (docs/metrics.md): label sets per (namespace, workload, pod,
//! container) and per (namespace, workload) are held in tables of fixed size; past it, events are
//! counted under `other` labels and the folds are counted. Types and rcodes are labels only by
//! their mnemonics (a bounded set), other values are `other`. Domains are labels only among each
//! workload's few most queried ([`TopK`]). A label set not seen for an hour leaves the
//! exposition, making room.

mod entries;
mod families;
mod limits;
mod lookups;
pub mod names;
mod process;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnslens_detect::Alert;
use dnslens_lens::counters::CounterKind;
use dnslens_lens::identity::Identity;
use dnslens_lens::lookup::Lookup;
use dnslens_lens::model::Attribution;
use dnslens_lens::model::{Container, Kind, Pod, Role, TaskName};
use dnslens_lens::text::Printable;
use dnslens_lens::DnsEvent;
use dnslens_probe::{KernelCounter, Named};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{Sink, Status};
use crate::losses::Lost;
use entries::{Placement, Workload};
pub use families::encode;
use families::{Families, LossLabels, One, PlacementLabels, SeriesBudget};
pub use limits::{HostShare, Limits};

/// The namespace label of processes outside containers and pods (their workload: the process
/// name); the namespace and workload labels of pods not named yet (no cluster, or not listed yet)
/// and of events whose cgroup is unknown; those of containers outside pods (plain Docker,
/// Podman). The markers every view uses.
pub use dnslens_lens::identity::{HOST, NONE, UNKNOWN};
/// Namespace label of folded label sets; their other labels are [`OTHER`].
pub const FOLDED_NAMESPACE: &str = "_other";
/// Label value for what is not exported by name.
pub const OTHER: &str = "other";

/// How often idle label sets are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The labels of losses no workload was charged for.
fn unknown_loss(reason: &'static str) -> LossLabels {
    let (unknown, none) = (Arc::from(UNKNOWN), Arc::from(""));
    LossLabels {
        reason,
        namespace: Arc::clone(&unknown),
        workload: unknown,
        pod: Arc::clone(&none),
        container: none,
    }
}

/// Field separator of the table keys: it cannot occur in Kubernetes names, and a process name
/// holding it only makes its own key.
const SEP: char = '\u{1f}';

/// Writes `namespace SEP workload SEP pod SEP container` of `who` into `key`; returns where the
/// workload key (`namespace SEP workload`) ends. Names are [`Printable`]: a control character
/// in a process name (SEP among them) can neither shift the labels nor reach a dashboard.
fn placement_key(who: &Attribution, key: &mut String) -> usize {
    key.clear();
    let id = Identity::of(who);
    let written = match id {
        Identity::Host(p) => write!(key, "{HOST}{SEP}{}", Printable(p.display_name())),
        Identity::Pod { .. } => match id.workload() {
            Some(w) => write!(
                key,
                "{}{SEP}{}/{}",
                Printable(w.namespace),
                Printable(w.kind),
                Printable(w.name)
            ),
            None => write!(key, "{UNKNOWN}{SEP}{UNKNOWN}"),
        },
        Identity::Container(_) => write!(key, "{NONE}{SEP}{NONE}"),
        // Never in a capture, which is all the metrics count.
        Identity::Unknown(_) | Identity::Client(_) => write!(key, "{UNKNOWN}{SEP}{UNKNOWN}"),
    };
    written.expect("writing to a String cannot fail");
    let workload_end = key.len();
    key.push(SEP);
    let pod = match id {
        Identity::Pod { pod, info, .. } => info.map_or(&*pod.uid, |p| &p.name),
        _ => "",
    };
    let container = match id.container() {
        Some(Container {
            name: Some(name), ..
        }) => name,
        Some(c) => c.short_id(),
        None => "",
    };
    write!(key, "{}{SEP}{}", Printable(pod), Printable(container))
        .expect("writing to a String cannot fail");
    workload_end
}

/// Whether a table key is a host process's: `(host) SEP name ...`.
fn is_host(key: &str) -> bool {
    key.strip_prefix(HOST)
        .is_some_and(|rest| rest.starts_with(SEP))
}

/// Where an event or alert is counted.
enum Slot {
    /// `key` in the placement table.
    Known,
    /// The table is full: the folded placement.
    Folded,
}

pub struct MetricsSink {
    families: Families,
    registry: Arc<Registry>,
    limits: Limits,
    placements: HashMap<Box<str>, Placement>,
    workloads: HashMap<Box<str>, Workload>,
    folded_placement: Placement,
    folded_workload: Workload,
    /// The time of the last status: what `last_seen` is set to (a second is precise enough to
    /// tell idle label sets).
    now: Instant,
    next_sweep: Instant,
    series_budget: SeriesBudget,
    /// Entries of host processes in the tables (see [`HostShare`]).
    host_placements: usize,
    host_workloads: usize,
    /// Reused for keys and lower-case domains, so that counting allocates nothing.
    key: String,
    domain: String,
    /// Whose placement `key` holds, and where its workload part ends.
    keyed: Option<(Keyed, usize)>,
}

/// What [`placement_key`] reads of an attribution. Events come in runs from one process, and
/// rebuilding the same key was 4% of the metrics-only agent's time under dnsperf (perf). The
/// Arcs are held so that an address compared cannot be another pod's reused.
struct Keyed {
    pod: Option<Pod>,
    container: Option<Container>,
    host: Option<bool>,
    name: TaskName,
    comm: TaskName,
}

impl Keyed {
    fn of(who: &Attribution) -> Keyed {
        Keyed {
            pod: who.pod.clone(),
            container: who.container.clone(),
            host: who.host,
            name: who.process.name,
            comm: who.process.comm,
        }
    }

    fn is(&self, who: &Attribution) -> bool {
        let same_pod = match (&self.pod, &who.pod) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                Arc::ptr_eq(&a.uid, &b.uid)
                    && match (&a.info, &b.info) {
                        (None, None) => true,
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    }
            }
            _ => false,
        };
        let same_container = match (&self.container, &who.container) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.id, &b.id) && a.name == b.name,
            _ => false,
        };
        same_pod
            && same_container
            && self.host == who.host
            && self.name == who.process.name
            && self.comm == who.process.comm
            && who.client.is_none()
    }
}

impl MetricsSink {
    pub fn new(limits: Limits) -> MetricsSink {
        let families = Families::new();
        let registry = Arc::new(families.registry());
        let other: Arc<str> = Arc::from(OTHER);
        let folded_ns: Arc<str> = Arc::from(FOLDED_NAMESPACE);
        let now = Instant::now();
        let folded_placement = Placement::new(
            PlacementLabels {
                namespace: folded_ns.clone(),
                workload: other.clone(),
                pod: other.clone(),
                container: other.clone(),
            },
            None,
            now,
        );
        let folded_workload = Workload::new(folded_ns, other, &limits);
        // At 0 from the start: a fold shows as an increase, not as a series appearing.
        for table in ["placements", "workloads", "top_domains"] {
            drop(families.folded.get_or_create(&[("table", table)]));
        }
        // Losses the kernel could not charge to a workload are `(unknown)`'s: their series are
        // there from the start too, so that an alert on the family has something to rate.
        for reason in KernelCounter::ALL.iter().filter(|c| c.is_loss()) {
            drop(
                families
                    .events_lost
                    .get_or_create(&unknown_loss(reason.name())),
            );
        }
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        families.build_info.get_or_create(&version).set(1);
        MetricsSink {
            families,
            registry,
            limits,
            placements: HashMap::new(),
            workloads: HashMap::new(),
            folded_placement,
            folded_workload,
            now,
            next_sweep: now + SWEEP_EVERY,
            series_budget: SeriesBudget::new(limits.new_domain_series, now),
            host_placements: 0,
            host_workloads: 0,
            key: String::new(),
            keyed: None,
            domain: String::new(),
        }
    }

    /// The registry to encode; it reads the same series this sink counts into.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    fn fold(&self, table: &'static str) {
        self.families
            .folded
            .get_or_create(&[("table", table)])
            .inc();
    }

    /// The workload key `key[..end]`: its table entry, made if there is room.
    fn workload_slot(&mut self, end: usize) -> Option<Box<str>> {
        let wkey = &self.key[..end];
        if !self.workloads.contains_key(wkey) {
            let share = self.limits.host_share.workloads;
            if self.workloads.len() >= self.limits.workloads
                || Self::host_full(wkey, self.host_workloads, share)
            {
                return None;
            }
            self.host_workloads += usize::from(is_host(wkey));
            let (namespace, workload) = wkey.split_once(SEP).expect("namespace SEP workload");
            let w = Workload::new(Arc::from(namespace), Arc::from(workload), &self.limits);
            self.workloads.insert(wkey.into(), w);
        }
        Some(wkey.into())
    }

    /// Whether `key` is a host process's and host processes have their share of `table`
    /// already: any process can take a name, and names must not crowd out the pods.
    fn host_full(key: &str, held: usize, share: usize) -> bool {
        is_host(key) && held >= share
    }

    /// Writes the placement key of `who` into `self.key` (unless it holds it already); returns
    /// where its workload part ends.
    fn key(&mut self, who: &Attribution) -> usize {
        if let Some((keyed, end)) = &self.keyed {
            if keyed.is(who) {
                return *end;
            }
        }
        let end = placement_key(who, &mut self.key);
        self.keyed = Some((Keyed::of(who), end));
        end
    }

    /// Finds or makes the placement of `self.key`.
    fn slot(&mut self, workload_end: usize) -> Slot {
        if self.placements.contains_key(&*self.key) {
            return Slot::Known;
        }
        let share = self.limits.host_share.placements;
        if self.placements.len() >= self.limits.placements
            || Self::host_full(&self.key, self.host_placements, share)
        {
            return Slot::Folded;
        }
        self.host_placements += usize::from(is_host(&self.key));
        let workload = self.workload_slot(workload_end);
        let mut parts = self.key.split(SEP).map(Arc::<str>::from);
        let mut next = || parts.next().expect("four fields");
        let labels = PlacementLabels {
            namespace: next(),
            workload: next(),
            pod: next(),
            container: next(),
        };
        let placement = Placement::new(labels, workload, self.now);
        self.placements.insert(self.key.as_str().into(), placement);
        Slot::Known
    }

    fn count(&mut self, e: &DnsEvent) {
        // The client side only: a lookup answered on this node would count twice otherwise.
        if e.role != Role::Client {
            return;
        }
        let end = self.key(&e.who);
        let slot = self.slot(end);
        let (placement, folded_placement) = match slot {
            Slot::Known => (
                self.placements.get_mut(&*self.key).expect("slot made it"),
                false,
            ),
            Slot::Folded => (&mut self.folded_placement, true),
        };
        let workload = match &placement.workload {
            Some(key) => self
                .workloads
                .get_mut(key)
                .expect("placements keep their workload"),
            None => &mut self.folded_workload,
        };
        let folded_workload = placement.workload.is_none() && !folded_placement;
        placement.last_seen = self.now;
        workload.last_seen = self.now;
        let f = &self.families;
        let qtype = e.qtype.name().unwrap_or(OTHER);
        match e.kind {
            Kind::Query => {
                placement.query(f, qtype).inc();
                self.domain.clear();
                self.domain
                    .extend(e.qname.chars().map(|c| c.to_ascii_lowercase()));
                let (n, budget) = (self.limits.top_domains, &mut self.series_budget);
                workload.query(&self.domain, n, f, budget);
            }
            Kind::Response => {
                let rcode = e.rcode.and_then(|r| r.name()).unwrap_or(OTHER);
                placement.response(f, qtype, rcode).inc();
                if let Some(us) = e.latency_us {
                    workload.observe_latency(us as f64 / 1e6, f);
                }
            }
            Kind::Unanswered => {
                placement.unanswered(f).inc();
            }
        }
        if folded_placement {
            self.fold("placements");
        } else if folded_workload {
            self.fold("workloads");
        }
    }

    /// Events the kernel dropped, counted against the workload that lost them.
    fn count_loss(&mut self, lost: &Lost) {
        let end = self.key(&lost.who);
        let placement = match self.slot(end) {
            Slot::Known => self.placements.get_mut(&*self.key).expect("slot made it"),
            Slot::Folded => {
                self.fold("placements");
                &mut self.folded_placement
            }
        };
        placement.last_seen = self.now;
        placement
            .lost(&self.families, lost.reason.name())
            .inc_by(lost.events);
    }

    /// The workload of `who`, seen now: its entry, or the folded one when the table is full;
    /// and the families to count into.
    fn seen_workload(&mut self, who: &Attribution) -> (&mut Workload, &Families) {
        let end = self.key(who);
        let workload = match self.workload_slot(end) {
            Some(key) => self.workloads.get_mut(&key).expect("just made"),
            None => {
                self.fold("workloads");
                &mut self.folded_workload
            }
        };
        workload.last_seen = self.now;
        (workload, &self.families)
    }

    fn count_alert(&mut self, a: &Alert) {
        let (workload, f) = self.seen_workload(&a.who);
        workload.alert(a, f);
    }

    /// A lookup, counted for its workload (the process of its first query).
    fn count_lookup(&mut self, l: &Lookup) {
        let (workload, f) = self.seen_workload(&l.who);
        let labels = workload.labels();
        workload.lookups.count(l, &labels, f);
    }

    /// dnslens's own counters, as the run loop gathered them.
    fn health(&self, s: &Status) {
        let f = &self.families;
        let store =
            |family: &Family<One, Counter>, label: &'static str, value: &'static str, n: u64| {
                family
                    .get_or_create(&[(label, value)])
                    .inner()
                    .store(n, Ordering::Relaxed);
            };
        if let Some(k) = &s.kernel {
            for (counter, n) in k.iter() {
                let running = match counter {
                    KernelCounter::Events => f.events_captured.inner(),
                    // Charged to their sources, as [`Self::count_loss`] reads them.
                    KernelCounter::OverShare | KernelCounter::RingbufFull => continue,
                    // The kernel does not know whose they were.
                    KernelCounter::ReadFailed
                    | KernelCounter::MmsgSkipped
                    | KernelCounter::OtherPath => {
                        let labels = unknown_loss(counter.name());
                        f.events_lost
                            .get_or_create(&labels)
                            .inner()
                            .store(n, Ordering::Relaxed);
                        continue;
                    }
                    KernelCounter::Truncated | KernelCounter::IovSkipped => {
                        store(&f.events_partial, "reason", counter.name(), n);
                        continue;
                    }
                    KernelCounter::ExecLost => f.exec_records_lost.inner(),
                    KernelCounter::ServerSide => f.server_side_kept.inner(),
                };
                running.store(n, Ordering::Relaxed);
            }
        }
        let (used, size) = s.ring;
        f.ringbuf_used.set(i64::try_from(used).unwrap_or(i64::MAX));
        f.ringbuf_size.set(i64::try_from(size).unwrap_or(i64::MAX));
        f.output_wait
            .inner()
            .store(s.output.waited.as_secs_f64().to_bits(), Ordering::Relaxed);
        f.output_dropped
            .inner()
            .store(s.output.dropped_lines, Ordering::Relaxed);
        if let Some(d) = s.dnstap {
            f.dnstap_sent.inner().store(d.sent, Ordering::Relaxed);
            f.dnstap_dropped.inner().store(d.dropped, Ordering::Relaxed);
        }
        for row in s.counters() {
            let (family, label) = match row.kind {
                CounterKind::Eviction => (&f.state_evictions, "table"),
                CounterKind::DecodeError => (&f.decode_errors, "kind"),
                CounterKind::Miss => (&f.enrichment_misses, "what"),
            };
            store(family, label, row.name, row.value);
        }
    }

    /// Once a second: the top domains are chosen again, and now and then idle label sets leave.
    fn refresh(&mut self, now: Instant) {
        self.now = now;
        let (n, f) = (self.limits.top_domains, &self.families);
        self.series_budget.renew(now);
        let budget = &mut self.series_budget;
        let mut refused = 0;
        for w in self.workloads.values_mut() {
            refused += w.choose_domains(n, f, budget);
        }
        refused += self.folded_workload.choose_domains(n, f, budget);
        for _ in 0..refused {
            self.fold("top_domains");
        }
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let idle = self.limits.idle;
        let idle_since = |last: Instant| now.saturating_duration_since(last) >= idle;
        // Placements first: a workload is seen whenever one of its placements is, so an idle
        // workload has only idle placements, gone by now.
        self.placements.retain(|_, p| {
            let keep = !idle_since(p.last_seen);
            if !keep {
                p.remove(f);
            }
            keep
        });
        self.workloads.retain(|_, w| {
            let keep = !idle_since(w.last_seen);
            if !keep {
                w.remove(f);
            }
            keep
        });
        self.host_placements = self.placements.keys().filter(|k| is_host(k)).count();
        self.host_workloads = self.workloads.keys().filter(|k| is_host(k)).count();
    }
}

impl Sink for MetricsSink {
    /// Counts; shows nothing.
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        self.count(event);
        Ok(false)
    }

    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        self.count_lookup(lookup);
        Ok(false)
    }

    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.count_alert(alert);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MetricsSink {
    /// The run's own counters, about once a second: dnslens's health families, and the time
    /// that chooses the top domains again and retires idle label sets.
    pub fn status(&mut self, status: &Status) {
        self.health(status);
        for lost in &status.lost {
            self.count_loss(lost);
        }
        self.refresh(status.now);
    }
}

#[cfg(test)]
mod tests;
