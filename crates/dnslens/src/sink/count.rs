//! `count` output: the queries (or, with `--lookups`, the lookups) of each interval by key, most
//! first, as a small table (a column per key, in the order of `--by`) or as one JSON object per
//! interval (a field per key, and `queries` or `lookups`).

use dnslens_probe::Named;
use std::io::{self, Write};
use std::time::Duration;

use dnslens_lens::clock::{self, Civil};
use dnslens_lens::count::{CountBy, CountRow, CountedAt, Counter};
use dnslens_lens::lookup::Lookup;
use dnslens_lens::text::{counted, printable};
use dnslens_lens::DnsEvent;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::Sink;

/// Widest a key column is padded to: a longer value (a name a workload chose) pushes the rest
/// of its own row right, not every row of the table.
const MAX_COLUMN: usize = 48;

#[derive(Clone, Copy, Debug)]
pub enum CountFormat {
    Table {
        /// Seconds east of UTC at a wall-clock time.
        utc_offset: fn(u64) -> i64,
    },
    Json,
}

pub struct CountSink<W: Write> {
    out: W,
    counter: Counter,
    interval: Duration,
    format: CountFormat,
}

#[derive(serde::Serialize)]
struct IntervalJson<'a> {
    time: String,
    interval_ms: u64,
    by: Vec<&'static str>,
    total: u64,
    counts: Vec<RowJson<'a>>,
}

/// A row as JSON: a field per key, named after it, then `name` (pid rows) and `queries` or
/// `lookups`.
struct RowJson<'a> {
    by: &'a [CountBy],
    counted: &'static str,
    row: &'a CountRow,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (by, value) in self.by.iter().zip(&self.row.key) {
            map.serialize_entry(by.name(), value)?;
        }
        if let Some(name) = &self.row.name {
            map.serialize_entry("name", name)?;
        }
        map.serialize_entry(self.counted, &self.row.count)?;
        map.end()
    }
}

/// The table's cell of one key value: `-` for an empty one, the process name after a pid.
fn cell(by: CountBy, value: &str, name: Option<&str>) -> String {
    match (by, name) {
        (_, _) if value.is_empty() => "-".to_string(),
        (CountBy::Pid, Some(name)) => format!("{} ({})", printable(value), printable(name)),
        _ => printable(value).into_owned(),
    }
}

impl<W: Write> CountSink<W> {
    pub fn new(out: W, counter: Counter, interval: Duration, format: CountFormat) -> Self {
        CountSink {
            out,
            counter,
            interval,
            format,
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn print(&mut self, wall_ns: u64, rows: &[CountRow]) -> io::Result<()> {
        let total = rows.iter().map(|r| r.count).sum();
        let by = self.counter.by();
        let (one, many) = match self.counter.at() {
            CountedAt::Lookup => ("lookup", "lookups"),
            CountedAt::Query | CountedAt::Answer => ("query", "queries"),
        };
        match self.format {
            CountFormat::Json => {
                let line = IntervalJson {
                    time: clock::format_rfc3339(wall_ns),
                    interval_ms: self.interval.as_millis() as u64,
                    by: by.iter().map(|b| b.name()).collect(),
                    total,
                    counts: rows
                        .iter()
                        .map(|row| RowJson {
                            by,
                            counted: many,
                            row,
                        })
                        .collect(),
                };
                serde_json::to_writer(&mut self.out, &line)?;
                writeln!(self.out)?;
            }
            CountFormat::Table { utc_offset } => {
                let c = Civil::from_wall_ns(wall_ns, utc_offset(wall_ns));
                let names: Vec<&str> = by.iter().map(|b| b.name()).collect();
                writeln!(
                    self.out,
                    "{:02}:{:02}:{:02}  {} by {}",
                    c.hour,
                    c.minute,
                    c.second,
                    counted(total, one, many),
                    names.join(", ")
                )?;
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let name = r.name.as_deref();
                        by.iter()
                            .zip(&r.key)
                            .map(|(&b, v)| cell(b, v, name))
                            .collect()
                    })
                    .collect();
                let mut widths = vec![0; by.len()];
                for row in &cells {
                    for (w, c) in widths.iter_mut().zip(row) {
                        *w = (*w).max(c.chars().count().min(MAX_COLUMN));
                    }
                }
                for (row, cells) in rows.iter().zip(&cells) {
                    write!(self.out, "{:>10}", row.count)?;
                    let last = cells.len() - 1;
                    for (i, (c, &w)) in cells.iter().zip(&widths).enumerate() {
                        match i == last {
                            true => write!(self.out, "  {c}")?,
                            false => write!(self.out, "  {c:<w$}")?,
                        }
                    }
                    writeln!(self.out)?;
                }
            }
        }
        self.out.flush()
    }
}

impl<W: Write> CountSink<W> {
    /// An interval ended at wall-clock `wall_ns`: its counts are printed.
    pub fn interval(&mut self, wall_ns: u64) -> io::Result<()> {
        let rows = self.counter.take();
        self.print(wall_ns, &rows)
    }
}

impl<W: Write> Sink for CountSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        self.counter.event(event);
        Ok(false)
    }

    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        self.counter.lookup(lookup);
        Ok(false)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The last, partial interval is printed if it counted anything.
    fn finish(&mut self, wall_ns: u64) -> io::Result<()> {
        let rows = self.counter.take();
        if !rows.is_empty() {
            self.print(wall_ns, &rows)?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::lookup::Outcome;
    use dnslens_lens::model::sample;

    const T: u64 = 1_795_690_495_000_000_000;

    fn feed(sink: &mut impl Sink) {
        for (pid, name) in [(1, "curl"), (2, "dig"), (3, "dig")] {
            let mut q = sample::query(1, "example.com", 1, 0);
            q.who.process.pid = pid;
            q.who.process.name = name.into();
            assert!(!sink.event(&q).unwrap());
        }
    }

    fn new_sink(by: &[CountBy], format: CountFormat) -> CountSink<Vec<u8>> {
        let counter = Counter::new(by.to_vec(), CountedAt::Query, 100);
        CountSink::new(Vec::new(), counter, Duration::from_millis(500), format)
    }

    const TABLE: CountFormat = CountFormat::Table { utc_offset: |_| 0 };

    #[test]
    fn table_per_interval() {
        let mut sink = new_sink(&[CountBy::Process], TABLE);
        feed(&mut sink);
        sink.interval(T).unwrap();
        sink.interval(T + 1_000_000_000).unwrap();
        sink.finish(T + 1_500_000_000).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(
            text,
            "10:54:55  3 queries by process\n         2  dig\n         1  curl\n\
             10:54:56  0 queries by process\n"
        );
    }

    #[test]
    fn table_has_a_column_per_key_in_the_order_given() {
        let mut sink = new_sink(&[CountBy::Pid, CountBy::Qname], TABLE);
        feed(&mut sink);
        let mut q = sample::query(1, "a.Example\x1b[2J", 1, 0);
        q.who.process.pid = 12345;
        q.who.process.name = "python3".into();
        sink.event(&q).unwrap();
        sink.interval(T).unwrap();
        let mut one = new_sink(&[CountBy::Qtype], TABLE);
        one.event(&q).unwrap();
        one.interval(T).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(
            text,
            "10:54:55  4 queries by pid, qname\n\
             \x20        1  1 (curl)         example.com\n\
             \x20        1  12345 (python3)  a.example\\x1b[2j\n\
             \x20        1  2 (dig)          example.com\n\
             \x20        1  3 (dig)          example.com\n"
        );
        let text = String::from_utf8(one.into_inner()).unwrap();
        assert_eq!(text, "10:54:55  1 query by qtype\n         1  A\n");
    }

    /// Issue 16 item 4: lookups are counted, and named so, in the table and in JSON.
    #[test]
    fn lookups_per_interval() {
        let lookup = |name: &str, outcome| sample::lookup(&sample::query(1, name, 1, 0), outcome);
        let by = vec![CountBy::Name, CountBy::Outcome];
        for format in [TABLE, CountFormat::Json] {
            let counter = Counter::new(by.clone(), CountedAt::Lookup, 100);
            let mut sink = CountSink::new(Vec::new(), counter, Duration::from_secs(1), format);
            feed(&mut sink);
            for (name, outcome) in [
                ("a.example", Outcome::Answered),
                ("a.example", Outcome::Answered),
                ("b.example", Outcome::Nxdomain),
            ] {
                assert!(!sink.lookup(&lookup(name, outcome)).unwrap());
            }
            sink.interval(T).unwrap();
            let text = String::from_utf8(sink.into_inner()).unwrap();
            match format {
                CountFormat::Table { .. } => assert_eq!(
                    text,
                    "10:54:55  3 lookups by name, outcome\n\
                     \x20        2  a.example  answered\n\
                     \x20        1  b.example  nxdomain\n"
                ),
                CountFormat::Json => assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                    serde_json::json!({
                        "time": "2026-11-26T10:54:55.000000000Z", "interval_ms": 1000,
                        "by": ["name", "outcome"], "total": 3, "counts": [
                            {"name": "a.example", "outcome": "answered", "lookups": 2},
                            {"name": "b.example", "outcome": "nxdomain", "lookups": 1}]
                    })
                ),
            }
        }
    }

    #[test]
    fn json_per_interval_has_a_field_per_key() {
        let mut sink = new_sink(&[CountBy::Pid], CountFormat::Json);
        feed(&mut sink);
        sink.interval(T).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2026-11-26T10:54:55.000000000Z\",\"interval_ms\":500,\"by\":[\"pid\"],\
             \"total\":3,\"counts\":[{\"pid\":\"1\",\"name\":\"curl\",\"queries\":1},\
             {\"pid\":\"2\",\"name\":\"dig\",\"queries\":1},{\"pid\":\"3\",\"name\":\"dig\",\
             \"queries\":1}]}\n"
        );
        let mut sink = new_sink(&[CountBy::Qname, CountBy::Process], CountFormat::Json);
        feed(&mut sink);
        sink.interval(T).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&sink.into_inner()).unwrap();
        assert_eq!(line["by"], serde_json::json!(["qname", "process"]));
        assert_eq!(
            line["counts"][0],
            serde_json::json!({"qname": "example.com", "process": "dig", "queries": 2})
        );
    }
}
