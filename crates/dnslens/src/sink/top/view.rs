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
  Q/LK    queries per lookup (search list, A and AAAA, retries; 0 from a cache)
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
mod tests {
    use super::*;
    use crate::sink::top::controls::Controls;
    use crate::sink::top::model::tests::{alert, lookup, query, response, unanswered, S, T0};
    use crate::sink::top::model::Model;
    use dnslens_detect::Detector;
    use dnslens_wire::Rcode;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::KeyEventKind;
    use ratatui::Terminal;

    /// A model with two pods: web (20 q/s for 2 s, of 20 responses 2 NXDOMAIN, at 1.6 ms; one
    /// query unanswered; 10 lookups/s at 1.6 ms, 2 of their 20 of three queries) and db (1 q/s,
    /// no lookups), and an alert about each.
    fn model() -> Model {
        let mut m = Model::new(T0);
        for i in 0..40 {
            let name = if i < 38 {
                "api.example.com"
            } else {
                "x.example"
            };
            let q = query(41, "getent", "shop/web", name, T0 + i * S / 20);
            m.event(&q);
            match i {
                0 | 10 => m.event(&response(&q, Rcode::NXDOMAIN, 1_600)),
                1..20 => m.event(&response(&q, Rcode::NOERROR, 1_600)),
                39 => m.event(&unanswered(&q)),
                _ => {}
            }
            if i % 2 == 0 {
                let queries = if i < 4 { 3 } else { 1 };
                m.lookup(&lookup(&q, queries, 1_600), q.mono_ns);
            }
        }
        for i in 0..2 {
            m.event(&query(42, "python3", "shop/db", "db.example", T0 + i * S));
        }
        let web = query(41, "getent", "shop/web", "x", T0);
        let db = query(42, "python3", "shop/db", "x", T0);
        m.alert(&alert(
            &web,
            Detector::Dga,
            "failed lookups of random names",
        ));
        m.alert(&alert(
            &db,
            Detector::Tunneling,
            "long names under evil.test",
        ));
        m
    }

    fn draw(s: &Snapshot, width: u16, height: u16) -> Buffer {
        draw_over(s, Overlay::None, width, height)
    }

    fn draw_over(s: &Snapshot, overlay: Overlay, width: u16, height: u16) -> Buffer {
        drawn(s, overlay, width, height).0
    }

    fn drawn(s: &Snapshot, overlay: Overlay, width: u16, height: u16) -> (Buffer, Drawn) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut state = TableState::default();
        let mut drawn = None;
        terminal
            .draw(|f| {
                drawn = Some(render(f, s, &mut state, overlay, Some("3 lost"), |_| 0));
            })
            .unwrap();
        (terminal.backend().buffer().clone(), drawn.unwrap())
    }

    fn line(b: &Buffer, y: u16) -> String {
        (0..b.area.width).map(|x| b[(x, y)].symbol()).collect()
    }

    fn find(b: &Buffer, needle: &str) -> u16 {
        (0..b.area.height)
            .find(|&y| line(b, y).contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", screen(b)))
    }

    fn screen(b: &Buffer) -> String {
        (0..b.area.height).map(|y| line(b, y) + "\n").collect()
    }

    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn pods_at_80_by_24() {
        let m = model();
        let s = m.snapshot(T0 + 2 * S, &Controls::new(Grouping::Pod));
        let b = draw(&s, 80, 24);
        let status = line(&b, 0);
        assert_eq!(
            status.trim_end(),
            "dnslens top  by pod  2 rows  21.0 q/s over 10s  63 events  2 alerts  3 lost"
        );
        // Below 100 columns, P50 and TOTAL give way.
        assert_eq!(
            words(&line(&b, 1)),
            ["POD", "Q/S▼", "NX%", "SRVF%", "UNANS", "P99", "LK/S", "LKP99", "Q/LK"]
        );
        // The selected row (the busiest) carries the marker and is reversed.
        let web = line(&b, 2);
        assert_eq!(
            words(&web),
            [
                ">shop/web",
                "20.0",
                "10.0",
                "0.0",
                "1",
                "1.8ms",
                "10.0",
                "1.8ms",
                "1.2"
            ]
        );
        assert!(b[(5, 2)].modifier.contains(Modifier::REVERSED));
        assert_eq!(
            words(&line(&b, 3)),
            ["shop/db", "1.0", "-", "-", "0", "-", "0.0", "-", "-"]
        );
        assert!(!b[(5, 3)].modifier.contains(Modifier::REVERSED));
        // Figures end at the right edge, under their titles.
        assert!(web.len() == 80 && web.ends_with("1.2"), "{web}");
        let top = find(&b, "top domains");
        assert!(line(&b, top).contains("recent alerts (2), * this row's"));
        assert!(line(&b, top + 1).starts_with("│shop/web "));
        assert_eq!(words(&line(&b, top + 2))[1..3], ["38", "api.example.com"]);
        assert_eq!(words(&line(&b, top + 3))[1..3], ["2", "x.example"]);
        let newest = line(&b, top + 1);
        assert!(
            newest.contains("│ 11:11:35 tunneling shop/db long names"),
            "{newest}"
        );
        let mine = line(&b, top + 2);
        assert!(
            mine.contains("│*11:11:35 dga shop/web failed lookups"),
            "{mine}"
        );
        let x = mine.chars().position(|c| c == '*').unwrap() as u16;
        assert!(b[(x, top + 2)].modifier.contains(Modifier::BOLD));
        assert!(!b[(x, top + 1)].modifier.contains(Modifier::BOLD));
        assert_eq!(line(&b, 23).trim_end(), HELP);
    }

    /// Issue 16: from 100 columns every figure shows, and the keys sort by what is shown.
    #[test]
    fn every_figure_when_wide_and_the_sort_keys_move_over_those_shown() {
        let s = model().snapshot(T0 + 2 * S, &Controls::new(Grouping::Pod));
        let (b, wide) = drawn(&s, Overlay::None, 100, 24);
        assert_eq!(
            words(&line(&b, 1)),
            [
                "POD", "Q/S▼", "NX%", "SRVF%", "UNANS", "P50", "P99", "LK/S", "LKP99", "Q/LK",
                "TOTAL"
            ]
        );
        assert_eq!(
            words(&line(&b, 2)),
            [
                ">shop/web",
                "20.0",
                "10.0",
                "0.0",
                "1",
                "1.8ms",
                "1.8ms",
                "10.0",
                "1.8ms",
                "1.2",
                "40"
            ]
        );
        assert_eq!(wide.columns, Column::ALL);
        assert_eq!(
            wide.page, 12,
            "24 lines less status, header, panels and help"
        );
        let (_, narrow) = drawn(&s, Overlay::None, 99, 24);
        let mut shown = Column::ALL.to_vec();
        shown.retain(|c| !NARROW_HIDES.contains(c));
        assert_eq!(narrow.columns, shown);
        let (_, processes) = drawn(
            &model().snapshot(T0 + 2 * S, &Controls::new(Grouping::Process)),
            Overlay::None,
            120,
            24,
        );
        assert_eq!(
            processes.columns,
            Column::ALL,
            "PID and POD are not sorted by"
        );
    }

    #[test]
    fn processes_sorted_by_name_with_pods_when_wide() {
        let m = model();
        let mut c = Controls::new(Grouping::Pod);
        let s = m.snapshot(T0 + 2 * S, &c);
        c.apply(Command::Group, &s);
        let s = m.snapshot(T0 + 2 * S, &c);
        c.apply(Command::SortPrev, &s);
        let s = m.snapshot(T0 + 2 * S, &c);
        let b = draw(&s, 80, 24);
        assert_eq!(words(&line(&b, 1))[..4], ["PID", "PROCESS▲", "Q/S", "NX%"]);
        assert_eq!(words(&line(&b, 2))[..3], [">", "41", "getent"]);
        assert_eq!(words(&line(&b, 3))[..3], ["42", "python3", "1.0"]);
        find(&b, "│41 /usr/bin/getent");
        let wide = draw(&s, 120, 30);
        assert_eq!(
            words(&line(&wide, 1))[..4],
            ["PID", "PROCESS▲", "POD", "Q/S"]
        );
        assert_eq!(
            words(&line(&wide, 3))[..4],
            ["42", "python3", "shop/db", "1.0"]
        );
        assert_eq!(line(&wide, 29).trim_end(), HELP);
    }

    #[test]
    fn empty_and_tiny_screens_draw() {
        let s = Model::new(T0).snapshot(T0, &Controls::new(Grouping::Pod));
        let b = draw(&s, 80, 24);
        find(&b, "│no queries yet");
        find(&b, "none");
        draw(
            &model().snapshot(T0 + S, &Controls::new(Grouping::Process)),
            20,
            5,
        );
    }

    /// Issue 14: `?` explains the keys, the columns and the window.
    #[test]
    fn help_over_the_view_explains_keys_and_columns() {
        let s = model().snapshot(T0 + 2 * S, &Controls::new(Grouping::Pod));
        let b = draw_over(&s, Overlay::Help, 80, 24);
        assert!(line(&b, 0).starts_with("dnslens top"));
        assert!(line(&b, find(&b, "help: ? or Esc closes")).starts_with('┌'));
        for needle in [
            "q  Ctrl-C",
            "a  Enter ",
            "over the last 10 s",
            "NX%     of the responses, the share that was NXDOMAIN",
            "SRVF%   of the responses, the share that was SERVFAIL",
            "UNANS   queries that got no response within --timeout",
            "P50 P99 median and 99th percentile",
            "LK/S    lookups that ended per second",
            "LKP99   99th percentile lookup time",
            "Q/LK    queries per lookup",
            "Below 100 columns P50 and TOTAL give way.",
        ] {
            find(&b, needle);
        }
        assert!(!screen(&b).contains("shop/web"), "the table is covered");
        assert_eq!(line(&b, 23).trim_end(), HELP);
    }

    /// Issue 14: the alerts pane cuts summaries at its width; `a` shows them whole.
    #[test]
    fn alerts_in_full_wrap_their_summaries() {
        let mut m = model();
        let long = format!("{} the end", "word ".repeat(30));
        m.alert(&alert(
            &query(41, "getent", "shop/web", "x", T0),
            Detector::Tunneling,
            &long,
        ));
        let s = m.snapshot(T0 + 2 * S, &Controls::new(Grouping::Pod));
        let cut = draw(&s, 80, 24);
        assert!(!screen(&cut).contains("the end"), "{}", screen(&cut));
        find(&cut, "a: whole");
        let b = draw_over(&s, Overlay::Alerts { first: 0 }, 80, 24);
        find(&b, "alerts 1-3 of 3, newest first");
        let top = find(&b, "tunneling shop/web word");
        assert!(line(&b, top + 2).contains("the end"), "{}", screen(&b));
        find(&b, "dga shop/web failed lookups");
        let b = draw_over(&s, Overlay::Alerts { first: 1 }, 80, 24);
        assert!(!screen(&b).contains("word word"), "scrolled past the first");
        find(&b, "alerts 2-3 of 3");
    }

    #[test]
    fn one_of_a_kind_is_singular() {
        let mut m = Model::new(T0);
        let q = query(41, "getent", "shop/web", "x", T0);
        m.event(&q);
        m.alert(&alert(&q, Detector::Dga, "x"));
        let s = m.snapshot(T0 + S, &Controls::new(Grouping::Pod));
        let status = line(&draw(&s, 80, 24), 0);
        assert!(
            status.contains("1 row  1.0 q/s over 10s  1 event  1 alert "),
            "{status}"
        );
    }

    #[test]
    fn keys_become_commands() {
        let key = |code, modifiers| {
            command(&KeyEvent {
                code,
                modifiers,
                kind: KeyEventKind::Press,
                state: ratatui::crossterm::event::KeyEventState::NONE,
            })
        };
        let none = KeyModifiers::NONE;
        assert_eq!(key(KeyCode::Char('q'), none), Some(Command::Quit));
        assert_eq!(
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Command::Quit)
        );
        assert_eq!(key(KeyCode::Char('c'), none), None);
        assert_eq!(key(KeyCode::Char('g'), none), Some(Command::Group));
        assert_eq!(key(KeyCode::Char('>'), none), Some(Command::SortNext));
        assert_eq!(key(KeyCode::Char('s'), none), Some(Command::SortNext));
        assert_eq!(key(KeyCode::Char('<'), none), Some(Command::SortPrev));
        assert_eq!(key(KeyCode::Char('r'), none), Some(Command::Reverse));
        assert_eq!(key(KeyCode::Up, none), Some(Command::Up));
        assert_eq!(key(KeyCode::Down, none), Some(Command::Down));
        assert_eq!(key(KeyCode::Char('?'), none), Some(Command::Help));
        assert_eq!(key(KeyCode::Char('a'), none), Some(Command::Alerts));
        assert_eq!(key(KeyCode::Enter, none), Some(Command::Alerts));
        assert_eq!(key(KeyCode::Esc, none), Some(Command::Close));
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(
            [qps(0.04), qps(20.0), qps(1234.4), qps(2.5e6)],
            ["0.0", "20.0", "1234", "2.5M"]
        );
        assert_eq!(
            [
                latency(Some(112)),
                latency(Some(1_792)),
                latency(Some(81_920)),
                latency(Some(12_582_912))
            ],
            ["112us", "1.8ms", "82ms", "12.6s"]
        );
        assert_eq!([count(41), count(12_345_678)], ["41", "12.3M"]);
        assert_eq!([percent(None), percent(Some(100.0))], ["-", "100.0"]);
        assert_eq!(
            [
                ratio(None),
                ratio(Some(1.05)),
                ratio(Some(99.96)),
                ratio(Some(1e9))
            ],
            ["-", "1.1", "100", "99999"]
        );
    }
}
