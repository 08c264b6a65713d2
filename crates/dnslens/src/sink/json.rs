//! JSON lines: one object per event and per alert, gathered into buffers of about 64 KiB that a
//! thread of their own writes ([`Writer`]), after each batch of ring-buffer records (the run
//! loop's `flush`) or once full, rather than per line, which cost a write syscall per message
//! under load (docs/performance.md). A consumer (`jq`, a log shipper) gets every line whole.

use std::io::{self, Write};

use dnslens_detect::Alert;
use dnslens_lens::lookup::Lookup;
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::{schema, DnsEvent};

use super::writer::{OutputStats, Writer};
use super::Sink;

pub struct JsonSink<W: Write + Send + 'static> {
    writer: Writer<W>,
    /// `--connects`: a line per connect too.
    connects: bool,
    /// Lines not handed over yet.
    lines: Vec<u8>,
}

impl<W: Write + Send + 'static> JsonSink<W> {
    const HAND_OVER_AT: usize = 64 << 10;

    pub fn new(out: W, connects: bool) -> Self {
        JsonSink {
            writer: Writer::start(out),
            connects,
            lines: Vec::with_capacity(Self::HAND_OVER_AT + 4096),
        }
    }

    fn hand_over_if_full(&mut self) -> io::Result<()> {
        if self.lines.len() >= Self::HAND_OVER_AT {
            self.writer.hand_over(&mut self.lines)?;
        }
        Ok(())
    }

    /// Every line written; the writer.
    #[cfg(test)]
    pub fn into_inner(mut self) -> W {
        self.flush().unwrap();
        self.writer.close().unwrap().expect("not closed before")
    }
}

impl<W: Write + Send + 'static> JsonSink<W> {
    /// One TCP connect, with `--connects`: a line for `dnslens detect` to replay.
    pub fn connect(&mut self, connect: &ConnectEvent) -> io::Result<()> {
        if self.connects {
            schema::write_connect_line(&mut self.lines, connect);
        }
        self.hand_over_if_full()
    }

    /// What the writer cost so far: the run loop's waits for room in its queue and the lines
    /// dropped while it was stalled.
    pub fn output(&self) -> OutputStats {
        self.writer.stats()
    }
}

impl<W: Write + Send + 'static> Sink for JsonSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        schema::write_event_line(&mut self.lines, event);
        self.hand_over_if_full()?;
        Ok(true)
    }

    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        schema::write_lookup_line(&mut self.lines, lookup);
        self.hand_over_if_full()?;
        Ok(true)
    }

    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        schema::write_alert_line(&mut self.lines, alert);
        self.hand_over_if_full()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.check()?;
        if self.lines.is_empty() {
            return Ok(());
        }
        self.writer.hand_over(&mut self.lines)
    }

    fn finish(&mut self, _wall_ns: u64) -> io::Result<()> {
        self.flush()?;
        self.writer.close().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::model::sample;

    #[test]
    fn one_object_per_line() {
        let mut sink = JsonSink::new(Vec::new(), false);
        let q = sample::query(1, "example.com", 1, 0);
        assert!(sink.event(&q).unwrap());
        assert!(sink.event(&sample::response(&q, 3, &[], 5)).unwrap());
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["kind"], "response");
        assert_eq!(v["rcode"], "NXDOMAIN");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn alerts_and_connects_go_in_the_same_stream() {
        use dnslens_detect::{Detector, Evidence, Severity};
        let q = sample::query(1, "x.example", 1, 0);
        let alert = Alert {
            detector: Detector::Dga,
            severity: Severity::High,
            summary: "dig (pid 123) failed".to_string(),
            count: 1,
            window_s: 60,
            evidence: Evidence::default(),
            time_ns: q.time_ns,
            who: q.who.clone(),
        };
        let connect = sample::connect("192.0.2.1:443", 0);
        let mut without = JsonSink::new(Vec::new(), false);
        without.event(&q).unwrap();
        without.alert(&alert).unwrap();
        without.connect(&connect).unwrap();
        let text = String::from_utf8(without.into_inner()).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"query\"", "\"alert\""]);
        assert!(text.contains(&alert.to_json_line()), "{text}");
        let mut with = JsonSink::new(Vec::new(), true);
        with.connect(&connect).unwrap();
        let text = String::from_utf8(with.into_inner()).unwrap();
        assert!(
            text.starts_with('{') && text.contains("\"kind\":\"connect\""),
            "{text}"
        );
    }
}
