//! Cgroup attribution: turns the kernel's cgroup ids (v2, and the v1 memory hierarchy's on
//! hybrid hosts) into paths by walking the cgroup mounts, with a bounded cache and at most one
//! rewalk per second per hierarchy when an id is not known.
//!
//! A cgroup id is the inode number of the cgroup's directory (kernfs node id, Linux 5.5+), so
//! a walk that stats every directory finds it without any kernel help.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bounded::Lru;

/// Cgroups remembered per hierarchy.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Least time between two walks of one hierarchy.
pub const REWALK_INTERVAL_NS: u64 = 1_000_000_000;

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
    pub lookups: u64,
    /// Ids not found, even after a rewalk (cgroup removed, or walk rate-limited).
    pub misses: u64,
    /// Walks of a hierarchy.
    pub walks: u64,
    /// Misses that could not rewalk because the last walk was less than a second ago.
    pub rate_limited: u64,
    /// Cache entries evicted because the cache was full.
    pub evictions: u64,
}

#[derive(Debug)]
struct Hierarchy {
    mount: PathBuf,
    cache: Lru<u64, Arc<str>>,
    last_walk_ns: Option<u64>,
}

impl Hierarchy {
    /// The path of cgroup `id`; id 0 (the kernel found no cgroup in this hierarchy) has none.
    fn resolve(&mut self, id: u64, now_ns: u64, stats: &mut CgroupStats) -> Option<Arc<str>> {
        if id == 0 {
            return None;
        }
        if let Some(path) = self.cache.get(&id) {
            return Some(path.clone());
        }
        let may_walk = self
            .last_walk_ns
            .is_none_or(|last| now_ns.saturating_sub(last) >= REWALK_INTERVAL_NS);
        if !may_walk {
            stats.rate_limited += 1;
            stats.misses += 1;
            return None;
        }
        self.last_walk_ns = Some(now_ns);
        stats.walks += 1;
        let mut found = None;
        for (ino, path) in walk(&self.mount) {
            if ino == id {
                found = Some(path);
            } else {
                self.cache.insert(ino, Arc::from(path));
            }
        }
        // Inserted last so a tree larger than the cache cannot evict what was asked for.
        match found {
            Some(path) => {
                let path: Arc<str> = Arc::from(path);
                self.cache.insert(id, path.clone());
                Some(path)
            }
            None => {
                stats.misses += 1;
                None
            }
        }
    }
}

/// (inode, path relative to the mount) of every directory under `mount`, staying on its
/// filesystem. Directories that vanish mid-walk are skipped.
fn walk(mount: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let Ok(root) = std::fs::symlink_metadata(mount) else {
        return out;
    };
    let dev = root.dev();
    out.push((root.ino(), "/".to_string()));
    let mut stack = vec![(mount.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_dir() || meta.dev() != dev {
                continue;
            }
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            out.push((meta.ino(), child.clone()));
            stack.push((entry.path(), child));
        }
    }
    out
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
        let hierarchy = |mount| Hierarchy {
            mount,
            cache: Lru::new(capacity),
            last_walk_ns: None,
        };
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
        let evictions = [&self.v2, &self.v1_memory]
            .iter()
            .filter_map(|h| h.as_ref())
            .map(|h| h.cache.evictions())
            .sum();
        CgroupStats {
            evictions,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

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

    #[test]
    fn resolves_v2_ids_and_rewalks_at_most_once_per_second() {
        let root = TempDir::new("cg2");
        let pod = root.path().join("kubepods.slice/pod1.slice");
        std::fs::create_dir_all(&pod).unwrap();
        let mut r = CgroupResolver::new(
            CgroupMounts {
                v2: Some(root.path().to_path_buf()),
                v1_memory: None,
            },
            64,
        );
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
        let mut r = CgroupResolver::new(
            CgroupMounts {
                v2: Some(v2.path().to_path_buf()),
                v1_memory: Some(v1.path().to_path_buf()),
            },
            64,
        );
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
    fn cache_is_bounded_but_keeps_the_id_asked_for() {
        let root = TempDir::new("cg2");
        for i in 0..10 {
            std::fs::create_dir(root.path().join(format!("c{i}"))).unwrap();
        }
        let mut r = CgroupResolver::new(
            CgroupMounts {
                v2: Some(root.path().to_path_buf()),
                v1_memory: None,
            },
            3,
        );
        let wanted = root.path().join("c4");
        assert_eq!(r.resolve(ino(&wanted), 0, 0).as_deref(), Some("/c4"));
        assert_eq!(r.resolve(ino(&wanted), 0, 0).as_deref(), Some("/c4"));
        assert!(r.stats().evictions >= 8);
        assert_eq!(r.stats().walks, 1);
    }
}
