//! Drift from a workload's baseline: unexpected domains and unknown binaries.

use super::*;

#[test]
fn learned_baseline_then_unexpected_domains_alert_once_per_window() {
    let p = P::in_pod(70, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.d.set_learning(true);
    sim.exchange(&p, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.exchange(
        &p,
        "orders.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.5"],
        T0,
    );
    sim.d.set_learning(false);
    let learned = sim.d.baseline().workload("shop/Deployment/web").unwrap();
    assert_eq!(
        learned.domains.iter().collect::<Vec<_>>(),
        ["orders.shop.svc.cluster.local", "stripe.com"]
    );
    assert_eq!(learned.executables.iter().collect::<Vec<_>>(), ["/app/web"]);
    let mut t = T0 + SEC;
    sim.exchange(&p, "files.stripe.com", 1, 0, &["54.187.174.170"], t);
    sim.exchange(
        &p,
        "payments.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.6"],
        t,
    );
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    for _ in 0..5 {
        sim.exchange(&p, "paste.evil.io", 1, 0, &["198.51.100.1"], t);
        t += SEC;
    }
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium);
    assert_eq!(a[0].evidence.domain.as_deref(), Some("evil.io"));
    assert_eq!(a[0].evidence.cluster_only, Some(false));
    sim.tick(T0 + 400 * SEC);
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].count, 4);
    // A workload with no baseline and no allowlist is not judged.
    let stranger = P::in_pod(71, "shop", "batch", "/app/batch");
    sim.exchange(
        &stranger,
        "paste.evil.io",
        1,
        0,
        &["198.51.100.1"],
        T0 + 500 * SEC,
    );
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 2);
}

#[test]
fn cluster_only_workloads_resolving_outside_names_are_called_out() {
    let p = P::in_pod(72, "shop", "db", "/usr/bin/postgres");
    let mut sim = Sim::new(config());
    sim.d.set_baseline(baselined(
        "shop/StatefulSet/db",
        &["orders.shop.svc.cluster.local"],
    ));
    let mut p = p;
    p.pod = Some(pod("shop", "StatefulSet", "db", "00072-uid"));
    sim.exchange(&p, "ifconfig.me", 1, 0, &["34.160.111.145"], T0);
    let a = sim.of(Detector::UnexpectedDomain);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].evidence.cluster_only, Some(true));
    assert!(
        a[0].summary.contains("holds only cluster names"),
        "{}",
        a[0].summary
    );
}

#[test]
fn allowlists_judge_workloads_without_a_baseline() {
    let mut c = config();
    c.allow = vec![crate::config::Allow {
        namespace: Some("shop".into()),
        workload: Some("*/Deployment/web".into()),
        domains: vec!["*.amazonaws.com".into(), "stripe.com".into()],
        executables: vec![],
    }];
    let p = P::in_pod(73, "shop", "web", "/app/web");
    let mut sim = Sim::new(c);
    sim.exchange(&p, "s3.eu-west-1.amazonaws.com", 1, 0, &["52.218.1.1"], T0);
    sim.exchange(&p, "api.stripe.com", 1, 0, &["54.187.174.169"], T0);
    sim.exchange(
        &p,
        "orders.shop.svc.cluster.local",
        1,
        0,
        &["10.96.1.5"],
        T0,
    );
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    sim.exchange(&p, "example.com", 1, 0, &["93.184.215.14"], T0);
    assert_eq!(sim.of(Detector::UnexpectedDomain).len(), 1);
}

// ---- unknown binary ----

#[test]
fn binaries_in_temporary_places_or_deleted_alert() {
    let mut view = FakeProcesses::default();
    for pid in [80, 81, 82, 83] {
        view.known.insert(pid);
    }
    // pid 82's binary was replaced by an upgrade: the path exists again.
    view.files.insert((82, "/usr/sbin/sshd".to_string()));
    let mut sim = Sim::with_view(config(), view);
    let mk = |pid, exe: &str| P::host(pid, "x", exe);
    sim.feed(&mk(80, "/tmp/.x/miner").query("pool.example.com", 1, T0));
    sim.feed(&mk(81, "/opt/tool (deleted)").query("c2.example.com", 1, T0));
    sim.feed(&mk(82, "/usr/sbin/sshd (deleted)").query("example.com", 1, T0));
    sim.feed(&mk(83, "/memfd:payload (deleted)").query("example.com", 1, T0));
    sim.feed(&mk(84, "/dev/shm/x").query("example.com", 1, T0));
    sim.feed(&mk(85, "/usr/bin/tmpreaper").query("example.com", 1, T0));
    sim.feed(&mk(86, "/tmpfoo/bin").query("example.com", 1, T0));
    // Exited before its root could be checked.
    sim.feed(&mk(87, "/usr/bin/gone (deleted)").query("example.com", 1, T0));
    // Paths as passed to execve, which the process chose.
    sim.feed(&mk(88, "//tmp/x").query("example.com", 1, T0));
    sim.feed(&mk(89, "/usr/../dev/shm/./y").query("example.com", 1, T0));
    let a = sim.of(Detector::UnknownBinary);
    let reasons: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a.evidence.exe.as_deref().unwrap(),
                a.evidence.reason.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("/tmp/.x/miner", "temporary directory"),
            ("/opt/tool (deleted)", "deleted"),
            ("/memfd:payload (deleted)", "memfd"),
            ("/dev/shm/x", "temporary directory"),
            ("/usr/bin/gone (deleted)", "deleted"),
            ("//tmp/x", "temporary directory"),
            ("/usr/../dev/shm/./y", "temporary directory"),
        ]
    );
    let severities: Vec<Severity> = a.iter().map(|a| a.severity).collect();
    use Severity::{High, Medium};
    assert_eq!(severities, [High, High, High, High, Medium, High, High]);
    assert!(
        a[0].summary.contains("/tmp/.x/miner (temporary directory)"),
        "{}",
        a[0].summary
    );
}

#[test]
fn executables_outside_the_baseline_alert_medium() {
    let web = P::in_pod(90, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    sim.d.set_learning(true);
    sim.feed(&web.query("api.stripe.com", 1, T0));
    sim.d.set_learning(false);
    sim.feed(&web.query("api.stripe.com", 1, T0 + SEC));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    let mut shell = web.clone();
    shell.pid = 91;
    shell.exe = Some("/usr/bin/wget".to_string());
    sim.feed(&shell.query("api.stripe.com", 1, T0 + 2 * SEC));
    let a = sim.of(Detector::UnknownBinary);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].severity, Severity::Medium);
    assert_eq!(a[0].evidence.reason.as_deref(), Some("not in baseline"));
    // Another workload has no baseline: not judged.
    let other = P::in_pod(92, "shop", "api", "/usr/bin/wget");
    sim.feed(&other.query("api.stripe.com", 1, T0 + 3 * SEC));
    assert_eq!(sim.of(Detector::UnknownBinary).len(), 1);
}
