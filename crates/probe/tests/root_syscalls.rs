//! Needs root: loads the real BPF object and checks that each send/receive syscall path is
//! captured with the right bytes, syscall, direction and addresses. Traffic stays on loopback,
//! on an ephemeral port that the probe is told is DNS.

use std::{
    io::{IoSlice, IoSliceMut, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use dnslens_probe::{
    CaptureMode, Direction, KernelCounter, Probe, ProbeConfig, Record, Syscall, Transport,
};
use dnslens_testkit::have_root;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    syscall: Syscall,
    direction: Direction,
    transport: Transport,
    payload: Vec<u8>,
    local: SocketAddr,
    remote: SocketAddr,
    msg_len: u32,
}

/// Each test runs once per capture mode: all must see the same messages.
const MODES: [CaptureMode; 3] = [
    CaptureMode::Sockets,
    CaptureMode::SyscallExit,
    CaptureMode::SyscallTracepoints,
];

fn start(port: u16, capture: CaptureMode) -> Probe {
    let config = ProbeConfig {
        ports: vec![port],
        capture,
        ..ProbeConfig::default()
    };
    let probe = Probe::load(&config).unwrap_or_else(|e| panic!("probe load: {e}"));
    let failed: Vec<_> = probe.hooks().iter().filter(|h| !h.attached).collect();
    assert!(failed.is_empty(), "hooks not attached: {failed:?}");
    assert_eq!(probe.mode(), capture);
    probe
}

/// Collects this process's events until `want` arrived or two seconds passed.
fn collect(probe: &mut Probe, want: usize) -> Vec<Seen> {
    let me = std::process::id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.len() < want && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                let Record::Dns(event) = Record::parse(record).expect("well-formed record") else {
                    return;
                };
                if event.header.tgid == me {
                    seen.push(Seen {
                        syscall: event.syscall().unwrap(),
                        direction: event.direction().unwrap(),
                        transport: event.transport().unwrap(),
                        payload: event.payload.to_vec(),
                        local: event.local(),
                        remote: event.remote(),
                        msg_len: event.header.msg_len,
                    });
                }
            })
            .unwrap();
    }
    seen
}

fn has(seen: &[Seen], syscall: Syscall, direction: Direction, payload: &[u8]) -> bool {
    seen.iter()
        .any(|s| s.syscall == syscall && s.direction == direction && s.payload == payload)
}

fn msg(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn root_udp_unconnected_sendto_recvfrom_both_ends() {
    if !have_root() {
        return;
    }
    for mode in MODES {
        root_udp_unconnected_sendto_recvfrom_both_ends_in(mode);
    }
}

fn root_udp_unconnected_sendto_recvfrom_both_ends_in(mode: CaptureMode) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut probe = start(port, mode);
    let client = UdpSocket::bind("0.0.0.0:0").unwrap();
    let client_addr = SocketAddr::from(([127, 0, 0, 1], client.local_addr().unwrap().port()));
    let query = msg(1, 40);
    let answer = msg(2, 120);
    client
        .send_to(&query, server.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &query[..]);
    server.send_to(&answer, from).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(n, answer.len());

    let seen = collect(&mut probe, 4);
    assert!(
        has(&seen, Syscall::Sendto, Direction::Send, &query),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Recvfrom, Direction::Recv, &query),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Sendto, Direction::Send, &answer),
        "{seen:?}"
    );
    // The client's socket is unconnected: only its earlier send to a DNS port marks it.
    // The wildcard-bound client is shown with the source address its datagrams carried.
    let client_send = seen
        .iter()
        .find(|s| s.syscall == Syscall::Sendto && s.payload == query)
        .unwrap();
    assert_eq!(client_send.local, client_addr, "{seen:?}");
    let client_recv = seen
        .iter()
        .find(|s| s.direction == Direction::Recv && s.payload == answer)
        .unwrap_or_else(|| panic!("client recvfrom missing: {seen:?}"));
    assert_eq!(client_recv.remote, server.local_addr().unwrap());
    assert_eq!(
        client_recv.local.port(),
        client.local_addr().unwrap().port()
    );
    assert!(seen.iter().all(|s| s.transport == Transport::Udp));

    // A receive that does not ask for the sender (plain recv, as dnsperf does): the server the
    // socket queried stands for it.
    let again = msg(3, 90);
    server.send_to(&again, from).unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), again.len());
    let seen = collect(&mut probe, 1);
    let plain = seen
        .iter()
        .find(|s| s.direction == Direction::Recv && s.payload == again)
        .unwrap_or_else(|| panic!("plain recv on an unconnected socket missing: {seen:?}"));
    assert_eq!(plain.remote, server.local_addr().unwrap());
}

#[test]
fn root_udp_connected_send_write_sendmsg_sendmmsg() {
    if !have_root() {
        return;
    }
    for mode in MODES {
        root_udp_connected_send_write_sendmsg_sendmmsg_in(mode);
    }
}

fn root_udp_connected_send_write_sendmsg_sendmmsg_in(mode: CaptureMode) {
    let server = UdpSocket::bind("[::1]:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut probe = start(port, mode);
    let client = UdpSocket::bind("[::1]:0").unwrap();
    client.connect(server.local_addr().unwrap()).unwrap();
    let fd = client.as_raw_fd();
    let (a, b, c, d, e) = (
        msg(10, 30),
        msg(20, 31),
        msg(30, 32),
        msg(40, 33),
        msg(50, 34),
    );

    client.send(&a).unwrap(); // sendto(fd, NULL)
                              // SAFETY: valid fd and buffers for the duration of each call.
    unsafe {
        assert_eq!(
            libc::write(fd, b.as_ptr().cast(), b.len()),
            b.len() as isize
        );
        let mut iov = [
            libc::iovec {
                iov_base: c.as_ptr() as *mut _,
                iov_len: 10,
            },
            libc::iovec {
                iov_base: c[10..].as_ptr() as *mut _,
                iov_len: c.len() - 10,
            },
        ];
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = iov.as_mut_ptr();
        hdr.msg_iovlen = 2;
        assert_eq!(libc::sendmsg(fd, &hdr, 0), c.len() as isize);
        let mut iov_d = libc::iovec {
            iov_base: d.as_ptr() as *mut _,
            iov_len: d.len(),
        };
        let mut iov_e = libc::iovec {
            iov_base: e.as_ptr() as *mut _,
            iov_len: e.len(),
        };
        let mut msgs: [libc::mmsghdr; 2] = std::mem::zeroed();
        msgs[0].msg_hdr.msg_iov = &mut iov_d;
        msgs[0].msg_hdr.msg_iovlen = 1;
        msgs[1].msg_hdr.msg_iov = &mut iov_e;
        msgs[1].msg_hdr.msg_iovlen = 1;
        assert_eq!(libc::sendmmsg(fd, msgs.as_mut_ptr(), 2, 0), 2);
    }
    // Server side: recvmmsg for two, recvmsg, read (on a connected server socket) and readv.
    let mut bufs = [[0u8; 512]; 5];
    // SAFETY: buffers outlive the calls; lengths are passed.
    unsafe {
        let [b0, b1, b2, b3, b4] = &mut bufs;
        let mut iovs = [
            libc::iovec {
                iov_base: b0.as_mut_ptr().cast(),
                iov_len: 512,
            },
            libc::iovec {
                iov_base: b1.as_mut_ptr().cast(),
                iov_len: 512,
            },
        ];
        let mut msgs: [libc::mmsghdr; 2] = std::mem::zeroed();
        msgs[0].msg_hdr.msg_iov = &mut iovs[0];
        msgs[0].msg_hdr.msg_iovlen = 1;
        msgs[1].msg_hdr.msg_iov = &mut iovs[1];
        msgs[1].msg_hdr.msg_iovlen = 1;
        let sfd = server.as_raw_fd();
        assert_eq!(
            libc::recvmmsg(sfd, msgs.as_mut_ptr(), 2, 0, std::ptr::null_mut()),
            2
        );
        let mut name: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: b2.as_mut_ptr().cast(),
            iov_len: 512,
        };
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        assert_eq!(libc::recvmsg(sfd, &mut hdr, 0), c.len() as isize);
        server.connect(client.local_addr().unwrap()).unwrap();
        assert_eq!(
            libc::read(sfd, b3.as_mut_ptr().cast(), 512),
            d.len() as isize
        );
        let mut iov = [libc::iovec {
            iov_base: b4.as_mut_ptr().cast(),
            iov_len: 512,
        }];
        assert_eq!(libc::readv(sfd, iov.as_mut_ptr(), 1), e.len() as isize);
    }

    let seen = collect(&mut probe, 10);
    assert!(has(&seen, Syscall::Sendto, Direction::Send, &a), "{seen:?}");
    assert!(has(&seen, Syscall::Write, Direction::Send, &b), "{seen:?}");
    assert!(
        has(&seen, Syscall::Sendmsg, Direction::Send, &c),
        "iovecs joined: {seen:?}"
    );
    assert!(
        has(&seen, Syscall::Sendmmsg, Direction::Send, &d),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Sendmmsg, Direction::Send, &e),
        "every mmsg message: {seen:?}"
    );
    assert!(
        has(&seen, Syscall::Recvmmsg, Direction::Recv, &a),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Recvmmsg, Direction::Recv, &b),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Recvmsg, Direction::Recv, &c),
        "{seen:?}"
    );
    assert!(has(&seen, Syscall::Read, Direction::Recv, &d), "{seen:?}");
    assert!(has(&seen, Syscall::Readv, Direction::Recv, &e), "{seen:?}");
    let send = seen.iter().find(|s| s.syscall == Syscall::Write).unwrap();
    assert_eq!(
        send.remote,
        server.local_addr().unwrap(),
        "IPv6 peer from the socket"
    );
    assert_eq!(send.local, client.local_addr().unwrap());
}

#[test]
fn root_tcp_stream_chunks_and_truncation() {
    if !have_root() {
        return;
    }
    for mode in MODES {
        root_tcp_stream_chunks_and_truncation_in(mode);
    }
}

fn root_tcp_stream_chunks_and_truncation_in(mode: CaptureMode) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut probe = start(port, mode);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let query = msg(60, 50);
    let prefix = (query.len() as u16).to_be_bytes();
    // Length and message in two iovecs of one writev, as glibc does.
    let written = client
        .write_vectored(&[IoSlice::new(&prefix), IoSlice::new(&query)])
        .unwrap();
    assert_eq!(written, prefix.len() + query.len());
    let mut len = [0u8; 2];
    accepted.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    accepted.read_exact(&mut body).unwrap();
    // A large answer: more than the kernel side copies.
    let answer = msg(70, 6000);
    accepted.write_all(&answer).unwrap();
    let mut got = vec![0u8; answer.len()];
    let mut first = vec![0u8; 6000];
    let n = client
        .read_vectored(&mut [IoSliceMut::new(&mut first)])
        .unwrap();
    got[..n].copy_from_slice(&first[..n]);
    client.read_exact(&mut got[n..]).unwrap();

    let seen = collect(&mut probe, 4);
    let joined: Vec<u8> = prefix.iter().chain(query.iter()).copied().collect();
    assert!(
        has(&seen, Syscall::Writev, Direction::Send, &joined),
        "{seen:?}"
    );
    assert!(
        has(&seen, Syscall::Recvfrom, Direction::Recv, &len)
            || has(&seen, Syscall::Read, Direction::Recv, &len),
        "{seen:?}"
    );
    let big = seen
        .iter()
        .find(|s| s.direction == Direction::Send && s.msg_len as usize == answer.len())
        .unwrap_or_else(|| panic!("large write missing: {seen:?}"));
    assert_eq!(big.payload.len(), dnslens_probe::MAX_PAYLOAD);
    assert_eq!(&big.payload[..], &answer[..dnslens_probe::MAX_PAYLOAD]);
    assert!(seen.iter().all(|s| s.transport == Transport::Tcp));
    assert!(probe.counters().unwrap().get(KernelCounter::Truncated) >= 1);
}

#[test]
fn root_other_ports_and_files_are_ignored() {
    if !have_root() {
        return;
    }
    for mode in MODES {
        root_other_ports_and_files_are_ignored_in(mode);
    }
}

fn root_other_ports_and_files_are_ignored_in(mode: CaptureMode) {
    let dns = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut probe = start(dns.local_addr().unwrap().port(), mode);
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"not dns", other.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 64];
    other.recv_from(&mut buf).unwrap();
    let path = std::env::temp_dir().join(format!("dnslens-probe-{}", std::process::id()));
    std::fs::write(&path, b"file bytes").unwrap();
    std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(collect(&mut probe, 1).is_empty());
}

#[test]
fn root_exec_records_carry_the_executable() {
    if !have_root() {
        return;
    }
    let mut probe = start(53, CaptureMode::Sockets);
    let child = std::process::Command::new("/bin/true")
        .spawn()
        .unwrap()
        .wait_with_output();
    child.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Ok(Record::Exec(exec)) = Record::parse(record) {
                    if exec.filename == "/bin/true" {
                        found = Some(exec);
                    }
                }
            })
            .unwrap();
    }
    let exec = found.expect("an exec record for /bin/true");
    assert!(exec.tgid > 0 && exec.process_start_ns > 0);
}

#[test]
fn root_ring_buffer_overflow_is_counted_and_recovers() {
    if !have_root() {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    // One page holds about twenty small events.
    let config = ProbeConfig {
        ports: vec![port],
        ring_buffer_bytes: 4096,
        ..ProbeConfig::default()
    };
    let mut probe = Probe::load(&config).unwrap_or_else(|e| panic!("probe load: {e}"));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.local_addr().unwrap()).unwrap();
    for i in 0..200u8 {
        client.send(&msg(i, 40)).unwrap();
    }
    // Past half full this process's cgroup is over its share of so small a buffer: the rest
    // of the burst is dropped as such (and as full, past the exec records' reserve).
    let counters = probe.counters().unwrap();
    let dropped = counters.get(KernelCounter::RingbufFull) + counters.get(KernelCounter::OverShare);
    assert!(dropped >= 100, "{counters:?}");
    assert_eq!(
        counters.get(KernelCounter::Events) + dropped,
        200,
        "every send is counted once: {counters:?}"
    );
    // Half full or more, then empty once read: what the agent's ring-buffer gauge shows.
    let (used, size) = probe.ring_use();
    assert_eq!(size, 4096);
    assert!((2048..=4096).contains(&used), "{used} bytes unread");
    collect(&mut probe, usize::MAX); // drain
    assert_eq!(probe.ring_use(), (0, 4096));
    let after = msg(250, 40);
    client.send(&after).unwrap();
    let seen = collect(&mut probe, 1);
    assert!(
        has(&seen, Syscall::Sendto, Direction::Send, &after),
        "no recovery: {seen:?}"
    );
}

/// Runs bash in fresh cgroups (v2 and/or the v1 memory hierarchy), sending one datagram to
/// `port`; the cgroups are removed before the event is read, as when a container exits at once.
fn send_from_cgroups(port: u16, hierarchies: &[&str], tag: &str) -> (String, u32) {
    let parent = format!("dnslens-probe-{}-{tag}.slice", std::process::id());
    let leaf = "ctr.scope";
    let dirs: Vec<std::path::PathBuf> = hierarchies
        .iter()
        .map(|root| std::path::Path::new(root).join(&parent).join(leaf))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    let join: String = dirs
        .iter()
        .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
        .collect();
    let child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{join}echo -n cgroup-{tag} > /dev/udp/127.0.0.1/{port}"
        ))
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    for dir in &dirs {
        std::fs::remove_dir(dir).unwrap();
        std::fs::remove_dir(dir.parent().unwrap()).unwrap();
    }
    (format!("/{parent}/{leaf}"), pid)
}

#[test]
fn root_cgroup_names_outlive_the_cgroup() {
    if !have_root() {
        return;
    }
    let v2 = "/sys/fs/cgroup/unified";
    let v1 = "/sys/fs/cgroup/memory";
    if !std::path::Path::new(v2).is_dir() || !std::path::Path::new(v1).is_dir() {
        // A pure cgroup v2 host: the v2 case is the same test with another root.
        eprintln!("skipped: needs the hybrid layout (cgroup v2 at {v2}, v1 memory at {v1})");
        assert!(std::env::var_os("CI").is_none(), "CI runs on a hybrid host");
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut probe = start(port, CaptureMode::Sockets);
    let (in_v2, pid_v2) = send_from_cgroups(port, &[v2, v1], "both");
    let (in_v1, pid_v1) = send_from_cgroups(port, &[v1], "v1only");
    let mut names = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while names.len() < 2 && Instant::now() < deadline {
        probe
            .poll(Duration::from_millis(50), |record| {
                if let Ok(Record::Dns(event)) = Record::parse(record) {
                    names.insert(event.header.tgid, event.header.cgroup_names());
                }
            })
            .unwrap();
    }
    assert_eq!(names.get(&pid_v2), Some(&in_v2), "{names:?}");
    assert_eq!(
        names.get(&pid_v1),
        Some(&in_v1),
        "v1 where v2 says root: {names:?}"
    );
}

/// The socket hooks fire once per message of a sendmmsg; which message each is must hold
/// however long the call takes between them. Here the second message of a TCP sendmmsg waits
/// for room in the socket (the reader starts late), so its hook fires long after the first's.
#[test]
fn root_sendmmsg_messages_keep_their_place_in_a_slow_call() {
    if !have_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut probe = start(port, CaptureMode::Sockets);
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Longer than the socket buffers take: the second message waits for this.
        std::thread::sleep(Duration::from_millis(300));
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut sink).unwrap();
        sink.len()
    });
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let first = msg(60, 40);
    let second = msg(70, 16 << 20);
    // SAFETY: valid fd and buffers for the duration of the call.
    unsafe {
        let mut iov_first = libc::iovec {
            iov_base: first.as_ptr() as *mut _,
            iov_len: first.len(),
        };
        let mut iov_second = libc::iovec {
            iov_base: second.as_ptr() as *mut _,
            iov_len: second.len(),
        };
        let mut msgs: [libc::mmsghdr; 2] = std::mem::zeroed();
        msgs[0].msg_hdr.msg_iov = &mut iov_first;
        msgs[0].msg_hdr.msg_iovlen = 1;
        msgs[1].msg_hdr.msg_iov = &mut iov_second;
        msgs[1].msg_hdr.msg_iovlen = 1;
        assert_eq!(
            libc::sendmmsg(client.as_raw_fd(), msgs.as_mut_ptr(), 2, 0),
            2
        );
    }
    drop(client);
    assert_eq!(reader.join().unwrap(), first.len() + second.len());
    let seen = collect(&mut probe, 2);
    let sends: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.syscall == Syscall::Sendmmsg && s.direction == Direction::Send)
        .collect();
    assert_eq!(sends.len(), 2, "{seen:?}");
    assert_eq!(sends[0].payload, first);
    assert_eq!(sends[1].msg_len as usize, second.len());
    assert!(
        sends[1].payload == second[..dnslens_probe::MAX_PAYLOAD],
        "the second message's own bytes, not the first's again: {:?}...",
        &sends[1].payload[..16]
    );
}
