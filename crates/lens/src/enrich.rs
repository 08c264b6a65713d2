//! Enrichment: fills in what the kernel sends only as ids. The executable path and the cgroup
//! path come from caches over /proc and the cgroup mounts; the container and pod from the
//! cgroup path ([`crate::container`], parsed once per path); pod and container names from the
//! pod directory, when there is one, asked on every event so that a pod is named as soon as the
//! directory has it. Nothing here waits: a directory lookup reads what it holds. Every event kind
//! carries one [`Attribution`], which is what this stage fills.

use std::sync::Arc;

use dnslens_abi::ExecEvent;

use crate::bounded::Lru;
use crate::cgroup::{CgroupResolver, CgroupStats};
use crate::container::{Placement, Runtime};
use crate::model::{Attribution, Container, Pod};
use crate::pods::{PodDirectory, PodInfo};
use crate::process::{ProcessCache, ProcessStats};

/// Cgroup paths whose parse is remembered.
pub const DEFAULT_PLACEMENTS: usize = 16_384;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// Cgroup paths parsed (placement cache misses).
    pub paths_parsed: u64,
    /// Parsed paths evicted because the cache was full.
    pub evictions: u64,
    /// Events in a container or pod looked up in the pod directory.
    pub pod_lookups: u64,
    /// Lookups that found the pod: by the container id, or else by the pod uid.
    pub by_container: u64,
    pub by_pod_uid: u64,
    /// Lookups that found nothing (not yet delivered by the watch, on another node, gone past
    /// the grace period, or a container outside Kubernetes).
    pub unknown: u64,
}

/// What a cgroup path says, parsed once and shared by the events of that path.
#[derive(Clone, Debug)]
struct Cached {
    host: bool,
    container: Option<(Arc<str>, Runtime)>,
    pod_uid: Option<Arc<str>>,
}

impl Cached {
    fn parse(path: &str) -> Cached {
        match Placement::of(path) {
            Placement::Container(c) => Cached {
                host: false,
                container: Some((Arc::from(c.id), c.runtime)),
                pod_uid: c.pod_uid.map(Arc::from),
            },
            Placement::Pod { uid, .. } => Cached {
                host: false,
                container: None,
                pod_uid: Some(Arc::from(uid)),
            },
            Placement::Host => Cached {
                host: true,
                container: None,
                pod_uid: None,
            },
        }
    }
}

pub struct Enricher {
    processes: ProcessCache,
    cgroups: CgroupResolver,
    placements: Lru<Arc<str>, Cached>,
    pods: Option<Arc<dyn PodDirectory>>,
    node: Option<Arc<str>>,
    stats: ContainerStats,
}

impl Enricher {
    /// `placements`: how many cgroup paths' parses to remember.
    pub fn new(processes: ProcessCache, cgroups: CgroupResolver, placements: usize) -> Self {
        Enricher {
            processes,
            cgroups,
            placements: Lru::new(placements),
            pods: None,
            node: None,
            stats: ContainerStats::default(),
        }
    }

    /// Names pods and containers from `pods` from now on.
    pub fn set_pod_directory(&mut self, pods: Arc<dyn PodDirectory>) {
        self.pods = Some(pods);
    }

    /// The node name every event carries.
    pub fn set_node(&mut self, node: Option<&str>) {
        self.node = node.map(Arc::from);
    }

    /// Sets `process.exe`, `cgroup`, `container`, `pod`, `node` and `host`. `mono_ns`, the
    /// event's own stamp, is the clock for rate limits. `kernel_cgroup` gives what the kernel
    /// named (the cgroup's and its parent's directory names), used when the ids no longer
    /// resolve: the cgroup was removed before dnslens looked.
    pub fn enrich(
        &mut self,
        who: &mut Attribution,
        mono_ns: u64,
        kernel_cgroup: impl FnOnce() -> String,
    ) {
        let ids = who.ids;
        who.process.exe = self.processes.lookup_or_parent(
            who.process.pid,
            ids.process_start_ns,
            who.process.ppid,
            &who.process.name,
        );
        self.enrich_cgroup(who, mono_ns, kernel_cgroup);
    }

    /// Sets `cgroup`, `container`, `pod`, `node` and `host` alone: for what the kernel names by
    /// cgroup only (the ring buffer's losses per cgroup).
    pub fn enrich_cgroup(
        &mut self,
        who: &mut Attribution,
        mono_ns: u64,
        kernel_cgroup: impl FnOnce() -> String,
    ) {
        let ids = who.ids;
        who.cgroup = match self
            .cgroups
            .resolve(ids.cgroup_id, ids.cgroup_v1_id, mono_ns)
        {
            Some(path) => path,
            None => Arc::from(kernel_cgroup()),
        };
        self.place(who);
    }

    /// Container, pod, node and host from the event's cgroup path and the pod directory.
    fn place(&mut self, who: &mut Attribution) {
        who.node = self.node.clone();
        who.container = None;
        who.pod = None;
        if who.cgroup.is_empty() {
            // Not resolved: neither host nor container can be told.
            who.host = None;
            return;
        }
        let cached = match self.placements.get(&*who.cgroup) {
            Some(cached) => cached.clone(),
            None => {
                self.stats.paths_parsed += 1;
                let cached = Cached::parse(&who.cgroup);
                self.placements.insert(who.cgroup.clone(), cached.clone());
                cached
            }
        };
        who.host = Some(cached.host);
        let mut container = cached.container.map(|(id, runtime)| Container {
            id,
            runtime,
            name: None,
        });
        let mut pod = cached.pod_uid.map(|uid| Pod { uid, info: None });
        if let Some(directory) = self.pods.as_deref() {
            if container.is_some() || pod.is_some() {
                self.stats.pod_lookups += 1;
                match lookup(directory, container.as_ref(), pod.as_ref()) {
                    Some((info, name)) => {
                        if name.is_some() {
                            self.stats.by_container += 1;
                        } else {
                            self.stats.by_pod_uid += 1;
                        }
                        if let Some(c) = container.as_mut() {
                            c.name = name;
                        }
                        // The API's uid: a static pod's cgroup carries its config hash instead.
                        let uid = match pod {
                            Some(Pod { uid, .. }) if *uid == *info.uid => uid,
                            _ => Arc::from(info.uid.as_str()),
                        };
                        pod = Some(Pod {
                            uid,
                            info: Some(info),
                        });
                    }
                    None => self.stats.unknown += 1,
                }
            }
        }
        who.container = container;
        who.pod = pod;
    }

    /// Remembers the executable of a process at exec: see [`ProcessCache::record_exec`].
    pub fn record_exec(&mut self, exec: ExecEvent) {
        self.processes
            .record_exec(exec.tgid, exec.process_start_ns, exec.filename);
    }

    pub fn process_stats(&self) -> ProcessStats {
        self.processes.stats()
    }

    pub fn cgroup_stats(&self) -> CgroupStats {
        self.cgroups.stats()
    }

    pub fn container_stats(&self) -> ContainerStats {
        ContainerStats {
            evictions: self.placements.evictions(),
            ..self.stats
        }
    }
}

/// The pod by container id (with the container's name), else by pod uid.
fn lookup(
    directory: &dyn PodDirectory,
    container: Option<&Container>,
    pod: Option<&Pod>,
) -> Option<(Arc<PodInfo>, Option<String>)> {
    container
        .and_then(|c| directory.container(&c.id))
        .map(|(info, name)| (info, Some(name)))
        .or_else(|| {
            pod.and_then(|p| directory.pod(&p.uid))
                .map(|info| (info, None))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CgroupMounts;
    use crate::model::{sample, DnsEvent};
    use crate::pods::Workload;
    use crate::testutil::TempDir;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    /// A directory filled by the test, as the watch fills the real one.
    #[derive(Default)]
    struct Pods(Mutex<Vec<Arc<PodInfo>>>);

    impl PodDirectory for Pods {
        fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
            let pods = self.0.lock().unwrap();
            pods.iter().find(|p| p.uid == uid).cloned()
        }

        fn container(&self, id: &str) -> Option<(Arc<PodInfo>, String)> {
            let pods = self.0.lock().unwrap();
            pods.iter()
                .find_map(|p| Some((p.clone(), p.containers.get(id)?.clone())))
        }
    }

    fn payment_pod() -> PodInfo {
        PodInfo {
            uid: UID.to_string(),
            name: "payment-svc-7d4b9f-xk2p1".to_string(),
            namespace: "production".to_string(),
            node: Some("node-1".to_string()),
            pod_ip: Some("10.244.1.17".to_string()),
            service_account: Some("payment".to_string()),
            labels: BTreeMap::from([("app".to_string(), "payment-svc".to_string())]),
            workload: Some(Workload {
                kind: "Deployment".to_string(),
                name: "payment-svc".to_string(),
            }),
            containers: BTreeMap::from([(ID.to_string(), "app".to_string())]),
        }
    }

    fn enricher(capacity: usize) -> (Enricher, TempDir) {
        let proc_root = TempDir::new("proc");
        let e = Enricher::new(
            ProcessCache::new(proc_root.path(), 16),
            CgroupResolver::new(CgroupMounts::default(), 16),
            capacity,
        );
        (e, proc_root)
    }

    fn event_in(cgroup: &str) -> DnsEvent {
        let mut e = sample::query(1, "example.com", 1, 0);
        e.who.cgroup = Arc::from(cgroup);
        e
    }

    #[test]
    fn host_container_pod_and_unresolved_without_a_directory() {
        let (mut en, _dir) = enricher(16);
        en.set_node(Some("node-1"));
        let mut host = event_in("/system.slice/sshd.service");
        en.place(&mut host.who);
        assert_eq!(
            (host.who.host, &host.who.container, &host.who.pod),
            (Some(true), &None, &None)
        );
        assert_eq!(host.who.node.as_deref(), Some("node-1"));

        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let mut c = event_in(&path);
        en.place(&mut c.who);
        assert_eq!(c.who.host, Some(false));
        let container = c.who.container.as_ref().unwrap();
        assert_eq!(
            (&*container.id, container.runtime, &container.name),
            (ID, Runtime::Containerd, &None)
        );
        assert_eq!(c.who.pod.as_ref().map(|p| &*p.uid), Some(UID));
        assert_eq!(c.who.pod.as_ref().unwrap().info, None);

        let mut pod_level = event_in(&format!("/kubepods/pod{UID}"));
        en.place(&mut pod_level.who);
        assert_eq!(pod_level.who.host, Some(false));
        assert_eq!(pod_level.who.container, None);
        assert_eq!(pod_level.who.pod.as_ref().map(|p| &*p.uid), Some(UID));

        let mut unresolved = event_in("");
        en.place(&mut unresolved.who);
        assert_eq!(
            (unresolved.who.host, &unresolved.who.container),
            (None, &None)
        );
        let stats = en.container_stats();
        assert_eq!((stats.paths_parsed, stats.pod_lookups), (3, 0));
    }

    #[test]
    fn names_come_from_the_directory_as_soon_as_it_has_the_pod() {
        let (mut en, _dir) = enricher(16);
        let pods = Arc::new(Pods::default());
        en.set_pod_directory(pods.clone());
        let path = format!("/kubepods/burstable/pod{UID}/{ID}");

        // Not listed yet: ids only, and the miss is not remembered.
        let mut early = event_in(&path);
        en.place(&mut early.who);
        assert_eq!(early.who.container.as_ref().unwrap().name, None);
        assert_eq!(early.who.pod.as_ref().unwrap().info, None);

        pods.0.lock().unwrap().push(Arc::new(payment_pod()));
        let mut later = event_in(&path);
        en.place(&mut later.who);
        let container = later.who.container.as_ref().unwrap();
        assert_eq!(container.name.as_deref(), Some("app"));
        assert_eq!(container.runtime, Runtime::Unknown);
        let pod = later.who.pod.as_ref().unwrap();
        assert_eq!(pod.name(), Some("payment-svc-7d4b9f-xk2p1"));
        assert_eq!(pod.namespace(), Some("production"));
        assert_eq!(pod.workload().map(|w| w.name.as_str()), Some("payment-svc"));

        // A container the pod's statuses do not list (the sandbox): found by pod uid.
        let sandbox = "f".repeat(64);
        let mut pause = event_in(&format!("/kubepods/burstable/pod{UID}/{sandbox}"));
        en.place(&mut pause.who);
        assert_eq!(pause.who.container.as_ref().unwrap().name, None);
        assert_eq!(
            pause.who.pod.as_ref().unwrap().name(),
            Some("payment-svc-7d4b9f-xk2p1")
        );

        // A container the directory knows although its cgroup names no pod (a static pod's
        // hash, a nested layout): the pod and its uid come from the directory.
        let mut docker = event_in(&format!("/docker/{ID}"));
        en.place(&mut docker.who);
        assert_eq!(docker.who.pod.as_ref().map(|p| &*p.uid), Some(UID));

        let stats = en.container_stats();
        assert_eq!(
            (
                stats.pod_lookups,
                stats.by_container,
                stats.by_pod_uid,
                stats.unknown
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(stats.paths_parsed, 3);
    }

    #[test]
    fn parsed_paths_are_bounded_and_evictions_counted() {
        let (mut en, _dir) = enricher(2);
        for i in 0..5 {
            en.place(&mut event_in(&format!("/system.slice/s{i}.service")).who);
        }
        en.place(&mut event_in("/system.slice/s4.service").who);
        let stats = en.container_stats();
        assert_eq!((stats.paths_parsed, stats.evictions), (5, 3));
    }
}
