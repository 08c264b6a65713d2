//! The live table: one aligned row per exchange (a response, paired or not, or a query left
//! unanswered); queries themselves are not rows, their response or timeout is. ROLE tells the
//! two ends of an exchange apart when both run on this host: `client` is the process that asked,
//! `server` the one that answered (dnsmasq, systemd-resolved, CoreDNS).
//!
//! With a cluster, POD (`namespace/name`) and CONTAINER (its name) take CGROUP's place; on a
//! terminal too narrow for every column they narrow and PID, then ROLE, are left out, in the
//! order of [`FIT_STEPS`], so that rows stay within the width (120 columns and more).
//!
//! Alerts of the detectors come between the rows as lines of their own, cut to a terminal's
//! width: `ALERT <detector> <severity> <summary>`, the summary naming the process and its pod.

use dnslens_probe::Named;
use std::fmt::{Display, Write as _};
use std::io::{self, Write};

use dnslens_detect::{Alert, Severity};
use dnslens_lens::clock::Civil;
use dnslens_lens::identity::{write_into, Identity};
use dnslens_lens::lookup::Lookup;
use dnslens_lens::model::{Attribution, TIMEOUT};
use dnslens_lens::text::{printable, Printable};
use dnslens_lens::{DnsEvent, Kind, Role};
use dnslens_wire::Rcode;

use super::Sink;

mod lookup;

/// How the table looks.
#[derive(Clone, Debug)]
pub struct TableStyle {
    /// ANSI colours (only when stdout is a terminal, unless asked).
    pub color: bool,
    /// Terminal width: rows are fitted to it. `None` when not a terminal.
    pub width: Option<usize>,
    /// Seconds east of UTC at a wall-clock time, for the TIME column.
    pub utc_offset: fn(u64) -> i64,
    /// Show POD and CONTAINER (a pod directory names them) instead of CGROUP.
    pub pods: bool,
    /// `--columns`: these, in this order, instead of the defaults.
    pub columns: Option<Vec<Cell>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    Right,
    /// Left-aligned, cut at the start: the end of a name (its zone) is the telling part.
    LeftKeepTail,
}

#[derive(Clone, Copy, Debug)]
struct Column {
    title: &'static str,
    width: usize,
    align: Align,
}

const fn column(title: &'static str, width: usize, align: Align) -> Column {
    Column {
        title,
        width,
        align,
    }
}

/// What a column shows; `--columns` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cell {
    Time,
    Pid,
    Process,
    Role,
    /// A container's id (12 hex digits), else the cgroup's last component.
    Cgroup,
    Pod,
    Container,
    /// The server the exchange went to: where a query was sent, whence a response came.
    Server,
    /// udp or tcp.
    Proto,
    Qtype,
    Qname,
    Rcode,
    Latency,
    /// The least TTL of the answers.
    Ttl,
    Answers,
}

impl Cell {
    /// The column's title and width; QNAME's width is the layout's, ANSWERS takes the rest.
    const fn column(self) -> Column {
        match self {
            // HH:MM:SS.mmm
            Cell::Time => column("TIME", 12, Align::Left),
            // The largest pid_max is 4194304.
            Cell::Pid => column("PID", 7, Align::Right),
            // Kernel task names are at most 15 bytes.
            Cell::Process => column("PROCESS", 15, Align::Left),
            Cell::Role => column("ROLE", 6, Align::Left),
            // `nginx.service`, or a container id's 12 hex digits.
            Cell::Cgroup => column("CGROUP", 16, Align::Left),
            // `namespace/name`: each may be 63 characters, together they are rarely more
            // than 36 (`kube-system/coredns-5d78c9869d-4xk2p`).
            Cell::Pod => column("POD", 36, Align::Left),
            // The container's name, or its id's first 12 hex digits.
            Cell::Container => column("CONTAINER", 14, Align::Left),
            // `255.255.255.255:65535`; an IPv6 server keeps its end.
            Cell::Server => column("SERVER", 21, Align::LeftKeepTail),
            Cell::Proto => column("PROTO", 5, Align::Left),
            Cell::Qtype => column("QTYPE", 6, Align::Left),
            Cell::Qname => column("QNAME", QNAME_PIPED, Align::LeftKeepTail),
            // NXDOMAIN, SERVFAIL, TIMEOUT.
            Cell::Rcode => column("RCODE", 8, Align::Left),
            // Up to `999.9ms`.
            Cell::Latency => column("LATENCY", 7, Align::Right),
            // A week in seconds is 6 digits.
            Cell::Ttl => column("TTL", 6, Align::Right),
            Cell::Answers => column("ANSWERS", ANSWERS_MAX, Align::Left),
        }
    }

    /// Whether its width varies with the terminal (QNAME and ANSWERS).
    fn is_elastic(self) -> bool {
        matches!(self, Cell::Qname | Cell::Answers)
    }
}

/// The columns without a cluster, and with one (POD and CONTAINER take CGROUP's place).
const HOST_COLUMNS: [Cell; 13] = [
    Cell::Time,
    Cell::Pid,
    Cell::Process,
    Cell::Role,
    Cell::Cgroup,
    Cell::Server,
    Cell::Proto,
    Cell::Qtype,
    Cell::Qname,
    Cell::Rcode,
    Cell::Latency,
    Cell::Ttl,
    Cell::Answers,
];
const POD_COLUMNS: [Cell; 14] = [
    Cell::Time,
    Cell::Pid,
    Cell::Process,
    Cell::Role,
    Cell::Pod,
    Cell::Container,
    Cell::Server,
    Cell::Proto,
    Cell::Qtype,
    Cell::Qname,
    Cell::Rcode,
    Cell::Latency,
    Cell::Ttl,
    Cell::Answers,
];

/// How the columns are fitted to a narrow terminal, step by step until a row with QNAME_WANT and
/// ANSWERS_MIN fits: narrow a column (only as much as needed, not below the width given) or
/// leave one out. Columns a user chose are narrowed, never left out.
#[derive(Clone, Copy, Debug)]
enum Fit {
    Narrow(Cell, usize),
    Drop(Cell),
}

const FIT_STEPS: [Fit; 18] = [
    Fit::Narrow(Cell::Server, 15),
    Fit::Narrow(Cell::Process, 12),
    Fit::Narrow(Cell::Cgroup, 12),
    Fit::Narrow(Cell::Pod, 24),
    Fit::Narrow(Cell::Container, 12),
    Fit::Drop(Cell::Ttl),
    Fit::Drop(Cell::Proto),
    Fit::Narrow(Cell::Pod, 20),
    Fit::Narrow(Cell::Qtype, 5),
    Fit::Drop(Cell::Pid),
    Fit::Drop(Cell::Cgroup),
    Fit::Drop(Cell::Role),
    Fit::Narrow(Cell::Container, 10),
    Fit::Narrow(Cell::Process, 10),
    Fit::Narrow(Cell::Server, 12),
    Fit::Drop(Cell::Server),
    // A pod's name is what a cluster's user reads first: narrowed last.
    Fit::Narrow(Cell::Pod, 16),
    Fit::Narrow(Cell::Pod, 12),
];

/// The columns for `style`, fitted to the terminal's width; `--columns` replaces the defaults.
fn layout(style: &TableStyle) -> Vec<(Cell, Column)> {
    let cells: &[Cell] = match (&style.columns, style.pods) {
        (Some(chosen), _) => chosen,
        (None, false) => &HOST_COLUMNS,
        (None, true) => &POD_COLUMNS,
    };
    let mut columns: Vec<(Cell, Column)> = cells.iter().map(|&c| (c, c.column())).collect();
    let Some(width) = style.width else {
        return columns;
    };
    for step in FIT_STEPS {
        let excess = (fixed_width(&columns) + elastic_min(&columns)).saturating_sub(width);
        if excess == 0 {
            break;
        }
        match step {
            Fit::Narrow(cell, min) => {
                if let Some((_, col)) = columns.iter_mut().find(|(c, _)| *c == cell) {
                    col.width -= excess.min(col.width.saturating_sub(min));
                }
            }
            Fit::Drop(cell) if style.columns.is_none() => columns.retain(|(c, _)| *c != cell),
            Fit::Drop(_) => {}
        }
    }
    columns
}

/// Characters of a row outside QNAME and ANSWERS: the fixed columns and every separator.
fn fixed_width(columns: &[(Cell, Column)]) -> usize {
    columns
        .iter()
        .map(|(cell, col)| if cell.is_elastic() { 1 } else { col.width + 1 })
        .sum()
}

/// The room QNAME and ANSWERS are fitted for, those of them shown.
fn elastic_min(columns: &[(Cell, Column)]) -> usize {
    let has = |cell| columns.iter().any(|(c, _)| *c == cell);
    usize::from(has(Cell::Qname)) * QNAME_WANT + usize::from(has(Cell::Answers)) * ANSWERS_MIN
}

/// QNAME's width when not on a terminal; on one, what columns are left out to give it, and its
/// least and most. It is set once, so rows line up from the first to the last.
const QNAME_PIPED: usize = 48;
const QNAME_WANT: usize = 24;
const QNAME_MIN: usize = 16;
const QNAME_MAX: usize = 60;
/// Room for answers when not on a terminal, and the least kept for them on one (an IPv4
/// address and a space).
const ANSWERS_MAX: usize = 80;
const ANSWERS_MIN: usize = 16;
const ANSWERS_SHOWN: usize = 3;

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

pub struct TableSink<W: Write> {
    out: W,
    style: TableStyle,
    /// Every column in order, QNAME at its layout width, ANSWERS at what the rest leaves.
    columns: Vec<(Cell, Column)>,
    /// Whether ROLE is among them (it is left out on narrow terminals).
    has_role: bool,
    header_done: bool,
    /// `--lookups`: rows are lookups, under their own header.
    lookups: bool,
    /// The line being built, and the text of one cell: reused, so that a row allocates
    /// nothing once they have grown.
    line: String,
    cell: String,
}

impl<W: Write> TableSink<W> {
    pub fn new(out: W, style: TableStyle) -> Self {
        let mut columns = layout(&style);
        let fixed = fixed_width(&columns);
        let has_answers = columns.iter().any(|(c, _)| *c == Cell::Answers);
        let qname_width = style.width.map_or(QNAME_PIPED, |w| {
            let answers = if has_answers { ANSWERS_MIN } else { 0 };
            w.saturating_sub(fixed + answers)
                .clamp(QNAME_MIN, QNAME_MAX)
        });
        let answers_width = style.width.map_or(ANSWERS_MAX, |w| {
            let qname = if columns.iter().any(|(c, _)| *c == Cell::Qname) {
                qname_width
            } else {
                0
            };
            // On a terminal too narrow for every column, answers get what is left; their
            // separator, counted in `fixed`, is the row's end and is not written.
            (w + 1).saturating_sub(fixed + qname).max(1)
        });
        for (cell, col) in &mut columns {
            match cell {
                Cell::Qname => col.width = qname_width,
                Cell::Answers => col.width = answers_width,
                _ => {}
            }
        }
        TableSink {
            out,
            has_role: columns.iter().any(|(c, _)| *c == Cell::Role),
            style,
            columns,
            header_done: false,
            lookups: false,
            line: String::new(),
            cell: String::new(),
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn header(&mut self) {
        let line = &mut self.line;
        line.clear();
        if self.style.color {
            line.push_str(BOLD);
        }
        if self.lookups {
            for col in lookup::columns(self.style.pods) {
                push_cell(line, &col, col.title, None);
            }
        } else {
            for (_, col) in &self.columns {
                push_cell(line, col, col.title, None);
            }
        }
        if self.style.color {
            line.push_str(RESET);
        }
        let end = line.trim_end().len();
        line.truncate(end);
    }

    /// Writes the header before the first row or alert line.
    fn header_once(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            self.header();
            writeln!(self.out, "{}", self.line)?;
        }
        Ok(())
    }

    /// Builds the row of an exchange event in `self.line`.
    fn row(&mut self, e: &DnsEvent) {
        let Self {
            line,
            cell,
            columns,
            has_role,
            style,
            ..
        } = self;
        let colour = |c: &'static str| style.color.then_some(c);
        line.clear();

        for (kind, col) in columns.iter() {
            match kind {
                Cell::Time => push_time(line, cell, col, e.time_ns, style),
                Cell::Pid => push_display(line, cell, col, e.who.process.pid, None),
                Cell::Process => {
                    // Where ROLE was left out to fit, servers are told by colour alone.
                    let server = !*has_role && e.role == Role::Server;
                    let name = e.who.process.display_name();
                    push_cell(line, col, name, colour(CYAN).filter(|_| server));
                }
                Cell::Role => {
                    let role_colour = match e.role {
                        Role::Client => None,
                        Role::Server => colour(CYAN),
                    };
                    push_cell(line, col, e.role.name(), role_colour);
                }
                Cell::Cgroup => push_cgroup(line, col, &e.who),
                Cell::Pod => push_pod(line, cell, col, &e.who),
                Cell::Container => {
                    let text = match &e.who.container {
                        Some(c) => match &c.name {
                            Some(name) => name.as_str(),
                            // An id prefix needs no mark where it is cut.
                            None => {
                                let id = c.short_id();
                                &id[..id.len().min(col.width)]
                            }
                        },
                        None if e.who.pod.is_some() => "-",
                        None => cgroup_leaf(&e.who.cgroup),
                    };
                    push_cell(line, col, text, None);
                }
                Cell::Server => {
                    let server = if e.kind == Kind::Response {
                        e.src
                    } else {
                        e.dst
                    };
                    push_display(line, cell, col, server, None);
                }
                Cell::Proto => push_cell(line, col, e.transport.name(), None),
                Cell::Qtype => push_display(line, cell, col, e.qtype, None),
                Cell::Qname => {
                    // In a cluster, service names and the resolver's search-list expansions
                    // (`api.example.com.shop.svc.cluster.local`) all end in the cluster
                    // domain: their head is the telling part.
                    let col = if style.pods && e.qname.contains(".svc.") {
                        Column {
                            align: Align::Left,
                            ..*col
                        }
                    } else {
                        *col
                    };
                    push_cell(line, &col, &e.qname, None);
                }
                Cell::Rcode => match (e.kind, e.rcode) {
                    (Kind::Unanswered, _) => push_cell(line, col, TIMEOUT, colour(RED)),
                    (_, Some(rcode)) => {
                        let c = match rcode {
                            Rcode::NOERROR => GREEN,
                            Rcode::NXDOMAIN => YELLOW,
                            _ => RED,
                        };
                        push_display(line, cell, col, rcode, colour(c));
                    }
                    (_, None) => push_cell(line, col, "-", None),
                },
                Cell::Latency => match e.latency_us {
                    Some(us) => push_display(line, cell, col, Latency(us), None),
                    None => push_cell(line, col, "-", None),
                },
                Cell::Ttl => match e.answers.iter().map(|a| a.ttl).min() {
                    Some(ttl) => push_display(line, cell, col, ttl, None),
                    None => push_cell(line, col, "-", None),
                },
                Cell::Answers => {
                    answers(e, cell);
                    push_cut(line, cell, col.width, false);
                    line.push(' ');
                }
            }
        }
        let end = line.trim_end().len();
        line.truncate(end);
    }
}

impl<W: Write> Sink for TableSink<W> {
    fn event(&mut self, event: &DnsEvent) -> io::Result<bool> {
        if !event.is_exchange() {
            return Ok(false);
        }
        self.header_once()?;
        self.row(event);
        writeln!(self.out, "{}", self.line)?;
        Ok(true)
    }

    /// A line of its own, whole when piped, cut to the terminal's width on one (the JSON
    /// lines and `dnslens detect` keep every word).
    fn alert(&mut self, alert: &Alert) -> io::Result<()> {
        self.header_once()?;
        let colour = match alert.severity {
            _ if !self.style.color => None,
            Severity::High => Some(RED),
            Severity::Medium => Some(YELLOW),
            Severity::Low => None,
        };
        let (start, end) = colour.map_or(("", ""), |c| (c, RESET));
        self.cell.clear();
        // The summary begins with whom it is about (process, pid, pod): not said twice.
        write!(
            self.cell,
            "ALERT {} {} {}",
            alert.detector,
            alert.severity.name(),
            Printable(&alert.summary)
        )
        .expect("writing to a String cannot fail");
        self.line.clear();
        push_cut(
            &mut self.line,
            &self.cell,
            self.style.width.unwrap_or(usize::MAX),
            false,
        );
        writeln!(self.out, "{start}{}{end}", self.line)
    }

    fn lookup(&mut self, lookup: &Lookup) -> io::Result<bool> {
        self.lookup_row(lookup)?;
        Ok(true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Appends `text` fitted to `col` (cut and padded to its width), in `colour` if given, then
/// the separator.
fn push_cell(line: &mut String, col: &Column, text: &str, colour: Option<&str>) {
    // Names, paths and labels are the workloads': no control character reaches the terminal.
    let text = &*printable(text);
    let shown = text.chars().count().min(col.width);
    let pad = col.width - shown;
    if let Some(c) = colour {
        line.push_str(c);
    }
    if col.align == Align::Right {
        line.extend(std::iter::repeat_n(' ', pad));
    }
    push_cut(line, text, col.width, col.align == Align::LeftKeepTail);
    if col.align != Align::Right {
        line.extend(std::iter::repeat_n(' ', pad));
    }
    if colour.is_some() {
        line.push_str(RESET);
    }
    line.push(' ');
}

/// TIME: the local time of day of `wall_ns`, to the millisecond.
fn push_time(line: &mut String, cell: &mut String, col: &Column, wall_ns: u64, style: &TableStyle) {
    let t = Civil::from_wall_ns(wall_ns, (style.utc_offset)(wall_ns));
    let ms = t.nanos / 1_000_000;
    let (h, m, s) = (t.hour, t.minute, t.second);
    let time = format_args!("{h:02}:{m:02}:{s:02}.{ms:03}");
    push_display(line, cell, col, time, None);
}

/// CGROUP: a container's short id, else the cgroup's last component.
fn push_cgroup(line: &mut String, col: &Column, who: &Attribution) {
    match &who.container {
        Some(c) => push_cell(line, col, c.short_id(), None),
        None => push_cell(line, col, cgroup_leaf(&who.cgroup), None),
    }
}

/// POD: `namespace/name`, `-` outside pods.
fn push_pod(line: &mut String, cell: &mut String, col: &Column, who: &Attribution) {
    match Identity::of(who) {
        id @ Identity::Pod { .. } => write_into(cell, id),
        _ => write_into(cell, '-'),
    }
    push_cell(line, col, cell, None);
}

/// [`push_cell`] for a value to format first, in `scratch`.
fn push_display(
    line: &mut String,
    scratch: &mut String,
    col: &Column,
    value: impl Display,
    colour: Option<&str>,
) {
    scratch.clear();
    write!(scratch, "{value}").expect("writing to a String cannot fail");
    push_cell(line, col, scratch, colour);
}

/// Appends `text` cut to `width` characters, the cut marked with `…`: at the end, or at the
/// start when `keep_tail`.
fn push_cut(line: &mut String, text: &str, width: usize, keep_tail: bool) {
    let len = text.chars().count();
    if len <= width {
        line.push_str(text);
        return;
    }
    let keep = width.saturating_sub(1);
    let byte_at = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i)
    };
    if keep_tail {
        line.push('…');
        line.push_str(&text[byte_at(len - keep)..]);
    } else {
        line.push_str(&text[..byte_at(keep)]);
        line.push('…');
    }
}

/// A latency in microseconds with three significant digits, at most 7 characters below 1000 s.
struct Latency(u64);

impl Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0;
        match us {
            0..1_000 => write!(f, "{us}us"),
            1_000..10_000 => write!(f, "{:.2}ms", us as f64 / 1e3),
            10_000..1_000_000 => write!(f, "{:.1}ms", us as f64 / 1e3),
            _ => write!(f, "{:.2}s", us as f64 / 1e6),
        }
    }
}

/// The first answers' data, and `+N` for the rest; `-` when there are none.
fn answers(e: &DnsEvent, out: &mut String) {
    out.clear();
    if e.answers.is_empty() {
        out.push('-');
        return;
    }
    for (i, answer) in e.answers.iter().take(ANSWERS_SHOWN).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&answer.data);
    }
    let more = e.answers.len().saturating_sub(ANSWERS_SHOWN);
    if more > 0 {
        write!(out, " +{more}").expect("writing to a String cannot fail");
    }
}

/// The last component of a cgroup path, for what is not a container ("/" stays "/");
/// unresolved is "-".
fn cgroup_leaf(path: &str) -> &str {
    if path.is_empty() {
        return "-";
    }
    path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnslens_lens::model::sample;

    pub(super) fn style() -> TableStyle {
        TableStyle {
            color: false,
            width: None,
            utc_offset: |_| 0,
            pods: false,
            columns: None,
        }
    }

    fn render(events: &[DnsEvent], style: TableStyle) -> String {
        let mut sink = TableSink::new(Vec::new(), style);
        for e in events {
            sink.event(e).unwrap();
        }
        String::from_utf8(sink.into_inner()).unwrap()
    }

    /// dnsmasq's side of `query`: it received the query and sent `response`.
    fn server_side(response: &DnsEvent) -> DnsEvent {
        let mut e = response.clone();
        e.role = Role::Server;
        e.who.process.pid = 870;
        e.who.process.name = "dnsmasq".into();
        e.latency_us = Some(120);
        e
    }

    fn cut(text: &str, width: usize, keep_tail: bool) -> String {
        let mut line = String::new();
        push_cut(&mut line, text, width, keep_tail);
        line
    }

    /// Names are the workloads' to choose: no control character of theirs reaches the
    /// terminal, in rows or in alert lines.
    #[test]
    fn hostile_names_do_not_reach_the_terminal() {
        use dnslens_detect::{Detector, Evidence};
        use std::sync::Arc;
        let forged = "\x1b[2J\x1b[1;1Hforged";
        let mut q = sample::query(1, "x.example", 1, 0);
        q.who.process.name = forged.into();
        q.who.cgroup = Arc::from(format!("/system.slice/{forged}.service").as_str());
        let r = sample::response(&q, 0, &["10.0.0.1"], 1_000_000);
        let mut sink = TableSink::new(Vec::new(), style());
        sink.event(&r).unwrap();
        let alert = Alert {
            detector: Detector::UnknownBinary,
            severity: Severity::High,
            summary: format!("{forged} (pid 123) queried x.example"),
            count: 1,
            window_s: 0,
            evidence: Evidence::default(),
            time_ns: r.time_ns,
            who: r.who.clone(),
        };
        sink.alert(&alert).unwrap();
        let text = String::from_utf8(sink.out).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("\\x1b[2J"), "{text}");
    }

    #[test]
    fn rows_for_exchanges_only_aligned_under_the_header() {
        let q = sample::query(1, "example.com", 1, 0);
        let mut r = sample::response(&q, 0, &["93.184.215.14"], 123_456_789);
        r.latency_us = Some(2_345);
        r.who.cgroup = "/kubepods.slice/kubepods-pod1.slice/cri-containerd-\
                    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"
            .into();
        r.who.container = Some(dnslens_lens::model::Container {
            id: "0123456789abcdef".repeat(4).into(),
            runtime: dnslens_lens::container::Runtime::Containerd,
            name: None,
        });
        let s = server_side(&r);
        let mut u = sample::query(2, "slow.example", 28, 1_000_000_000);
        u.kind = Kind::Unanswered;
        u.timeout_ms = Some(5000);
        let text = render(&[q, r, s, u], style());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines,
            [
                "TIME             PID PROCESS         ROLE   CGROUP           SERVER                PROTO QTYPE  QNAME                                            RCODE    LATENCY    TTL ANSWERS",
                "10:54:55.123     123 dig             client 0123456789ab     10.1.1.1:53           udp   A      example.com                                      NOERROR   2.35ms    300 93.184.215.14",
                "10:54:55.123     870 dnsmasq         server 0123456789ab     10.1.1.1:53           udp   A      example.com                                      NOERROR    120us    300 93.184.215.14",
                "10:54:56.000     123 dig             client -                10.1.1.1:53           udp   AAAA   slow.example                                     TIMEOUT        -      - -",
            ]
        );
        for title in ["ROLE", "RCODE", "ANSWERS"] {
            let col = lines[0].find(title).unwrap();
            for row in &lines[1..] {
                assert_eq!(row.chars().nth(col - 1), Some(' '), "{title}: {row}");
                assert_ne!(row.chars().nth(col), Some(' '), "{title}: {row}");
            }
        }
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
                width: Some(220),
                ..style()
            },
        );
        let row = wide.lines().nth(1).unwrap();
        assert!(
            row.contains(" …aaa") && row.contains("a.exfil.example.com NOERROR"),
            "{row}"
        );
        assert!(row.ends_with(" 192.0.2.1 192.0.2.2 192.0.2.3 +2"), "{row}");
        assert!(row.chars().count() <= 220, "{row}");
        let narrow = render(
            &[r],
            TableStyle {
                width: Some(157),
                ..style()
            },
        );
        let row = narrow.lines().nth(1).unwrap();
        assert!(row.ends_with(" 192.0.2.1 192.0.…"), "{row}");
        assert_eq!(row.chars().count(), 157, "{row}");
    }

    #[test]
    fn fits_a_120_column_terminal() {
        let q = sample::query(1, "kubernetes.default.svc.cluster.local", 28, 0);
        let r = sample::response(&q, 0, &["2001:db8:aaaa:bbbb::1"], 1);
        let s = server_side(&r);
        let text = render(
            &[r, s],
            TableStyle {
                width: Some(120),
                ..style()
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        let role = lines[0].find("ROLE").unwrap();
        let qname = lines[0].find("QNAME").unwrap();
        for (line, side) in lines[1..].iter().zip(["client", "server"]) {
            assert!(line.chars().count() <= 120, "{} wide: {line}", line.len());
            assert_eq!(&line[role..role + 7], format!("{side} "), "{line}");
            assert!(
                line[qname..].starts_with("…tes.default.svc.cluster.local "),
                "{line}"
            );
            assert!(line.ends_with(" 2001:db8:aaaa:bb…"), "{line}");
        }
    }

    /// A client in a known pod, one in a pod the directory does not know, a host process and
    /// a server (CoreDNS) in kube-system.
    fn pod_events() -> Vec<DnsEvent> {
        use dnslens_lens::container::Runtime;
        use dnslens_lens::model::{Container, Pod};
        use dnslens_lens::pods::{PodInfo, Workload};
        use std::sync::Arc;

        let info = |ns: &str, name: &str| {
            Arc::new(PodInfo {
                uid: "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b".to_string(),
                name: name.to_string(),
                namespace: ns.to_string(),
                node: None,
                pod_ip: None,
                service_account: None,
                labels: Default::default(),
                workload: Some(Workload {
                    kind: "Deployment".to_string(),
                    name: "x".to_string(),
                }),
                containers: Default::default(),
            })
        };
        let place = |e: &mut DnsEvent, container: Option<&str>, pod: Option<Arc<PodInfo>>| {
            e.who.host = Some(false);
            e.who.container = Some(Container {
                id: Arc::from("0123456789abcdef".repeat(4).as_str()),
                runtime: Runtime::Containerd,
                name: container.map(str::to_string),
            });
            e.who.pod = Some(Pod {
                uid: Arc::from("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
                info: pod,
            });
        };
        let q = sample::query(1, "payments.production.svc.cluster.local", 1, 0);
        let mut known = sample::response(&q, 0, &["10.96.14.2"], 123_456_789);
        known.latency_us = Some(850);
        place(
            &mut known,
            Some("app"),
            Some(info("production", "payment-svc-7d4b9f-xk2p1")),
        );
        let mut unknown = known.clone();
        place(&mut unknown, None, None);
        let mut host = known.clone();
        host.who.host = Some(true);
        host.who.container = None;
        host.who.pod = None;
        host.who.cgroup = "/system.slice/kubelet.service".into();
        let mut server = server_side(&known);
        server.who.process.name = "coredns".into();
        place(
            &mut server,
            Some("coredns"),
            Some(info("kube-system", "coredns-5d78c9869d-4xk2p")),
        );
        vec![known, unknown, host, server]
    }

    #[test]
    fn pod_and_container_columns_with_a_cluster() {
        let text = render(
            &pod_events(),
            TableStyle {
                pods: true,
                ..style()
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "TIME             PID PROCESS         ROLE   POD                                  CONTAINER      SERVER                PROTO QTYPE  QNAME                                            RCODE    LATENCY    TTL ANSWERS",
                "10:54:55.123     123 dig             client production/payment-svc-7d4b9f-xk2p1  app            10.1.1.1:53           udp   A      payments.production.svc.cluster.local            NOERROR    850us    300 10.96.14.2",
                "10:54:55.123     123 dig             client 6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b 0123456789ab   10.1.1.1:53           udp   A      payments.production.svc.cluster.local            NOERROR    850us    300 10.96.14.2",
                "10:54:55.123     123 dig             client -                                    kubelet.servi… 10.1.1.1:53           udp   A      payments.production.svc.cluster.local            NOERROR    850us    300 10.96.14.2",
                "10:54:55.123     870 coredns         server kube-system/coredns-5d78c9869d-4xk2p coredns        10.1.1.1:53           udp   A      payments.production.svc.cluster.local            NOERROR    120us    300 10.96.14.2",
            ]
        );
    }

    #[test]
    fn the_pod_layout_fits_the_terminal() {
        for width in [100, 114, 120, 132, 150, 200] {
            let text = render(
                &pod_events(),
                TableStyle {
                    pods: true,
                    width: Some(width),
                    ..style()
                },
            );
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines {
                assert!(
                    line.chars().count() <= width,
                    "{width}: {} wide: {line}",
                    line.chars().count()
                );
            }
            let header = lines[0];
            assert!(
                header.contains(" POD ") && header.contains(" CONTAINER "),
                "{header}"
            );
            for (title, from) in [("PID", 170), ("ROLE", 150)] {
                assert_eq!(header.contains(title), width >= from, "{width}: {header}");
            }
            for title in ["POD", "CONTAINER", "QNAME", "RCODE", "ANSWERS"] {
                let col = header.find(title).unwrap();
                for row in &lines[1..] {
                    assert_eq!(row.chars().nth(col - 1), Some(' '), "{title}: {row}");
                }
            }
        }
        let at = |width| {
            let text = render(
                &pod_events(),
                TableStyle {
                    pods: true,
                    width: Some(width),
                    ..style()
                },
            );
            text.lines().nth(1).unwrap().to_string()
        };
        let narrow = render(
            &pod_events(),
            TableStyle {
                pods: true,
                width: Some(110),
                color: true,
                ..style()
            },
        );
        let lines: Vec<&str> = narrow.lines().collect();
        assert!(lines[4].contains("\x1b[36mcoredns "), "{narrow}");
        assert!(!lines[1].contains("\x1b[36m"), "{narrow}");
        assert_eq!(
            at(120),
            "10:54:55.123 dig        production/payment… app        A     payments.production.svc… NOERROR    850us 10.96.14.2"
        );
    }

    #[test]
    fn colour_marks_rcodes_and_servers_only_when_asked() {
        let q = sample::query(1, "nx.example", 1, 0);
        let r = sample::response(&q, 3, &[], 1);
        let events = [r.clone(), server_side(&r)];
        let plain = render(&events, style());
        assert!(!plain.contains('\x1b'));
        let coloured = render(
            &events,
            TableStyle {
                color: true,
                ..style()
            },
        );
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(lines[0].starts_with("\x1b[1mTIME"), "{coloured}");
        assert!(lines[1].contains(" client "), "{coloured}");
        assert!(lines[1].contains(" \x1b[33mNXDOMAIN\x1b[0m "), "{coloured}");
        assert!(lines[2].contains("\x1b[36mserver\x1b[0m "), "{coloured}");
    }

    #[test]
    fn alerts_are_lines_of_their_own_coloured_by_severity() {
        use dnslens_detect::{Detector, Evidence};
        use dnslens_lens::model::Pod;
        use std::sync::Arc;

        let q = sample::query(1, "x.example", 1, 0);
        let known = &pod_events()[0];
        let alert = |severity, placed: Option<&DnsEvent>, pod: Option<Pod>| {
            let event = placed.unwrap_or(&q);
            let mut who = event.who.clone();
            who.pod = pod;
            Alert {
                detector: Detector::ResolverBypass,
                severity,
                summary: "dig (pid 123) sent a DNS query".to_string(),
                count: 1,
                window_s: 0,
                evidence: Evidence::default(),
                time_ns: event.time_ns,
                who,
            }
        };
        let unnamed = Pod {
            uid: Arc::from("6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
            info: None,
        };
        let lines = |color| {
            let mut sink = TableSink::new(Vec::new(), TableStyle { color, ..style() });
            for a in [
                alert(Severity::High, None, None),
                alert(Severity::Medium, None, Some(unnamed.clone())),
                alert(Severity::Low, Some(known), known.who.pod.clone()),
                alert(Severity::Low, Some(known), None),
            ] {
                sink.alert(&a).unwrap();
            }
            let text = String::from_utf8(sink.into_inner()).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        let tail = "dig (pid 123) sent a DNS query";
        // The header comes first, so that the first rows line up under it.
        let header =
            "TIME             PID PROCESS         ROLE   CGROUP           SERVER                \
                      PROTO QTYPE  QNAME                                            RCODE    \
                      LATENCY    TTL ANSWERS";
        assert_eq!(
            lines(false),
            [
                header.to_string(),
                format!("ALERT resolver_bypass high {tail}"),
                format!("ALERT resolver_bypass medium {tail}"),
                format!("ALERT resolver_bypass low {tail}"),
                format!("ALERT resolver_bypass low {tail}"),
            ]
        );
        let coloured = lines(true);
        assert!(coloured[1].starts_with("\x1b[31mALERT ") && coloured[1].ends_with(RESET));
        assert!(coloured[2].starts_with("\x1b[33mALERT "));
        assert!(coloured[3].starts_with("ALERT "));
    }

    #[test]
    fn chosen_columns_in_their_order_and_never_left_out() {
        let q = sample::query(1, "example.com", 1, 0);
        let mut r = sample::response(&q, 0, &["93.184.215.14"], 1);
        r.latency_us = Some(850);
        let chosen = vec![Cell::Server, Cell::Qname, Cell::Latency, Cell::Pid];
        let text = render(
            &[r],
            TableStyle {
                columns: Some(chosen),
                width: Some(60),
                ..style()
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "SERVER             QNAME                    LATENCY     PID",
                "10.1.1.1:53        example.com                850us     123",
            ]
        );
    }

    #[test]
    fn formats() {
        let latency = |us| Latency(us).to_string();
        assert_eq!(latency(850), "850us");
        assert_eq!(latency(2_345), "2.35ms");
        assert_eq!(latency(123_456), "123.5ms");
        assert_eq!(latency(999_949), "999.9ms");
        assert_eq!(latency(2_500_000), "2.50s");
        assert_eq!(cut("abcdef", 4, false), "abc…");
        assert_eq!(cut("abcdef", 4, true), "…def");
        assert_eq!(cut("abcd", 4, true), "abcd");
        assert_eq!(cut("éèêëē", 3, false), "éè…");
        assert_eq!(cgroup_leaf(""), "-");
        assert_eq!(cgroup_leaf("/"), "/");
        assert_eq!(cgroup_leaf("/system.slice/nginx.service"), "nginx.service");
        // A long hex name that is no container's stays what it is.
        let hex = "0d2d06bae0964ffd51e06c566d0e9300";
        assert_eq!(cgroup_leaf(&format!("/process_api/{hex}")), hex);
    }
}
