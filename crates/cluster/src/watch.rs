//! The list + watch of this node's pods, and what keeps it alive: resource versions carried
//! from list to watch and through bookmarks, a re-list on 410 Gone, reconnects with capped
//! exponential backoff, and warnings a user can act on.
//!
//! Raw `Api::list`/`Api::watch` rather than kube-runtime's `watcher`: the watcher does not say
//! when a watch restarts successfully (so "connected" would wait for the next pod change), and
//! in kube 2.0 it retries a watch refused with HTTP 410 forever instead of listing again.

use std::{
    collections::HashSet,
    pin::pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{ListParams, WatchEvent, WatchParams},
    Api,
};

use crate::{
    error::one_line,
    index::Directory,
    owners::{self, Owners},
    pod::pod_info,
};

/// Shared between the watch thread and [`crate::Cluster`].
pub(crate) struct Shared {
    pub directory: Arc<Directory>,
    pub health: Mutex<Health>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    pub connected: bool,
    /// A pod list has been applied: the directory names the node's pods.
    pub listed: bool,
    pub last_error: Option<String>,
    pub relists: u64,
    pub owner_cache_evicted: u64,
}

impl Shared {
    pub fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Capped exponential backoff with jitter, so a fleet of agents does not reconnect in step
/// when an API server comes back.
pub(crate) struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const CAP: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64 | 1);
        Backoff {
            next: Self::FIRST,
            seed,
        }
    }

    /// The delay before the next attempt: the current step, minus up to 20% jitter.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        // xorshift: no dependency for a few bits of noise.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = (self.seed % 1000) as f64 / 1000.0 * 0.2;
        step.mul_f64(1.0 - jitter)
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A watch without an error for this long is up, even before its first event.
const WATCH_CONFIRMED_AFTER: Duration = Duration::from_secs(1);

/// Says a repeated reason again only after this long, so a long outage does not flood the log.
const REPEAT_WARNING: Duration = Duration::from_secs(300);

pub(crate) struct Watch {
    api: Api<Pod>,
    node: String,
    server: String,
    shared: Arc<Shared>,
    owners: Owners,
    warn: Arc<dyn Fn(String) + Send + Sync>,
    backoff: Backoff,
    /// Failed attempts since the last success; `Some` while in trouble.
    failures: Option<u32>,
    /// Watches in a row that ended at once without an event.
    quick_closes: u32,
    /// Re-lists in a row whose watch expired before any event.
    quick_relists: u32,
    last_warning: Option<(String, Instant)>,
}

enum Phase {
    List,
    /// Opening the watch request.
    Watch,
    /// Reading a watch that was open.
    Stream,
}

impl Watch {
    pub fn new(
        client: kube::Client,
        node: String,
        server: String,
        shared: Arc<Shared>,
        warn: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Self {
        Watch {
            api: Api::all(client.clone()),
            node,
            server,
            shared,
            owners: Owners::new(client),
            warn,
            backoff: Backoff::new(),
            failures: None,
            quick_closes: 0,
            quick_relists: 0,
            last_warning: None,
        }
    }

    /// Runs until the future is dropped.
    pub async fn run(mut self) {
        let selector = format!("spec.nodeName={}", self.node);
        // resourceVersion=0: served from the API server's watch cache, not from etcd; one
        // agent per node makes this matter.
        let list_params = ListParams::default().fields(&selector).match_any();
        let watch_params = WatchParams::default().fields(&selector);
        loop {
            let list = match self.api.list(&list_params).await {
                Ok(list) => list,
                Err(e) => {
                    self.failed(Phase::List, &e).await;
                    continue;
                }
            };
            let Some(mut version) = list.metadata.resource_version.filter(|v| !v.is_empty()) else {
                self.failed_because("the pod list carried no resourceVersion".to_string())
                    .await;
                continue;
            };
            let mut listed = HashSet::new();
            for pod in &list.items {
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.apply(pod, false).await;
                    listed.insert(uid);
                }
            }
            self.shared
                .directory
                .write()
                .deleted_unless_listed(&listed, Instant::now());
            self.shared.health().listed = true;
            self.backoff.reset();
            self.connected();

            loop {
                let started = Instant::now();
                let stream = match self.api.watch(&watch_params, &version).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        self.failed(Phase::Watch, &e).await;
                        continue;
                    }
                };
                let mut stream = pin!(stream);
                // An HTTP error (403, 410, 500) arrives as the stream's first item, so the watch
                // counts as up once an event came or a moment passed without an error.
                let mut confirmed = false;
                let mut events = 0u64;
                let mut relist = false;
                loop {
                    let item = if confirmed {
                        stream.next().await
                    } else {
                        match tokio::time::timeout(WATCH_CONFIRMED_AFTER, stream.next()).await {
                            Ok(item) => item,
                            Err(_) => {
                                confirmed = true;
                                self.connected();
                                continue;
                            }
                        }
                    };
                    let Some(item) = item else { break };
                    match item {
                        Ok(WatchEvent::Error(e)) | Err(kube::Error::Api(e)) if e.code == 410 => {
                            self.restarted(&e.message);
                            // Once is expected (a version from before an outage); a fresh
                            // list's version expiring at once, again, is a server problem.
                            self.quick_relists = if events == 0 {
                                self.quick_relists + 1
                            } else {
                                1
                            };
                            if self.quick_relists > 1 {
                                tokio::time::sleep(self.backoff.next_delay()).await;
                            }
                            relist = true;
                            break;
                        }
                        Ok(WatchEvent::Error(e)) => {
                            self.failed(Phase::Watch, &kube::Error::Api(e)).await;
                            break;
                        }
                        Err(e) => {
                            self.failed(Phase::Stream, &e).await;
                            break;
                        }
                        Ok(event) => {
                            if !confirmed {
                                confirmed = true;
                                self.connected();
                            }
                            events += 1;
                            self.quick_closes = 0;
                            self.quick_relists = 0;
                            self.backoff.reset();
                            match event {
                                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                                    remember_version(&mut version, &pod);
                                    self.apply(&pod, false).await;
                                }
                                WatchEvent::Deleted(pod) => {
                                    remember_version(&mut version, &pod);
                                    self.apply(&pod, true).await;
                                }
                                WatchEvent::Bookmark(bookmark) => {
                                    if !bookmark.metadata.resource_version.is_empty() {
                                        version = bookmark.metadata.resource_version;
                                    }
                                }
                                WatchEvent::Error(_) => unreachable!("matched above"),
                            }
                        }
                    }
                }
                if relist {
                    break;
                }
                // The API server ends every watch after its timeout, and all of them when it
                // shuts down; one that ends empty at once, again and again, must not spin.
                if events == 0 && started.elapsed() < Duration::from_secs(1) {
                    self.quick_closes += 1;
                    if self.quick_closes >= 3 {
                        self.failed_because(
                            "the API server keeps closing the pod watch at once".to_string(),
                        )
                        .await;
                    } else {
                        tokio::time::sleep(self.backoff.next_delay()).await;
                    }
                } else {
                    self.quick_closes = 0;
                }
            }
        }
    }

    async fn apply(&mut self, pod: &Pod, deleted: bool) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let previous = self.shared.directory.read().workload(uid);
        let workload = if deleted {
            previous.or_else(|| owners::direct(pod))
        } else {
            self.owners.workload(pod, previous, &*self.warn).await
        };
        self.shared.health().owner_cache_evicted = self.owners.evicted();
        if let Some(info) = pod_info(pod, workload) {
            let now = Instant::now();
            let mut index = self.shared.directory.write();
            if deleted {
                index.delete(info, now);
            } else {
                index.apply(info, now);
            }
        }
    }

    fn connected(&mut self) {
        self.shared.health().connected = true;
        if let Some(failures) = self.failures.take() {
            let counts = self.shared.directory.read().counts();
            let pods = counts.pods - counts.deleted;
            (self.warn)(format!(
                "connected to {} again after {failures} failed attempt{}; {pods} pods on node {}",
                self.server,
                if failures == 1 { "" } else { "s" },
                self.node
            ));
            self.last_warning = None;
        }
    }

    fn restarted(&mut self, message: &str) {
        self.shared.health().relists += 1;
        let reason = format!(
            "pod watch restarted: resource version expired (410 Gone: {message}); listing the pods of node {} again",
            self.node
        );
        self.say(reason.clone(), reason);
    }

    async fn failed(&mut self, phase: Phase, e: &kube::Error) {
        let verb = match phase {
            Phase::List => "list",
            Phase::Watch | Phase::Stream => "watch",
        };
        let reason = match e {
            kube::Error::Api(r) if r.code == 403 => format!(
                "RBAC forbids {verb} on pods ({}); grant get, list and watch on pods to dnslens's ClusterRole",
                r.message
            ),
            kube::Error::Api(r) if r.code == 401 => format!(
                "the API server {} rejected the credentials (401 Unauthorized: {}); check the service-account token or the kubeconfig user",
                self.server, r.message
            ),
            kube::Error::Api(r) => format!(
                "the API server {} answered the pod {verb} with {} {}: {}",
                self.server, r.code, r.reason, r.message
            ),
            other => match phase {
                Phase::Stream => format!("the pod watch from {} broke: {}", self.server, one_line(other)),
                _ => format!("API server {} unreachable: {}", self.server, one_line(other)),
            },
        };
        self.failed_because(reason).await;
    }

    async fn failed_because(&mut self, reason: String) {
        {
            let mut health = self.shared.health();
            health.connected = false;
            health.last_error = Some(reason.clone());
        }
        *self.failures.get_or_insert(0) += 1;
        let delay = self.backoff.next_delay();
        let line = format!("{reason}; reconnecting in {:.1}s", delay.as_secs_f64());
        self.say(reason, line);
        tokio::time::sleep(delay).await;
    }

    /// Warns unless the same reason was given recently.
    fn say(&mut self, reason: String, line: String) {
        let now = Instant::now();
        let repeated = self
            .last_warning
            .as_ref()
            .is_some_and(|(last, at)| *last == reason && now.duration_since(*at) < REPEAT_WARNING);
        if !repeated {
            (self.warn)(line);
            self.last_warning = Some((reason, now));
        }
    }
}

fn remember_version(version: &mut String, pod: &Pod) {
    if let Some(v) = pod
        .metadata
        .resource_version
        .as_ref()
        .filter(|v| !v.is_empty())
    {
        version.clone_from(v);
    }
}

/// Forgets deleted pods after their grace period; runs beside the watch.
pub(crate) async fn sweep(directory: Arc<Directory>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        directory.write().sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new();
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next_delay());
        }
        let nominal = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for (got, ms) in steps.iter().zip(nominal) {
            let ms = Duration::from_millis(ms);
            assert!(*got <= ms && *got >= ms.mul_f64(0.8), "{got:?} vs {ms:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Backoff::FIRST);
    }
}
