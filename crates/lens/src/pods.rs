//! What enrichment asks about Kubernetes pods. The cluster layer (crates/cluster) fills a
//! directory from the API server; lens only reads it, so it stays free of Kubernetes clients and
//! its tests use plain values.

use std::{collections::BTreeMap, sync::Arc};

/// The owner that manages a pod, resolved through ReplicaSets and Jobs to what a user names:
/// Deployment, StatefulSet, DaemonSet, Job, CronJob (or the direct owner's kind otherwise).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// One pod as the API server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Pod uid, dashed form as in `metadata.uid`.
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    pub pod_ip: Option<String>,
    pub service_account: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<Workload>,
    /// Container id (bare hex, runtime prefix removed) -> container name.
    pub containers: BTreeMap<String, String>,
}

/// A read-only view of the pods known so far. Lookups never block on the API server: a pod not
/// yet delivered by the watch is simply absent.
pub trait PodDirectory: Send + Sync {
    /// The pod with this uid (dashed form).
    fn pod(&self, uid: &str) -> Option<Arc<PodInfo>>;
    /// The pod running the container with this id (bare hex), and that container's name.
    fn container(&self, container_id: &str) -> Option<(Arc<PodInfo>, String)>;
}
