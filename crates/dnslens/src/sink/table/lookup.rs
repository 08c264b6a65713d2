//! The rows of `trace --lookups`: one per lookup, with what the application asked for, how it
//! ended, how long it took, how many queries it cost and the forwarder on this node that answered
//! it (`dnsmasq:hit`); the rest is in the JSON lines.

use std::fmt::Write as _;
use std::io::{self, Write};

use dnslens_lens::lookup::{Lookup, Outcome};
use dnslens_probe::Named;

use super::{
    column, push_cell, push_cgroup, push_display, push_pod, push_time, Align, Cell, Column,
    Latency, TableSink, GREEN, RED, YELLOW,
};

/// TIME PID PROCESS (CGROUP or POD) QTYPES NAME OUTCOME LATENCY QUERIES TIMEOUTS ANSWERED VIA.
pub(super) fn columns(pods: bool) -> [Column; 12] {
    let owner = if pods { Cell::Pod } else { Cell::Cgroup };
    [
        Cell::Time.column(),
        Cell::Pid.column(),
        Cell::Process.column(),
        owner.column(),
        // `A+AAAA`
        column("QTYPES", 10, Align::Left),
        column("NAME", super::QNAME_PIPED, Align::LeftKeepTail),
        // `answered`, `nxdomain`, `servfail`
        column("OUTCOME", 8, Align::Left),
        Cell::Latency.column(),
        column("QUERIES", 7, Align::Right),
        column("TIMEOUTS", 8, Align::Right),
        column("ANSWERED", super::QNAME_PIPED, Align::Left),
        // The forwarder's process name (15 bytes at most) and its cache: `systemd-resolve:miss`.
        column("VIA", 20, Align::Left),
    ]
}

impl<W: Write> TableSink<W> {
    /// Rows are lookups.
    pub fn with_lookups(mut self) -> Self {
        self.lookups = true;
        self
    }

    pub(super) fn lookup_row(&mut self, l: &Lookup) -> io::Result<()> {
        self.header_once()?;
        let Self {
            line, cell, style, ..
        } = self;
        let colour = |c: &'static str| style.color.then_some(c);
        let [time, pid, process, owner, qtypes, name, outcome, latency, queries, timeouts, answered, via] =
            columns(style.pods);
        line.clear();
        push_time(line, cell, &time, l.time_ns, style);
        push_display(line, cell, &pid, l.who.process.pid, None);
        push_cell(line, &process, l.who.process.display_name(), None);
        if style.pods {
            push_pod(line, cell, &owner, &l.who);
        } else {
            push_cgroup(line, &owner, &l.who);
        }
        cell.clear();
        for (i, qtype) in l.qtypes.iter().enumerate() {
            if i > 0 {
                cell.push('+');
            }
            cell.push_str(&qtype.to_string());
        }
        push_cell(line, &qtypes, cell, None);
        push_cell(line, &name, &l.name, None);
        let c = match l.outcome {
            Outcome::Answered => GREEN,
            Outcome::Nxdomain | Outcome::Nodata => YELLOW,
            _ => RED,
        };
        push_cell(line, &outcome, l.outcome.name(), colour(c));
        push_display(line, cell, &latency, Latency(l.latency_us), None);
        push_display(line, cell, &queries, l.queries, None);
        push_display(line, cell, &timeouts, l.timeouts, None);
        push_cell(
            line,
            &answered,
            l.answer_name.as_deref().unwrap_or("-"),
            None,
        );
        cell.clear();
        if let Some(v) = &l.via {
            let cache: &str = v.cache.into();
            write!(cell, "{}:{cache}", v.name).expect("writing to a String cannot fail");
        }
        let shown = if cell.is_empty() { "-" } else { cell.as_str() };
        push_cell(line, &via, shown, None);
        let end = line.trim_end().len();
        line.truncate(end);
        writeln!(self.out, "{}", self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::style;
    use super::*;
    use crate::sink::Sink as _;
    use dnslens_lens::lookup::libc::Source;
    use dnslens_lens::lookup::via::{Cache, Via};
    use dnslens_lens::lookup::{LookupConfig, Lookups};
    use dnslens_lens::model::{sample, TaskName};

    #[test]
    fn a_lookup_is_one_row_under_its_own_header() {
        let mut lookups = Lookups::new(LookupConfig::default(), Box::new(|_| None));
        let q = sample::query(1, "www.example.com", 1, 0);
        let r = sample::response(&q, 0, &["192.0.2.1"], 2_000_000);
        let mut sink = TableSink::new(Vec::new(), style()).with_lookups();
        lookups.event(&q, &mut |_| {});
        lookups.event(&r, &mut |l| assert!(sink.lookup(l).unwrap()));
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("TIME"), "{text}");
        assert!(lines[0].contains("QTYPES     NAME"), "{text}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row[1..],
            [
                "123",
                "dig",
                "-",
                "A",
                "www.example.com",
                "answered",
                "2.00ms",
                "1",
                "0",
                "www.example.com",
                "-"
            ]
        );
    }

    #[test]
    fn a_lookup_through_a_forwarder_names_it_and_its_cache() {
        let q = sample::query(1, "www.example.com", 1, 0);
        let lookup = Lookup {
            time_ns: q.time_ns,
            name: "www.example.com".to_string(),
            answer_name: None,
            qtypes: vec![q.qtype],
            outcome: Outcome::Answered,
            latency_us: 80,
            queries: 1,
            timeouts: 0,
            attempts: Vec::new(),
            via: Some(Via {
                pid: 9,
                name: TaskName::from("dnsmasq"),
                upstream: None,
                upstream_latency_us: None,
                cache: Cache::Hit,
            }),
            source: Source::Dns,
            who: q.who,
        };
        let mut sink = TableSink::new(Vec::new(), style()).with_lookups();
        sink.lookup(&lookup).unwrap();
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert!(text.lines().next().unwrap().ends_with(" VIA"), "{text}");
        assert!(
            text.lines().nth(1).unwrap().ends_with(" dnsmasq:hit"),
            "{text}"
        );
    }
}
