//! Failed lookups: nxdomain and dga.

use super::*;

/// `n` failed lookups of distinct names (`distinct` of them), one a second, each a bare
/// NXDOMAIN as a host resolver makes them; then `ok` successful responses.
fn failures(sim: &mut Sim, p: &P, n: u64, distinct: u64, ok: u64) -> u64 {
    let mut t = T0;
    for i in 0..ok {
        sim.exchange(
            p,
            &format!("ok{i}.example.org"),
            1,
            0,
            &["93.184.215.14"],
            t,
        );
        t += 10 * MS;
    }
    for i in 0..n {
        sim.exchange(
            p,
            &format!("nope{}.example.org", i % distinct),
            1,
            3,
            &[],
            t,
        );
        t += SEC;
    }
    t += 10 * SEC;
    sim.tick(t);
    t
}

#[test]
fn nxdomain_at_the_threshold_alerts_and_just_below_does_not() {
    let p = P::host(20, "scanner", "/usr/bin/scanner");
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 19, 19, 0);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 0);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::Low);
    assert_eq!(a[0].evidence.failed_lookups, Some(20));
    assert_eq!(a[0].evidence.distinct_failed, Some(20));
    assert_eq!(
        a[0].evidence.workload.as_deref(),
        Some("exe:/usr/bin/scanner")
    );
    assert_eq!(sim.alerts.len(), 1, "ordinary names are no DGA");
}

#[test]
fn nxdomain_needs_distinct_names_and_a_high_share() {
    let p = P::host(20, "app", "/usr/bin/app");
    // A misconfigured client retrying five missing names.
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 40, 5, 0);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    // Failures that are under half of the responses.
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 21);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut sim = Sim::new(config());
    failures(&mut sim, &p, 20, 20, 20);
    assert_eq!(sim.of(Detector::Nxdomain).len(), 1, "exactly half");
}

/// Every failure counts, to see exactly what counts as one.
fn sensitive() -> Config {
    let mut c = config();
    c.nxdomain.min_failures = 1;
    c.nxdomain.min_distinct = 1;
    c.nxdomain.min_ratio = 0.0;
    c
}

#[test]
fn search_list_walks_that_succeed_never_count() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let go = P::in_pod(31, "shop", "api", "/usr/local/bin/api");
    // The kubelet appends the node's search domains (here a cloud's) to the pod's.
    let view = FakeProcesses::default()
        .with_resolv(
            30,
            &POD_RESOLV.replace("cluster.local\n", "cluster.local ec2.internal\n"),
        )
        .with_resolv(31, POD_RESOLV);
    let mut sim = Sim::with_view(sensitive(), view);
    let mut t = T0;
    for _ in 0..200 {
        t = sim.lookup(
            &web,
            "api.example.com",
            &["ec2.internal"],
            Some(("api.example.com", "93.184.215.14")),
            t,
        );
        t = sim.lookup(
            &web,
            "orders",
            &[],
            Some(("orders.shop.svc.cluster.local", "10.96.1.5")),
            t,
        );
        t = sim.lookup(
            &go,
            "kubernetes.default.svc",
            &[],
            Some(("kubernetes.default.svc.cluster.local", "10.96.0.1")),
            t,
        );
        t = sim.lookup(
            &go,
            "db.shop.svc.cluster.local",
            &[],
            Some(("db.shop.svc.cluster.local", "10.96.2.2")),
            t,
        );
        t = sim.lookup(
            &go,
            "a.b.c.d.example.com",
            &[],
            Some(("a.b.c.d.example.com", "93.184.215.15")),
            t,
        );
        t += 100 * MS;
    }
    sim.tick(t + 60 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

#[test]
fn a_missing_service_is_one_failed_lookup() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let view = FakeProcesses::default().with_resolv(30, POD_RESOLV);
    let mut sim = Sim::with_view(sensitive(), view);
    // Four names, A and AAAA each: eight NXDOMAIN responses.
    let t = sim.lookup(&web, "missing-svc", &[], None, T0);
    sim.tick(t + 4 * SEC);
    assert!(sim.alerts.is_empty(), "not yet timed out");
    sim.tick(t + 6 * SEC);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].evidence.failed_lookups, Some(1));
    assert_eq!(a[0].evidence.examples, ["missing-svc"]);
    // Names with ndots or more dots try the bare name first: still one lookup.
    let t = sim.lookup(&web, "a.b.c.d.e.missing", &[], None, t + 7 * SEC);
    sim.tick(t + 400 * SEC);
    let a = sim.of(Detector::Nxdomain);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[1].evidence.failed_lookups, Some(1));
    assert_eq!(a[1].evidence.examples, ["a.b.c.d.e.missing"]);
}

#[test]
fn a_few_missing_services_do_not_alert() {
    let web = P::in_pod(30, "shop", "web", "/app/web");
    let mut sim = Sim::with_view(
        config(),
        FakeProcesses::default().with_resolv(30, POD_RESOLV),
    );
    let mut t = T0;
    for i in 0..60 {
        t = sim.lookup(&web, &format!("missing-{}", i % 3), &[], None, t) + SEC;
    }
    sim.tick(t + 10 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}

// ---- dga ----

/// `n` failed lookups of random-looking registered domains (the scorer catches most random
/// labels, not all: only the ones it catches are used, as this tests the threshold).
fn dga(sim: &mut Sim, p: &P, n: u64) {
    let mut rng = Rng(42);
    let mut t = T0;
    let mut made = 0;
    while made < n {
        let label = rng.label(b"abcdefghijklmnopqrstuvwxyz0123456789", 14);
        if !crate::score::looks_random(&label) {
            continue;
        }
        t = sim.lookup(p, &format!("{label}.com"), &[], None, t) + 500 * MS;
        made += 1;
    }
    sim.tick(t + 10 * SEC);
}

#[test]
fn dga_at_the_threshold_alerts_and_just_below_does_not() {
    let p = P::in_pod(40, "shop", "web", "/app/web");
    let view = || FakeProcesses::default().with_resolv(40, POD_RESOLV);
    let mut sim = Sim::with_view(config(), view());
    dga(&mut sim, &p, 9);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut sim = Sim::with_view(config(), view());
    dga(&mut sim, &p, 10);
    let a = sim.of(Detector::Dga);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::High);
    assert_eq!(a[0].evidence.random_domains, Some(10));
    assert!(a[0]
        .evidence
        .examples
        .iter()
        .all(|d| d.ends_with(".com") && d.len() == 18));
    assert!(
        sim.of(Detector::Nxdomain).is_empty(),
        "10 failures are below nxdomain's 20"
    );
}

#[test]
fn dga_ignores_real_words_and_random_subdomains_of_one_domain() {
    let p = P::host(41, "app", "/usr/bin/app");
    let mut sim = Sim::new(config());
    let mut rng = Rng(5);
    let mut t = T0;
    for word in [
        "payments",
        "checkout",
        "inventory",
        "analytics",
        "marketing",
        "customer",
        "internal",
        "downloads",
        "mirrorlist",
        "telemetry",
        "updates",
        "metrics",
    ] {
        sim.exchange(&p, &format!("{word}-gateway.com"), 1, 3, &[], t);
        // Random names under one registered domain are not a DGA's registrations.
        sim.exchange(
            &p,
            &format!("{}.example.com", rng.letters(14)),
            1,
            3,
            &[],
            t,
        );
        t += SEC;
    }
    sim.tick(t + 10 * SEC);
    assert!(sim.of(Detector::Dga).is_empty(), "{:?}", sim.alerts);
}
