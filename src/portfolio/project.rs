//! One composer project within a portfolio.

use std::sync::Arc;

use super::sharded::Sharded;
use crate::container::Container;

/// The alive containers of one composer project (`""`: the standalone containers).
#[derive(Clone)]
pub struct Project {
    name: Arc<str>,
    containers: Sharded<Arc<Container>>,
    len: usize,
}

impl Project {
    pub(crate) fn new(name: &str) -> Self {
        Project {
            name: Arc::from(name),
            containers: Sharded::default(),
            len: 0,
        }
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The project's container with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Container>> {
        self.containers.get(id)
    }

    /// The project's containers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Container>> {
        self.containers.values()
    }

    /// The project's container ids, sorted.
    pub fn container_ids(&self) -> Vec<&str> {
        let mut v: Vec<_> = self.iter().map(|c| c.id.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Number of containers in the project.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the project has no containers (never for a project in a portfolio).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The project `name` of `containers`, whose ids are distinct.
    pub(crate) fn of(
        name: &str,
        containers: impl ExactSizeIterator<Item = Arc<Container>>,
    ) -> Self {
        let len = containers.len();
        Project {
            name: Arc::from(name),
            containers: Sharded::from_distinct(containers),
            len,
        }
    }

    pub(crate) fn insert(&mut self, c: Arc<Container>) {
        if self.containers.insert(c).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, id: &str) {
        if self.containers.remove(id).is_some() {
            self.len -= 1;
        }
    }
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("name", &self.name)
            .field("containers", &self.container_ids())
            .finish()
    }
}
