//! The view's tests: snapshots drawn into a TestBackend, the cells read back.

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
        ["POD", "Q/S▼", "NX%", "SRVF%", "UNANS", "P50", "P99", "LK/S", "LKP99", "Q/LK", "TOTAL"]
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
        // Whole on its line: the help fits 80 columns unwrapped.
        "Q/LK    queries per lookup (search list, A+AAAA, retries; 0 from a cache)",
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
