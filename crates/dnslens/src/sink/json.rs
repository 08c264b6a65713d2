//! JSON lines: one object per event and per alert, written out after each batch of ring-buffer records (the
//! run loop's `flush`) rather than per line, which cost a write syscall per message under load
//! (docs/performance.md). A consumer (`jq`, a log shipper) gets every line whole.

use std::io::{self, Write};

use dnslens_detect::Alert;
use dnslens_lens::model::ConnectEvent;
use dnslens_lens::{json, DnsEvent};

use super::Sink;

pub struct JsonSink<W: Write> {
    out: W,
    /// `--connects`: a line per connect too.
    connects: bool,
    /// Lines not yet written. Written whole once past [`JsonSink::WRITE_AT`], so that a
    /// buffered `out` passes them straight through rather than copying them again.
    lines: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    const WRITE_AT: usize = 64 << 10;

    pub fn new(out: W, connects: bool) -> Self {
        JsonSink {
            out,
            connects,
            lines: Vec::with_capacity(Self::WRITE_AT + 4096),
        }
    }

    fn write_if_full(&mut self) -> io::Result<()> {
        if self.lines.len() >= Self::WRITE_AT {
            self.write_lines()?;
        }
        Ok(())
    }

    fn write_lines(&mut self) -> io::Result<()> {
        let written = self.out.write_all(&self.lines);
        self.lines.clear();
        written
    }

    #[cfg(test)]
    pub fn into_inner(mut self) -> W {
        self.write_lines().unwrap();
        self.out
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        json::write_event_line(&mut self.lines, event);
        self.write_if_full()?;
        Ok(true)
    }

    fn connect(&mut self, connect: &ConnectEvent) -> io::Result<()> {
        if self.connects {
            json::write_connect_line(&mut self.lines, connect);
        }
        self.write_if_full()
    }

    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        serde_json::to_writer(&mut self.lines, alert)?;
        self.lines.push(b'\n');
        self.write_if_full()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_lines()?;
        self.out.flush()
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
        use dnslens_detect::{Attribution, Detector, Evidence, Severity};
        let q = sample::query(1, "x.example", 1, 0);
        let alert = Alert {
            detector: Detector::Dga,
            severity: Severity::High,
            summary: "dig (pid 123) failed".to_string(),
            count: 1,
            window_s: 60,
            evidence: Evidence::default(),
            who: Attribution::of_event(&q),
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
