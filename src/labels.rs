//! [`Labels`]: a container's labels, immutable and compact.
#![forbid(unsafe_code)]

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::iter::FusedIterator;

/// The longest text whose offsets are stored as one `u32` each; a longer text (beyond
/// 4 GiB) stores each offset as two (high and low half). Small in the unit tests, so that
/// they cover both widths.
#[cfg(not(test))]
const NARROW_MAX: usize = u32::MAX as usize;
#[cfg(test)]
const NARROW_MAX: usize = 64;

/// A container's labels: string keys and values, sorted by key, each key once.
///
/// Immutable and compact: all keys and values are kept back to back in one string, with
/// one array of offsets beside it: two allocations for any number of labels, none when
/// there are none (a `BTreeMap<String, String>` allocates a 560-byte node plus two strings
/// per label). Lookups are binary searches. Build labels from pairs with
/// [`collect`](Iterator::collect) (a later pair with the same key wins, as when inserting
/// into a map), from an array, or from a `BTreeMap<String, String>`:
///
/// ```
/// use whalewatcher::Labels;
///
/// let labels: Labels = [("tier", "web"), ("com.docker.compose.project", "shop"), ("tier", "db")]
///     .into_iter()
///     .collect();
/// assert_eq!(labels.len(), 2);
/// assert_eq!(labels.get("tier"), Some("db")); // the later pair won
/// assert_eq!(labels.get("com.docker.compose.project"), Some("shop"));
/// assert_eq!(labels.get("nope"), None);
///
/// // In key order, as pairs of `&str`:
/// let keys: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, ["com.docker.compose.project", "tier"]);
/// ```
///
/// `Debug` prints labels like a map; with the `serde` feature they serialize as a map
/// (a JSON object in key order).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    /// Every key and value, back to back: key 0, value 0, key 1, value 1, ...
    text: Box<str>,
    /// Where in `text` each key and each value ends, in the same order; one `u32` per
    /// offset, or two (high half, low half) when `text` is longer than [`NARROW_MAX`].
    /// The representation is canonical (sorted, unique keys; the width follows from the
    /// text's length), so the derived equality and hash are those of the pairs.
    ends: Box<[u32]>,
}

impl Labels {
    /// No labels (allocates nothing; the same as `Labels::default()`).
    ///
    /// ```
    /// let labels = whalewatcher::Labels::new();
    /// assert!(labels.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of label `key`, if there is one.
    ///
    /// ```
    /// let labels = whalewatcher::Labels::from([("a", "1"), ("b", "")]);
    /// assert_eq!(labels.get("a"), Some("1"));
    /// assert_eq!(labels.get("b"), Some("")); // present, empty value
    /// assert_eq!(labels.get("c"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.pair(i).1)
    }

    /// Whether there is a label `key` (with any value, also an empty one).
    ///
    /// ```
    /// use whalewatcher::{Labels, PRIVILEGED_LABEL};
    ///
    /// let labels = Labels::from([(PRIVILEGED_LABEL, "")]);
    /// assert!(labels.contains_key(PRIVILEGED_LABEL));
    /// assert!(!labels.contains_key("other"));
    /// ```
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// The number of labels.
    ///
    /// ```
    /// assert_eq!(whalewatcher::Labels::from([("a", "1"), ("b", "2")]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.ends.len() / (2 * self.width())
    }

    /// Whether there are no labels.
    ///
    /// ```
    /// assert!(whalewatcher::Labels::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The labels as `(key, value)` pairs, in key order (by bytes, as `str`s compare).
    /// `&labels` is iterable the same way.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use whalewatcher::Labels;
    ///
    /// let labels = Labels::from([("b", "2"), ("a", "1")]);
    /// let pairs: Vec<(&str, &str)> = labels.iter().collect();
    /// assert_eq!(pairs, [("a", "1"), ("b", "2")]);
    /// for (key, value) in &labels {
    ///     println!("{key}={value}");
    /// }
    /// // A map of your own, when you need one:
    /// let map: BTreeMap<String, String> =
    ///     labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    /// assert_eq!(map["b"], "2");
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            labels: self,
            front: 0,
            back: self.len(),
        }
    }

    /// 1 when each offset is one `u32`, 2 when it is two.
    fn width(&self) -> usize {
        if self.text.len() > NARROW_MAX {
            2
        } else {
            1
        }
    }

    /// Offset number `j` (the end of key `j / 2` for even `j`, else of its value).
    fn end(&self, j: usize) -> usize {
        if self.text.len() > NARROW_MAX {
            let half = |i: usize| u64::from(self.ends.get(i).copied().unwrap_or(0));
            let both = (half(2 * j) << 32) | half(2 * j + 1);
            usize::try_from(both).unwrap_or(usize::MAX)
        } else {
            self.ends.get(j).map_or(0, |&e| e as usize)
        }
    }

    /// Pair `i` (`i < len()`; beyond, or on a broken invariant, empty strings: never a
    /// panic).
    fn pair(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.end(2 * i - 1),
        };
        let mid = self.end(2 * i);
        let end = self.end(2 * i + 1);
        (
            self.text.get(start..mid).unwrap_or(""),
            self.text.get(mid..end).unwrap_or(""),
        )
    }

    /// The index of `key`, or where it would be.
    fn find(&self, key: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.pair(mid).0.cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Labels of `pairs`, which are sorted by key with no key twice. Two passes: the
    /// sizes first, so that both allocations are exact.
    fn from_sorted_unique<'a, I>(pairs: I) -> Self
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        let (mut n, mut total) = (0usize, 0usize);
        for (k, v) in pairs.clone() {
            n += 1;
            total = total.saturating_add(k.len()).saturating_add(v.len());
        }
        let wide = total > NARROW_MAX;
        let mut text = String::with_capacity(total);
        let mut ends = Vec::with_capacity(n.saturating_mul(if wide { 4 } else { 2 }));
        for (k, v) in pairs {
            for s in [k, v] {
                text.push_str(s);
                let end = text.len() as u64;
                if wide {
                    ends.push((end >> 32) as u32);
                    ends.push(end as u32);
                } else {
                    ends.push(u32::try_from(end).unwrap_or(u32::MAX));
                }
            }
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

/// Collects `(key, value)` pairs of anything that is a `str` (`&str`, `String`,
/// `&String`, `Cow<str>`, ...). A later pair with the same key wins, as when inserting
/// into a map.
///
/// ```
/// use whalewatcher::Labels;
///
/// let from_strings: Labels = vec![("k".to_string(), "v".to_string())].into_iter().collect();
/// let from_strs: Labels = [("k", "old"), ("k", "v")].into_iter().collect();
/// assert_eq!(from_strings, from_strs);
/// ```
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: equal keys stay in their order, so the last of each run is the latest.
        // Linear on input that is sorted already (a JSON object, a map).
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let unique = pairs
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| {
                pairs
                    .get(i + 1)
                    .is_none_or(|(next, _)| next.as_ref() != k.as_ref())
            })
            .map(|(_, (k, v))| (k.as_ref(), v.as_ref()));
        Labels::from_sorted_unique(unique)
    }
}

/// Labels from an array of pairs, as [`collect`](Iterator::collect) makes them (a later
/// pair with the same key wins).
///
/// ```
/// let labels = whalewatcher::Labels::from([("a", "1")]);
/// assert_eq!(labels.get("a"), Some("1"));
/// ```
impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

/// The labels of a map (no sorting needed: a `BTreeMap` is sorted).
///
/// ```
/// use std::collections::BTreeMap;
/// use whalewatcher::Labels;
///
/// let map = BTreeMap::from([("a".to_string(), "1".to_string())]);
/// assert_eq!(Labels::from(map), Labels::from([("a", "1")]));
/// ```
impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels::from_sorted_unique(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl fmt::Debug for Labels {
    /// Like a map: `{"a": "1", "b": "2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(feature = "serde")]
impl serde_core::Serialize for Labels {
    /// As a map (a JSON object) in key order: the same as a `BTreeMap<String, String>`.
    fn serialize<S: serde_core::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// The `(key, value)` pairs of [`Labels`], in key order ([`Labels::iter`]).
#[derive(Clone)]
pub struct Iter<'a> {
    labels: &'a Labels,
    /// The next pair from the front.
    front: usize,
    /// One past the next pair from the back.
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.front += 1;
        Some(self.labels.pair(self.front - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back.saturating_sub(self.front);
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        Some(self.labels.pair(self.back))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl FusedIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    /// The pairs not yet taken.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_rng::Rng;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    /// The labels as a map, through the public surface only.
    fn as_map(l: &Labels) -> BTreeMap<String, String> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Checks `l` against `want` through every accessor.
    fn check(what: &str, l: &Labels, want: &BTreeMap<String, String>) {
        assert_eq!(as_map(l), *want, "{what}: pairs");
        assert_eq!(l.len(), want.len(), "{what}: len");
        assert_eq!(l.is_empty(), want.is_empty(), "{what}: is_empty");
        assert_eq!(l.iter().len(), want.len(), "{what}: ExactSizeIterator");
        let order: Vec<(&str, &str)> = l.iter().collect();
        let want_order: Vec<(&str, &str)> =
            want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(order, want_order, "{what}: key order");
        let back: Vec<(&str, &str)> = l.iter().rev().collect();
        assert_eq!(
            back,
            want_order.iter().rev().copied().collect::<Vec<_>>(),
            "{what}: from the back"
        );
        for (k, v) in want {
            assert_eq!(l.get(k), Some(v.as_str()), "{what}: get {k:?}");
            assert!(l.contains_key(k), "{what}: contains {k:?}");
        }
        for absent in ["", "\0", "zzzz", "a\u{10ffff}", "aa0"] {
            if !want.contains_key(absent) {
                assert_eq!(l.get(absent), None, "{what}: get absent {absent:?}");
                assert!(!l.contains_key(absent), "{what}: absent {absent:?}");
            }
        }
        assert_eq!(*l, Labels::from(want.clone()), "{what}: equal to from(map)");
        assert_eq!(
            format!("{l:?}"),
            format!("{want:?}"),
            "{what}: Debug as a map"
        );
    }

    #[test]
    fn table() {
        let long = "x".repeat(NARROW_MAX + 1);
        #[allow(clippy::type_complexity)]
        let rows: &[(&str, &[(&str, &str)], &[(&str, &str)])] = &[
            ("empty", &[], &[]),
            ("one", &[("a", "1")], &[("a", "1")]),
            (
                "sorted",
                &[("a", "1"), ("b", "2")],
                &[("a", "1"), ("b", "2")],
            ),
            (
                "unsorted",
                &[("b", "2"), ("a", "1")],
                &[("a", "1"), ("b", "2")],
            ),
            (
                "duplicate: the later wins",
                &[("k", "first"), ("j", "x"), ("k", "second")],
                &[("j", "x"), ("k", "second")],
            ),
            (
                "three of one key, unsorted around it",
                &[("k", "1"), ("z", ""), ("k", "2"), ("a", ""), ("k", "3")],
                &[("a", ""), ("k", "3"), ("z", "")],
            ),
            ("empty key and value", &[("", "")], &[("", "")]),
            (
                "empty values",
                &[("x", ""), ("y", ""), ("w", "")],
                &[("w", ""), ("x", ""), ("y", "")],
            ),
            (
                "byte order, not locale",
                &[("b", "1"), ("B", "2"), ("é", "3"), ("e", "4")],
                &[("B", "2"), ("b", "1"), ("e", "4"), ("é", "3")],
            ),
            (
                "unicode and NUL",
                &[("🐳", "wal"), ("ключ", "значение"), ("a\0b", "\0")],
                &[("a\0b", "\0"), ("ключ", "значение"), ("🐳", "wal")],
            ),
            (
                "prefixes of each other",
                &[("abc", "3"), ("a", "1"), ("ab", "2")],
                &[("a", "1"), ("ab", "2"), ("abc", "3")],
            ),
            (
                "wide offsets (text beyond NARROW_MAX)",
                &[("big", long.as_str()), ("a", "1"), ("zz", "2")],
                &[("a", "1"), ("big", long.as_str()), ("zz", "2")],
            ),
        ];
        for (what, input, want) in rows {
            let want: BTreeMap<String, String> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let l: Labels = input.iter().copied().collect();
            check(what, &l, &want);
            // Owned pairs collect the same way.
            let owned: Labels = input
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(owned, l, "{what}: owned");
        }
    }

    #[test]
    fn width_follows_the_text_length() {
        let narrow = Labels::from([("k", "v".repeat(NARROW_MAX - 1))]);
        assert_eq!(narrow.text.len(), NARROW_MAX);
        assert_eq!(narrow.ends.len(), 2, "one u32 per offset");
        let wide = Labels::from([("k", "v".repeat(NARROW_MAX))]);
        assert_eq!(wide.ends.len(), 4, "two u32 per offset");
        assert_eq!(wide.len(), 1);
        assert_eq!(wide.get("k").map(str::len), Some(NARROW_MAX));
    }

    #[test]
    fn empty_labels_allocate_nothing() {
        let l = Labels::new();
        assert_eq!(l.text.len(), 0);
        assert_eq!(l.ends.len(), 0);
        // An empty boxed slice or str points at no allocation (a dangling, aligned pointer).
        let collected: Labels = std::iter::empty::<(&str, &str)>().collect();
        assert_eq!(collected, l);
        assert!(l.iter().next().is_none());
        assert_eq!(format!("{l:?}"), "{}");
    }

    #[test]
    fn exact_allocations() {
        let l = Labels::from([("com.docker.compose.project", "shop"), ("a", "b")]);
        assert_eq!(&*l.text, "abcom.docker.compose.projectshop");
        assert_eq!(&*l.ends, &[1, 2, 28, 32]);
    }

    #[test]
    fn equal_and_hash_equal_whatever_the_input_order() {
        let hash = |l: &Labels| {
            let mut h = DefaultHasher::new();
            l.hash(&mut h);
            h.finish()
        };
        let a: Labels = [("x", "1"), ("y", "2")].into_iter().collect();
        let b: Labels = [("y", "2"), ("x", "0"), ("x", "1")].into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        let c: Labels = [("x", "1"), ("y", "3")].into_iter().collect();
        assert_ne!(a, c);
        // Same text, different split.
        let d = Labels::from([("ab", ""), ("c", "")]);
        let e = Labels::from([("a", "b"), ("c", "")]);
        assert_ne!(d, e);
    }

    #[test]
    fn iterators_from_both_ends_meet() {
        let l = Labels::from([("a", "1"), ("b", "2"), ("c", "3")]);
        let mut it = l.iter();
        assert_eq!(it.next(), Some(("a", "1")));
        assert_eq!(it.next_back(), Some(("c", "3")));
        assert_eq!(it.len(), 1);
        assert_eq!(format!("{it:?}"), r#"[("b", "2")]"#);
        assert_eq!(it.next_back(), Some(("b", "2")));
        assert_eq!(it.next(), None);
        assert_eq!(it.next_back(), None);
        assert_eq!((&l).into_iter().count(), 3);
    }

    /// Random inserts into a `BTreeMap` and the same pairs collected: equal, pair for
    /// pair, through every accessor (seeded: reproducible).
    #[test]
    fn like_a_btreemap_on_random_inserts() {
        const ALPHABET: &[&str] = &["a", "b", "é", "🐳", "\0", "z", "."];
        let word = |rng: &mut Rng, max: u64| -> String {
            (0..rng.below(max + 1))
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect()
        };
        for seed in 0..500 {
            let mut rng = Rng(seed);
            let mut map = BTreeMap::new();
            let mut pairs = Vec::new();
            for _ in 0..rng.below(40) {
                // Short keys so that duplicates are common; long values now and then so
                // that some texts need wide offsets.
                let k = word(&mut rng, 3);
                let long = rng.chance(10);
                let v = word(&mut rng, if long { 30 } else { 4 });
                map.insert(k.clone(), v.clone());
                pairs.push((k, v));
            }
            let l: Labels = pairs.iter().map(|(k, v)| (k, v)).collect();
            check(&format!("seed {seed}"), &l, &map);
            for _ in 0..20 {
                let k = word(&mut rng, 3);
                assert_eq!(l.get(&k), map.get(&k).map(String::as_str), "seed {seed}");
            }
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_like_a_btreemap() {
        let map = BTreeMap::from([
            ("z".to_string(), "\"quoted\"".to_string()),
            ("a".to_string(), "🐳".to_string()),
            ("".to_string(), "".to_string()),
        ]);
        let l = Labels::from(map.clone());
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert_eq!(serde_json::to_string(&Labels::new()).unwrap(), "{}");
    }
}
