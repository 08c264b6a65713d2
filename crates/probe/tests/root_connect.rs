//! Needs root: loads the real BPF object and checks that TCP connects are reported with the
//! connecting thread, the destination and the network namespace, and that loopback ones are
//! not. Loopback destinations are dropped in the kernel, so the reported connects go to
//! addresses on a veth pair inside a network namespace this test creates (and removes); no
//! traffic leaves it.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use dnslens_probe::{
    ConnectRecord, Direction, KernelCounter, Probe, ProbeConfig, Record, Syscall, Transport,
};
use dnslens_testkit::have_root;

const NS_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 1);
const NS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 1);
const THREAD: &str = "dnsl-connect";

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip(8)");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// A network namespace with a veth pair inside it (both ends), 198.18.77.1/30 and
/// 2001:db8:77::1/64 on one end. Removed on drop, also when the test fails.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("dnslens-probe-connect-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        let n = ns.name.as_str();
        ip(&[
            "-n", n, "link", "add", "dlc0", "type", "veth", "peer", "name", "dlc1",
        ]);
        ip(&["-n", n, "addr", "add", "198.18.77.1/30", "dev", "dlc0"]);
        ip(&[
            "-n",
            n,
            "-6",
            "addr",
            "add",
            "2001:db8:77::1/64",
            "dev",
            "dlc0",
            "nodad",
        ]);
        for link in ["lo", "dlc0", "dlc1"] {
            ip(&["-n", n, "link", "set", link, "up"]);
        }
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Inode of the namespace, as the kernel reports it in `netns_ino`.
    fn inode(&self) -> u32 {
        std::fs::metadata(self.path()).unwrap().ino() as u32
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("cleanup: ip netns del {} failed: {status:?}", self.name);
        }
    }
}

/// One connect made by the test, and what the kernel should say about it.
#[derive(Debug)]
struct Made {
    dst: SocketAddr,
    src: SocketAddr,
    tid: u32,
    socket_ino: u64,
}

/// Listens on `addr` and connects to `dst` (the listener's address, or another spelling of it)
/// from the calling thread.
fn connect_to(listen: SocketAddr, dst: impl Fn(u16) -> SocketAddr) -> (Made, TcpListener) {
    let listener = TcpListener::bind(listen).unwrap();
    let dst = dst(listener.local_addr().unwrap().port());
    let stream = TcpStream::connect(dst).unwrap();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    // SAFETY: the fd is open for the duration of the call; `stat` is written by it.
    let socket_ino = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(stream.as_raw_fd(), &mut stat), 0);
        stat.st_ino
    };
    let made = Made {
        dst: unmapped(dst),
        src: unmapped(stream.local_addr().unwrap()),
        tid,
        socket_ino,
    };
    (made, listener)
}

/// IPv4-mapped IPv6 addresses as IPv4, as records show them.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// The connect records of this process until `want` came or three seconds passed.
fn collect(probe: &mut Probe, want: usize) -> Vec<ConnectRecord> {
    let me = std::process::id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.len() < want && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Record::Connect(c) = Record::parse(record).expect("well-formed record") {
                    if c.header.tgid == me {
                        seen.push(c);
                    }
                }
            })
            .unwrap();
    }
    seen
}

#[test]
fn root_connects_are_reported_with_thread_destination_and_netns_but_not_loopback() {
    if !have_root() {
        return;
    }
    let mut probe = Probe::load(&ProbeConfig::default()).unwrap_or_else(|e| panic!("load: {e}"));
    let hook = probe
        .hooks()
        .iter()
        .find(|h| h.name == "raw_tracepoint/inet_sock_set_state")
        .expect("the connect hook is listed");
    assert!(hook.attached, "connect hook not attached: {hook:?}");

    // Loopback, in this namespace: not reported.
    let (v4_loop, _l1) = connect_to("127.0.0.1:0".parse().unwrap(), |p| {
        SocketAddr::from((Ipv4Addr::LOCALHOST, p))
    });
    let (v6_loop, _l2) = connect_to("[::1]:0".parse().unwrap(), |p| {
        SocketAddr::from((Ipv6Addr::LOCALHOST, p))
    });
    let (mapped_loop, _l3) = connect_to("[::]:0".parse().unwrap(), |p| {
        SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), p))
    });
    let loopback = [v4_loop.dst, v6_loop.dst, mapped_loop.dst];

    let netns = Netns::new();
    let ns_path = netns.path();
    let made = std::thread::Builder::new()
        .name(THREAD.into())
        .spawn(move || {
            let ns = std::fs::File::open(&ns_path).unwrap();
            // SAFETY: setns on an open namespace fd; it moves only this thread, which exits
            // when done.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let v4 = connect_to(SocketAddr::from((NS_V4, 0)), |p| {
                SocketAddr::from((NS_V4, p))
            });
            let v6 = connect_to(SocketAddr::from((NS_V6, 0)), |p| {
                SocketAddr::from((NS_V6, p))
            });
            // An IPv6 socket connecting to an IPv4 address (dual-stack programs).
            let mapped = connect_to(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)), |p| {
                SocketAddr::from((NS_V4.to_ipv6_mapped(), p))
            });
            vec![v4.0, v6.0, mapped.0]
        })
        .unwrap()
        .join()
        .unwrap();

    let seen = collect(&mut probe, made.len());
    let leader = std::fs::read_to_string("/proc/self/comm").unwrap();
    for m in &made {
        let c = seen
            .iter()
            .find(|c| c.header.remote() == m.dst)
            .unwrap_or_else(|| panic!("no connect record for {m:?}: {seen:?}"));
        let h = &c.header;
        assert_eq!((h.tgid, h.tid), (std::process::id(), m.tid), "{m:?}");
        assert_eq!(h.comm(), THREAD);
        assert_eq!(h.leader_comm(), leader.trim_end());
        assert_eq!(h.netns_ino, netns.inode(), "{m:?}");
        assert_eq!(h.socket_ino, m.socket_ino, "{m:?}");
        assert_eq!(h.transport(), Ok(Transport::Tcp));
        assert_eq!(h.direction(), Ok(Direction::Send));
        assert_eq!(h.syscall(), Ok(Syscall::Connect));
        assert_eq!((h.payload_len, h.msg_len), (0, 0));
        assert_eq!(h.uid, 0);
        assert!(h.process_start_ns > 0 && h.cgroup_id > 0, "{h:?}");
        // The kernel picks an unbound socket's port just after the hook: 0 or the real one.
        let src = h.local();
        assert_eq!(src.ip(), m.src.ip(), "source address: {m:?}");
        assert!(
            src.port() == 0 || src.port() == m.src.port(),
            "{src} vs {m:?}"
        );
    }
    let reported: Vec<_> = seen
        .iter()
        .filter(|c| loopback.contains(&c.header.remote()))
        .collect();
    assert!(
        reported.is_empty(),
        "loopback connects reported: {reported:?}"
    );
    assert!(probe.counters().unwrap().get(KernelCounter::Events) >= made.len() as u64);
}
