//! The one bounded map every detector keeps its state in: at most `capacity` entries, the
//! oldest evicted (and counted) to make room. "Oldest" is insertion order unless an entry is
//! `touch`ed, which makes it the newest; detectors touch on use (LRU) or when they restart an
//! entry's window, so the oldest entry is also the first to expire and sweeps stop early.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Bounded<K, V> {
    capacity: usize,
    seq: u64,
    map: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    /// A capacity of 0 is taken as 1.
    pub fn new(capacity: usize) -> Self {
        Bounded {
            capacity: capacity.max(1),
            seq: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
            evictions: 0,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The value, leaving its place in the order alone.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(v, _)| v)
    }

    /// Makes `key` the newest entry.
    pub fn touch(&mut self, key: &K) {
        self.seq += 1;
        if let Some(entry) = self.map.get_mut(key) {
            if let Some(k) = self.order.remove(&entry.1) {
                self.order.insert(self.seq, k);
            }
            entry.1 = self.seq;
        }
    }

    /// Inserts (or replaces) `key` as the newest entry; returns the entry evicted to make room.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        self.seq += 1;
        if let Some(entry) = self.map.get_mut(&key) {
            let old = std::mem::replace(entry, (value, self.seq));
            self.order.remove(&old.1);
            self.order.insert(self.seq, key);
            return None;
        }
        let evicted = if self.map.len() >= self.capacity {
            self.evictions += 1;
            self.pop_oldest()
        } else {
            None
        };
        self.order.insert(self.seq, key.clone());
        self.map.insert(key, (value, self.seq));
        evicted
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, seq) = self.map.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    pub fn oldest(&self) -> Option<(&K, &V)> {
        let (_, key) = self.order.first_key_value()?;
        self.map.get(key).map(|(v, _)| (key, v))
    }

    /// Removes the oldest entry (not counted as an eviction).
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (value, _) = self.map.remove(&key)?;
        Some((key, value))
    }

    /// Removes and returns the oldest entries while `expired` says so.
    pub fn pop_while(&mut self, mut expired: impl FnMut(&V) -> bool) -> Vec<(K, V)> {
        let mut out = Vec::new();
        while self.oldest().is_some_and(|(_, v)| expired(v)) {
            out.extend(self.pop_oldest());
        }
        out
    }

    /// Removes every entry (not counted as evictions).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries dropped by `insert` because the map was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_and_counts() {
        let mut m = Bounded::new(2);
        assert!(m.insert("a", 1).is_none());
        assert!(m.insert("b", 2).is_none());
        m.touch(&"a");
        assert_eq!(m.insert("c", 3), Some(("b", 2)));
        assert_eq!(m.evictions(), 1);
        assert_eq!(m.len(), 2);
        assert_eq!(m.insert("a", 4), None, "replacing does not evict");
        assert_eq!(m.get(&"a"), Some(&4));
        assert_eq!(m.oldest(), Some((&"c", &3)));
        *m.get_mut(&"c").unwrap() = 5;
        assert_eq!(m.oldest(), Some((&"c", &5)), "get_mut keeps the order");
    }

    #[test]
    fn pops_while_expired() {
        let mut m = Bounded::new(10);
        for i in 0..5 {
            m.insert(i, i * 10);
        }
        let popped = m.pop_while(|&v| v < 25);
        assert_eq!(popped, vec![(0, 0), (1, 10), (2, 20)]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.remove(&3), Some(30));
        assert_eq!(m.pop_oldest(), Some((4, 40)));
        assert!(m.is_empty());
        m.insert(5, 50);
        m.clear();
        assert!(m.is_empty() && m.oldest().is_none());
        assert_eq!(m.evictions(), 0);
        assert_eq!(Bounded::<u8, ()>::new(0).capacity(), 1);
    }
}
