//! A fake Kubernetes API server on 127.0.0.1 that speaks the part of the real protocol the pod
//! watch uses, with the JSON shapes a real one sends:
//!
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>` lists (items without `kind`, list
//!   `metadata.resourceVersion`, as the API server does);
//! - `...&watch=true&resourceVersion=N&allowWatchBookmarks=true` streams chunked JSON lines
//!   `{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK","object":{...}}` after version N, and
//!   for N older than the kept history answers `{"type":"ERROR"}` with a 410 `Status` (what a
//!   real API server's watch cache does), or HTTP 410 when [`State::expired_as_http`] is set;
//! - `GET /apis/apps/v1/namespaces/NS/replicasets/NAME` and `/apis/batch/v1/.../jobs/NAME`;
//! - 403 `Status` for resources made [`State::forbid`]den, 404 for unknown objects.
//!
//! One thread per connection, `Connection: close` on every answer. [`FakeApiServer::stop`]
//! cuts every open connection (an API server that dies) and hands back its [`State`], which
//! [`FakeApiServer::start_with`] can serve again on the same port (one that comes back).
//! Shared by crates/cluster's integration tests and dnslens's end-to-end suites.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// One entry of the watch history.
#[derive(Clone, Debug)]
struct Record {
    version: u64,
    kind: &'static str,
    object: Value,
}

/// What the API server stores: pods, ReplicaSets, Jobs, and the watch history.
#[derive(Debug)]
pub struct State {
    version: u64,
    pods: BTreeMap<String, Value>,
    history: Vec<Record>,
    /// Watches from a version older than this are expired (410).
    oldest: u64,
    replicasets: BTreeMap<(String, String), Value>,
    jobs: BTreeMap<(String, String), Value>,
    forbidden: BTreeSet<String>,
    /// Answer an expired watch with HTTP 410 instead of a 200 stream carrying an ERROR event.
    pub expired_as_http: bool,
    requests: Vec<String>,
    watch_generation: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            // Real clusters are never at version 1; starting high catches parsing shortcuts.
            version: 48_213,
            pods: BTreeMap::new(),
            history: Vec::new(),
            oldest: 0,
            replicasets: BTreeMap::new(),
            jobs: BTreeMap::new(),
            forbidden: BTreeSet::new(),
            expired_as_http: false,
            requests: Vec::new(),
            watch_generation: 0,
        }
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn record(&mut self, kind: &'static str, object: Value) {
        let version = self.version;
        self.history.push(Record {
            version,
            kind,
            object,
        });
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stores a pod (a [`PodFixture`]'s JSON) and records ADDED. Returns its uid.
    pub fn add_pod(&mut self, mut pod: Value) -> String {
        let version = self.bump();
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        let uid = pod["metadata"]["uid"]
            .as_str()
            .expect("pod uid")
            .to_string();
        self.pods.insert(uid.clone(), pod.clone());
        self.record("ADDED", pod);
        uid
    }

    /// Changes a stored pod and records MODIFIED.
    pub fn update_pod(&mut self, uid: &str, change: impl FnOnce(&mut Value)) {
        let version = self.bump();
        let pod = self.pods.get_mut(uid).expect("no such pod");
        change(pod);
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        let pod = pod.clone();
        self.record("MODIFIED", pod);
    }

    /// Removes a pod and records DELETED with its last state, as the API server does once
    /// the kubelet has confirmed the deletion.
    pub fn delete_pod(&mut self, uid: &str) {
        let version = self.bump();
        let mut pod = self.pods.remove(uid).expect("no such pod");
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        pod["metadata"]["deletionTimestamp"] = json!("2024-05-01T10:20:30Z");
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        self.record("DELETED", pod);
    }

    /// Something else in the cluster changed (the version moves on) and watchers get a
    /// BOOKMARK at that version. Returns it.
    pub fn bookmark(&mut self) -> u64 {
        let version = self.bump();
        self.record(
            "BOOKMARK",
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": version.to_string()}}),
        );
        version
    }

    /// Compacts the history, as etcd does: a watch from any version seen so far is expired
    /// (410); a fresh list gives a version to watch from.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.bump();
    }

    /// The resource (`pods`, `replicasets`, `jobs`) answers 403 from now on.
    pub fn forbid(&mut self, resource: &str) {
        self.forbidden.insert(resource.to_string());
    }

    /// Undoes [`State::forbid`]: the RBAC rule was fixed.
    pub fn allow(&mut self, resource: &str) {
        self.forbidden.remove(resource);
    }

    pub fn add_replicaset(
        &mut self,
        namespace: &str,
        name: &str,
        owner: Option<(&str, &str, &str)>,
    ) {
        let version = self.bump();
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta(namespace, name, version, owner),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": template(name),
            },
            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 1},
        });
        self.replicasets
            .insert((namespace.to_string(), name.to_string()), rs);
    }

    pub fn add_job(&mut self, namespace: &str, name: &str, owner: Option<(&str, &str, &str)>) {
        let version = self.bump();
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta(namespace, name, version, owner),
            "spec": {
                "backoffLimit": 6,
                "completions": 1,
                "parallelism": 1,
                "template": template(name),
            },
            "status": {"active": 1, "startTime": "2024-05-01T10:00:00Z"},
        });
        self.jobs
            .insert((namespace.to_string(), name.to_string()), job);
    }

    /// Every request line target received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.clone()
    }
}

fn meta(namespace: &str, name: &str, version: u64, owner: Option<(&str, &str, &str)>) -> Value {
    let mut meta = json!({
        "name": name,
        "namespace": namespace,
        "uid": uid(),
        "resourceVersion": version.to_string(),
        "generation": 1,
        "creationTimestamp": "2024-05-01T09:00:00Z",
        "labels": {"app": name},
    });
    if let Some((api_version, kind, owner_name)) = owner {
        meta["ownerReferences"] = json!([{
            "apiVersion": api_version,
            "kind": kind,
            "name": owner_name,
            "uid": uid(),
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    meta
}

fn template(name: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}], "restartPolicy": "Always"},
    })
}

/// A fresh pod uid in the dashed form the API server uses.
pub fn uid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        pid & 0xffff_ffff,
        n & 0xffff,
        n >> 16 & 0xfff,
        pid >> 32 & 0xfff,
        n
    )
}

/// A 64-hex-digit container id, distinct per `seed`.
pub fn container_id(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut id = String::new();
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push_str(&format!("{x:016x}"));
    }
    id
}

#[derive(Clone, Debug)]
struct FixtureContainer {
    name: String,
    id: Option<String>,
}

/// A pod as the API server returns it, built up field by field.
#[derive(Clone, Debug)]
pub struct PodFixture {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    labels: BTreeMap<String, String>,
    owner: Option<(String, String, String)>,
    service_account: String,
    ip: String,
    containers: Vec<FixtureContainer>,
    init: Vec<FixtureContainer>,
    ephemeral: Vec<FixtureContainer>,
}

pub fn pod(namespace: &str, name: &str, node: &str) -> PodFixture {
    PodFixture {
        uid: uid(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        node: node.to_string(),
        labels: BTreeMap::new(),
        owner: None,
        service_account: "default".to_string(),
        ip: "10.244.1.17".to_string(),
        containers: Vec::new(),
        init: Vec::new(),
        ephemeral: Vec::new(),
    }
}

impl PodFixture {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
    pub fn owner(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.owner = Some((api_version.to_string(), kind.to_string(), name.to_string()));
        self
    }
    pub fn service_account(mut self, name: &str) -> Self {
        self.service_account = name.to_string();
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.to_string();
        self
    }
    /// A running container; `id` is bare hex, sent as `containerd://<id>`.
    pub fn container(mut self, name: &str, id: &str) -> Self {
        self.containers.push(FixtureContainer {
            name: name.to_string(),
            id: Some(id.to_string()),
        });
        self
    }
    /// A container still being created: no id yet.
    pub fn waiting_container(mut self, name: &str) -> Self {
        self.containers.push(FixtureContainer {
            name: name.to_string(),
            id: None,
        });
        self
    }
    pub fn init_container(mut self, name: &str, id: &str) -> Self {
        self.init.push(FixtureContainer {
            name: name.to_string(),
            id: Some(id.to_string()),
        });
        self
    }
    pub fn ephemeral_container(mut self, name: &str, id: &str) -> Self {
        self.ephemeral.push(FixtureContainer {
            name: name.to_string(),
            id: Some(id.to_string()),
        });
        self
    }

    pub fn json(&self) -> Value {
        let spec_container = |c: &FixtureContainer| {
            json!({
                "name": c.name,
                "image": format!("registry.example.com/{}:1.4.2", c.name),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            })
        };
        let status = |c: &FixtureContainer| match &c.id {
            Some(id) => json!({
                "name": c.name,
                "state": {"running": {"startedAt": "2024-05-01T09:00:05Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": format!("registry.example.com/{}:1.4.2", c.name),
                "imageID": format!("registry.example.com/{}@sha256:{}", c.name, container_id(7)),
                "containerID": format!("containerd://{id}"),
                "started": true,
            }),
            None => json!({
                "name": c.name,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
                "ready": false,
                "restartCount": 0,
                "image": format!("registry.example.com/{}:1.4.2", c.name),
                "imageID": "",
                "started": false,
            }),
        };
        let mut metadata = json!({
            "name": self.name,
            "generateName": format!("{}-", self.name.rsplit_once('-').map_or(self.name.as_str(), |(p, _)| p)),
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": "0",
            "creationTimestamp": "2024-05-01T09:00:00Z",
            "labels": self.labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T08:59:00Z"},
            "managedFields": [{
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-05-01T09:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {}}},
            }],
        });
        if let Some((api_version, kind, name)) = &self.owner {
            metadata["ownerReferences"] = json!([{
                "apiVersion": api_version,
                "kind": kind,
                "name": name,
                "uid": uid(),
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        let mut pod = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": {
                "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
                "containers": self.containers.iter().map(spec_container).collect::<Vec<_>>(),
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": self.service_account,
                "serviceAccount": self.service_account,
                "nodeName": self.node,
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "priority": 0,
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority",
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-01T09:00:01Z"},
                    {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-01T09:00:06Z"},
                ],
                "hostIP": "172.18.0.2",
                "hostIPs": [{"ip": "172.18.0.2"}],
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "startTime": "2024-05-01T09:00:00Z",
                "containerStatuses": self.containers.iter().map(status).collect::<Vec<_>>(),
                "qosClass": "Burstable",
            },
        });
        if !self.init.is_empty() {
            pod["spec"]["initContainers"] = self.init.iter().map(spec_container).collect();
            pod["status"]["initContainerStatuses"] = self.init.iter().map(status).collect();
        }
        if !self.ephemeral.is_empty() {
            pod["spec"]["ephemeralContainers"] = self
                .ephemeral
                .iter()
                .map(|c| json!({"name": c.name, "image": "busybox:1.36", "targetContainerName": "app"}))
                .collect();
            pod["status"]["ephemeralContainerStatuses"] =
                self.ephemeral.iter().map(status).collect();
        }
        pod
    }
}

/// Writes a kubeconfig for `server` into `dir` and returns its path.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: dnslens
    namespace: kube-system
current-context: fake
users:
- name: dnslens
  user:
    token: fake-token-for-tests
"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("dnslens-cluster-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Inner {
    addr: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server. Stops (cutting all connections) on [`FakeApiServer::stop`] or drop.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// On a free port, with an empty cluster.
    pub fn start() -> Self {
        Self::start_with(0, State::default())
    }

    /// On `port` (0: any free one) with `state`. Retries the bind for a while: the port of a
    /// server that was just stopped may still be held by its last connections.
    pub fn start_with(port: u16, state: State) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("fake apiserver: bind 127.0.0.1:{port}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("fake apiserver: bind 127.0.0.1:{port}: {e}"),
            }
        };
        let inner = Arc::new(Inner {
            addr: listener.local_addr().expect("local addr"),
            state: Mutex::new(state),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
        });
        let acceptor_inner = Arc::clone(&inner);
        let acceptor = std::thread::Builder::new()
            .name("fake-apiserver".to_string())
            .spawn(move || accept(acceptor_inner, listener))
            .expect("spawn acceptor");
        FakeApiServer {
            inner,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Changes the cluster; open watches see the change at once.
    pub fn with_state<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let result = change(&mut self.inner.state());
        self.inner.changed.notify_all();
        result
    }

    pub fn add_pod(&self, pod: &PodFixture) -> String {
        self.with_state(|s| s.add_pod(pod.json()))
    }

    pub fn update_pod(&self, uid: &str, change: impl FnOnce(&mut Value)) {
        self.with_state(|s| s.update_pod(uid, change))
    }

    pub fn delete_pod(&self, uid: &str) {
        self.with_state(|s| s.delete_pod(uid))
    }

    /// Ends every open watch cleanly, as the API server does when `timeoutSeconds` is up.
    pub fn close_watches(&self) {
        self.with_state(|s| s.watch_generation += 1)
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.state().requests()
    }

    /// Stops accepting, cuts every open connection mid-stream, waits for its threads, and
    /// returns what it stored.
    pub fn stop(mut self) -> State {
        self.shutdown();
        std::mem::take(&mut *self.inner.state())
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.inner.addr, Duration::from_secs(1));
        let _ = acceptor.join();
        for c in self.inner.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let handlers: Vec<_> = self.inner.handlers.lock().unwrap().drain(..).collect();
        for h in handlers {
            let _ = h.join();
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(clone) = stream.try_clone() {
            inner.connections.lock().unwrap().push(clone);
        }
        let handler_inner = Arc::clone(&inner);
        let handler = std::thread::spawn(move || {
            // The clone kept for stop() would hold the socket open: close it explicitly.
            let closer = stream.try_clone();
            serve(handler_inner, stream);
            if let Ok(closer) = closer {
                let _ = closer.shutdown(Shutdown::Both);
            }
        });
        let mut handlers = inner.handlers.lock().unwrap();
        handlers.retain(|h| !h.is_finished());
        handlers.push(handler);
    }
}

fn serve(inner: Arc<Inner>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some((method, target)) = read_request(&stream) else {
        return;
    };
    inner.state().requests.push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let query = parse_query(query);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method != "GET" {
        let body = status(
            405,
            "MethodNotAllowed",
            "the fake API server only answers GET",
        );
        return respond(&mut stream, 405, &body);
    }
    match segments.as_slice() {
        ["api", "v1", "pods"] => {
            if inner.state().forbidden.contains("pods") {
                let verb = if query.get("watch").map(String::as_str) == Some("true") {
                    "watch"
                } else {
                    "list"
                };
                let body = forbidden(verb, "pods", "", None);
                return respond(&mut stream, 403, &body);
            }
            if query.get("watch").map(String::as_str) == Some("true") {
                watch_pods(&inner, &mut stream, &query);
            } else {
                list_pods(&inner, &mut stream, &query);
            }
        }
        ["apis", "apps", "v1", "namespaces", ns, "replicasets", name] => {
            get_object(&inner, &mut stream, "replicasets", "apps", ns, name)
        }
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => {
            get_object(&inner, &mut stream, "jobs", "batch", ns, name)
        }
        _ => respond(
            &mut stream,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    }
}

fn read_request(stream: &TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    // Headers until the empty line; GET requests carry no body.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
    }
    Some((method, target))
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The node a `fieldSelector` of `spec.nodeName=<node>` asks for (`None`: all pods).
fn node_selector(query: &HashMap<String, String>) -> Option<String> {
    let selector = query.get("fieldSelector")?;
    selector.split(',').find_map(|term| {
        let value = term.strip_prefix("spec.nodeName")?;
        let value = value
            .strip_prefix("==")
            .or_else(|| value.strip_prefix('='))?;
        Some(value.to_string())
    })
}

fn on_node(pod: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|n| pod["spec"]["nodeName"].as_str() == Some(n))
}

fn list_pods(inner: &Inner, stream: &mut TcpStream, query: &HashMap<String, String>) {
    let node = node_selector(query);
    let body = {
        let state = inner.state();
        let items: Vec<Value> = state
            .pods
            .values()
            .filter(|p| on_node(p, node.as_deref()))
            .map(|p| {
                // Items of a typed list carry no kind/apiVersion on the wire.
                let mut p = p.clone();
                let obj = p.as_object_mut().expect("pod object");
                obj.remove("kind");
                obj.remove("apiVersion");
                p
            })
            .collect();
        json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        })
    };
    respond(stream, 200, &body);
}

fn watch_pods(inner: &Inner, stream: &mut TcpStream, query: &HashMap<String, String>) {
    let node = node_selector(query);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let from: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    let mut pending: Vec<Value> = Vec::new();
    let (mut cursor, generation) = {
        let state = inner.state();
        match from {
            Some(v) if v < state.oldest => {
                let message = format!("too old resource version: {v} ({})", state.oldest);
                let status = status(410, "Expired", &message);
                drop(state);
                if inner.state().expired_as_http {
                    return respond(stream, 410, &status);
                }
                if write_stream_head(stream).is_ok() {
                    let _ = write_chunk(stream, &json!({"type": "ERROR", "object": status}));
                    let _ = stream.write_all(b"0\r\n\r\n");
                }
                return;
            }
            Some(v) => (v, state.watch_generation),
            None => {
                // No version: the current pods as ADDED first, like the API server.
                for p in state.pods.values().filter(|p| on_node(p, node.as_deref())) {
                    pending.push(json!({"type": "ADDED", "object": p}));
                }
                (state.version, state.watch_generation)
            }
        }
    };
    if write_stream_head(stream).is_err() {
        return;
    }
    loop {
        for event in pending.drain(..) {
            if write_chunk(stream, &event).is_err() {
                return;
            }
        }
        let mut state = inner.state();
        loop {
            if inner.stopping.load(Ordering::SeqCst) {
                // Dying: the connection is cut by stop(), no clean end.
                return;
            }
            let since = cursor;
            for record in state.history.iter().filter(|r| r.version > since) {
                cursor = record.version;
                let wanted = match record.kind {
                    "BOOKMARK" => bookmarks,
                    _ => on_node(&record.object, node.as_deref()),
                };
                if wanted {
                    pending.push(json!({"type": record.kind, "object": record.object}));
                }
            }
            if !pending.is_empty() {
                break;
            }
            // Ended only once everything recorded before the end was sent.
            if state.watch_generation != generation {
                drop(state);
                let _ = stream.write_all(b"0\r\n\r\n");
                return;
            }
            state = inner
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn get_object(
    inner: &Inner,
    stream: &mut TcpStream,
    resource: &str,
    group: &str,
    ns: &str,
    name: &str,
) {
    let found = {
        let state = inner.state();
        if state.forbidden.contains(resource) {
            drop(state);
            let body = forbidden("get", resource, group, Some(ns));
            return respond(stream, 403, &body);
        }
        let map = if resource == "replicasets" {
            &state.replicasets
        } else {
            &state.jobs
        };
        map.get(&(ns.to_string(), name.to_string())).cloned()
    };
    match found {
        Some(object) => respond(stream, 200, &object),
        None => {
            let message = format!("{resource}.{group} \"{name}\" not found");
            respond(stream, 404, &status(404, "NotFound", &message))
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn forbidden(verb: &str, resource: &str, group: &str, namespace: Option<&str>) -> Value {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    status(
        403,
        "Forbidden",
        &format!(
            "{qualified} is forbidden: User \"system:serviceaccount:dnslens:dnslens\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
        ),
    )
}

fn respond(stream: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn write_stream_head(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    stream.flush()
}

fn write_chunk(stream: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
    stream.flush()
}

/// A port nothing listens on right now (for an API server that is not there yet).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}
