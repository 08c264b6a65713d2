//! The in-memory pod index: by pod uid and by container id. Deleted pods, and container ids a
//! pod no longer lists (a restarted container), stay for a grace period so events that arrive
//! late still get names. Bounded: at most `cap` pods and [`MAX_GONE_PER_POD`] departed container
//! ids per pod; what is pushed out is counted. Time is passed in.
//!
//! [`Directory`] wraps it for readers: a lookup takes a read lock for two hash lookups and an
//! `Arc` clone; the watch thread takes the write lock per event, never across a network call.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use dnslens_lens::pods::{PodDirectory, PodInfo};

/// Departed container ids remembered per pod (a crash-looping container makes one per restart).
pub(crate) const MAX_GONE_PER_POD: usize = 16;

struct PodEntry {
    info: Arc<PodInfo>,
    deleted_at: Option<Instant>,
    /// When the pod was last added or changed; the oldest live pod goes first when full.
    touched: Instant,
    /// Container ids that left the pod's status, oldest first, with when they left.
    gone: Vec<(String, Instant)>,
}

struct ContainerEntry {
    uid: String,
    name: String,
}

/// Counts for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexCounts {
    /// Pods in the index, deleted ones still in their grace period included.
    pub pods: usize,
    /// Of those, pods already deleted.
    pub deleted: usize,
    /// Container ids that resolve (current and departed).
    pub containers: usize,
    /// Pods and departed container ids pushed out by the bounds before their time.
    pub evicted: u64,
}

pub(crate) struct PodIndex {
    pods: HashMap<String, PodEntry>,
    containers: HashMap<String, ContainerEntry>,
    cap: usize,
    grace: Duration,
    evicted: u64,
}

impl PodIndex {
    pub fn new(cap: usize, grace: Duration) -> Self {
        PodIndex {
            pods: HashMap::new(),
            containers: HashMap::new(),
            cap: cap.max(1),
            grace,
            evicted: 0,
        }
    }

    /// A pod was added or changed (or re-listed). Clears a deletion mark.
    pub fn apply(&mut self, info: PodInfo, now: Instant) {
        self.upsert(info, None, now);
    }

    /// A pod was deleted; `info` is its last state. It stays for the grace period.
    pub fn delete(&mut self, info: PodInfo, now: Instant) {
        self.upsert(info, Some(now), now);
    }

    /// After a full re-list: pods the list did not contain went away while we were not
    /// watching. They are marked deleted now and kept for the grace period.
    pub fn deleted_unless_listed(&mut self, listed: &HashSet<String>, now: Instant) {
        for (uid, entry) in self.pods.iter_mut() {
            if entry.deleted_at.is_none() && !listed.contains(uid) {
                entry.deleted_at = Some(now);
            }
        }
    }

    /// Forgets deleted pods and departed container ids whose grace period is over.
    pub fn sweep(&mut self, now: Instant) {
        let grace = self.grace;
        let expired = |at: Instant| now.saturating_duration_since(at) >= grace;
        let dead: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| e.deleted_at.is_some_and(expired))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in dead {
            self.remove_pod(&uid);
        }
        for entry in self.pods.values_mut() {
            let (old, keep): (Vec<_>, Vec<_>) =
                entry.gone.drain(..).partition(|(_, at)| expired(*at));
            entry.gone = keep;
            for (id, _) in old {
                remove_container_of(&mut self.containers, &id, &entry.info.uid);
            }
        }
    }

    pub fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.get(uid).map(|e| Arc::clone(&e.info))
    }

    pub fn container(&self, id: &str) -> Option<(Arc<PodInfo>, String)> {
        let c = self.containers.get(id)?;
        let pod = self.pods.get(&c.uid)?;
        Some((Arc::clone(&pod.info), c.name.clone()))
    }

    /// The workload already known for a pod, reused when the owner cannot be looked up now.
    pub fn workload(&self, uid: &str) -> Option<dnslens_lens::pods::Workload> {
        self.pods.get(uid).and_then(|e| e.info.workload.clone())
    }

    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            pods: self.pods.len(),
            deleted: self
                .pods
                .values()
                .filter(|e| e.deleted_at.is_some())
                .count(),
            containers: self.containers.len(),
            evicted: self.evicted,
        }
    }

    fn upsert(&mut self, info: PodInfo, deleted_at: Option<Instant>, now: Instant) {
        let uid = info.uid.clone();
        if !self.pods.contains_key(&uid) && self.pods.len() >= self.cap {
            self.evict_one();
        }
        for (id, name) in &info.containers {
            let previous = self.containers.insert(
                id.clone(),
                ContainerEntry {
                    uid: uid.clone(),
                    name: name.clone(),
                },
            );
            // The same id under another pod uid cannot happen with a real runtime; if it does,
            // the newest pod owns it and the old one must not remove it later.
            if let Some(previous) = previous.filter(|p| p.uid != uid) {
                if let Some(other) = self.pods.get_mut(&previous.uid) {
                    other.gone.retain(|(gone, _)| gone != id);
                }
            }
        }
        let info = Arc::new(info);
        match self.pods.get_mut(&uid) {
            Some(entry) => {
                let mut left: Vec<String> = entry
                    .info
                    .containers
                    .keys()
                    .filter(|id| !info.containers.contains_key(*id))
                    .cloned()
                    .collect();
                left.sort();
                entry
                    .gone
                    .retain(|(id, _)| !info.containers.contains_key(id));
                entry.gone.extend(left.into_iter().map(|id| (id, now)));
                while entry.gone.len() > MAX_GONE_PER_POD {
                    let (id, _) = entry.gone.remove(0);
                    remove_container_of(&mut self.containers, &id, &uid);
                    self.evicted += 1;
                }
                entry.info = info;
                entry.deleted_at = deleted_at;
                entry.touched = now;
            }
            None => {
                self.pods.insert(
                    uid,
                    PodEntry {
                        info,
                        deleted_at,
                        touched: now,
                        gone: Vec::new(),
                    },
                );
            }
        }
    }

    /// Makes room for one pod: the longest-deleted pod, else the least recently changed one.
    fn evict_one(&mut self) {
        let victim = self
            .pods
            .iter()
            .filter_map(|(uid, e)| e.deleted_at.map(|at| (at, uid)))
            .min()
            .or_else(|| self.pods.iter().map(|(uid, e)| (e.touched, uid)).min())
            .map(|(_, uid)| uid.clone());
        if let Some(uid) = victim {
            self.remove_pod(&uid);
            self.evicted += 1;
        }
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(entry) = self.pods.remove(uid) {
            let ids = entry
                .info
                .containers
                .keys()
                .chain(entry.gone.iter().map(|(id, _)| id));
            for id in ids {
                remove_container_of(&mut self.containers, id, uid);
            }
        }
    }
}

/// Removes a container id only if it still points at this pod.
fn remove_container_of(containers: &mut HashMap<String, ContainerEntry>, id: &str, uid: &str) {
    if containers.get(id).is_some_and(|c| c.uid == uid) {
        containers.remove(id);
    }
}

/// The shared, lock-protected index that [`PodDirectory`] readers see.
pub(crate) struct Directory {
    index: RwLock<PodIndex>,
}

impl Directory {
    pub fn new(index: PodIndex) -> Self {
        Directory {
            index: RwLock::new(index),
        }
    }

    // A panic while holding the lock leaves a consistent map (every update is a few inserts),
    // so a poisoned lock is used as is rather than taking enrichment down with it.
    pub fn read(&self) -> RwLockReadGuard<'_, PodIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, PodIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl PodDirectory for Directory {
    fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.read().pod(uid)
    }

    fn container(&self, container_id: &str) -> Option<(Arc<PodInfo>, String)> {
        self.read().container(container_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const GRACE: Duration = Duration::from_secs(300);

    fn pod(uid: &str, containers: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            uid: uid.to_string(),
            name: format!("pod-{uid}"),
            namespace: "default".to_string(),
            node: Some("node-a".to_string()),
            pod_ip: None,
            service_account: None,
            labels: BTreeMap::new(),
            workload: None,
            containers: containers
                .iter()
                .map(|(id, name)| (id.to_string(), name.to_string()))
                .collect(),
        }
    }

    #[test]
    fn lookups_by_uid_and_container_id() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.apply(pod("u1", &[("c1", "app"), ("c2", "sidecar")]), t0);
        assert_eq!(index.pod("u1").unwrap().name, "pod-u1");
        let (p, name) = index.container("c2").unwrap();
        assert_eq!((p.uid.as_str(), name.as_str()), ("u1", "sidecar"));
        assert!(index.pod("u2").is_none());
        assert!(index.container("c3").is_none());
    }

    #[test]
    fn deleted_pod_stays_for_the_grace_period() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.apply(pod("u1", &[("c1", "app")]), t0);
        index.delete(pod("u1", &[("c1", "app")]), t0 + Duration::from_secs(10));
        assert_eq!(index.counts().deleted, 1);
        index.sweep(t0 + Duration::from_secs(309));
        assert!(index.container("c1").is_some());
        index.sweep(t0 + Duration::from_secs(310));
        assert!(index.pod("u1").is_none());
        assert!(index.container("c1").is_none());
        assert_eq!(index.counts(), IndexCounts::default());
    }

    #[test]
    fn readded_pod_loses_its_deletion_mark() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.delete(pod("u1", &[]), t0);
        index.apply(pod("u1", &[]), t0 + Duration::from_secs(1));
        index.sweep(t0 + GRACE * 2);
        assert!(index.pod("u1").is_some());
    }

    #[test]
    fn restarted_container_keeps_its_old_id_for_the_grace_period() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.apply(pod("u1", &[("old", "app")]), t0);
        index.apply(pod("u1", &[("new", "app")]), t0 + Duration::from_secs(5));
        assert_eq!(index.container("old").unwrap().1, "app");
        assert_eq!(index.container("new").unwrap().1, "app");
        assert!(!index.pod("u1").unwrap().containers.contains_key("old"));
        index.sweep(t0 + Duration::from_secs(305));
        assert!(index.container("old").is_none());
        assert!(index.container("new").is_some());
    }

    #[test]
    fn departed_ids_per_pod_are_bounded_and_counted() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        let n = MAX_GONE_PER_POD + 3;
        for i in 0..=n {
            let id = format!("c{i}");
            index.apply(
                pod("u1", &[(id.as_str(), "app")]),
                t0 + Duration::from_secs(i as u64),
            );
        }
        let counts = index.counts();
        assert_eq!(counts.containers, MAX_GONE_PER_POD + 1);
        assert_eq!(counts.evicted, 3);
        assert!(index.container("c0").is_none());
        assert!(index.container(&format!("c{n}")).is_some());
    }

    #[test]
    fn relist_marks_missing_pods_deleted() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.apply(pod("u1", &[]), t0);
        index.apply(pod("u2", &[]), t0);
        index.deleted_unless_listed(&HashSet::from(["u2".to_string()]), t0);
        index.sweep(t0 + GRACE);
        assert!(index.pod("u1").is_none());
        assert!(index.pod("u2").is_some());
    }

    #[test]
    fn full_index_evicts_deleted_pods_first_then_the_oldest_live_one() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut index = PodIndex::new(3, GRACE);
        index.apply(pod("a", &[("ca", "x")]), t0);
        index.apply(pod("b", &[]), t0 + s(1));
        index.delete(pod("c", &[]), t0 + s(2));
        index.apply(pod("d", &[]), t0 + s(3));
        assert!(index.pod("c").is_none(), "the deleted pod goes first");
        index.apply(pod("e", &[]), t0 + s(4));
        assert!(index.pod("a").is_none(), "then the least recently changed");
        assert!(index.container("ca").is_none());
        let counts = index.counts();
        assert_eq!((counts.pods, counts.evicted), (3, 2));
    }

    #[test]
    fn a_container_id_moving_to_another_pod_is_not_removed_by_the_old_one() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(10, GRACE);
        index.apply(pod("u1", &[("c", "one")]), t0);
        index.apply(pod("u2", &[("c", "two")]), t0);
        index.delete(pod("u1", &[]), t0);
        index.sweep(t0 + GRACE);
        assert_eq!(index.container("c").unwrap().0.uid, "u2");
    }
}
