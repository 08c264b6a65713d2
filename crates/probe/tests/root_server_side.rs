//! Needs root: loads the real BPF object told that no output shows the server side
//! (`server_side_events: false`). This process plays client and server of UDP exchanges on
//! loopback: every client-side message must come up, and of the server's side (the query it
//! receives, the response it sends) only the first, the rest counted as kept in the kernel.

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

/// (direction, is a response) of each of this process's events, until `want` or 2 s.
fn collect(probe: &mut Probe, want: usize) -> Vec<(Direction, bool)> {
    let me = std::process::id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.len() < want && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Ok(Record::Dns(event)) = Record::parse(record) {
                    if event.header.tgid == me {
                        let response = event.payload.get(2).is_some_and(|f| f & 0x80 != 0);
                        seen.push((event.direction().unwrap(), response));
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
        let mut probe = Probe::load(&ProbeConfig {
            ports: vec![server.local_addr().unwrap().port()],
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
        let seen = collect(&mut probe, 2 * EXCHANGES + 1);
        let count =
            |direction, response| seen.iter().filter(|&&s| s == (direction, response)).count();
        // Client side: queries sent, responses received.
        assert_eq!(count(Direction::Send, false), EXCHANGES, "{capture:?}");
        assert_eq!(count(Direction::Recv, true), EXCHANGES, "{capture:?}");
        // Server side: the first query received names the process a server; nothing more.
        assert_eq!(count(Direction::Recv, false), 1, "{capture:?}: {seen:?}");
        assert_eq!(count(Direction::Send, true), 0, "{capture:?}: {seen:?}");
        let counters = probe.counters().unwrap();
        assert_eq!(
            counters.get(KernelCounter::ServerSide),
            2 * EXCHANGES as u64 - 1,
            "{capture:?}: {counters:?}"
        );
        assert_eq!(counters.lost(), 0, "{capture:?}: not a loss");
    }
}
