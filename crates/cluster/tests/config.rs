//! Which configuration `start` finds, through the real process environment (`HOME`,
//! `KUBECONFIG`, `KUBERNETES_SERVICE_HOST`). These tests change the environment, so they live
//! in their own test binary and take a lock.

use dnslens_testkit::fake_apiserver;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use dnslens_cluster::{ClusterConfig, ClusterError};
use fake_apiserver::{write_kubeconfig, FakeApiServer, TempDir};

static ENV: Mutex<()> = Mutex::new(());

/// Runs `f` with HOME at an empty directory and no KUBECONFIG or in-cluster variables, plus
/// the given overrides; restores the environment afterwards.
fn with_env<R>(home: &Path, kubeconfig: Option<&Path>, f: impl FnOnce() -> R) -> R {
    let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let keys = [
        "HOME",
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ];
    let saved: Vec<_> = keys.iter().map(|k| (*k, std::env::var_os(k))).collect();
    std::env::set_var("HOME", home);
    std::env::remove_var("KUBERNETES_SERVICE_HOST");
    std::env::remove_var("KUBERNETES_SERVICE_PORT");
    match kubeconfig {
        Some(path) => std::env::set_var("KUBECONFIG", path),
        None => std::env::remove_var("KUBECONFIG"),
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (key, value) in saved {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
    result.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn config(kubeconfig: Option<PathBuf>) -> ClusterConfig {
    ClusterConfig {
        node_name: "node-a".to_string(),
        kubeconfig,
        deleted_grace: Duration::from_secs(300),
    }
}

fn start(config: ClusterConfig) -> Result<Option<dnslens_cluster::Cluster>, ClusterError> {
    dnslens_cluster::start(config, Box::new(|line| eprintln!("warning: {line}")))
}

fn error_of(result: Result<Option<dnslens_cluster::Cluster>, ClusterError>) -> String {
    match result {
        Ok(Some(_)) => panic!("started a cluster"),
        Ok(None) => panic!("found no configuration"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn no_configuration_at_all_is_not_an_error() {
    let home = TempDir::new("no-config");
    let found = with_env(home.path(), None, || start(config(None)));
    assert!(
        matches!(found, Ok(None)),
        "{:?}",
        found.map(|c| c.is_some())
    );
    // Nor is an empty node name then: nothing is watched.
    let found = with_env(home.path(), None, || start(ClusterConfig::default()));
    assert!(matches!(found, Ok(None)));
}

#[test]
fn kubeconfig_naming_only_missing_files_is_no_configuration() {
    let home = TempDir::new("missing-list");
    let missing = home.path().join("nowhere");
    let found = with_env(home.path(), Some(&missing), || start(config(None)));
    assert!(matches!(found, Ok(None)));
}

#[test]
fn invalid_kubeconfig_is_an_error_naming_the_file() {
    let home = TempDir::new("invalid");
    let garbage = home.path().join("garbage.yaml");
    std::fs::write(&garbage, "clusters: [this is: not, {a kubeconfig").unwrap();
    let empty = home.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let no_server = home.path().join("no-server.yaml");
    std::fs::write(
        &no_server,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user: {}\n",
    )
    .unwrap();

    let cases: [(&Path, &str); 4] = [
        (&garbage, "failed to parse kubeconfig YAML"),
        (&empty, "failed to determine current context"),
        (&no_server, "cluster url is missing"),
        (home.path(), "is a directory"),
    ];
    for (path, why) in cases {
        let message = with_env(home.path(), None, || {
            error_of(start(config(Some(path.to_path_buf()))))
        });
        eprintln!("{message}");
        let expected = format!("kubeconfig {}: ", path.display());
        assert!(message.starts_with(&expected), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    // The same through KUBECONFIG and through ~/.kube/config.
    let message = with_env(home.path(), Some(&garbage), || {
        error_of(start(config(None)))
    });
    assert!(
        message.starts_with(&format!("kubeconfig {}: ", garbage.display())),
        "{message}"
    );
    let kube_dir = home.path().join(".kube");
    std::fs::create_dir_all(&kube_dir).unwrap();
    std::fs::copy(&garbage, kube_dir.join("config")).unwrap();
    let message = with_env(home.path(), None, || error_of(start(config(None))));
    assert!(
        message.starts_with(&format!(
            "kubeconfig {}: ",
            kube_dir.join("config").display()
        )),
        "{message}"
    );
}

#[test]
fn explicit_kubeconfig_that_does_not_exist_is_an_error() {
    let home = TempDir::new("explicit-missing");
    let path = home.path().join("nope");
    let message = with_env(home.path(), None, || {
        error_of(start(config(Some(path.clone()))))
    });
    assert_eq!(
        message,
        format!("kubeconfig {}: no such file", path.display())
    );
}

#[test]
fn service_host_without_token_is_no_configuration() {
    let home = TempDir::new("no-token");
    let found = with_env(home.path(), None, || {
        std::env::set_var("KUBERNETES_SERVICE_HOST", "10.96.0.1");
        std::env::set_var("KUBERNETES_SERVICE_PORT", "443");
        let warnings = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = std::sync::Arc::clone(&warnings);
        let found = dnslens_cluster::start(
            config(None),
            Box::new(move |l| sink.lock().unwrap().push(l)),
        );
        let lines = warnings.lock().unwrap().clone();
        (found.map(|c| c.is_some()), lines)
    });
    // On a machine that really runs in a pod the token exists and this case does not apply.
    if Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists() {
        eprintln!("skipped: this machine has a service-account token");
        return;
    }
    let (found, warnings) = found;
    assert!(matches!(found, Ok(false)));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("automountServiceAccountToken"),
        "{warnings:?}"
    );
}

#[test]
fn kubeconfig_from_the_environment_and_home_are_used() {
    let server = FakeApiServer::start();
    let home = TempDir::new("found");
    let path = write_kubeconfig(home.path(), &server.url());
    let status = with_env(home.path(), Some(&path), || {
        start(config(None)).unwrap().unwrap().status()
    });
    assert_eq!(status.source, format!("kubeconfig {}", path.display()));
    assert_eq!(status.server, format!("{}/", server.url()));

    let kube_dir = home.path().join(".kube");
    std::fs::create_dir_all(&kube_dir).unwrap();
    std::fs::copy(&path, kube_dir.join("config")).unwrap();
    let status = with_env(home.path(), None, || {
        start(config(None)).unwrap().unwrap().status()
    });
    assert_eq!(
        status.source,
        format!("kubeconfig {}", kube_dir.join("config").display())
    );
}

#[test]
fn a_cluster_without_a_node_name_is_an_error() {
    let server = FakeApiServer::start();
    let home = TempDir::new("no-node");
    let path = write_kubeconfig(home.path(), &server.url());
    let mut cfg = config(Some(path));
    cfg.node_name = String::new();
    let message = with_env(home.path(), None, || error_of(start(cfg)));
    assert!(
        message.contains("--node-name") && message.contains("NODE_NAME"),
        "{message}"
    );
}

#[test]
fn unusable_credentials_name_the_kubeconfig() {
    let home = TempDir::new("bad-cert");
    let path = home.path().join("kubeconfig");
    // "not a certificate" / "not a key", base64.
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user:\n    client-certificate-data: bm90IGEgY2VydGlmaWNhdGU=\n    client-key-data: bm90IGEga2V5\n",
    )
    .unwrap();
    let message = with_env(home.path(), None, || {
        error_of(start(config(Some(path.clone()))))
    });
    eprintln!("{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}
