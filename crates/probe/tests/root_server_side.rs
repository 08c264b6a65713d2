//! Needs root: loads the real BPF object told that no output shows the server side
//! (`server_side_events: false`). This process plays client and server of UDP exchanges on
//! loopback: every client-side message must come up, and of the server's side (the query it
//! receives, the response it sends) only the first, the rest counted as kept in the kernel.
//! What a server's socket does as a client (a query it sends, a response to it from a DNS
//! port) still comes up.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use dnslens_probe::{CaptureMode, Direction, KernelCounter, Probe, ProbeConfig, Record};
use dnslens_testkit::have_root;

const EXCHANGES: usize = 20;

/// A DNS-shaped message: id, then the flags byte whose top bit is QR.
fn message(id: u8, response: bool) -> Vec<u8> {
    let mut m = vec![0, id, if response { 0x81 } else { 0x01 }, 0];
    m.resize(40, 0);
    m
}

/// (direction, is a response, local port) of each of this process's events, until `want` or
/// 2 s.
fn collect(probe: &mut Probe, want: usize) -> Vec<(Direction, bool, u16)> {
    let me = std::process::id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.len() < want && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Ok(Record::Dns(event)) = Record::parse(record) {
                    if event.header.tgid == me {
                        let response = event.payload.get(2).is_some_and(|f| f & 0x80 != 0);
                        let port = event.header.local_port;
                        seen.push((event.direction().unwrap(), response, port));
                    }
                }
            })
            .unwrap();
    }
    seen
}

#[test]
fn root_server_side_stays_in_the_kernel_where_no_output_shows_it() {
    if !have_root() {
        return;
    }
    for capture in [
        CaptureMode::Sockets,
        CaptureMode::SyscallExit,
        CaptureMode::SyscallTracepoints,
    ] {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A server the server asks in turn, as a resolver that queries from its own port does.
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_port = server.local_addr().unwrap().port();
        let mut probe = Probe::load(&ProbeConfig {
            ports: vec![server_port, upstream.local_addr().unwrap().port()],
            capture,
            server_side_events: false,
            ..ProbeConfig::default()
        })
        .unwrap_or_else(|e| panic!("{capture:?}: {e}"));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 512];
        for id in 0..EXCHANGES as u8 {
            client.send(&message(id, false)).unwrap();
            let (_, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(&message(id, true), from).unwrap();
            client.recv(&mut buf).unwrap();
        }
        // The server's socket as a client: its query and the response from a DNS port come up
        // (the upstream's side of it is a server's, kept).
        server
            .send_to(&message(100, false), upstream.local_addr().unwrap())
            .unwrap();
        let (_, from) = upstream.recv_from(&mut buf).unwrap();
        upstream.send_to(&message(100, true), from).unwrap();
        server.recv_from(&mut buf).unwrap();
        // A response-flagged datagram from a port that is not a DNS port: in socket mode taken
        // for a query without its bytes being read (kept), else told by its flags (up). Its
        // send looks like a server's response, this process being one: kept.
        client.send(&message(101, true)).unwrap();
        server.recv_from(&mut buf).unwrap();
        let sockets = usize::from(capture == CaptureMode::Sockets);
        let seen = collect(&mut probe, 2 * EXCHANGES + 4 - sockets);
        let count = |direction, response, port: Option<u16>| {
            let wanted = |&&(d, r, p): &&(Direction, bool, u16)| {
                (d, r) == (direction, response) && port.is_none_or(|x| x == p)
            };
            seen.iter().filter(wanted).count()
        };
        let why = format!("{capture:?}: {seen:?}");
        let on_server = Some(server_port);
        // Client side: queries sent (one by the server's socket), responses received.
        assert_eq!(count(Direction::Send, false, None), EXCHANGES + 1, "{why}");
        assert_eq!(count(Direction::Send, false, on_server), 1, "{why}");
        assert_eq!(
            count(Direction::Recv, true, on_server),
            2 - sockets,
            "{why}"
        );
        assert_eq!(
            count(Direction::Recv, true, None),
            EXCHANGES + 2 - sockets,
            "{why}"
        );
        // Server side: the first query received names the process a server; nothing more.
        assert_eq!(count(Direction::Recv, false, None), 1, "{why}");
        assert_eq!(count(Direction::Send, true, None), 0, "{why}");
        let counters = probe.counters().unwrap();
        assert_eq!(
            counters.get(KernelCounter::ServerSide),
            2 * EXCHANGES as u64 + 2 + sockets as u64,
            "{capture:?}: {counters:?}"
        );
        assert_eq!(counters.lost(), 0, "{capture:?}: not a loss");
    }
}
