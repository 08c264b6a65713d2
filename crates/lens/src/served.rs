//! Which server-side messages go past decoding when no sink shows them (`count`, `top`, the
//! agent writing no event lines: all count the client side only). The detectors still need to
//! know which processes serve DNS (a forwarder's upstream queries are not its own lookups), and
//! for that one message of each server process now and then is enough: the rest are counted and
//! dropped before pairing, attribution and the detectors, which on a DNS server's node is most of
//! the userspace work.

use crate::bounded::Lru;

/// How often a server process's messages reach the detectors again: within this, a detector
/// that forgot the process (its table is bounded) learns it again. The kernel side keeps the
/// others where it can (`ProbeConfig::server_side_events`); this gate applies the same rule
/// to the rest (TCP, replays).
pub use dnslens_abi::RESOLVER_RENEWAL_NS;

/// What happens to the server side's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerSide {
    /// Each is an event, as the client side's are.
    #[default]
    Events,
    /// Only what names a process a DNS server: one of its messages per
    /// [`RESOLVER_RENEWAL_NS`]; the others are counted in [`ServedGate::dropped`].
    Resolvers,
}

/// Remembers when each server process last had a message let through.
#[derive(Debug)]
pub struct ServedGate {
    mode: ServerSide,
    /// (pid, process start) -> when a message of it last went through.
    passed: Lru<(u32, u64), u64>,
    dropped: u64,
}

impl ServedGate {
    pub fn new(mode: ServerSide, capacity: usize) -> Self {
        ServedGate {
            mode,
            passed: Lru::new(capacity),
            dropped: 0,
        }
    }

    /// Whether a server-side message of process `pid` (started at `start_ns`) at `mono_ns`
    /// goes on to pairing and the sinks.
    pub fn passes(&mut self, pid: u32, start_ns: u64, mono_ns: u64) -> bool {
        if self.mode == ServerSide::Events {
            return true;
        }
        let key = (pid, start_ns);
        match self.passed.get(&key) {
            Some(last) if mono_ns.saturating_sub(*last) < RESOLVER_RENEWAL_NS => {
                self.dropped += 1;
                false
            }
            Some(last) => {
                *last = mono_ns;
                true
            }
            None => {
                self.passed.insert(key, mono_ns);
                true
            }
        }
    }

    /// Server-side messages dropped after decoding.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn events_mode_lets_everything_through() {
        let mut gate = ServedGate::new(ServerSide::Events, 4);
        assert!((0..10).all(|i| gate.passes(1, 1, i)));
        assert_eq!(gate.dropped(), 0);
    }

    #[test]
    fn resolvers_mode_lets_one_message_per_process_and_renewal_through() {
        let mut gate = ServedGate::new(ServerSide::Resolvers, 4);
        assert!(gate.passes(1, 100, 0), "the first of a process");
        assert!(!gate.passes(1, 100, S));
        assert!(gate.passes(2, 100, S), "another process");
        assert!(gate.passes(1, 200, S), "a reused pid is another process");
        assert!(!gate.passes(1, 100, 9 * S));
        assert!(gate.passes(1, 100, 10 * S), "renewed");
        assert!(!gate.passes(1, 100, 11 * S));
        assert_eq!(gate.dropped(), 3);
    }

    #[test]
    fn a_forgotten_process_passes_again() {
        let mut gate = ServedGate::new(ServerSide::Resolvers, 2);
        for pid in 1..=3 {
            assert!(gate.passes(pid, 0, 0));
        }
        assert!(
            gate.passes(1, 0, S),
            "evicted by the bound, so let through again"
        );
    }
}
