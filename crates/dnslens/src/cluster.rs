//! The Kubernetes side, started as the settings say: the cluster layer's pod watch, whose
//! directory names pods and containers, and the node name events carry.

use std::sync::Arc;

use anyhow::Context;
use dnslens_cluster::{Cluster, ClusterConfig, ClusterStatus};
use dnslens_lens::pods::PodDirectory;

use crate::settings::Kubernetes;

/// The watch, if a cluster was found, and the node name.
pub struct Connection {
    cluster: Option<Cluster>,
    node: Option<String>,
}

impl Connection {
    /// Starts the watch of this node's pods unless `--no-kubernetes`. No in-cluster
    /// configuration and no kubeconfig is not an error: containers and pod uids only.
    pub fn start(kubernetes: &Kubernetes) -> anyhow::Result<Connection> {
        if !kubernetes.enabled {
            return Ok(Connection {
                cluster: None,
                node: kubernetes.node_name.clone(),
            });
        }
        let node_name = match &kubernetes.node_name {
            Some(name) => name.clone(),
            None => hostname().context(
                "the node name is not given and the hostname is unreadable: give --node-name \
                 or set NODE_NAME (in a DaemonSet, from the downward API's spec.nodeName)",
            )?,
        };
        let config = ClusterConfig {
            node_name: node_name.clone(),
            kubeconfig: kubernetes.kubeconfig.clone(),
            // Late events (a query timing out after its pod went away, a ring-buffer backlog)
            // keep their names for this long.
            deleted_grace: dnslens_cluster::DEFAULT_DELETED_GRACE,
        };
        let warn = Box::new(|msg: String| say!("dnslens: kubernetes: {msg}"));
        let cluster = dnslens_cluster::start(config, warn).context("kubernetes")?;
        // The hostname is a guess: events carry it only when the cluster confirms the node is one.
        let node = match &cluster {
            Some(_) => Some(node_name),
            None => kubernetes.node_name.clone(),
        };
        Ok(Connection { cluster, node })
    }

    /// The pod directory, when a cluster was found.
    pub fn directory(&self) -> Option<Arc<dyn PodDirectory>> {
        self.cluster.as_ref().map(Cluster::directory)
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The node name, else the hostname: who writes dnstap (its `identity`).
    pub fn identity(&self) -> String {
        self.node.clone().or_else(hostname).unwrap_or_default()
    }

    /// The watch's state and the directory's counters; `None` without a cluster.
    pub fn status(&self) -> Option<ClusterStatus> {
        self.cluster.as_ref().map(Cluster::status)
    }

    /// The watch's state and the directory's counters, for the exit report.
    pub fn report(&self) -> Option<String> {
        let s = self.status()?;
        let state = if s.connected {
            "connected"
        } else {
            "not connected"
        };
        let mut line = format!(
            "kubernetes: {} at {}, {state}: {} pods ({} deleted, in their grace period), {} \
             containers, {} evicted, {} owner answers evicted, {} re-lists",
            s.source,
            s.server,
            s.pods,
            s.deleted_pods,
            s.containers,
            s.evicted,
            s.owner_cache_evicted,
            s.relists
        );
        if let Some(error) = s.last_error {
            line.push_str(&format!("; last error: {error}"));
        }
        Some(line)
    }
}

/// This host's name (what the kubelet registers the node as unless told otherwise).
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    // The kubelet lower-cases the hostname for the node name.
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_kubernetes_starts_nothing_and_keeps_a_given_node_name() {
        let off = Kubernetes {
            enabled: false,
            node_name: Some("node-1".to_string()),
            kubeconfig: None,
        };
        let c = Connection::start(&off).unwrap();
        assert!(c.directory().is_none());
        assert_eq!(c.node(), Some("node-1"));
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
