//! A bounded least-recently-used map: every cache and table in the lens has a size, evicts the
//! entry used longest ago when full, and counts what it evicted.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Map of at most `capacity` entries. `get` and `insert` mark an entry as used; `peek` and
/// `remove` do not. All operations are O(log n).
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    map: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// A capacity of 0 is taken as 1.
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
            evictions: 0,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value for `key`, marked as most recently used.
    pub fn get(&mut self, key: &K) -> Option<&mut V> {
        let tick = self.next_tick();
        let entry = self.map.get_mut(key)?;
        let old = std::mem::replace(&mut entry.1, tick);
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(tick, k);
        }
        Some(&mut entry.0)
    }

    /// The value for `key`, leaving the order alone.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces `key` as the most recently used entry. Returns the entry evicted to
    /// make room, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let tick = self.next_tick();
        if let Some(entry) = self.map.get_mut(&key) {
            let old = std::mem::replace(entry, (value, tick));
            self.order.remove(&old.1);
            self.order.insert(tick, key);
            return None;
        }
        let evicted = if self.map.len() >= self.capacity {
            let evicted = self.pop_oldest();
            self.evictions += 1;
            evicted
        } else {
            None
        };
        self.order.insert(tick, key.clone());
        self.map.insert(key, (value, tick));
        evicted
    }

    /// The value for `key`, inserting `make()` first if it is absent; marked as most recently
    /// used either way.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) {
            self.insert(key.clone(), make());
        }
        self.get(&key).expect("entry was just inserted")
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, tick) = self.map.remove(key)?;
        self.order.remove(&tick);
        Some(value)
    }

    /// The least recently used entry, without removing it.
    pub fn peek_oldest(&self) -> Option<(&K, &V)> {
        let (_, key) = self.order.first_key_value()?;
        self.map.get(key).map(|(v, _)| (key, v))
    }

    /// Removes and returns the least recently used entry (not counted as an eviction).
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (value, _) = self.map.remove(&key)?;
        Some((key, value))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every value, in no particular order, leaving the order alone.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(v, _)| v)
    }

    /// Entries dropped by `insert` because the map was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_and_counts_it() {
        let mut lru = Lru::new(2);
        assert_eq!(lru.insert("a", 1), None);
        assert_eq!(lru.insert("b", 2), None);
        assert_eq!(lru.get(&"a"), Some(&mut 1));
        assert_eq!(lru.insert("c", 3), Some(("b", 2)));
        assert_eq!(lru.evictions(), 1);
        assert_eq!(lru.len(), 2);
        assert!(lru.contains(&"a") && lru.contains(&"c"));
    }

    #[test]
    fn replacing_does_not_evict() {
        let mut lru = Lru::new(2);
        lru.insert(1, "x");
        lru.insert(2, "y");
        assert_eq!(lru.insert(1, "z"), None);
        assert_eq!(lru.evictions(), 0);
        assert_eq!(lru.peek_oldest(), Some((&2, &"y")));
        assert_eq!(lru.pop_oldest(), Some((2, "y")));
        assert_eq!(lru.pop_oldest(), Some((1, "z")));
        assert!(lru.is_empty());
    }

    #[test]
    fn peek_and_remove_keep_order_consistent() {
        let mut lru = Lru::new(3);
        lru.insert(1, ());
        lru.insert(2, ());
        assert_eq!(lru.peek(&1), Some(&()));
        assert_eq!(lru.peek_oldest(), Some((&1, &())));
        assert_eq!(lru.remove(&1), Some(()));
        assert_eq!(lru.remove(&1), None);
        assert_eq!(lru.peek_oldest(), Some((&2, &())));
        *lru.get_or_insert_with(3, || ()) = ();
        assert_eq!(lru.len(), 2);
        let mut one = Lru::new(0);
        one.insert(1, ());
        assert_eq!(
            one.insert(2, ()),
            Some((1, ())),
            "a capacity of 0 holds one entry"
        );
    }
}
