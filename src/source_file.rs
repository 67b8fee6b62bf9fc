//! One object per source file (by device and inode, never by name or
//! descriptor), with the byte-range locks that order the copier against the
//! application's writers, and the descriptors the library uses to mirror.

use crate::rel_path::RelPath;
use crate::sys::OwnFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Lock a mutex, ignoring poisoning: a panic elsewhere is already reported
/// as a failed backup, and the data behind these mutexes stays consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub const WHOLE: (u64, u64) = (0, u64::MAX);

#[derive(Default)]
pub struct RangeLocks {
    held: Mutex<Held>,
    released: Condvar,
}

#[derive(Default)]
struct Held {
    ranges: Vec<(u64, u64)>,
    /// Threads waiting for a range: releasing wakes them only if there are
    /// any (a wake is a system call, on every write otherwise).
    waiters: usize,
}

impl RangeLocks {
    /// Lock `[start, end)`; waits while an overlapping range is held.
    pub fn lock(&self, start: u64, end: u64) -> RangeGuard<'_> {
        let end = end.max(start.saturating_add(1));
        let mut held = lock(&self.held);
        while held.ranges.iter().any(|&(s, e)| s < end && start < e) {
            held.waiters += 1;
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
            held.waiters -= 1;
        }
        held.ranges.push((start, end));
        RangeGuard {
            locks: self,
            range: (start, end),
        }
    }
}

pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    range: (u64, u64),
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.locks.held);
        if let Some(i) = held.ranges.iter().position(|&r| r == self.range) {
            held.ranges.swap_remove(i);
        }
        let wake = held.waiters > 0;
        drop(held);
        if wake {
            self.locks.released.notify_all();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Src,
    Dest,
}

/// A file's descriptors (source to read from, destination to write to) and
/// when they were last used. Read by anyone; changed only by
/// `fd_cache::FdCache`, which keeps their count within its budget.
#[derive(Default)]
pub struct FileFds {
    dest: Mutex<Option<Arc<OwnFd>>>,
    src: Mutex<Option<Arc<OwnFd>>>,
    last_use: AtomicU64,
}

impl FileFds {
    pub(crate) fn slot(&self, side: Side) -> &Mutex<Option<Arc<OwnFd>>> {
        match side {
            Side::Src => &self.src,
            Side::Dest => &self.dest,
        }
    }

    /// Empty both slots; how many descriptors they held.
    pub(crate) fn take_all(&self, out: &mut Vec<Arc<OwnFd>>) -> usize {
        let before = out.len();
        out.extend(lock(&self.dest).take());
        out.extend(lock(&self.src).take());
        out.len() - before
    }

    /// Stamp the descriptors as used at `clock` (the cache's clock).
    pub(crate) fn touch(&self, clock: u64) {
        self.last_use.store(clock, Relaxed);
    }

    pub(crate) fn last_use(&self) -> u64 {
        self.last_use.load(Relaxed)
    }
}

pub struct SourceFile {
    pub dev: u64,
    pub ino: u64,
    pub ranges: RangeLocks,
    /// Bytes below this offset are in the destination and every later change
    /// to them must be mirrored; above it the copier will still read them.
    /// u64::MAX once the whole file is copied. Read and written only while
    /// holding a range lock that covers the offset of interest.
    copied_upto: AtomicU64,
    /// Current name, None once the file has left the source trees. Changed
    /// only under the namespace lock; only read under it to open by name.
    name: Mutex<Option<RelPath>>,
    /// Whether the file has a name in a source tree (mirrors `name`, for
    /// the write path).
    named: AtomicBool,
    /// Left out of the backup: no destination, nothing mirrored.
    pub excluded: AtomicBool,
    /// The library's descriptors for mirroring (see `fd_cache`).
    pub fds: FileFds,
    /// Number of the last write queued for the destination (see
    /// `write_behind`); 0 if none.
    queued: AtomicU64,
}

impl SourceFile {
    pub fn new(dev: u64, ino: u64, name: Option<RelPath>, copied_upto: u64) -> SourceFile {
        SourceFile {
            dev,
            ino,
            ranges: RangeLocks::default(),
            copied_upto: AtomicU64::new(copied_upto),
            named: AtomicBool::new(name.is_some()),
            name: Mutex::new(name),
            excluded: AtomicBool::new(false),
            fds: Default::default(),
            queued: AtomicU64::new(0),
        }
    }

    pub fn copied_upto(&self) -> u64 {
        self.copied_upto.load(Acquire)
    }

    pub fn set_copied_upto(&self, off: u64) {
        self.copied_upto.store(off, Release);
    }

    /// Advance (never lower) the copied offset.
    pub fn raise_copied_upto(&self, off: u64) {
        self.copied_upto.fetch_max(off, AcqRel);
    }

    /// Whether the file is part of the backup: named in a tree, not excluded.
    pub fn in_backup(&self) -> bool {
        self.named.load(Acquire) && !self.excluded.load(Acquire)
    }

    /// Whether a change starting at `off` must be mirrored (caller holds a
    /// range lock covering `off`).
    pub fn mirrored_at(&self, off: u64) -> bool {
        self.in_backup() && off < self.copied_upto()
    }

    /// Whether any part of the file is in the destination yet.
    pub fn started(&self) -> bool {
        self.in_backup() && self.copied_upto() > 0
    }

    /// A write to the destination was queued as number `seq` (caller holds
    /// the range lock of its bytes).
    pub fn note_queued(&self, seq: u64) {
        self.queued.store(seq, Release);
    }

    pub fn queued_upto(&self) -> u64 {
        self.queued.load(Acquire)
    }

    /// Give the file a new name (or none); callers hold the namespace lock.
    pub fn rename(&self, name: Option<RelPath>) {
        let mut n = lock(&self.name);
        self.named.store(name.is_some(), Release);
        *n = name;
    }

    pub fn current_name(&self) -> Option<RelPath> {
        lock(&self.name).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn overlapping_ranges_exclude_each_other() {
        let locks = Arc::new(RangeLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (locks, inside, max_inside) =
                    (locks.clone(), inside.clone(), max_inside.clone());
                std::thread::spawn(move || {
                    for j in 0..200u64 {
                        // All ranges overlap at offset 100.
                        let _g = locks.lock(100 - (i + j) % 50, 101 + (i * j) % 70);
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        max_inside.fetch_max(now, SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max_inside.load(SeqCst), 1);
    }

    #[test]
    fn disjoint_ranges_do_not_block() {
        // Ranges are half-open: ones that only touch are taken at once by
        // another thread (a wrong overlap test would make it wait for ever).
        let locks = Arc::new(RangeLocks::default());
        let _a = locks.lock(0, 10);
        let _c = locks.lock(1000, u64::MAX);
        let l2 = locks.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _b = l2.lock(10, 20);
            let _d = l2.lock(20, 1000);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "a range waited for a disjoint one"
        );
    }

    #[test]
    fn waiter_proceeds_after_release() {
        let locks = Arc::new(RangeLocks::default());
        let g = locks.lock(0, 4096);
        let l2 = locks.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock(100, 200);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished());
        drop(g);
        t.join().unwrap();
    }

    #[test]
    fn empty_range_is_one_byte() {
        let locks = RangeLocks::default();
        let _a = locks.lock(5, 5);
        assert!(lock(&locks.held).ranges.contains(&(5, 6)));
        // The last offset cannot overflow into an empty range.
        let _b = locks.lock(u64::MAX, u64::MAX);
    }
}
