use super::*;

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
        partial + sum("dnslens_exec_records_lost_total") + sum("dnslens_server_side_kept_total"),
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
