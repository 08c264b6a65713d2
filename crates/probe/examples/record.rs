//! Records raw ring-buffer records to a file, for golden tests of everything after the probe:
//! `record OUT SECONDS NETNS_INODE [PORT...]` keeps the DNS and connect records of one network
//! namespace, and the exec records of the processes that made them, in ring-buffer order.
//! The file is a sequence of records, each a little-endian u32 length and that many bytes.
//! Needs root; `scripts/record-golden.sh` drives it.

use std::time::{Duration, Instant};

use dnslens_probe::{EventHeader, Probe, ProbeConfig, RECORD_EXEC};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: record OUT SECONDS NETNS_INODE [PORT...]";
    let [_, out, seconds, netns, ports @ ..] = args.as_slice() else {
        panic!("{usage}");
    };
    let seconds: u64 = seconds.parse().expect(usage);
    let netns: u32 = netns.parse().expect(usage);
    let mut ports: Vec<u16> = ports.iter().map(|p| p.parse().expect(usage)).collect();
    if ports.is_empty() {
        ports.push(53);
    }
    let mut probe = Probe::load(&ProbeConfig {
        ports,
        ..ProbeConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Ready: the driving script starts its clients once this line is out.
    println!("recording");

    let mut records: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(100), |r| records.push(r.to_vec()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let header_len = std::mem::size_of::<EventHeader>();
    let kind = |r: &[u8]| u32::from_ne_bytes(r[..4].try_into().expect("4 bytes"));
    let tgid = |r: &[u8]| u32::from_ne_bytes(r[4..8].try_into().expect("4 bytes"));
    let in_netns = |r: &[u8]| {
        r.len() >= header_len && {
            // SAFETY: the length is checked and EventHeader is plain bytes; read unaligned.
            let h: EventHeader = unsafe { std::ptr::read_unaligned(r.as_ptr().cast()) };
            h.netns_ino == netns
        }
    };
    let pids: Vec<u32> = records
        .iter()
        .filter(|r| kind(r) != RECORD_EXEC && in_netns(r))
        .map(|r| tgid(r))
        .collect();
    let mut file = Vec::new();
    let mut kept = 0;
    for r in &records {
        let keep = if kind(r) == RECORD_EXEC {
            pids.contains(&tgid(r))
        } else {
            in_netns(r)
        };
        if keep {
            file.extend_from_slice(&(r.len() as u32).to_le_bytes());
            file.extend_from_slice(r);
            kept += 1;
        }
    }
    std::fs::write(out, file).unwrap_or_else(|e| panic!("{out}: {e}"));
    println!("{kept} of {} records written to {out}", records.len());
}
