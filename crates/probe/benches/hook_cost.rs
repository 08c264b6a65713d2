//! What dnslens costs the rest of the host: the same non-DNS write/read loops (pipe, file, UDP
//! and TCP loopback) timed without and with the probe attached, alternating rounds in one run,
//! reported as ns per write+read and as a ratio. Needs root; prints why when it cannot run.
//!
//! `cargo bench -p dnslens-probe --bench hook_cost`

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::{fd::FromRawFd, unix::fs::FileExt},
    time::{Duration, Instant},
};

use dnslens_probe::{CaptureMode, Probe, ProbeConfig, ProgramStats};

const ITERATIONS: u32 = 100_000;
const ROUNDS: usize = 15;

type Workload = Box<dyn FnMut()>;

fn pipe() -> Workload {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both fds were just created and are owned by these Files alone.
    let (mut reader, mut writer) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let mut buf = [0u8; 64];
    Box::new(move || {
        writer.write_all(&buf[..64]).unwrap();
        reader.read_exact(&mut buf).unwrap();
    })
}

fn file() -> Workload {
    let path = std::env::temp_dir().join(format!("dnslens-bench-{}", std::process::id()));
    let mut file = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut buf = [0u8; 64];
    Box::new(move || {
        file.write_all_at(&buf[..64], 0).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_exact(&mut buf).unwrap();
    })
}

fn udp() -> Workload {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    Box::new(move || {
        a.send(&buf[..64]).unwrap();
        b.recv(&mut buf).unwrap();
    })
}

fn tcp() -> Workload {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut b, _) = listener.accept().unwrap();
    a.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    Box::new(move || {
        a.write_all(&buf[..64]).unwrap();
        b.read_exact(&mut buf).unwrap();
    })
}

fn time(work: &mut Workload, iterations: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        work();
    }
    start.elapsed()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ns_per_pair(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(ITERATIONS)
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("hook_cost: skipped, loading BPF needs root");
        return;
    }
    // Left on (by another tool, or a sysctl), every program run pays two clock reads: the "with"
    // rounds would show that, not dnslens.
    if std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
    {
        println!(
            "hook_cost: WARNING: kernel.bpf_stats_enabled is 1, so the traced rounds include BPF \
             run-time accounting (sysctl -w kernel.bpf_stats_enabled=0)"
        );
    }
    // One CPU for the whole run: a migration in the middle of a timed loop is noise.
    // SAFETY: the set is a plain bitmask initialised by CPU_ZERO/CPU_SET; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let mut workloads: Vec<(&str, Workload)> = vec![
        ("pipe", pipe()),
        ("file", file()),
        ("udp loopback", udp()),
        ("tcp loopback", tcp()),
    ];
    for (_, work) in workloads.iter_mut() {
        time(work, ITERATIONS); // warm up
    }
    // The socket hooks against the syscall hook that other tools use, in the same run.
    for mode in [CaptureMode::Sockets, CaptureMode::SyscallExit] {
        measure(mode, &mut workloads);
    }
}

fn measure(mode: CaptureMode, workloads: &mut [(&str, Workload)]) {
    let config = ProbeConfig {
        capture: mode,
        ..ProbeConfig::default()
    };
    let load = || Probe::load(&config).unwrap_or_else(|e| panic!("{mode}: {e}"));
    let mut without = vec![Vec::new(); workloads.len()];
    let mut with = vec![Vec::new(); workloads.len()];
    // Alternate which side of a round goes first, so drift (frequency, other load) falls on both;
    // the ratio is taken within each round, whose two sides are seconds apart.
    for round in 0..ROUNDS {
        for traced in [round % 2 == 1, round % 2 == 0] {
            let probe = traced.then(load);
            let samples = if traced { &mut with } else { &mut without };
            for (i, (_, work)) in workloads.iter_mut().enumerate() {
                // Untimed first: after the pause below (or the load) the vCPU is cold, and the
                // first loop timed would pay for it on one side only.
                time(work, ITERATIONS / 4);
                samples[i].push(time(work, ITERATIONS));
            }
            // Unloading frees programs and maps in kernel workers for a while: let them finish
            // before the next side is timed on this 2-core machine.
            drop(probe);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // Kernel-measured hook time per write+read pair, every program summed, in a round of its
    // own: bpf_stats slows what it measures.
    let probe = load();
    let stats_on = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable bpf_stats");
    let hook_ns =
        |stats: &[ProgramStats]| -> u128 { stats.iter().map(|p| p.run_time.as_nanos()).sum() };
    let mut per_pair = Vec::new();
    let mut breakdown = Vec::new();
    for (name, work) in workloads.iter_mut() {
        let before = probe.program_stats();
        time(work, ITERATIONS);
        let after = probe.program_stats();
        per_pair.push((hook_ns(&after) - hook_ns(&before)) as f64 / f64::from(ITERATIONS));
        for (b, a) in before.iter().zip(&after) {
            let runs = a.run_count - b.run_count;
            if runs > 0 {
                let ns = (a.run_time - b.run_time).as_nanos() as f64 / runs as f64;
                let per = runs as f64 / f64::from(ITERATIONS);
                breakdown.push(format!("{name:<14} {:<22} {per:>9.2} {ns:>9.1}", a.name));
            }
        }
    }
    drop(stats_on);
    drop(probe);
    println!(
        "\nhook cost on non-DNS I/O, {mode} capture: ns per write+read pair, medians of {ROUNDS} \
         rounds of {ITERATIONS} (ratio: median of the rounds' ratios); hook time from bpf_stats \
         in a separate round"
    );
    println!(
        "{:<14} {:>10} {:>12} {:>8} {:>16}",
        "workload", "without", "with dnslens", "ratio", "hook ns per pair"
    );
    for (i, (name, _)) in workloads.iter().enumerate() {
        let base = median(without[i].iter().copied().map(ns_per_pair).collect());
        let traced = median(with[i].iter().copied().map(ns_per_pair).collect());
        let ratio = median(
            with[i]
                .iter()
                .zip(&without[i])
                .map(|(w, b)| w.as_secs_f64() / b.as_secs_f64())
                .collect(),
        );
        println!(
            "{name:<14} {base:>10.0} {traced:>12.0} {ratio:>8.3} {:>16.1}",
            per_pair[i]
        );
    }
    println!(
        "\n{:<14} {:<22} {:>9} {:>9}",
        "workload", "program", "runs/pair", "ns/run"
    );
    for line in breakdown {
        println!("{line}");
    }
}
