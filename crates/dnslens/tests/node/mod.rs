//! The end-to-end test "node": a small host built from kernel primitives on which dnslens is run
//! against real resolvers. A DNS server (dnsmasq) lives in its own network namespace; clients
//! live in one or two more, joined to it by veth pairs on a private /24 and /64, with no default
//! route, so no packet can leave the machine. Client processes are placed in cgroups named the
//! way the kubelet names them. dnsmasq's query log is the ground truth of what was asked.
//!
//! Everything a test creates carries a name unique to the run ([`unique_tag`]: `dlt<pid>x<n>`),
//! is owned by a guard and is removed when the guard drops, also when the test panics.

// Shared by two test binaries (e2e.rs, faults.rs), each of which uses a part of it.
#![allow(dead_code)]

pub mod agent;
pub mod bpf;
pub mod cgroup;
pub mod check;
pub mod dnsmasq;
pub mod net;
pub mod relay;
pub mod resolvers;
pub mod trace;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// Not every suite that includes this module needs root.
#[allow(unused_imports)]
pub use dnslens_testkit::have_root;

/// Whether an optional tool is installed. Outside CI a missing tool skips the test with a
/// message; in CI it is a failure, since scripts/install-deps.sh installs all of them.
pub fn have_tool(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is not installed and CI is set: run scripts/install-deps.sh"
    );
    println!("skipped: needs {tool} (scripts/install-deps.sh installs it)");
    false
}

/// The absolute path of `tool` on PATH (or in the sbin directories, which a non-login root shell
/// may lack), with symlinks resolved.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|p| fs::canonicalize(p).ok());
    found
}

/// A name prefix unique to this test process and to one call: `dlt<pid>x<n>`, or with
/// `DNSLENS_TEST_PREFIX` in place of `dlt` (each engineer's own on a shared machine).
pub fn unique_tag() -> (String, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = std::env::var("DNSLENS_TEST_PREFIX").unwrap_or_else(|_| "dlt".to_string());
    (format!("{prefix}{}x{n}", std::process::id()), n)
}

/// Where test processes keep shared state: the lock below and the cgroup registry.
pub const STATE_DIR: &str = "/run/dnslens-e2e";

/// Serialises changes to shared parents (`/etc/netns`, `kubepods.slice`, ...) between tests,
/// which run on parallel threads and possibly in overlapping processes: one test must not
/// remove a parent directory that another is about to create a child in. An exclusive flock,
/// released when the returned file is dropped.
pub fn host_lock() -> File {
    let dir = Path::new(STATE_DIR);
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .unwrap_or_else(|e| panic!("open {}/lock: {e}", dir.display()));
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    lock
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip` with arguments, which must succeed.
pub fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

/// A temporary directory removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(tag);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A child process that is killed (by its pid, which cannot have been reused while it is
/// unreaped) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` while the child is unreaped.
    pub fn signal(&mut self, signal: libc::c_int) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(ms(20)),
                _ => return None,
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(ms(20));
    }
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}
