//! The model on the screen, converted at the edge as bpftop does: a [`Snapshot`] becomes a
//! status line, the table of rows, the selected row's top domains beside the recent alerts,
//! and the help line, with the keys' help or the alerts in full over them on request; keys
//! become [`Command`]s. Fits an 80x24 terminal: below [`WIDE`] columns P50 and TOTAL give way,
//! and on narrower screens the name columns.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap,
};
use ratatui::Frame;

use dnslens_detect::Severity;
use dnslens_lens::clock::Civil;
use dnslens_lens::text::{counted, printable, Printable};
use dnslens_probe::Named;

use super::controls::{Column, Command, Grouping, Overlay};
use super::model::{AlertLine, RowStats, Snapshot, WINDOW_S};

/// The keys, as the bottom line shows them.
pub const HELP: &str =
    "q quit  ? help  g pods/processes  </> sort  r reverse  ↑/↓ select  a alerts";

/// Lines of the domains and alerts panels, borders included.
const DETAIL_HEIGHT: u16 = 9;
/// From this width on, every figure shows; narrower, those of [`NARROW_HIDES`] give way.
const WIDE: u16 = 100;
/// From this width on, process rows also show their pod.
const WITH_POD: u16 = 110;

/// The figures, left to right: title, sort column, width (the title with its sort marker, and
/// the longest value [`cell`] makes).
const FIGURES: [(&str, Column, u16); 10] = [
    ("Q/S", Column::Qps, 6),
    ("NX%", Column::Nxdomain, 5),
    ("SRVF%", Column::Servfail, 6),
    ("UNANS", Column::Unanswered, 6),
    ("P50", Column::P50, 5),
    ("P99", Column::P99, 5),
    ("LK/S", Column::Lps, 6),
    ("LKP99", Column::LookupP99, 6),
    ("Q/LK", Column::QueriesPerLookup, 5),
    ("TOTAL", Column::Total, 7),
];
/// The figures left out below [`WIDE`] columns: the median is near the p99 of a healthy row,
/// and the total is in the rate.
const NARROW_HIDES: [Column; 2] = [Column::P50, Column::Total];

/// What the view drew, which the keys then move over.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    /// Rows the table shows: what a page key moves.
    pub page: usize,
    /// The sort columns shown, left to right.
    pub columns: Vec<Column>,
}

/// What `key` asks for, if anything.
pub fn command(key: &KeyEvent) -> Option<Command> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Command::Quit,
        KeyCode::Char('q') => Command::Quit,
        KeyCode::Char('g') => Command::Group,
        KeyCode::Char('>' | 's') | KeyCode::Right => Command::SortNext,
        KeyCode::Char('<') | KeyCode::Left => Command::SortPrev,
        KeyCode::Char('r') => Command::Reverse,
        KeyCode::Up | KeyCode::Char('k') => Command::Up,
        KeyCode::Down | KeyCode::Char('j') => Command::Down,
        KeyCode::PageUp => Command::PageUp,
        KeyCode::PageDown => Command::PageDown,
        KeyCode::Home => Command::First,
        KeyCode::End => Command::Last,
        KeyCode::Char('?') => Command::Help,
        KeyCode::Char('a') | KeyCode::Enter => Command::Alerts,
        KeyCode::Esc => Command::Close,
        _ => return None,
    })
}

/// Draws `s`, and `overlay` over it; `notice` is the latest line written to stderr meanwhile (a
/// loss warning). `utc_offset` gives the local time of the alerts.
pub fn render(
    frame: &mut Frame<'_>,
    s: &Snapshot,
    table: &mut TableState,
    overlay: Overlay,
    notice: Option<&str>,
    utc_offset: fn(u64) -> i64,
) -> Drawn {
    let [status, body, detail, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(DETAIL_HEIGHT),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(status_line(s, notice), status);
    let fields = fields(s.grouping, body.width);
    render_table(frame, s, &fields, table, body);
    let [domains, alerts] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(detail);
    frame.render_widget(domains_panel(s, domains.height), domains);
    frame.render_widget(alerts_panel(s, alerts.height, utc_offset), alerts);
    frame.render_widget(Line::from(HELP).style(Style::new().reversed()), help);
    // Over everything between the status line and the help line.
    let covered = Rect {
        height: body.height + detail.height,
        ..body
    };
    match overlay {
        Overlay::None => {}
        Overlay::Help => {
            frame.render_widget(Clear, covered);
            frame.render_widget(help_panel(), covered);
        }
        Overlay::Alerts { first } => {
            frame.render_widget(Clear, covered);
            frame.render_widget(all_alerts_panel(s, first, utc_offset), covered);
        }
    }
    Drawn {
        page: usize::from(body.height.saturating_sub(1)).max(1),
        columns: fields
            .iter()
            .filter_map(|f| match f.1 {
                Field::Sort(column) => Some(column),
                Field::Pid | Field::Place => None,
            })
            .collect(),
    }
}

/// `?`: the keys, then what each column means.
fn help_panel() -> Paragraph<'static> {
    let text = format!(
        "Keys
  q  Ctrl-C         quit
  ?  Esc            this help, on and off
  g                 rows by pod <-> by process
  < >  s  ← →       sort by the column left or right (▼ largest first)
  r                 reverse the sort
  ↑ ↓ PgUp PgDn Home End   select a row (its domains, its alerts marked *)
  a  Enter          the recent alerts in full (↑ ↓ scroll, Esc closes)
Columns, over the last {WINDOW_S} s (since the start when shorter)
  Q/S     queries per second the row's processes sent
  NX%     of the responses, the share that was NXDOMAIN (no such name)
  SRVF%   of the responses, the share that was SERVFAIL (the server failed)
  UNANS   queries that got no response within --timeout
  P50 P99 median and 99th percentile response time
  LK/S    lookups that ended per second: each name the application asked
  LKP99   99th percentile lookup time, as the application waited for it
  Q/LK    queries per lookup (search list, A+AAAA, retries; 0 from a cache)
  TOTAL   queries since dnslens started (or the row appeared)
Only the client side counts. Below {WIDE} columns P50 and TOTAL give way."
    );
    Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(" help: ? or Esc closes "))
}

/// `a`: the alerts from the `first`, newest first, each summary whole (wrapped).
fn all_alerts_panel(s: &Snapshot, first: usize, utc_offset: fn(u64) -> i64) -> Paragraph<'static> {
    let mut lines: Vec<Line> = s
        .alerts
        .iter()
        .skip(first)
        .map(|a| alert_line(a, utc_offset))
        .collect();
    if lines.is_empty() {
        lines.push(Line::from("none"));
    }
    let n = s.alerts.len();
    let title = format!(
        " alerts {}-{n} of {n}, newest first: ↑ ↓ scroll, Esc closes ",
        (first + 1).min(n)
    );
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::bordered().title(title))
}

fn status_line<'a>(s: &Snapshot, notice: Option<&'a str>) -> Line<'a> {
    let mut spans = vec![
        Span::styled("dnslens top", Style::new().bold()),
        Span::raw(format!(
            "  by {}  {}  {} q/s over {WINDOW_S}s  {}  {}",
            s.grouping.name(),
            counted(s.rows.len() as u64, "row", "rows"),
            qps(s.qps),
            counted(s.events, "event", "events"),
            counted(s.alerts_total, "alert", "alerts")
        )),
    ];
    if s.evicted > 0 {
        spans.push(Span::raw(format!("  {} rows evicted", s.evicted)));
    }
    if let Some(notice) = notice {
        spans.push(Span::styled(
            format!("  {notice}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

/// What a column of the table shows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Pid,
    /// A process row's pod.
    Place,
    Sort(Column),
}

/// The table's columns for `grouping` at `width`: (title, field, width).
fn fields(grouping: Grouping, width: u16) -> Vec<(&'static str, Field, Constraint)> {
    let name = Field::Sort(Column::Name);
    let mut fields = match grouping {
        Grouping::Pod => vec![("POD", name, Constraint::Fill(1))],
        Grouping::Process if width >= WITH_POD => vec![
            ("PID", Field::Pid, Constraint::Length(7)),
            ("PROCESS", name, Constraint::Length(15)),
            ("POD", Field::Place, Constraint::Fill(1)),
        ],
        Grouping::Process => vec![
            ("PID", Field::Pid, Constraint::Length(7)),
            ("PROCESS", name, Constraint::Fill(1)),
        ],
    };
    fields.extend(
        FIGURES
            .iter()
            .filter(|(_, column, _)| width >= WIDE || !NARROW_HIDES.contains(column))
            .map(|&(title, column, w)| (title, Field::Sort(column), Constraint::Length(w))),
    );
    fields
}

fn render_table(
    frame: &mut Frame<'_>,
    s: &Snapshot,
    fields: &[(&'static str, Field, Constraint)],
    state: &mut TableState,
    area: Rect,
) {
    let header = Row::new(fields.iter().map(|&(title, field, _)| {
        let marker = match (field == Field::Sort(s.sort.column), s.sort.descending) {
            (false, _) => "",
            (true, true) => "▼",
            (true, false) => "▲",
        };
        let text = format!("{title}{marker}");
        match field {
            Field::Sort(Column::Name) | Field::Pid | Field::Place => Cell::from(text),
            Field::Sort(_) => Cell::from(Line::from(text).right_aligned()),
        }
    }))
    .style(Style::new().bold().reversed());
    let rows = s
        .rows
        .iter()
        .map(|r| Row::new(fields.iter().map(|&(_, field, _)| cell(r, field))));
    let table = Table::new(rows, fields.iter().map(|f| f.2))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().reversed())
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always);
    state.select(s.selected);
    frame.render_stateful_widget(table, area, state);
}

/// One cell of a row: the names as they are, the figures right-aligned.
fn cell(r: &RowStats, field: Field) -> Cell<'static> {
    let figure = match field {
        Field::Sort(Column::Name) => return Cell::from(printable(&r.name).into_owned()),
        Field::Place => return Cell::from(printable(&r.place).into_owned()),
        Field::Pid => r.pid.map(|p| p.to_string()).unwrap_or_default(),
        Field::Sort(Column::Qps) => qps(r.qps),
        Field::Sort(Column::Nxdomain) => percent(r.nxdomain_pct),
        Field::Sort(Column::Servfail) => percent(r.servfail_pct),
        Field::Sort(Column::Unanswered) => r.unanswered.to_string(),
        Field::Sort(Column::P50) => latency(r.p50_us),
        Field::Sort(Column::P99) => latency(r.p99_us),
        Field::Sort(Column::Lps) => qps(r.lps),
        Field::Sort(Column::LookupP99) => latency(r.lookup_p99_us),
        Field::Sort(Column::QueriesPerLookup) => ratio(r.queries_per_lookup),
        Field::Sort(Column::Total) => count(r.total),
    };
    Cell::from(Line::from(figure).right_aligned())
}

/// The selected row (a process by its executable), then its domains.
fn domains_panel(s: &Snapshot, height: u16) -> Paragraph<'static> {
    let Some(r) = s.selected.map(|i| &s.rows[i]) else {
        return Paragraph::new("no queries yet").block(Block::bordered().title(" top domains "));
    };
    let label = match (r.pid, &r.exe) {
        (Some(pid), Some(exe)) => format!("{pid} {}", Printable(exe)),
        (Some(pid), None) => format!("{pid} {}", Printable(&r.name)),
        (None, _) => printable(&r.name).into_owned(),
    };
    let mut lines = vec![Line::styled(label, Style::new().bold())];
    lines.extend(
        s.domains
            .iter()
            .map(|(domain, n)| Line::from(format!("{:>7} {}", count(*n), Printable(domain)))),
    );
    if s.domains_other > 0 {
        lines.push(Line::from(format!("{:>7} (other)", count(s.domains_other))));
    }
    lines.truncate(usize::from(height.saturating_sub(2)));
    Paragraph::new(lines).block(Block::bordered().title(" top domains "))
}

fn alerts_panel(s: &Snapshot, height: u16, utc_offset: fn(u64) -> i64) -> Paragraph<'static> {
    let shown = usize::from(height.saturating_sub(2));
    let mut lines: Vec<Line> = s
        .alerts
        .iter()
        .take(shown)
        .map(|a| alert_line(a, utc_offset))
        .collect();
    if lines.is_empty() {
        lines.push(Line::from("none"));
    }
    let title = format!(
        " recent alerts ({}), * this row's, a: whole ",
        s.alerts_total
    );
    Paragraph::new(lines).block(Block::bordered().title(title))
}

fn alert_line(a: &AlertLine, utc_offset: fn(u64) -> i64) -> Line<'static> {
    let t = Civil::from_wall_ns(a.time_ns, utc_offset(a.time_ns));
    let colour = match a.severity {
        Severity::High => Color::Red,
        Severity::Medium => Color::Yellow,
        Severity::Low => Color::Reset,
    };
    let mark = if a.selected { '*' } else { ' ' };
    let style = if a.selected {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    Line::from(vec![
        Span::styled(
            format!("{mark}{:02}:{:02}:{:02} ", t.hour, t.minute, t.second),
            style,
        ),
        Span::styled(format!("{} ", a.detector), style.fg(colour)),
        Span::styled(
            format!("{} {}", Printable(&a.subject), Printable(&a.summary)),
            style,
        ),
    ])
}

fn qps(q: f64) -> String {
    match q {
        q if q < 100.0 => format!("{q:.1}"),
        q if q < 1e6 => format!("{q:.0}"),
        q => format!("{:.1}M", q / 1e6),
    }
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p:.1}"))
}

/// Queries per lookup: one decimal up to 99.9, then whole.
fn ratio(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r < 99.95 => format!("{r:.1}"),
        Some(r) => format!("{:.0}", r.min(99_999.0)),
    }
}

/// An estimate from a histogram bucket: two or three significant digits, no more.
fn latency(us: Option<u64>) -> String {
    match us {
        None => "-".to_string(),
        Some(us @ 0..1_000) => format!("{us}us"),
        Some(us @ 1_000..10_000) => format!("{:.1}ms", us as f64 / 1e3),
        Some(us @ 10_000..1_000_000) => format!("{:.0}ms", us as f64 / 1e3),
        Some(us) => format!("{:.1}s", us as f64 / 1e6),
    }
}

fn count(n: u64) -> String {
    match n {
        0..10_000_000 => n.to_string(),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests;
