//! A persistent (copy-on-write) hash map split into leaves of a two-level trie: cloning is
//! one reference-count increment, and an update copies two small pointer arrays and one small
//! leaf. Keys are
//! `Arc<str>`, so copying a shard allocates nothing but the shard's table (reference-count
//! increments instead of one string copy per entry: at 10k containers an update used to
//! copy ~600 strings).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// A small, fast, non-cryptographic hasher (the Fx hash of rustc). Container ids and
/// names come from the engine, not from an adversary.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    /// With a final mix (splitmix64's): a multiply carries input bits only upwards, so the
    /// low bits of the raw state, which pick a hash bucket, depend only on the low bytes
    /// of the last word; keys that differ only in their last bytes (`web-1`, `web-2`, or
    /// ids with long common prefixes) then share buckets and lookups walk long probe
    /// sequences (490 ns instead of ~33 ns at 100k such ids).
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

type Map<V> = HashMap<Arc<str>, V, BuildHasherDefault<FxHasher>>;

/// Bits of the hash that pick a leaf at each of the two levels: 64 × 64 = 4096 leaves, so
/// an update copies 2 × 64 pointers and one leaf of about N / 4096 entries (25 at 100k
/// containers) instead of one of 32 shards (3,000 entries at 100k: the sync thread then
/// applied 11k instead of ~150k events/s).
const BITS: u32 = 6;
const FAN: usize = 1 << BITS;

type Leaf<V> = Arc<Map<V>>;
type Mid<V> = Arc<[Leaf<V>; FAN]>;

/// Top and middle index from the middle bits of the key's hash: the inner map takes the
/// bucket from the low bits and its 7-bit tag from the top ones, which must still tell a
/// leaf's keys apart.
#[inline]
fn slots(key: &str) -> (usize, usize) {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    let m = h.finish() >> 32;
    ((m as usize) & (FAN - 1), ((m >> BITS) as usize) & (FAN - 1))
}

/// A persistent two-level hash trie of small hash maps. Empty leaves and middle nodes are
/// shared, so an empty map costs three allocations.
pub(crate) struct Sharded<V> {
    root: Arc<[Mid<V>; FAN]>,
}

impl<V> Clone for Sharded<V> {
    fn clone(&self) -> Self {
        Sharded {
            root: Arc::clone(&self.root),
        }
    }
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        let leaf: Leaf<V> = Arc::new(Map::default());
        let mid: Mid<V> = Arc::new(std::array::from_fn(|_| leaf.clone()));
        Sharded {
            root: Arc::new(std::array::from_fn(|_| mid.clone())),
        }
    }
}

impl<V: Clone> Sharded<V> {
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        let (a, b) = slots(key);
        self.root[a][b].get(key)
    }

    fn leaf_mut(&mut self, key: &str) -> &mut Map<V> {
        let (a, b) = slots(key);
        let root = Arc::make_mut(&mut self.root);
        let mid = Arc::make_mut(&mut root[a]);
        Arc::make_mut(&mut mid[b])
    }

    pub(crate) fn insert(&mut self, key: &str, value: V) -> Option<V> {
        let leaf = self.leaf_mut(key);
        match leaf.get_mut(key) {
            Some(v) => Some(std::mem::replace(v, value)),
            None => leaf.insert(Arc::from(key), value),
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        self.get(key)?;
        self.leaf_mut(key).remove(key)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.root
            .iter()
            .flat_map(|mid| mid.iter())
            .filter(|leaf| !leaf.is_empty())
            .flat_map(|leaf| leaf.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_on_write_keeps_old_versions() {
        let mut a: Sharded<u32> = Sharded::default();
        for i in 0..1000 {
            a.insert(&format!("k{i}"), i);
        }
        let b = a.clone();
        a.insert("k1", 42);
        a.remove("k2");
        assert_eq!(b.get("k1"), Some(&1));
        assert_eq!(b.get("k2"), Some(&2));
        assert_eq!(a.get("k1"), Some(&42));
        assert_eq!(a.get("k2"), None);
        assert_eq!(a.values().count(), 999);
        assert_eq!(b.values().count(), 1000);
    }

    /// The point of the trie: an update copies one small leaf. Keys that differ only in
    /// their last bytes (`web-1`, `web-2`, ...; ids with long common prefixes) must spread
    /// over the leaves, at both levels, not pile up in a few.
    #[test]
    fn similar_keys_spread_over_the_leaves() {
        for keys in [
            (0..4096).map(|i| format!("web-{i}")).collect::<Vec<_>>(),
            (0..4096)
                .map(|i| format!("{:064x}", i as u64 * 977))
                .collect(),
        ] {
            let mut m: Sharded<u32> = Sharded::default();
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(m.insert(k, i as u32), None);
            }
            assert_eq!(m.insert(&keys[0], 7), Some(0));
            assert_eq!(m.remove("nope"), None);
            assert_eq!(m.remove(&keys[1]), Some(1));
            assert_eq!(m.get(&keys[1]), None);
            assert_eq!(m.get(&keys[2]), Some(&2));
            let leaves: Vec<usize> = m
                .root
                .iter()
                .flat_map(|mid| mid.iter().map(|l| l.len()))
                .collect();
            let used = leaves.iter().filter(|&&n| n > 0).count();
            let mids = m
                .root
                .iter()
                .filter(|mid| mid.iter().any(|l| !l.is_empty()))
                .count();
            // 4095 random keys in 4096 leaves fill ~63 % of them; the largest holds < 10
            assert!(used > 2000, "{used} leaves used");
            assert_eq!(mids, FAN);
            assert!(
                *leaves.iter().max().unwrap() < 12,
                "{:?}",
                leaves.iter().max()
            );
            assert_eq!(m.values().count(), 4095);
        }
    }

    /// The final mix (see `finish`): flipping any one bit of the state flips each bit of
    /// the hash about half the time (the strict avalanche criterion), so the low bits that
    /// pick a bucket and the middle ones that pick a leaf depend on every input byte.
    /// Deterministic inputs; the unmixed or a weakened mix misses by 0.26 to 0.5.
    #[test]
    fn finish_avalanches() {
        let n = 2000;
        let mut flips = vec![[0u32; 64]; 64];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let s = x ^ (x >> 29);
            let h = FxHasher(s).finish();
            for (i, row) in flips.iter_mut().enumerate() {
                let d = h ^ FxHasher(s ^ (1 << i)).finish();
                for (j, f) in row.iter_mut().enumerate() {
                    *f += ((d >> j) & 1) as u32;
                }
            }
        }
        let worst = flips
            .iter()
            .flatten()
            .map(|&f| (f as f64 / n as f64 - 0.5).abs())
            .fold(0.0, f64::max);
        // 0.038 here; sampling noise alone stays under 0.05
        assert!(worst < 0.15, "worst bias {worst:.3}");
    }

    #[test]
    fn hashes_every_byte() {
        let hash = |b: &[u8]| {
            let mut h = FxHasher::default();
            h.write(b);
            h.finish()
        };
        let mut seen = std::collections::HashSet::new();
        for len in 1..=17 {
            for pos in 0..len {
                let mut b = vec![b'a'; len];
                b[pos] = b'b';
                assert!(seen.insert(hash(&b)), "len {len} pos {pos}");
            }
            assert!(seen.insert(hash(&vec![b'a'; len])));
        }
        let one = |i: u8| {
            let mut h = FxHasher::default();
            h.write_u8(i);
            h.finish()
        };
        let word = |i: usize| {
            let mut h = FxHasher::default();
            h.write_usize(i);
            h.finish()
        };
        assert_ne!(one(1), one(2));
        assert_ne!(word(1), word(2));
        assert_ne!(one(1), FxHasher::default().finish());
    }
}
