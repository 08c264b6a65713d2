//! What the keys of `dnslens top` change: the grouping, the sort, the selection (kept on its
//! row across a re-sort) and the overlay shown. The model ([`super::model`]) reads them to make
//! a snapshot; nothing here counts DNS.

use super::model::Snapshot;

/// What a row stands for; its name is the flag's value.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Grouping {
    /// A pod (`namespace/name`, its uid while unnamed); outside pods a container, or a host
    /// process by name.
    Pod,
    /// A process: pid and name.
    Process,
}

impl Grouping {
    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn other(self) -> Grouping {
        match self {
            Grouping::Pod => Grouping::Process,
            Grouping::Process => Grouping::Pod,
        }
    }
}

/// The columns the rows can be sorted by, left to right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Qps,
    Nxdomain,
    Servfail,
    Unanswered,
    P50,
    P99,
    /// Lookups per second.
    Lps,
    LookupP99,
    QueriesPerLookup,
    Total,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Name,
        Column::Qps,
        Column::Nxdomain,
        Column::Servfail,
        Column::Unanswered,
        Column::P50,
        Column::P99,
        Column::Lps,
        Column::LookupP99,
        Column::QueriesPerLookup,
        Column::Total,
    ];

    /// Names read best A to Z, numbers largest first.
    pub(super) fn descending_first(self) -> bool {
        self != Column::Name
    }
}

/// How the rows are sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// Pods <-> processes.
    Group,
    /// Sort by the column right of the current one (wrapping).
    SortNext,
    SortPrev,
    Reverse,
    /// Shows or hides the keys and what the columns mean.
    Help,
    /// Shows or hides the recent alerts in full.
    Alerts,
    /// Hides what covers the table.
    Close,
    Quit,
}

/// What covers the table, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    None,
    /// The keys and what each column means.
    Help,
    /// The recent alerts in full, from the `first` (the newest is 0); the arrows scroll.
    Alerts {
        first: usize,
    },
}

/// The view's state that keys change: the grouping, the sort, the selected row (by key, so the
/// selection follows its row as the order changes) and what covers the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Controls {
    pub grouping: Grouping,
    pub sort: Sort,
    /// The selected row's key per grouping.
    selected: [Option<String>; 2],
    /// Rows a page moves.
    pub page: usize,
    /// The columns the view shows, left to right: those the sort keys move over.
    pub columns: Vec<Column>,
    pub overlay: Overlay,
}

impl Controls {
    pub fn new(grouping: Grouping) -> Controls {
        Controls {
            grouping,
            sort: Sort {
                column: Column::Qps,
                descending: true,
            },
            selected: [None, None],
            page: 10,
            columns: Column::ALL.to_vec(),
            overlay: Overlay::None,
        }
    }

    pub fn selected(&self) -> Option<&str> {
        self.selected[self.grouping.index()].as_deref()
    }

    /// Applies `command` to the view as last shown (rows sorted). Returns false for `Quit`.
    pub fn apply(&mut self, command: Command, shown: &Snapshot) -> bool {
        let rows = &shown.rows;
        // Over the alerts, the arrows scroll them.
        if let Overlay::Alerts { first } = &mut self.overlay {
            let (at, last) = (*first, shown.alerts.len().saturating_sub(1));
            let moved = |delta: isize| at.saturating_add_signed(delta).min(last);
            let page = self.page as isize;
            let to = match command {
                Command::Up => Some(moved(-1)),
                Command::Down => Some(moved(1)),
                Command::PageUp => Some(moved(-page)),
                Command::PageDown => Some(moved(page)),
                Command::First => Some(0),
                Command::Last => Some(last),
                _ => None,
            };
            if let Some(to) = to {
                *first = to;
                return true;
            }
        }
        // As the snapshot shows it: a selection whose row is gone is the first row.
        let current = self
            .selected()
            .and_then(|key| rows.iter().position(|r| r.key == key))
            .unwrap_or(0);
        // The row shown selected stays selected when the order changes, chosen or not.
        if let Some(row) = rows
            .get(current)
            .filter(|_| shown.grouping == self.grouping)
        {
            self.selected[self.grouping.index()] = Some(row.key.clone());
        }
        let last = rows.len().saturating_sub(1);
        let moved = |delta: isize| current.saturating_add_signed(delta).min(last);
        let select = match command {
            Command::Quit => return false,
            Command::Help | Command::Alerts | Command::Close => {
                self.overlay = match (command, self.overlay) {
                    (Command::Help, Overlay::Help) | (Command::Close, _) => Overlay::None,
                    (Command::Help, _) => Overlay::Help,
                    (_, Overlay::Alerts { .. }) => Overlay::None,
                    _ => Overlay::Alerts { first: 0 },
                };
                None
            }
            Command::Up => Some(moved(-1)),
            Command::Down => Some(moved(1)),
            Command::PageUp => Some(moved(-(self.page as isize))),
            Command::PageDown => Some(moved(self.page as isize)),
            Command::First => Some(0),
            Command::Last => Some(last),
            Command::Group => {
                self.grouping = self.grouping.other();
                None
            }
            Command::SortNext | Command::SortPrev => {
                let shown = &self.columns;
                let at = shown.iter().position(|&c| c == self.sort.column);
                let next = match (at, command) {
                    (Some(at), Command::SortNext) => shown.get((at + 1) % shown.len()),
                    (Some(at), _) => shown.get((at + shown.len() - 1) % shown.len()),
                    // From a column the view no longer shows (a narrower terminal): the first.
                    (None, _) => shown.first(),
                };
                if let Some(&column) = next {
                    self.sort = Sort {
                        column,
                        descending: column.descending_first(),
                    };
                }
                None
            }
            Command::Reverse => {
                self.sort.descending = !self.sort.descending;
                None
            }
        };
        if let Some(row) = select.and_then(|i| rows.get(i)) {
            self.selected[self.grouping.index()] = Some(row.key.clone());
        }
        true
    }
}
