//! Deployment (issue 6): the Kubernetes manifests in deploy/, the Grafana dashboard and the
//! Dockerfile, checked without a cluster, an image build or a network.
//!
//! - Each manifest is read into the Kubernetes API's own type (k8s-openapi, API level 1.30) and
//!   written back. A misspelt or misplaced field is dropped by that round trip and a value of the
//!   wrong type or a missing required field fails it, so the two must be equal: the check a
//!   schema validator makes. The objects must also agree with each other (ports, names, labels,
//!   the config file the agent is given).
//! - The ConfigMap's detector file loads with the detectors' own parser, and the agent file with
//!   the agent's (`dnslens::settings::config`).
//! - The dashboard and the alerting rules ask only for metrics the agent exports, with their
//!   labels (`dnslens::sink::metrics::names`), show every one of them, and `promtool`
//!   parses them (skipped without promtool, except in CI). docs/metrics.md describes exactly
//!   the metrics exported, with their types and labels.
//! - The Dockerfile builds with the README's command, from a Rust image of the workspace's
//!   rust-version; the README's test command is the one .ci/run runs.
//!
//! - The DaemonSet's seccomp profile is the file shipped in deploy/seccomp/, and parses.
//!
//! `root_daemonset_capabilities_are_enough` needs root (it skips without, and fails in CI without
//! it, since CI runs as root): it runs dnslens with exactly the capabilities the DaemonSet adds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// The agent's own config parser and metrics table: the manifests are checked against the code.
use dnslens::settings::config as agent_config;
use dnslens::sink::metrics::names::{Type as Kind, METRICS};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let full = repo().join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// A YAML file of one document, as JSON.
fn yaml(path: &str) -> Value {
    let text = read(path);
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{path}: not YAML: {e}"));
        docs.push(value);
    }
    assert_eq!(docs.len(), 1, "{path}: one object per file");
    serde_json::to_value(&docs[0]).unwrap_or_else(|e| panic!("{path}: not plain data: {e}"))
}

/// Reads `value` as `T` and checks that writing it back gives `value` again.
fn typed<T: DeserializeOwned + Serialize>(path: &str, value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{path}: not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&object).expect("serialize");
    let mut lost = Vec::new();
    diff("", value, &back, &mut lost);
    assert!(
        lost.is_empty(),
        "{path}: fields the Kubernetes API does not know there, or of another type:\n  {}",
        lost.join("\n  ")
    );
    object
}

/// Where `want` and `got` differ, as JSON paths.
fn diff(at: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (key, wv) in w {
                let path = format!("{at}.{key}");
                match g.get(key) {
                    Some(gv) => diff(&path, wv, gv, out),
                    None => out.push(format!("{path} (unknown field)")),
                }
            }
            for key in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{at}.{key} (added)"));
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(&format!("{at}[{i}]"), wv, gv, out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!("{at}: {want} read back as {got}")),
    }
}

/// The manifests, as the kustomization lists them.
fn resources() -> Vec<String> {
    let kustomization = yaml("deploy/kustomization.yaml");
    kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml: resources")
        .iter()
        .map(|r| r.as_str().expect("resource is a file name").to_string())
        .collect()
}

struct Manifests {
    namespace: Namespace,
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    binding: ClusterRoleBinding,
    config: ConfigMap,
    daemon_set: DaemonSet,
    service: Service,
    network_policy: NetworkPolicy,
}

/// Every manifest the kustomization lists, each read into its type and round-tripped.
fn manifests() -> Manifests {
    let mut by_kind: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for file in resources() {
        let path = format!("deploy/{file}");
        let value = yaml(&path);
        let kind = value["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no kind"))
            .to_string();
        let before = by_kind.insert(kind.clone(), (path.clone(), value));
        assert!(before.is_none(), "{path}: a second {kind}");
    }
    let mut take = |kind: &str| {
        by_kind
            .remove(kind)
            .unwrap_or_else(|| panic!("deploy/kustomization.yaml lists no {kind}"))
    };
    let (p, v) = take("Namespace");
    let namespace = typed(&p, &v);
    let (p, v) = take("ServiceAccount");
    let service_account = typed(&p, &v);
    let (p, v) = take("ClusterRole");
    let cluster_role = typed(&p, &v);
    let (p, v) = take("ClusterRoleBinding");
    let binding = typed(&p, &v);
    let (p, v) = take("ConfigMap");
    let config = typed(&p, &v);
    let (p, v) = take("DaemonSet");
    let daemon_set = typed(&p, &v);
    let (p, v) = take("Service");
    let service = typed(&p, &v);
    let (p, v) = take("NetworkPolicy");
    let network_policy = typed(&p, &v);
    assert!(
        by_kind.is_empty(),
        "objects no test reads: {:?}",
        by_kind.keys().collect::<Vec<_>>()
    );
    Manifests {
        namespace,
        service_account,
        cluster_role,
        binding,
        config,
        daemon_set,
        service,
        network_policy,
    }
}

fn agent(ds: &DaemonSet) -> &Container {
    let spec = ds.spec.as_ref().expect("DaemonSet spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.containers.len(), 1, "one container: the agent");
    &pod.containers[0]
}

/// The value after `flag` in `args` (`--flag VALUE` or `--flag=VALUE`).
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag)?.strip_prefix('=')
        }
    })
}

#[test]
fn manifests_are_kubernetes_objects() {
    let m = manifests();
    let ns = m
        .namespace
        .metadata
        .name
        .as_deref()
        .expect("namespace name");
    for (what, namespace) in [
        ("ServiceAccount", &m.service_account.metadata.namespace),
        ("ConfigMap", &m.config.metadata.namespace),
        ("DaemonSet", &m.daemon_set.metadata.namespace),
        ("Service", &m.service.metadata.namespace),
        ("NetworkPolicy", &m.network_policy.metadata.namespace),
    ] {
        assert_eq!(namespace.as_deref(), Some(ns), "{what} in namespace {ns}");
    }
    let labels = m.namespace.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
        "the agent's pods need the privileged Pod Security level"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let listed: BTreeSet<String> = resources().into_iter().collect();
    let present: BTreeSet<String> = fs::read_dir(repo().join("deploy"))
        .expect("read deploy/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "deploy/kustomization.yaml must list every manifest in deploy/"
    );

    let kustomization = yaml("deploy/kustomization.yaml");
    let image = agent(&manifests().daemon_set)
        .image
        .clone()
        .expect("agent image");
    let name = image.split(':').next().unwrap_or(&image);
    let images = kustomization["images"].as_array().expect("images");
    assert!(
        images.iter().any(|i| i["name"] == name),
        "kustomization.yaml images[] must name the DaemonSet's image {name}"
    );
}

#[test]
fn daemonset_service_rbac_and_config_agree() {
    let m = manifests();
    let ds = &m.daemon_set;
    let spec = ds.spec.as_ref().unwrap();
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone();
    let template_labels = template_labels.unwrap_or_default();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    assert!(!selector.is_empty(), "DaemonSet selector");
    for (k, v) in &selector {
        assert_eq!(template_labels.get(k), Some(v), "pod template label {k}");
    }
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.host_pid,
        Some(true),
        "hostPID: /proc must show the node"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        m.service_account.metadata.name.as_deref()
    );

    // RBAC: the binding gives the role to the agent's service account.
    assert_eq!(m.binding.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(&m.binding.role_ref.name),
        m.cluster_role.metadata.name.as_ref()
    );
    let subjects = m.binding.subjects.clone().unwrap_or_default();
    assert!(
        subjects.iter().any(|s| s.kind == "ServiceAccount"
            && Some(&s.name) == m.service_account.metadata.name.as_ref()
            && s.namespace == m.service_account.metadata.namespace),
        "ClusterRoleBinding subjects: the agent's ServiceAccount"
    );
    let rules = m.cluster_role.rules.clone().unwrap_or_default();
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == group))
                && r.resources
                    .as_ref()
                    .is_some_and(|x| x.iter().any(|x| x == resource))
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    // What crates/cluster asks the API server for.
    for (group, resource, verb) in [
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("apps", "replicasets", "get"),
        ("batch", "jobs", "get"),
    ] {
        assert!(
            allows(group, resource, verb),
            "ClusterRole: {verb} {group}/{resource}"
        );
    }
    for rule in &rules {
        for verb in &rule.verbs {
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str()),
                "ClusterRole: the agent only reads, not {verb}"
            );
        }
    }

    let c = agent(ds);
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("agent"));

    // One metrics port, everywhere it is named.
    let address = flag(&args, "--metrics-address").expect("--metrics-address in args");
    let (host, port) = address.rsplit_once(':').expect("ADDR:PORT");
    assert_eq!(
        host, "0.0.0.0",
        "Prometheus and the kubelet reach the pod IP"
    );
    let port: i32 = port.parse().expect("port");
    let ports = c.ports.clone().unwrap_or_default();
    let metrics = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a container port named metrics");
    assert_eq!(metrics.container_port, port);
    let annotations = spec.template.metadata.as_ref().unwrap().annotations.clone();
    let annotations = annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&port.to_string())
    );
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );
    let service = m.service.spec.as_ref().expect("Service spec");
    assert_eq!(service.cluster_ip.as_deref(), Some("None"), "headless");
    let sp = service.ports.as_ref().expect("Service ports");
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name.as_deref(), Some("metrics"));
    assert_eq!(sp[0].port, port);
    assert_eq!(
        sp[0].target_port,
        Some(IntOrString::String("metrics".into()))
    );
    for (k, v) in service.selector.as_ref().expect("Service selector") {
        assert_eq!(
            template_labels.get(k),
            Some(v),
            "Service selects the agents: {k}"
        );
    }
    for (what, probe, path) in [
        ("startupProbe", &c.startup_probe, "/healthz"),
        ("livenessProbe", &c.liveness_probe, "/healthz"),
        ("readinessProbe", &c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{what}: httpGet"));
        assert_eq!(get.path.as_deref(), Some(path), "{what} path");
        assert!(
            get.port == IntOrString::String("metrics".into()) || get.port == IntOrString::Int(port),
            "{what} port: the metrics port"
        );
    }

    // NODE_NAME from the downward API: only this node's pods are watched.
    let env = c.env.clone().unwrap_or_default();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("NODE_NAME from a fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");

    // The config file is in the mounted ConfigMap, and so is the detector file it names.
    let config_path = flag(&args, "--config").expect("--config in args");
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let config_mount = mounts
        .iter()
        .find(|m| Path::new(config_path).parent() == Some(Path::new(&m.mount_path)))
        .unwrap_or_else(|| panic!("no volume mounted where {config_path} is"));
    let volume = volumes
        .iter()
        .find(|v| v.name == config_mount.name)
        .expect("config volume");
    let cm = volume
        .config_map
        .as_ref()
        .expect("config volume is a ConfigMap");
    assert_eq!(Some(&cm.name), m.config.metadata.name.as_ref());
    let data = m.config.data.clone().unwrap_or_default();
    let file = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let agent_toml = data
        .get(file)
        .unwrap_or_else(|| panic!("ConfigMap has no {file}"));
    let agent_toml: toml::Table = agent_toml.parse().expect("agent.toml is TOML");
    if let Some(detect) = agent_toml.get("detect_config") {
        let detect = Path::new(detect.as_str().expect("detect_config is a path"));
        assert_eq!(detect.parent(), Some(Path::new(&config_mount.mount_path)));
        let name = detect.file_name().unwrap().to_str().unwrap();
        assert!(data.contains_key(name), "ConfigMap has no {name}");
    }

    // Host paths are read, never written, and each is mounted.
    for volume in &volumes {
        if volume.host_path.is_some() {
            let mount = mounts
                .iter()
                .find(|m| m.name == volume.name)
                .unwrap_or_else(|| panic!("volume {} is not mounted", volume.name));
            assert_eq!(
                mount.read_only,
                Some(true),
                "{} read-only",
                mount.mount_path
            );
        }
    }

    let security = c.security_context.as_ref().expect("securityContext");
    let caps = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_ne!(
        security.privileged,
        Some(true),
        "capabilities, not privileged"
    );
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let resources = c.resources.as_ref().expect("resources");
    for (what, list) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let list = list.as_ref().unwrap_or_else(|| panic!("resources.{what}"));
        assert!(
            list.contains_key("cpu") && list.contains_key("memory"),
            "{what}"
        );
    }
}

/// The DaemonSet's seccomp profile is the one shipped, deploy/seccomp/dnslens.json, under the
/// name the kubelet looks up in its seccomp directory; the file is a profile in the runtimes'
/// JSON that refuses by default and allows what BPF needs (tests/seccomp.rs runs dnslens under
/// it).
#[test]
fn daemonset_references_the_shipped_seccomp_profile() {
    let ds = manifests().daemon_set;
    let security = agent(&ds)
        .security_context
        .as_ref()
        .expect("securityContext");
    let profile = security.seccomp_profile.as_ref().expect("seccompProfile");
    assert_eq!(profile.type_, "Localhost");
    let name = profile
        .localhost_profile
        .as_deref()
        .expect("localhostProfile");
    let shipped: Value = serde_json::from_str(&read(&format!("deploy/seccomp/{name}")))
        .unwrap_or_else(|e| panic!("deploy/seccomp/{name}: not JSON: {e}"));
    assert_eq!(shipped["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: Vec<&str> = shipped["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .inspect(|rule| assert_eq!(rule["action"], "SCMP_ACT_ALLOW", "{rule}"))
        .flat_map(|rule| rule["names"].as_array().expect("names"))
        .map(|n| n.as_str().expect("a syscall name"))
        .collect();
    for needed in ["bpf", "perf_event_open", "epoll_wait", "accept4", "openat2"] {
        assert!(allowed.contains(&needed), "{needed} is not allowed");
    }
    for refused in [
        "mount",
        "init_module",
        "kexec_load",
        "ptrace",
        "setns",
        "unshare",
    ] {
        assert!(!allowed.contains(&refused), "{refused} is allowed");
    }
}

/// The metrics name every tenant's pods and domains: the NetworkPolicy lets only the
/// monitoring namespace reach the agents' metrics port, and only that port.
#[test]
fn only_the_monitoring_namespace_reaches_the_metrics() {
    let m = manifests();
    let spec = m.network_policy.spec.as_ref().expect("NetworkPolicy spec");
    let pod_labels = m
        .daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    let pod_labels = pod_labels.labels.clone().unwrap_or_default();
    let selects = spec
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone());
    let selects = selects.unwrap_or_default();
    assert!(!selects.is_empty(), "the policy selects pods");
    for (k, v) in &selects {
        assert_eq!(pod_labels.get(k), Some(v), "the agent's pods carry {k}={v}");
    }
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let rules = spec.ingress.as_deref().unwrap_or_default();
    assert_eq!(rules.len(), 1, "one rule: the metrics port from monitoring");
    let from = rules[0].from.as_deref().unwrap_or_default();
    assert!(
        !from.is_empty()
            && from.iter().all(|peer| peer.ip_block.is_none()
                && peer.namespace_selector.as_ref().is_some_and(|ns| ns
                    .match_labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("kubernetes.io/metadata.name")))),
        "only a namespace chosen by name: {from:?}"
    );
    let metrics_port = agent(&m.daemon_set)
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.container_port == 9253)
        .and_then(|p| p.name.clone())
        .expect("the agent's metrics port has a name");
    let ports = rules[0].ports.as_deref().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, Some(IntOrString::String(metrics_port)));
}

#[test]
fn configmap_files_load() {
    let m = manifests();
    let data = m.config.data.clone().unwrap_or_default();
    let agent = data.get("agent.toml").expect("ConfigMap has agent.toml");
    agent_config::parse(agent, Path::new("deploy/configmap.yaml:agent.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    // The commented keys too: uncommenting one must give a file the agent takes.
    let keys = agent_config::keys();
    let uncommented: String = agent
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| keys.iter().any(|key| key == k)) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    agent_config::parse(
        &uncommented,
        Path::new("deploy/configmap.yaml:agent.toml (uncommented)"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let detect = data.get("detect.toml").expect("ConfigMap has detect.toml");
    dnslens_detect::Config::parse(detect, Path::new("deploy/configmap.yaml:detect.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// PromQL words the dashboard may use besides metric and label names.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "topk",
    "bottomk",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "clamp_min",
    "label_values",
];

/// The labels series of `name` carry, if it is an exported series name.
fn series_labels(name: &str) -> Option<Vec<&'static str>> {
    METRICS.iter().find_map(|m| {
        let (metric, kind) = (m.name, m.kind);
        let mut labels = m.labels.to_vec();
        let ok = match kind {
            Kind::Counter | Kind::Gauge => name == metric,
            Kind::Histogram => match name.strip_prefix(metric) {
                Some("_bucket") => {
                    labels.push("le");
                    true
                }
                Some("_sum" | "_count") => true,
                _ => false,
            },
        };
        ok.then_some(labels)
    })
}

/// Checks one PromQL expression of the dashboard; returns the metrics it reads.
fn check_promql(expr: &str) -> Vec<String> {
    #[derive(Debug)]
    enum Tok {
        Word(String),
        Str,
        Punct(char),
    }
    let mut toks = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    w.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            toks.push(Tok::Word(w));
        } else if c == '"' {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
            toks.push(Tok::Str);
        } else if c == '[' {
            // A range ([5m], [$__rate_interval]): no names inside.
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
        } else if c == '$' {
            // A Grafana variable outside a string ($__range in a range is handled above).
            chars.next();
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                chars.next();
            }
        } else if c.is_ascii_digit() || c == '.' {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
            {
                chars.next();
            }
        } else {
            if !c.is_whitespace() {
                toks.push(Tok::Punct(c));
            }
            chars.next();
        }
    }

    let mut metrics: Vec<String> = Vec::new();
    let mut grouping: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Word(w) if ["by", "without", "on", "ignoring"].contains(&w.as_str()) => {
                assert!(
                    matches!(toks.get(i + 1), Some(Tok::Punct('('))),
                    "{expr}: {w} needs a label list"
                );
                i += 2;
                while let Some(Tok::Word(label)) = toks.get(i) {
                    grouping.push(label.clone());
                    i += 1;
                    if matches!(toks.get(i), Some(Tok::Punct(','))) {
                        i += 1;
                    }
                }
                assert!(
                    matches!(toks.get(i), Some(Tok::Punct(')'))),
                    "{expr}: unclosed {w} (...)"
                );
            }
            Tok::Word(w) if w.starts_with("dnslens_") || series_labels(w).is_some() => {
                let labels = series_labels(w)
                    .unwrap_or_else(|| panic!("{expr}: {w} is not a metric the agent exports"));
                if matches!(toks.get(i + 1), Some(Tok::Punct('{'))) {
                    i += 2;
                    loop {
                        match toks.get(i) {
                            Some(Tok::Punct('}')) => break,
                            Some(Tok::Punct(',')) => i += 1,
                            Some(Tok::Word(label)) => {
                                assert!(
                                    labels.contains(&label.as_str())
                                        || TARGET_LABELS.contains(&label.as_str()),
                                    "{expr}: {w} has no label {label} ({labels:?})"
                                );
                                i += 1;
                                while matches!(toks.get(i), Some(Tok::Punct('=' | '!' | '~'))) {
                                    i += 1;
                                }
                                assert!(
                                    matches!(toks.get(i), Some(Tok::Str)),
                                    "{expr}: {label} needs a quoted value"
                                );
                                i += 1;
                            }
                            other => panic!("{expr}: unexpected {other:?} in {w}{{...}}"),
                        }
                    }
                }
                metrics.push(w.clone());
            }
            Tok::Word(w) => assert!(
                PROMQL_WORDS.contains(&w.as_str()),
                "{expr}: {w} is neither an exported metric nor a PromQL function"
            ),
            _ => {}
        }
        i += 1;
    }
    assert!(!metrics.is_empty(), "{expr}: reads no dnslens metric");
    let known: BTreeSet<&str> = metrics
        .iter()
        .flat_map(|m| series_labels(m).unwrap())
        .chain(TARGET_LABELS.iter().copied())
        .collect();
    for label in &grouping {
        assert!(
            known.contains(label.as_str()),
            "{expr}: groups by {label}, which none of {metrics:?} has"
        );
    }
    metrics
}

fn panels(list: &[Value]) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in list {
        all.push(p);
        if let Some(inner) = p["panels"].as_array() {
            all.extend(panels(inner));
        }
    }
    all
}

#[test]
fn dashboard_reads_only_exported_metrics() {
    let path = "deploy/grafana/dnslens-dashboard.json";
    let d: Value = serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion 39+"
    );

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{path}: no variable {name}"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    for name in ["namespace", "workload"] {
        let query = var(name)["query"].as_str().expect("query");
        assert_eq!(
            var(name)["definition"],
            query,
            "{name}: definition and query"
        );
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name}: {query} is not label_values(...)"));
        let (selector, label) = inner.rsplit_once(',').expect("label_values(METRIC, LABEL)");
        let metrics = check_promql(selector);
        assert_eq!(label.trim(), name);
        assert!(series_labels(&metrics[0]).unwrap().contains(&name));
    }

    let all = panels(d["panels"].as_array().expect("panels"));
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in &all {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?");
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            for m in check_promql(expr) {
                let base = METRICS
                    .iter()
                    .find(|row| m.starts_with(row.name))
                    .unwrap()
                    .name;
                used.insert(base);
            }
            exprs.push((
                p["id"].as_u64().unwrap(),
                t["refId"].clone(),
                expr.to_string(),
            ));
        }
    }
    let unused: Vec<_> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|m| !used.contains(m))
        .collect();
    assert!(unused.is_empty(), "no panel shows {unused:?}");

    promtool_parses(&exprs);
}

/// Every expression, with Grafana's variables filled in, through `promtool check rules`.
fn promtool_parses(exprs: &[(u64, Value, String)]) {
    let rules: Vec<Value> = exprs
        .iter()
        .map(|(id, ref_id, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$namespace", ".*")
                .replace("$workload", ".*");
            serde_json::json!({
                "record": format!("dashboard:panel_{id}_{}", ref_id.as_str().unwrap_or("A")),
                "expr": expr,
            })
        })
        .collect();
    let file = std::env::temp_dir().join(format!(
        "dnslens-dashboard-{}.rules.json",
        std::process::id()
    ));
    // JSON is YAML: promtool reads it as a rules file.
    fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .expect("write rules");
    promtool_check_rules(&file);
    let _ = fs::remove_file(&file);
}

/// `promtool check rules FILE` must pass. Without promtool the check is skipped, except in CI
/// (scripts/install-deps.sh installs it).
fn promtool_check_rules(file: &Path) {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed and CI is set: run scripts/install-deps.sh"
        );
        println!("skipped promtool check rules: needs promtool (Debian package prometheus)");
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of docs/metrics.md's tables of metrics (`| metric | type | labels | what |`) are the
/// metrics the agent exports, with their types and labels, and name every one of them.
#[test]
fn metrics_doc_describes_exactly_the_exported_metrics() {
    let path = "docs/metrics.md";
    let text = read(path);
    let mut documented = BTreeMap::new();
    for line in text.lines() {
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if cells.len() < 4 || name.contains(' ') {
            continue;
        }
        // A histogram's `(+ `le`)` is not one of its labels in names.rs.
        let labels = cells[2].split(" (+").next().unwrap_or("");
        let labels: BTreeSet<&str> = labels
            .split(", ")
            .filter_map(|l| l.strip_prefix('`')?.split('`').next())
            .collect();
        let before = documented.insert(name, (cells[1], labels));
        assert!(before.is_none(), "{path}: {name} twice");
    }
    let exported: BTreeMap<&str, (&str, BTreeSet<&str>)> = METRICS
        .iter()
        .map(|m| {
            let kind = match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            (m.name, (kind, m.labels.iter().copied().collect()))
        })
        .collect();
    let doc: BTreeSet<&str> = documented.keys().copied().collect();
    let code: BTreeSet<&str> = exported.keys().copied().collect();
    assert!(
        doc == code,
        "{path} describes {:?}, which the agent does not export, and not {:?}",
        doc.difference(&code).collect::<Vec<_>>(),
        code.difference(&doc).collect::<Vec<_>>()
    );
    for (name, want) in &exported {
        assert_eq!(&documented[name], want, "{path}: {name}: type and labels");
    }
}

#[test]
fn alerting_rules_read_only_exported_metrics() {
    let path = "deploy/prometheus/dnslens-rules.yaml";
    let rules = yaml(path);
    let mut count = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            check_promql(rule["expr"].as_str().expect("expr"));
            count += 1;
        }
    }
    assert!(count > 0, "{path}: no rules");
    promtool_check_rules(&repo().join(path));
}

/// `FROM` lines and the instructions of each stage of the Dockerfile, continuation lines joined.
fn dockerfile_stages() -> Vec<(String, Vec<(String, String)>)> {
    let text = read("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for instruction in joined {
        let (op, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((&instruction, ""));
        let (op, rest) = (op.to_ascii_uppercase(), rest.trim().to_string());
        if op == "FROM" {
            stages.push((rest, Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("Dockerfile: an instruction before FROM")
                .1
                .push((op, rest));
        }
    }
    stages
}

/// The README's build command: the first `cargo build` line of its shell blocks.
fn readme_build_command() -> String {
    let mut in_block = false;
    for line in read("README.md").lines() {
        if line.starts_with("```") {
            in_block = !in_block && (line == "```sh" || line == "```console");
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        if in_block && line.starts_with("cargo build") {
            return line.split(" #").next().unwrap().trim().to_string();
        }
    }
    panic!("README.md shows no `cargo build` command in a shell block");
}

/// The README's test command is what CI runs (.ci/run), as root.
#[test]
fn readme_tests_as_ci_does() {
    let readme = read("README.md");
    let command = readme
        .lines()
        .map(|l| l.trim().trim_start_matches("$ "))
        .find_map(|l| {
            l.strip_prefix("sudo ")
                .filter(|c| c.starts_with("cargo test"))
        })
        .expect("README.md shows a `sudo cargo test` command");
    let command = command.split(" #").next().unwrap().trim();
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == command),
        "README.md's `{command}` is not a line of .ci/run"
    );
}

fn version(text: &str) -> Vec<u32> {
    text.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn dockerfile_builds_as_the_readme_says() {
    let stages = dockerfile_stages();
    assert!(
        stages.len() >= 2,
        "Dockerfile: a build stage and a runtime stage"
    );
    let (build_from, build) = &stages[0];
    let runs: Vec<&str> = build
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, cmd)| cmd.as_str())
        .collect();
    assert_eq!(
        runs,
        [readme_build_command()],
        "the Dockerfile's build stage must run the README's build command, and nothing else"
    );

    // The builder's Rust is at least the workspace's rust-version.
    let image = build_from.split_whitespace().next().unwrap();
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("build stage FROM {image}: expected a rust image"));
    let rust = tag.split('-').next().unwrap();
    let workspace: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let msrv = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("workspace rust-version");
    assert!(
        version(rust) >= version(msrv),
        "the builder's Rust {rust} is older than the workspace's rust-version {msrv}"
    );

    let (_, runtime) = stages.last().unwrap();
    let get = |op: &str| {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, v)| v.clone())
            .next_back()
            .unwrap_or_else(|| panic!("runtime stage: no {op}"))
    };
    let entrypoint: Vec<String> = serde_json::from_str(&get("ENTRYPOINT")).expect("exec form");
    let cmd: Vec<String> = serde_json::from_str(&get("CMD")).expect("exec form");
    assert_eq!(entrypoint, ["/usr/local/bin/dnslens"]);
    assert!(
        runtime
            .iter()
            .any(|(op, v)| op == "COPY"
                && v.contains("target/release/dnslens /usr/local/bin/dnslens")),
        "the runtime stage copies the release binary to /usr/local/bin/dnslens"
    );
    // The DaemonSet runs the image's command with the metrics address added.
    let args = agent(&manifests().daemon_set)
        .args
        .clone()
        .unwrap_or_default();
    assert_eq!(
        args[..cmd.len()],
        cmd[..],
        "DaemonSet args start with the image's CMD"
    );
}

/// Runs dnslens with no capability but those the DaemonSet adds (as uid 0, which is how the
/// container runs) and checks that it captures in each mode and names the sender's executable,
/// which only ptrace access to another process's /proc allows.
#[test]
fn root_daemonset_capabilities_are_enough() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root and CI is set: CI must run the suite as root"
        );
        println!("skipped: needs root");
        return;
    }
    let ds = manifests().daemon_set;
    let caps = agent(&ds)
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .expect("capabilities.add");
    let keep: Vec<u32> = caps.iter().map(|c| capability(c)).collect();
    let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("a number");

    let socket_tracepoints = kernel_at_least(6, 3);
    let modes: &[(&str, &str)] = if socket_tracepoints {
        &[
            ("sockets", "socket tracepoints"),
            ("syscall-exit", "syscall-exit raw tracepoint"),
            ("syscall-tracepoints", "syscall tracepoints"),
        ]
    } else {
        &[
            ("syscall-exit", "syscall-exit raw tracepoint"),
            ("syscall-tracepoints", "syscall tracepoints"),
        ]
    };
    for (mode, announced) in modes {
        capture_with(&caps, &keep, last, mode, announced);
    }
}

fn capture_with(caps: &[String], keep: &[u32], last: u32, mode: &str, announced: &str) {
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let name = format!("caps{}-{mode}.dnslens-deploy.test", std::process::id());
    let keep = keep.to_vec();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnslens"));
    command
        .args(["trace", "--json", "--count", "1", "--duration", "60s"])
        .args([
            "--capture",
            mode,
            "--port",
            &port.to_string(),
            "--domain",
            &name,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only prctl between fork and exec, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            for cap in 0..=last {
                if !keep.contains(&cap)
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // As allowPrivilegeEscalation: false does.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn dnslens");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said.contains("tracing DNS") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                said.push_str(&line);
                said.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("dnslens with {caps:?} did not start tracing ({mode}):\n{said}");
            }
        }
    }
    assert!(
        said.contains(announced),
        "dnslens with {caps:?} did not capture with {announced}:\n{said}"
    );

    // A query to a port nothing listens on: the send is what is captured.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let query = dns_query(&name);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let _ = socket.send_to(&query, ("127.0.0.1", port));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dnslens with {caps:?} ({mode}) printed no event for {name}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        said.push_str(&line);
        said.push('\n');
    }
    assert!(
        status.success(),
        "dnslens ({mode}) exited {status}:\n{said}"
    );
    let event: Value = serde_json::from_str(out.lines().next().expect("an event"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(event["qname"], name.as_str());
    assert_eq!(event["kind"], "query");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        event["process"]["exe"].as_str(),
        exe.to_str(),
        "dnslens with {caps:?} could not read this test's /proc/PID/exe ({mode})"
    );
}

/// A standard query for `name`, type A, recursion desired.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

/// A capability's number, from its name as Kubernetes spells it (`BPF`, `CAP_BPF`).
fn capability(name: &str) -> u32 {
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    let names = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}
