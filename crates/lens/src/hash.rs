//! Hashes of what workloads choose (names, sockets, ids), keyed at random once per run: an
//! attacker who cannot know the key cannot pick names that always fall out of the agent's
//! sample, or that keep a distinct-name count low. The same value throughout a run.

use std::hash::{BuildHasher, DefaultHasher, Hash, RandomState};
use std::sync::LazyLock;

static RUN_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// SipHash of `value` under this run's key.
pub fn keyed(value: impl Hash) -> u64 {
    RUN_KEY.hash_one(value)
}

/// A SipHash hasher under this run's key, for values hashed piece by piece.
pub fn keyed_hasher() -> DefaultHasher {
    RUN_KEY.build_hasher()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_in_a_run_and_keyed() {
        assert_eq!(keyed("a.example"), keyed("a.example"));
        assert_ne!(keyed("a.example"), keyed("b.example"));
        // Not the fixed-key SipHash every run would share.
        let mut fixed = std::hash::DefaultHasher::new();
        "a.example".hash(&mut fixed);
        assert_ne!(keyed("a.example"), std::hash::Hasher::finish(&fixed));
    }
}
