//! The descriptors the library keeps open on source files and their
//! destinations during a backup, bounded so that the application never runs
//! out of descriptors because of them.
//!
//! Each file keeps its source and destination descriptors (`FileFds`) for
//! the next mirrored write; only `FdCache` fills or empties those slots, so
//! its count of open slots is exact. When a new descriptor would exceed the
//! budget, the least recently used files lose theirs (an eighth of the
//! budget at a time, so that choosing them costs little per open). A user
//! that took a descriptor keeps it open until it drops its `Arc`; an evicted
//! file opens its descriptors again by name, under the namespace lock, on its
//! next use (see `Session::mirror_fds`). That is always right: a file of the
//! backup has a current name in both trees (every change of names is
//! mirrored under that lock), and a file without one (unlinked, renamed out,
//! excluded) is not mirrored at all, so no descriptor is pinned for it.

use crate::source_file::{lock, Side, SourceFile};
use crate::sys::OwnFd;
use crate::write_behind::WriteBehind;
use rustix::io::Errno;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Fewest descriptors a backup keeps (a mirror needs a source and a
/// destination), whatever the limit.
const FLOOR: usize = 4;
/// Most a backup keeps: reopening costs one open by name, so more than this
/// buys little and takes descriptors from the system.
const CAP: usize = 4096;

/// Descriptors a mirror uses: the destination, and the source that
/// written bytes are read back or copied from.
pub struct MirrorFds {
    pub dest: Arc<OwnFd>,
    pub src: Arc<OwnFd>,
}

pub struct FdCache {
    budget: usize,
    /// Queued mirrors hold destination descriptors too: one the cache
    /// closes waits for them, so that the budget holds (see `close`).
    queue: Arc<WriteBehind>,
    /// Advances on every open: a use stamps its file with it (one relaxed
    /// load and store on the mirror path, no shared write).
    clock: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Descriptors in the slots of `files`.
    open: usize,
    /// Files with at least one descriptor, by address.
    files: HashMap<usize, Arc<SourceFile>>,
}

fn key(file: &SourceFile) -> usize {
    file as *const SourceFile as usize
}

impl FdCache {
    pub fn new(budget: usize, queue: Arc<WriteBehind>) -> FdCache {
        FdCache {
            budget: budget.max(FLOOR),
            queue,
            clock: AtomicU64::new(1),
            inner: Mutex::new(Inner {
                open: 0,
                files: HashMap::new(),
            }),
        }
    }

    /// The budget for this process: a quarter of the descriptors it is not
    /// using when the backup starts (its soft RLIMIT_NOFILE less what is
    /// open), leaving the application three quarters of its headroom; at
    /// least FLOOR, at most CAP.
    pub fn budget_for_process() -> usize {
        crate::sys::place_own_fds();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20) as usize;
        let in_use = crate::sys::open_descriptors().unwrap_or(soft / 2);
        (soft.saturating_sub(in_use) / 4).clamp(FLOOR, CAP)
    }

    /// The file's descriptor for `side` if it has one, marked as used.
    /// Inlined: it is on the path of every mirrored write.
    #[inline(always)]
    pub fn get(&self, file: &SourceFile, side: Side) -> Option<Arc<OwnFd>> {
        let fds = &file.fds;
        let fd = lock(fds.slot(side)).clone()?;
        fds.touch(self.clock.load(Relaxed));
        Some(fd)
    }

    /// Open a descriptor with `open` and keep it for `side` of `file`,
    /// closing the least recently used ones first when the budget is
    /// spent. If the process is out of descriptors (EMFILE, ENFILE), close
    /// more and try again: a mirror never fails because of this cache.
    pub fn open(
        &self,
        file: &Arc<SourceFile>,
        side: Side,
        open: impl FnMut() -> Result<OwnFd, Errno>,
    ) -> Result<Arc<OwnFd>, Errno> {
        self.make_room(1);
        let fd = Arc::new(self.retrying(open)?);
        let mut closed = Vec::new();
        let mut inner = lock(&self.inner);
        let fds = &file.fds;
        let old = lock(fds.slot(side)).replace(fd.clone());
        if old.is_none() {
            inner.open += 1;
        }
        closed.extend(old);
        fds.touch(self.clock.fetch_add(1, Relaxed) + 1);
        inner.files.entry(key(file)).or_insert_with(|| file.clone());
        drop(inner);
        self.close(closed);
        Ok(fd)
    }

    /// Run `open` again after closing some of ours while it fails because
    /// the process is out of descriptors (EMFILE, ENFILE), until there are
    /// none left to close.
    pub fn retrying<T>(&self, mut open: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
        loop {
            match open() {
                Err(Errno::MFILE | Errno::NFILE) if self.shed(false) => {}
                r => return r,
            }
        }
    }

    /// Close the file's descriptors (users that hold one keep it until they
    /// drop it): the file is done, left the backup, or is a new file now.
    pub fn release(&self, file: &SourceFile) {
        let mut closed = Vec::new();
        let mut inner = lock(&self.inner);
        if inner.files.remove(&key(file)).is_some() {
            inner.open -= file.fds.take_all(&mut closed);
        }
        drop(inner);
        self.close(closed);
    }

    /// Close the least recently used descriptors until `need` more fit.
    fn make_room(&self, need: usize) {
        let mut closed = Vec::new();
        let mut inner = lock(&self.inner);
        if inner.open + need > self.budget {
            let target = (self.budget - self.budget / 8).saturating_sub(need);
            evict_to(&mut inner, target, &mut closed);
        }
        drop(inner);
        self.close(closed);
    }

    /// The process ran out of descriptors: close half of ours (`all`: every
    /// one). Whether any was closed.
    pub fn shed(&self, all: bool) -> bool {
        let mut closed = Vec::new();
        let mut inner = lock(&self.inner);
        let target = if all { 0 } else { inner.open / 2 };
        evict_to(&mut inner, target, &mut closed);
        drop(inner);
        let any = !closed.is_empty();
        self.close(closed);
        any
    }

    /// Close descriptors taken out of the cache (outside its lock). One
    /// that someone else still holds may be in a queued mirror: the queue
    /// is drained first, so that it does not stay open beyond the budget.
    fn close(&self, closed: Vec<Arc<OwnFd>>) {
        if closed.iter().any(|fd| Arc::strong_count(fd) > 1) {
            self.queue.drain();
        }
        drop(closed);
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        lock(&self.inner).open
    }
}

/// Empty the slots of the least recently used files until at most
/// `target` descriptors remain; the descriptors go to `closed`, to be
/// dropped once the lock is released.
fn evict_to(inner: &mut Inner, target: usize, closed: &mut Vec<Arc<OwnFd>>) {
    if inner.open <= target {
        return;
    }
    let mut by_age: Vec<(u64, usize)> = inner
        .files
        .iter()
        .map(|(k, f)| (f.fds.last_use(), *k))
        .collect();
    by_age.sort_unstable();
    for (_, k) in by_age {
        if inner.open <= target {
            break;
        }
        if let Some(f) = inner.files.remove(&k) {
            inner.open -= f.fds.take_all(closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;
    use rustix::fs::{Mode, OFlags};
    use std::path::Path;

    type File = SourceFile;

    fn file(n: u64) -> Arc<File> {
        Arc::new(SourceFile::new(0, n, None, 0))
    }

    fn dev_null() -> Result<OwnFd, Errno> {
        crate::sys::openat(
            rustix::fs::CWD,
            Path::new("/dev/null"),
            OFlags::RDONLY,
            Mode::empty(),
        )
    }

    #[test]
    fn stays_within_budget_and_keeps_the_recently_used() {
        let cache = FdCache::new(16, Default::default());
        let files: Vec<Arc<File>> = (0..100).map(file).collect();
        let hot = &files[0];
        cache.open(hot, Side::Src, dev_null).unwrap();
        for (i, f) in files.iter().enumerate().skip(1) {
            cache.open(f, Side::Src, dev_null).unwrap();
            cache.open(f, Side::Dest, dev_null).unwrap();
            assert!(
                cache.get(hot, Side::Src).is_some(),
                "the file in use was evicted at {i}"
            );
            assert!(
                cache.open_count() <= 16,
                "{} open at {i}",
                cache.open_count()
            );
        }
        // The two newest files kept theirs; the oldest cold ones did not.
        assert!(cache.get(&files[99], Side::Dest).is_some());
        assert!(cache.get(&files[98], Side::Src).is_some());
        assert!(cache.get(&files[1], Side::Src).is_none());
        let kept = files
            .iter()
            .map(|f| {
                [Side::Src, Side::Dest]
                    .iter()
                    .filter(|&&s| cache.get(f, s).is_some())
                    .count()
            })
            .sum::<usize>();
        assert_eq!(kept, cache.open_count());
        for f in &files {
            cache.release(f);
        }
        assert_eq!(cache.open_count(), 0);
    }

    #[test]
    fn evicted_descriptor_stays_open_for_its_user() {
        let cache = FdCache::new(4, Default::default());
        let a = file(0);
        let held = cache.open(&a, Side::Dest, dev_null).unwrap();
        for _ in 0..10 {
            let b = file(1);
            cache.open(&b, Side::Dest, dev_null).unwrap();
        }
        assert!(cache.get(&a, Side::Dest).is_none(), "not evicted");
        rustix::fs::fstat(held.as_fd()).expect("the user's descriptor was closed");
    }

    #[test]
    fn out_of_descriptors_sheds_and_retries() {
        let cache = FdCache::new(64, Default::default());
        let files: Vec<Arc<File>> = (0..8).map(file).collect();
        for f in &files {
            cache.open(f, Side::Src, dev_null).unwrap();
        }
        let mut refusals = 2;
        let new = file(100);
        let fd = cache.open(&new, Side::Src, || {
            if refusals > 0 {
                refusals -= 1;
                return Err(Errno::MFILE);
            }
            dev_null()
        });
        assert!(fd.is_ok(), "EMFILE reached the caller");
        assert!(cache.open_count() <= 3, "{} still open", cache.open_count());
        // With nothing left to close, the error is the caller's.
        cache.shed(true);
        let r = cache.open(&new, Side::Dest, || Err(Errno::MFILE));
        assert_eq!(r.err(), Some(Errno::MFILE));
    }
}
