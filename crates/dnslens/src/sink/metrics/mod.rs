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
use dnslens_lens::model::{Container, Kind, Role};
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
        let end = placement_key(&e.who, &mut self.key);
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
        let end = placement_key(&lost.who, &mut self.key);
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
        let end = placement_key(who, &mut self.key);
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
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::sink::dnstap::DnstapStats;
    use crate::sink::OutputStats;
    use dnslens_detect::{Detector, Evidence, Severity};
    use dnslens_lens::container::Runtime;
    use dnslens_lens::lookup::Outcome;
    use dnslens_lens::model::sample;
    use dnslens_lens::model::Pod;
    use dnslens_lens::pods::{PodInfo, Workload as PodWorkload};
    use dnslens_lens::Stats;
    use dnslens_probe::{KernelCounter, KernelCounters};
    use names::Type;

    /// One sample line of the exposition.
    #[derive(Debug, Clone, PartialEq)]
    struct Series {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn parse_label_values(mut rest: &str, labels: &mut BTreeMap<String, String>) {
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().map_or('\\', |(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels.insert(key.trim_start_matches(',').to_string(), value);
            rest = &after[end..];
        }
    }

    fn scrape(sink: &MetricsSink) -> Vec<Series> {
        let text = encode(&sink.registry(), false);
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let (head, value) = line.rsplit_once(' ').expect("NAME VALUE");
                let (name, labels) = match head.split_once('{') {
                    Some((name, rest)) => {
                        let mut labels = BTreeMap::new();
                        parse_label_values(rest.strip_suffix('}').unwrap(), &mut labels);
                        (name.to_string(), labels)
                    }
                    None => (head.to_string(), BTreeMap::new()),
                };
                Series {
                    name,
                    labels,
                    value: value.parse().unwrap(),
                }
            })
            .collect()
    }

    /// The value of the series `name` whose labels include `want`.
    fn value(series: &[Series], name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Series> = series
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {want:?}: {found:?}");
        found.first().map(|s| s.value)
    }

    fn pod(namespace: &str, name: &str, workload: Option<(&str, &str)>) -> Pod {
        let uid = format!("uid-{namespace}-{name}");
        Pod {
            uid: Arc::from(uid.as_str()),
            info: Some(Arc::new(PodInfo {
                uid,
                name: name.to_string(),
                namespace: namespace.to_string(),
                node: None,
                pod_ip: None,
                service_account: None,
                labels: BTreeMap::new(),
                workload: workload.map(|(kind, name)| PodWorkload {
                    kind: kind.to_string(),
                    name: name.to_string(),
                }),
                containers: BTreeMap::new(),
            })),
        }
    }

    fn container(name: Option<&str>) -> Container {
        Container {
            id: Arc::from("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            runtime: Runtime::Containerd,
            name: name.map(str::to_string),
        }
    }

    fn in_pod(mut e: DnsEvent, pod: &Pod, c: Option<&str>) -> DnsEvent {
        e.who.host = Some(false);
        e.who.pod = Some(pod.clone());
        e.who.container = Some(container(c));
        e
    }

    fn answered(q: &DnsEvent, rcode: u16, latency_us: u64) -> DnsEvent {
        let mut r = sample::response(q, rcode, &[], q.mono_ns + latency_us * 1000);
        r.latency_us = Some(latency_us);
        r
    }

    pub(super) fn status(now: Instant) -> Status {
        Status {
            now,
            kernel: None,
            ring: (0, 4096),
            lost: Vec::new(),
            output: OutputStats::default(),
            lens: Stats::default(),
            lookups: None,
            detect: None,
            cluster: None,
            dnstap: None,
        }
    }

    #[test]
    fn labels_name_the_namespace_workload_pod_and_container() {
        let mut sink = MetricsSink::new(Limits::default());
        let web = pod("shop", "web-7d9f-abcde", Some(("Deployment", "web")));
        let q = in_pod(sample::query(1, "Api.Example.COM", 1, 0), &web, Some("app"));
        sink.event(&q).unwrap();
        sink.event(&answered(&q, 3, 2_000)).unwrap();
        let mut aaaa = in_pod(
            sample::query(2, "api.example.com", 28, 0),
            &web,
            Some("app"),
        );
        sink.event(&aaaa).unwrap();
        aaaa.kind = Kind::Unanswered;
        sink.event(&aaaa).unwrap();
        // A resolver's side of a lookup is not counted: the client side is.
        let mut served = q.clone();
        served.role = Role::Server;
        sink.event(&served).unwrap();

        let bare = pod("batch", "once", None);
        sink.event(&in_pod(sample::query(3, "x.test", 16, 0), &bare, None))
            .unwrap();
        let mut host = sample::query(4, "host.test", 1, 0);
        host.who.host = Some(true);
        sink.event(&host).unwrap();
        let mut unnamed = in_pod(sample::query(5, "u.test", 65280, 0), &web, None);
        unnamed.who.pod.as_mut().unwrap().info = None;
        sink.event(&unnamed).unwrap();
        let mut docker = sample::query(6, "d.test", 1, 0);
        docker.who.host = Some(false);
        docker.who.container = Some(container(None));
        sink.event(&docker).unwrap();
        let unknown = sample::query(7, "n.test", 1, 0);
        sink.event(&unknown).unwrap();

        let s = scrape(&sink);
        let app = [
            ("namespace", "shop"),
            ("workload", "Deployment/web"),
            ("pod", "web-7d9f-abcde"),
            ("container", "app"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut l = app.to_vec();
            l.extend_from_slice(extra);
            l
        };
        let q_total = "dnslens_queries_total";
        assert_eq!(value(&s, q_total, &with(&[("qtype", "A")])), Some(1.0));
        assert_eq!(value(&s, q_total, &with(&[("qtype", "AAAA")])), Some(1.0));
        let r = with(&[("qtype", "A"), ("rcode", "NXDOMAIN")]);
        assert_eq!(value(&s, "dnslens_responses_total", &r), Some(1.0));
        assert_eq!(value(&s, "dnslens_unanswered_total", &app), Some(1.0));
        let wl = [("namespace", "shop"), ("workload", "Deployment/web")];
        let lat = |le: &'static str| {
            let mut l = wl.to_vec();
            l.push(("le", le));
            value(&s, "dnslens_response_latency_seconds_bucket", &l)
        };
        assert_eq!((lat("0.001"), lat("0.0025")), (Some(0.0), Some(1.0)));
        assert_eq!(
            value(&s, "dnslens_response_latency_seconds_count", &wl),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "dnslens_response_latency_seconds_sum", &wl),
            Some(0.002)
        );

        let only = |labels: [(&'static str, &'static str); 5]| value(&s, q_total, &labels);
        assert_eq!(
            only([
                ("namespace", "batch"),
                ("workload", "Pod/once"),
                ("pod", "once"),
                ("container", "0123456789ab"),
                ("qtype", "TXT")
            ]),
            Some(1.0)
        );
        assert_eq!(
            only([
                ("namespace", "(host)"),
                ("workload", "dig"),
                ("pod", ""),
                ("container", ""),
                ("qtype", "A")
            ]),
            Some(1.0)
        );
        assert_eq!(
            only([
                ("namespace", "(unknown)"),
                ("workload", "(unknown)"),
                ("pod", "uid-shop-web-7d9f-abcde"),
                ("container", "0123456789ab"),
                ("qtype", "other")
            ]),
            Some(1.0)
        );
        assert_eq!(
            only([
                ("namespace", "(none)"),
                ("workload", "(none)"),
                ("pod", ""),
                ("container", "0123456789ab"),
                ("qtype", "A")
            ]),
            Some(1.0)
        );
        assert_eq!(
            only([
                ("namespace", "(unknown)"),
                ("workload", "(unknown)"),
                ("pod", ""),
                ("container", ""),
                ("qtype", "A")
            ]),
            Some(1.0)
        );
        let queries: f64 = s
            .iter()
            .filter(|x| x.name == q_total)
            .map(|x| x.value)
            .sum();
        assert_eq!(queries, 7.0, "the server side is not counted");

        // An alert, by the workload it is about.
        let alert = Alert {
            detector: Detector::Dga,
            severity: Severity::High,
            summary: String::new(),
            count: 1,
            window_s: 60,
            evidence: Evidence::default(),
            time_ns: q.time_ns,
            who: q.who.clone(),
        };
        sink.alert(&alert).unwrap();
        let s = scrape(&sink);
        let a = [
            ("detector", "dga"),
            ("severity", "high"),
            ("namespace", "shop"),
            ("workload", "Deployment/web"),
        ];
        assert_eq!(value(&s, "dnslens_alerts_total", &a), Some(1.0));
    }

    #[test]
    fn top_domains_take_free_places_at_once_and_the_rest_is_other() {
        let limits = Limits {
            top_domains: 2,
            tracked_domains: 8,
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        let web = pod("shop", "web-1", Some(("Deployment", "web")));
        let ask = |sink: &mut MetricsSink, name: &str, n: usize| {
            for _ in 0..n {
                sink.event(&in_pod(sample::query(1, name, 1, 0), &web, Some("app")))
                    .unwrap();
            }
        };
        ask(&mut sink, "a.example", 5);
        ask(&mut sink, "b.example", 3);
        ask(&mut sink, "c.example", 1);
        let top = "dnslens_top_domains_queries_total";
        let d = |s: &[Series], domain: &'static str| {
            value(
                s,
                top,
                &[
                    ("namespace", "shop"),
                    ("workload", "Deployment/web"),
                    ("domain", domain),
                ],
            )
        };
        // The first two domains took the two places with their first query: no series reads
        // 0 for a name that was queried, beside an `other` that holds its queries.
        let s = scrape(&sink);
        assert_eq!(
            (d(&s, "a.example"), d(&s, "b.example")),
            (Some(5.0), Some(3.0))
        );
        assert_eq!((d(&s, "c.example"), d(&s, "other")), (None, Some(1.0)));
        sink.status(&status(Instant::now()));
        ask(&mut sink, "A.EXAMPLE", 2);
        ask(&mut sink, "c.example", 1);
        let s = scrape(&sink);
        assert_eq!(d(&s, "a.example"), Some(7.0), "names are lower-cased");
        assert_eq!((d(&s, "c.example"), d(&s, "other")), (None, Some(2.0)));
        // c, with more than twice b's queries, takes b's place: b's series leaves, c's starts
        // at 0 (its earlier queries stay in other).
        ask(&mut sink, "c.example", 5);
        sink.status(&status(Instant::now()));
        ask(&mut sink, "c.example", 1);
        let s = scrape(&sink);
        assert_eq!((d(&s, "b.example"), d(&s, "c.example")), (None, Some(1.0)));
        let sum: f64 = s.iter().filter(|x| x.name == top).map(|x| x.value).sum();
        assert_eq!(
            sum + 3.0,
            18.0,
            "every query is under one domain series, or was (b's 3)"
        );
    }

    /// A process name is the workload's to choose: a control character (the key's separator
    /// among them) neither shifts the labels nor reaches the exposition.
    #[test]
    fn hostile_process_names_keep_their_label() {
        let mut sink = MetricsSink::new(Limits::default());
        let mut q = sample::query(1, "x.example", 1, 0);
        q.who.host = Some(true);
        q.who.process.name = "a\x1fb\x1b[2J".into();
        sink.event(&q).unwrap();
        let s = scrape(&sink);
        let labels = [
            ("namespace", "(host)"),
            ("workload", "a\\x1fb\\x1b[2J"),
            ("pod", ""),
            ("container", ""),
            ("qtype", "A"),
        ];
        assert_eq!(value(&s, "dnslens_queries_total", &labels), Some(1.0));
        let text = encode(&sink.registry(), true);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }

    /// Names made up to rotate cannot churn the top-domain series: a domain enters only with
    /// more than twice the queries of the one it replaces, and new series an hour are bounded
    /// for all workloads together (the refused are folded and counted).
    #[test]
    fn rotating_names_mint_no_series_and_new_series_are_budgeted() {
        let limits = Limits {
            top_domains: 2,
            tracked_domains: 8,
            new_domain_series: 5,
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        let ask = |sink: &mut MetricsSink, pod: &Pod, name: &str, n: usize| {
            for _ in 0..n {
                sink.event(&in_pod(sample::query(1, name, 1, 0), pod, Some("app")))
                    .unwrap();
            }
        };
        let top = "dnslens_top_domains_queries_total";
        let exported = |sink: &MetricsSink| -> BTreeSet<String> {
            scrape(sink)
                .into_iter()
                .filter(|s| s.name == top)
                .map(|s| s.labels["domain"].clone())
                .filter(|d| d != OTHER)
                .collect()
        };
        let web = pod("shop", "web-1", Some(("Deployment", "web")));
        ask(&mut sink, &web, "a.example", 10);
        ask(&mut sink, &web, "b.example", 10);
        sink.status(&status(Instant::now()));
        let want: BTreeSet<String> = ["a.example", "b.example"].map(String::from).into();
        assert_eq!(exported(&sink), want);
        // Two new names, each queried more than a and b: without hysteresis they would take
        // both places, and a name made up each second would mint a series each second.
        ask(&mut sink, &web, "r1.example", 15);
        ask(&mut sink, &web, "r2.example", 15);
        sink.status(&status(Instant::now()));
        assert_eq!(exported(&sink), want, "15 queries do not displace 10");
        ask(&mut sink, &web, "hot.example", 21);
        sink.status(&status(Instant::now()));
        let now: BTreeSet<String> = exported(&sink);
        assert!(now.contains("hot.example") && now.len() == 2, "{now:?}");
        // Three more workloads with two busy domains each: 6 new series, room for 2.
        for w in 0..3 {
            let p = pod(
                "shop",
                &format!("w{w}-1"),
                Some(("Deployment", &format!("w{w}"))),
            );
            ask(&mut sink, &p, &format!("x{w}.example"), 5);
            ask(&mut sink, &p, &format!("y{w}.example"), 5);
        }
        sink.status(&status(Instant::now()));
        assert_eq!(exported(&sink).len(), 2 + 2);
        let folded = value(
            &scrape(&sink),
            "dnslens_metrics_folded_total",
            &[("table", "top_domains")],
        );
        assert_eq!(folded, Some(4.0));
    }

    /// Any process can take a name, and every host process name is a workload: host
    /// processes get their share of the tables, and pods the rest.
    #[test]
    fn host_process_names_cannot_crowd_out_the_pods() {
        let limits = Limits {
            placements: 10,
            workloads: 10,
            host_share: HostShare {
                placements: 3,
                workloads: 3,
            },
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        for i in 0..50 {
            let mut q = sample::query(1, "x.example", 1, 0);
            q.who.host = Some(true);
            q.who.process.name = format!("tool{i}").as_str().into();
            sink.event(&q).unwrap();
        }
        let web = pod("shop", "web-1", Some(("Deployment", "web")));
        sink.event(&in_pod(
            sample::query(1, "x.example", 1, 0),
            &web,
            Some("app"),
        ))
        .unwrap();
        let s = scrape(&sink);
        let hosts = s
            .iter()
            .filter(|x| x.name == "dnslens_queries_total" && x.labels["namespace"] == HOST)
            .count();
        assert_eq!(hosts, 3, "host processes keep to their share");
        let pod_labels = [
            ("namespace", "shop"),
            ("workload", "Deployment/web"),
            ("pod", "web-1"),
            ("container", "app"),
            ("qtype", "A"),
        ];
        assert_eq!(value(&s, "dnslens_queries_total", &pod_labels), Some(1.0));
        let folded = value(
            &s,
            "dnslens_metrics_folded_total",
            &[("table", "placements")],
        );
        assert_eq!(folded, Some(47.0));
    }

    /// 100,000 random names from 20,000 pods: the series stay within the limits, the rest is
    /// counted under `other` labels, and the folds are counted.
    #[test]
    fn cardinality_is_bounded_under_a_flood_of_names_and_pods() {
        let limits = Limits {
            placements: 1_000,
            workloads: 100,
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        let pods: Vec<Pod> = (0..20_000)
            .map(|i| {
                pod(
                    &format!("ns{}", i % 50),
                    &format!("p{i}"),
                    Some(("Deployment", &format!("d{}", i % 400))),
                )
            })
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..100_000u64 {
            let p = &pods[(next() % 20_000) as usize];
            let q = in_pod(
                sample::query(i as u16, &format!("{:x}.flood.example", next()), 1, 0),
                p,
                Some("app"),
            );
            sink.event(&q).unwrap();
            sink.event(&answered(&q, 3, 100)).unwrap();
            if i % 10_000 == 0 {
                sink.status(&status(Instant::now()));
            }
        }
        sink.status(&status(Instant::now()));
        let s = scrape(&sink);
        let count = |name: &str| s.iter().filter(|x| x.name == name).count();
        assert_eq!(
            count("dnslens_queries_total"),
            1_001,
            "1,000 placements and the fold"
        );
        assert_eq!(count("dnslens_responses_total"), 1_001);
        assert!(count("dnslens_response_latency_seconds_count") <= 101);
        // Per workload: the top 10 and other.
        assert!(
            count("dnslens_top_domains_queries_total") <= 101 * 11,
            "{}",
            count("dnslens_top_domains_queries_total")
        );
        assert!(s.len() < 30_000, "{} series in all", s.len());
        let folded =
            |table| value(&s, "dnslens_metrics_folded_total", &[("table", table)]).unwrap_or(0.0);
        let in_fold = value(
            &s,
            "dnslens_queries_total",
            &[
                ("namespace", "_other"),
                ("workload", "other"),
                ("pod", "other"),
                ("container", "other"),
            ],
        )
        .unwrap();
        assert!(in_fold > 90_000.0, "{in_fold}");
        let total: f64 = s
            .iter()
            .filter(|x| x.name == "dnslens_queries_total")
            .map(|x| x.value)
            .sum();
        assert_eq!(total, 100_000.0, "every query is counted once");
        assert_eq!(
            folded("placements"),
            2.0 * in_fold,
            "queries and responses folded"
        );
        assert!(folded("workloads") > 0.0);
        assert!(sink.placements.len() <= 1_000 && sink.workloads.len() <= 100);
        assert!(sink
            .workloads
            .values()
            .all(|w| w.domains.len() <= limits.tracked_domains));
    }

    #[test]
    fn idle_series_leave_and_make_room() {
        let limits = Limits {
            placements: 1,
            idle: Duration::from_secs(600),
            ..Limits::default()
        };
        let mut sink = MetricsSink::new(limits);
        let start = Instant::now();
        let a = pod("a", "a-1", None);
        let b = pod("b", "b-1", None);
        sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &a, None))
            .unwrap();
        sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &b, None))
            .unwrap();
        let s = scrape(&sink);
        assert_eq!(
            value(&s, "dnslens_queries_total", &[("pod", "a-1")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "dnslens_queries_total", &[("pod", "other")]),
            Some(1.0)
        );
        sink.status(&status(start + Duration::from_secs(3600)));
        let s = scrape(&sink);
        assert_eq!(value(&s, "dnslens_queries_total", &[("pod", "a-1")]), None);
        assert_eq!(
            value(
                &s,
                "dnslens_response_latency_seconds_count",
                &[("namespace", "a")]
            ),
            None
        );
        assert_eq!(
            value(
                &s,
                "dnslens_top_domains_queries_total",
                &[("namespace", "a")]
            ),
            None
        );
        sink.event(&in_pod(sample::query(1, "x.test", 1, 0), &b, None))
            .unwrap();
        let s = scrape(&sink);
        assert_eq!(
            value(&s, "dnslens_queries_total", &[("pod", "b-1")]),
            Some(1.0)
        );
    }

    #[test]
    fn health_comes_from_the_status() {
        let mut sink = MetricsSink::new(Limits::default());
        let mut st = status(Instant::now());
        let mut kernel = KernelCounters::default();
        kernel.set(KernelCounter::Events, 100);
        kernel.set(KernelCounter::RingbufFull, 7);
        kernel.set(KernelCounter::ReadFailed, 1);
        st.kernel = Some(kernel);
        st.ring = (512, 1 << 20);
        st.output = OutputStats {
            waited: Duration::from_millis(1500),
            dropped_lines: 9,
        };
        st.dnstap = Some(DnstapStats {
            sent: 40,
            dropped: 6,
            reconnects: 1,
        });
        st.lens.decode.errors.insert("truncated", 3);
        st.lens.decode.bad_records = 2;
        st.lens.correlate.evicted = 5;
        st.lens.containers.unknown = 4;
        let flooder = pod("shop", "flood-1", Some(("Deployment", "flood")));
        let flooder = in_pod(sample::query(1, "x.example", 1, 0), &flooder, Some("app")).who;
        let unknown = sample::query(1, "x.example", 1, 0).who;
        let lost = |who: &Attribution, reason, events| Lost {
            who: who.clone(),
            reason,
            events,
        };
        st.lost = vec![
            lost(&flooder, KernelCounter::OverShare, 7),
            lost(&unknown, KernelCounter::RingbufFull, 2),
        ];
        sink.status(&st);
        let s = scrape(&sink);
        let one = |name, label, v| value(&s, name, &[(label, v)]);
        let flooder_lost = [
            ("reason", "over_share"),
            ("namespace", "shop"),
            ("workload", "Deployment/flood"),
            ("pod", "flood-1"),
            ("container", "app"),
        ];
        assert_eq!(
            value(&s, "dnslens_events_lost_total", &flooder_lost),
            Some(7.0)
        );
        assert_eq!(
            value(
                &s,
                "dnslens_events_lost_total",
                &[("reason", "ringbuf_full"), ("namespace", UNKNOWN)]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&s, "dnslens_output_wait_seconds_total", &[]),
            Some(1.5)
        );
        assert_eq!(
            value(&s, "dnslens_output_dropped_lines_total", &[]),
            Some(9.0)
        );
        assert_eq!(value(&s, "dnslens_dnstap_sent_total", &[]), Some(40.0));
        assert_eq!(value(&s, "dnslens_dnstap_dropped_total", &[]), Some(6.0));
        assert_eq!(value(&s, "dnslens_events_captured_total", &[]), Some(100.0));
        let unknown_read_failed = [("reason", "read_failed"), ("namespace", UNKNOWN)];
        assert_eq!(
            value(&s, "dnslens_events_lost_total", &unknown_read_failed),
            Some(1.0)
        );
        assert_eq!(value(&s, "dnslens_ringbuf_used_bytes", &[]), Some(512.0));
        assert_eq!(
            value(&s, "dnslens_ringbuf_size_bytes", &[]),
            Some(1048576.0)
        );
        assert_eq!(
            one("dnslens_decode_errors_total", "kind", "truncated"),
            Some(3.0)
        );
        assert_eq!(
            one("dnslens_decode_errors_total", "kind", "bad_record"),
            Some(2.0)
        );
        assert_eq!(
            one("dnslens_state_evictions_total", "table", "pairing"),
            Some(5.0)
        );
        assert_eq!(
            one("dnslens_enrichment_misses_total", "what", "pod"),
            Some(4.0)
        );
        // Kernel counters follow the source, which only grows; losses come as increments.
        st.kernel
            .as_mut()
            .unwrap()
            .set(KernelCounter::ReadFailed, 9);
        st.lost = vec![lost(&flooder, KernelCounter::OverShare, 3)];
        sink.status(&st);
        let s = scrape(&sink);
        assert_eq!(
            value(&s, "dnslens_events_lost_total", &unknown_read_failed),
            Some(9.0)
        );
        assert_eq!(
            value(&s, "dnslens_events_lost_total", &flooder_lost),
            Some(10.0)
        );
    }

    /// Each kernel counter is in the one family that says what it is, and the losses all in
    /// `dnslens_events_lost_total` (those the kernel charges to sources come from the status's
    /// `lost`), so that the family sums to every event lost.
    #[test]
    fn kernel_counters_are_each_in_the_family_that_says_what_they_are() {
        let mut sink = MetricsSink::new(Limits::default());
        let mut st = status(Instant::now());
        let mut kernel = KernelCounters::default();
        for (i, &c) in KernelCounter::ALL.iter().enumerate() {
            kernel.set(c, 10 + i as u64);
        }
        st.kernel = Some(kernel);
        let unknown = sample::query(1, "x.example", 1, 0).who;
        st.lost = crate::losses::REASONS
            .map(|reason| Lost {
                who: unknown.clone(),
                reason,
                events: kernel.get(reason),
            })
            .to_vec();
        sink.status(&st);
        let s = scrape(&sink);
        let sum = |name| {
            s.iter()
                .filter(|x| x.name == name)
                .map(|x| x.value)
                .sum::<f64>()
        };
        assert_eq!(sum("dnslens_events_lost_total"), kernel.lost() as f64);
        for &c in KernelCounter::ALL {
            let lost = value(&s, "dnslens_events_lost_total", &[("reason", c.name())]);
            assert_eq!(lost.is_some(), c.is_loss(), "{c:?}");
        }
        let events = kernel.get(KernelCounter::Events) as f64;
        assert_eq!(sum("dnslens_events_captured_total"), events);
        let rest: u64 = kernel
            .iter()
            .filter(|(c, _)| *c != KernelCounter::Events && !c.is_loss())
            .map(|(_, n)| n)
            .sum();
        let partial = sum("dnslens_events_partial_total");
        assert_eq!(
            partial
                + sum("dnslens_exec_records_lost_total")
                + sum("dnslens_server_side_kept_total"),
            rest as f64
        );
    }

    /// The exposition has exactly the metrics of names.rs, with their types and labels.
    #[test]
    fn exposition_matches_the_names_table() {
        let mut sink = MetricsSink::new(Limits::default());
        let web = pod("shop", "web-1", Some(("Deployment", "web")));
        let q = in_pod(sample::query(1, "a.test", 1, 0), &web, Some("app"));
        sink.event(&q).unwrap();
        sink.event(&answered(&q, 0, 10)).unwrap();
        let mut u = q.clone();
        u.kind = Kind::Unanswered;
        sink.event(&u).unwrap();
        sink.alert(&Alert {
            detector: Detector::Tunneling,
            severity: Severity::Medium,
            summary: String::new(),
            count: 1,
            window_s: 60,
            evidence: Evidence::default(),
            time_ns: q.time_ns,
            who: q.who.clone(),
        })
        .unwrap();
        let hit = Some(dnslens_lens::lookup::via::Cache::Hit);
        let l = lookups::tests::lookup(&q.who, Outcome::Answered, 10, 2, 1, hit);
        sink.lookup(&l).unwrap();
        let mut st = status(Instant::now());
        st.kernel = Some(KernelCounters::default());
        sink.status(&st);
        let text = encode(&sink.registry(), false);
        let types: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split_once(' ').unwrap())
            .collect();
        let want: BTreeMap<&str, &str> = names::METRICS
            .iter()
            .map(|m| {
                let kind = match m.kind {
                    Type::Counter => "counter",
                    Type::Gauge => "gauge",
                    Type::Histogram => "histogram",
                };
                (m.name, kind)
            })
            .collect();
        assert_eq!(types, want);
        for series in scrape(&sink) {
            let row = names::METRICS
                .iter()
                .find(|m| series.name.starts_with(m.name))
                .unwrap_or_else(|| panic!("{} is not in names.rs", series.name));
            let mut labels: BTreeSet<&str> = row.labels.iter().copied().collect();
            if series.name.ends_with("_bucket") {
                labels.insert("le");
            }
            let got: BTreeSet<&str> = series.labels.keys().map(String::as_str).collect();
            assert_eq!(got, labels, "{series:?}");
        }
        let om = encode(&sink.registry(), true);
        assert!(
            om.contains("# UNIT dnslens_response_latency_seconds seconds"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
        promtool_check_metrics(&text);
    }

    /// `promtool check metrics` finds nothing to say of the exposition (names, units, help).
    /// Without promtool the check is skipped, except in CI (scripts/install-deps.sh installs it).
    fn promtool_check_metrics(text: &str) {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let spawned = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut promtool) = spawned else {
            assert!(std::env::var_os("CI").is_none(), "CI needs promtool");
            println!("skipped promtool check metrics: needs promtool (Debian package prometheus)");
            return;
        };
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        drop(stdin);
        let out = promtool.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{said}\n{text}"
        );
    }
}
