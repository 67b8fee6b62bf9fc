//! Write-behind of mirrored bytes. A write the application makes to a part
//! of a file the copier has already passed is read back from the source
//! (or copied from its staged bytes) into a buffer here, under the range
//! lock of those bytes; a backup thread writes the buffer to the
//! destination. The application's thread pays for the read, not for the
//! destination's write.
//!
//! The copy stays exact:
//! - Entries are numbered when queued, under the range lock of their
//!   bytes, so writes to the same bytes are queued in the order the kernel
//!   made them, and the thread applies them in that order.
//! - Every other change to a destination file (a chunk of the copier, a
//!   truncate, a mirror written directly) is made under its range lock
//!   after the file's queued writes are applied (`settle`).
//! - Capture stops before the queue is drained, and the backup is compared
//!   or reported only after (`drain`, `close`): the queue holds writes made
//!   before the snapshot instant, none after.
//!
//! Bounded: at most LIMIT bytes wait. A writer that finds no room waits for
//! the thread, i.e. for the destination, as it would if it wrote itself.
//! Writes larger than MAX_ENTRY, and all writes while no thread runs, are
//! mirrored by the writer directly.

use crate::source_file::{lock, SourceFile};
use crate::sys::{self, OwnFd};
use rustix::fd::AsFd;
use rustix::io::Errno;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Largest write queued; larger ones are mirrored by the writer.
pub const MAX_ENTRY: usize = 1 << 20;
/// Most bytes waiting to be written.
const LIMIT: usize = 16 << 20;
/// Most bytes of spare buffers kept for reuse.
const POOL_BYTES: usize = 4 << 20;
/// The thread is woken (a system call on the writer's side) once this many
/// bytes are queued, or when someone waits for it; otherwise it takes what
/// is queued after LINGER. So a wake-up serves many writes, and the thread
/// neither spins nor sleeps with writes left for long.
const WAKE_BYTES: usize = 256 << 10;
const LINGER: Duration = Duration::from_millis(1);
/// Buffers are whole pages, so that writes of one size share them.
const PAGE: usize = 4096;

struct Entry {
    seq: u64,
    file: Arc<SourceFile>,
    dest: Arc<OwnFd>,
    off: u64,
    buf: Vec<u8>,
    len: usize,
}

#[derive(Default)]
struct State {
    entries: VecDeque<Entry>,
    /// A thread applies entries: only then are writes queued.
    running: bool,
    closing: bool,
    /// The thread waits on `work` and no one has woken it yet.
    sleeping: bool,
    /// Bytes of the buffers in `entries`.
    queued_bytes: usize,
    /// Threads waiting on `done`.
    waiters: usize,
    /// Bytes of the buffers handed out and not yet back.
    held: usize,
    pool: Vec<Vec<u8>>,
    pool_bytes: usize,
    last_seq: u64,
}

#[derive(Default)]
pub struct WriteBehind {
    state: Mutex<State>,
    /// The thread waits here for entries.
    work: Condvar,
    /// Writers wait here for room, settles and drains for applied entries.
    done: Condvar,
    /// Number of the last entry applied (or dropped): a settle with
    /// nothing to wait for reads it and takes no lock.
    applied: AtomicU64,
}

fn wait<'a>(cv: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

impl WriteBehind {
    /// A buffer of at least `n` bytes for a write to queue, once there is
    /// room; None if the write is to be mirrored directly (too large, or
    /// no thread applies entries).
    pub fn reserve(&self, n: usize) -> Option<Vec<u8>> {
        if n == 0 || n > MAX_ENTRY {
            return None;
        }
        let size = n.next_multiple_of(PAGE);
        let mut st = lock(&self.state);
        while st.running && st.held > 0 && st.held + size > LIMIT {
            self.wake(&mut st);
            st.waiters += 1;
            st = wait(&self.done, st);
            st.waiters -= 1;
        }
        if !st.running {
            return None;
        }
        st.held += size;
        let spare = st.pool.pop();
        if let Some(b) = &spare {
            st.pool_bytes -= b.len();
        }
        drop(st);
        // A spare of another size is freed, outside the lock.
        Some(
            spare
                .filter(|b| b.len() == size)
                .unwrap_or_else(|| vec![0; size]),
        )
    }

    /// Give back a reserved buffer that was not queued.
    pub fn give_back(&self, buf: Vec<u8>) {
        let mut st = lock(&self.state);
        st.held = st.held.saturating_sub(buf.len());
        keep_spare(&mut st, buf);
    }

    /// Queue the first `len` bytes of `buf` (from `reserve`) for `dest` at
    /// `off`. The caller holds the range lock of those bytes of `file`.
    pub fn push(
        &self,
        file: &Arc<SourceFile>,
        dest: Arc<OwnFd>,
        off: u64,
        buf: Vec<u8>,
        len: usize,
    ) {
        let mut st = lock(&self.state);
        if !st.running {
            // The thread has stopped (the backup has failed): nothing to
            // write.
            st.held = st.held.saturating_sub(buf.len());
            return;
        }
        st.last_seq += 1;
        let seq = st.last_seq;
        file.note_queued(seq);
        st.queued_bytes += buf.len();
        st.entries.push_back(Entry {
            seq,
            file: file.clone(),
            dest,
            off,
            buf,
            len,
        });
        if st.queued_bytes >= WAKE_BYTES {
            self.wake(&mut st);
        }
    }

    /// Wake the thread if it sleeps (caller holds the state lock).
    fn wake(&self, st: &mut State) {
        if st.sleeping {
            st.sleeping = false;
            self.work.notify_one();
        }
    }

    /// Wait until the writes queued for `file` so far are in its
    /// destination. Callers hold a range lock of the file and are about to
    /// change its destination themselves.
    pub fn settle(&self, file: &SourceFile) {
        self.wait_applied(file.queued_upto());
    }

    /// Wait until every write queued so far is in its destination.
    pub fn drain(&self) {
        let last = lock(&self.state).last_seq;
        self.wait_applied(last);
    }

    fn wait_applied(&self, seq: u64) {
        if self.applied.load(Acquire) >= seq {
            return;
        }
        let mut st = lock(&self.state);
        while st.running && self.applied.load(Acquire) < seq {
            self.wake(&mut st);
            st.waiters += 1;
            st = wait(&self.done, st);
            st.waiters -= 1;
        }
    }

    /// Apply entries until `close`: the backup thread's loop. `fail`
    /// reports a write the destination refused; once `failed` says the
    /// backup has failed, entries are dropped unwritten.
    pub fn run(&self, fail: impl Fn(&SourceFile, Errno), failed: impl Fn() -> bool) {
        let _stopped = Stopped(self);
        lock(&self.state).running = true;
        let mut batch = VecDeque::new();
        let mut spent = Vec::new();
        while self.next_batch(&mut batch) {
            let last = batch.back().map_or(0, |e| e.seq);
            for e in batch.drain(..) {
                if !failed() {
                    if let Err(err) = sys::pwrite_all(e.dest.as_fd(), &e.buf[..e.len], e.off) {
                        fail(&e.file, err);
                    }
                }
                spent.push(e.buf);
            }
            let mut st = lock(&self.state);
            for buf in spent.drain(..) {
                st.held = st.held.saturating_sub(buf.len());
                keep_spare(&mut st, buf);
            }
            self.applied.store(last, Release);
            if st.waiters > 0 {
                self.done.notify_all();
            }
        }
    }

    /// Move every queued entry to `batch` once there is reason to write
    /// them (see WAKE_BYTES); false once closed with nothing left.
    fn next_batch(&self, batch: &mut VecDeque<Entry>) -> bool {
        let mut st = lock(&self.state);
        let mut lingered = false;
        loop {
            let due = lingered || st.closing || st.waiters > 0 || st.queued_bytes >= WAKE_BYTES;
            match (st.entries.is_empty(), due) {
                (false, true) => break,
                (true, _) if st.closing => return false,
                _ => {}
            }
            st.sleeping = true;
            if st.entries.is_empty() {
                st = wait(&self.work, st);
            } else {
                let (g, timeout) = self
                    .work
                    .wait_timeout(st, LINGER)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                lingered = timeout.timed_out();
            }
            st.sleeping = false;
        }
        std::mem::swap(&mut st.entries, batch);
        st.queued_bytes = 0;
        true
    }

    /// No more entries will come: the thread applies what is queued and
    /// returns.
    pub fn close(&self) {
        let mut st = lock(&self.state);
        st.closing = true;
        self.wake(&mut st);
    }
}

/// Keep `buf` for reuse if the pool has room for it.
fn keep_spare(st: &mut State, buf: Vec<u8>) {
    if st.pool_bytes + buf.len() <= POOL_BYTES {
        st.pool_bytes += buf.len();
        st.pool.push(buf);
    }
}

/// The thread has stopped (closed, or a panic): nothing is queued from now
/// on, and whatever is left is dropped, so that no one waits for it.
struct Stopped<'a>(&'a WriteBehind);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let q = self.0;
        let mut st = lock(&q.state);
        st.running = false;
        // Buffers still out (in a batch cut short, or reserved by a writer)
        // are never counted again.
        st.held = 0;
        st.queued_bytes = 0;
        let left = std::mem::take(&mut st.entries);
        q.applied.store(st.last_seq, Release);
        q.done.notify_all();
        drop(st);
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch;
    use rustix::fs::{Mode, OFlags};

    fn open(p: &std::path::Path) -> Arc<OwnFd> {
        let flags = OFlags::RDWR | OFlags::CREATE;
        Arc::new(sys::openat(rustix::fs::CWD, p, flags, Mode::from_raw_mode(0o600)).unwrap())
    }

    /// Tiny deterministic generator, one per thread.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Writers change a file under range locks and mirror each change
    /// through the queue, or write the destination themselves after a
    /// settle (as the copier, truncates and large writes do), or copy the
    /// whole file with every range locked: whatever the interleaving, the
    /// drained destination equals the source.
    #[test]
    fn queued_and_direct_mirrors_keep_the_order_of_the_writes() {
        const SIZE: u64 = 64 << 10;
        let d = scratch::dir("behind-order");
        let src = open(&d.join("src"));
        let dest = open(&d.join("dest"));
        sys::pwrite_all(src.as_fd(), &vec![0; SIZE as usize], 0).unwrap();
        sys::pwrite_all(dest.as_fd(), &vec![0; SIZE as usize], 0).unwrap();
        let file = Arc::new(SourceFile::new(0, 1, None, u64::MAX));
        let q = WriteBehind::default();
        std::thread::scope(|sc| {
            sc.spawn(|| q.run(|_, e| panic!("write failed: {e}"), || false));
            while !lock(&q.state).running {
                std::thread::yield_now();
            }
            let writers: Vec<_> = (0..4u64)
                .map(|t| {
                    let (src, dest, file, q, d) = (&src, &dest, &file, &q, &d);
                    sc.spawn(move || {
                        let mut x = 0x9E37_79B9 ^ (t + 1);
                        let mut buf = vec![0u8; 4096];
                        for i in 0..3000u64 {
                            let off = next(&mut x) % (SIZE - 4096);
                            let len = 1 + (next(&mut x) % 4096) as usize;
                            let way = next(&mut x) % 100;
                            let whole = way == 0;
                            let range = if whole {
                                (0, u64::MAX)
                            } else {
                                (off, off + len as u64)
                            };
                            let _g = file.ranges.lock(range.0, range.1);
                            buf[..len].fill((t * 64 + i % 64) as u8);
                            sys::pwrite_all(src.as_fd(), &buf[..len], off).unwrap();
                            if whole {
                                q.settle(file);
                                let all = std::fs::read(d.join("src")).unwrap();
                                sys::pwrite_all(dest.as_fd(), &all, 0).unwrap();
                            } else if way < 15 {
                                q.settle(file);
                                sys::pwrite_all(dest.as_fd(), &buf[..len], off).unwrap();
                            } else {
                                let mut b = q.reserve(len).expect("the thread runs");
                                sys::pread_full(src.as_fd(), &mut b[..len], off).unwrap();
                                q.push(file, dest.clone(), off, b, len);
                            }
                        }
                    })
                })
                .collect();
            let joined: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
            if joined.iter().any(|j| j.is_err()) {
                q.close();
                panic!("a writer failed");
            }
            q.drain();
            let same =
                std::fs::read(d.join("src")).unwrap() == std::fs::read(d.join("dest")).unwrap();
            q.close();
            assert!(same, "the destination differs from the source");
        });
        assert!(q.reserve(10).is_none(), "a write was queued after close");
        assert_eq!(lock(&q.state).held, 0, "buffers were not given back");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// With no thread, and for writes too large, nothing is queued: the
    /// writer mirrors directly, and settles return at once.
    #[test]
    fn without_a_thread_writes_are_not_queued() {
        let q = WriteBehind::default();
        assert!(q.reserve(4096).is_none());
        q.settle(&SourceFile::new(0, 1, None, 0));
        q.drain();
        lock(&q.state).running = true;
        assert!(q.reserve(MAX_ENTRY + 1).is_none());
        assert!(q.reserve(0).is_none());
        let b = q.reserve(5000).unwrap();
        assert_eq!(b.len(), 8192, "buffers are whole pages");
        q.give_back(b);
        assert_eq!(lock(&q.state).held, 0);
    }

    /// Writers wait for room beyond LIMIT; a thread that stops for good
    /// (here: a panic while writing) releases every writer and settle.
    #[test]
    fn a_stopped_thread_releases_its_waiters() {
        let d = scratch::dir("behind-stopped");
        let dest = open(&d.join("dest"));
        let file = Arc::new(SourceFile::new(0, 1, None, u64::MAX));
        let q = WriteBehind::default();
        lock(&q.state).running = true;
        let mut n = 0;
        while lock(&q.state).held + MAX_ENTRY <= LIMIT {
            let b = q.reserve(MAX_ENTRY).unwrap();
            q.push(&file, dest.clone(), n, b, MAX_ENTRY);
            n += MAX_ENTRY as u64;
        }
        std::thread::scope(|sc| {
            let blocked = sc.spawn(|| q.reserve(MAX_ENTRY));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!blocked.is_finished(), "a writer got room beyond the limit");
            let settling = sc.spawn(|| q.settle(&file));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                q.run(|_, _| {}, || panic!("the thread fails"))
            }));
            assert!(r.is_err());
            assert!(
                blocked.join().unwrap().is_none(),
                "queued after the thread stopped"
            );
            settling.join().unwrap();
        });
        assert_eq!(lock(&q.state).held, 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
