//! Needs root: loads the real BPF object and checks what it says about cgroups.
//!
//! The fair share: with a small ring buffer that nobody reads, a process in one cgroup floods a
//! DNS port with 4 KiB datagrams on loopback while a process in another cgroup sends a few
//! queries. The ring buffer fills; the flooder must lose its events (counted against its
//! cgroup), the other process none.
//!
//! The task's cached cgroups: a process that moves to another cgroup between two queries is
//! named by its new cgroup from the next query on.

use std::{
    fs::File,
    io::Write,
    os::{fd::AsRawFd, unix::fs::MetadataExt, unix::process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use dnslens_probe::{KernelCounter, Probe, ProbeConfig, Record};
use dnslens_testkit::have_root;

/// A port nothing listens on: sends to it are captured, answers never come.
const PORT: u16 = 53_417;
const VICTIM_QUERIES: usize = 50;

/// The cgroup2 mount: `/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`.
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .expect("a cgroup2 mount")
}

/// A v2 cgroup of this test, removed on drop (after its processes were waited for).
struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    fn new(role: &str) -> Cgroup {
        let path = cgroup2_mount().join(format!("dlfs-{}-{role}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        Cgroup { path }
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn id(&self) -> u64 {
        std::fs::metadata(&self.path).unwrap().ino()
    }

    /// Moves process `pid` into this cgroup.
    fn take(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Runs python3 `script` with `args` inside this cgroup from its first instruction.
    fn spawn(&self, script: &str, args: &[String]) -> Child {
        let procs = File::options()
            .write(true)
            .open(self.path.join("cgroup.procs"))
            .unwrap();
        let fd = procs.as_raw_fd();
        let mut command = Command::new("python3");
        command
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped());
        // SAFETY: only write(2) runs between fork and exec; the fd stays open in the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command.spawn().expect("python3");
        drop(procs);
        child
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.path) {
            eprintln!("cleanup: rmdir {}: {e}", self.path.display());
        }
    }
}

/// Sends 4 KiB datagrams to the port as fast as it can for the given seconds.
const FLOOD: &str = r#"
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" * 4084
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(64):
        s.sendto(payload, ("127.0.0.1", port))
"#;

/// Sends small queries, one every 20 ms, after a delay that puts them inside the flood, then
/// execs: the exec record must get through too.
const VICTIM: &str = r#"
import socket, struct, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
time.sleep(0.3)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    query = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + b"\x06victim\x07example\x00\x00\x01\x00\x01"
    s.sendto(query, ("127.0.0.1", port))
    time.sleep(0.02)
import os
os.execv("/bin/true", ["true"])
"#;

#[test]
fn root_a_flooding_cgroup_loses_its_own_events_not_another_cgroups() {
    if !have_root() {
        return;
    }
    let config = ProbeConfig {
        ports: vec![PORT],
        ring_buffer_bytes: 1 << 20,
        ..ProbeConfig::default()
    };
    let mut probe = Probe::load(&config).expect("load the BPF object");
    let flood_cgroup = Cgroup::new("flood");
    let victim_cgroup = Cgroup::new("victim");
    let mut flood = flood_cgroup.spawn(FLOOD, &[PORT.to_string(), "2".into()]);
    let mut victim = victim_cgroup.spawn(VICTIM, &[PORT.to_string(), VICTIM_QUERIES.to_string()]);
    // Nothing reads the ring buffer until both are done: the flood fills it.
    assert!(victim.wait().unwrap().success());
    assert!(flood.wait().unwrap().success());

    let (victim_pid, flood_pid) = (victim.id(), flood.id());
    let (mut victims, mut floods, mut execs) = (0, 0, 0);
    while probe
        .poll(Duration::from_millis(100), |record| {
            if let Ok(Record::Exec(exec)) = Record::parse(record) {
                if exec.tgid == victim_pid && exec.filename == "/bin/true" {
                    execs += 1;
                }
            }
            if let Ok(Record::Dns(event)) = Record::parse(record) {
                if event.header.remote_port != PORT {
                    return;
                }
                if event.header.cgroup_id == victim_cgroup.id() {
                    victims += 1;
                } else if event.header.cgroup_id == flood_cgroup.id() {
                    floods += 1;
                }
            }
        })
        .unwrap()
        > 0
    {}
    let counters = probe.counters().unwrap();
    let sources = probe.sources();
    let lost_by = |id: u64| {
        sources
            .iter()
            .filter(|(key, _)| key.cgroup_id == id)
            .map(|(_, s)| (s.over_share, s.ringbuf_full))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    };
    let flooder_lost = lost_by(flood_cgroup.id());
    eprintln!(
        "flooder: {floods} captured, lost {flooder_lost:?} (over share, ring full); \
         victim: {victims} captured; kernel: {counters}"
    );
    assert_eq!(
        victims, VICTIM_QUERIES,
        "every query of the victim captured"
    );
    assert_eq!(
        lost_by(victim_cgroup.id()),
        (0, 0),
        "the victim lost nothing"
    );
    assert!(
        flooder_lost.0 > 0,
        "the flood was cut at its share, and counted against its cgroup"
    );
    assert!(counters.get(KernelCounter::OverShare) >= flooder_lost.0);
    let (_, flooder) = sources
        .iter()
        .find(|(key, _)| key.cgroup_id == flood_cgroup.id())
        .expect("the flooder's cgroup is tracked");
    assert_eq!(
        (flooder.last_tgid, flooder.last_comm()),
        (flood_pid, "python3"),
        "the dropping process is named"
    );
    assert!(
        sources.len() <= dnslens_probe::MAX_SOURCES,
        "the sources map is bounded"
    );
}

/// Sends a query for `before.example`, waits for a line on stdin, then one for `after.example`.
const MOVER: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def ask(i, label):
    query = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + bytes([len(label)]) + label + b"\x07example\x00\x00\x01\x00\x01"
    s.sendto(query, ("127.0.0.1", port))
ask(1, b"before")
sys.stdin.readline()
ask(2, b"after")
"#;

#[test]
fn root_a_process_that_moves_cgroups_is_named_by_its_new_one() {
    if !have_root() {
        return;
    }
    let config = ProbeConfig {
        ports: vec![PORT],
        ..ProbeConfig::default()
    };
    let mut probe = Probe::load(&config).expect("load the BPF object");
    let (first, second) = (Cgroup::new("first"), Cgroup::new("second"));
    let mut mover = first.spawn(MOVER, &[PORT.to_string()]);
    let pid = mover.id();
    let mut seen: Vec<(String, u64, String)> = Vec::new();
    // Reads until `want` queries were seen, for at most 10 s.
    let mut read = |probe: &mut Probe, want: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.len() < want && std::time::Instant::now() < deadline {
            probe
                .poll(Duration::from_millis(100), |record| {
                    if let Ok(Record::Dns(event)) = Record::parse(record) {
                        if event.header.tgid == pid && event.header.remote_port == PORT {
                            let len = usize::from(event.payload[12]);
                            let name = &event.payload[13..13 + len];
                            seen.push((
                                String::from_utf8_lossy(name).into_owned(),
                                event.header.cgroup_id,
                                event.header.cgroup_names(),
                            ));
                        }
                    }
                })
                .unwrap();
        }
    };
    read(&mut probe, 1);
    second.take(pid);
    mover.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(mover.wait().unwrap().success());
    read(&mut probe, 2);
    eprintln!("{seen:?}");
    assert_eq!(
        seen,
        vec![
            (
                "before".to_string(),
                first.id(),
                format!("/{}", first.name())
            ),
            (
                "after".to_string(),
                second.id(),
                format!("/{}", second.name())
            ),
        ],
        "each query names the cgroup the process was in when it sent it"
    );
}
