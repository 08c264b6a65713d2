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

use std::collections::HashMap;

type FastHash = foldhash::fast::RandomState;

#[derive(Debug)]
struct Slot {
    key: Box<str>,
    /// Estimated count: an upper bound of the key's true count.
    count: u64,
    /// What `count` may overstate: the count inherited from the key this slot replaced.
    error: u64,
}

/// Space-saving summary of capacity `k`: O(k) memory, O(log k) per [`TopK::add`] (a min-heap on
/// the estimated count, indexed by key).
#[derive(Debug)]
pub struct TopK {
    capacity: usize,
    /// Min-heap on `count`: the slot to replace is at index 0.
    heap: Vec<Slot>,
    /// Key -> index in `heap`.
    index: HashMap<Box<str>, usize, FastHash>,
    total: u64,
}

impl TopK {
    /// A summary tracking at most `k` keys; a `k` of 0 is taken as 1.
    pub fn new(k: usize) -> Self {
        let capacity = k.max(1);
        TopK {
            capacity,
            heap: Vec::with_capacity(capacity),
            index: HashMap::with_capacity_and_hasher(capacity, FastHash::default()),
            total: 0,
        }
    }

    /// Counts `count` occurrences of `key`.
    pub fn add(&mut self, key: &str, count: u64) {
        if count == 0 {
            return;
        }
        self.total = self.total.saturating_add(count);
        if let Some(&i) = self.index.get(key) {
            self.heap[i].count = self.heap[i].count.saturating_add(count);
            self.sift_down(i);
        } else if self.heap.len() < self.capacity {
            self.heap.push(Slot {
                key: key.into(),
                count,
                error: 0,
            });
            let i = self.heap.len() - 1;
            self.index.insert(key.into(), i);
            self.sift_up(i);
        } else {
            // Replace the smallest: the newcomer may have been seen up to `min` times before.
            let min = self.heap[0].count;
            let new_key: Box<str> = key.into();
            let old = std::mem::replace(
                &mut self.heap[0],
                Slot {
                    key: new_key.clone(),
                    count: min.saturating_add(count),
                    error: min,
                },
            );
            self.index.remove(&old.key);
            self.index.insert(new_key, 0);
            self.sift_down(0);
        }
    }

    /// The `n` tracked keys with the largest guaranteed counts (`count - error`), largest first,
    /// ties by key. Exact when no more than `k` distinct keys were ever added.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self
            .heap
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
        self.heap.iter().map(|s| s.error).sum()
    }

    /// Sum of all counts added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of tracked keys, at most `k`.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        *self
            .index
            .get_mut(&self.heap[a].key)
            .expect("heap key indexed") = a;
        *self
            .index
            .get_mut(&self.heap[b].key)
            .expect("heap key indexed") = b;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].count >= self.heap[parent].count {
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
            if l < self.heap.len() && self.heap[l].count < self.heap[smallest].count {
                smallest = l;
            }
            if r < self.heap.len() && self.heap[r].count < self.heap[smallest].count {
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
}
