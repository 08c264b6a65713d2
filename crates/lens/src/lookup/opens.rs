//! A process's open lookups, oldest first, each with a summary beside it. A query or a
//! response scans the summaries, which lie together, and reads a lookup (behind its box) only
//! where its summary matches: with dnsperf's 2,000 names in flight, reading every lookup's
//! attempts was 11% of the agent's samples (`perf record`, bench/HISTORY.md run 27).

use super::Open;

/// What a scan asks of a lookup before reading it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Summary {
    /// [`name_bit`] of each name asked.
    pub names: u64,
    /// [`id_bit`] of each attempt waiting for its response.
    pub waiting_ids: u64,
    /// Between two names of a walk: nothing waiting, nothing answered.
    pub walking: bool,
}

/// One of 64 bits for a name, the same in any case: a lookup without its bit has not asked the
/// name. A crafted collision costs only the exact comparison it would have skipped.
pub(super) fn name_bit(name: &str) -> u64 {
    // FNV-1a over the lowered bytes, without making the lowered name.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    });
    1 << (hash % 64)
}

pub(super) fn id_bit(id: u16) -> u64 {
    1 << (id % 64)
}

#[derive(Debug, Default)]
pub(super) struct Opens {
    /// Boxed: lookups move within the list on every query of a busy process, and an `Open`
    /// is hundreds of bytes (the agent under dnsperf spent 12% of its time in memmove).
    #[expect(clippy::vec_box, reason = "measured: moving pointers, not lookups")]
    lookups: Vec<Box<Open>>,
    summaries: Vec<Summary>,
}

impl Opens {
    pub fn len(&self) -> usize {
        self.lookups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lookups.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Open> {
        self.lookups.iter().map(|o| &**o)
    }

    pub fn push(&mut self, open: Box<Open>) {
        self.summaries.push(open.summary());
        self.lookups.push(open);
    }

    pub fn remove(&mut self, i: usize) -> Box<Open> {
        self.summaries.remove(i);
        self.lookups.remove(i)
    }

    /// The last lookup whose summary passes `pass` and that `check` then accepts.
    pub fn rfind(
        &mut self,
        pass: impl Fn(&Summary) -> bool,
        mut check: impl FnMut(&mut Open) -> bool,
    ) -> Option<usize> {
        (0..self.lookups.len())
            .rev()
            .find(|&i| pass(&self.summaries[i]) && check(&mut self.lookups[i]))
    }

    /// Changes lookup `i` with `change`, and its summary with it.
    pub fn change<T>(&mut self, i: usize, change: impl FnOnce(&mut Open) -> T) -> T {
        let out = change(&mut self.lookups[i]);
        self.summaries[i] = self.lookups[i].summary();
        out
    }

    /// Takes out the lookups `due` says have ended, keeping the others in order.
    #[expect(clippy::vec_box, reason = "the lookups as kept")]
    pub fn take_due(&mut self, due: impl Fn(&Open) -> bool) -> Vec<Box<Open>> {
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lookups)
            .into_iter()
            .partition(|o| due(o));
        self.summaries = kept.iter().map(|o| o.summary()).collect();
        self.lookups = kept;
        ended
    }

    #[expect(clippy::vec_box, reason = "the lookups as kept")]
    pub fn into_lookups(self) -> Vec<Box<Open>> {
        self.lookups
    }
}
