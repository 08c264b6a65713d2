//! Who state and alerts belong to: a process is (pid, start time), so a reused pid is a new
//! process; a workload is the pod's owner when the cluster named it, else the pod, the
//! container, or on the host the executable.

use dnslens_lens::identity::{write_into, Identity};
use dnslens_lens::model::{Attribution, Pod};

/// A process: its pid and the kernel's start time of its thread-group leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub pid: u32,
    pub start_ns: u64,
}

impl ProcKey {
    pub fn new(pid: u32, start_ns: u64) -> Self {
        ProcKey { pid, start_ns }
    }

    /// Same process; a start time of 0 (unknown) matches any.
    pub fn same(&self, other: &ProcKey) -> bool {
        self.pid == other.pid
            && (self.start_ns == other.start_ns || self.start_ns == 0 || other.start_ns == 0)
    }
}

const DELETED: &str = " (deleted)";

/// An executable path without the ` (deleted)` that /proc appends to removed files.
pub fn exe_path(exe: &str) -> &str {
    exe.strip_suffix(DELETED).unwrap_or(exe)
}

pub fn exe_deleted(exe: &str) -> bool {
    exe.ends_with(DELETED)
}

/// The workload key (docs/detectors.md, "Keys"):
/// `namespace/Kind/name` for a pod whose owner is known (`namespace/Pod/name` without one),
/// `pod:<uid>` while the pod is not named, `container:<id>` outside pods, `exe:<path>` for host
/// processes (`comm:<name>` when the executable is unknown), `client:<address>` for a client
/// known only by its address.
pub fn workload_key(who: &Attribution) -> String {
    let mut key = String::new();
    write_workload_key(&mut key, who);
    key
}

/// [`workload_key`] into a buffer the caller reuses: it is needed for every event, and pushing
/// the parts costs a fraction of `format!` and its allocation.
pub fn write_workload_key(key: &mut String, who: &Attribution) {
    // Host and unresolved processes alike are keyed by their executable.
    let parts: [&str; 5] = match Identity::of(who) {
        id @ Identity::Pod { info: Some(_), .. } => {
            let w = id.workload().expect("a named pod has a workload");
            [w.namespace, "/", w.kind, "/", w.name]
        }
        Identity::Pod {
            pod, info: None, ..
        } => ["pod:", &pod.uid, "", "", ""],
        Identity::Container(c) => ["container:", &c.id, "", "", ""],
        Identity::Host(p) | Identity::Unknown(p) => match p.exe.as_deref() {
            Some(exe) => ["exe:", exe_path(exe), "", "", ""],
            None => ["comm:", p.display_name(), "", "", ""],
        },
        Identity::Client(address) => {
            write_into(key, format_args!("client:{address}"));
            return;
        }
    };
    key.clear();
    key.extend(parts);
}

/// The pod's namespace, once the cluster named it: where per-namespace settings apply.
pub fn namespace(pod: Option<&Pod>) -> Option<&str> {
    pod.and_then(|p| p.namespace())
}

/// "curl (pid 123) in pod shop/web-7d4b9f-xk2p1": who, for a summary sentence.
pub fn subject(who: &Attribution) -> String {
    if let id @ Identity::Client(_) = Identity::of(who) {
        return id.to_string();
    }
    let p = &who.process;
    let mut s = format!("{} (pid {})", p.display_name(), p.pid);
    match Identity::of(who) {
        id @ Identity::Pod { .. } => s.push_str(&format!(" in pod {id}")),
        id @ Identity::Container(_) => s.push_str(&format!(" in container {id}")),
        Identity::Host(_) | Identity::Unknown(_) | Identity::Client(_) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dnslens_lens::container::Runtime;
    use dnslens_lens::model::sample;
    use dnslens_lens::pods::Workload;

    use super::*;
    use dnslens_lens::model::{Container, ProcessInfo};

    fn key(pod: Option<&Pod>, container: Option<&Container>, p: &ProcessInfo) -> String {
        let mut who = sample::query(1, "x.test", 1, 0).who;
        (who.pod, who.container, who.process) = (pod.cloned(), container.cloned(), p.clone());
        workload_key(&who)
    }

    #[test]
    fn workload_keys_prefer_the_owner() {
        let mut p = ProcessInfo {
            pid: 7,
            name: "curl".into(),
            ..ProcessInfo::default()
        };
        let deployment = Pod {
            uid: Arc::from("u-1"),
            info: Some(sample::pod_info(Some(Workload {
                kind: "Deployment".into(),
                name: "web".into(),
            }))),
        };
        let bare = Pod {
            uid: Arc::from("u-1"),
            info: Some(sample::pod_info(None)),
        };
        let unnamed = Pod {
            uid: Arc::from("u-1"),
            info: None,
        };
        let c = Container {
            id: Arc::from("ab".repeat(32).as_str()),
            runtime: Runtime::Containerd,
            name: None,
        };
        assert_eq!(key(Some(&deployment), Some(&c), &p), "shop/Deployment/web");
        assert_eq!(key(Some(&bare), None, &p), "shop/Pod/web-7d4b9f-xk2p1");
        assert_eq!(key(Some(&unnamed), None, &p), "pod:u-1");
        assert_eq!(
            key(None, Some(&c), &p),
            format!("container:{}", "ab".repeat(32))
        );
        assert_eq!(key(None, None, &p), "comm:curl");
        p.exe = Some("/tmp/x (deleted)".into());
        assert_eq!(key(None, None, &p), "exe:/tmp/x");
        let mut client = sample::query(1, "x.test", 1, 0).who;
        client.client = Some("fd00::7".parse().unwrap());
        assert_eq!(workload_key(&client), "client:fd00::7");
        assert_eq!(subject(&client), "client fd00::7");
        assert!(exe_deleted("/tmp/x (deleted)"));
        assert!(!exe_deleted("/usr/bin/curl"));
        assert!(ProcKey::new(1, 5).same(&ProcKey::new(1, 0)));
        assert!(!ProcKey::new(1, 5).same(&ProcKey::new(1, 6)));
        assert!(!ProcKey::new(1, 5).same(&ProcKey::new(2, 5)));
    }

    #[test]
    fn subjects_name_process_and_pod() {
        let mut who = sample::query(1, "", 1, 0).who;
        who.process = ProcessInfo {
            pid: 7,
            comm: "worker".into(),
            ..ProcessInfo::default()
        };
        who.pod = Some(Pod {
            uid: Arc::from("u-1"),
            info: Some(sample::pod_info(None)),
        });
        who.host = Some(false);
        assert_eq!(subject(&who), "worker (pid 7) in pod shop/web-7d4b9f-xk2p1");
    }
}
