//! Where the cluster configuration comes from, in this order: the kubeconfig given explicitly
//! (`--kubeconfig`), the files in `KUBECONFIG`, the in-cluster service account
//! (`KUBERNETES_SERVICE_HOST` and the mounted token), then `~/.kube/config`. Explicit settings
//! win; inside a pod the service account wins over a stray home file. Finding nothing is not an
//! error: dnslens then runs without pod names.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{one_line, ClusterError};

/// The service-account token kubelet mounts into every pod (unless
/// `automountServiceAccountToken: false`).
const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The parts of the process environment that decide the configuration, captured once so the
/// order above is tested without touching the real environment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    pub service_host: Option<OsString>,
    pub kubeconfig: Option<OsString>,
    pub home: Option<PathBuf>,
    pub token_file: PathBuf,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            service_host: std::env::var_os("KUBERNETES_SERVICE_HOST").filter(|v| !v.is_empty()),
            kubeconfig: std::env::var_os("KUBECONFIG"),
            home: std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            token_file: PathBuf::from(TOKEN_FILE),
        }
    }
}

/// A configuration that was found; [`load`] turns it into a client configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// One or more kubeconfig files, merged in order as kubectl does.
    Kubeconfig(Vec<PathBuf>),
    InCluster,
}

impl Source {
    /// For messages: which file or which mechanism.
    pub fn describe(&self) -> String {
        match self {
            Source::Kubeconfig(paths) => {
                let paths: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
                format!("kubeconfig {}", paths.join(":"))
            }
            Source::InCluster => "in-cluster service account".to_string(),
        }
    }
}

/// Picks the configuration. `note` receives a line when something looks half-configured.
pub(crate) fn find(
    explicit: Option<&Path>,
    env: &Env,
    note: &dyn Fn(String),
) -> Result<Option<Source>, ClusterError> {
    if let Some(path) = explicit {
        // Asked for by name: a missing file is the user's mistake, say so.
        if !path.exists() {
            return Err(ClusterError::Kubeconfig {
                path: path.to_path_buf(),
                reason: "no such file".to_string(),
            });
        }
        return Ok(Some(Source::Kubeconfig(vec![path.to_path_buf()])));
    }
    let kubeconfig_set = env.kubeconfig.as_ref().is_some_and(|v| !v.is_empty());
    if let Some(list) = env.kubeconfig.as_ref().filter(|_| kubeconfig_set) {
        // kubectl skips missing entries of KUBECONFIG; so do we.
        let paths: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .collect();
        if !paths.is_empty() {
            return Ok(Some(Source::Kubeconfig(paths)));
        }
    }
    if env.service_host.is_some() {
        if env.token_file.exists() {
            return Ok(Some(Source::InCluster));
        }
        note(format!(
            "KUBERNETES_SERVICE_HOST is set but {} is missing \
             (automountServiceAccountToken: false?): running without pod names",
            env.token_file.display()
        ));
    }
    if !kubeconfig_set {
        if let Some(home) = &env.home {
            let path = home.join(".kube").join("config");
            if path.exists() {
                return Ok(Some(Source::Kubeconfig(vec![path])));
            }
        }
    }
    Ok(None)
}

/// Reads the configuration found by [`find`]. Async because kubeconfig auth may run a plugin.
pub(crate) async fn load(source: &Source) -> Result<kube::Config, ClusterError> {
    match source {
        Source::InCluster => kube::Config::incluster().map_err(|e| ClusterError::InCluster {
            reason: one_line(&e),
        }),
        Source::Kubeconfig(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in paths {
                let fail = |reason: String| ClusterError::Kubeconfig {
                    path: path.clone(),
                    reason,
                };
                if path.is_dir() {
                    return Err(fail("is a directory, not a file".to_string()));
                }
                // Read it ourselves: kube's read error repeats the path in Debug form.
                std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
                let one = Kubeconfig::read_from(path).map_err(|e| fail(one_line(&e)))?;
                merged = Some(match merged {
                    None => one,
                    Some(m) => m.merge(one).map_err(|e| fail(one_line(&e)))?,
                });
            }
            let first = paths.first().cloned().unwrap_or_default();
            let kubeconfig = merged.unwrap_or_default();
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: first,
                    reason: one_line(&e),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "dnslens-cluster-config-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
        fn file(&self, name: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "apiVersion: v1\nkind: Config\n").unwrap();
            path
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn find_with(
        explicit: Option<&Path>,
        env: &Env,
    ) -> (Result<Option<Source>, ClusterError>, Vec<String>) {
        let notes = RefCell::new(Vec::new());
        let found = find(explicit, env, &|line| notes.borrow_mut().push(line));
        (found, notes.into_inner())
    }

    #[test]
    fn nothing_configured_is_no_cluster() {
        let dir = Dir::new("nothing");
        let env = Env {
            home: Some(dir.0.clone()),
            token_file: dir.0.join("token"),
            ..Env::default()
        };
        let (found, notes) = find_with(None, &env);
        assert_eq!(found.unwrap(), None);
        assert!(notes.is_empty());
    }

    #[test]
    fn order_is_explicit_then_kubeconfig_env_then_in_cluster_then_home() {
        let dir = Dir::new("order");
        let explicit = dir.file("explicit");
        let from_env = dir.file("env");
        let home = dir.file("home/.kube/config");
        let token = dir.file("token");
        let mut env = Env {
            service_host: Some("10.0.0.1".into()),
            kubeconfig: Some(from_env.clone().into_os_string()),
            home: Some(dir.0.join("home")),
            token_file: token,
        };
        let kc = |p: &PathBuf| Some(Source::Kubeconfig(vec![p.clone()]));
        assert_eq!(find_with(Some(&explicit), &env).0.unwrap(), kc(&explicit));
        assert_eq!(find_with(None, &env).0.unwrap(), kc(&from_env));
        env.kubeconfig = None;
        assert_eq!(find_with(None, &env).0.unwrap(), Some(Source::InCluster));
        env.service_host = None;
        assert_eq!(find_with(None, &env).0.unwrap(), kc(&home));
    }

    #[test]
    fn kubeconfig_list_skips_missing_files_and_hides_home() {
        let dir = Dir::new("list");
        let a = dir.file("a");
        let c = dir.file("c");
        dir.file("home/.kube/config");
        let list = std::env::join_paths([a.clone(), dir.0.join("b-missing"), c.clone()]).unwrap();
        let mut env = Env {
            kubeconfig: Some(list),
            home: Some(dir.0.join("home")),
            token_file: dir.0.join("token"),
            ..Env::default()
        };
        assert_eq!(
            find_with(None, &env).0.unwrap(),
            Some(Source::Kubeconfig(vec![a, c]))
        );
        // Set but naming only missing files: like kubectl, the home file is not used.
        env.kubeconfig = Some(dir.0.join("missing").into_os_string());
        assert_eq!(find_with(None, &env).0.unwrap(), None);
    }

    #[test]
    fn service_host_without_token_is_noted_not_fatal() {
        let dir = Dir::new("notoken");
        let env = Env {
            service_host: Some("10.0.0.1".into()),
            token_file: dir.0.join("token"),
            ..Env::default()
        };
        let (found, notes) = find_with(None, &env);
        assert_eq!(found.unwrap(), None);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("automountServiceAccountToken"),
            "{notes:?}"
        );
    }

    #[test]
    fn explicit_path_that_does_not_exist_is_an_error() {
        let dir = Dir::new("explicit-missing");
        let path = dir.0.join("nope");
        let err = find_with(Some(&path), &Env::default()).0.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("kubeconfig {}: no such file", path.display())
        );
    }
}
