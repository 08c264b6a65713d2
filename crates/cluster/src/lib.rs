//! The Kubernetes layer of dnslens: watches the pods of this node through the API server and
//! answers, from memory, which pod a pod uid or container id belongs to, with its namespace,
//! labels, service account and owning workload. Lens reads it through
//! [`dnslens_lens::pods::PodDirectory`] and never waits on the network.
//!
//! [`start`] finds the configuration (kubeconfig or in-cluster), then a background thread with
//! its own single-threaded tokio runtime lists and watches; dropping the [`Cluster`] stops it.
//! Without any configuration (a laptop, a VM) [`start`] returns `Ok(None)`.

mod config;
mod error;
mod index;
mod owners;
mod pod;
mod watch;

use std::{
    path::PathBuf,
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use dnslens_lens::counters::Counter;
use dnslens_lens::pods::PodDirectory;

pub use error::ClusterError;

use crate::{
    index::{Directory, PodIndex},
    watch::{Shared, Watch},
};

/// How long a deleted pod keeps answering lookups, unless configured otherwise.
pub const DEFAULT_DELETED_GRACE: Duration = Duration::from_secs(300);
/// Pods held at most (live and deleted). A node runs at most a few hundred pods; the rest is room
/// for deleted ones in their grace period on a node with heavy churn (CronJobs).
pub const MAX_PODS: usize = 4096;

/// What [`start`] needs.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name as the API server knows it (`spec.nodeName` of its pods).
    pub node_name: String,
    /// A kubeconfig to use instead of looking in `KUBECONFIG`, in-cluster and `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// How long a deleted pod (or a restarted container's old id) still resolves.
    pub deleted_grace: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: String::new(),
            kubeconfig: None,
            deleted_grace: DEFAULT_DELETED_GRACE,
        }
    }
}

/// A snapshot of the watch's health and the index's size, for the status line and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Where the configuration came from (`kubeconfig /path`, `in-cluster service account`).
    pub source: String,
    /// The API server's URL.
    pub server: String,
    /// The last list or watch request succeeded.
    pub connected: bool,
    /// The first pod list has arrived (and stays true through later outages): from then on the
    /// directory names this node's pods. The agent's readiness waits for it.
    pub listed: bool,
    /// Pods in the index, deleted ones still in their grace period included.
    pub pods: usize,
    /// Of those, deleted pods.
    pub deleted_pods: usize,
    /// Container ids that resolve to a pod.
    pub containers: usize,
    /// Pods and old container ids dropped by the index bounds before their grace period ended.
    pub evicted: u64,
    /// ReplicaSet/Job owner answers dropped from their cache.
    pub owner_cache_evicted: u64,
    /// Full re-lists after the watch's resource version expired (410 Gone).
    pub relists: u64,
    /// Why the API server was last unreachable or refused, if it ever was.
    pub last_error: Option<String>,
}

impl ClusterStatus {
    /// The cluster layer's rows of the health table ([`dnslens_lens::counters`]).
    pub fn counters(&self, out: &mut Vec<Counter>) {
        out.extend([
            Counter::eviction("kubernetes", "pods", self.evicted),
            Counter::eviction("kubernetes", "owner_cache", self.owner_cache_evicted),
        ]);
    }
}

/// The running watch. Dropping it stops the background thread.
pub struct Cluster {
    shared: Arc<Shared>,
    source: String,
    server: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Finds the cluster configuration and starts watching this node's pods.
///
/// `Ok(None)` when there is no in-cluster configuration and no kubeconfig: not an error, pod
/// names are simply not available. `Err` when a configuration exists but cannot be used (the
/// message names the file and why). API-server trouble after that is never an error: `warn`
/// gets a one-line message (without a prefix: the caller adds its own, e.g. `kubernetes: `),
/// the directory keeps what it knows, and the watch reconnects.
pub fn start(
    config: ClusterConfig,
    warn: Box<dyn Fn(String) + Send + Sync>,
) -> Result<Option<Cluster>, ClusterError> {
    let warn: Arc<dyn Fn(String) + Send + Sync> = Arc::from(warn);
    let env = config::Env::from_process();
    let Some(source) = config::find(config.kubeconfig.as_deref(), &env, &*warn)? else {
        return Ok(None);
    };
    if config.node_name.trim().is_empty() {
        return Err(ClusterError::NoNodeName);
    }
    let directory = Arc::new(Directory::new(PodIndex::new(
        MAX_PODS,
        config.deleted_grace,
    )));
    let shared = Arc::new(Shared {
        directory: Arc::clone(&directory),
        health: Mutex::new(Default::default()),
    });
    let sweep_every =
        (config.deleted_grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<String, ClusterError>>(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread_shared = Arc::clone(&shared);
    let thread_source = source.clone();
    let node = config.node_name.clone();
    let thread = std::thread::Builder::new()
        .name("dnslens-cluster".to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(ClusterError::Thread(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let kube_config = match config::load(&thread_source).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let server = kube_config.cluster_url.to_string();
                // Needs the runtime: the client spawns its request buffer task.
                let client = match kube::Client::try_from(kube_config) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ClusterError::Client {
                            server,
                            origin: thread_source.describe(),
                            reason: error::one_line(&e),
                        }));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.clone()));
                let watch = Watch::new(client, node, server, Arc::clone(&thread_shared), warn);
                tokio::select! {
                    _ = watch.run() => {}
                    _ = watch::sweep(directory, sweep_every) => {}
                    _ = stop_rx => {}
                }
            });
        })
        .map_err(ClusterError::Thread)?;
    let server = match ready_rx.recv() {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(ClusterError::Thread(std::io::Error::other(
                "the Kubernetes watch thread ended before it started",
            )));
        }
    };
    Ok(Some(Cluster {
        shared,
        source: source.describe(),
        server,
        stop: Some(stop_tx),
        thread: Some(thread),
    }))
}

impl Cluster {
    /// The pods known so far; lookups read memory only.
    pub fn directory(&self) -> Arc<dyn PodDirectory> {
        Arc::clone(&self.shared.directory) as Arc<dyn PodDirectory>
    }

    pub fn status(&self) -> ClusterStatus {
        let counts = self.shared.directory.read().counts();
        let mut health = self.shared.health().clone();
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            // Only a bug ends it early (a panic); say so rather than show a stale "connected".
            health.connected = false;
            health.last_error =
                Some("the Kubernetes watch thread stopped unexpectedly".to_string());
        }
        ClusterStatus {
            source: self.source.clone(),
            server: self.server.clone(),
            connected: health.connected,
            listed: health.listed,
            pods: counts.pods,
            deleted_pods: counts.deleted,
            containers: counts.containers,
            evicted: counts.evicted,
            owner_cache_evicted: health.owner_cache_evicted,
            relists: health.relists,
            last_error: health.last_error,
        }
    }
}

// The binary keeps it beside other shared state.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Cluster>();
};

impl Drop for Cluster {
    fn drop(&mut self) {
        // Dropping the sender wakes the runtime; the watch future is dropped at its next
        // await point, which closes its connections.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
