//! Counting: queries sent by clients per interval, keyed by thread name, process name, pid or
//! cgroup. The key table is bounded; keys past the bound are folded into one `(other)` row.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::{DnsEvent, Kind, Role};

/// Distinct keys counted per interval before new keys fold into [`OTHER`].
pub const DEFAULT_CAPACITY: usize = 10_000;
/// The row that collects keys past the capacity.
pub const OTHER: &str = "(other)";

/// What the queries are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountBy {
    /// Thread name.
    Comm,
    /// Process name.
    Process,
    Pid,
    Cgroup,
}

impl CountBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CountBy::Comm => "comm",
            CountBy::Process => "process",
            CountBy::Pid => "pid",
            CountBy::Cgroup => "cgroup",
        }
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
    /// Reused for the text of pid keys, so that counting a known key allocates nothing.
    pid_key: String,
}

impl Counter {
    pub fn new(by: CountBy, capacity: usize) -> Self {
        Counter {
            by,
            capacity: capacity.max(1),
            counts: HashMap::new(),
            folded: 0,
            pid_key: String::new(),
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
        let p = &event.process;
        let (key, name) = match self.by {
            CountBy::Comm => (p.comm.as_str(), None),
            CountBy::Process => (p.name.as_str(), None),
            CountBy::Pid => {
                self.pid_key.clear();
                write!(self.pid_key, "{}", p.pid).expect("writing to a String cannot fail");
                (self.pid_key.as_str(), Some(p.name.as_str()))
            }
            CountBy::Cgroup => (event.cgroup.as_str(), None),
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
        q.process.pid = pid;
        q.process.comm = comm.to_string();
        q.process.name = name.to_string();
        q.cgroup = format!("/cg{pid}");
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
