//! What can stop the cluster layer from starting. Once started it never fails: trouble with the
//! API server becomes a warning and a retry, not an error.

use std::{fmt::Write as _, path::PathBuf};

/// Why [`crate::start`] could not start watching the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A kubeconfig file exists (given explicitly, in `KUBECONFIG` or at `~/.kube/config`) but
    /// could not be read or does not describe a usable cluster.
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    /// `KUBERNETES_SERVICE_HOST` and the service-account token are there, but the rest of the
    /// in-cluster configuration (port, CA bundle, namespace file) is not usable.
    #[error("in-cluster Kubernetes configuration: {reason}")]
    InCluster { reason: String },
    /// The configuration was read but no HTTP client could be built from it (TLS settings,
    /// client certificates, auth plugins).
    #[error("Kubernetes client for {server} (from {origin}): {reason}")]
    Client {
        server: String,
        /// Where the configuration came from: `kubeconfig /path` or the in-cluster account.
        origin: String,
        reason: String,
    },
    /// A cluster is configured but this node's name is unknown, and watching every pod of the
    /// cluster instead would not scale.
    #[error("a Kubernetes cluster is configured but the node name is empty: pass --node-name or set NODE_NAME (the DaemonSet sets it from spec.nodeName)")]
    NoNodeName,
    /// The background thread that runs the watch could not be started.
    #[error("starting the Kubernetes watch thread")]
    Thread(#[source] std::io::Error),
}

/// An error and its sources on one line, without the repetitions that wrapping errors put in
/// (`"ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)"`).
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            let _ = write!(line, ": {text}");
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn one_line_keeps_each_cause_once() {
        let err = Outer(Middle(std::io::Error::other("refused\nfor real")));
        assert_eq!(one_line(&err), "outer: middle: refused for real");
    }

    #[test]
    fn kubeconfig_error_names_the_file() {
        let err = ClusterError::Kubeconfig {
            path: "/root/.kube/config".into(),
            reason: "failed to parse kubeconfig YAML".into(),
        };
        assert_eq!(
            err.to_string(),
            "kubeconfig /root/.kube/config: failed to parse kubeconfig YAML"
        );
    }
}
