//! A place in one of the source trees, named the same way in its
//! destination: the root's index and the path relative to it.

use std::path::{Path, PathBuf};

/// A place in one of the source trees: root index and relative path (empty
/// for the root itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath {
    pub root: usize,
    pub rel: PathBuf,
}

impl RelPath {
    pub fn new(root: usize, rel: impl Into<PathBuf>) -> RelPath {
        RelPath {
            root,
            rel: rel.into(),
        }
    }

    pub fn join(&self, name: impl AsRef<Path>) -> RelPath {
        RelPath {
            root: self.root,
            rel: self.rel.join(name),
        }
    }

    pub fn is_within(&self, dir: &RelPath) -> bool {
        self.root == dir.root && self.rel.starts_with(&dir.rel)
    }

    /// This path with its `from` prefix replaced by `to`.
    pub fn moved(&self, from: &RelPath, to: &RelPath) -> RelPath {
        let tail = self.rel.strip_prefix(&from.rel).unwrap_or(Path::new(""));
        if tail.as_os_str().is_empty() {
            to.clone()
        } else {
            to.join(tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_replaces_prefix() {
        let a = RelPath::new(0, "db1/t.ibd");
        assert_eq!(
            a.moved(&RelPath::new(0, "db1"), &RelPath::new(0, "db2")),
            RelPath::new(0, "db2/t.ibd")
        );
        assert_eq!(a.moved(&a, &RelPath::new(1, "x")), RelPath::new(1, "x"));
    }
}
