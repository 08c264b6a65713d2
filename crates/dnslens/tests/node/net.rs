//! The namespaces, links and DNS server of one test node, and running a resolver in it.
//!
//! ```text
//!  netns <tag>-srv: br0 10.213.K.1/24 fd00:d1e5:P:N::1/64, dnsmasq on both
//!     | c0  (veth)         | c1
//!  netns <tag>-c0: eth0 .2 / ::2      netns <tag>-c1: eth0 .3 / ::3
//! ```
//! The veth ends are created directly inside the namespaces (so they never exist on the host)
//! and no namespace has a default route: only the /24 and /64 on the links are reachable. A
//! test may add zones to dnsmasq (`Node::start_with`) and a second DNS server on another
//! address of the server namespace (`Node::start_second_server`), or an address that stands
//! for one outside (`Node::add_outside_address`).

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::cgroup::PodCgroup;
use super::dnsmasq::{self, DnsmasqLog, LogQuery};
use super::{host_lock, ip, ms, unique_tag, wait_until, which, ChildGuard, TempDir};

/// One network namespace of the node.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// Inode of the namespace, as dnslens reports it in `netns`.
    pub netns_ino: u64,
}

impl Host {
    pub fn ips(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.v4), IpAddr::V6(self.v6)]
    }
}

/// A DNS server namespace and its client namespaces. Dropping it stops dnsmasq and removes
/// everything it created.
pub struct Node {
    pub tag: String,
    pub server: Host,
    pub clients: Vec<Host>,
    pub dir: TempDir,
    dnsmasq: Option<ChildGuard>,
    /// More DNS servers in the server namespace.
    others: Vec<ChildGuard>,
    /// dnsmasq options besides the test zone's.
    zone_extra: Vec<String>,
    namespaces: Vec<String>,
    etc_netns: Vec<PathBuf>,
}

/// What a resolver run did, and which dnsmasq log queries it caused.
#[derive(Debug)]
pub struct Run {
    pub label: String,
    pub client: usize,
    pub pid: u32,
    /// Expected `process.name`: the command name the kernel gives the executed file.
    pub name: String,
    /// Expected `cgroup`, when the run was placed in a pod cgroup.
    pub cgroup: Option<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub log_queries: Vec<LogQuery>,
}

impl Run {
    /// Panics unless the resolver exited with `code` (a harness failure, not a dnslens one).
    pub fn expect_exit(&self, code: i32) -> &Run {
        assert_eq!(
            self.status.code(),
            Some(code),
            "resolver run {:?} exited with {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.label,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn expect_ok(&self) -> &Run {
        self.expect_exit(0)
    }

    /// Panics unless stdout contains `needle`.
    pub fn expect_output(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "resolver run {:?}: output lacks {needle:?}\nstdout: {}\nstderr: {}",
            self.label,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless dnsmasq logged at least one query from this run.
    pub fn expect_queries(&self) -> &Run {
        assert!(
            !self.log_queries.is_empty(),
            "resolver run {:?} caused no query in the dnsmasq log\nstdout: {}\nstderr: {}",
            self.label,
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Node {
    /// Builds a node with `clients` client namespaces (1 or 2) and starts dnsmasq.
    pub fn start(clients: usize) -> Node {
        Node::start_with(clients, &[])
    }

    /// As `start`, with more dnsmasq options (zones of a test's own).
    pub fn start_with(clients: usize, dnsmasq_args: &[String]) -> Node {
        assert!((1..=2).contains(&clients), "a node has 1 or 2 clients");
        let (tag, n) = unique_tag();
        let pid = std::process::id();
        // Namespaces keep the subnets apart anyway; distinct subnets only make logs readable.
        let k = ((pid as usize * 7 + n as usize) % 250 + 1) as u8;
        let v6_net = |host: u16| {
            Ipv6Addr::new(
                0xfd00,
                0xd1e5,
                (pid & 0xffff) as u16,
                n as u16,
                0,
                0,
                0,
                host,
            )
        };
        let host = |name: &str, i: u8| Host {
            ns: format!("{tag}-{name}"),
            v4: Ipv4Addr::new(10, 213, k, i),
            v6: v6_net(i as u16),
            netns_ino: 0,
        };
        let mut node = Node {
            dir: TempDir::new(&tag),
            server: host("srv", 1),
            clients: (0..clients)
                .map(|i| host(&format!("c{i}"), i as u8 + 2))
                .collect(),
            tag,
            dnsmasq: None,
            others: Vec::new(),
            zone_extra: dnsmasq_args.to_vec(),
            namespaces: Vec::new(),
            etc_netns: Vec::new(),
        };
        node.build_links();
        node.start_dnsmasq();
        node
    }

    fn add_ns(&mut self, ns: &str) -> u64 {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        fs::metadata(Path::new("/run/netns").join(ns))
            .unwrap_or_else(|e| panic!("stat /run/netns/{ns}: {e}"))
            .ino()
    }

    fn build_links(&mut self) {
        let srv = self.server.ns.clone();
        self.server.netns_ino = self.add_ns(&srv);
        ip(&["-n", &srv, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &srv, "link", "set", "br0", "up"]);
        let (v4, v6) = (self.server.v4, self.server.v6);
        ip(&["-n", &srv, "addr", "add", &format!("{v4}/24"), "dev", "br0"]);
        // nodad: usable at once, no 1-2 s of duplicate address detection.
        let v6 = format!("{v6}/64");
        ip(&["-n", &srv, "addr", "add", &v6, "dev", "br0", "nodad"]);
        for i in 0..self.clients.len() {
            let c = self.clients[i].clone();
            self.clients[i].netns_ino = self.add_ns(&c.ns);
            let port = format!("c{i}");
            // Created in place: neither end ever exists in the host's namespace.
            ip(&[
                "link", "add", &port, "netns", &srv, "type", "veth", "peer", "name", "eth0",
                "netns", &c.ns,
            ]);
            ip(&["-n", &srv, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &srv, "link", "set", &port, "up"]);
            ip(&["-n", &c.ns, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                &c.ns,
                "addr",
                "add",
                &format!("{}/24", c.v4),
                "dev",
                "eth0",
            ]);
            let v6 = format!("{}/64", c.v6);
            ip(&["-n", &c.ns, "addr", "add", &v6, "dev", "eth0", "nodad"]);
            self.write_resolv_conf(i, IpAddr::V4(self.server.v4));
        }
    }

    /// Points client `i`'s /etc/resolv.conf (as seen under `ip netns exec`) at `server`.
    pub fn write_resolv_conf(&mut self, i: usize, server: IpAddr) {
        self.write_resolv_conf_text(
            i,
            &format!("nameserver {server}\noptions timeout:2 attempts:2\n"),
        );
    }

    /// Client `i`'s /etc/resolv.conf, whole.
    pub fn write_resolv_conf_text(&mut self, i: usize, text: &str) {
        self.write_etc(i, "resolv.conf", text);
    }

    /// Client `i`'s /etc/`file`, whole: `ip netns exec` bind-mounts /etc/netns/NS/`file` there.
    pub fn write_etc(&mut self, i: usize, file: &str, text: &str) {
        let dir = Path::new("/etc/netns").join(&self.clients[i].ns);
        {
            let _lock = host_lock();
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        if !self.etc_netns.contains(&dir) {
            self.etc_netns.push(dir.clone());
        }
        fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    fn start_dnsmasq(&mut self) {
        let listen = format!("{},{}", self.server.v4, self.server.v6);
        let zones = [dnsmasq::zone_args(), self.zone_extra.clone()].concat();
        let child = self.spawn_dnsmasq("dnsmasq", &self.server.ns, &listen, &zones);
        self.dnsmasq = Some(child);
    }

    /// Starts another dnsmasq serving the same zones in the server namespace, on an address of
    /// its own (`.53` of the node's /24), and returns that address. Stopped with the node.
    pub fn start_second_server(&mut self) -> Ipv4Addr {
        let [a, b, c, _] = self.server.v4.octets();
        let addr = Ipv4Addr::new(a, b, c, 53);
        let srv = self.server.ns.clone();
        ip(&[
            "-n",
            &srv,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "br0",
        ]);
        let zones = [dnsmasq::zone_args(), self.zone_extra.clone()].concat();
        let child = self.spawn_dnsmasq(
            &format!("dnsmasq{}", self.others.len() + 2),
            &srv,
            &addr.to_string(),
            &zones,
        );
        self.others.push(child);
        addr
    }

    /// Gives the server namespace `addr`, an address outside the node's /24 as an Internet
    /// server's would be, and routes it from every client (still only inside the node).
    pub fn add_outside_address(&mut self, addr: Ipv4Addr) {
        ip(&[
            "-n",
            &self.server.ns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "br0",
        ]);
        for c in &self.clients {
            ip(&[
                "-n",
                &c.ns,
                "route",
                "add",
                &format!("{addr}/32"),
                "dev",
                "eth0",
            ]);
        }
    }

    /// Starts a caching dnsmasq on 127.0.0.53 in client `i`'s namespace, as systemd-resolved
    /// or NodeLocal DNSCache, forwarding to the node's dnsmasq; returns its pid and log path.
    pub fn start_local_forwarder(&mut self, i: usize) -> (u32, PathBuf) {
        let ns = self.clients[i].ns.clone();
        ip(&["-n", &ns, "addr", "add", "127.0.0.53/8", "dev", "lo"]);
        let name = format!("forwarder{i}");
        let upstream = format!("--server={}", self.server.v4);
        let child = self.spawn_dnsmasq(&name, &ns, "127.0.0.53", &[upstream]);
        let pid = child.pid();
        self.others.push(child);
        (pid, self.dir.path().join(format!("{name}.log")))
    }

    /// Runs dnsmasq with `args` (zones, upstreams) in namespace `ns`, listening on `listen`,
    /// logging to `<name>.log` in the node's directory; waits until it has bound its sockets.
    fn spawn_dnsmasq(&self, name: &str, ns: &str, listen: &str, args: &[String]) -> ChildGuard {
        let bin = which("dnsmasq").expect("dnsmasq not installed: run scripts/install-deps.sh");
        let log = self.dir.path().join(format!("{name}.log"));
        let stderr = self.dir.path().join(format!("{name}.stderr"));
        let mut cmd = Command::new(which("ip").expect("ip"));
        cmd.args(["netns", "exec", ns])
            .arg(bin)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--group=root",
                "--bind-interfaces",
                "--log-queries=extra",
            ])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--log-facility={}", log.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("dnsmasq stderr file"));
        let mut child = ChildGuard::new(cmd.spawn().expect("spawn dnsmasq"));
        // It logs "started" once its sockets are bound.
        let started = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&log).is_ok_and(|t| t.contains("started, version"))
        });
        let exited = child.wait_timeout(ms(0));
        assert!(
            started && exited.is_none(),
            "{name} did not start (exit: {exited:?})\nstderr: {}\nlog: {}",
            fs::read_to_string(&stderr).unwrap_or_default(),
            fs::read_to_string(&log).unwrap_or_default()
        );
        child
    }

    /// Pid of the main dnsmasq process (UDP is answered by it, TCP by forked children).
    pub fn dnsmasq_pid(&self) -> u32 {
        self.dnsmasq.as_ref().expect("dnsmasq").pid()
    }

    pub fn dnsmasq_log(&self) -> DnsmasqLog {
        DnsmasqLog::parse(&fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    /// An address on the node's subnet that no namespace has: datagrams from client 0 to it go
    /// nowhere. It gets a permanent neighbour entry (a MAC no one has, dropped by the bridge):
    /// without one, sends wait for ARP in the socket's buffer, and a burst blocks.
    pub fn nowhere(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.server.v4.octets();
        let addr = Ipv4Addr::new(a, b, c, 250);
        let ns = &self.clients[0].ns;
        let addr_text = addr.to_string();
        super::ip(&[
            "-n",
            ns,
            "neigh",
            "replace",
            &addr_text,
            "lladdr",
            "02:00:00:00:00:fa",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        addr
    }

    /// The server's DNS address in the family of `client`.
    pub fn server_addr_for(&self, client: IpAddr) -> SocketAddr {
        match client {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(self.server.v4), 53),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(self.server.v6), 53),
        }
    }

    /// Runs `program args` in client `client`'s namespace and, if given, in `cgroup`, and waits
    /// for it (30 s at most). The process joins the cgroups before `ip netns exec`, which
    /// remounts /sys, and keeps its pid through the `exec`s, so `Run::pid` is the resolver's.
    pub fn run(
        &self,
        label: &str,
        client: usize,
        cgroup: Option<&PodCgroup>,
        program: &Path,
        args: &[&str],
    ) -> Run {
        let before = self.dnsmasq_log().queries.len();
        let procs: Vec<String> = cgroup
            .map(|c| {
                c.procs_files()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let out = self.dir.path().join(format!("{label}.out"));
        let err = self.dir.path().join(format!("{label}.err"));
        let script = r#"for f in $DLT_PROCS; do echo $$ > "$f" || exit 111; done
unset DLT_PROCS
exec ip netns exec "$0" "$@""#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&self.clients[client].ns)
            .arg(program)
            .args(args)
            .env("DLT_PROCS", procs.join(" "))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let mut guard = ChildGuard::new(child);
        let pid = guard.pid();
        let status = guard
            .wait_timeout(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("resolver run {label:?} did not finish in 30 s"));
        let queries = self.dnsmasq_log().queries;
        let run = Run {
            label: label.to_string(),
            client,
            pid,
            name: comm_of(program),
            cgroup: cgroup.map(|c| c.path.clone()),
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
            log_queries: queries[before.min(queries.len())..].to_vec(),
        };
        assert_ne!(
            status.code(),
            Some(111),
            "run {label:?}: could not join cgroup {:?}: {}",
            run.cgroup,
            run.stderr
        );
        run
    }
}

/// The command name the kernel gives a process that executed `program`: the file name, cut to
/// 15 bytes (TASK_COMM_LEN - 1).
pub fn comm_of(program: &Path) -> String {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.chars()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= 15).then_some(c)
        })
        .collect()
}

impl Drop for Node {
    fn drop(&mut self) {
        for mut dnsmasq in self.dnsmasq.take().into_iter().chain(self.others.drain(..)) {
            dnsmasq.signal(libc::SIGTERM);
            if dnsmasq.wait_timeout(Duration::from_secs(2)).is_none() {
                dnsmasq.signal(libc::SIGKILL);
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            let status = Command::new("ip").args(["netns", "del", &ns]).status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                eprintln!("cleanup: ip netns del {ns} failed: {status:?}");
            }
        }
        let _lock = host_lock();
        for dir in self.etc_netns.drain(..) {
            if let Err(e) = fs::remove_dir_all(&dir) {
                eprintln!("cleanup: rm -r {}: {e}", dir.display());
            }
        }
        // Left empty, /etc/netns means nothing to ip(8); a fresh system has none.
        let _ = fs::remove_dir("/etc/netns");
    }
}
