//! dnslens's own health counters as rows of one table: each stage lists what it dropped or
//! missed as (stage, name, kind, value), and the exit report and the agent's metrics both
//! iterate the rows. A new bounded table is one row in its stage's list, and so is seen in both.

/// What a counter counts; it picks the metric family the row goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// Entries dropped from a full bounded table (`dnslens_state_evictions_total{table}`).
    Eviction,
    /// Records or messages that did not decode, by reason (`dnslens_decode_errors_total{kind}`).
    DecodeError,
    /// Events whose process, cgroup or pod could not be named
    /// (`dnslens_enrichment_misses_total{what}`).
    Miss,
}

/// One row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The stage that owns it: `decode`, `pairing`, `attribution`, `detectors`, `kubernetes`.
    pub stage: &'static str,
    /// Its name in metrics: the table, the decode error or what was missed.
    pub name: &'static str,
    pub kind: CounterKind,
    pub value: u64,
}

impl Counter {
    pub fn eviction(stage: &'static str, table: &'static str, value: u64) -> Counter {
        Counter {
            stage,
            name: table,
            kind: CounterKind::Eviction,
            value,
        }
    }
}

/// `name value` for each row of `kind`, comma-separated: the exit report's form.
pub fn rows_text(rows: &[Counter], kind: CounterKind) -> String {
    let of_kind: Vec<String> = rows
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| format!("{} {}", c.name, c.value))
        .collect();
    of_kind.join(", ")
}
