//! The portfolio: an immutable, consistent snapshot of the alive containers, grouped by
//! composer project.
//!
//! Snapshots are persistent data structures: a watcher publishes a new one after each
//! batch of changes by copying only the small shards that changed, so taking, holding and
//! querying a snapshot never waits on the engine or the watcher.
#![forbid(unsafe_code)]

mod project;
mod sharded;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::container::Container;
pub use project::Project;
use sharded::{Keyed, Sharded};

impl Keyed for Arc<Container> {
    fn key(&self) -> &str {
        &self.id
    }
}

/// The containers of one name: almost always one, kept without a slice of its own.
#[derive(Clone)]
enum Named {
    One(Arc<Container>),
    /// Two or more.
    Many(Arc<[Arc<Container>]>),
}

impl Named {
    fn as_slice(&self) -> &[Arc<Container>] {
        match self {
            Named::One(c) => std::slice::from_ref(c),
            Named::Many(v) => v,
        }
    }

    fn from_vec(mut v: Vec<Arc<Container>>) -> Option<Named> {
        match v.len() {
            0 => None,
            1 => v.pop().map(Named::One),
            _ => Some(Named::Many(v.into())),
        }
    }
}

impl Keyed for Named {
    fn key(&self) -> &str {
        self.as_slice().first().map_or("", |c| &c.name)
    }
}

/// An immutable snapshot of the alive containers of one or more engines.
///
/// Lookups by id are exact and O(1). Names are not unique (CRI container names repeat
/// across pods, and a name can be reused by a new container while the old one is still
/// being torn down), so [`by_name`](Self::by_name) returns every container of that name.
#[derive(Clone, Default)]
pub struct Portfolio {
    by_id: Sharded<Arc<Container>>,
    by_name: Sharded<Named>,
    /// Copy-on-write at two levels: an update copies the map's pointers and one project.
    projects: Arc<BTreeMap<Arc<str>, Arc<Project>>>,
    len: usize,
    seq: u64,
}

impl Portfolio {
    /// An empty portfolio.
    pub fn new() -> Self {
        Self::default()
    }

    /// The container with this id.
    #[inline]
    pub fn get(&self, id: &str) -> Option<&Arc<Container>> {
        self.by_id.get(id)
    }

    /// All containers with this name (in no particular order); empty when none.
    #[inline]
    pub fn by_name(&self, name: &str) -> &[Arc<Container>] {
        self.by_name.get(name).map_or(&[], Named::as_slice)
    }

    /// The container with this id or, failing that, the first one with this name
    /// (as the Go original's `Portfolio.Container(nameorid)`).
    pub fn lookup(&self, id_or_name: &str) -> Option<&Arc<Container>> {
        self.get(id_or_name)
            .or_else(|| self.by_name(id_or_name).first())
    }

    /// The project of this name; `""` is the project of standalone containers. `None` when
    /// no alive container belongs to it: projects appear and disappear implicitly.
    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.get(name).map(|p| &**p)
    }

    /// The names of all projects with alive containers, sorted (`""` first when present).
    pub fn project_names(&self) -> Vec<&str> {
        self.projects.keys().map(|k| &**k).collect()
    }

    /// All projects, sorted by name.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values().map(|p| &**p)
    }

    /// All containers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Container>> {
        self.by_id.values()
    }

    /// All containers sorted by project, then name, then id (for stable output).
    pub fn sorted(&self) -> Vec<Arc<Container>> {
        let mut v: Vec<_> = self.iter().cloned().collect();
        v.sort_by(|a, b| (&a.project, &a.name, &a.id).cmp(&(&b.project, &b.name, &b.id)));
        v
    }

    /// Number of containers.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no containers.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence number of the last event this snapshot reflects (0 before any).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Adds a container, replacing one with the same id. Cheap: copies one shard per index.
    /// Portfolios handed out by a watcher are shared and immutable; this is for building
    /// your own (and for the watcher itself).
    pub fn insert(&mut self, c: Arc<Container>) -> Option<Arc<Container>> {
        let old = self.remove(&c.id);
        let named = match self.by_name.get(&c.name) {
            Some(v) => Named::Many(v.as_slice().iter().cloned().chain([c.clone()]).collect()),
            None => Named::One(c.clone()),
        };
        self.by_name.insert(named);
        let projects = Arc::make_mut(&mut self.projects);
        match projects.get_mut(c.project.as_str()) {
            Some(p) => Arc::make_mut(p).insert(c.clone()),
            None => {
                let mut p = Project::new(&c.project);
                p.insert(c.clone());
                projects.insert(Arc::from(c.project.as_str()), Arc::new(p));
            }
        }
        self.by_id.insert(c);
        self.len += 1;
        old
    }

    /// Removes the container with this id.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Container>> {
        let old = self.by_id.remove(id)?;
        self.len -= 1;
        if let Some(v) = self.by_name.get(&old.name) {
            let rest: Vec<_> = v
                .as_slice()
                .iter()
                .filter(|c| c.id != id)
                .cloned()
                .collect();
            match Named::from_vec(rest) {
                Some(rest) => self.by_name.insert(rest),
                None => self.by_name.remove(&old.name),
            };
        }
        let projects = Arc::make_mut(&mut self.projects);
        if let Some(p) = projects.get_mut(old.project.as_str()) {
            let p = Arc::make_mut(p);
            p.remove(id);
            if p.is_empty() {
                projects.remove(old.project.as_str());
            }
        }
        Some(old)
    }
}

impl FromIterator<Container> for Portfolio {
    fn from_iter<I: IntoIterator<Item = Container>>(iter: I) -> Self {
        iter.into_iter().map(Arc::new).collect()
    }
}

impl FromIterator<Arc<Container>> for Portfolio {
    /// As [`insert`](Portfolio::insert)ing the containers in order (a later one replaces
    /// an earlier one with the same id), but every index built at once: one insert per
    /// container copied a leaf of each index every time (issue 16: freed copies that the
    /// allocator kept, on the watcher's sync thread, which builds a portfolio per listing).
    fn from_iter<I: IntoIterator<Item = Arc<Container>>>(iter: I) -> Self {
        let mut all: Vec<Arc<Container>> = iter.into_iter().collect();
        // Indexes of `all` sorted by `key`, equal keys in order.
        let sorted_by = |all: &[Arc<Container>], key: fn(&Container) -> &str| {
            let mut order: Vec<usize> = (0..all.len()).collect();
            order.sort_by(|&a, &b| key(&all[a]).cmp(key(&all[b])).then(a.cmp(&b)));
            order
        };
        // The last container of each id, in order.
        let order = sorted_by(&all, |c| &c.id);
        let mut replaced = vec![false; all.len()];
        for w in order.windows(2) {
            if all[w[0]].id == all[w[1]].id {
                replaced[w[0]] = true;
            }
        }
        if replaced.contains(&true) {
            let mut i = 0;
            all.retain(|_| {
                i += 1;
                !replaced[i - 1]
            });
        }
        drop((order, replaced));
        let by_id = Sharded::from_distinct(all.iter().cloned());
        // Each name's containers in order, as inserts append them.
        let order = sorted_by(&all, |c| &c.name);
        let named = order
            .chunk_by(|&a, &b| all[a].name == all[b].name)
            .map(|run| match run {
                [i] => Named::One(all[*i].clone()),
                _ => Named::Many(run.iter().map(|&i| all[i].clone()).collect()),
            });
        let by_name = Sharded::from_distinct(named);
        let order = sorted_by(&all, |c| &c.project);
        let projects = order
            .chunk_by(|&a, &b| all[a].project == all[b].project)
            .map(|run| {
                let name = all[run[0]].project.as_str();
                let p = Project::of(name, run.iter().map(|&i| all[i].clone()));
                (Arc::from(name), Arc::new(p))
            })
            .collect();
        Portfolio {
            by_id,
            by_name,
            projects: Arc::new(projects),
            len: all.len(),
            seq: 0,
        }
    }
}

impl std::fmt::Debug for Portfolio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.sorted()).finish()
    }
}

#[cfg(feature = "serde")]
impl serde_core::Serialize for Portfolio {
    /// A sequence of containers sorted by project, name and id.
    fn serialize<S: serde_core::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.sorted().iter().map(|c| &**c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PROJECT_LABEL;

    fn c(id: &str, name: &str, project: &str) -> Container {
        let labels: crate::Labels = (!project.is_empty())
            .then_some((PROJECT_LABEL, project))
            .into_iter()
            .collect();
        Container::new(id, name, 1).with_labels(labels)
    }

    #[test]
    fn indexes_follow_inserts_and_removes() {
        let mut p: Portfolio = [c("1", "a", "x"), c("2", "a", ""), c("3", "b", "x")]
            .into_iter()
            .collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p.by_name("a").len(), 2);
        assert_eq!(p.project_names(), vec!["", "x"]);
        assert_eq!(p.project("x").unwrap().len(), 2);
        let snap = p.clone();
        p.remove("2");
        assert_eq!(p.project_names(), vec!["x"]);
        assert_eq!(p.by_name("a").len(), 1);
        assert!(p.project("").is_none());
        // the old snapshot is untouched
        assert_eq!(snap.len(), 3);
        assert!(snap.get("2").is_some());
        // replacing keeps one entry per id, moves between projects
        p.insert(Arc::new(c("1", "a2", "")));
        assert_eq!(p.len(), 2);
        assert!(p.by_name("a").is_empty());
        assert_eq!(p.lookup("a2").unwrap().id, "1");
        assert_eq!(p.project("x").unwrap().len(), 1);
        assert_eq!(p.project("").unwrap().len(), 1);
        p.remove("1");
        p.remove("3");
        assert!(p.is_empty() && p.project_names().is_empty());
        assert!(p.remove("nope").is_none());
    }

    /// `collect()` builds the indexes at once; the portfolio must be the one that inserting
    /// the containers in order builds: a later container replaces an earlier one of the
    /// same id, each name's containers in order, every project; and it must stay usable.
    #[test]
    fn collecting_builds_what_inserting_builds() {
        let same = |a: &Portfolio, b: &Portfolio| {
            assert_eq!(a.len(), b.len());
            assert_eq!(ids(a.iter()), ids(b.iter()));
            for c in a.iter() {
                assert!(Arc::ptr_eq(c, b.get(&c.id).unwrap()), "{}", c.id);
                let (x, y) = (a.by_name(&c.name), b.by_name(&c.name));
                assert_eq!(x.len(), y.len(), "{}", c.name);
                assert!(
                    x.iter().zip(y).all(|(x, y)| Arc::ptr_eq(x, y)),
                    "{}",
                    c.name
                );
            }
            assert_eq!(a.project_names(), b.project_names());
            for (x, y) in a.projects().zip(b.projects()) {
                assert_eq!((x.name(), x.len()), (y.name(), y.len()));
                assert_eq!(x.container_ids(), y.container_ids());
                assert!(x.iter().all(|c| Arc::ptr_eq(c, y.get(&c.id).unwrap())));
            }
        };
        let mut x: u64 = 11;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        for n in [0u64, 1, 2, 17, 300, 3000] {
            // ids repeat (later ones replace earlier ones), names repeat across ids
            let all: Vec<Arc<Container>> = (0..n)
                .map(|_| {
                    let id = format!("c{}", next(n * 3 / 4 + 1));
                    let name = format!("n{}", next(n / 3 + 1));
                    Arc::new(c(&id, &name, ["", "x", "y"][next(3) as usize]))
                })
                .collect();
            let mut inserted = Portfolio::new();
            for c in &all {
                inserted.insert(c.clone());
            }
            let mut collected: Portfolio = all.iter().cloned().collect();
            same(&inserted, &collected);
            for c in all.iter().step_by(2) {
                assert_eq!(
                    inserted.remove(&c.id).map(|c| c.id.clone()),
                    collected.remove(&c.id).map(|c| c.id.clone())
                );
            }
            let late = Arc::new(c("late", "n0", "x"));
            inserted.insert(late.clone());
            collected.insert(late);
            same(&inserted, &collected);
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Arc<Container>>) -> Vec<String> {
        let mut v: Vec<_> = it.map(|c| c.id.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn queries_answer_from_the_indexes() {
        let mut p = Portfolio::new();
        assert!(p.is_empty() && p.seq() == 0);
        assert_eq!(p.len(), 0);
        assert!(p.get("1").is_none() && p.lookup("a").is_none() && p.project("").is_none());
        assert!(p.by_name("a").is_empty() && p.iter().next().is_none());
        assert!(p.projects().next().is_none() && p.sorted().is_empty());
        assert!(p.insert(Arc::new(c("1", "a", "x"))).is_none());
        assert!(!p.is_empty());
        assert_eq!(p.len(), 1);
        // a second container of the same name: by_name keeps both, apart by id
        assert!(p.insert(Arc::new(c("2", "a", "y"))).is_none());
        assert!(p.insert(Arc::new(c("3", "b", "x"))).is_none());
        assert_eq!(p.len(), 3);
        assert_eq!(p.get("1").unwrap().name, "a");
        assert!(p.get("a").is_none());
        assert_eq!(ids(p.by_name("a").iter()), ["1", "2"]);
        // lookup: the id first, then a name
        assert_eq!(p.lookup("3").unwrap().id, "3");
        assert_eq!(p.lookup("b").unwrap().id, "3");
        assert!(p.lookup("c").is_none());
        assert_eq!(ids(p.iter()), ["1", "2", "3"]);
        let names: Vec<_> = p.projects().map(|p| p.name().to_string()).collect();
        assert_eq!(names, ["x", "y"]);
        let x = p.project("x").unwrap();
        assert_eq!((x.name(), x.len(), x.is_empty()), ("x", 2, false));
        assert_eq!(x.container_ids(), ["1", "3"]);
        assert_eq!(ids(x.iter()), ["1", "3"]);
        assert_eq!(x.get("3").unwrap().name, "b");
        assert!(x.get("2").is_none());
        assert_eq!(
            format!("{x:?}"),
            r#"Project { name: "x", containers: ["1", "3"] }"#
        );
        let sorted: Vec<_> = p.sorted().iter().map(|c| c.id.clone()).collect();
        assert_eq!(sorted, ["1", "3", "2"]); // project x (names a, b), then y
        let dbg = format!("{p:?}");
        let at = |id: &str| dbg.find(&format!("id: {id:?}")).unwrap();
        assert!(at("1") < at("3") && at("3") < at("2"), "{dbg}");
        // replacing returns the old container and keeps the count
        let old = p.insert(Arc::new(c("3", "b2", "x"))).unwrap();
        assert_eq!((old.name.as_str(), p.len()), ("b", 3));
        assert_eq!(p.project("x").unwrap().len(), 2);
        // removing one of two same-named containers leaves the other
        assert_eq!(p.remove("1").unwrap().id, "1");
        assert_eq!(ids(p.by_name("a").iter()), ["2"]);
        assert_eq!(p.lookup("a").unwrap().id, "2");
        assert_eq!(p.project("x").unwrap().container_ids(), ["3"]);
        assert_eq!(p.project("x").unwrap().len(), 1);
        p.remove("3");
        assert!(p.project("x").is_none());
        assert_eq!(p.len(), 1);
        p.set_seq(7);
        assert_eq!(p.seq(), 7);
        assert_eq!(p.clone().seq(), 7);
    }

    #[test]
    fn collects_shared_containers() {
        let shared: Vec<_> = [c("1", "a", ""), c("2", "b", "")].map(Arc::new).into();
        let p: Portfolio = shared.iter().cloned().collect();
        assert_eq!(p.len(), 2);
        assert!(Arc::ptr_eq(p.get("2").unwrap(), &shared[1]));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_as_a_sorted_list() {
        let p: Portfolio = [c("2", "b", ""), c("1", "a", "")].into_iter().collect();
        let v = serde_json::to_value(&p).unwrap();
        let ids: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].clone())
            .collect();
        assert_eq!(ids, [serde_json::json!("1"), serde_json::json!("2")]);
    }
}
