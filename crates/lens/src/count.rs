//! Counting: queries sent by clients per interval, keyed by thread name, process name, pid,
//! cgroup, pod, namespace, workload or container. The key table is bounded; keys past the bound
//! are folded into one `(other)` row.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::identity::{write_into, Identity};
use crate::model::{Container, DnsEvent, Kind, Role};

/// Distinct keys counted per interval before new keys fold into [`OTHER`].
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The row that collects keys past the capacity.
pub const OTHER: &str = "(other)";
/// The keys of processes outside containers and pods, of events whose cgroup was not
/// resolved or whose pod the directory does not know, and of what a process lacks (the pod of a
/// container outside pods, the container of a process in a pod's own cgroup).
pub use crate::identity::{HOST, NONE, UNKNOWN};

/// What the queries are counted by; its name is the JSON `by` and the flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum CountBy {
    /// Thread name.
    Comm,
    /// Process name.
    Process,
    Pid,
    Cgroup,
    /// `namespace/name`, or the uid while the pod directory does not know the pod.
    Pod,
    Namespace,
    /// `namespace/Kind/name`; a pod without an owner is its own workload (`namespace/Pod/name`).
    Workload,
    /// `namespace/pod/container`, or the first 12 hex digits of the id when the name is not
    /// known.
    Container,
}

/// Writes the pod, namespace, workload or container key of `e` into `out` (cleared first).
fn placement_key(by: CountBy, e: &DnsEvent, out: &mut String) {
    let id = Identity::of(&e.who);
    match (id, by) {
        (Identity::Unknown(_), _) => write_into(out, UNKNOWN),
        (Identity::Host(_), _) => write_into(out, HOST),
        (_, CountBy::Container) => match (id.container(), id) {
            (None, _) => write_into(out, NONE),
            (Some(Container { name: Some(c), .. }), Identity::Pod { info: Some(p), .. }) => {
                write_into(out, format_args!("{}/{}/{c}", p.namespace, p.name))
            }
            (Some(c), _) => write_into(out, c.short_id()),
        },
        (Identity::Container(_), _) => write_into(out, NONE),
        (Identity::Pod { info: None, .. }, CountBy::Pod) => write_into(out, id),
        (Identity::Pod { info: None, .. }, _) => write_into(out, UNKNOWN),
        (Identity::Pod { info: Some(p), .. }, by) => match (by, id.workload()) {
            (CountBy::Namespace, _) => write_into(out, &p.namespace),
            (CountBy::Workload, Some(w)) => write_into(out, w),
            _ => write_into(out, id),
        },
    }
}

/// One row of an interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CountRow {
    pub key: String,
    /// The process name, for rows keyed by pid (the latest seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub queries: u64,
}

/// Counts of the current interval.
#[derive(Debug)]
pub struct Counter {
    by: CountBy,
    capacity: usize,
    /// Key -> (queries, process name for pid keys).
    counts: HashMap<String, (u64, Option<String>)>,
    folded: u64,
    /// Reused for the text of composed keys (pid, pod, ...), so that counting a known key
    /// allocates nothing.
    key: String,
}

impl Counter {
    pub fn new(by: CountBy, capacity: usize) -> Self {
        Counter {
            by,
            capacity: capacity.max(1),
            counts: HashMap::new(),
            folded: 0,
            key: String::new(),
        }
    }

    pub fn by(&self) -> CountBy {
        self.by
    }

    /// Counts `event` if it is a query sent by a client; returns whether it counted.
    pub fn event(&mut self, event: &DnsEvent) -> bool {
        if event.kind != Kind::Query || event.role != Role::Client {
            return false;
        }
        let p = &event.who.process;
        let (key, name) = match self.by {
            CountBy::Comm => (p.comm.as_str(), None),
            CountBy::Process => (p.name.as_str(), None),
            CountBy::Pid => {
                self.key.clear();
                write!(self.key, "{}", p.pid).expect("writing to a String cannot fail");
                (self.key.as_str(), Some(p.name.as_str()))
            }
            CountBy::Cgroup => (&*event.who.cgroup, None),
            by => {
                placement_key(by, event, &mut self.key);
                (self.key.as_str(), None)
            }
        };
        let key = if self.counts.contains_key(key) || self.counts.len() < self.capacity {
            key
        } else {
            self.folded += 1;
            OTHER
        };
        let entry = match self.counts.get_mut(key) {
            Some(entry) => entry,
            None => self.counts.entry(key.to_owned()).or_default(),
        };
        entry.0 += 1;
        if let Some(name) = name.filter(|&n| entry.1.as_deref() != Some(n)) {
            entry.1 = Some(name.to_owned());
        }
        true
    }

    /// The rows of the interval, most queries first (ties by key), and starts a new interval.
    pub fn take(&mut self) -> Vec<CountRow> {
        let mut rows: Vec<CountRow> = self
            .counts
            .drain()
            .map(|(key, (queries, name))| CountRow { key, name, queries })
            .collect();
        rows.sort_by(|a, b| b.queries.cmp(&a.queries).then_with(|| a.key.cmp(&b.key)));
        rows
    }

    /// Queries folded into `(other)` since the start, because the key table was full.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample;

    fn query(pid: u32, comm: &str, name: &str) -> DnsEvent {
        let mut q = sample::query(1, "example.com", 1, 0);
        q.who.process.pid = pid;
        q.who.process.comm = comm.into();
        q.who.process.name = name.into();
        q.who.cgroup = format!("/cg{pid}").into();
        q
    }

    #[test]
    fn counts_client_queries_sorted_by_count() {
        let mut c = Counter::new(CountBy::Process, 100);
        for e in [
            query(1, "t1", "curl"),
            query(2, "t2", "dig"),
            query(3, "t3", "dig"),
        ] {
            assert!(c.event(&e));
        }
        let q = query(1, "t1", "curl");
        assert!(!c.event(&sample::response(&q, 0, &[], 1)));
        let mut server = q.clone();
        server.role = Role::Server;
        assert!(!c.event(&server));
        let rows = c.take();
        assert_eq!(
            rows,
            vec![
                CountRow {
                    key: "dig".into(),
                    name: None,
                    queries: 2
                },
                CountRow {
                    key: "curl".into(),
                    name: None,
                    queries: 1
                },
            ]
        );
        assert!(c.take().is_empty(), "take starts a new interval");
    }

    #[test]
    fn keys_by_comm_pid_and_cgroup() {
        let e = query(42, "worker", "app");
        let key = |by| {
            let mut c = Counter::new(by, 10);
            c.event(&e);
            c.take().remove(0)
        };
        assert_eq!(key(CountBy::Comm).key, "worker");
        let pid = key(CountBy::Pid);
        assert_eq!((pid.key.as_str(), pid.name.as_deref()), ("42", Some("app")));
        assert_eq!(key(CountBy::Cgroup).key, "/cg42");

        // A pid row names the process last seen with that pid (it may have exec'd).
        let mut c = Counter::new(CountBy::Pid, 10);
        c.event(&e);
        c.event(&query(42, "worker", "app2"));
        let row = c.take().remove(0);
        assert_eq!((row.queries, row.name.as_deref()), (2, Some("app2")));
    }

    #[test]
    fn keys_by_pod_namespace_workload_and_container() {
        use crate::container::Runtime;
        use crate::model::Pod;
        use crate::pods::{PodInfo, Workload};
        use std::sync::Arc;

        let id = "0123456789abcdef".repeat(4);
        let uid = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let info = |workload: Option<(&str, &str)>| {
            Arc::new(PodInfo {
                uid: uid.to_string(),
                name: "web-7d4b9f-xk2p1".to_string(),
                namespace: "shop".to_string(),
                node: None,
                pod_ip: None,
                service_account: None,
                labels: Default::default(),
                workload: workload.map(|(kind, name)| Workload {
                    kind: kind.to_string(),
                    name: name.to_string(),
                }),
                containers: Default::default(),
            })
        };
        let event = |host, container: Option<Option<&str>>, pod: Option<Option<Arc<PodInfo>>>| {
            let mut e = query(1, "t", "p");
            e.who.host = host;
            e.who.container = container.map(|name| Container {
                id: Arc::from(id.as_str()),
                runtime: Runtime::Containerd,
                name: name.map(str::to_string),
            });
            e.who.pod = pod.map(|info| Pod {
                uid: Arc::from(uid),
                info,
            });
            e
        };
        let deployment = Some(info(Some(("Deployment", "web"))));
        let events = [
            event(Some(false), Some(Some("app")), Some(deployment.clone())),
            event(Some(false), Some(None), Some(Some(info(None)))),
            event(Some(false), Some(None), Some(None)),
            event(Some(false), Some(None), None),
            event(Some(false), None, Some(None)),
            event(Some(true), None, None),
            event(None, None, None),
        ];
        let keys = |by| {
            events
                .iter()
                .map(|e| {
                    let mut key = String::new();
                    placement_key(by, e, &mut key);
                    key
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(CountBy::Pod),
            [
                "shop/web-7d4b9f-xk2p1",
                "shop/web-7d4b9f-xk2p1",
                uid,
                NONE,
                uid,
                HOST,
                UNKNOWN
            ]
        );
        assert_eq!(
            keys(CountBy::Namespace),
            ["shop", "shop", UNKNOWN, NONE, UNKNOWN, HOST, UNKNOWN]
        );
        assert_eq!(
            keys(CountBy::Workload),
            [
                "shop/Deployment/web",
                "shop/Pod/web-7d4b9f-xk2p1",
                UNKNOWN,
                NONE,
                UNKNOWN,
                HOST,
                UNKNOWN
            ]
        );
        assert_eq!(
            keys(CountBy::Container),
            [
                "shop/web-7d4b9f-xk2p1/app",
                "0123456789ab",
                "0123456789ab",
                "0123456789ab",
                NONE,
                HOST,
                UNKNOWN
            ]
        );
        let mut c = Counter::new(CountBy::Workload, 10);
        for e in &events {
            assert!(c.event(e));
        }
        let rows = c.take();
        assert_eq!((rows[0].key.as_str(), rows[0].queries), (UNKNOWN, 3));
    }

    #[test]
    fn keys_past_capacity_fold_into_other() {
        let mut c = Counter::new(CountBy::Pid, 2);
        for pid in [1, 2, 3, 4, 1] {
            c.event(&query(pid, "t", "p"));
        }
        let rows = c.take();
        let other = rows.iter().find(|r| r.key == OTHER).unwrap();
        assert_eq!(other.queries, 2);
        assert_eq!(rows.iter().find(|r| r.key == "1").unwrap().queries, 2);
        assert_eq!(c.folded(), 2);
    }
}
