//! A persistent (copy-on-write) hash map split into shards: cloning is a handful of
//! reference-count increments, and an update copies only one small shard.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

const SHARDS: usize = 32;

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
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<V> = HashMap<String, V, BuildHasherDefault<FxHasher>>;

/// Shard index from the top bits of the key's hash (the inner map uses the low bits).
#[inline]
fn shard_of(key: &str) -> usize {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    (h.finish() >> 59) as usize % SHARDS
}

pub(crate) struct Sharded<V> {
    shards: Arc<[Arc<Map<V>>; SHARDS]>,
}

impl<V> Clone for Sharded<V> {
    fn clone(&self) -> Self {
        Sharded {
            shards: Arc::clone(&self.shards),
        }
    }
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            shards: Arc::new(std::array::from_fn(|_| Arc::new(Map::default()))),
        }
    }
}

impl<V: Clone> Sharded<V> {
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    fn shard_mut(&mut self, key: &str) -> &mut Map<V> {
        let shards = Arc::make_mut(&mut self.shards);
        Arc::make_mut(&mut shards[shard_of(key)])
    }

    pub(crate) fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.shard_mut(&key).insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        self.get(key)?;
        self.shard_mut(key).remove(key)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_on_write_keeps_old_versions() {
        let mut a: Sharded<u32> = Sharded::default();
        for i in 0..1000 {
            a.insert(format!("k{i}"), i);
        }
        let b = a.clone();
        a.insert("k1".into(), 42);
        a.remove("k2");
        assert_eq!(b.get("k1"), Some(&1));
        assert_eq!(b.get("k2"), Some(&2));
        assert_eq!(a.get("k1"), Some(&42));
        assert_eq!(a.get("k2"), None);
        assert_eq!(a.values().count(), 999);
        assert_eq!(b.values().count(), 1000);
    }
}
