//! `count` output: the queries of each interval by key, most first, as a small table or as one
//! JSON object per interval.

use dnslens_probe::Named;
use std::io::{self, Write};
use std::time::Duration;

use dnslens_lens::clock::{self, Civil};
use dnslens_lens::count::{CountRow, Counter};
use dnslens_lens::text::Printable;
use dnslens_lens::DnsEvent;
use serde::Serialize;

use super::Sink;

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

#[derive(Serialize)]
struct IntervalJson<'a> {
    time: String,
    interval_ms: u64,
    by: &'static str,
    total: u64,
    counts: &'a [CountRow],
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
        let total = rows.iter().map(|r| r.queries).sum();
        let by = self.counter.by();
        match self.format {
            CountFormat::Json => {
                let line = IntervalJson {
                    time: clock::format_rfc3339(wall_ns),
                    interval_ms: self.interval.as_millis() as u64,
                    by: by.name(),
                    total,
                    counts: rows,
                };
                serde_json::to_writer(&mut self.out, &line)?;
                writeln!(self.out)?;
            }
            CountFormat::Table { utc_offset } => {
                let c = Civil::from_wall_ns(wall_ns, utc_offset(wall_ns));
                writeln!(
                    self.out,
                    "{:02}:{:02}:{:02}  {total} queries by {}",
                    c.hour,
                    c.minute,
                    c.second,
                    by.name()
                )?;
                for row in rows {
                    let key = Printable(if row.key.is_empty() { "-" } else { &row.key });
                    match &row.name {
                        Some(name) => {
                            let name = Printable(name);
                            writeln!(self.out, "{:>10}  {key} ({name})", row.queries)?
                        }
                        None => writeln!(self.out, "{:>10}  {key}", row.queries)?,
                    }
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
    use dnslens_lens::count::CountBy;
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

    #[test]
    fn table_per_interval() {
        let format = CountFormat::Table { utc_offset: |_| 0 };
        let counter = Counter::new(CountBy::Process, 100);
        let mut sink = CountSink::new(Vec::new(), counter, Duration::from_secs(1), format);
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
    fn json_per_interval() {
        let counter = Counter::new(CountBy::Pid, 100);
        let interval = Duration::from_millis(500);
        let mut sink = CountSink::new(Vec::new(), counter, interval, CountFormat::Json);
        feed(&mut sink);
        sink.interval(T).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2026-11-26T10:54:55.000000000Z\",\"interval_ms\":500,\"by\":\"pid\",\
             \"total\":3,\"counts\":[{\"key\":\"1\",\"name\":\"curl\",\"queries\":1},\
             {\"key\":\"2\",\"name\":\"dig\",\"queries\":1},{\"key\":\"3\",\"name\":\"dig\",\
             \"queries\":1}]}\n"
        );
    }
}
