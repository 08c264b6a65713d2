//! Needs root: loads the real BPF object and hooks this process's libc (the same file `getent`
//! maps). `getent` runs in a mount and network namespace of its own (prefix from
//! DNSLENS_TEST_PREFIX) with its own /etc/hosts and a resolv.conf naming its own loopback, so
//! no lookup leaves the test: each call must come up as a libc record with the name passed,
//! its result and a latency.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use dnslens_probe::{Hooked, LibcCall, LibcFile, LibcFunction, Probe, ProbeConfig, Record};
use dnslens_testkit::have_root;

/// Runs `getent DATABASE KEY` in namespaces of its own; returns its pid and whether it found KEY.
fn getent(dir: &std::path::Path, database: &str, key: &str) -> (u32, bool) {
    let script = format!(
        "mount --bind {0}/hosts /etc/hosts && mount --bind {0}/resolv.conf /etc/resolv.conf \
         && exec getent {database} {key}",
        dir.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("unshare (util-linux) runs");
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    (pid, status.success())
}

/// The libc records of process `pid`, until `want` or 3 s.
fn calls_of(probe: &mut Probe, pid: u32, want: usize) -> Vec<LibcCall> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.len() < want && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Ok(Record::Libc(call)) = Record::parse(record) {
                    if call.header.tgid == pid {
                        seen.push(call);
                    }
                }
            })
            .unwrap();
    }
    seen
}

#[test]
fn root_libc_calls_come_with_name_result_and_latency() {
    if !have_root() {
        return;
    }
    let prefix = std::env::var("DNSLENS_TEST_PREFIX").unwrap_or_else(|_| "dnslens".into());
    let dir = std::env::temp_dir().join(format!("{prefix}-libc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{prefix}-app.test");
    std::fs::write(
        dir.join("hosts"),
        format!("127.0.0.1 localhost\n10.9.9.9 {name}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let result = std::panic::catch_unwind(|| {
        let mut probe = Probe::load(&ProbeConfig::default()).unwrap();
        let libc = LibcFile::of_process(std::process::id())
            .unwrap()
            .expect("this test runs on a glibc host");
        assert_eq!(probe.attach_libc(&libc), Ok(Hooked::Now));
        assert_eq!(probe.attach_libc(&libc), Ok(Hooked::Already));

        // getaddrinfo, answered from /etc/hosts: no DNS message at all.
        let (pid, found) = getent(&dir, "ahosts", &name);
        assert!(found, "getent ahosts {name} in its namespace");
        let calls = calls_of(&mut probe, pid, 1);
        let call = calls
            .first()
            .unwrap_or_else(|| panic!("no libc record of {pid}"));
        assert_eq!(call.function, LibcFunction::Getaddrinfo);
        assert_eq!((call.name.as_str(), call.status), (name.as_str(), 0));
        assert!(call.latency_ns() > 0, "{call:?}");
        assert_eq!(call.header.leader_comm(), "getent");
        assert_ne!(call.header.cgroup_id, 0, "enrichment needs the cgroup");

        // gethostbyname2 (getent hosts) runs gethostbyname2_r's code: first for AF_INET6,
        // which fails (h_errno set), then for AF_INET, found in /etc/hosts.
        let (pid, found) = getent(&dir, "hosts", &name);
        assert!(found);
        let calls = calls_of(&mut probe, pid, 2);
        let results: Vec<_> = calls
            .iter()
            .map(|c| (c.function, c.name.as_str(), c.status))
            .collect();
        let last = (LibcFunction::Gethostbyname2R, name.as_str(), 0);
        assert_eq!(results.last(), Some(&last), "{results:?}");
        assert!(
            results[..results.len() - 1].iter().all(|r| r.2 > 0),
            "{results:?}"
        );
        let missing = format!("{prefix}-missing.test");
        let (pid, found) = getent(&dir, "ahosts", &missing);
        assert!(!found);
        let calls = calls_of(&mut probe, pid, 1);
        let call = calls
            .first()
            .unwrap_or_else(|| panic!("no libc record of {pid}"));
        assert_eq!(call.name, missing);
        assert_ne!(call.status, 0, "{call:?}");
    });
    std::fs::remove_dir_all(&dir).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
