//! Alerts: what a detector raised, about whom. The detectors (crates/detect) make them; the
//! schema writes them as `kind: "alert"` lines beside the events they came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Attribution;

/// Example names an alert carries at most.
pub const MAX_EXAMPLES: usize = 10;

/// Which detector raised an alert. Its name is the JSON value and the config section's.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// Index into per-detector counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
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

impl Alert {
    /// The alert as one line of JSON, newline included (docs/schema.md, "Alert lines").
    pub fn to_json_line(&self) -> String {
        let mut line = Vec::with_capacity(1024);
        crate::schema::write_alert_line(&mut line, self);
        String::from_utf8(line).expect("the writer writes UTF-8")
    }
}
