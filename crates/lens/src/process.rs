//! Process attribution from /proc: the executable path of a process, read once per process
//! lifetime (tgid and start time, so a reused pid is a new entry) and cached.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bounded::Lru;

/// Processes remembered at once.
pub const DEFAULT_CAPACITY: usize = 8192;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    pub lookups: u64,
    /// Processes read from /proc (cache misses).
    pub proc_reads: u64,
    /// Processes left without an exe: gone from /proc before their first lookup, and not seen
    /// at exec.
    pub gone: u64,
    /// Gone processes given their parent's exe (forked without exec, same name).
    pub from_parent: u64,
    /// Entries evicted because the cache was full.
    pub evictions: u64,
}

/// Cache of executable paths keyed by (tgid, process start ns).
#[derive(Debug)]
pub struct ProcessCache {
    proc_root: PathBuf,
    cache: Lru<(u32, u64), Cached>,
    stats: ProcessStats,
}

#[derive(Debug)]
struct Cached {
    /// `None` when the process was gone before dnslens looked (short-lived processes are
    /// common: the kernel fields of the event still identify it).
    exe: Option<Arc<str>>,
    /// Whether /proc was read; an entry made by `record_exec` alone was not.
    read: bool,
}

impl ProcessCache {
    /// `proc_root` is normally `/proc`; tests point it at a directory of their own.
    pub fn new(proc_root: impl Into<PathBuf>, capacity: usize) -> Self {
        ProcessCache {
            proc_root: proc_root.into(),
            cache: Lru::new(capacity),
            stats: ProcessStats::default(),
        }
    }

    /// The executable of the process, from the cache or read from /proc once.
    pub fn lookup(&mut self, tgid: u32, start_ns: u64) -> Option<Arc<str>> {
        self.lookup_inner(tgid, start_ns, None)
    }

    /// As [`ProcessCache::lookup`], and when the process is gone and was not seen at exec,
    /// takes the exe of its parent `ppid` if that has the same name `name`: a child forked
    /// without exec (a server's per-connection child) runs its parent's executable.
    pub fn lookup_or_parent(
        &mut self,
        tgid: u32,
        start_ns: u64,
        ppid: u32,
        name: &str,
    ) -> Option<Arc<str>> {
        self.lookup_inner(tgid, start_ns, Some((ppid, name)))
    }

    fn lookup_inner(
        &mut self,
        tgid: u32,
        start_ns: u64,
        parent: Option<(u32, &str)>,
    ) -> Option<Arc<str>> {
        self.stats.lookups += 1;
        let key = (tgid, start_ns);
        let read = self.cache.peek(&key).is_some_and(|c| c.read);
        if !read {
            let mut exe = read_exe(&self.proc_root, tgid);
            self.stats.proc_reads += 1;
            if let Some(exec) = self.cache.peek(&key) {
                // /proc's link is absolute and canonical; the exec path (as passed to execve)
                // is what is left when the process is gone, unless a later exec's record was
                // lost and the process no longer carries that file's name.
                let named = |path: &Arc<str>| parent.is_none_or(|(_, name)| execed_as(path, name));
                exe = exe.or_else(|| exec.exe.clone().filter(named));
            }
            if let (None, Some((ppid, name))) = (&exe, parent) {
                exe = self.parent_exe(ppid, name);
                self.stats.from_parent += u64::from(exe.is_some());
            }
            if exe.is_none() {
                self.stats.gone += 1;
            }
            self.cache.insert(key, Cached { exe, read: true });
        }
        self.cache
            .get(&key)
            .expect("entry was just inserted")
            .exe
            .clone()
    }

    /// Records the executable of a process at exec time, so that a process gone from /proc
    /// before its first lookup still has an exe.
    pub fn record_exec(&mut self, tgid: u32, start_ns: u64, path: impl Into<String>) {
        let cached = Cached {
            exe: Some(Arc::from(path.into())),
            read: false,
        };
        self.cache.insert((tgid, start_ns), cached);
    }

    pub fn stats(&self) -> ProcessStats {
        ProcessStats {
            evictions: self.cache.evictions(),
            ..self.stats
        }
    }

    fn parent_exe(&self, ppid: u32, name: &str) -> Option<Arc<str>> {
        if ppid == 0 || name.is_empty() {
            return None;
        }
        let comm = std::fs::read_to_string(proc_dir(&self.proc_root, ppid).join("comm")).ok()?;
        if comm.trim_end_matches('\n') != name {
            return None;
        }
        read_exe(&self.proc_root, ppid)
    }
}

/// Whether a process named `name` could have exec'd `path`: the kernel names a process after
/// the file it exec'd, cut to 15 bytes. An empty name says nothing.
fn execed_as(path: &str, name: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path).as_bytes();
    name.is_empty() || &file[..file.len().min(15)] == name.as_bytes()
}

fn proc_dir(proc_root: &Path, pid: u32) -> PathBuf {
    proc_root.join(pid.to_string())
}

/// The target of `/proc/PID/exe`.
fn read_exe(proc_root: &Path, pid: u32) -> Option<Arc<str>> {
    std::fs::read_link(proc_dir(proc_root, pid).join("exe"))
        .ok()
        .map(|p| Arc::from(p.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn fake_process(root: &TempDir, pid: u32, exe: &str) {
        let dir = root.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
    }

    #[test]
    fn reads_exe_once_per_process() {
        let root = TempDir::new("proc");
        fake_process(&root, 42, "/usr/bin/dig");
        let mut cache = ProcessCache::new(root.path(), 16);
        assert_eq!(cache.lookup(42, 7).as_deref(), Some("/usr/bin/dig"));

        // Cached: a vanished /proc entry does not change the answer for the same process.
        std::fs::remove_dir_all(root.path().join("42")).unwrap();
        assert_eq!(cache.lookup(42, 7).as_deref(), Some("/usr/bin/dig"));
        // A reused pid (new start time) is a different process.
        assert_eq!(cache.lookup(42, 8).as_deref(), None);
        let stats = cache.stats();
        assert_eq!((stats.lookups, stats.proc_reads, stats.gone), (3, 2, 1));
    }

    #[test]
    fn record_exec_fills_in_for_gone_processes_and_cache_is_bounded() {
        let root = TempDir::new("proc");
        fake_process(&root, 2, "/usr/bin/python3.11");
        let mut cache = ProcessCache::new(root.path(), 2);
        cache.record_exec(1, 1, "/bin/a");
        cache.record_exec(2, 2, "/usr/bin/python3");
        cache.record_exec(3, 3, "/bin/c");
        // Gone from /proc: the exec path.
        assert_eq!(cache.lookup(3, 3).as_deref(), Some("/bin/c"));
        assert_eq!(cache.stats().gone, 0);
        // Still running: /proc's canonical path wins.
        assert_eq!(cache.lookup(2, 2).as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(cache.stats().proc_reads, 2);
        // Evicted before its lookup.
        assert_eq!(cache.lookup(1, 1).as_deref(), None);
        assert_eq!(cache.stats().evictions, 2);
    }

    #[test]
    fn an_exec_path_the_process_is_not_named_after_is_not_taken() {
        let root = TempDir::new("proc");
        let mut cache = ProcessCache::new(root.path(), 16);
        // sh exec'd python3, whose exec record was lost: the process is gone and named python3.
        cache.record_exec(5, 5, "/bin/sh");
        assert_eq!(cache.lookup_or_parent(5, 5, 1, "python3"), None);
        cache.record_exec(6, 6, "/usr/lib/postgresql/15/bin/postgres-checkpointer");
        assert_eq!(
            cache
                .lookup_or_parent(6, 6, 1, "postgres-checkp")
                .as_deref(),
            Some("/usr/lib/postgresql/15/bin/postgres-checkpointer"),
            "names are cut to 15 bytes"
        );
    }

    #[test]
    fn a_gone_forked_child_takes_its_parents_exe_if_names_match() {
        let root = TempDir::new("proc");
        fake_process(&root, 10, "/usr/sbin/dnsmasq");
        std::fs::write(root.path().join("10/comm"), "dnsmasq\n").unwrap();
        let mut cache = ProcessCache::new(root.path(), 16);
        let exe = |c: &mut ProcessCache, pid, name: &str| {
            c.lookup_or_parent(pid, u64::from(pid), 10, name)
                .map(|exe| exe.to_string())
        };
        assert_eq!(
            exe(&mut cache, 11, "dnsmasq").as_deref(),
            Some("/usr/sbin/dnsmasq")
        );
        assert_eq!(exe(&mut cache, 12, "sh"), None);
        // A running child's own exe wins.
        fake_process(&root, 13, "/usr/bin/other");
        assert_eq!(
            exe(&mut cache, 13, "dnsmasq").as_deref(),
            Some("/usr/bin/other")
        );
        let stats = cache.stats();
        assert_eq!((stats.from_parent, stats.gone), (1, 1));
    }
}
