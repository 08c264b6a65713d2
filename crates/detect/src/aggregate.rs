//! One alert per detector and key per window. The first trigger is reported at once (count 1);
//! further triggers in the window are counted, and when the window ends one summary reports
//! them (count = how many, evidence of the latest). So the counts of all alerts add up to the
//! triggers, and a burst costs two lines at most.

use crate::alert::{Alert, Detector};
use dnslens_lens::bounded::Lru;

#[derive(Debug)]
struct Entry {
    opened: u64,
    repeats: u64,
    latest: Option<Alert>,
}

#[derive(Debug)]
pub struct Aggregator {
    entries: Lru<(Detector, String), Entry>,
    window_ns: u64,
    /// Triggers folded into summaries.
    pub repeats: u64,
}

impl Aggregator {
    pub fn new(window_s: u64, capacity: usize) -> Self {
        Aggregator {
            entries: Lru::new(capacity),
            window_ns: window_s.saturating_mul(1_000_000_000),
            repeats: 0,
        }
    }

    /// A trigger at `now` for `key`: reported into `out` when it opens a window, else counted.
    pub fn raise(&mut self, key: String, alert: Alert, now: u64, out: &mut Vec<Alert>) {
        let k = (alert.detector, key);
        if let Some(e) = self.entries.peek_mut(&k) {
            if now < e.opened.saturating_add(self.window_ns) {
                e.repeats += 1;
                e.latest = Some(alert);
                self.repeats += 1;
                return;
            }
            // Its window ended before a sweep saw it.
            if let Some(e) = self.entries.remove(&k) {
                self.close(e, out);
            }
        }
        let entry = Entry {
            opened: now,
            repeats: 0,
            latest: None,
        };
        // Windows open in time order and are never touched, so the oldest is evicted.
        if let Some((_, evicted)) = self.entries.insert(k, entry) {
            self.close(evicted, out);
        }
        out.push(alert);
    }

    /// Closes the windows that ended by `now`.
    pub fn sweep(&mut self, now: u64, out: &mut Vec<Alert>) {
        let window = self.window_ns;
        for (_, e) in self
            .entries
            .pop_while(|e| e.opened.saturating_add(window) <= now)
        {
            self.close(e, out);
        }
    }

    /// Closes every window (at the end of input).
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        while let Some((_, e)) = self.entries.pop_oldest() {
            self.close(e, out);
        }
    }

    fn close(&self, e: Entry, out: &mut Vec<Alert>) {
        if let Some(mut a) = e.latest {
            a.count = e.repeats;
            a.window_s = self.window_ns / 1_000_000_000;
            a.summary = format!(
                "{} ({} more time{} in the {} s since the first alert)",
                a.summary,
                e.repeats,
                if e.repeats == 1 { "" } else { "s" },
                a.window_s
            );
            out.push(a);
        }
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.entries.len()
    }

    pub fn evictions(&self) -> u64 {
        self.entries.evictions()
    }
}
