//! The detector stage as the binary runs it: [`Detection`] builds the detectors from the
//! checked settings and keeps the learning schedule (`--learn`: learn into the baseline, save
//! it, then judge against it); [`replay`] is `dnslens detect --input`, the same stage over a
//! saved trace (JSON lines, or a dnstap file: [`dnstap`]).

mod dnstap;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use dnslens_detect::{Alert, Config, DetectStats, Detector, Detectors, FakeProcesses};
use dnslens_lens::counters::{self, CounterKind};
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::text::counted;
use dnslens_lens::{clock, DnsEvent};
use dnslens_probe::Named;

use crate::settings::{Detect, Learn, Replay};
use crate::sink::{self, is_broken_pipe, Output, Sink};
use dnslens_lens::schema::{self, Line};
use dnslens_lens::text::Printable;

/// Bad input lines whose error is printed; the rest are only counted.
const BAD_LINES_SHOWN: u64 = 5;

/// What a replay cannot judge, said after its counts: a detector quiet on a replay is not a
/// verdict on the trace (docs/detectors.md, "In the binary").
const REPLAY_LIMITS: [&str; 3] = [
    "a replay cannot judge resolver_bypass but on DNS-over-TLS ports: a server is judged \
     against the resolv.conf the process sees, read from /proc while it runs, and the \
     processes are gone",
    "a replay cannot tell a deleted executable from a replaced one (unknown_binary says \
     medium): the files are checked as the process sees them, while it runs",
    "a replay cannot judge unresolved_connect: it judges processes started after the \
     detectors, and the trace has no process start times",
];

pub struct Detection {
    detectors: Detectors,
    baseline_path: Option<PathBuf>,
    /// Learning for a time (`trace --learn`) ends then.
    learn_until: Option<Instant>,
    /// The baseline learned more than the file holds.
    unsaved: bool,
}

impl Detection {
    /// For a live trace: the detectors ask /proc about processes (resolv.conf, executables).
    pub fn live(detect: Detect, now: Instant) -> Detection {
        let learn_until = match detect.learn {
            Learn::For(d) => Some(now + d),
            Learn::Off | Learn::Throughout => None,
        };
        Detection::new(detect, Detectors::new, learn_until)
    }

    /// For a replay: the processes are gone, so the detectors know nothing of them (no
    /// resolv.conf to judge a server by, no file to tell a deleted executable from a replaced
    /// one).
    pub fn replay(detect: Detect) -> Detection {
        let replayed = |config| Detectors::with_view(config, Box::new(FakeProcesses::default()));
        Detection::new(detect, replayed, None)
    }

    fn new(
        detect: Detect,
        make: impl FnOnce(Config) -> Detectors,
        learn_until: Option<Instant>,
    ) -> Detection {
        let Detect {
            config,
            baseline,
            baseline_path,
            learn,
        } = detect;
        let mut detectors = make(config);
        if let Some(baseline) = baseline {
            detectors.set_baseline(baseline);
        }
        let learning = learn != Learn::Off;
        detectors.set_learning(learning);
        Detection {
            detectors,
            baseline_path,
            learn_until,
            unsaved: learning,
        }
    }

    pub fn event(&mut self, e: &DnsEvent, out: &mut impl FnMut(Alert)) {
        self.detectors.event(e, out);
    }

    pub fn connect(&mut self, c: &ConnectEvent, out: &mut impl FnMut(Alert)) {
        self.detectors.connect(c, out);
    }

    /// Once per poll turn: time passes for the detectors (CLOCK_MONOTONIC), and a learning
    /// phase that is over is saved and ended.
    pub fn tick(&mut self, now_mono_ns: u64, now: Instant, out: &mut impl FnMut(Alert)) {
        self.detectors.tick(now_mono_ns, out);
        if self.learn_until.is_some_and(|until| now >= until) {
            self.learn_until = None;
            self.detectors.set_learning(false);
            // Seeds the new-domain sets from what was learned, as a loaded baseline does.
            let learned = self.detectors.baseline().clone();
            self.detectors.set_baseline(learned);
            match self.save() {
                Ok(line) => say!("dnslens: {line}; judging against it from now on"),
                Err(e) => {
                    say!("dnslens: {e:#}; judging against what was learned, saving again on exit")
                }
            }
        }
    }

    /// End of the run: pending lookups fail, summaries come out, and a baseline still being
    /// learned (or not saved yet) is saved.
    pub fn finish(&mut self, out: &mut impl FnMut(Alert)) -> anyhow::Result<()> {
        self.detectors.finish(out);
        if self.unsaved {
            let line = self.save()?;
            say!("dnslens: {line}");
        }
        Ok(())
    }

    /// Writes the baseline (whole, through a temporary file); says what was saved.
    fn save(&mut self) -> anyhow::Result<String> {
        let path = self
            .baseline_path
            .as_ref()
            .context("learning needs a baseline file (settings require --baseline)")?;
        let baseline = self.detectors.baseline();
        baseline.save(path)?;
        self.unsaved = false;
        Ok(format!(
            "baseline of {} saved to {}",
            counted(baseline.workloads.len() as u64, "workload", "workloads"),
            path.display()
        ))
    }

    /// The counters, one line per part.
    pub fn report(&self) -> Vec<String> {
        report_lines(&self.stats())
    }

    pub fn stats(&self) -> DetectStats {
        self.detectors.stats()
    }
}

fn report_lines(s: &DetectStats) -> Vec<String> {
    let total: u64 = s.alerts.iter().sum();
    let per: Vec<String> = Detector::ALL
        .iter()
        .map(|&d| format!("{d} {}", s.alerts(d)))
        .collect();
    let mut rows = Vec::new();
    s.counters(&mut rows);
    vec![
        format!(
            "detectors: {} ({}), {} folded into summaries",
            counted(total, "alert", "alerts"),
            per.join(", "),
            counted(s.aggregated, "repeat", "repeats")
        ),
        format!(
            "detector state, entries evicted from full tables (baseline: not learned at a \
             limit): {}",
            counters::rows_text(&rows, CounterKind::Eviction)
        ),
    ]
}

/// What `detect` read.
#[derive(Debug, Default, PartialEq, Eq)]
struct InputCounts {
    lines: u64,
    events: u64,
    connects: u64,
    alerts_skipped: u64,
    bad: u64,
}

/// `dnslens detect --input FILE`: the detectors over a saved trace, in file order.
pub fn replay(replay: Replay) -> anyhow::Result<()> {
    let name = replay.input.display().to_string();
    let mut input: Box<dyn BufRead> = if replay.input.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&replay.input).with_context(|| {
            format!(
                "cannot open --input {name}: give a file `dnslens trace --json` wrote, or a \
                 dnstap file"
            )
        })?;
        Box::new(BufReader::new(file))
    };
    let tap = dnstap::is_dnstap(
        input
            .fill_buf()
            .with_context(|| format!("reading {name}"))?,
    );
    // The alerts, as `trace --alerts` shows them; the saved events name their pods.
    let output = Output::Trace {
        json: replay.json,
        color: replay.color,
        max_events: None,
        alerts_only: true,
        connects: false,
        lookups: false,
        columns: None,
    };
    let mut built = sink::build(&output, true)?;
    let sink = built.as_sink();
    let mut detection = Detection::replay(replay.detect);
    let mut counts = InputCounts::default();
    let mut tapped = dnstap::DnstapCounts::default();
    let result = match tap {
        true => {
            let mut failed = None;
            let fed = dnstap::feed(
                input,
                &name,
                &mut detection,
                &mut |a| {
                    if failed.is_none() {
                        failed = sink.alert(&a).err();
                    }
                },
                &mut tapped,
            );
            fed.and(failed.map_or(Ok(()), Err).context("writing to stdout"))
        }
        false => feed(input, &name, &mut detection, sink, &mut counts),
    };
    let finished = result.and_then(|()| {
        let mut failed = None;
        detection.finish(&mut |a| {
            if failed.is_none() {
                failed = sink.alert(&a).err();
            }
        })?;
        failed.map_or(Ok(()), Err).context("writing to stdout")?;
        sink.finish(clock::realtime_now_ns())
            .context("writing to stdout")
    });
    match tap {
        true => say!(
            "dnslens: input: {} dnstap messages, {} client queries and responses, {} of other \
             types skipped, {} bad messages skipped",
            tapped.messages,
            tapped.events,
            tapped.other,
            tapped.bad
        ),
        false => say!(
            "dnslens: input: {} lines, {} DNS events, {} connects, {} alert lines skipped, {} \
             bad lines skipped",
            counts.lines,
            counts.events,
            counts.connects,
            counts.alerts_skipped,
            counts.bad
        ),
    }
    for line in detection
        .report()
        .iter()
        .map(String::as_str)
        .chain(REPLAY_LIMITS)
    {
        say!("dnslens: {line}");
    }
    match finished {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// Reads every line of `input` into the detectors, alerts into `sink`.
fn feed(
    mut input: impl BufRead,
    name: &str,
    detection: &mut Detection,
    sink: &mut dyn Sink,
    counts: &mut InputCounts,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut failed: Option<io::Error> = None;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {name} after line {}", counts.lines))?;
        if n == 0 {
            break;
        }
        counts.lines += 1;
        let parsed = std::str::from_utf8(&buf)
            .map_err(|e| anyhow::anyhow!("not UTF-8: {e}"))
            .and_then(|line| Ok(schema::parse_line(line)?));
        match parsed {
            Ok(None) => {}
            Ok(Some(Line::Alert)) => counts.alerts_skipped += 1,
            Ok(Some(Line::Event(e))) => {
                counts.events += 1;
                detection.event(&e, &mut |a| {
                    if failed.is_none() {
                        failed = sink.alert(&a).err();
                    }
                });
            }
            Ok(Some(Line::Connect(c))) => {
                counts.connects += 1;
                detection.connect(&c, &mut |a| {
                    if failed.is_none() {
                        failed = sink.alert(&a).err();
                    }
                });
            }
            Err(e) => {
                counts.bad += 1;
                if counts.bad <= BAD_LINES_SHOWN {
                    // The error quotes the line, which is the trace's: no control characters.
                    let why = format!("{e:#}");
                    say!(
                        "dnslens: {name}:{}: {}; line skipped",
                        counts.lines,
                        Printable(&why)
                    );
                }
            }
        }
        if let Some(e) = failed.take() {
            return Err(e).context("writing to stdout");
        }
    }
    if counts.bad > BAD_LINES_SHOWN {
        say!(
            "dnslens: {name}: {} more bad lines skipped",
            counts.bad - BAD_LINES_SHOWN
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::JsonSink;
    use dnslens_detect::score::looks_random;
    use dnslens_detect::{Baseline, Config};
    use dnslens_lens::model::sample;
    use dnslens_lens::schema;

    const SEC: u64 = 1_000_000_000;

    fn settings(learn: Learn, baseline_path: Option<PathBuf>) -> Detect {
        Detect {
            config: Config::default(),
            baseline: None,
            baseline_path,
            learn,
        }
    }

    /// `n` labels of 12 characters that the DGA detector finds random.
    pub(super) fn random_labels(n: usize) -> Vec<String> {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut labels = Vec::new();
        while labels.len() < n {
            let label: String = (0..12)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed % 36) as usize] as char
                })
                .collect();
            if looks_random(&label) {
                labels.push(label);
            }
        }
        labels
    }

    /// A trace of one process failing to resolve `n` random-looking .com domains, one a
    /// second, with each query and its NXDOMAIN response.
    fn dga_trace(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (made, label) in random_labels(n).iter().enumerate() {
            let at = (made as u64 + 1) * SEC;
            let q = sample::query(made as u16, &format!("{label}.com"), 1, at);
            schema::write_event_line(&mut out, &q);
            schema::write_event_line(&mut out, &sample::response(&q, 3, &[], at + 1_000));
        }
        out
    }

    fn replayed(trace: &[u8], detect: Detect) -> (Vec<serde_json::Value>, InputCounts) {
        let mut detection = Detection::replay(detect);
        let mut sink = JsonSink::new(Vec::new(), false);
        let mut counts = InputCounts::default();
        feed(trace, "trace.jsonl", &mut detection, &mut sink, &mut counts).unwrap();
        detection.finish(&mut |a| sink.alert(&a).unwrap()).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let alerts = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (alerts, counts)
    }

    #[test]
    fn a_saved_trace_raises_the_alerts_a_live_one_would() {
        let mut trace = dga_trace(12);
        trace.extend_from_slice(b"\nnot json\n");
        trace.extend_from_slice(b"{\"kind\":\"alert\",\"detector\":\"dga\"}\n");
        trace.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let (alerts, counts) = replayed(&trace, settings(Learn::Off, None));
        assert_eq!(
            counts,
            InputCounts {
                lines: 28,
                events: 24,
                connects: 0,
                alerts_skipped: 1,
                bad: 2,
            }
        );
        let detectors: Vec<&str> = alerts
            .iter()
            .map(|a| a["detector"].as_str().unwrap())
            .collect();
        assert_eq!(detectors, ["dga"], "{alerts:?}");
        assert_eq!(alerts[0]["process"]["pid"], 123);
        assert_eq!(alerts[0]["evidence"]["random_domains"], 10);
    }

    #[test]
    fn learning_over_the_input_saves_the_baseline() {
        let dir = std::env::temp_dir().join(format!("dnslens-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("baseline.json");
        let q = sample::query(1, "api.stripe.com", 1, SEC);
        let mut trace = Vec::new();
        schema::write_event_line(&mut trace, &sample::response(&q, 0, &["192.0.2.1"], SEC));
        let (alerts, _) = replayed(&trace, settings(Learn::Throughout, Some(path.clone())));
        assert!(alerts.is_empty(), "{alerts:?}");
        let baseline = Baseline::load(&path).unwrap();
        let learned = baseline
            .workload("comm:dig")
            .expect("the process's workload");
        assert!(learned.domains.contains("stripe.com"), "{baseline:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn learning_for_a_time_ends_saved_at_the_first_tick_after_it() {
        let dir = std::env::temp_dir().join(format!("dnslens-learn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("baseline.json");
        let start = Instant::now();
        let until = start + std::time::Duration::from_secs(600);
        let replayed = |config| Detectors::with_view(config, Box::new(FakeProcesses::default()));
        let detect = settings(Learn::For(until - start), Some(path.clone()));
        let mut d = Detection::new(detect, replayed, Some(until));
        let q = sample::query(1, "api.stripe.com", 1, SEC);
        d.event(&sample::response(&q, 0, &["192.0.2.1"], SEC), &mut |_| {});
        d.tick(
            2 * SEC,
            until - std::time::Duration::from_secs(1),
            &mut |_| {},
        );
        assert!(d.detectors.learning() && !path.exists());
        d.tick(3 * SEC, until, &mut |_| {});
        assert!(!d.detectors.learning() && !d.unsaved);
        let saved = Baseline::load(&path).unwrap();
        assert!(saved.workload("comm:dig").is_some(), "{saved:?}");
        // Judged against it from now on: nothing left to save at the end.
        std::fs::remove_file(&path).unwrap();
        d.finish(&mut |_| {}).unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_report_counts_alerts_per_detector_and_evictions() {
        let mut stats = DetectStats::default();
        stats.alerts[Detector::Dga.index()] = 2;
        stats.alerts[Detector::Tunneling.index()] = 1;
        stats.aggregated = 4;
        stats.evictions.lookups = 7;
        let lines = report_lines(&stats);
        assert_eq!(
            lines[0],
            "detectors: 3 alerts (tunneling 1, nxdomain 0, dga 2, new_domain_connect 0, \
             unresolved_connect 0, unexpected_domain 0, unknown_binary 0, resolver_bypass 0), \
             4 repeats folded into summaries"
        );
        assert!(lines[1].contains("lookups 7"), "{}", lines[1]);
    }
}
