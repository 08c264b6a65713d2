//! A bounded least-recently-used map: every cache and table in the lens has a size, evicts the
//! entry used longest ago when full, and counts what it evicted.

use std::borrow::Borrow;
use std::hash::Hash;

use hashlink::LinkedHashMap;

/// A fast, non-cryptographic hasher: keys come from the kernel and this host, and every bound
/// below caps what a flood of colliding keys could cost.
type FastHash = foldhash::fast::RandomState;

/// Map of at most `capacity` entries. `get` and `insert` mark an entry as used; `peek` and
/// `remove` do not. All operations are O(1): a hash table threaded by a use-ordered list.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    map: LinkedHashMap<K, V, FastHash>,
    evictions: u64,
}

impl<K: Hash + Eq, V> Lru<K, V> {
    /// A capacity of 0 is taken as 1.
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            map: LinkedHashMap::with_hasher(FastHash::default()),
            evictions: 0,
        }
    }

    /// The value for `key`, marked as most recently used.
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.to_back(key)
    }

    /// The value for `key`, leaving the order alone.
    pub fn peek<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    /// The value for `key`, mutable, leaving the order alone.
    pub fn peek_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(key)
    }

    /// Marks `key` as the most recently used entry.
    pub fn touch<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.map.to_back(key);
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Inserts or replaces `key` as the most recently used entry. Returns the entry evicted to
    /// make room, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let evicted = if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.evictions += 1;
            self.map.pop_front()
        } else {
            None
        };
        self.map.insert(key, value);
        evicted
    }

    /// The value for `key`, inserting `make()` first if it is absent; marked as most recently
    /// used either way.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.map.contains_key(&key) {
            return self.map.to_back(&key).expect("present");
        }
        if self.map.len() >= self.capacity {
            self.evictions += 1;
            self.map.pop_front();
        }
        self.map.entry(key).or_insert_with(make)
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key)
    }

    /// The least recently used entry, without removing it.
    pub fn peek_oldest(&self) -> Option<(&K, &V)> {
        self.map.front()
    }

    /// Removes and returns the least recently used entry (not counted as an eviction).
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        self.map.pop_front()
    }

    /// Removes and returns the least recently used entries while `expired` says so: with
    /// entries touched when their deadline moves, the oldest is the first to expire.
    pub fn pop_while(&mut self, mut expired: impl FnMut(&V) -> bool) -> Vec<(K, V)> {
        let mut out = Vec::new();
        while self.map.front().is_some_and(|(_, v)| expired(v)) {
            out.extend(self.map.pop_front());
        }
        out
    }

    /// Removes every entry (not counted as evictions).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry, from least to most recently used, leaving the order alone.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Every value, from least to most recently used, leaving the order alone.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
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
    fn touch_and_pop_while_follow_the_use_order() {
        let mut lru = Lru::new(4);
        for (k, deadline) in [(1, 10), (2, 20), (3, 30)] {
            lru.insert(k, deadline);
        }
        // Key 1's deadline moved on: touched, it is now the newest.
        *lru.peek_mut(&1).unwrap() = 40;
        lru.touch(&1);
        assert_eq!(lru.pop_while(|&d| d <= 25), vec![(2, 20)]);
        assert_eq!(lru.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![3, 1]);
        lru.clear();
        assert!(lru.is_empty());
        assert_eq!((lru.capacity(), lru.evictions()), (4, 0));
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
