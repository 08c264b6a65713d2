//! The alert record and its JSON line: `kind: "alert"`, which detector, how severe, a sentence,
//! how many triggers it stands for, bounded evidence, and the same process, container and pod
//! fields as the events (serialized by the lens types, so they match docs/schema.md).

use std::collections::BTreeMap;
use std::fmt;

use dnslens_lens::clock::Rfc3339;
use dnslens_lens::model::{Attribution, Container, Pod, ProcessInfo};
use dnslens_lens::{ConnectEvent, DnsEvent};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// Example names an alert carries at most.
pub const MAX_EXAMPLES: usize = 10;

/// Which detector raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Tunneling,
    Nxdomain,
    Dga,
    NewDomainConnect,
    UnresolvedConnect,
    UnexpectedDomain,
    UnknownBinary,
    ResolverBypass,
}

impl Detector {
    pub const ALL: [Detector; 8] = [
        Detector::Tunneling,
        Detector::Nxdomain,
        Detector::Dga,
        Detector::NewDomainConnect,
        Detector::UnresolvedConnect,
        Detector::UnexpectedDomain,
        Detector::UnknownBinary,
        Detector::ResolverBypass,
    ];

    /// The JSON value and the config section name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Tunneling => "tunneling",
            Detector::Nxdomain => "nxdomain",
            Detector::Dga => "dga",
            Detector::NewDomainConnect => "new_domain_connect",
            Detector::UnresolvedConnect => "unresolved_connect",
            Detector::UnexpectedDomain => "unexpected_domain",
            Detector::UnknownBinary => "unknown_binary",
            Detector::ResolverBypass => "resolver_bypass",
        }
    }

    /// Index into per-detector counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// What triggered an alert. Every field is optional and bounded (names up to
/// [`MAX_EXAMPLES`]); each detector fills the ones docs/detectors.md lists for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// The alert's key: the workload (docs/detectors.md, "Keys").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The registered domain (or name) the alert is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Example names, first seen first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// Estimated distinct names under `domain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_names: Option<u64>,
    /// Queries whose names had a long or random-looking label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_or_random: Option<u64>,
    /// Queries by type (at most 8 types; the rest under `other`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub qtypes: BTreeMap<String, u64>,
    /// Lookups that failed as a whole (search-list expansions folded in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_lookups: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_failed: Option<u64>,
    /// NOERROR responses in the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok_responses: Option<u64>,
    /// Distinct random-looking registered domains that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_domains: Option<u64>,
    /// The address connected to, `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Milliseconds from the answer to the connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
    /// The DNS server the query went to, `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The nameservers the process's resolv.conf names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configured: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Why, in a word or two: `deleted`, `memfd`, `temporary directory`, `not in baseline`,
    /// `dns over tls`, `other server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The workload's baseline holds only cluster names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_only: Option<bool>,
}

/// Who a detector's state or alert is about, and when: an event's attribution with its
/// wall-clock time. Reads through to the [`Attribution`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Wall-clock ns since the epoch.
    pub time_ns: u64,
    pub who: Attribution,
}

impl Subject {
    pub fn of_event(e: &DnsEvent) -> Self {
        Subject {
            time_ns: e.time_ns,
            who: e.who.clone(),
        }
    }

    pub fn of_connect(c: &ConnectEvent) -> Self {
        Subject {
            time_ns: c.time_ns,
            who: c.who.clone(),
        }
    }
}

impl std::ops::Deref for Subject {
    type Target = Attribution;

    fn deref(&self) -> &Attribution {
        &self.who
    }
}

/// One alert. `count` is how many triggers it reports: 1 for the first in its window, the
/// number of further ones for the summary at the window's end (docs/detectors.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub detector: Detector,
    pub severity: Severity,
    pub summary: String,
    pub count: u64,
    /// The span the alert covers: the detector's window for a first alert, the aggregation
    /// window for a summary.
    pub window_s: u64,
    pub evidence: Evidence,
    /// Wall-clock ns since the epoch.
    pub time_ns: u64,
    pub who: Attribution,
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Alert", 15)?;
        st.serialize_field("kind", "alert")?;
        st.serialize_field("time", &format_args!("{}", Rfc3339(self.time_ns)))?;
        st.serialize_field("detector", &self.detector)?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("summary", &self.summary)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("window_s", &self.window_s)?;
        st.serialize_field("evidence", &self.evidence)?;
        st.serialize_field("process", &ProcessJson(&self.who.process))?;
        st.serialize_field("netns", &self.who.netns)?;
        st.serialize_field("cgroup", &*self.who.cgroup)?;
        st.serialize_field("container", &self.who.container.as_ref().map(ContainerJson))?;
        st.serialize_field("pod", &self.who.pod.as_ref().map(PodJson))?;
        st.serialize_field("node", &self.who.node.as_deref())?;
        st.serialize_field("host", &self.who.host)?;
        st.end()
    }
}

impl Alert {
    /// The alert as one line of JSON, newline included.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("alerts always serialize");
        line.push('\n');
        line
    }
}

// The attribution objects exactly as events write them (crates/lens/src/json.rs; a test
// below compares the two).

struct ProcessJson<'a>(&'a ProcessInfo);

impl Serialize for ProcessJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut st = s.serialize_struct("Process", 7)?;
        st.serialize_field("pid", &p.pid)?;
        st.serialize_field("tid", &p.tid)?;
        st.serialize_field("comm", &*p.comm)?;
        st.serialize_field("name", &*p.name)?;
        st.serialize_field("exe", &p.exe.as_deref())?;
        st.serialize_field("uid", &p.uid)?;
        st.serialize_field("ppid", &p.ppid)?;
        st.end()
    }
}

struct ContainerJson<'a>(&'a Container);

impl Serialize for ContainerJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Container", 3)?;
        st.serialize_field("id", &*self.0.id)?;
        st.serialize_field("runtime", self.0.runtime.as_str())?;
        st.serialize_field("name", &self.0.name.as_deref())?;
        st.end()
    }
}

struct PodJson<'a>(&'a Pod);

impl Serialize for PodJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WorkloadJson<'a> {
            kind: &'a str,
            name: &'a str,
        }
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        let pod = self.0;
        let mut st = s.serialize_struct("Pod", 5)?;
        st.serialize_field("uid", &*pod.uid)?;
        st.serialize_field("name", &pod.name())?;
        st.serialize_field("namespace", &pod.namespace())?;
        let workload = pod.workload().map(|w| WorkloadJson {
            kind: &w.kind,
            name: &w.name,
        });
        st.serialize_field("workload", &workload)?;
        let labels = pod.info.as_deref().map_or(&NO_LABELS, |p| &p.labels);
        st.serialize_field("labels", labels)?;
        st.end()
    }
}

/// Adds `n` queries of a type to `map`: at most 8 types by name, the rest as `other`.
pub fn count_qtype(map: &mut BTreeMap<String, u64>, qtype: &str, n: u64) {
    if let Some(c) = map.get_mut(qtype) {
        *c += n;
    } else if map.len() < 8 {
        map.insert(qtype.to_string(), n);
    } else {
        *map.entry("other".to_string()).or_default() += n;
    }
}

/// Adds `name` to `examples` unless it is there or the list is full.
pub fn add_example(examples: &mut Vec<String>, name: &str) {
    if examples.len() < MAX_EXAMPLES && !examples.iter().any(|e| e == name) {
        examples.push(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_lists_stay_bounded() {
        let mut m = BTreeMap::new();
        for t in [
            "A", "AAAA", "TXT", "MX", "NS", "SRV", "PTR", "CNAME", "NULL", "ANY",
        ] {
            count_qtype(&mut m, t, 2);
        }
        count_qtype(&mut m, "A", 1);
        assert_eq!(m.len(), 9);
        assert_eq!(m["A"], 3);
        assert_eq!(m["other"], 4);
        let mut ex = Vec::new();
        for i in 0..20 {
            add_example(&mut ex, &format!("n{}", i % 12));
            add_example(&mut ex, "n0");
        }
        assert_eq!(ex.len(), MAX_EXAMPLES);
        assert_eq!(ex[..3], ["n0", "n1", "n2"]);
        assert_eq!(Detector::ALL.map(|d| d.index()), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Detector::NewDomainConnect.to_string(), "new_domain_connect");
    }
}
