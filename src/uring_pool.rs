//! The threads that run the io_uring operations `uring` takes out of the
//! application's rings during a backup, and post their completions back.
//!
//! Each operation runs through the process's own `pwritev`, `pwrite`,
//! `fallocate`..., which this library interposes (hooks.rs), so capture
//! mirrors it like the application's call; then a small ring of the
//! thread's own posts the completion to the application's ring
//! (IORING_OP_MSG_RING) with the application's `user_data` and result.
//! Called by symbol, not as `hooks::pwritev64`: the pool sits below the
//! hooks, which call into `uring`, which hands operations here.

use crate::gate::LibraryScope;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering::*};
use libc::{c_int, c_void, iovec};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What an entry asks, when the pool can run it through the interposed
/// functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Call {
    Nop,
    Writev {
        fd: c_int,
        off: u64,
    },
    Readv {
        fd: c_int,
        off: u64,
    },
    Write {
        fd: c_int,
        buf: u64,
        n: u32,
        off: u64,
    },
    Read {
        fd: c_int,
        buf: u64,
        n: u32,
        off: u64,
    },
    Fsync {
        fd: c_int,
        datasync: bool,
    },
    Fallocate {
        fd: c_int,
        mode: c_int,
        off: u64,
        len: u64,
    },
    SyncFileRange {
        fd: c_int,
        off: u64,
        len: u32,
        flags: u32,
    },
    Fadvise {
        fd: c_int,
        off: u64,
        len: u32,
        advice: u32,
    },
    /// Completes with this negative errno, as the kernel would complete it
    /// (an iovec array it cannot read or of too many entries).
    Fail(i32),
}

/// The file position: an entry's offset of -1.
pub const AT_POSITION: u64 = u64::MAX;

/// A taken-out operation, for the pool.
pub struct Op {
    /// The application's ring's descriptor, and its count of completions
    /// posted (see `uring::Ring`).
    pub ring_fd: &'static AtomicI32,
    pub posted: &'static AtomicU32,
    pub user_data: u64,
    pub call: Call,
    /// The iovec array, copied: the application may reuse its own once the
    /// submit returns (IORING_FEAT_SUBMIT_STABLE).
    pub iov: Vec<iovec>,
}

// SAFETY: the raw pointers inside are the application's buffers, which
// io_uring's contract keeps valid until the operation completes; the pool
// thread is the only one using them.
unsafe impl Send for Op {}

const WORKERS: usize = 4;
static QUEUE: Mutex<VecDeque<Op>> = Mutex::new(VecDeque::new());
static QUEUED: Condvar = Condvar::new();
static STARTED: AtomicBool = AtomicBool::new(false);
#[allow(clippy::declare_interior_mutable_const)]
const NO_FD: AtomicI32 = AtomicI32::new(-1);
static WORKER_RING_FDS: [AtomicI32; WORKERS] = [NO_FD; WORKERS];

/// Start the pool once; false when no thread could be started (entries
/// are then left in their ring and the backup fails).
pub fn running() -> bool {
    static SPAWN: Mutex<()> = Mutex::new(());
    if STARTED.load(Acquire) {
        return true;
    }
    let _l = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    if STARTED.load(Acquire) {
        return true;
    }
    let mut running = 0;
    for fd in &WORKER_RING_FDS {
        // Each thread posts from a small ring of its own, set up here so
        // that a failure leaves no operation waiting for it. Its descriptor
        // is the library's for good (the thread never ends): recorded, so
        // that an application's closefrom leaves it open.
        let _lib = LibraryScope::enter();
        let changing = crate::own_fds::changing();
        let Ok(ring) = worker_ring() else {
            continue;
        };
        let ring_fd = ring.as_raw_fd();
        let spawned = std::thread::Builder::new()
            .name("hotbackup-uring".into())
            .spawn(move || worker(ring));
        // Recorded once the thread has it (a failed spawn closed it), still
        // inside the hold; a ring beyond the table (a process with two
        // million descriptors) is used unrecorded.
        if spawned.is_ok() {
            changing.record(ring_fd);
            fd.store(ring_fd, Relaxed);
            running += 1;
        }
    }
    if running > 0 {
        STARTED.store(true, Release);
    }
    running > 0
}

/// A worker's ring, its descriptor moved up among the library's others
/// (from half the limit): away from the low numbers an application
/// `dup2`s onto or closes from. The ring as set up where it cannot move.
fn worker_ring() -> std::io::Result<io_uring::IoUring> {
    let ring = io_uring::IoUring::new(2)?;
    // SAFETY: the ring's own descriptor, open while `ring` lives, which
    // outlives this borrow.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.as_raw_fd()) };
    let Some(high) = crate::sys::dup_high(fd) else {
        return Ok(ring);
    };
    let params = ring.params().clone();
    // SAFETY: `high` is a descriptor of the ring just set up, owned here and
    // handed over, and `params` are what the kernel filled in for that ring.
    let moved = unsafe { io_uring::IoUring::from_fd(high.into_raw_fd(), params) };
    Ok(moved.unwrap_or(ring))
}

pub fn enqueue(op: Op) {
    QUEUE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(op);
    QUEUED.notify_one();
}

fn worker(mut ring: io_uring::IoUring) {
    loop {
        let op = {
            let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(op) = q.pop_front() {
                    break op;
                }
                q = QUEUED.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: the operation's buffers stay valid until its completion,
        // which is posted only below.
        let res = std::panic::catch_unwind(|| unsafe { run(&op) }).unwrap_or(-libc::EIO);
        post(&mut ring, &op, res);
        op.posted.fetch_add(1, Release);
    }
}

/// Run an operation the way the kernel would have, through the interposed
/// functions; returns the completion's result (bytes or -errno).
///
/// # Safety
/// The operation's buffers are valid, as io_uring requires of the
/// application until completion.
unsafe fn run(op: &Op) -> i32 {
    let iov = op.iov.as_ptr();
    let cnt = op.iov.len() as c_int;
    // SAFETY: each arm passes the entry's own fields to the function the
    // opcode stands for: buffers the application keeps valid until the
    // completion (io_uring's contract), or `iov`, the library's copy of its
    // iovec array, owned by `op`.
    let r: i64 = unsafe {
        match op.call {
            Call::Nop => 0,
            Call::Fail(e) => return e,
            Call::Writev {
                fd,
                off: AT_POSITION,
            } => libc::writev(fd, iov, cnt) as i64,
            Call::Writev { fd, off } => libc::pwritev64(fd, iov, cnt, off as i64) as i64,
            Call::Readv {
                fd,
                off: AT_POSITION,
            } => libc::readv(fd, iov, cnt) as i64,
            Call::Readv { fd, off } => libc::preadv64(fd, iov, cnt, off as i64) as i64,
            Call::Write {
                fd,
                buf,
                n,
                off: AT_POSITION,
            } => libc::write(fd, buf as *const c_void, n as usize) as i64,
            Call::Write { fd, buf, n, off } => {
                libc::pwrite64(fd, buf as *const c_void, n as usize, off as i64) as i64
            }
            Call::Read {
                fd,
                buf,
                n,
                off: AT_POSITION,
            } => libc::read(fd, buf as *mut c_void, n as usize) as i64,
            Call::Read { fd, buf, n, off } => {
                libc::pread64(fd, buf as *mut c_void, n as usize, off as i64) as i64
            }
            Call::Fsync { fd, datasync } => i64::from(if datasync {
                libc::fdatasync(fd)
            } else {
                libc::fsync(fd)
            }),
            Call::Fallocate { fd, mode, off, len } => {
                i64::from(libc::fallocate64(fd, mode, off as i64, len as i64))
            }
            Call::SyncFileRange {
                fd,
                off,
                len,
                flags,
            } => i64::from(libc::sync_file_range(fd, off as i64, i64::from(len), flags)),
            Call::Fadvise {
                fd,
                off,
                len,
                advice,
            } => {
                // Returns the error number itself.
                let e = libc::posix_fadvise(fd, off as i64, i64::from(len), advice as c_int);
                return -e;
            }
        }
    };
    if r < 0 {
        -crate::sys::errno()
    } else {
        r as i32
    }
}

/// Post the operation's completion to the application's ring. A full
/// completion queue is retried: the application is reaping.
fn post(ring: &mut io_uring::IoUring, op: &Op, res: i32) {
    let _lib = LibraryScope::enter();
    // The application's ring stays set up until this completion is posted:
    // `unregister` waits for it.
    let ring_fd = op.ring_fd.load(Relaxed);
    let msg =
        io_uring::opcode::MsgRingData::new(io_uring::types::Fd(ring_fd), res, op.user_data, None)
            .build();
    let began = Instant::now();
    loop {
        // SAFETY: a MSG_RING entry carries no pointer.
        let pushed = unsafe { ring.submission().push(&msg) }.is_ok();
        let result = if pushed {
            match ring.submit_and_wait(1) {
                Ok(_) => ring.completion().next().map_or(-libc::EIO, |c| c.result()),
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            }
        } else {
            -libc::EBUSY
        };
        if result >= 0 {
            return;
        }
        let transient = matches!(
            -result,
            libc::EAGAIN | libc::EOVERFLOW | libc::EBUSY | libc::EINTR
        );
        if !transient || began.elapsed() > Duration::from_secs(60) {
            crate::sys::say(&format!(
                "cannot post an io_uring completion to descriptor {ring_fd}: error {}",
                -result
            ));
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether `fd` is the ring of one of the pool's threads.
pub fn is_worker_ring(fd: c_int) -> bool {
    WORKER_RING_FDS.iter().any(|w| w.load(Relaxed) == fd)
}

pub fn after_fork_child() {
    // The pool's threads are gone in the child; a later backup starts new ones.
    STARTED.store(false, Relaxed);
    for fd in &WORKER_RING_FDS {
        fd.store(-1, Relaxed);
    }
}
