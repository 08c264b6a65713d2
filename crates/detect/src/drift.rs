//! Drift from what a workload normally does.
//!
//! unexpected_domain: a successful lookup of a domain outside the workload's baseline and
//! allowlist. Only workloads with a baseline or a domain allowlist are judged; cluster names
//! are left alone unless `cluster_names` is set. A workload whose baseline holds only cluster
//! names and now resolves an outside domain is called out as such.
//!
//! unknown_binary: a query from a process whose executable was deleted (and not replaced, as
//! a package upgrade does; medium when the process exited before that could be checked), is a
//! memfd, or lives in a temporary directory (high); or, for a
//! workload with a baseline or an executable allowlist, an executable outside both (medium).
//! The verdict is kept per process and executable, so /proc is asked once.

use dnslens_lens::DnsEvent;
use dnslens_wire::Rcode;

use crate::alert::{Detector, Evidence, Severity, Subject};
use crate::baseline::domain_key;
use crate::keys::{exe_deleted, exe_path, namespace, subject, ProcKey};
use crate::names::is_reverse;
use crate::stage::{Detectors, ExeVerdict, Settings};

impl Detectors {
    pub(crate) fn unexpected_domain(
        &mut self,
        e: &DnsEvent,
        name: &str,
        set: &Settings,
        wkey: &str,
    ) {
        if e.rcode != Some(Rcode::NOERROR) || name.is_empty() || is_reverse(name) {
            return;
        }
        let cluster = self.suffixes.is_cluster(name);
        let key = domain_key(name, &self.suffixes);
        if self.learning {
            self.baseline.learn_domain(wkey, key, &self.baseline_limits);
            return;
        }
        let u = &set.s.unexpected_domain;
        if !u.enabled || (cluster && !u.cluster_names) {
            return;
        }
        let ns = namespace(e.who.pod.as_ref());
        let known = self.baseline.workload(wkey);
        if known.is_none() && !self.allow.has_domains(ns, wkey) {
            return;
        }
        if known.is_some_and(|b| b.domains.contains(key))
            || self.allow.allows_domain(ns, wkey, name)
        {
            return;
        }
        let cluster_only =
            !cluster && known.is_some_and(|b| b.cluster_only(self.suffixes.cluster_domain()));
        let who = Subject::of_event(e);
        let summary = if cluster_only {
            format!(
                "{} resolved {name}, outside the cluster, though its workload's baseline holds only cluster names",
                subject(&who)
            )
        } else {
            format!(
                "{} resolved {name}, which is not in its workload's baseline or allowlist",
                subject(&who)
            )
        };
        let evidence = Evidence {
            domain: Some(key.to_string()),
            examples: vec![name.to_string()],
            server: Some(e.src.to_string()),
            cluster_only: Some(cluster_only),
            ..Evidence::default()
        };
        self.raise(
            Detector::UnexpectedDomain,
            format!("{wkey}\0{key}"),
            Severity::Medium,
            u.severity,
            summary,
            0,
            evidence,
            who,
        );
    }

    pub(crate) fn unknown_binary(&mut self, e: &DnsEvent, pk: ProcKey, set: &Settings, wkey: &str) {
        let Some(exe) = e.who.process.exe.as_deref() else {
            return;
        };
        let path = exe_path(exe);
        if self.learning && !path.starts_with("/memfd:") {
            self.baseline.learn_exe(wkey, path, &self.baseline_limits);
        }
        let u = &set.s.unknown_binary;
        if !u.enabled {
            return;
        }
        let cached = self
            .procs
            .get(&pk)
            .and_then(|p| p.exe_verdict.as_ref())
            .filter(|(judged, _)| **judged == *exe)
            .map(|(_, v)| *v);
        let verdict = match cached {
            Some(v) => v,
            None => {
                let v = self.judge_exe(e.who.process.pid, exe, &u.temp_dirs);
                self.proc_state(pk, || Subject::of_event(e)).exe_verdict = Some((exe.into(), v));
                v
            }
        };
        let ns = namespace(e.who.pod.as_ref());
        let (severity, reason) = match verdict {
            Some(v) => v,
            None if self.learning => return,
            None => {
                let known = self
                    .baseline
                    .workload(wkey)
                    .filter(|b| !b.executables.is_empty());
                let judged = known.is_some() || self.allow.has_executables(ns, wkey);
                if !judged
                    || known.is_some_and(|b| b.executables.contains(path))
                    || self.allow.allows_exe(ns, wkey, path)
                {
                    return;
                }
                (Severity::Medium, "not in baseline")
            }
        };
        let who = Subject::of_event(e);
        let summary = match reason {
            "not in baseline" => format!(
                "{} queried {} from {path}, an executable its workload never ran while learning and no allowlist names",
                subject(&who),
                e.qname
            ),
            _ => format!(
                "{} queried {} from {exe} ({reason}): an executable that should not be resolving names",
                subject(&who),
                e.qname
            ),
        };
        let evidence = Evidence {
            examples: vec![e.qname.to_string()],
            exe: Some(exe.to_string()),
            reason: Some(reason.to_string()),
            ..Evidence::default()
        };
        self.raise(
            Detector::UnknownBinary,
            format!("{wkey}\0{path}"),
            severity,
            u.severity,
            summary,
            0,
            evidence,
            who,
        );
    }

    /// High for a memfd, a temporary directory, or a deleted file nothing replaced.
    fn judge_exe(&mut self, pid: u32, exe: &str, temp_dirs: &[String]) -> ExeVerdict {
        let path = exe_path(exe);
        if path.starts_with("/memfd:") {
            return Some((Severity::High, "memfd"));
        }
        // Exec records carry the path as passed to execve, which the process chose:
        // `//tmp/x` and `/usr/../tmp/x` are in /tmp too.
        let path = lexical(path);
        let in_dir = |d: &String| {
            let d = d.trim_end_matches('/');
            !d.is_empty() && path.strip_prefix(d).is_some_and(|r| r.starts_with('/'))
        };
        if temp_dirs.iter().any(in_dir) {
            return Some((Severity::High, "temporary directory"));
        }
        if !exe_deleted(exe) {
            return None;
        }
        // An upgrade replaces the file: the old process shows "(deleted)" but the path exists.
        // A process that exited before the check cannot tell which: medium.
        match self.view.file_exists(pid, &path) {
            Some(true) => None,
            Some(false) => Some((Severity::High, "deleted")),
            None => Some((Severity::Medium, "deleted")),
        }
    }
}

/// `path` with repeated `/`, `.` and `..` folded as the kernel would without symlinks.
fn lexical(path: &str) -> String {
    use std::path::Component;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in std::path::Path::new(path).components() {
        match part {
            Component::Normal(name) => parts.push(name),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = String::with_capacity(path.len());
    for part in parts {
        out.push('/');
        out.push_str(&part.to_string_lossy());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}
