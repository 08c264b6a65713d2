//! The stage as a whole: configuration, bounded state, a quiet minute of an ordinary node, and the JSON line.

use super::*;

#[test]
fn namespace_overrides_disable_and_reweigh_detectors() {
    let c = Config::parse(
        "[namespaces.kube-system.tunneling]\nenabled = false\n\
         [namespaces.batch.tunneling]\nseverity = \"low\"\n",
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let mut sim = Sim::new(c);
    tunnel(
        &mut sim,
        &P::in_pod(120, "kube-system", "agent", "/agent"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    assert!(sim.alerts.is_empty());
    tunnel(
        &mut sim,
        &P::in_pod(121, "batch", "job", "/job"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    tunnel(
        &mut sim,
        &P::in_pod(122, "shop", "web", "/web"),
        "evil-tunnel.com",
        600,
        16,
        T0,
    );
    let sev: Vec<Severity> = sim.alerts.iter().map(|a| a.severity).collect();
    assert_eq!(sev, [Severity::Low, Severity::High]);
}

// ---- bounded state ----

#[test]
fn state_stays_bounded_under_100k_distinct_keys() {
    let mut c = config();
    c.limits.processes = 1000;
    c.limits.tunnels = 500;
    c.limits.lookups = 500;
    c.limits.workloads = 300;
    c.limits.answers = 2000;
    c.limits.aggregates = 400;
    let mut sim = Sim::new(c);
    let mut t = T0;
    for i in 0..100_000u32 {
        let mut p = P::in_pod(i, "ns", "w", "/tmp/x");
        // Distinct pods without names: distinct workloads.
        p.pod = Some(Pod {
            uid: Arc::from(format!("uid-{i}").as_str()),
            info: None,
        });
        p.exe = Some(format!("/tmp/bin{i}"));
        let name = format!("h{i}.d{i}.example.com");
        sim.feed(&p.query(&name, 1, t));
        sim.feed(&p.response(&name, 1, 3, &[], t));
        let ok = format!("ok{i}.example.net");
        let addr = format!("198.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        sim.feed(&p.response(&ok, 1, 0, &[&addr], t));
        t += MS;
    }
    let s = sim.d.stats();
    let caps = [
        (
            "processes",
            s.entries.processes,
            s.evictions.processes,
            1000,
        ),
        ("tunnels", s.entries.tunnels, s.evictions.tunnels, 500),
        ("lookups", s.entries.lookups, s.evictions.lookups, 500),
        ("workloads", s.entries.workloads, s.evictions.workloads, 300),
        ("answers", s.entries.answers, s.evictions.answers, 2000),
        (
            "aggregates",
            s.entries.aggregates,
            s.evictions.aggregates,
            400,
        ),
    ];
    for (table, len, evicted, cap) in caps {
        assert!(len <= cap, "{table}: {len} > {cap}");
        assert!(evicted > 0, "{table}: nothing evicted");
    }
    assert_eq!(s.entries.processes, 1000);
    assert_eq!(s.entries.answers, 2000);
    assert_eq!(
        s.alerts(Detector::UnknownBinary),
        sim.of(Detector::UnknownBinary).len() as u64
    );
}

// ---- the quiet minute ----

/// A minute of an ordinary node: glibc and Go clients resolving cluster services through the
/// search list, external names through it too, a missing service, PTR lookups, CoreDNS and
/// systemd-resolved forwarding, host tools, a job started every 10 s, and connects to what
/// was resolved.
fn quiet_minute(sim: &mut Sim, from: u64) -> u64 {
    let web = P::in_pod(1001, "shop", "web", "/app/web");
    let api = P::in_pod(1002, "shop", "api", "/usr/local/bin/api");
    let coredns = P::in_pod(900, "kube-system", "coredns", "/coredns");
    let mut coredns_up = coredns.clone();
    coredns_up.server = "10.0.0.2:53".parse().unwrap();
    let resolved = P::host(500, "systemd-resolve", "/usr/lib/systemd/systemd-resolved");
    let mut resolved_up = resolved.clone();
    resolved_up.server = "10.0.0.2:53".parse().unwrap();
    let apt = P::host(600, "apt", "/usr/bin/apt");
    let kubelet = P::host(700, "kubelet", "/usr/bin/kubelet");
    let worker = P::in_pod(1003, "shop", "worker", "/app/worker");

    let mut t = from;
    for s in 0..60u64 {
        let sec = from + s * SEC;
        t = t.max(sec);
        t = sim.lookup(
            &web,
            "orders",
            &[],
            Some(("orders.shop.svc.cluster.local", "10.96.1.5")),
            t,
        );
        sim.connect(&web.connect("10.96.1.5:8080", t + MS));
        sim.feed(&coredns.served("orders.shop.svc.cluster.local", t));
        if s % 2 == 0 {
            t = sim.lookup(
                &api,
                "kubernetes.default.svc",
                &[],
                Some(("kubernetes.default.svc.cluster.local", "10.96.0.1")),
                t,
            );
            sim.connect(&api.connect("10.96.0.1:443", t + MS));
            // nginx-style reverse lookups of clients without PTR records.
            sim.exchange(
                &web,
                &format!("{}.1.244.10.in-addr.arpa", s % 200),
                12,
                3,
                &[],
                t,
            );
        }
        if s % 3 == 0 {
            t = sim.lookup(
                &api,
                "db.shop.svc.cluster.local",
                &[],
                Some(("db.shop.svc.cluster.local", "10.96.2.2")),
                t,
            );
        }
        if s % 5 == 0 {
            t = sim.lookup(
                &web,
                "api.stripe.com",
                &[],
                Some(("api.stripe.com", "54.187.174.169")),
                t,
            );
            sim.connect(&web.connect("54.187.174.169:443", t + 20 * MS));
            sim.feed(&coredns.served("api.stripe.com", t));
            sim.exchange(&coredns_up, "api.stripe.com", 1, 0, &["54.187.174.169"], t);
        }
        if s % 6 == 0 {
            // A worker that only calls outside APIs: each lookup walks the search list first.
            let host = EXTERNAL[(s / 6) as usize];
            t = sim.lookup(&worker, host, &[], Some((host, "52.94.133.131")), t);
            sim.connect(&worker.connect("52.94.133.131:443", t + MS));
        }
        if s % 7 == 0 {
            t = sim.lookup(
                &api,
                "storage.googleapis.com",
                &[],
                Some(("storage.googleapis.com", "142.250.74.59")),
                t,
            );
            sim.connect(&api.connect("142.250.74.59:443", t + 5 * MS));
        }
        if s % 10 == 0 {
            t = sim.lookup(&web, "missing-svc", &[], None, t);
            for name in ["missing-svc.shop.svc.cluster.local", "missing-svc"] {
                sim.feed(&coredns.served(name, t));
                sim.exchange(&coredns_up, name, 1, 3, &[], t);
            }
            // A short-lived job started after the detectors, resolving and connecting.
            let job = P::in_pod(2000 + s as u32, "batch", "report", "/usr/bin/curl").started_at(t);
            t = sim.lookup(
                &job,
                "example.com",
                &[],
                Some(("example.com", "93.184.215.14")),
                t + MS,
            );
            sim.connect(&job.connect("93.184.215.14:443", t + MS));
            // Host tools through systemd-resolved, which forwards.
            sim.feed(&resolved.served("deb.debian.org", t));
            sim.exchange(&resolved_up, "deb.debian.org", 1, 0, &["151.101.2.132"], t);
            sim.exchange(&apt, "deb.debian.org", 1, 0, &["151.101.2.132"], t);
            sim.exchange(&apt, "deb.debian.org", 28, 0, &["2a04:4e42::644"], t);
            sim.connect(&apt.connect("151.101.2.132:80", t + 2 * MS));
            sim.exchange(&kubelet, "registry.k8s.io", 1, 0, &["34.96.108.209"], t);
            sim.connect(&kubelet.connect("34.96.108.209:443", t + 2 * MS));
        }
        sim.tick(sec + 900 * MS);
    }
    t
}

/// Services the quiet worker calls, one every 6 s.
const EXTERNAL: [&str; 10] = [
    "api.stripe.com",
    "sqs.eu-west-1.amazonaws.com",
    "dynamodb.eu-west-1.amazonaws.com",
    "o123456.ingest.sentry.io",
    "http-intake.logs.datadoghq.eu",
    "hooks.slack.com",
    "api.twilio.com",
    "api.github.com",
    "oauth2.googleapis.com",
    "api.sendgrid.com",
];

fn quiet_view() -> FakeProcesses {
    let mut v = FakeProcesses::default();
    for pid in [1001, 1002, 1003, 900] {
        v = v.with_resolv(pid, POD_RESOLV);
    }
    for s in (0..60).step_by(10) {
        v = v.with_resolv(2000 + s, &POD_RESOLV.replace("shop", "batch"));
    }
    for pid in [500, 600, 700] {
        v = v.with_resolv(pid, "nameserver 127.0.0.53\nsearch ec2.internal\n");
    }
    v
}

#[test]
fn a_quiet_minute_raises_nothing() {
    let mut sim = Sim::with_view(config(), quiet_view());
    let t = quiet_minute(&mut sim, T0);
    sim.tick(t + 400 * SEC);
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
    let alerts = &mut sim.alerts;
    sim.d.finish(&mut |a| alerts.push(a));
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
}

#[test]
fn a_quiet_minute_after_learning_it_raises_nothing() {
    let mut sim = Sim::with_view(config(), quiet_view());
    sim.d.set_learning(true);
    let t = quiet_minute(&mut sim, T0);
    sim.d.set_learning(false);
    assert!(sim.d.baseline().workload("shop/Deployment/web").is_some());
    let t = quiet_minute(&mut sim, t + 11 * 60 * SEC);
    sim.tick(t + 400 * SEC);
    assert!(sim.alerts.is_empty(), "{:#?}", sim.alerts);
}

#[test]
fn a_learned_baseline_survives_save_and_load() {
    let mut sim = Sim::with_view(config(), quiet_view());
    sim.d.set_learning(true);
    quiet_minute(&mut sim, T0);
    let path = std::env::temp_dir().join(format!(
        "dnslens-detect-learned-{}.json",
        std::process::id()
    ));
    sim.d.baseline().save(&path).unwrap();
    let loaded = Baseline::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&loaded, sim.d.baseline());
    let web = &loaded.workloads["shop/Deployment/web"];
    assert!(web.domains.contains("stripe.com"));
    assert!(web.domains.contains("orders.shop.svc.cluster.local"));
    assert!(web.executables.contains("/app/web"));
    // Expansions that failed are not learned.
    assert!(
        web.domains.iter().all(|d| !d.contains("missing-svc")),
        "{:?}",
        web.domains
    );
}

// ---- the JSON line ----

#[test]
fn alert_json_shape() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let mut sim = Sim::new(config());
    tunnel(&mut sim, &p, "evil-tunnel.com", 500, 16, 0);
    let mut a = sim.alerts[0].clone();
    a.evidence.examples.truncate(2);
    // The distinct count is an estimate under a hash keyed per run: the shape is pinned here,
    // not the estimate (1.6% standard error: within five of them).
    let estimate = a.evidence.distinct_names.take().unwrap();
    assert!((460..=540).contains(&estimate), "{estimate}");
    a.summary = a
        .summary
        .replace(&format!("for {estimate} distinct"), "for 500 distinct");
    a.evidence.distinct_names = Some(500);
    let json = a.to_json_line();
    let ex = &a.evidence.examples;
    let cid = &a.who.container.as_ref().unwrap().id;
    assert_eq!(
        json,
        format!(
            concat!(
                r#"{{"kind":"alert","time":"2026-11-26T10:55:04.980000000Z","detector":"tunneling","severity":"high","#,
                r#""summary":"app (pid 10) in pod shop/web-7d4b9f-00010 sent 500 queries in 10 s for 500 distinct names under evil-tunnel.com, most with long or random labels: possible DNS tunneling","#,
                r#""count":1,"window_s":10,"evidence":{{"workload":"shop/Deployment/web","domain":"evil-tunnel.com","examples":["{}","{}"],"#,
                r#""queries":500,"rate_per_s":50.0,"distinct_names":500,"long_or_random":500,"qtypes":{{"TXT":500}}}},"#,
                r#""process":{{"pid":10,"tid":10,"comm":"app","name":"app","exe":"/app/web","uid":0,"ppid":1}},"netns":4026532010,"cgroup":"","#,
                r#""container":{{"id":"{}","runtime":"containerd","name":"app"}},"#,
                r#""pod":{{"uid":"00010-uid","name":"web-7d4b9f-00010","namespace":"shop","workload":{{"kind":"Deployment","name":"web"}},"labels":{{"app":"web"}}}},"#,
                r#""node":"node-1","host":false}}"#,
                "\n"
            ),
            ex[0], ex[1], cid
        )
    );
}

#[test]
fn attribution_json_matches_the_events() {
    let p = P::in_pod(10, "shop", "web", "/app/web");
    let e = p.query("example.com", 1, T0);
    let mut sim = Sim::with_view(
        config(),
        FakeProcesses::default().with_resolv(10, POD_RESOLV),
    );
    let mut q = e.clone();
    q.dst = "8.8.8.8:53".parse().unwrap();
    sim.feed(&q);
    let alert: serde_json::Value = serde_json::from_str(&sim.alerts[0].to_json_line()).unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&dnslens_lens::schema::event_to_string(&e)).unwrap();
    for key in [
        "process",
        "netns",
        "cgroup",
        "container",
        "pod",
        "node",
        "host",
    ] {
        assert_eq!(alert[key], event[key], "{key}");
    }
    assert_eq!(alert["kind"], "alert");
    assert_eq!(event["kind"], "query");
    assert_eq!(e.kind, Kind::Query);
}

#[test]
fn the_stage_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Detectors>();
    send::<Alert>();
}
