//! The cluster layer against a fake API server on loopback, reached through the `kube` client
//! with a kubeconfig file, as it would reach a real one. Every wait polls with a deadline.

use dnslens_testkit::fake_apiserver;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dnslens_cluster::{Cluster, ClusterConfig};
use dnslens_lens::pods::{PodDirectory, Workload};
use fake_apiserver::{
    container_id as cid, free_port, pod, write_kubeconfig, FakeApiServer, State, TempDir,
};
use serde_json::json;

const NODE: &str = "node-a";
/// Generous: CI machines are small and the reconnect backoff may be a few seconds in.
const DEADLINE: Duration = Duration::from_secs(30);
const LONG_GRACE: Duration = Duration::from_secs(3600);

#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn sink(&self) -> Box<dyn Fn(String) + Send + Sync> {
        let lines = Arc::clone(&self.0);
        Box::new(move |line| {
            eprintln!("warning: {line}");
            lines.lock().unwrap().push(line);
        })
    }
    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn start(kubeconfig: &Path, grace: Duration) -> (Cluster, Warnings) {
    let warnings = Warnings::default();
    let config = ClusterConfig {
        node_name: NODE.to_string(),
        kubeconfig: Some(kubeconfig.to_path_buf()),
        deleted_grace: grace,
    };
    let cluster = dnslens_cluster::start(config, warnings.sink())
        .expect("start")
        .expect("a kubeconfig was given, so there is a cluster");
    (cluster, warnings)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn workload(kind: &str, name: &str) -> Option<Workload> {
    Some(Workload {
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

/// Hammers the directory from another thread, as the event path does, and records the
/// slowest lookup.
struct Lookups {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Duration)>,
}

impl Lookups {
    fn start(directory: Arc<dyn PodDirectory>, ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut n, mut slowest) = (0u64, Duration::ZERO);
            while !flag.load(Ordering::Relaxed) {
                for id in &ids {
                    let t = Instant::now();
                    let found = directory.container(id);
                    if let Some((pod, _)) = found {
                        let _ = directory.pod(&pod.uid);
                    }
                    slowest = slowest.max(t.elapsed());
                    n += 1;
                }
                std::thread::yield_now();
            }
            (n, slowest)
        });
        Lookups { stop, thread }
    }

    fn finish(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn pods_appear_change_and_go_away_while_lookups_run() {
    let server = FakeApiServer::start();
    let dir = TempDir::new("lifecycle");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")))
    });
    let web = pod("shop", "web-7d4b9f-xk2p1", NODE)
        .label("app", "web")
        .label("pod-template-hash", "7d4b9f")
        .service_account("web-sa")
        .ip("10.244.1.17")
        .owner("apps/v1", "ReplicaSet", "web-7d4b9f")
        .init_container("migrate", &cid(1))
        .container("app", &cid(2))
        .container("envoy", &cid(3))
        .waiting_container("late")
        .ephemeral_container("debugger", &cid(4));
    let web_uid = server.add_pod(&web);
    let elsewhere = pod("shop", "web-7d4b9f-zz9q8", "node-b").container("app", &cid(9));
    let elsewhere_uid = server.add_pod(&elsewhere);

    let grace = Duration::from_millis(1500);
    let (cluster, warnings) = start(&kubeconfig, grace);
    let directory = cluster.directory();
    let lookups = Lookups::start(cluster.directory(), (1..=9).map(cid).collect());

    wait_for("the web pod", || directory.pod(&web_uid).is_some());
    let info = directory.pod(&web_uid).unwrap();
    assert_eq!(info.name, "web-7d4b9f-xk2p1");
    assert_eq!(info.namespace, "shop");
    assert_eq!(info.node.as_deref(), Some(NODE));
    assert_eq!(info.pod_ip.as_deref(), Some("10.244.1.17"));
    assert_eq!(info.service_account.as_deref(), Some("web-sa"));
    assert_eq!(info.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(info.workload, workload("Deployment", "web"));
    let containers: Vec<(String, String)> = info.containers.clone().into_iter().collect();
    let mut expected: Vec<(String, String)> =
        [(1, "migrate"), (2, "app"), (3, "envoy"), (4, "debugger")]
            .into_iter()
            .map(|(n, name)| (cid(n), name.to_string()))
            .collect();
    expected.sort();
    assert_eq!(
        containers, expected,
        "init, regular and ephemeral containers; the waiting one has no id yet"
    );
    let (by_container, name) = directory.container(&cid(3)).unwrap();
    assert_eq!(
        (by_container.uid.as_str(), name.as_str()),
        (web_uid.as_str(), "envoy")
    );
    assert!(
        directory.pod(&elsewhere_uid).is_none(),
        "another node's pod"
    );
    assert!(directory.container(&cid(9)).is_none());
    let status = cluster.status();
    assert!(status.connected && status.listed);
    assert_eq!((status.pods, status.containers), (1, 4));

    // Labels change and the app container restarts with a new id.
    server.update_pod(&web_uid, |p| {
        p["metadata"]["labels"]["version"] = json!("v2");
        p["status"]["containerStatuses"][0]["containerID"] =
            json!(format!("containerd://{}", cid(5)));
        p["status"]["containerStatuses"][0]["restartCount"] = json!(1);
    });
    wait_for("the new labels and container id", || {
        directory.container(&cid(5)).is_some_and(|(p, name)| {
            name == "app" && p.labels.get("version").map(String::as_str) == Some("v2")
        })
    });
    assert_eq!(
        directory
            .container(&cid(2))
            .map(|(_, name)| name)
            .as_deref(),
        Some("app"),
        "the old id resolves during the grace period"
    );

    // A pod scheduled while we watch.
    let agent = pod("monitoring", "node-exporter-8xq2d", NODE)
        .owner("apps/v1", "DaemonSet", "node-exporter")
        .container("exporter", &cid(6));
    let agent_uid = server.add_pod(&agent);
    wait_for("the new pod", || directory.container(&cid(6)).is_some());
    assert_eq!(
        directory.pod(&agent_uid).unwrap().workload,
        workload("DaemonSet", "node-exporter")
    );

    // A bookmark moves the version on; the next watch resumes from it, not from a pod's.
    let bookmark = server.with_state(|s| s.bookmark());
    server.close_watches();
    let resumed = format!("resourceVersion={bookmark}");
    wait_for("a watch resumed from the bookmark", || {
        server
            .requests()
            .iter()
            .any(|r| r.contains("watch=true") && r.contains(&resumed))
    });

    // Deleted: still there for the grace period, then gone.
    let deleted_at = Instant::now();
    server.delete_pod(&web_uid);
    wait_for("the deletion", || cluster.status().deleted_pods == 1);
    assert!(directory.pod(&web_uid).is_some(), "kept for late events");
    assert!(directory.container(&cid(5)).is_some());
    wait_for("the grace period to end", || {
        directory.pod(&web_uid).is_none()
    });
    assert!(
        deleted_at.elapsed() >= grace,
        "gone after {:?}, before the grace period",
        deleted_at.elapsed()
    );
    for n in 1..=5 {
        assert!(
            directory.container(&cid(n)).is_none(),
            "container {n} forgotten with its pod"
        );
    }
    assert!(directory.pod(&agent_uid).is_some(), "live pods stay");

    let (n, slowest) = lookups.finish();
    assert!(n > 100, "lookups ran alongside ({n})");
    assert!(
        slowest < Duration::from_millis(500),
        "a lookup waited {slowest:?}"
    );

    let requests = server.requests();
    let list = requests
        .iter()
        .find(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"))
        .unwrap();
    assert!(
        list.contains("fieldSelector=spec.nodeName%3Dnode-a"),
        "{list}"
    );
    assert!(requests
        .iter()
        .filter(|r| r.contains("watch=true"))
        .all(|r| r.contains("allowWatchBookmarks=true")));
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());
    assert_eq!(cluster.status().evicted, 0);
}

#[test]
fn owners_resolve_to_the_workload_people_deploy() {
    let server = FakeApiServer::start();
    let dir = TempDir::new("owners");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")));
        s.add_replicaset("shop", "bare-rs", None);
        s.add_job(
            "ops",
            "backup-28512345",
            Some(("batch/v1", "CronJob", "backup")),
        );
        s.add_job("ops", "migrate-once", None);
    });
    let cases = [
        (
            pod("shop", "web-7d4b9f-aaaaa", NODE).owner("apps/v1", "ReplicaSet", "web-7d4b9f"),
            workload("Deployment", "web"),
        ),
        (
            pod("shop", "web-7d4b9f-bbbbb", NODE).owner("apps/v1", "ReplicaSet", "web-7d4b9f"),
            workload("Deployment", "web"),
        ),
        (
            pod("shop", "bare-rs-ccccc", NODE).owner("apps/v1", "ReplicaSet", "bare-rs"),
            workload("ReplicaSet", "bare-rs"),
        ),
        (
            pod("shop", "gone-rs-ddddd", NODE).owner("apps/v1", "ReplicaSet", "gone-rs"),
            workload("ReplicaSet", "gone-rs"),
        ),
        (
            pod("db", "postgres-0", NODE).owner("apps/v1", "StatefulSet", "postgres"),
            workload("StatefulSet", "postgres"),
        ),
        (
            pod("kube-system", "kube-proxy-x2x9z", NODE).owner(
                "apps/v1",
                "DaemonSet",
                "kube-proxy",
            ),
            workload("DaemonSet", "kube-proxy"),
        ),
        (
            pod("ops", "backup-28512345-q7x4k", NODE).owner("batch/v1", "Job", "backup-28512345"),
            workload("CronJob", "backup"),
        ),
        (
            pod("ops", "migrate-once-r2d2x", NODE).owner("batch/v1", "Job", "migrate-once"),
            workload("Job", "migrate-once"),
        ),
        (
            pod("kube-system", "etcd-node-a", NODE).owner("v1", "Node", NODE),
            workload("Node", NODE),
        ),
        (pod("default", "debug-shell", NODE), None),
    ];
    let uids: Vec<String> = cases.iter().map(|(p, _)| server.add_pod(p)).collect();

    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    let directory = cluster.directory();
    wait_for("every pod", || {
        uids.iter().all(|u| directory.pod(u).is_some())
    });
    for ((fixture, expected), uid) in cases.iter().zip(&uids) {
        assert_eq!(
            &directory.pod(uid).unwrap().workload,
            expected,
            "{}",
            fixture.name
        );
    }
    let gets = |path: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.as_str() == path)
            .count()
    };
    assert_eq!(
        gets("/apis/apps/v1/namespaces/shop/replicasets/web-7d4b9f"),
        1,
        "cached for the second pod"
    );
    assert_eq!(
        gets("/apis/batch/v1/namespaces/ops/jobs/backup-28512345"),
        1
    );
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());
}

#[test]
fn forbidden_owner_lookups_fall_back_to_the_direct_owner_and_warn_once() {
    let server = FakeApiServer::start();
    let dir = TempDir::new("rbac-owners");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    server.with_state(|s| {
        s.add_replicaset("shop", "web-7d4b9f", Some(("apps/v1", "Deployment", "web")));
        s.add_replicaset("shop", "api-5c8d7e", Some(("apps/v1", "Deployment", "api")));
        s.add_job(
            "ops",
            "backup-28512345",
            Some(("batch/v1", "CronJob", "backup")),
        );
        s.forbid("replicasets");
    });
    let web = server.add_pod(&pod("shop", "web-7d4b9f-aaaaa", NODE).owner(
        "apps/v1",
        "ReplicaSet",
        "web-7d4b9f",
    ));
    let api = server.add_pod(&pod("shop", "api-5c8d7e-bbbbb", NODE).owner(
        "apps/v1",
        "ReplicaSet",
        "api-5c8d7e",
    ));
    let job = server.add_pod(&pod("ops", "backup-28512345-q7x4k", NODE).owner(
        "batch/v1",
        "Job",
        "backup-28512345",
    ));

    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    let directory = cluster.directory();
    wait_for("every pod", || {
        [&web, &api, &job]
            .iter()
            .all(|u| directory.pod(u).is_some())
    });
    assert_eq!(
        directory.pod(&web).unwrap().workload,
        workload("ReplicaSet", "web-7d4b9f")
    );
    assert_eq!(
        directory.pod(&api).unwrap().workload,
        workload("ReplicaSet", "api-5c8d7e")
    );
    assert_eq!(
        directory.pod(&job).unwrap().workload,
        workload("CronJob", "backup"),
        "jobs are allowed"
    );
    assert_eq!(
        warnings.count("RBAC forbids get on replicasets.apps"),
        1,
        "{:?}",
        warnings.all()
    );
    assert_eq!(warnings.all().len(), 1, "{:?}", warnings.all());
    assert!(warnings.all()[0].contains("grant get on replicasets.apps"));
}

#[test]
fn forbidden_pod_list_is_explained_and_recovers_when_granted() {
    let server = FakeApiServer::start();
    let dir = TempDir::new("rbac-pods");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    server.with_state(|s| s.forbid("pods"));
    let uid = server.add_pod(&pod("shop", "web-1", NODE).container("app", &cid(1)));

    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    wait_for("the RBAC warning", || {
        warnings.count("RBAC forbids list on pods") > 0
    });
    assert!(!cluster.status().connected);
    assert!(!cluster.status().listed, "no pod list yet: not ready");
    let last_error = cluster.status().last_error.unwrap();
    assert!(
        last_error.contains("cannot list resource \"pods\""),
        "{last_error}"
    );

    server.with_state(|s| s.allow("pods"));
    wait_for("the pod once granted", || {
        cluster.directory().pod(&uid).is_some()
    });
    assert!(cluster.status().connected && cluster.status().listed);
    assert!(warnings.count("connected to") > 0, "{:?}", warnings.all());
}

#[test]
fn endpoint_dies_and_comes_back() {
    let server = FakeApiServer::start();
    let port = server.port();
    let dir = TempDir::new("dies");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    let a = server.add_pod(&pod("shop", "a-1", NODE).container("app", &cid(1)));
    let b = server.add_pod(&pod("shop", "b-1", NODE).container("app", &cid(2)));
    let grace = Duration::from_millis(800);
    let (cluster, warnings) = start(&kubeconfig, grace);
    let directory = cluster.directory();
    wait_for("both pods", || {
        directory.pod(&a).is_some() && directory.pod(&b).is_some()
    });

    let mut state: State = server.stop();
    wait_for("the outage warning", || warnings.count("unreachable") > 0);
    wait_for("the status to say so", || !cluster.status().connected);
    let warning = warnings
        .all()
        .into_iter()
        .find(|w| w.contains("unreachable"))
        .unwrap();
    assert!(
        warning.contains(&format!("127.0.0.1:{port}")) && warning.contains("reconnecting in"),
        "{warning}"
    );
    assert!(cluster.status().last_error.is_some());
    // The index keeps what it had, for longer than the grace period.
    std::thread::sleep(grace + Duration::from_millis(200));
    assert!(directory.pod(&a).is_some() && directory.container(&cid(2)).is_some());

    // While it was away: a deleted, c added, history compacted (the old version is gone).
    state.delete_pod(&a);
    let c = state.add_pod(pod("shop", "c-1", NODE).container("app", &cid(3)).json());
    state.compact();
    let server = FakeApiServer::start_with(port, state);

    wait_for("the new pod", || directory.container(&cid(3)).is_some());
    assert!(directory.pod(&c).is_some());
    wait_for("the connected status", || cluster.status().connected);
    assert!(warnings.count("connected to") > 0, "{:?}", warnings.all());
    assert!(
        warnings.count("pod watch restarted") > 0,
        "410 on the old version: {:?}",
        warnings.all()
    );
    assert!(cluster.status().relists >= 1);
    wait_for("the pod deleted during the outage to age out", || {
        directory.pod(&a).is_none()
    });
    assert!(directory.pod(&b).is_some());
    drop(cluster);
    drop(server);
}

fn expired_version_relists(expired_as_http: bool) {
    let server = FakeApiServer::start();
    let dir = TempDir::new("expired");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    server.with_state(|s| s.expired_as_http = expired_as_http);
    let a = server.add_pod(&pod("shop", "a-1", NODE).container("app", &cid(1)));
    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    let directory = cluster.directory();
    wait_for("the first pod", || directory.pod(&a).is_some());

    // The history is compacted and the watch ends: resuming fails with 410, so list again.
    let b = server.with_state(|s| {
        let b = s.add_pod(pod("shop", "b-1", NODE).container("app", &cid(2)).json());
        s.compact();
        b
    });
    server.close_watches();
    wait_for("the pod added before the compaction", || {
        directory.pod(&b).is_some()
    });
    assert_eq!(cluster.status().relists, 1);
    assert_eq!(
        warnings.count("pod watch restarted"),
        1,
        "{:?}",
        warnings.all()
    );
    let lists = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"))
        .count();
    assert_eq!(lists, 2);

    // And the new watch works.
    let c = server.add_pod(&pod("shop", "c-1", NODE).container("app", &cid(3)));
    wait_for("a pod after the re-list", || directory.pod(&c).is_some());
}

#[test]
fn expired_version_as_a_watch_error_event_relists() {
    expired_version_relists(false);
}

#[test]
fn expired_version_as_http_410_relists() {
    expired_version_relists(true);
}

#[test]
fn endpoint_absent_at_start_then_appears() {
    let port = free_port();
    let dir = TempDir::new("absent");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"));
    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    let directory = cluster.directory();
    wait_for("the unreachable warning", || {
        warnings.count("unreachable") > 0
    });
    let status = cluster.status();
    assert!(!status.connected);
    assert_eq!(status.pods, 0);
    assert_eq!(status.server, format!("http://127.0.0.1:{port}/"));
    assert!(
        status.source.contains(&kubeconfig.display().to_string()),
        "{}",
        status.source
    );
    assert!(
        directory.container(&cid(1)).is_none(),
        "empty, not blocking"
    );

    let mut state = State::default();
    let uid = state.add_pod(pod("shop", "web-1", NODE).container("app", &cid(1)).json());
    let server = FakeApiServer::start_with(port, state);
    wait_for("the pod", || directory.container(&cid(1)).is_some());
    assert_eq!(directory.pod(&uid).unwrap().name, "web-1");
    assert!(cluster.status().connected);
    assert!(warnings.count("connected to") > 0, "{:?}", warnings.all());
    drop(cluster);
    drop(server);
}

#[test]
fn dropping_the_cluster_stops_its_thread_and_connections() {
    let server = FakeApiServer::start();
    let dir = TempDir::new("drop");
    let kubeconfig = write_kubeconfig(dir.path(), &server.url());
    let uid = server.add_pod(&pod("shop", "web-1", NODE));
    let (cluster, _warnings) = start(&kubeconfig, LONG_GRACE);
    wait_for("the pod", || cluster.directory().pod(&uid).is_some());
    let directory = cluster.directory();
    let t = Instant::now();
    drop(cluster);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        t.elapsed()
    );
    // The directory outlives the cluster with what it knew; nothing updates it any more.
    assert!(directory.pod(&uid).is_some());
    let watches = server.requests().len();
    server.add_pod(&pod("shop", "web-2", NODE));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.requests().len(), watches, "no requests after drop");
}

#[test]
fn https_servers_get_a_tls_client() {
    // A plain-HTTP server addressed as https: the handshake fails, which shows that the client
    // has a TLS stack (rustls with ring) and that the warning says why.
    let server = FakeApiServer::start();
    let dir = TempDir::new("tls");
    let kubeconfig = write_kubeconfig(dir.path(), &format!("https://127.0.0.1:{}", server.port()));
    let (cluster, warnings) = start(&kubeconfig, LONG_GRACE);
    wait_for("the TLS failure", || warnings.count("unreachable") > 0);
    assert!(!cluster.status().connected);
    let warning = &warnings.all()[0];
    assert!(warning.contains("https://127.0.0.1:"), "{warning}");
}
