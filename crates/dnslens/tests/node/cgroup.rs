//! Pod cgroups named the way the kubelet names them, in the cgroup v2 hierarchy and in the v1
//! memory hierarchy (where the host has one), so that both ways dnslens resolves a cgroup path
//! can be tested:
//!
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid, - as _>.slice/cri-containerd-<64 hex>.scope`
//! - cgroupfs driver: `/kubepods/besteffort/pod<uid>/<64 hex>`
//!
//! The paths must look real, so the run's mark is inside the pod uid and container id (both
//! start with the test process's pid in hex). Only directories the tests created are removed.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{host_lock, unique_tag, wait_until, STATE_DIR};

/// How the cgroup is named: the kubelet's driver and the container runtime, or a container
/// outside Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// systemd driver, Burstable pod, containerd.
    Systemd,
    /// cgroupfs driver, BestEffort pod: the runtime cannot be told from the path.
    Cgroupfs,
    /// systemd driver, BestEffort pod, CRI-O.
    SystemdCrio,
    /// systemd driver, Guaranteed pod (no QoS level in the path), containerd.
    SystemdGuaranteed,
    /// cgroupfs driver, Guaranteed pod (`kubepods/pod<uid>/<id>`).
    CgroupfsGuaranteed,
    /// A kind node: the node's kubelet nests the pods under its own slice.
    KindNested,
    /// Docker outside Kubernetes: no pod.
    Docker,
    /// Podman outside Kubernetes: no pod.
    Podman,
}

impl Driver {
    /// The cgroup path for this pod uid and container id.
    fn path(self, uid: &str, container: &str) -> String {
        let uid_ = uid.replace('-', "_");
        match self {
            Driver::Systemd => format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/\
                 cri-containerd-{container}.scope"
            ),
            Driver::Cgroupfs => format!("/kubepods/besteffort/pod{uid}/{container}"),
            Driver::SystemdCrio => format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/\
                 crio-{container}.scope"
            ),
            Driver::SystemdGuaranteed => {
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{container}.scope")
            }
            Driver::CgroupfsGuaranteed => format!("/kubepods/pod{uid}/{container}"),
            Driver::KindNested => format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
                 kubelet-kubepods-besteffort-pod{uid_}.slice/cri-containerd-{container}.scope"
            ),
            Driver::Docker => format!("/system.slice/docker-{container}.scope"),
            Driver::Podman => format!("/machine.slice/libpod-{container}.scope"),
        }
    }

    /// The runtime dnslens should report.
    pub fn runtime(self) -> &'static str {
        match self {
            Driver::Systemd | Driver::SystemdGuaranteed | Driver::KindNested => "containerd",
            Driver::SystemdCrio => "cri-o",
            Driver::Cgroupfs | Driver::CgroupfsGuaranteed => "unknown",
            Driver::Docker => "docker",
            Driver::Podman => "podman",
        }
    }

    /// Whether the cgroup belongs to a Kubernetes pod.
    pub fn in_pod(self) -> bool {
        !matches!(self, Driver::Docker | Driver::Podman)
    }
}

/// Which hierarchies the pod cgroup is created (and joined) in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchies {
    /// v2 and, where mounted, v1 memory: the path is the same in both.
    Both,
    /// Only v1 memory: the process stays in its v2 cgroup, so dnslens must resolve through v1.
    V1Only,
}

/// Mount points of the cgroup hierarchies, from /proc/self/mountinfo.
#[derive(Clone, Debug, Default)]
pub struct Mounts {
    pub v2: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
}

impl Mounts {
    pub fn detect() -> Mounts {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts = Mounts::default();
        for line in text.lines() {
            // "id parent major:minor root mountpoint opts... - fstype source superopts"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mountpoint) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let superopts = right.nth(1).unwrap_or_default();
            if fstype == "cgroup2" && mounts.v2.is_none() {
                mounts.v2 = Some(PathBuf::from(mountpoint));
            } else if fstype == "cgroup" && superopts.split(',').any(|o| o == "memory") {
                mounts.v1_memory = Some(PathBuf::from(mountpoint));
            }
        }
        mounts
    }
}

/// One pod container's cgroup. Removed on drop.
pub struct PodCgroup {
    /// Path relative to the hierarchy's mount, with a leading `/`: what dnslens should report.
    pub path: String,
    pub driver: Driver,
    /// The pod uid (dashed), also for layouts without a pod (then unused).
    pub pod_uid: String,
    /// The container id (64 hex).
    pub container_id: String,
    /// (hierarchy mount, leaf directory) for each hierarchy it exists in.
    leaves: Vec<(PathBuf, PathBuf)>,
    /// Every directory on the paths, parents first.
    dirs: Vec<PathBuf>,
}

/// The cgroup directories tests have created and not yet removed, shared by all test processes
/// (tests run in parallel threads, and cargo invocations may overlap): parents such as
/// `kubepods.slice` are shared by pods, so whoever leaves one empty removes it, if a test made
/// it. Held under an exclusive flock; a directory that existed before is never removed.
struct Registry {
    _lock: File,
    dirs: BTreeSet<PathBuf>,
}

impl Registry {
    fn lock() -> Registry {
        let lock = host_lock();
        let dirs = fs::read_to_string(Path::new(STATE_DIR).join("cgroups"))
            .unwrap_or_default()
            .lines()
            .map(PathBuf::from)
            .collect();
        Registry { _lock: lock, dirs }
    }

    fn save(&self) {
        let text: String = self
            .dirs
            .iter()
            .map(|d| format!("{}\n", d.display()))
            .collect();
        let path = Path::new(STATE_DIR).join("cgroups");
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .is_err()
        {
            eprintln!("cleanup: cannot write {}", path.display());
        }
    }
}

impl PodCgroup {
    /// Creates the pod cgroup. Panics if a requested hierarchy is not mounted.
    pub fn new(driver: Driver, hierarchies: Hierarchies) -> PodCgroup {
        let mounts = Mounts::detect();
        let (uid, container) = ids();
        let path = driver.path(&uid, &container);
        let mut roots = Vec::new();
        if hierarchies == Hierarchies::Both {
            roots.push(
                mounts
                    .v2
                    .clone()
                    .expect("no cgroup2 mount in /proc/self/mountinfo"),
            );
        }
        match (&mounts.v1_memory, hierarchies) {
            (Some(v1), _) => roots.push(v1.clone()),
            (None, Hierarchies::V1Only) => panic!("no cgroup v1 memory hierarchy is mounted"),
            (None, Hierarchies::Both) => {}
        }
        let mut cg = PodCgroup {
            path,
            driver,
            pod_uid: uid,
            container_id: container,
            leaves: Vec::new(),
            dirs: Vec::new(),
        };
        let mut registry = Registry::lock();
        for root in roots {
            let mut dir = root.clone();
            for part in cg.path.trim_start_matches('/').split('/') {
                dir.push(part);
                match fs::create_dir(&dir) {
                    Ok(()) => {
                        registry.dirs.insert(dir.clone());
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        registry.save();
                        panic!("mkdir {}: {e}", dir.display())
                    }
                }
                cg.dirs.push(dir.clone());
            }
            cg.leaves.push((root, dir));
        }
        registry.save();
        cg
    }

    /// The `cgroup.procs` files a process writes its pid to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.leaves
            .iter()
            .map(|(_, leaf)| leaf.join("cgroup.procs"))
            .collect()
    }

    /// Whether the host has the v1 memory hierarchy (needed for `Hierarchies::V1Only`).
    pub fn have_v1_memory() -> bool {
        Mounts::detect().v1_memory.is_some()
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let mut registry = Registry::lock();
        // Normally empty: our resolvers have exited. Anything left is a descendant of ours and
        // is moved to the hierarchy root so the directory can go.
        for (root, leaf) in &self.leaves {
            let procs = fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = fs::write(root.join("cgroup.procs"), pid);
            }
        }
        for dir in self.dirs.iter().rev() {
            if registry.dirs.contains(dir) && remove_cgroup_dir(dir) {
                registry.dirs.remove(dir);
            }
        }
        registry.save();
    }
}

/// Removes a cgroup directory unless it has child cgroups (another pod's); retries while it is
/// busy, as one whose last task just exited can be for a moment. Returns whether it is gone.
fn remove_cgroup_dir(dir: &Path) -> bool {
    let has_children =
        || fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(|e| e.path().is_dir()));
    if has_children() {
        return false;
    }
    let mut last = None;
    let gone = wait_until(Duration::from_secs(2), || match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => {
            last = Some(e);
            has_children()
        }
    }) && !dir.exists();
    if !gone && !has_children() {
        eprintln!("cleanup: rmdir {}: {last:?}", dir.display());
    }
    gone
}

/// A pod uid and a container id marked with this process's pid, otherwise random.
fn ids() -> (String, String) {
    let (_, n) = unique_tag();
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos ^ ((pid as u64) << 32) ^ n as u64;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let uid = format!(
        "{pid:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n & 0xffff,
        next() & 0xfff,
        next() & 0xfff,
        next() & 0xffff_ffff_ffff
    );
    let container = format!(
        "{pid:08x}{:08x}{:016x}{:016x}{:016x}",
        next() as u32,
        next(),
        next(),
        next()
    );
    (uid, container)
}
