//! A persistent (copy-on-write) hash trie whose entries carry their own keys: cloning is
//! one reference-count increment, and an update copies the few small nodes on one path.
//!
//! Memory matters as much as speed (issue 16): an index entry is the value (an `Arc`, whose
//! target holds the key: the container's id or name) and its 64-bit hash, 16 bytes in a
//! leaf of up to [`LEAF_MAX`] entries; branches have 64 slots and store only the ones in
//! use (a bitmap says which). No key is copied. Before, a fixed 64 × 64 trie of hash maps
//! keyed by `Arc<str>` copies cost ~300 bytes per entry and index (a key allocation, a
//! leaf map of its own with a 4-bucket table for most entries, 34 KiB of middle nodes).
use std::hash::{Hash, Hasher};
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

/// What an index stores: a value that knows its key.
pub(crate) trait Keyed: Clone {
    /// The key (never changes while the value is in a map).
    fn key(&self) -> &str;
}

/// Hash bits per level: 64 slots per branch (a bitmap of one word). With 16, lookups
/// took one more hop from ~5k containers on (at 10k 61 instead of 41 ns, under load).
const BITS: u32 = 6;
/// Most entries a leaf holds before it splits (unless the hash is used up).
pub(crate) const LEAF_MAX: usize = 16;
/// At most this many entries left under a branch whose children are all leaves merge
/// back into one leaf (so that a map that shrank does not keep its branches).
const MERGE_MAX: usize = LEAF_MAX / 2;

#[inline]
fn hash(key: &str) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// The slot bit of hash `h` at the level that uses the bits from `shift` on.
#[inline]
fn bit(h: u64, shift: u32) -> u64 {
    1 << ((h >> shift) & ((1 << BITS) - 1))
}

/// The index of `bit`'s child in a branch with this bitmap.
#[inline]
fn index(bitmap: u64, bit: u64) -> usize {
    (bitmap & (bit - 1)).count_ones() as usize
}

enum Node<V> {
    /// Entries (hash, value) whose hashes share the path to this node; unordered.
    Leaf(Arc<[(u64, V)]>),
    /// The children of the slots whose bits are set, in slot order.
    Branch(u64, Arc<[Node<V>]>),
}

impl<V> Clone for Node<V> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(es) => Node::Leaf(Arc::clone(es)),
            Node::Branch(bm, kids) => Node::Branch(*bm, Arc::clone(kids)),
        }
    }
}

/// A persistent hash trie (hash array mapped trie) of values keyed by [`Keyed::key`].
pub(crate) struct Sharded<V> {
    root: Node<V>,
}

impl<V> Clone for Sharded<V> {
    fn clone(&self) -> Self {
        Sharded {
            root: self.root.clone(),
        }
    }
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            root: Node::Leaf(Arc::from(Vec::new())),
        }
    }
}

impl<V: Keyed> Sharded<V> {
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        let h = hash(key);
        let mut node = &self.root;
        let mut shift = 0;
        loop {
            match node {
                Node::Leaf(es) => {
                    return es
                        .iter()
                        .find(|(eh, v)| *eh == h && v.key() == key)
                        .map(|(_, v)| v)
                }
                Node::Branch(bm, kids) => {
                    let b = bit(h, shift);
                    if bm & b == 0 {
                        return None;
                    }
                    node = &kids[index(*bm, b)];
                    shift += BITS;
                }
            }
        }
    }

    /// A map of `values`, whose keys are distinct, built at once: no allocation but the
    /// nodes themselves and one vector of the entries (inserting them one by one copies a
    /// leaf each time, copies that the allocator keeps as freed memory: issue 16).
    pub(crate) fn from_distinct(values: impl IntoIterator<Item = V>) -> Self {
        let mut entries: Vec<(u64, V)> = values.into_iter().map(|v| (hash(v.key()), v)).collect();
        Sharded {
            root: build(&mut entries, 0),
        }
    }

    /// Inserts `value` under its key; returns the value it replaced.
    pub(crate) fn insert(&mut self, value: V) -> Option<V> {
        let h = hash(value.key());
        insert_at(&mut self.root, h, value, 0)
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        // Nothing is copied for a key that is not there.
        self.get(key)?;
        remove_at(&mut self.root, hash(key), key, 0)
    }

    pub(crate) fn values(&self) -> Values<'_, V> {
        let mut it = Values {
            stack: Vec::new(),
            leaf: [].iter(),
        };
        match &self.root {
            Node::Leaf(es) => it.leaf = es.iter(),
            Node::Branch(_, kids) => it.stack.push(kids.iter()),
        }
        it
    }

    /// (deepest leaf's depth, number of leaves, largest leaf) for the tests.
    #[cfg(test)]
    fn shape(&self) -> (u32, usize, usize) {
        fn walk<V>(n: &Node<V>, depth: u32, acc: &mut (u32, usize, usize)) {
            match n {
                Node::Leaf(es) => {
                    acc.0 = acc.0.max(depth);
                    acc.1 += 1;
                    acc.2 = acc.2.max(es.len());
                }
                Node::Branch(bm, kids) => {
                    assert_eq!(bm.count_ones() as usize, kids.len());
                    assert!(!kids.is_empty());
                    for k in kids.iter() {
                        walk(k, depth + 1, acc);
                    }
                }
            }
        }
        let mut acc = (0, 0, 0);
        walk(&self.root, 0, &mut acc);
        acc
    }
}

/// A node for `entries` (all sharing the path to a node at `shift`), which it sorts in
/// place by their slots: it allocates only the nodes (and each branch's list of children).
fn build<V: Clone>(entries: &mut [(u64, V)], shift: u32) -> Node<V> {
    if entries.len() <= LEAF_MAX || shift >= u64::BITS {
        return Node::Leaf(Arc::from(&*entries));
    }
    entries.sort_unstable_by_key(|(h, _)| bit(*h, shift));
    let mut bm = 0;
    let mut kids = Vec::new();
    for group in entries.chunk_by_mut(|a, b| bit(a.0, shift) == bit(b.0, shift)) {
        bm |= bit(group[0].0, shift);
        kids.push(build(group, shift + BITS));
    }
    Node::Branch(bm, kids.into())
}

fn insert_at<V: Keyed>(node: &mut Node<V>, h: u64, value: V, shift: u32) -> Option<V> {
    match node {
        Node::Leaf(es) => {
            let key = value.key();
            if let Some(i) = es.iter().position(|(eh, v)| *eh == h && v.key() == key) {
                let es = Arc::make_mut(es);
                return Some(std::mem::replace(&mut es[i].1, value));
            }
            let mut v = Vec::with_capacity(es.len() + 1);
            v.extend(es.iter().cloned());
            v.push((h, value));
            *node = build(&mut v, shift);
            None
        }
        Node::Branch(bm, kids) => {
            let b = bit(h, shift);
            let i = index(*bm, b);
            if *bm & b == 0 {
                let mut v = Vec::with_capacity(kids.len() + 1);
                v.extend(kids[..i].iter().cloned());
                v.push(Node::Leaf(Arc::from([(h, value)])));
                v.extend(kids[i..].iter().cloned());
                *kids = v.into();
                *bm |= b;
                None
            } else {
                insert_at(&mut Arc::make_mut(kids)[i], h, value, shift + BITS)
            }
        }
    }
}

/// Removes the entry (which must be there: [`Sharded::remove`] looks first).
fn remove_at<V: Keyed>(node: &mut Node<V>, h: u64, key: &str, shift: u32) -> Option<V> {
    match node {
        Node::Leaf(es) => {
            let i = es.iter().position(|(eh, v)| *eh == h && v.key() == key)?;
            let old = es[i].1.clone();
            let rest: Vec<_> = es[..i].iter().chain(&es[i + 1..]).cloned().collect();
            *es = rest.into();
            Some(old)
        }
        Node::Branch(bm, kids) => {
            let b = bit(h, shift);
            if *bm & b == 0 {
                return None;
            }
            let i = index(*bm, b);
            let old = remove_at(&mut Arc::make_mut(kids)[i], h, key, shift + BITS)?;
            if matches!(&kids[i], Node::Leaf(es) if es.is_empty()) {
                let rest: Vec<_> = kids[..i].iter().chain(&kids[i + 1..]).cloned().collect();
                *kids = rest.into();
                *bm &= !b;
            }
            // Few entries left, all in leaves: one leaf again (also no empty branch).
            let mut small = 0;
            for k in kids.iter() {
                match k {
                    Node::Leaf(es) => small += es.len(),
                    Node::Branch(..) => small = usize::MAX,
                }
                if small > MERGE_MAX {
                    break;
                }
            }
            if small <= MERGE_MAX {
                let mut all = Vec::with_capacity(small);
                for k in kids.iter() {
                    if let Node::Leaf(es) = k {
                        all.extend(es.iter().cloned());
                    }
                }
                *node = Node::Leaf(all.into());
            }
            Some(old)
        }
    }
}

/// The values of a [`Sharded`], in no particular order.
pub(crate) struct Values<'a, V> {
    /// The branches being walked, innermost last.
    stack: Vec<std::slice::Iter<'a, Node<V>>>,
    leaf: std::slice::Iter<'a, (u64, V)>,
}

impl<'a, V> Iterator for Values<'a, V> {
    type Item = &'a V;
    fn next(&mut self) -> Option<&'a V> {
        loop {
            if let Some((_, v)) = self.leaf.next() {
                return Some(v);
            }
            let top = self.stack.last_mut()?;
            match top.next() {
                Some(Node::Leaf(es)) => self.leaf = es.iter(),
                Some(Node::Branch(_, kids)) => self.stack.push(kids.iter()),
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test entry: key and number.
    #[derive(Clone, Debug, PartialEq)]
    struct Kv(Arc<str>, u32);

    impl Keyed for Kv {
        fn key(&self) -> &str {
            &self.0
        }
    }

    fn kv(k: &str, v: u32) -> Kv {
        Kv(Arc::from(k), v)
    }

    fn val(m: &Sharded<Kv>, k: &str) -> Option<u32> {
        m.get(k).map(|e| e.1)
    }

    #[test]
    fn copy_on_write_keeps_old_versions() {
        let mut a: Sharded<Kv> = Sharded::default();
        assert_eq!(a.values().count(), 0);
        for i in 0..1000 {
            assert_eq!(a.insert(kv(&format!("k{i}"), i)), None);
        }
        let b = a.clone();
        assert_eq!(a.insert(kv("k1", 42)), Some(kv("k1", 1)));
        assert_eq!(a.remove("k2"), Some(kv("k2", 2)));
        assert_eq!(val(&b, "k1"), Some(1));
        assert_eq!(val(&b, "k2"), Some(2));
        assert_eq!(val(&a, "k1"), Some(42));
        assert_eq!(val(&a, "k2"), None);
        assert_eq!(a.values().count(), 999);
        assert_eq!(b.values().count(), 1000);
    }

    /// Against a std map through inserts, replacements and removals in a pseudo-random
    /// order; every few steps the whole content, every shape invariant, and an old version
    /// kept unchanged.
    #[test]
    fn behaves_like_a_map() {
        let mut m: Sharded<Kv> = Sharded::default();
        let mut want = std::collections::HashMap::new();
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // grow for the first half, then shrink
            let grow = if step < 10_000 { 3 } else { 1 };
            let k = format!("c-{}", (x >> 33) % 2_000);
            if (x >> 20) % 4 < grow {
                assert_eq!(m.insert(kv(&k, step)).map(|e| e.1), want.insert(k, step));
            } else {
                assert_eq!(m.remove(&k).map(|e| e.1), want.remove(&k), "{k}");
            }
            if step % 997 == 0 {
                let old = m.clone();
                let snapshot = want.clone();
                let mut got: Vec<_> = m.values().map(|e| (e.0.to_string(), e.1)).collect();
                got.sort();
                let mut exp: Vec<_> = want.iter().map(|(k, v)| (k.clone(), *v)).collect();
                exp.sort();
                assert_eq!(got, exp, "step {step}");
                let (depth, leaves, largest) = m.shape();
                assert!(largest <= LEAF_MAX, "largest leaf {largest}");
                assert!(depth <= 5, "depth {depth} with {} entries", want.len());
                assert!(leaves <= want.len().max(1), "{leaves} leaves");
                m.insert(kv("c-0", u32::MAX));
                m.remove("c-1");
                for (k, v) in &snapshot {
                    assert_eq!(val(&old, k), Some(*v));
                }
                assert_eq!(old.values().count(), snapshot.len());
                match want.get("c-0") {
                    Some(v) => m.insert(kv("c-0", *v)),
                    None => m.remove("c-0"),
                };
                if let Some(v) = want.get("c-1") {
                    m.insert(kv("c-1", *v));
                }
            }
        }
        for k in want.keys().cloned().collect::<Vec<_>>() {
            assert!(m.remove(&k).is_some());
        }
        assert_eq!(m.values().count(), 0);
        // everything merged back: one empty leaf
        assert_eq!(m.shape(), (0, 1, 0));
    }

    /// Keys that differ only in their last bytes (`web-1`, `web-2`, ...; ids with long
    /// common prefixes) must spread over the trie, not pile up in a few deep leaves.
    #[test]
    fn similar_keys_spread_over_the_leaves() {
        for keys in [
            (0..4096).map(|i| format!("web-{i}")).collect::<Vec<_>>(),
            (0..4096)
                .map(|i| format!("{:064x}", i as u64 * 977))
                .collect(),
        ] {
            let mut m: Sharded<Kv> = Sharded::default();
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(m.insert(kv(k, i as u32)), None);
            }
            assert_eq!(m.insert(kv(&keys[0], 7)).map(|e| e.1), Some(0));
            assert_eq!(m.remove("nope"), None);
            assert_eq!(m.remove(&keys[1]).map(|e| e.1), Some(1));
            assert_eq!(val(&m, &keys[1]), None);
            assert_eq!(val(&m, &keys[2]), Some(2));
            let (depth, leaves, largest) = m.shape();
            // 4095 random keys: 64^2 = 4096 slots at depth 2, a few leaves one deeper;
            // piled-up keys would need a deep trie
            assert!(depth <= 3, "depth {depth}");
            assert!(leaves > 4095 / LEAF_MAX, "{leaves} leaves");
            assert!(largest <= LEAF_MAX);
            assert_eq!(m.values().count(), 4095);
        }
    }

    /// Keys whose full hashes collide still work: they share a leaf below the last level.
    #[test]
    fn equal_hashes_share_a_leaf() {
        // build() on 20 entries of one hash: no split can separate them
        let mut es: Vec<(u64, Kv)> = (0..20).map(|i| (42, kv(&format!("x{i}"), i))).collect();
        let mut m: Sharded<Kv> = Sharded {
            root: build(&mut es, 0),
        };
        let (depth, leaves, largest) = m.shape();
        assert_eq!((depth, leaves, largest), (u64::BITS.div_ceil(BITS), 1, 20));
        // (lookups hash the key, which does not give 42: the walk and removal are tested)
        assert_eq!(m.values().count(), 20);
        let x3 = kv("x3", 3);
        assert_eq!(remove_at(&mut m.root, 42, "x3", 0), Some(x3));
        assert_eq!(
            insert_at(&mut m.root, 42, kv("x4", 44), 0),
            Some(kv("x4", 4))
        );
        assert_eq!(m.values().count(), 19);
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
