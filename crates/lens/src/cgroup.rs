//! Cgroup attribution: turns the kernel's cgroup ids (v2, and the v1 memory hierarchy's on
//! hybrid hosts) into paths such as `/kubepods.slice/…/cri-containerd-….scope`, with a bounded
//! cache per hierarchy.
//!
//! A cgroup id is its directory's kernfs node id (Linux 5.5+), which cgroupfs, v1 and v2, takes
//! as a file handle: `open_by_handle_at` on the mount, then the path of the directory opened,
//! costs two syscalls whatever the number of cgroups. A removed cgroup, or an id that is no
//! cgroup's, is a miss. The kernel decodes handles only for CAP_DAC_READ_SEARCH.
//!
//! Where it refuses (the capability missing or dropped, a seccomp filter, a mount that decodes no
//! handles), the hierarchy is walked instead, at most once a second, on a thread of its own: a
//! walk takes time in the number of cgroups, which workloads choose. The capture thread waits
//! for it at most [`WALK_PATIENCE`], and not at all while a walk is under way
//! ([`crate::patient`]); the event then carries the kernel's names for its cgroup and a miss is
//! counted. Walked, rather than settled for those names (the cgroup's directory and its
//! parent's), because only the full path tells a pod's cgroup from a look-alike made in a
//! user's delegated subtree.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::bounded::Lru;
use crate::patient::Patient;

/// Cgroups remembered per hierarchy (and by its walker, where it is walked).
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Least time between two walks of one hierarchy.
pub const REWALK_INTERVAL_NS: u64 = 1_000_000_000;
/// How long the capture thread waits for a walk: about 20 ms walk a thousand cgroups. A larger
/// tree's walk goes on after the wait, and the ids it finds answer the next misses.
pub const WALK_PATIENCE: Duration = Duration::from_millis(50);

/// The file handle type of kernfs (`FILEID_KERNFS`, include/linux/exportfs.h).
const FILEID_KERNFS: libc::c_int = 0xfe;

/// Where the hierarchies dnslens reads are mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The `cgroup2` mount: `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on
    /// hybrid ones.
    pub v2: Option<PathBuf>,
    /// The v1 hierarchy with the `memory` controller, where hybrid hosts put containers.
    pub v1_memory: Option<PathBuf>,
}

impl CgroupMounts {
    /// Reads `/proc/self/mountinfo`.
    pub fn discover() -> std::io::Result<Self> {
        Ok(Self::from_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// Picks the mounts out of mountinfo text. A mount of the whole hierarchy (root `/`) is
    /// preferred over a bind mount of a subtree.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut v2: Option<(bool, PathBuf)> = None;
        let mut v1: Option<(bool, PathBuf)> = None;
        for line in text.lines() {
            let Some((mount, fs)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = mount.split(' ').collect();
            let fs: Vec<&str> = fs.split(' ').collect();
            if fields.len() < 5 || fs.len() < 3 {
                continue;
            }
            let whole = fields[3] == "/";
            let point = PathBuf::from(unescape(fields[4]));
            let slot = match fs[0] {
                "cgroup2" => &mut v2,
                "cgroup" if fs[2].split(',').any(|o| o == "memory") => &mut v1,
                _ => continue,
            };
            if slot.as_ref().is_none_or(|(w, _)| whole && !w) {
                *slot = Some((whole, point));
            }
        }
        CgroupMounts {
            v2: v2.map(|(_, p)| p),
            v1_memory: v1.map(|(_, p)| p),
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' {
            if let Some(oct) = oct.filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b))) {
                let value = oct.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Events whose cgroup was looked up.
    pub lookups: u64,
    /// Ids not in the cache, opened by file handle.
    pub by_handle: u64,
    /// Ids not found: the cgroup removed, an id that is no cgroup's, or (where handles are
    /// refused) the walk rate-limited or not waited for.
    pub misses: u64,
    /// Walks of a hierarchy, where handles are refused.
    pub walks: u64,
    /// Misses that could not rewalk because the last walk was less than a second ago.
    pub rate_limited: u64,
    /// Misses because the walker did not answer within [`WALK_PATIENCE`].
    pub unanswered: u64,
    /// Cache entries evicted because the cache was full.
    pub evictions: u64,
}

/// A mount whose cgroups are opened by id.
#[derive(Debug)]
struct Handles {
    /// The mount's root, open for the resolver's life: handles are decoded against it.
    root: File,
    /// The root's path, which the paths of opened cgroups start with.
    prefix: PathBuf,
}

enum Opened {
    /// The path relative to the mount.
    Found(String),
    Missing,
    /// The kernel decodes no handles for dnslens.
    Refused,
}

impl Handles {
    /// `mount`'s root, if the kernel decodes the root's own id; else the mount is to be walked.
    fn open(mount: &Path) -> Option<Handles> {
        let root = File::open(mount).ok()?;
        let prefix = fd_path(&root).ok()?;
        let id = root.metadata().ok()?.ino();
        let handles = Handles { root, prefix };
        matches!(handles.path(id), Opened::Found(p) if p == "/").then_some(handles)
    }

    fn path(&self, id: u64) -> Opened {
        let dir = match open_by_id(&self.root, id) {
            Ok(dir) => dir,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(
                        libc::EPERM | libc::EACCES | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL,
                    ) => Opened::Refused,
                    // ESTALE (removed, or no node of this id), ENOTDIR (a cgroup's file).
                    _ => Opened::Missing,
                };
            }
        };
        let Ok(path) = fd_path(&dir) else {
            return Opened::Missing;
        };
        // Removed between the open and the readlink: the kernel appends " (deleted)", which a
        // cgroup may also be named, so the name must still lead to this directory.
        if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
            let same = |m: std::fs::Metadata| (m.dev(), m.ino());
            if std::fs::symlink_metadata(&path).map(same).ok() != dir.metadata().map(same).ok() {
                return Opened::Missing;
            }
        }
        // Outside the mount's subtree (a bind mount of part of the hierarchy): not ours to name.
        match path.strip_prefix(&self.prefix) {
            Ok(rel) => Opened::Found(format!("/{}", rel.to_string_lossy())),
            Err(_) => Opened::Missing,
        }
    }
}

/// Opens the directory of the kernfs node `id` on `root`'s mount.
fn open_by_id(root: &File, id: u64) -> std::io::Result<File> {
    /// `struct file_handle` with the 8 bytes of a kernfs handle, the node id.
    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: libc::c_uint,
        handle_type: libc::c_int,
        id: u64,
    }
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a file_handle header followed by the handle_bytes it declares, live
    // for the call; O_DIRECTORY refuses the handles of cgroup files.
    let fd = unsafe {
        libc::open_by_handle_at(
            root.as_raw_fd(),
            (&mut handle as *mut KernfsHandle).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The path of an open file, as this process sees it.
fn fd_path(file: &File) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Walks one mount on the walker's thread, and remembers what it found.
#[derive(Debug)]
struct Walker {
    mount: PathBuf,
    found: Lru<u64, Arc<str>>,
    last_walk_ns: Option<u64>,
}

/// A walker's answer.
struct Walked {
    path: Option<Arc<str>>,
    walked: bool,
    rate_limited: bool,
    /// Of the walker's own table, since it started.
    evictions: u64,
}

impl Walker {
    fn find(&mut self, id: u64, now_ns: u64) -> Walked {
        let mut answer = Walked {
            path: self.found.get(&id).cloned(),
            walked: false,
            rate_limited: false,
            evictions: 0,
        };
        if answer.path.is_none() {
            let may_walk = self
                .last_walk_ns
                .is_none_or(|last| now_ns.saturating_sub(last) >= REWALK_INTERVAL_NS);
            if may_walk {
                self.last_walk_ns = Some(now_ns);
                answer.walked = true;
                answer.path = self.walk(id);
            } else {
                answer.rate_limited = true;
            }
        }
        answer.evictions = self.found.evictions();
        answer
    }

    /// Remembers every cgroup of the mount; the path of `id`, if it is one of them.
    fn walk(&mut self, id: u64) -> Option<Arc<str>> {
        let mut wanted = None;
        walk(&self.mount, |ino, path| {
            if ino == id {
                wanted = Some(path);
            } else {
                self.found.insert(ino, Arc::from(path));
            }
        });
        // Inserted last so a tree larger than the table cannot evict what was asked for.
        let path: Arc<str> = Arc::from(wanted?);
        self.found.insert(id, path.clone());
        Some(path)
    }
}

/// Calls `each` with (inode, path relative to the mount) of every directory under `mount`,
/// staying on its filesystem. Directories that vanish mid-walk are skipped.
fn walk(mount: &Path, mut each: impl FnMut(u64, String)) {
    let Ok(root) = std::fs::symlink_metadata(mount) else {
        return;
    };
    let dev = root.dev();
    each(root.ino(), "/".to_string());
    let mut stack = vec![(mount.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // The type from readdir spares a stat of each of a cgroup's dozens of files.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            each(meta.ino(), child.clone());
            stack.push((entry.path(), child));
        }
    }
}

/// How a hierarchy's ids not in the cache are looked up.
#[derive(Debug)]
enum Lookup {
    Handles(Handles),
    Walks {
        walker: Patient<Walker>,
        /// The walker's, as of its last answer.
        evictions: u64,
    },
}

impl Lookup {
    fn walks(mount: &Path, capacity: usize, patience: Duration) -> Lookup {
        let walker = Walker {
            mount: mount.to_path_buf(),
            found: Lru::new(capacity),
            last_walk_ns: None,
        };
        Lookup::Walks {
            walker: Patient::new("dnslens-cgwalk", walker, patience),
            evictions: 0,
        }
    }
}

#[derive(Debug)]
struct Hierarchy {
    mount: PathBuf,
    patience: Duration,
    cache: Lru<u64, Arc<str>>,
    lookup: Lookup,
}

impl Hierarchy {
    fn new(mount: PathBuf, capacity: usize, patience: Duration) -> Self {
        let lookup = match Handles::open(&mount) {
            Some(handles) => Lookup::Handles(handles),
            None => Lookup::walks(&mount, capacity, patience),
        };
        Hierarchy {
            mount,
            patience,
            cache: Lru::new(capacity),
            lookup,
        }
    }

    /// The path of cgroup `id`; id 0 (the kernel found no cgroup in this hierarchy) has none.
    fn resolve(&mut self, id: u64, now_ns: u64, stats: &mut CgroupStats) -> Option<Arc<str>> {
        if id == 0 {
            return None;
        }
        if let Some(path) = self.cache.get(&id) {
            return Some(path.clone());
        }
        let path = self.look_up(id, now_ns, stats);
        match &path {
            Some(path) => {
                self.cache.insert(id, path.clone());
            }
            None => stats.misses += 1,
        }
        path
    }

    fn look_up(&mut self, id: u64, now_ns: u64, stats: &mut CgroupStats) -> Option<Arc<str>> {
        match &mut self.lookup {
            Lookup::Handles(handles) => {
                stats.by_handle += 1;
                match handles.path(id) {
                    Opened::Found(path) => Some(Arc::from(path)),
                    Opened::Missing => None,
                    // The capability dropped since the start.
                    Opened::Refused => {
                        self.lookup =
                            Lookup::walks(&self.mount, self.cache.capacity(), self.patience);
                        self.look_up(id, now_ns, stats)
                    }
                }
            }
            Lookup::Walks { walker, evictions } => {
                let walked = walker.ask(move |walker| walker.find(id, now_ns))?;
                stats.walks += u64::from(walked.walked);
                stats.rate_limited += u64::from(walked.rate_limited);
                *evictions = walked.evictions;
                walked.path
            }
        }
    }
}

/// Resolves the cgroup ids of events to paths such as `/kubepods.slice/…/cri-containerd-….scope`.
#[derive(Debug)]
pub struct CgroupResolver {
    v2: Option<Hierarchy>,
    v1_memory: Option<Hierarchy>,
    stats: CgroupStats,
}

impl CgroupResolver {
    pub fn new(mounts: CgroupMounts, capacity: usize) -> Self {
        Self::with_patience(mounts, capacity, WALK_PATIENCE)
    }

    fn with_patience(mounts: CgroupMounts, capacity: usize, patience: Duration) -> Self {
        let hierarchy = |mount| Hierarchy::new(mount, capacity, patience);
        CgroupResolver {
            v2: mounts.v2.map(hierarchy),
            v1_memory: mounts.v1_memory.map(hierarchy),
            stats: CgroupStats::default(),
        }
    }

    /// The path of the cgroup of an event: the v2 path, unless that is the root or unknown and
    /// the v1 memory id resolves to a non-root path (hybrid hosts put containers only in v1).
    /// `None` when neither id resolves. `now_ns` is any monotonic clock, used to rate-limit
    /// walks.
    pub fn resolve(&mut self, v2_id: u64, v1_id: u64, now_ns: u64) -> Option<Arc<str>> {
        self.stats.lookups += 1;
        let stats = &mut self.stats;
        let v2 = match self
            .v2
            .as_mut()
            .and_then(|h| h.resolve(v2_id, now_ns, stats))
        {
            Some(path) if &*path != "/" => return Some(path),
            v2 => v2,
        };
        match self
            .v1_memory
            .as_mut()
            .and_then(|h| h.resolve(v1_id, now_ns, stats))
        {
            Some(path) if &*path != "/" => Some(path),
            v1 => v2.or(v1),
        }
    }

    pub fn stats(&self) -> CgroupStats {
        let mut stats = self.stats;
        for h in [&self.v2, &self.v1_memory].into_iter().flatten() {
            stats.evictions += h.cache.evictions();
            if let Lookup::Walks { walker, evictions } = &h.lookup {
                stats.evictions += evictions;
                stats.unanswered += walker.timeouts();
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn mountinfo_finds_v2_and_v1_memory() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
";
        assert_eq!(
            CgroupMounts::from_mountinfo(hybrid),
            CgroupMounts {
                v2: Some("/sys/fs/cgroup/unified".into()),
                v1_memory: Some("/sys/fs/cgroup/memory".into()),
            }
        );
        let pure = "\
90 80 0:26 /kubepods /host/cg rw - cgroup2 cgroup2 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
31 23 0:26 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            CgroupMounts::from_mountinfo(pure),
            CgroupMounts {
                v2: Some("/sys/fs/cgroup".into()),
                v1_memory: None,
            }
        );
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    /// A resolver that waits for walks as long as a loaded test machine may need.
    fn walking(v2: &Path, v1_memory: Option<&Path>, capacity: usize) -> CgroupResolver {
        let mounts = CgroupMounts {
            v2: Some(v2.to_path_buf()),
            v1_memory: v1_memory.map(Path::to_path_buf),
        };
        CgroupResolver::with_patience(mounts, capacity, Duration::from_secs(10))
    }

    /// Plain directories decode no kernfs handles, as cgroupfs does not where the kernel refuses
    /// them: the tree is walked, at most once a second.
    #[test]
    fn where_handles_are_refused_walks_at_most_once_per_second() {
        let root = TempDir::new("cg2");
        let pod = root.path().join("kubepods.slice/pod1.slice");
        std::fs::create_dir_all(&pod).unwrap();
        let mut r = walking(root.path(), None, 64);
        assert_eq!(
            r.resolve(ino(&pod), 0, 0).as_deref(),
            Some("/kubepods.slice/pod1.slice")
        );
        assert_eq!(r.resolve(ino(root.path()), 0, 0).as_deref(), Some("/"));

        // A cgroup created after the walk: unknown until a second has passed.
        let late = root.path().join("late.scope");
        std::fs::create_dir(&late).unwrap();
        assert_eq!(r.resolve(ino(&late), 0, SEC / 2), None);
        assert_eq!(
            r.resolve(ino(&late), 0, SEC + 1).as_deref(),
            Some("/late.scope")
        );
        let stats = r.stats();
        assert_eq!(stats.walks, 2);
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.misses, 1);
        assert_eq!(stats.lookups, 4);
        assert_eq!((stats.by_handle, stats.unanswered), (0, 0));

        // Served from the cache even after removal.
        std::fs::remove_dir(&late).unwrap();
        assert_eq!(
            r.resolve(ino(root.path()), 0, SEC + 2).as_deref(),
            Some("/")
        );
        assert_eq!(r.stats().walks, 2);
        assert_eq!(r.resolve(0, 0, 0), None);
    }

    #[test]
    fn hybrid_hosts_prefer_a_non_root_v1_path() {
        let v2 = TempDir::new("cg2");
        let v1 = TempDir::new("cg1");
        let system = v2.path().join("system.slice");
        let container = v1.path().join("kubepods/burstable/pod9/abc");
        std::fs::create_dir_all(&system).unwrap();
        std::fs::create_dir_all(&container).unwrap();
        let mut r = walking(v2.path(), Some(v1.path()), 64);
        // v2 at the root, v1 in a container: the container wins.
        assert_eq!(
            r.resolve(ino(v2.path()), ino(&container), 0).as_deref(),
            Some("/kubepods/burstable/pod9/abc")
        );
        // v2 unknown: v1 is used.
        assert_eq!(
            r.resolve(1, ino(&container), 0).as_deref(),
            Some("/kubepods/burstable/pod9/abc")
        );
        // v2 not at the root: v2 wins, v1 is not even looked at.
        assert_eq!(
            r.resolve(ino(&system), ino(&container), 0).as_deref(),
            Some("/system.slice")
        );
        // Both at the root.
        assert_eq!(
            r.resolve(ino(v2.path()), ino(v1.path()), 0).as_deref(),
            Some("/")
        );
        // v2 unknown and v1 at the root.
        assert_eq!(r.resolve(1, ino(v1.path()), 0).as_deref(), Some("/"));
    }

    #[test]
    fn walked_cache_is_bounded_but_keeps_the_id_asked_for() {
        let root = TempDir::new("cg2");
        for i in 0..10 {
            std::fs::create_dir(root.path().join(format!("c{i}"))).unwrap();
        }
        let mut r = walking(root.path(), None, 3);
        let wanted = root.path().join("c4");
        assert_eq!(r.resolve(ino(&wanted), 0, 0).as_deref(), Some("/c4"));
        assert_eq!(r.resolve(ino(&wanted), 0, 0).as_deref(), Some("/c4"));
        assert!(r.stats().evictions >= 8);
        assert_eq!(r.stats().walks, 1);
    }

    /// Cgroups made by a test under `dlc-lens-…` in one real hierarchy, removed when dropped,
    /// even when the test fails.
    struct TestCgroups {
        mount: PathBuf,
        dir: PathBuf,
    }

    impl TestCgroups {
        /// `None`, with the reason printed, unless root on a host with that hierarchy.
        fn new(mount: Option<PathBuf>, tag: &str) -> Option<TestCgroups> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            // SAFETY: geteuid takes nothing and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                println!("skipped: creating cgroups needs root");
                return None;
            }
            let Some(mount) = mount else {
                println!("skipped: this host has no such cgroup hierarchy");
                return None;
            };
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = mount.join(format!("dlc-lens-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            Some(TestCgroups { mount, dir })
        }

        fn make(&self, rel: &str) -> PathBuf {
            let path = self.dir.join(rel);
            std::fs::create_dir_all(&path).unwrap();
            path
        }

        /// What the resolver should answer for `path`.
        fn expected(&self, path: &Path) -> String {
            format!("/{}", path.strip_prefix(&self.mount).unwrap().display())
        }
    }

    impl Drop for TestCgroups {
        fn drop(&mut self) {
            remove_cgroups(&self.dir);
        }
    }

    /// cgroupfs refuses to unlink its files: only its directories are removed, children first.
    fn remove_cgroups(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroups(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }

    #[test]
    fn root_resolves_v2_and_v1_memory_ids_by_handle() {
        let mounts = CgroupMounts::discover().unwrap();
        let Some(v2) = TestCgroups::new(mounts.v2.clone(), "v2") else {
            return;
        };
        let pod = v2.make("kubepods.slice/pod1.slice");
        let mut r = CgroupResolver::new(mounts.clone(), 64);
        let v2_root = ino(&v2.mount);
        assert_eq!(
            r.resolve(ino(&pod), 0, 0).as_deref(),
            Some(v2.expected(&pod).as_str())
        );
        assert_eq!(r.resolve(v2_root, 0, 0).as_deref(), Some("/"));
        let stats = r.stats();
        assert_eq!((stats.by_handle, stats.misses, stats.walks), (2, 0, 0));

        let Some(v1) = TestCgroups::new(mounts.v1_memory.clone(), "v1") else {
            return;
        };
        let container = v1.make("kubepods/burstable/pod9/abc");
        assert_eq!(
            r.resolve(v2_root, ino(&container), 0).as_deref(),
            Some(v1.expected(&container).as_str()),
            "a container known only to v1 memory, as on hybrid hosts"
        );
        let stats = r.stats();
        assert_eq!((stats.by_handle, stats.misses, stats.walks), (3, 0, 0));
    }

    #[test]
    fn root_a_removed_cgroup_or_an_id_of_no_cgroup_is_a_miss() {
        let mounts = CgroupMounts::discover().unwrap();
        let Some(v2) = TestCgroups::new(mounts.v2.clone(), "gone") else {
            return;
        };
        let mut r = CgroupResolver::new(mounts, 64);
        let gone = v2.make("gone.scope");
        let gone_id = ino(&gone);
        std::fs::remove_dir(&gone).unwrap();
        assert_eq!(r.resolve(gone_id, 0, 0), None, "removed");
        assert_eq!(r.resolve(0x7fff_0000_dead_beef, 0, 0), None, "no node");
        let file = ino(&v2.dir.join("cgroup.procs"));
        assert_eq!(r.resolve(file, 0, 0), None, "a cgroup's file");
        let stats = r.stats();
        assert_eq!((stats.misses, stats.by_handle, stats.walks), (3, 3, 0));
        // Misses leave handles in use.
        let live = v2.make("live.scope");
        assert_eq!(
            r.resolve(ino(&live), 0, 0).as_deref(),
            Some(v2.expected(&live).as_str())
        );
        assert_eq!(r.stats().walks, 0);
    }

    #[test]
    fn root_cache_by_handle_is_bounded() {
        let mounts = CgroupMounts::discover().unwrap();
        let Some(v2) = TestCgroups::new(mounts.v2.clone(), "bound") else {
            return;
        };
        let mut r = CgroupResolver::new(mounts, 2);
        let cgroups: Vec<PathBuf> = (0..5).map(|i| v2.make(&format!("c{i}"))).collect();
        for _ in 0..2 {
            for c in &cgroups {
                assert_eq!(
                    r.resolve(ino(c), 0, 0).as_deref(),
                    Some(v2.expected(c).as_str())
                );
            }
        }
        let stats = r.stats();
        assert_eq!(stats.evictions, 8, "two kept of five, asked twice round");
        assert_eq!((stats.by_handle, stats.misses, stats.walks), (10, 0, 0));
    }

    /// Drops capabilities from the effective set of the calling thread only (capset, unlike
    /// glibc's setuid, acts on one thread).
    fn drop_effective(caps: &[u32]) {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: a version 3 header and the two data structs version 3 reads and writes.
        let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        assert_eq!(got, 0);
        for cap in caps {
            data[*cap as usize / 32].effective &= !(1 << (cap % 32));
        }
        // SAFETY: as above.
        let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        assert_eq!(set, 0);
    }

    /// Handles refused once running (an agent dropping capabilities after it attached): the
    /// hierarchy is walked instead, and the cgroup still named. Without CAP_DAC_READ_SEARCH,
    /// Linux 6.10+ still decodes handles for CAP_SYS_ADMIN with CAP_DAC_OVERRIDE: both dropped.
    #[test]
    fn root_refused_handles_fall_back_to_a_walk() {
        const CAP_DAC_READ_SEARCH: u32 = 2;
        const CAP_SYS_ADMIN: u32 = 21;
        let mounts = CgroupMounts::discover().unwrap();
        let Some(v2) = TestCgroups::new(mounts.v2.clone(), "refused") else {
            return;
        };
        let pod = v2.make("kubepods.slice/pod2.slice");
        let (id, expected) = (ino(&pod), v2.expected(&pod));
        let mut r = CgroupResolver::with_patience(mounts, 64, Duration::from_secs(10));
        assert_eq!(
            r.resolve(ino(&v2.dir), 0, 0).as_deref(),
            Some(v2.expected(&v2.dir).as_str())
        );
        // The resolver moves to a thread of its own, which alone loses the capabilities.
        let r = std::thread::spawn(move || {
            drop_effective(&[CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN]);
            assert_eq!(r.resolve(id, 0, 0).as_deref(), Some(expected.as_str()));
            r
        })
        .join()
        .unwrap();
        let stats = r.stats();
        assert_eq!((stats.by_handle, stats.walks, stats.misses), (2, 1, 0));
    }

    /// A lookup costs the same with 20,000 cgroups as with 1,000; the walk it replaces does not.
    /// Prints both times (timings are not asserted in tests).
    #[test]
    fn root_a_lookup_by_handle_does_not_walk_20000_cgroups() {
        const LOOKUPS: usize = 1_000;
        let mounts = CgroupMounts::discover().unwrap();
        let Some(many) = TestCgroups::new(mounts.v2.clone(), "many") else {
            return;
        };
        // Per lookup of `asked`, each new to the resolver, and for one walk of the hierarchy.
        let measure = |asked: &[(u64, PathBuf)]| {
            let mut r = CgroupResolver::new(mounts.clone(), 64);
            let started = Instant::now();
            let paths: Vec<Option<Arc<str>>> =
                asked.iter().map(|(id, _)| r.resolve(*id, 0, 0)).collect();
            let per_lookup = started.elapsed() / asked.len() as u32;
            for ((_, path), got) in asked.iter().zip(&paths) {
                assert_eq!(got.as_deref(), Some(many.expected(path).as_str()));
            }
            let stats = r.stats();
            assert_eq!(stats.by_handle, asked.len() as u64);
            assert_eq!((stats.misses, stats.walks), (0, 0));
            let mut walker = Walker {
                mount: many.mount.clone(),
                found: Lru::new(DEFAULT_CAPACITY),
                last_walk_ns: None,
            };
            let walked = Instant::now();
            assert!(walker.find(asked[0].0, 0).path.is_some());
            (per_lookup, walked.elapsed())
        };
        let mut cgroups: Vec<(u64, PathBuf)> = Vec::new();
        for total in [LOOKUPS, 20_000] {
            let made = Instant::now();
            let first = cgroups.len();
            cgroups.extend((first..total).map(|i| {
                let path = many.make(&format!("c{i}"));
                (ino(&path), path)
            }));
            let made = made.elapsed();
            let (per_lookup, walk) = measure(&cgroups[total - LOOKUPS..]);
            println!(
                "{total} test cgroups (made in {made:?}): {per_lookup:?} per lookup by handle, \
                 {walk:?} per walk"
            );
        }
    }
}
