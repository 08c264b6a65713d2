//! Counting: queries sent by clients per interval, keyed by thread name, process name, pid or
//! cgroup. The key table is bounded; keys past the bound are folded into one `(other)` row.

use std::collections::HashMap;
use std::str::FromStr;

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

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown count key {0:?}: expected comm, process, pid or cgroup")]
pub struct ParseCountByError(String);

impl FromStr for CountBy {
    type Err = ParseCountByError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "comm" => Ok(CountBy::Comm),
            "process" | "name" => Ok(CountBy::Process),
            "pid" => Ok(CountBy::Pid),
            "cgroup" => Ok(CountBy::Cgroup),
            _ => Err(ParseCountByError(s.to_string())),
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
    counts: HashMap<String, (u64, Option<String>)>,
    folded: u64,
}

impl Counter {
    pub fn new(by: CountBy, capacity: usize) -> Self {
        Counter {
            by,
            capacity: capacity.max(1),
            counts: HashMap::new(),
            folded: 0,
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
            CountBy::Comm => (p.comm.clone(), None),
            CountBy::Process => (p.name.clone(), None),
            CountBy::Pid => (p.pid.to_string(), Some(p.name.clone())),
            CountBy::Cgroup => (event.cgroup.clone(), None),
        };
        let key = if self.counts.contains_key(&key) || self.counts.len() < self.capacity {
            key
        } else {
            self.folded += 1;
            OTHER.to_string()
        };
        let entry = self.counts.entry(key).or_insert((0, None));
        entry.0 += 1;
        if name.is_some() {
            entry.1 = name;
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
        assert_eq!("pid".parse(), Ok(CountBy::Pid));
        assert!("host".parse::<CountBy>().is_err());
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
