//! The floor of dnslens's cost, for `bench/cost.sh`: the real probe attached and every record
//! read and dropped, in the turns `dnslens` reads them in, until SIGINT or SIGTERM; then the
//! records and bytes read and the kernel's counters on stderr. `drain [--client-side]
//! [PORT...]` (53 without one); `--client-side` keeps the server side in the kernel, as for the
//! outputs that show the client side only (count, top, the metrics-only agent). Needs root.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use dnslens_probe::{Probe, ProbeConfig};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    let usage = "usage: drain [--client-side] [PORT...]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client_side = args.first().is_some_and(|a| a == "--client-side");
    let mut ports: Vec<u16> = args[usize::from(client_side)..]
        .iter()
        .map(|p| p.parse().expect(usage))
        .collect();
    if ports.is_empty() {
        ports.push(53);
    }
    let mut probe = Probe::load(&ProbeConfig {
        ports,
        server_side_events: !client_side,
        ..ProbeConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    // Ready: the driving script starts its load once this line is out.
    eprintln!("drain: attached with {}", probe.mode());
    let (mut records, mut bytes) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) {
        probe
            .poll_gathered(Duration::from_millis(100), |r| {
                records += 1;
                bytes += r.len() as u64;
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("drain: {records} records, {bytes} bytes read");
    match probe.counters() {
        Ok(k) => eprintln!("drain: kernel: {k}"),
        Err(e) => eprintln!("drain: kernel counters unavailable: {e}"),
    }
}
