//! Which workload runs a pod, named as a user names it: a pod's controller is a ReplicaSet or
//! a Job more often than not, and its owner (a Deployment, a CronJob) is what people deploy. That
//! second hop needs a GET, made once per ReplicaSet or Job and cached. When RBAC forbids the
//! GET, the direct owner is used and a warning says which permission is missing, once.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use dnslens_lens::pods::Workload;
use k8s_openapi::{
    api::{apps::v1::ReplicaSet, batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Client};

/// Cached ReplicaSet/Job -> workload answers. Each Deployment rollout adds a ReplicaSet, so old
/// entries go first.
pub(crate) const OWNER_CACHE_CAP: usize = 4096;
/// How long one owner GET may take before the pod is indexed with its direct owner.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// After a 403, how long before asking again (a ClusterRole may be fixed while we run).
const FORBIDDEN_RETRY: Duration = Duration::from_secs(600);

/// The two owner kinds looked through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Hop {
    ReplicaSet,
    Job,
}

impl Hop {
    fn kind(self) -> &'static str {
        match self {
            Hop::ReplicaSet => "ReplicaSet",
            Hop::Job => "Job",
        }
    }
    /// As RBAC rules spell it.
    fn resource(self) -> &'static str {
        match self {
            Hop::ReplicaSet => "replicasets.apps",
            Hop::Job => "jobs.batch",
        }
    }
    fn what_is_lost(self) -> &'static str {
        match self {
            Hop::ReplicaSet => "pods show their ReplicaSet instead of its Deployment",
            Hop::Job => "pods show their Job instead of its CronJob",
        }
    }
}

/// What the pod's own owner reference says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FirstHop {
    /// The workload is known already (StatefulSet, DaemonSet, a custom controller, or none).
    Done(Option<Workload>),
    /// The owner is a ReplicaSet or Job with this name; its own owner decides.
    Lookup(Hop, String),
}

/// The managing owner: the reference marked `controller`, else the first one.
pub(crate) fn controller(refs: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    let refs = refs?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or(refs.first())
}

fn workload(kind: &str, name: &str) -> Workload {
    Workload {
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

pub(crate) fn first_hop(owner: Option<&OwnerReference>) -> FirstHop {
    let Some(owner) = owner else {
        return FirstHop::Done(None);
    };
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => FirstHop::Lookup(Hop::ReplicaSet, owner.name.clone()),
        ("batch", "Job") => FirstHop::Lookup(Hop::Job, owner.name.clone()),
        _ => FirstHop::Done(Some(workload(&owner.kind, &owner.name))),
    }
}

/// The workload of a pod whose owner is the ReplicaSet/Job `name`, given that object's own
/// controller: a Deployment or CronJob (or another controller, e.g. an Argo Rollout); without
/// one, the ReplicaSet or Job itself.
pub(crate) fn second_hop(hop: Hop, name: &str, owner: Option<&OwnerReference>) -> Workload {
    match owner {
        Some(o) => workload(&o.kind, &o.name),
        None => workload(hop.kind(), name),
    }
}

/// The workload as far as the pod alone tells: its direct owner.
pub(crate) fn direct(pod: &Pod) -> Option<Workload> {
    match first_hop(controller(pod.metadata.owner_references.as_deref())) {
        FirstHop::Done(w) => w,
        FirstHop::Lookup(hop, name) => Some(workload(hop.kind(), &name)),
    }
}

type Key = (Hop, String, String);

/// Resolves workloads, remembering answers and which lookups RBAC forbids.
pub(crate) struct Owners {
    client: Client,
    cache: HashMap<Key, Workload>,
    order: VecDeque<Key>,
    forbidden_until: HashMap<Hop, Instant>,
    warned: HashSet<Hop>,
    evicted: u64,
}

impl Owners {
    pub fn new(client: Client) -> Self {
        Owners {
            client,
            cache: HashMap::new(),
            order: VecDeque::new(),
            forbidden_until: HashMap::new(),
            warned: HashSet::new(),
            evicted: 0,
        }
    }

    /// Cache entries dropped to stay under [`OWNER_CACHE_CAP`].
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The pod's workload. `previous` is what the index had: kept when the owner cannot be
    /// looked up right now (API trouble), so a name does not flap between Deployment and
    /// ReplicaSet.
    pub async fn workload(
        &mut self,
        pod: &Pod,
        previous: Option<Workload>,
        warn: &(dyn Fn(String) + Send + Sync),
    ) -> Option<Workload> {
        let (hop, name) = match first_hop(controller(pod.metadata.owner_references.as_deref())) {
            FirstHop::Done(w) => return w,
            FirstHop::Lookup(hop, name) => (hop, name),
        };
        let direct = workload(hop.kind(), &name);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let key = (hop, namespace, name);
        if let Some(w) = self.cache.get(&key) {
            return Some(w.clone());
        }
        if self
            .forbidden_until
            .get(&hop)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Some(direct);
        }
        let (_, namespace, name) = &key;
        let fetched =
            tokio::time::timeout(LOOKUP_TIMEOUT, self.owner_of(hop, namespace, name)).await;
        match fetched {
            Ok(Ok(owner)) => {
                let w = second_hop(hop, name, owner.as_ref());
                self.remember(key, w.clone());
                Some(w)
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 403 => {
                self.forbidden_until
                    .insert(hop, Instant::now() + FORBIDDEN_RETRY);
                if self.warned.insert(hop) {
                    warn(format!(
                        "RBAC forbids get on {} ({}): {}; grant get on {} to dnslens's ClusterRole",
                        hop.resource(),
                        e.message,
                        hop.what_is_lost(),
                        hop.resource(),
                    ));
                }
                Some(direct)
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                // Gone already (the pod is on its way out too): the direct owner is final.
                self.remember(key, direct.clone());
                Some(direct)
            }
            // Timeouts and connection trouble: the pod watch reports those; try again at the
            // pod's next change.
            Ok(Err(_)) | Err(_) => previous.or(Some(direct)),
        }
    }

    async fn owner_of(
        &self,
        hop: Hop,
        namespace: &str,
        name: &str,
    ) -> Result<Option<OwnerReference>, kube::Error> {
        let meta = match hop {
            Hop::ReplicaSet => {
                Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                    .get(name)
                    .await?
                    .metadata
            }
            Hop::Job => {
                Api::<Job>::namespaced(self.client.clone(), namespace)
                    .get(name)
                    .await?
                    .metadata
            }
        };
        Ok(controller(meta.owner_references.as_deref()).cloned())
    }

    fn remember(&mut self, key: Key, w: Workload) {
        if self.cache.len() >= OWNER_CACHE_CAP {
            if let Some(oldest) = self.order.pop_front() {
                self.cache.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.order.push_back(key.clone());
        self.cache.insert(key, w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(
        api_version: &str,
        kind: &str,
        name: &str,
        controller: Option<bool>,
    ) -> OwnerReference {
        OwnerReference {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            uid: format!("uid-{name}"),
            controller,
            block_owner_deletion: None,
        }
    }

    #[test]
    fn the_controller_reference_wins() {
        let refs = [
            owner("v1", "ConfigMap", "not-me", None),
            owner("apps/v1", "StatefulSet", "db", Some(true)),
        ];
        assert_eq!(controller(Some(&refs)).unwrap().name, "db");
        assert_eq!(controller(Some(&refs[..1])).unwrap().name, "not-me");
        assert!(controller(Some(&[])).is_none());
        assert!(controller(None).is_none());
    }

    #[test]
    fn first_hop_by_kind() {
        let lookup = |hop, name: &str| FirstHop::Lookup(hop, name.to_string());
        let done = |kind: &str, name: &str| FirstHop::Done(Some(workload(kind, name)));
        let hop = |v, k, n| first_hop(Some(&owner(v, k, n, Some(true))));
        assert_eq!(
            hop("apps/v1", "ReplicaSet", "web-7d4b9f"),
            lookup(Hop::ReplicaSet, "web-7d4b9f")
        );
        assert_eq!(
            hop("batch/v1", "Job", "backup-2903"),
            lookup(Hop::Job, "backup-2903")
        );
        assert_eq!(
            hop("apps/v1", "StatefulSet", "db"),
            done("StatefulSet", "db")
        );
        assert_eq!(
            hop("apps/v1", "DaemonSet", "agent"),
            done("DaemonSet", "agent")
        );
        assert_eq!(hop("v1", "Node", "node-a"), done("Node", "node-a"));
        // Same kind name in another API group is someone else's resource: no lookup.
        assert_eq!(hop("example.com/v1", "Job", "x"), done("Job", "x"));
        assert_eq!(first_hop(None), FirstHop::Done(None));
    }

    #[test]
    fn second_hop_uses_the_owner_or_stays() {
        let deploy = owner("apps/v1", "Deployment", "web", Some(true));
        let cron = owner("batch/v1", "CronJob", "backup", Some(true));
        let rollout = owner("argoproj.io/v1alpha1", "Rollout", "canary", Some(true));
        assert_eq!(
            second_hop(Hop::ReplicaSet, "web-7d4b9f", Some(&deploy)),
            workload("Deployment", "web")
        );
        assert_eq!(
            second_hop(Hop::Job, "backup-2903", Some(&cron)),
            workload("CronJob", "backup")
        );
        assert_eq!(
            second_hop(Hop::ReplicaSet, "c-1", Some(&rollout)),
            workload("Rollout", "canary")
        );
        assert_eq!(
            second_hop(Hop::ReplicaSet, "bare-rs", None),
            workload("ReplicaSet", "bare-rs")
        );
        assert_eq!(
            second_hop(Hop::Job, "one-off", None),
            workload("Job", "one-off")
        );
    }
}
