//! The run, in libbpf-bootstrap's order: load and attach, announce, poll -> pipeline -> filter
//! -> sink until stopped, then the counters on stderr. The detectors see every event the
//! pipeline makes, before the filter (which chooses the events shown, never the alerts).
//! `trace`, `count`, `top` and `agent` share this one loop and differ only in their sink. Once
//! attached, the capabilities the run no longer needs are dropped ([`crate::privileges`]).

use std::io;
use std::time::{Duration, Instant};

use anyhow::Context;
use dnslens_detect::{Alert, ProcFs, ProcessView};
use dnslens_lens::clock::{self, WallClock};
use dnslens_lens::filter::Filter;
use dnslens_lens::lookup::via::Forwards;
use dnslens_lens::lookup::{Lookup, LookupConfig, Lookups};
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::served::ServerSide;
use dnslens_lens::text::counted;
use dnslens_lens::{DnsEvent, Observed, Pipeline, PipelineConfig};
use dnslens_probe::{KernelCounters, Probe};

use crate::cluster::Connection;
use crate::detect::Detection;
use crate::libc_hooks::LibcHooking;
use crate::losses::{LossWindow, SourceLosses, REASONS};
use crate::privileges;
use crate::settings::{Detect, Learn, Settings};
use crate::sink::dnstap::DnstapSink;
use crate::sink::pcapng::PcapngSink;
use crate::sink::{self, is_broken_pipe, AnySink, Output, OutputStats, Status, OUTPUT_PATIENCE};
use crate::stop;
use crate::units::DnstapAddress;

mod report;
pub use report::announce;
use report::{kubernetes_line, loss_warnings, report};

/// How long one poll waits for records: also how late a stop, a timeout or an interval can be.
const POLL: Duration = Duration::from_millis(100);
/// The wall-clock offset is measured again this often, in case the system time was stepped.
const REMEASURE: Duration = Duration::from_secs(60);
/// How often the kernel's loss counters are checked while running.
const LOSS_CHECK: Duration = Duration::from_secs(5);
/// Mount namespaces whose resolv.conf the lookup stage keeps.
const RESOLV_CONFS: usize = 1024;
/// How often a sink that exports the run's health gets a [`Status`].
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// `trace`, `count` and `top`: their sinks show on stdout.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let output = settings.output.clone();
    capture(settings, "stdout", |pods| sink::build(&output, pods))
}

/// Loads and attaches, then runs the poll loop into the sink `make_sink` builds once the probe
/// is attached (told whether a pod directory names pods), until stopped; `output` names where
/// the sink writes, for errors.
pub fn capture(
    mut settings: Settings,
    output: &str,
    make_sink: impl FnOnce(bool) -> anyhow::Result<AnySink>,
) -> anyhow::Result<()> {
    let copied = settings.pcapng.is_some() || settings.dnstap.is_some();
    let server_side = settings.output.server_side(&settings.filter, copied);
    settings.probe.server_side_events = server_side == ServerSide::Events;
    let mut probe = Probe::load(&settings.probe)?;
    // Before any thread is started: each keeps the capabilities it was started with.
    let writes_files = matches!(&settings.output, Output::Agent(a) if a.path.is_some())
        || matches!(&settings.dnstap, Some(d) if matches!(d.address, DnstapAddress::File(_)))
        || settings.pcapng.is_some()
        || settings
            .detect
            .as_ref()
            .is_some_and(|d| d.learn != Learn::Off && d.baseline_path.is_some());
    let lookups_only = settings.output.lookups_only();
    let hooks_libc = settings.output.hooks_libc();
    match privileges::drop_after_attach(writes_files, hooks_libc, || probe.counters().is_ok()) {
        Ok(kept) if kept.bpf_for_maps() => say!(
            "dnslens: CAP_BPF kept after attaching: this kernel asks for it to read a map \
             (Linux before 6.5 with kernel.unprivileged_bpf_disabled set); kept: {kept}"
        ),
        Ok(_) => {}
        Err(e) => say!("dnslens: warning: capabilities not dropped after attaching: {e:#}"),
    }
    // Started before tracing is announced, so that the first list is under way; it runs on a
    // thread of its own and enrichment only reads what it has.
    let cluster = Connection::start(&settings.kubernetes)?;
    let pods = cluster.directory();
    if let Some(line) = kubernetes_line(
        pods.is_some(),
        cluster.node(),
        settings.kubernetes.enabled && settings.filter.needs_pod_metadata(),
    ) {
        say!("{line}");
    }
    for line in announce(probe.hooks(), &settings.probe.ports, probe.mode()) {
        say!("{line}");
    }
    if let Some(Detect {
        learn: Learn::For(d),
        baseline_path: Some(path),
        ..
    }) = &settings.detect
    {
        say!(
            "dnslens: learning what each workload resolves and runs for {d:?}, into {}",
            path.display()
        );
    }
    let mut detection = settings
        .detect
        .take()
        .map(|d| Detection::live(d, Instant::now()));
    stop::install().context("installing the SIGINT/SIGTERM handlers")?;

    let config = PipelineConfig {
        timeout_ns: settings.timeout.as_nanos().min(u128::from(u64::MAX)) as u64,
        node: cluster.node().map(str::to_string),
        server_side,
        ..PipelineConfig::for_host()
    };
    let mut pipeline = Pipeline::new(config, WallClock::measure()).with_pod_directory(pods.clone());
    let mut sink = make_sink(pods.is_some())?;
    let mut dnstap = settings
        .dnstap
        .as_ref()
        .map(|d| DnstapSink::start(d, &cluster.identity()));
    let mut pcapng = settings.pcapng.as_ref().map(PcapngSink::open).transpose()?;
    let mut libc = hooks_libc
        .then(LibcHooking::start)
        .transpose()
        .context("starting the libc worker thread")?;
    // Forwarder hops are made only where a forwarder's server side comes up.
    let hops = server_side == ServerSide::Events;
    let mut lookups = settings.output.lookups().then(|| {
        // A process's resolv.conf is read once, on a worker: the file is the workload's.
        let mut view = ProcFs::on_worker(RESOLV_CONFS);
        let config = LookupConfig {
            server_side: hops,
            ..LookupConfig::default()
        };
        Lookups::new(config, Box::new(move |pid| view.resolv_conf(pid)))
    });
    // A forwarder's upstream query names the clients it serves, from the hop stage that runs
    // inside the lookup stage; without one (`trace`), the hop stage runs alone.
    let mut forwards = (lookups.is_none() && hops).then(Forwards::new);
    let (interval, max_events, alerts_only) = match settings.output {
        Output::Trace {
            max_events,
            alerts_only,
            ..
        } => (None, max_events, alerts_only),
        Output::Count { interval, .. } => (Some(interval), None, false),
        Output::Top { .. } => (None, None, false),
        Output::Agent(_) => (None, None, false),
    };

    let mut ran = Run {
        probe: &mut probe,
        pipeline: &mut pipeline,
        filter: &settings.filter,
        sink: &mut sink,
        shown: 0,
        max_events,
        detection: detection.as_mut(),
        lookups: lookups.as_mut(),
        forwards: forwards.as_mut(),
        dnstap: dnstap.as_mut(),
        lookups_only,
        libc: libc.as_mut(),
        alerts_only,
        cluster: &cluster,
        output,
        pcapng: pcapng.as_mut(),
    };
    let result = ran.poll_until_stopped(settings.duration, interval);
    let mut shown = ran.shown;
    // Lookups still open end with the run, as they stand.
    if let Some(l) = lookups.as_mut() {
        let mut printed = Printed::new(&mut sink, &mut shown, max_events, alerts_only);
        l.expire(u64::MAX, &mut |lookup| {
            printed.lookup(lookup, &settings.filter)
        });
    }
    // The detectors' summaries and a baseline still being learned, before the sink's end.
    let detected = match detection.as_mut() {
        Some(d) => {
            let mut printed = Printed::new(&mut sink, &mut shown, max_events, alerts_only);
            let finished = d.finish(&mut |a| printed.alert(&a));
            let failed = printed.failed.take();
            finished.and(
                failed
                    .map_or(Ok(()), Err)
                    .with_context(|| format!("writing to {output}")),
            )
        }
        None => Ok(()),
    };
    let finished = sink.as_sink().finish(clock::realtime_now_ns());
    let dnstap = dnstap.as_mut().map(DnstapSink::finish);
    let pcapng_finished = pcapng.as_mut().map_or(Ok(()), |p| {
        let name = &settings.pcapng.as_ref().expect("a sink for --pcapng").path;
        p.finish()
            .with_context(|| format!("writing to --pcapng {}", name.display()))
    });

    let what = if alerts_only {
        ("alert", "alerts")
    } else {
        ("event", "events")
    };
    // Only trace prints rows to count; top draws and count prints intervals.
    let printed = matches!(settings.output, Output::Trace { .. }).then_some((shown, what));
    report(
        &probe,
        &pipeline,
        lookups.as_ref(),
        detection.as_ref(),
        printed,
        settings.verbose,
    );
    let cost = sink.output();
    if !cost.is_zero() {
        say!(
            "dnslens: output: reading waited {} ms in all for the output to take lines; {} \
             lines dropped while it took none for {} s or more",
            cost.waited.as_millis(),
            cost.dropped_lines,
            OUTPUT_PATIENCE.as_secs()
        );
    }
    if let Some(d) = dnstap {
        say!(
            "dnslens: dnstap: {} sent, {} dropped (queue full or receiver gone), {} reconnects",
            counted(d.sent, "message", "messages"),
            d.dropped,
            d.reconnects
        );
    }
    if let Some(p) = &pcapng {
        let (cost, evicted) = (p.output(), p.streams_evicted());
        if !cost.is_zero() || evicted > 0 {
            say!(
                "dnslens: pcapng: reading waited {} ms in all for the file to take packets; {} \
                 packets dropped while it took none for {} s or more; {} TCP sockets' sequence \
                 numbers forgotten for want of room",
                cost.waited.as_millis(),
                cost.dropped_lines,
                OUTPUT_PATIENCE.as_secs(),
                evicted
            );
        }
    }
    if let Some(line) = libc.as_ref().and_then(|h| h.report(&probe)) {
        say!("dnslens: {line}");
    }
    if let Some(line) = cluster.report() {
        say!("dnslens: {line}");
    }
    match result
        .and(detected)
        .and(finished.map_err(Into::into))
        .and(pcapng_finished)
    {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

struct Run<'a> {
    probe: &'a mut Probe,
    pipeline: &'a mut Pipeline,
    filter: &'a Filter,
    sink: &'a mut AnySink,
    shown: u64,
    max_events: Option<u64>,
    detection: Option<&'a mut Detection>,
    /// Events go to the lookup stage, whose lookups go to the sink.
    lookups: Option<&'a mut Lookups>,
    /// `trace` without the lookup stage: the forwarder hop alone, for `served` on events.
    forwards: Option<&'a mut Forwards>,
    /// `--dnstap`: every event, those the filter passes sent.
    dnstap: Option<&'a mut DnstapSink>,
    /// `trace --lookups`, `count --lookups`: events go to the lookup stage only.
    lookups_only: bool,
    /// `trace --lookups`, `count --lookups`, `top`: glibc's resolver calls hooked as processes
    /// show up.
    libc: Option<&'a mut LibcHooking>,
    /// `--alerts`: events go to the detectors only.
    alerts_only: bool,
    cluster: &'a Connection,
    /// Where the sink writes, for errors.
    output: &'a str,
    /// `--pcapng`: every message the filter lets through, as a packet.
    pcapng: Option<&'a mut PcapngSink>,
}

/// What one poll turn prints: events that pass the filter (unless only alerts are shown) and
/// alerts, counted against `--count` (events, or alerts with `--alerts`). The first write
/// error stops the printing and is kept for the turn to return.
struct Printed<'a> {
    sink: &'a mut AnySink,
    shown: &'a mut u64,
    max: Option<u64>,
    alerts_only: bool,
    failed: Option<io::Error>,
}

impl<'a> Printed<'a> {
    fn new(sink: &'a mut AnySink, shown: &'a mut u64, max: Option<u64>, alerts_only: bool) -> Self {
        Printed {
            sink,
            shown,
            max,
            alerts_only,
            failed: None,
        }
    }

    fn full(&self) -> bool {
        self.max.is_some_and(|max| *self.shown >= max)
    }

    fn event(&mut self, event: &DnsEvent, filter: &Filter) {
        if self.alerts_only || self.failed.is_some() || self.full() || !filter.matches(event) {
            return;
        }
        match self.sink.as_sink().event(event) {
            Ok(true) => *self.shown += 1,
            Ok(false) => {}
            Err(e) => self.failed = Some(e),
        }
    }

    /// Lookups are made of every client message; the filters then choose lookups (the rule:
    /// `Filter::matches_lookup`).
    fn lookup(&mut self, lookup: &Lookup, filter: &Filter) {
        if self.failed.is_some() || self.full() || !filter.matches_lookup(lookup) {
            return;
        }
        match self.sink.as_sink().lookup(lookup) {
            Ok(true) => *self.shown += 1,
            Ok(false) => {}
            Err(e) => self.failed = Some(e),
        }
    }

    /// Connects are not filtered (the filters are about DNS messages) and not counted.
    fn connect(&mut self, connect: &ConnectEvent) {
        if self.alerts_only || self.failed.is_some() || self.full() {
            return;
        }
        if let Err(e) = self.sink.connect(connect) {
            self.failed = Some(e);
        }
    }

    fn alert(&mut self, alert: &Alert) {
        if self.failed.is_some() || (self.alerts_only && self.full()) {
            return;
        }
        match self.sink.as_sink().alert(alert) {
            Ok(()) => *self.shown += u64::from(self.alerts_only),
            Err(e) => self.failed = Some(e),
        }
    }
}

impl Run<'_> {
    fn poll_until_stopped(
        &mut self,
        duration: Option<Duration>,
        interval: Option<Duration>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let deadline = duration.map(|d| start + d);
        let mut next_interval = interval.map(|i| start + i);
        let mut next_remeasure = start + REMEASURE;
        let mut next_loss_check = start + LOSS_CHECK;
        // The first status right away: the agent is ready as soon as it is attached.
        let mut next_status = start;
        let mut lost_reported = 0;
        let mut cost_reported = OutputStats::default();
        let mut sources = SourceLosses::default();
        let mut loss_window = LossWindow::default();
        while !stop::stopped() {
            let Run {
                probe,
                pipeline,
                filter,
                sink,
                shown,
                max_events,
                detection,
                lookups,
                forwards,
                dnstap,
                lookups_only,
                libc,
                alerts_only,
                cluster,
                output,
                pcapng,
            } = self;
            let mut printed = Printed::new(sink, shown, *max_events, *alerts_only);
            let mut pcapng_failed = None;
            let mut emit = |observed: Observed<'_>| match observed {
                Observed::Dns(event, wire) => {
                    let served = match (lookups.as_deref_mut(), forwards.as_deref_mut()) {
                        (Some(l), _) => {
                            l.event(event, &mut |lookup| printed.lookup(lookup, filter))
                        }
                        (None, Some(f)) => f.event(event),
                        (None, None) => Vec::new(),
                    };
                    // Only a forwarder's upstream queries pay for the copy.
                    let with_served;
                    let event = if served.is_empty() {
                        event
                    } else {
                        with_served = DnsEvent {
                            served,
                            ..event.clone()
                        };
                        &with_served
                    };
                    let passes = filter.matches(event);
                    if let Some(d) = dnstap.as_deref_mut() {
                        d.event(event, wire, passes);
                    }
                    if let Some(h) = libc.as_deref_mut() {
                        h.process(event.who.process.pid, event.who.ids.process_start_ns);
                    }
                    if let (Some(p), Some(wire)) = (pcapng.as_deref_mut(), wire) {
                        if pcapng_failed.is_none() && passes {
                            pcapng_failed = p.message(event, wire).err();
                        }
                    }
                    if !*lookups_only {
                        printed.event(event, filter);
                    }
                    if let Some(d) = detection.as_deref_mut() {
                        d.event(event, &mut |a| printed.alert(&a));
                    }
                }
                // Only lookups count resends: to the others they are the first query's.
                Observed::Resend(event) => {
                    if let Some(l) = lookups.as_deref_mut() {
                        l.event(event, &mut |lookup| printed.lookup(lookup, filter));
                    }
                }
                Observed::Libc(call) => {
                    if let Some(h) = libc.as_deref_mut() {
                        h.process(call.who.process.pid, call.who.ids.process_start_ns);
                    }
                    if let Some(l) = lookups.as_deref_mut() {
                        l.libc(call, &mut |lookup| printed.lookup(lookup, filter));
                    }
                }
                Observed::Connect(connect) => {
                    printed.connect(connect);
                    if let Some(d) = detection.as_deref_mut() {
                        d.connect(connect, &mut |a| printed.alert(&a));
                    }
                }
            };
            probe.poll_gathered(POLL, |record| pipeline.record(record, &mut emit))?;
            let mono_now = clock::monotonic_now_ns();
            pipeline.expire(mono_now, &mut |e| emit(Observed::Dns(e, None)));
            if let Some(l) = lookups.as_deref_mut() {
                l.expire(mono_now, &mut |lookup| printed.lookup(lookup, filter));
                if let Some(h) = libc.as_deref_mut() {
                    h.attach(probe, l);
                }
            }
            if let Some(f) = forwards.as_deref_mut() {
                f.expire(mono_now);
            }
            if let Some(d) = detection.as_deref_mut() {
                d.tick(mono_now, Instant::now(), &mut |a| printed.alert(&a));
            }
            if let Some(e) = printed.failed.take() {
                return Err(e).with_context(|| format!("writing to {output}"));
            }
            if let Some(p) = pcapng.as_deref_mut() {
                pcapng_failed
                    .map_or_else(|| p.flush(), Err)
                    .context("writing to --pcapng")?;
            }
            let full = printed.full();
            // Every sink is flushed once per batch of records.
            sink.as_sink()
                .flush()
                .with_context(|| format!("writing to {output}"))?;
            if full {
                break;
            }
            let now = Instant::now();
            if now >= next_status {
                let kernel = probe.counters().ok();
                let lost = kernel.as_ref().map_or_else(Vec::new, |k| {
                    sources.read(&probe.sources(), k, |key, source| {
                        pipeline.attribute_source(key, source, mono_now)
                    })
                });
                loss_window.add(&lost);
                if let AnySink::Agent(agent) = &mut **sink {
                    let status = Status {
                        now,
                        output: agent.output(),
                        kernel,
                        ring: probe.ring_use(),
                        lost,
                        lens: pipeline.stats(),
                        lookups: lookups.as_deref().map(Lookups::stats),
                        detect: detection.as_deref().map(Detection::stats),
                        cluster: cluster.status(),
                        dnstap: dnstap.as_deref().map(DnstapSink::stats),
                    };
                    agent.status(&status);
                }
                next_status = now + STATUS_EVERY;
            }
            if let (Some(next), Some(every)) = (next_interval.as_mut(), interval) {
                if now >= *next {
                    if let AnySink::Count(count) = &mut **sink {
                        count
                            .interval(clock::realtime_now_ns())
                            .with_context(|| format!("writing to {output}"))?;
                    }
                    while *next <= now {
                        *next += every;
                    }
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if now >= next_loss_check {
                // Loss is said when it happens, not only in the final counters.
                let cost = self.sink.output();
                if let Ok(counters) = self.probe.counters() {
                    let dropped = dropped(&counters);
                    for line in loss_warnings(dropped - lost_reported, cost.since(cost_reported)) {
                        say!("{line}");
                    }
                    if let Some(line) = loss_window.take_line() {
                        say!("{line}");
                    }
                    lost_reported = dropped;
                    cost_reported = cost;
                }
                next_loss_check = now + LOSS_CHECK;
            }
            if now >= next_remeasure {
                pipeline.clock_mut().remeasure();
                next_remeasure = now + REMEASURE;
            }
        }
        Ok(())
    }
}

/// Events the kernel dropped for want of room in the ring buffer, for any reason.
fn dropped(counters: &KernelCounters) -> u64 {
    REASONS.iter().map(|&r| counters.get(r)).sum()
}
