//! The live table: one aligned row per exchange (a response, paired or not, or a query left
//! unanswered); queries themselves are not rows, their response or timeout is.

use std::io::{self, Write};

use dnslens_lens::clock::Civil;
use dnslens_lens::{DnsEvent, Kind};

use super::Sink;

/// How the table looks.
#[derive(Clone, Copy, Debug)]
pub struct TableStyle {
    /// ANSI colours (only when stdout is a terminal, unless asked).
    pub color: bool,
    /// Terminal width, to cut the answers column; `None` when not a terminal.
    pub width: Option<usize>,
    /// Seconds east of UTC at a wall-clock time, for the TIME column.
    pub utc_offset: fn(u64) -> i64,
}

const QNAME_MIN: usize = 28;
const QNAME_MAX: usize = 60;
const ANSWERS_MAX: usize = 80;
const ANSWERS_SHOWN: usize = 3;

/// (title, width, right-aligned) of the fixed columns before QNAME, and after it.
const LEFT: [(&str, usize, bool); 5] = [
    ("TIME", 12, false),
    ("PID", 7, true),
    ("PROCESS", 15, false),
    ("CGROUP", 20, false),
    ("QTYPE", 6, false),
];
const RIGHT: [(&str, usize, bool); 2] = [("RCODE", 9, false), ("LATENCY", 8, true)];

pub struct TableSink<W: Write> {
    out: W,
    style: TableStyle,
    header_done: bool,
    /// Grows with the longest name seen, up to QNAME_MAX, so later rows line up better.
    qname_width: usize,
}

impl<W: Write> TableSink<W> {
    pub fn new(out: W, style: TableStyle) -> Self {
        TableSink {
            out,
            style,
            header_done: false,
            qname_width: QNAME_MIN,
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn header(&self) -> String {
        let mut cells: Vec<String> = LEFT.iter().map(|&(t, w, r)| pad(t, w, r)).collect();
        cells.push(pad("QNAME", self.qname_width, false));
        cells.extend(RIGHT.iter().map(|&(t, w, r)| pad(t, w, r)));
        cells.push("ANSWERS".to_string());
        let line = cells.join(" ");
        if self.style.color {
            format!("\x1b[1m{line}\x1b[0m")
        } else {
            line
        }
    }

    /// The row of an exchange event.
    fn row(&mut self, e: &DnsEvent) -> String {
        let qname_len = e.qname.chars().count();
        if qname_len > self.qname_width {
            self.qname_width = qname_len.min(QNAME_MAX);
        }
        let civil = Civil::from_wall_ns(e.time_ns, (self.style.utc_offset)(e.time_ns));
        let time = format!(
            "{:02}:{:02}:{:02}.{:03}",
            civil.hour,
            civil.minute,
            civil.second,
            civil.nanos / 1_000_000
        );
        let name = if e.process.name.is_empty() {
            &e.process.comm
        } else {
            &e.process.name
        };
        let qtype = e.qtype.to_string();
        let left = [
            time,
            e.process.pid.to_string(),
            name.to_string(),
            short_cgroup(&e.cgroup),
            qtype,
        ];
        let mut cells: Vec<String> = left
            .iter()
            .zip(LEFT)
            .map(|(text, (_, w, r))| pad(&fit(text, w), w, r))
            .collect();
        cells.push(pad(
            &fit_tail(&e.qname, self.qname_width),
            self.qname_width,
            false,
        ));

        let (rcode, colour) = match (e.kind, e.rcode) {
            (Kind::Unanswered, _) => ("TIMEOUT".to_string(), RED),
            (_, Some(r)) if r.0 == 0 => (r.to_string(), GREEN),
            (_, Some(r)) if r.0 == 3 => (r.to_string(), YELLOW),
            (_, Some(r)) => (r.to_string(), RED),
            (_, None) => ("-".to_string(), ""),
        };
        let rcode_cell = pad(&rcode, RIGHT[0].1, false);
        cells.push(if self.style.color && !colour.is_empty() {
            format!("{colour}{rcode_cell}{RESET}")
        } else {
            rcode_cell
        });
        cells.push(pad(&latency(e.latency_us), RIGHT[1].1, true));

        let used: usize =
            LEFT.iter().chain(&RIGHT).map(|c| c.1 + 1).sum::<usize>() + self.qname_width + 1;
        let room = self
            .style
            .width
            .map_or(ANSWERS_MAX, |w| w.saturating_sub(used).max(10));
        cells.push(fit(&answers(e), room));
        cells.join(" ").trim_end().to_string()
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        if event.kind == Kind::Query {
            return Ok(false);
        }
        let row = self.row(event);
        if !self.header_done {
            self.header_done = true;
            writeln!(self.out, "{}", self.header())?;
        }
        writeln!(self.out, "{row}")?;
        self.out.flush()?;
        Ok(true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

fn pad(text: &str, width: usize, right: bool) -> String {
    if right {
        format!("{text:>width$}")
    } else {
        format!("{text:<width$}")
    }
}

/// Cut to `width` characters, marking the cut with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Cut to `width` characters keeping the end: for names, the zone is the informative part.
fn fit_tail(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    let mut s = String::from("…");
    s.extend(text.chars().skip(len - width.saturating_sub(1)));
    s
}

fn latency(us: Option<u64>) -> String {
    match us {
        None => "-".to_string(),
        Some(us) if us < 1_000 => format!("{us}us"),
        Some(us) if us < 10_000 => format!("{:.2}ms", us as f64 / 1e3),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn answers(e: &DnsEvent) -> String {
    if e.answers.is_empty() {
        return "-".to_string();
    }
    let mut s: Vec<&str> = e
        .answers
        .iter()
        .take(ANSWERS_SHOWN)
        .map(|a| a.data.as_str())
        .collect();
    let more = e.answers.len().saturating_sub(ANSWERS_SHOWN);
    let extra = format!("+{more}");
    if more > 0 {
        s.push(&extra);
    }
    s.join(" ")
}

/// The telling part of a cgroup path: a container id (12 hex digits of a long hex name, out of
/// a runtime's scope), else the last component. "/" stays "/"; unresolved is "-".
pub fn short_cgroup(path: &str) -> String {
    if path.is_empty() {
        return "-".to_string();
    }
    let last = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("/");
    let mut name = last.strip_suffix(".scope").unwrap_or(last);
    for prefix in [
        "cri-containerd-",
        "docker-",
        "crio-",
        "libpod-",
        "containerd-",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            name = rest;
            break;
        }
    }
    if name.len() >= 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return name[..12].to_string();
    }
    if name == last {
        last.to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::model::sample;

    fn style() -> TableStyle {
        TableStyle {
            color: false,
            width: None,
            utc_offset: |_| 0,
        }
    }

    fn render(events: &[DnsEvent], style: TableStyle) -> String {
        let mut sink = TableSink::new(Vec::new(), style);
        for e in events {
            sink.event(e).unwrap();
        }
        String::from_utf8(sink.into_inner()).unwrap()
    }

    #[test]
    fn rows_for_exchanges_only_aligned_under_the_header() {
        let q = sample::query(1, "example.com", 1, 0);
        let mut r = sample::response(&q, 0, &["93.184.215.14"], 123_456_789);
        r.latency_us = Some(2_345);
        r.cgroup = "/kubepods.slice/kubepods-pod1.slice/cri-containerd-\
                    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"
            .to_string();
        let mut u = sample::query(2, "slow.example", 28, 1_000_000_000);
        u.kind = Kind::Unanswered;
        u.timeout_ms = Some(5000);
        let text = render(&[q, r, u], style());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "TIME             PID PROCESS         CGROUP               QTYPE  QNAME                        RCODE      LATENCY ANSWERS"
        );
        assert_eq!(
            lines[1],
            "10:54:55.123     123 dig             0123456789ab         A      example.com                  NOERROR     2.35ms 93.184.215.14"
        );
        assert_eq!(
            lines[2],
            "10:54:56.000     123 dig             -                    AAAA   slow.example                 TIMEOUT          - -"
        );
        let col = lines[0].find("RCODE").unwrap();
        assert_eq!(lines[1].find("NOERROR"), Some(col));
        assert_eq!(lines[2].find("TIMEOUT"), Some(col));
    }

    #[test]
    fn long_names_keep_their_tail_and_answers_are_cut_to_the_width() {
        let name = format!("{}.exfil.example.com", "a".repeat(80));
        let q = sample::query(1, &name, 16, 0);
        let ips: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        let r = sample::response(&q, 0, &ips, 1);
        let wide = render(
            std::slice::from_ref(&r),
            TableStyle {
                width: Some(180),
                ..style()
            },
        );
        let row = wide.lines().nth(1).unwrap();
        assert!(
            row.contains(" …aaa") && row.contains("a.exfil.example.com NOERROR"),
            "{row}"
        );
        assert!(row.ends_with(" 192.0.2.1 192.0.2.2 192.0.2.3 +2"), "{row}");
        assert!(row.chars().count() <= 180, "{row}");
        let narrow = render(
            &[r],
            TableStyle {
                width: Some(160),
                ..style()
            },
        );
        let row = narrow.lines().nth(1).unwrap();
        assert!(row.ends_with(" 192.0.2.1 192.…"), "{row}");
        assert_eq!(row.chars().count(), 160, "{row}");
    }

    #[test]
    fn colour_marks_rcodes_only_when_asked() {
        let q = sample::query(1, "nx.example", 1, 0);
        let r = sample::response(&q, 3, &[], 1);
        let plain = render(std::slice::from_ref(&r), style());
        assert!(!plain.contains('\x1b'));
        let coloured = render(
            &[r],
            TableStyle {
                color: true,
                ..style()
            },
        );
        assert!(coloured.contains("\x1b[33mNXDOMAIN"), "{coloured}");
        assert!(coloured.starts_with("\x1b[1mTIME"));
    }

    #[test]
    fn formats() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(850)), "850us");
        assert_eq!(latency(Some(2_345)), "2.35ms");
        assert_eq!(latency(Some(123_456)), "123.5ms");
        assert_eq!(latency(Some(2_500_000)), "2.50s");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_tail("abcdef", 4), "…def");
        assert_eq!(short_cgroup(""), "-");
        assert_eq!(short_cgroup("/"), "/");
        assert_eq!(
            short_cgroup("/system.slice/systemd-resolved.service"),
            "systemd-resolved.service"
        );
        assert_eq!(
            short_cgroup("/user.slice/user-0.slice/session-3.scope"),
            "session-3"
        );
        let id = "ab".repeat(32);
        assert_eq!(
            short_cgroup(&format!("/kubepods/burstable/pod1/{id}")),
            "abababababab"
        );
        assert_eq!(
            short_cgroup(&format!("/system.slice/docker-{id}.scope")),
            "abababababab"
        );
    }
}
