//! The file descriptor table of a running backup: which source file each
//! of the application's descriptors writes to.
//!
//! Entries are learned lazily, on a descriptor's first change during the
//! backup, from the kernel (`sys::file_id`: device and inode), so descriptors
//! opened before the backup, inherited, or duplicated need no bookkeeping
//! while no backup runs. Closing, duplicating onto, or reopening a number
//! forgets its entry.

use crate::source_file::SourceFile;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

/// Descriptor numbers are small distinct integers: a multiplicative hash
/// spreads them well, where SipHash would cost more than the lookup on
/// every captured write.
#[derive(Default)]
pub struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = HashMap<i32, FdState, BuildHasherDefault<FdHasher>>;

const SHARDS: usize = 64;

#[derive(Clone)]
pub enum FdState {
    /// Writes through this descriptor change `file`; `append` if
    /// O_APPEND, `direct` if O_DIRECT.
    Tracked {
        file: Arc<SourceFile>,
        append: bool,
        direct: bool,
    },
    /// Not a file of the source trees as of this generation (see
    /// `Session::generation`); `id` (device, inode) if a regular file,
    /// which may still join the trees.
    Untracked {
        generation: u64,
        id: Option<(u64, u64)>,
    },
}

pub struct FdTable {
    shards: Vec<RwLock<Shard>>,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
        }
    }
}

impl FdTable {
    fn shard(&self, fd: i32) -> &RwLock<Shard> {
        &self.shards[fd as usize % SHARDS]
    }

    pub fn get(&self, fd: i32) -> Option<FdState> {
        self.shard(fd)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fd)
            .cloned()
    }

    /// Look `fd` up, learning it with `resolve` if unknown or learned before
    /// the latest import (callers check the entry against the kernel, see
    /// `Session::tracked`). `resolve` runs under the shard's write lock, so
    /// one number is learned once.
    pub fn get_or_resolve(
        &self,
        fd: i32,
        generation: u64,
        resolve: impl FnOnce() -> FdState,
    ) -> FdState {
        match self.get(fd) {
            Some(FdState::Untracked { generation: g, .. }) if g < generation => {}
            Some(state) => return state,
            None => {}
        }
        let mut shard = self.shard(fd).write().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = shard.get(&fd) {
            if !matches!(state, FdState::Untracked { generation: g, .. } if *g < generation) {
                return state.clone();
            }
        }
        let state = resolve();
        shard.insert(fd, state.clone());
        state
    }

    /// Whether the entry still describes the file `fd` now refers to
    /// (device and inode, None if not a regular file).
    pub fn still(state: &FdState, id: Option<(u64, u64)>) -> bool {
        match state {
            FdState::Tracked { file, .. } => id == Some((file.dev, file.ino)),
            FdState::Untracked { id: known, .. } => *known == id,
        }
    }

    pub fn forget(&self, fd: i32) {
        self.shard(fd)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fd);
    }

    /// Forget every descriptor in `[first, last]`.
    pub fn forget_range(&self, first: u32, last: u32) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&fd, _| (fd as u32) < first || (fd as u32) > last);
        }
    }

    /// Number of descriptors currently known to write a source file.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter(|v| matches!(v, FdState::Tracked { .. }))
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<SourceFile> {
        Arc::new(SourceFile::new(1, 1, None, 0))
    }

    #[test]
    fn resolves_once_then_caches() {
        let t = FdTable::default();
        let mut calls = 0;
        let f = file();
        for _ in 0..3 {
            t.get_or_resolve(7, 0, || {
                calls += 1;
                FdState::Tracked {
                    file: f.clone(),
                    append: false,
                    direct: false,
                }
            });
        }
        assert_eq!(calls, 1);
        assert_eq!(t.tracked(), 1);
        t.forget(7);
        assert!(t.get(7).is_none());
    }

    #[test]
    fn untracked_entries_expire_with_a_new_generation() {
        let t = FdTable::default();
        t.get_or_resolve(3, 0, || FdState::Untracked {
            generation: 0,
            id: Some((1, 1)),
        });
        let mut resolved = false;
        t.get_or_resolve(3, 0, || {
            resolved = true;
            FdState::Untracked {
                generation: 0,
                id: Some((1, 1)),
            }
        });
        assert!(!resolved);
        let st = t.get_or_resolve(3, 1, || FdState::Tracked {
            file: file(),
            append: true,
            direct: false,
        });
        assert!(matches!(st, FdState::Tracked { append: true, .. }));
    }

    #[test]
    fn forget_range_is_inclusive() {
        let t = FdTable::default();
        for fd in 0..10 {
            t.get_or_resolve(fd, 0, || FdState::Untracked {
                generation: 0,
                id: Some((1, 1)),
            });
        }
        t.forget_range(3, 5);
        let left: Vec<i32> = (0..10).filter(|&fd| t.get(fd).is_some()).collect();
        assert_eq!(left, vec![0, 1, 2, 6, 7, 8, 9]);
    }
}
