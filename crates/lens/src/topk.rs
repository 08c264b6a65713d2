//! A bounded heavy-hitters counter: the space-saving algorithm (Metwally, Agrawal, El Abbadi,
//! "Efficient computation of frequent and top-k elements in data streams", ICDT 2005).
//!
//! It keeps at most `k` keys whatever the number of distinct keys it is fed. When a new key
//! arrives and the table is full, the key with the smallest count is replaced and the newcomer
//! inherits that count as its possible overestimate (`error`). Guarantees, with `N` = [`TopK::total`]:
//! every key whose true count exceeds `N / k` is tracked, and a tracked key's true count lies in
//! `[count - error, count]`, where `error <= N / k`.
//!
//! Counts reported by [`TopK::top`] are the guaranteed part (`count - error`), so they never
//! overstate a key, and what no tracked key can claim (the weight of evicted keys) is
//! [`TopK::other`]: `total() == sum of top(len()) counts + other()`, always.

use std::hash::BuildHasher;

use hashbrown::HashTable;

type FastHash = foldhash::fast::RandomState;

#[derive(Debug)]
struct Slot {
    key: Box<str>,
    /// Of `key`, kept so that replacing the slot does not hash the old key again.
    hash: u64,
    /// Estimated count: an upper bound of the key's true count.
    count: u64,
    /// What `count` may overstate: the count inherited from the key this slot replaced.
    error: u64,
}

/// Space-saving summary of capacity `k`: O(k) memory, O(log k) per [`TopK::add`] (a min-heap on
/// the estimated count). The heap holds slot numbers and each slot its place in the heap, so
/// moving a key in the heap hashes nothing: in the agent, with the keys held in a string-keyed
/// map, the heap's swaps were most of the metrics sink's time per query (perf, 1,000 names).
#[derive(Debug)]
pub struct TopK {
    capacity: usize,
    /// A key keeps its slot until it is replaced.
    slots: Vec<Slot>,
    /// Min-heap of slot numbers on `count`: the slot to replace is at index 0.
    heap: Vec<u32>,
    /// Slot number -> its index in `heap`.
    place: Vec<u32>,
    /// Slot numbers, found by their key.
    index: HashTable<u32>,
    hasher: FastHash,
    total: u64,
}

impl TopK {
    /// A summary tracking at most `k` keys; a `k` of 0 is taken as 1.
    pub fn new(k: usize) -> Self {
        let capacity = k.clamp(1, u32::MAX as usize);
        TopK {
            capacity,
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            place: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            hasher: FastHash::default(),
            total: 0,
        }
    }

    /// Counts `count` occurrences of `key`.
    pub fn add(&mut self, key: &str, count: u64) {
        if count == 0 {
            return;
        }
        self.total = self.total.saturating_add(count);
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        if let Some(&slot) = self.index.find(hash, |&s| &*slots[s as usize].key == key) {
            let s = &mut self.slots[slot as usize];
            s.count = s.count.saturating_add(count);
            self.sift_down(self.place[slot as usize] as usize);
        } else if self.slots.len() < self.capacity {
            let slot = self.slots.len() as u32;
            self.slots.push(Slot {
                key: key.into(),
                hash,
                count,
                error: 0,
            });
            self.heap.push(slot);
            self.place.push(slot);
            let slots = &self.slots;
            self.index
                .insert_unique(hash, slot, |&s| slots[s as usize].hash);
            self.sift_up(slot as usize);
        } else {
            // Replace the smallest: the newcomer may have been seen up to `min` times before.
            let slot = self.heap[0];
            let old = &self.slots[slot as usize];
            let min = old.count;
            if let Ok(entry) = self.index.find_entry(old.hash, |&s| s == slot) {
                entry.remove();
            }
            self.slots[slot as usize] = Slot {
                key: key.into(),
                hash,
                count: min.saturating_add(count),
                error: min,
            };
            let slots = &self.slots;
            self.index
                .insert_unique(hash, slot, |&s| slots[s as usize].hash);
            self.sift_down(0);
        }
    }

    /// The `n` tracked keys with the largest guaranteed counts (`count - error`), largest first,
    /// ties by key. Exact when no more than `k` distinct keys were ever added.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self
            .slots
            .iter()
            .map(|s| (&*s.key, s.count - s.error))
            .collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// The part of [`TopK::total`] no tracked key can claim: `total()` minus the guaranteed counts
    /// of all tracked keys (the sum of their errors). 0 while no key was ever evicted. The rest
    /// beyond the first `n` keys is `total() - sum of top(n) counts`, which includes this.
    pub fn other(&self) -> u64 {
        self.slots.iter().map(|s| s.error).sum()
    }

    /// Sum of all counts added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of tracked keys, at most `k`.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn count_at(&self, i: usize) -> u64 {
        self.slots[self.heap[i] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place[self.heap[a] as usize] = a as u32;
        self.place[self.heap[b] as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.count_at(i) >= self.count_at(parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut smallest = i;
            if l < self.heap.len() && self.count_at(l) < self.count_at(smallest) {
                smallest = l;
            }
            if r < self.heap.len() && self.count_at(r) < self.count_at(smallest) {
                smallest = r;
            }
            if smallest == i {
                return;
            }
            self.swap(i, smallest);
            i = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn topk_exact_when_distinct_keys_fit() {
        let mut t = TopK::new(4);
        for (key, n) in [("a", 5), ("b", 3), ("c", 9), ("a", 2), ("d", 1), ("b", 4)] {
            t.add(key, n);
        }
        assert_eq!(t.top(10), vec![("c", 9), ("a", 7), ("b", 7), ("d", 1)]);
        assert_eq!(t.top(2), vec![("c", 9), ("a", 7)]);
        assert_eq!((t.total(), t.other(), t.len()), (24, 0, 4));
    }

    #[test]
    fn topk_eviction_keeps_totals_consistent() {
        let mut t = TopK::new(2);
        t.add("a", 10);
        t.add("b", 1);
        t.add("c", 2); // replaces b: estimate 3, error 1
        assert_eq!(t.top(5), vec![("a", 10), ("c", 2)]);
        assert_eq!(t.other(), 1);
        let reported: u64 = t.top(t.len()).iter().map(|(_, c)| c).sum();
        assert_eq!(reported + t.other(), t.total());
        t.add("x", 0);
        assert_eq!((t.len(), t.total()), (2, 13));
    }

    #[test]
    fn topk_finds_heavy_hitters_in_zipf_stream() {
        const DISTINCT: usize = 100_000;
        const N: u64 = 300_000;
        const K: usize = 200;
        // Zipf(s = 1.2) over DISTINCT keys, by inverse CDF.
        let mut cdf = Vec::with_capacity(DISTINCT);
        let mut acc = 0.0;
        for rank in 1..=DISTINCT {
            acc += 1.0 / (rank as f64).powf(1.2);
            cdf.push(acc);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut truth = vec![0u64; DISTINCT];
        let mut t = TopK::new(K);
        for _ in 0..N {
            let u = rng.unit() * acc;
            let rank = cdf.partition_point(|&c| c < u).min(DISTINCT - 1);
            truth[rank] += 1;
            t.add(&format!("k{rank}.example"), 1);
            assert!(t.len() <= K);
        }
        assert_eq!((t.len(), t.total()), (K, N));
        assert!(t.heap.capacity() <= K && t.index.len() == K);
        let bound = N / K as u64;
        let top = t.top(K);
        // Every key above N/k is tracked, and never overstated by more than N/k.
        for (rank, &count) in truth.iter().enumerate().filter(|(_, c)| **c > bound) {
            let key = format!("k{rank}.example");
            let (_, reported) = top.iter().find(|(k, _)| *k == key).expect("heavy hitter");
            assert!(*reported <= count && count - reported <= bound, "{key}");
        }
        let top5: Vec<String> = t.top(5).iter().map(|(k, _)| k.to_string()).collect();
        let want: Vec<String> = (0..5).map(|r| format!("k{r}.example")).collect();
        assert_eq!(top5, want);
        let reported: u64 = top.iter().map(|(_, c)| c).sum();
        assert_eq!(reported + t.other(), t.total());
    }

    #[test]
    fn topk_heap_and_index_stay_consistent_under_churn() {
        let mut t = TopK::new(8);
        let mut rng = Rng(7);
        let mut truth: HashMap<String, u64> = HashMap::new();
        for _ in 0..20_000 {
            let key = format!("k{}", rng.next() % 50);
            let n = 1 + rng.next() % 3;
            t.add(&key, n);
            *truth.entry(key).or_default() += n;
            for (i, &slot) in t.heap.iter().enumerate() {
                assert_eq!(t.place[slot as usize] as usize, i, "slot knows its place");
                if i > 0 {
                    assert!(t.count_at((i - 1) / 2) <= t.count_at(i), "min-heap");
                }
            }
            assert_eq!(t.index.len(), t.len(), "every slot indexed once");
        }
        let reported: u64 = t.top(t.len()).iter().map(|(_, c)| c).sum();
        assert_eq!(reported + t.other(), t.total());
        for (key, count) in t.top(t.len()) {
            assert!(count <= truth[key], "{key}: never overstated");
        }
    }
}
