//! JSON lines: one object per event, written out after each batch of ring-buffer records (the
//! run loop's `flush`) rather than per line, which cost a write syscall per message under load
//! (docs/performance.md). A consumer (`jq`, a log shipper) gets every line whole.

use std::io::{self, Write};

use dnslens_lens::{json, DnsEvent};

use super::Sink;

pub struct JsonSink<W: Write> {
    out: W,
    /// Lines not yet written. Written whole once past [`JsonSink::WRITE_AT`], so that a
    /// buffered `out` passes them straight through rather than copying them again.
    lines: Vec<u8>,
}

impl<W: Write> JsonSink<W> {
    const WRITE_AT: usize = 64 << 10;

    pub fn new(out: W) -> Self {
        JsonSink {
            out,
            lines: Vec::with_capacity(Self::WRITE_AT + 4096),
        }
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
        if self.lines.len() >= Self::WRITE_AT {
            self.write_lines()?;
        }
        Ok(true)
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
        let mut sink = JsonSink::new(Vec::new());
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
}
