//! Connects: to a new domain, and to addresses no answer gave.

use super::*;

#[test]
fn new_domain_then_connect_within_the_window() {
    let p = P::in_pod(50, "shop", "web", "/app/web");
    let other = P {
        pid: 51,
        ..p.clone()
    };
    let run = |connector: &P, delay: u64, domain: &str| {
        let mut sim = Sim::new(config());
        sim.d
            .set_baseline(baselined("shop/Deployment/web", &["stripe.com"]));
        sim.exchange(&p, &format!("cdn.{domain}"), 1, 0, &["203.0.113.7"], T0);
        sim.connect(&connector.connect("203.0.113.7:443", T0 + MS + delay));
        sim
    };
    let sim = run(&p, 2000 * MS, "evil-c2.net");
    let a = sim.of(Detector::NewDomainConnect);
    assert_eq!(a.len(), 1, "{:?}", sim.alerts);
    assert_eq!(a[0].severity, Severity::High);
    assert_eq!(a[0].evidence.domain.as_deref(), Some("evil-c2.net"));
    assert_eq!(a[0].evidence.examples, ["cdn.evil-c2.net"]);
    assert_eq!(a[0].evidence.address.as_deref(), Some("203.0.113.7:443"));
    assert_eq!(a[0].evidence.after_ms, Some(2000));
    // The baseline makes the lookup itself unexpected too.
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 1);
    assert_eq!(sim.alerts.len(), 2);

    let c2 = |sim: Sim| sim.of(Detector::NewDomainConnect).len();
    assert_eq!(c2(run(&p, 2001 * MS, "evil-c2.net")), 0, "too late");
    assert_eq!(
        c2(run(&other, 10 * MS, "evil-c2.net")),
        0,
        "another process"
    );
    assert!(
        run(&p, 10 * MS, "stripe.com").alerts.is_empty(),
        "a known domain"
    );
}

#[test]
fn new_domains_count_only_after_the_warmup_without_a_baseline() {
    let p = P::in_pod(50, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.exchange(&p, "api.first.com", 1, 0, &["203.0.113.7"], T0);
    sim.connect(&p.connect("203.0.113.7:443", T0 + 10 * MS));
    let t = T0 + 601 * SEC;
    sim.exchange(&p, "api.first.com", 1, 0, &["203.0.113.7"], t);
    sim.connect(&p.connect("203.0.113.7:443", t + 10 * MS));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.exchange(&p, "x.second.com", 1, 0, &["203.0.113.8"], t + SEC);
    sim.connect(&p.connect("203.0.113.8:443", t + SEC + 10 * MS));
    assert_eq!(sim.of(Detector::NewDomainConnect).len(), 1);
    // An internal answer is not command-and-control by default.
    sim.exchange(&p, "db.corp-new.com", 1, 0, &["10.20.30.40"], t + 2 * SEC);
    sim.connect(&p.connect("10.20.30.40:5432", t + 2 * SEC + 10 * MS));
    assert_eq!(sim.alerts.len(), 1, "{:?}", sim.alerts);
}

// ---- unresolved connect ----

#[test]
fn connects_to_addresses_no_answer_gave() {
    let p = P::in_pod(60, "shop", "web", "/app/web").started_at(T0 + SEC);
    let mut sim = Sim::new(config());
    sim.tick(T0);
    sim.exchange(
        &p,
        "api.stripe.com",
        1,
        0,
        &["54.187.174.169"],
        T0 + 2 * SEC,
    );
    sim.connect(&p.connect("54.187.174.169:443", T0 + 3 * SEC));
    sim.connect(&p.connect("10.96.1.5:8080", T0 + 3 * SEC));
    sim.connect(&p.connect("[fd00::1]:8080", T0 + 3 * SEC));
    sim.connect(&p.connect("169.254.169.254:80", T0 + 3 * SEC));
    sim.connect(&p.connect("8.8.8.8:53", T0 + 3 * SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.connect(&p.connect("198.51.100.9:443", T0 + 4 * SEC));
    let a = sim.of(Detector::UnresolvedConnect);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Low);
    assert_eq!(a[0].evidence.address.as_deref(), Some("198.51.100.9:443"));
    assert_eq!(a[0].evidence.transport.as_deref(), Some("tcp"));
    // The answer was in another network namespace.
    let other = P::in_pod(61, "shop", "api", "/app/api").started_at(T0 + SEC);
    sim.connect(&other.connect("54.187.174.169:443", T0 + 5 * SEC));
    assert_eq!(sim.of(Detector::UnresolvedConnect).len(), 2);
    // Answers are kept for their TTL (30 s) raised to answer_min_ttl_s (300 s), then expire.
    sim.connect(&p.connect("54.187.174.169:443", T0 + 301 * SEC));
    assert_eq!(sim.d.stats().aggregated, 0);
    sim.connect(&p.connect("54.187.174.169:443", T0 + 303 * SEC));
    assert_eq!(
        sim.of(Detector::UnresolvedConnect).len(),
        2,
        "same workload: aggregated"
    );
    assert_eq!(sim.d.stats().aggregated, 1);
}

#[test]
fn processes_older_than_the_detectors_are_not_judged_on_unresolved_connects() {
    let old = P::in_pod(62, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.exchange(&old, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.connect(&old.connect("198.51.100.9:443", T0 + SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}
