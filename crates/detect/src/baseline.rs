//! What each workload normally resolves and runs: learned in learning mode, saved to and loaded
//! from a versioned JSON file, consulted by the unexpected-domain, unknown-binary and
//! new-domain detectors. Bounded: past its limits a baseline stops growing and counts what it
//! dropped.
//!
//! ```json
//! {"version":1,"cluster_domain":"cluster.local","workloads":{
//!   "shop/Deployment/web":{"domains":["orders.shop.svc.cluster.local","stripe.com"],
//!                          "executables":["/app/web"]}}}
//! ```
//!
//! Domains are registered domains (`stripe.com` for `api.stripe.com`); cluster names are kept
//! to the service (`orders.shop.svc.cluster.local`), other cluster names whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::{is_under, registered_domain, SearchSuffixes};

/// The file format this build reads and writes.
pub const BASELINE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("baseline {path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Made by another version of dnslens.
    #[error("baseline {path} has version {found}; this dnslens reads version {BASELINE_VERSION}: learn a new one")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write baseline {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadBaseline {
    #[serde(default)]
    pub domains: BTreeSet<String>,
    #[serde(default)]
    pub executables: BTreeSet<String>,
}

impl WorkloadBaseline {
    /// Every domain is a cluster name (and there is at least one).
    pub fn cluster_only(&self, cluster_domain: &str) -> bool {
        !self.domains.is_empty() && self.domains.iter().all(|d| is_under(d, cluster_domain))
    }
}

/// Sizes a baseline may grow to while learning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineLimits {
    pub workloads: usize,
    pub domains: usize,
    pub executables: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub version: u32,
    /// The cluster domain when it was learned: what "cluster name" meant.
    pub cluster_domain: String,
    pub workloads: BTreeMap<String, WorkloadBaseline>,
    /// Entries not learned because a limit was reached.
    #[serde(skip)]
    pub dropped: u64,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline::new("cluster.local")
    }
}

impl Baseline {
    pub fn new(cluster_domain: &str) -> Self {
        Baseline {
            version: BASELINE_VERSION,
            cluster_domain: cluster_domain.to_string(),
            workloads: BTreeMap::new(),
            dropped: 0,
        }
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Baseline, BaselineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Baseline::from_json(&text, path)
    }

    /// Parses baseline JSON; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Baseline, BaselineError> {
        // The version first, so an incompatible file says so rather than failing on a field.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let parse_err = |e: serde_json::Error| BaselineError::Parse {
            path: origin.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        let v: Version = serde_json::from_str(text).map_err(parse_err)?;
        if v.version != BASELINE_VERSION {
            return Err(BaselineError::Version {
                path: origin.to_path_buf(),
                found: v.version,
            });
        }
        serde_json::from_str(text).map_err(parse_err)
    }

    /// Writes the file whole: to a new temporary file beside it (a random name, created
    /// exclusively, mode 0600: nothing planted there is followed or overwritten), flushed to
    /// disk, then renamed over it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), BaselineError> {
        let path = path.as_ref();
        let err = |source| BaselineError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        json.push(b'\n');
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".dnslens-baseline.")
            .tempfile_in(dir)
            .map_err(err)?;
        tmp.write_all(&json).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }

    pub fn workload(&self, key: &str) -> Option<&WorkloadBaseline> {
        self.workloads.get(key)
    }

    fn entry(&mut self, key: &str, limits: &BaselineLimits) -> Option<&mut WorkloadBaseline> {
        if !self.workloads.contains_key(key) {
            if self.workloads.len() >= limits.workloads {
                self.dropped += 1;
                return None;
            }
            self.workloads
                .insert(key.to_string(), WorkloadBaseline::default());
        }
        self.workloads.get_mut(key)
    }

    /// Records a domain key (see [`domain_key`]) for a workload.
    pub fn learn_domain(&mut self, workload: &str, domain: &str, limits: &BaselineLimits) {
        let Some(w) = self.entry(workload, limits) else {
            return;
        };
        if w.domains.contains(domain) {
            return;
        }
        if w.domains.len() >= limits.domains {
            self.dropped += 1;
            return;
        }
        w.domains.insert(domain.to_string());
    }

    pub fn learn_exe(&mut self, workload: &str, exe: &str, limits: &BaselineLimits) {
        let Some(w) = self.entry(workload, limits) else {
            return;
        };
        if w.executables.contains(exe) {
            return;
        }
        if w.executables.len() >= limits.executables {
            self.dropped += 1;
            return;
        }
        w.executables.insert(exe.to_string());
    }
}

/// What a baseline remembers of a (normalised) name: the registered domain outside the
/// cluster; inside it, the service (`<svc>.<ns>.svc.<cd>`) or else the whole name.
pub fn domain_key<'a>(name: &'a str, suffixes: &SearchSuffixes) -> &'a str {
    let cd = suffixes.cluster_domain();
    if !suffixes.is_cluster(name) {
        return registered_domain(name);
    }
    // Keep `<svc>.<ns>.svc.<cd>`: the cluster domain's labels plus three.
    let keep = cd.split('.').count() + 3;
    let labels = name.split('.').count();
    if labels <= keep || !is_under(name, &format!("svc.{cd}")) {
        return name;
    }
    let mut cut = 0;
    for _ in 0..labels - keep {
        cut += name[cut..].find('.').map_or(0, |i| i + 1);
    }
    &name[cut..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BaselineLimits = BaselineLimits {
        workloads: 2,
        domains: 2,
        executables: 1,
    };

    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let mut b = Baseline::new("cluster.local");
        b.learn_domain("shop/Deployment/web", "stripe.com", &LIMITS);
        b.learn_domain(
            "shop/Deployment/web",
            "orders.shop.svc.cluster.local",
            &LIMITS,
        );
        b.learn_exe("shop/Deployment/web", "/app/web", &LIMITS);
        let file = TempFile(std::env::temp_dir().join(format!(
            "dnslens-detect-baseline-{}.json",
            std::process::id()
        )));
        b.save(&file.0).unwrap();
        let text = std::fs::read_to_string(&file.0).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        let loaded = Baseline::load(&file.0).unwrap();
        assert_eq!(loaded, b);
        assert!(!loaded.workloads["shop/Deployment/web"].cluster_only("cluster.local"));
    }

    /// dnslens runs as root and the baseline's folder may be writable by others: a symlink
    /// planted where the old fixed temporary name was must not be followed, and the file is
    /// not world-readable.
    #[test]
    fn saving_follows_no_planted_symlink_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dnslens-detect-plant-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("baseline.json");
        std::os::unix::fs::symlink(&victim, dir.join("baseline.json.tmp")).unwrap();
        Baseline::new("cluster.local").save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        assert!(Baseline::load(&path).is_ok());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 3, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn learning_stops_at_the_limits_and_counts() {
        let mut b = Baseline::default();
        b.learn_domain("a", "x.com", &LIMITS);
        b.learn_domain("a", "x.com", &LIMITS);
        b.learn_domain("a", "y.com", &LIMITS);
        b.learn_domain("a", "z.com", &LIMITS);
        b.learn_exe("a", "/bin/a", &LIMITS);
        b.learn_exe("a", "/bin/b", &LIMITS);
        b.learn_domain("b", "x.com", &LIMITS);
        b.learn_domain("c", "x.com", &LIMITS);
        assert_eq!(b.workloads["a"].domains.len(), 2);
        assert_eq!(b.workloads["a"].executables.len(), 1);
        assert_eq!(b.workloads.len(), 2);
        assert_eq!(b.dropped, 3);
    }

    #[test]
    fn bad_files_say_what_and_where() {
        let p = Path::new("/var/lib/dnslens/baseline.json");
        let e = Baseline::from_json("{\"version\":2,\"workloads\":{}}", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "baseline /var/lib/dnslens/baseline.json has version 2; this dnslens reads version 1: learn a new one"
        );
        let e = Baseline::from_json(
            "{\"version\":1,\"cluster_domain\":\"c\",\n\"workloads\":{\"w\":{\"domain\":[]}}}",
            p,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("baseline /var/lib/dnslens/baseline.json:2:"),
            "{msg}"
        );
        assert!(msg.contains("unknown field `domain`"), "{msg}");
        assert!(Baseline::load("/nonexistent/baseline.json")
            .unwrap_err()
            .to_string()
            .starts_with("cannot read baseline /nonexistent/baseline.json"));
    }

    #[test]
    fn domain_keys() {
        let s = SearchSuffixes::new("cluster.local", &[]);
        for (name, key) in [
            ("api.stripe.com", "stripe.com"),
            (
                "orders.shop.svc.cluster.local",
                "orders.shop.svc.cluster.local",
            ),
            (
                "_grpc._tcp.orders.shop.svc.cluster.local",
                "orders.shop.svc.cluster.local",
            ),
            (
                "pod-0.db.shop.svc.cluster.local",
                "db.shop.svc.cluster.local",
            ),
            (
                "10-1-2-3.shop.pod.cluster.local",
                "10-1-2-3.shop.pod.cluster.local",
            ),
            ("cluster.local", "cluster.local"),
        ] {
            assert_eq!(domain_key(name, &s), key, "{name}");
        }
        let only = WorkloadBaseline {
            domains: ["a.b.svc.cluster.local".to_string()].into(),
            executables: BTreeSet::new(),
        };
        assert!(only.cluster_only("cluster.local"));
        assert!(!WorkloadBaseline::default().cluster_only("cluster.local"));
    }
}
