//! What the detectors ask the host about a live process: the resolver configuration it sees
//! (its mount namespace's /etc/resolv.conf) and whether a file exists in its root. [`ProcFs`]
//! reads /proc; [`FakeProcesses`] answers from a table (tests, replays of saved traces).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnslens_lens::bounded::Lru;
use dnslens_lens::patient::Patient;
pub use dnslens_lens::resolv::ResolvConf;

/// The host as the detectors may ask about it. `None` means "cannot tell" (the process is
/// gone): detectors then stay quiet.
pub trait ProcessView {
    /// The resolver configuration process `pid` sees.
    fn resolv_conf(&mut self, pid: u32) -> Option<Arc<ResolvConf>>;
    /// Whether a file exists at `path` as process `pid` sees its file system.
    fn file_exists(&mut self, pid: u32, path: &str) -> Option<bool>;
    /// Questions not answered in time (see [`Patient`]).
    fn timeouts(&self) -> u64 {
        0
    }
}

/// A view asked on a thread of its own and waited for at most its patience: the files are the
/// workloads', and one on a file system that never answers must not stop the capture thread.
impl<V: ProcessView + Send + 'static> ProcessView for Patient<V> {
    fn resolv_conf(&mut self, pid: u32) -> Option<Arc<ResolvConf>> {
        self.ask(move |view| view.resolv_conf(pid)).flatten()
    }

    fn file_exists(&mut self, pid: u32, path: &str) -> Option<bool> {
        let path = path.to_string();
        self.ask(move |view| view.file_exists(pid, &path)).flatten()
    }

    fn timeouts(&self) -> u64 {
        Patient::timeouts(self)
    }
}

/// Reads /proc: `/proc/PID/root/etc/resolv.conf`, cached per mount namespace (the inode of
/// `/proc/PID/ns/mnt`) for `refresh`, at most `capacity` namespaces. The kernel gives a new
/// namespace the lowest free inode, so a dead namespace's number comes back at once: an entry
/// holds only while the file it was read from (device, inode, size, mtime) is the one there.
#[derive(Debug)]
pub struct ProcFs {
    root: PathBuf,
    refresh: Duration,
    cache: Lru<u64, (Arc<ResolvConf>, Instant, FileId)>,
}

/// A resolv.conf larger than this is not read (glibc's own are a few lines).
const MAX_RESOLV_CONF: u64 = 64 << 10;

/// Opens `path` inside `root` (a process's `/proc/PID/root`) for reading as that process would
/// see it, without ever waiting: symlinks resolve inside the root (openat2 `RESOLVE_IN_ROOT`,
/// Linux 5.6+; on older kernels from dnslens's own root), and `O_NONBLOCK` makes a FIFO or a
/// device open at once, to be refused by the caller's regular-file check, instead of blocking
/// the capture thread.
fn open_in_root(root: &Path, path: &str) -> Option<File> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let dir = File::open(root).ok()?;
    let name = CString::new(path).ok()?;
    // SAFETY: zero is a valid open_how (all fields are integers); the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory fd, a NUL-terminated name and a live open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just returned this fd, owned by nothing else.
        return Some(unsafe { File::from_raw_fd(fd as i32) });
    }
    if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(root.join(path))
        .ok()
}

/// Which file, in which version.
type FileId = (u64, u64, u64, i64, i64);

fn file_id(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

/// How long the capture thread waits for a process's file (its resolv.conf, its executable):
/// a local file answers in microseconds, even on a loaded node; one on a file system that hangs
/// costs this, once.
const PROC_PATIENCE: Duration = Duration::from_millis(250);

impl ProcFs {
    /// The host's /proc, asked on a worker thread of its own and waited for at most
    /// [`PROC_PATIENCE`]: the files are the workloads'.
    pub fn on_worker(capacity: usize) -> Patient<ProcFs> {
        Patient::new("dnslens-procfs", ProcFs::new(capacity), PROC_PATIENCE)
    }

    pub fn new(capacity: usize) -> Self {
        ProcFs::at("/proc", capacity)
    }

    /// A /proc mounted elsewhere (tests, a host's /proc seen from a container).
    pub fn at(root: impl Into<PathBuf>, capacity: usize) -> Self {
        ProcFs {
            root: root.into(),
            refresh: Duration::from_secs(60),
            cache: Lru::new(capacity),
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

impl ProcessView for ProcFs {
    fn resolv_conf(&mut self, pid: u32) -> Option<Arc<ResolvConf>> {
        let proc = self.root.join(pid.to_string());
        let mnt = std::fs::metadata(proc.join("ns/mnt")).ok()?.ino();
        let mut file = open_in_root(&proc.join("root"), "etc/resolv.conf")?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.size() > MAX_RESOLV_CONF {
            return None;
        }
        let id = file_id(&meta);
        if let Some((rc, at, was)) = self.cache.peek(&mnt) {
            if *was == id && at.elapsed() < self.refresh {
                return Some(rc.clone());
            }
        }
        let mut text = String::new();
        // The size was checked, but the file may grow while it is read.
        (&mut file)
            .take(MAX_RESOLV_CONF)
            .read_to_string(&mut text)
            .ok()?;
        let rc = Arc::new(ResolvConf::parse(&text));
        self.cache.insert(mnt, (rc.clone(), Instant::now(), id));
        Some(rc)
    }

    fn file_exists(&mut self, pid: u32, path: &str) -> Option<bool> {
        let proc = self.root.join(pid.to_string());
        // The process must still be there for its root to mean anything.
        std::fs::symlink_metadata(proc.join("root")).ok()?;
        let inside = proc.join("root").join(path.trim_start_matches('/'));
        Some(std::fs::symlink_metadata(inside).is_ok())
    }
}

/// A table of processes and files; anything not in it is unknown.
#[derive(Clone, Debug, Default)]
pub struct FakeProcesses {
    pub resolv: HashMap<u32, Arc<ResolvConf>>,
    /// (pid, path) of files that exist; pids in `known` have no other files.
    pub files: HashSet<(u32, String)>,
    pub known: HashSet<u32>,
}

impl FakeProcesses {
    pub fn with_resolv(mut self, pid: u32, text: &str) -> Self {
        self.resolv.insert(pid, Arc::new(ResolvConf::parse(text)));
        self.known.insert(pid);
        self
    }
}

impl ProcessView for FakeProcesses {
    fn resolv_conf(&mut self, pid: u32) -> Option<Arc<ResolvConf>> {
        self.resolv.get(&pid).cloned()
    }

    fn file_exists(&mut self, pid: u32, path: &str) -> Option<bool> {
        self.known
            .contains(&pid)
            .then(|| self.files.contains(&(pid, path.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn proc_fs_reads_and_caches_by_mount_namespace() {
        let dir = std::env::temp_dir().join(format!("dnslens-detect-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for pid in [10, 11, 13] {
            let p = dir.join(format!("{pid}"));
            std::fs::create_dir_all(p.join("root/etc")).unwrap();
            std::fs::create_dir_all(p.join("ns")).unwrap();
        }
        // Both processes share one mount namespace, and so its resolv.conf: the same files.
        std::fs::write(dir.join("10/ns/mnt"), "").unwrap();
        std::fs::hard_link(dir.join("10/ns/mnt"), dir.join("11/ns/mnt")).unwrap();
        std::fs::write(
            dir.join("10/root/etc/resolv.conf"),
            "nameserver 10.96.0.10\n",
        )
        .unwrap();
        std::fs::hard_link(
            dir.join("10/root/etc/resolv.conf"),
            dir.join("11/root/etc/resolv.conf"),
        )
        .unwrap();
        // A later namespace with the number of a dead one, and a resolv.conf of its own.
        std::fs::hard_link(dir.join("10/ns/mnt"), dir.join("13/ns/mnt")).unwrap();
        std::fs::write(dir.join("13/root/etc/resolv.conf"), "nameserver 10.0.0.2\n").unwrap();
        std::fs::write(dir.join("10/root/tool"), "").unwrap();
        let mut fs = ProcFs::at(&dir, 4);
        let a = fs.resolv_conf(10).unwrap();
        assert_eq!(a.nameservers, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        let b = fs.resolv_conf(11).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached by mount namespace");
        assert_eq!(fs.cached(), 1);
        let c = fs.resolv_conf(13).unwrap();
        assert_eq!(c.nameservers, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(fs.cached(), 1, "the reused number's entry replaced");
        assert_eq!(fs.resolv_conf(12), None, "a process that is gone");
        assert_eq!(fs.file_exists(10, "/tool"), Some(true));
        assert_eq!(fs.file_exists(10, "/tmp/x"), Some(false));
        assert_eq!(fs.file_exists(12, "/tool"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A process's resolv.conf is the attacker's: a FIFO must not block (it would stop capture),
    /// a huge or endless file must not be read whole, and a symlink resolves inside the
    /// process's root, not dnslens's.
    #[test]
    fn hostile_resolv_confs_cost_nothing_and_resolve_in_the_process_root() {
        let dir =
            std::env::temp_dir().join(format!("dnslens-detect-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for pid in [20, 21, 22, 23] {
            let p = dir.join(format!("{pid}"));
            std::fs::create_dir_all(p.join("root/etc")).unwrap();
            std::fs::create_dir_all(p.join("ns")).unwrap();
            std::fs::write(p.join("ns/mnt"), "").unwrap();
        }
        let fifo = CString::new(dir.join("20/root/etc/resolv.conf").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", dir.join("21/root/etc/resolv.conf")).unwrap();
        let big = "# padding\n".repeat(8000) + "nameserver 10.0.0.3\n";
        std::fs::write(dir.join("22/root/etc/resolv.conf"), big).unwrap();
        // An absolute symlink means the process's own /run, not the host's.
        std::fs::create_dir_all(dir.join("23/root/run")).unwrap();
        std::fs::write(
            dir.join("23/root/run/dlresolv.conf"),
            "nameserver 10.0.0.4\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/run/dlresolv.conf", dir.join("23/root/etc/resolv.conf"))
            .unwrap();

        let (tx, rx) = std::sync::mpsc::channel();
        let root = dir.clone();
        std::thread::spawn(move || {
            let mut fs = ProcFs::at(&root, 4);
            let got: Vec<Option<Arc<ResolvConf>>> = [20, 21, 22, 23]
                .into_iter()
                .map(|pid| fs.resolv_conf(pid))
                .collect();
            tx.send(got).unwrap();
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reading hostile resolv.confs must not block");
        assert_eq!(got[0], None, "a FIFO is not a resolv.conf");
        assert_eq!(got[1], None, "nor a device");
        assert_eq!(got[2], None, "nor a file over 64 KiB");
        let in_root = got[3].as_ref().expect("a symlink inside the root");
        assert_eq!(in_root.nameservers, ["10.0.0.4".parse::<IpAddr>().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fake_knows_only_its_table() {
        let mut f = FakeProcesses::default().with_resolv(5, "nameserver 10.0.0.2\n");
        f.files.insert((5, "/usr/bin/app".to_string()));
        assert!(f.resolv_conf(5).is_some());
        assert_eq!(f.resolv_conf(6), None);
        assert_eq!(f.file_exists(5, "/usr/bin/app"), Some(true));
        assert_eq!(f.file_exists(5, "/tmp/x"), Some(false));
        assert_eq!(f.file_exists(6, "/usr/bin/app"), None);
    }
}
