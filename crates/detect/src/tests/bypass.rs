//! Resolver bypass.

use super::*;

#[test]
fn queries_to_other_servers_or_dot_bypass_the_resolver() {
    let view = FakeProcesses::default()
        .with_resolv(100, POD_RESOLV)
        .with_resolv(101, "nameserver 127.0.0.53\nsearch ec2.internal\n");
    let mut sim = Sim::with_view(config(), view);
    let mut p = P::in_pod(100, "shop", "web", "/app/web");
    sim.feed(&p.query("example.com", 1, T0));
    let mut host = P::host(101, "curl", "/usr/bin/curl");
    sim.feed(&host.query("example.com", 1, T0));
    // mDNS is not a resolver.
    p.server = "224.0.0.251:5353".parse().unwrap();
    sim.feed(&p.query("printer.local", 1, T0));
    // A process that is gone: nothing to compare with.
    let gone = P::in_pod(102, "shop", "web", "/app/web");
    let mut gone = gone;
    gone.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&gone.query("example.com", 1, T0));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);

    p.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&p.query("example.com", 1, T0 + SEC));
    host.server = "127.0.0.1:53".parse().unwrap();
    sim.feed(&host.query("example.com", 1, T0 + SEC));
    p.server = "1.1.1.1:853".parse().unwrap();
    sim.feed(&p.query("example.com", 1, T0 + SEC));
    sim.connect(&gone.connect("9.9.9.9:853", T0 + SEC));
    let a = sim.of(Detector::ResolverBypass);
    let got: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a.evidence.server.as_deref().unwrap(),
                a.evidence.reason.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("8.8.8.8:53", "other server"),
            ("127.0.0.1:53", "other server"),
            ("1.1.1.1:853", "dns over tls"),
            ("9.9.9.9:853", "dns over tls"),
        ]
    );
    assert_eq!(a[0].evidence.configured, ["10.96.0.10"]);
    assert!(a.iter().all(|a| a.severity == Severity::Medium));
}

#[test]
fn an_operators_dig_on_the_host_is_no_bypass_but_a_pods_is() {
    let view = FakeProcesses::default()
        .with_resolv(110, "nameserver 127.0.0.53\n")
        .with_resolv(111, POD_RESOLV)
        .with_resolv(112, "nameserver 127.0.0.53\n");
    let mut sim = Sim::with_view(config(), view);
    let mut operator = P::host(110, "dig", "/usr/bin/dig");
    operator.server = "127.0.0.1:5300".parse().unwrap();
    sim.feed(&operator.query("example.com", 1, T0));
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
    // The same tool in a pod is judged, and so is a host process that only takes its name.
    let mut in_pod = P::in_pod(111, "shop", "web", "/usr/bin/dig");
    in_pod.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&in_pod.query("example.com", 1, T0));
    let mut named = P::host(112, "dig", "/tmp/dig-not");
    named.server = "8.8.8.8:53".parse().unwrap();
    sim.feed(&named.query("example.com", 1, T0));
    assert_eq!(sim.of(Detector::ResolverBypass).len(), 2);
}

#[test]
fn resolvers_and_forwarders_are_exempt() {
    // dnsmasq answers a client, then forwards upstream: long random names at a high rate
    // (a client's tunnel, seen from its forwarder) and many NXDOMAINs.
    let dnsmasq = P::host(110, "dnsmasq", "/usr/sbin/dnsmasq");
    let mut upstream = dnsmasq.clone();
    upstream.server = "10.0.0.2:53".parse().unwrap();
    let view = FakeProcesses::default().with_resolv(110, "nameserver 127.0.0.1\n");
    let mut sim = Sim::with_view(config(), view);
    let mut rng = Rng(3);
    sim.feed(&dnsmasq.served("first.example.com", T0));
    let mut t = T0 + MS;
    for i in 0..2000 {
        let name = format!("{}.evil-tunnel.com", rng.base32(40));
        sim.feed(&upstream.query(&name, 16, t));
        sim.feed(&upstream.response(&format!("{}.com", rng.letters(14)), 1, 3, &[], t));
        sim.feed(&upstream.response(&format!("n{i}.example.org"), 1, 3, &[], t));
        t += 5 * MS;
    }
    sim.tick(t + 60 * SEC);
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}
