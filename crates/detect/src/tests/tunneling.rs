//! The tunneling detector and the aggregation of repeats.

use super::*;

#[test]
fn tunneling_at_the_rate_threshold_alerts_and_just_below_does_not() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "t.evil-tunnel.com", 499, 16, T0);
    sim.tick(T0 + 11 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "t.evil-tunnel.com", 500, 16, T0);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    let a = a[0];
    assert_eq!(a.severity, Severity::High, "TXT queries");
    assert_eq!(a.count, 1);
    assert_eq!(a.window_s, 10);
    let ev = &a.evidence;
    assert_eq!(ev.domain.as_deref(), Some("evil-tunnel.com"));
    assert_eq!(ev.queries, Some(500));
    assert_eq!(ev.rate_per_s, Some(50.0));
    let distinct = ev.distinct_names.unwrap();
    // An estimate under a hash keyed per run: within five standard errors (1.6% each).
    assert!((460..=540).contains(&distinct), "{distinct}");
    assert_eq!(ev.long_or_random, Some(500));
    assert_eq!(ev.qtypes, BTreeMap::from([("TXT".to_string(), 500)]));
    assert_eq!(ev.examples.len(), 10);
    assert_eq!(ev.workload.as_deref(), Some("shop/Deployment/web"));
    assert!(
        a.summary.contains("possible DNS tunneling"),
        "{}",
        a.summary
    );
    assert_eq!(sim.alerts.len(), 1, "nothing else fired");
}

#[test]
fn tunneling_severity_follows_query_types() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "evil-tunnel.com", 600, 1, T0);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium, "A queries only");
}

#[test]
fn tunneling_needs_distinct_long_names_outside_the_cluster() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    let mut rng = Rng(7);
    let mut t = T0;
    for i in 0..1000u64 {
        // The same long name over and over: cached lookups, not a tunnel.
        sim.feed(&p.query(&format!("{}.same.example.com", "a".repeat(40)), 16, t));
        // Many distinct short ordinary names.
        sim.feed(&p.query(&format!("host{i}.example.net"), 1, t));
        // Long random names in the cluster and reverse zones.
        sim.feed(&p.query(&format!("{}.shop.svc.cluster.local", rng.base32(40)), 1, t));
        sim.feed(&p.query(&format!("{}.10.in-addr.arpa", i % 250), 12, t));
        // A reputation service that carries hashes in names.
        sim.feed(&p.query(&format!("{}.sophosxl.net", rng.base32(40)), 1, t));
        t += 10 * MS;
    }
    sim.tick(t + 20 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

#[test]
fn repeats_are_aggregated_into_one_summary_per_window() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    // Six windows of tunneling in one minute: six triggers.
    for w in 0..6 {
        tunnel(&mut sim, &p, "evil-tunnel.com", 600, 16, T0 + w * 10 * SEC);
    }
    assert_eq!(
        sim.of(Detector::Tunneling).len(),
        1,
        "first trigger at once"
    );
    // The window opened with the 500th query of the first batch, 8.3 s in.
    sim.tick(T0 + 308 * SEC);
    assert_eq!(sim.of(Detector::Tunneling).len(), 1, "window still open");
    sim.tick(T0 + 309 * SEC);
    let a = sim.of(Detector::Tunneling);
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].count, a[1].count), (1, 5));
    assert_eq!(a[1].window_s, 300);
    assert!(a[1]
        .summary
        .ends_with("(5 more times in the 300 s since the first alert)"));
    let stats = sim.d.stats();
    assert_eq!(stats.alerts(Detector::Tunneling), 2);
    assert_eq!(stats.aggregated, 5);
    // A new window opens with the next trigger.
    tunnel(&mut sim, &p, "evil-tunnel.com", 600, 16, T0 + 400 * SEC);
    assert_eq!(sim.of(Detector::Tunneling).len(), 3);
    assert_eq!(sim.of(Detector::Tunneling)[2].count, 1);
}
