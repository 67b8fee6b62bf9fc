//! io_uring rings the process sets up through liburing.
//!
//! While no backup runs, a ring works natively: the submit hooks only check
//! that every operation queued completes exactly once (see `countable`).
//! During capture, the submit hooks take each queued operation out of the
//! ring before the kernel sees it: the entry becomes a NOP whose completion
//! is skipped (IOSQE_CQE_SKIP_SUCCESS), and a small pool of threads runs the
//! operation through the interposed functions, so capture mirrors it like any
//! `pwrite`. The pool then posts the completion to the application's ring
//! (IORING_OP_MSG_RING) with the application's user_data and result, and the
//! application reaps it as if the kernel had run the operation itself.
//!
//! Writes submitted natively before capture started may still be in the
//! kernel when the copier starts. `wait_native` waits for them: operations
//! the kernel consumed from a ring, minus the NOPs we put there, against
//! completions the kernel posted, minus the ones we posted.

use crate::gate::{Gate, LibraryScope};
use crate::hooks;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering::*};
use libc::{c_int, c_void, iovec};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The head of liburing's `struct io_uring` (liburing.h: flags at 192,
/// ring_fd at 196), the same layout since liburing 2.0.
#[repr(C)]
struct SubmissionQueue {
    khead: *const AtomicU32,
    ktail: *const AtomicU32,
    kring_mask: *const u32,
    kring_entries: *const u32,
    kflags: *const u32,
    kdropped: *const u32,
    array: *mut u32,
    sqes: *mut Sqe,
    sqe_head: u32,
    sqe_tail: u32,
}

#[repr(C)]
struct CompletionQueue {
    khead: *const AtomicU32,
    ktail: *const AtomicU32,
}

#[repr(C)]
struct LiburingRing {
    sq: SubmissionQueue,
    _sq_rest: [u8; 104 - 72],
    cq: CompletionQueue,
    _cq_rest: [u8; 88 - 16],
    flags: u32,
    ring_fd: c_int,
}

/// A submission queue entry (struct io_uring_sqe).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    _pad: u64,
}
const _: () = assert!(core::mem::size_of::<Sqe>() == 64);
const _: () = assert!(core::mem::size_of::<LiburingRing>() == 200);

const OP_NOP: u8 = 0;
const OP_READV: u8 = 1;
const OP_WRITEV: u8 = 2;
const OP_FSYNC: u8 = 3;
const OP_READ_FIXED: u8 = 4;
const OP_WRITE_FIXED: u8 = 5;
const OP_POLL_ADD: u8 = 6;
const OP_SYNC_FILE_RANGE: u8 = 8;
const OP_RECVMSG: u8 = 10;
const OP_TIMEOUT: u8 = 11;
const OP_FALLOCATE: u8 = 17;
const OP_READ: u8 = 22;
const OP_WRITE: u8 = 23;
const OP_FADVISE: u8 = 24;

const IOSQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
const IOSQE_ASYNC: u8 = 1 << 4;
const IORING_FSYNC_DATASYNC: u32 = 1;

const SETUP_SQE128: u32 = 1 << 10;
/// Setup flags a ring may have and still be captured: CQSIZE, CLAMP,
/// ATTACH_WQ, SUBMIT_ALL, COOP_TASKRUN, TASKRUN_FLAG, SQE128, CQE32,
/// SINGLE_ISSUER. Not SQPOLL (the kernel would consume entries on its own
/// time), IOPOLL, R_DISABLED or DEFER_TASKRUN.
const SETUP_CAPTURABLE: u32 = (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | SETUP_SQE128
    | (1 << 11)
    | (1 << 12);

pub const MAX_RINGS: usize = 16;

struct Ring {
    /// The application's `struct io_uring`, null when the slot is free.
    app: AtomicPtr<LiburingRing>,
    fd: AtomicI32,
    /// Entries turned into NOPs, and completions posted for them.
    nops: AtomicU32,
    posted: AtomicU32,
    /// An operation ran natively that may complete other than exactly once:
    /// in-flight operations can no longer be counted.
    uncounted: AtomicU32,
    /// Held while entries are taken out and submitted, so that `nops` and
    /// the kernel's head agree whenever another thread holds it.
    lock: Mutex<()>,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_RING: Ring = Ring {
    app: AtomicPtr::new(core::ptr::null_mut()),
    fd: AtomicI32::new(-1),
    nops: AtomicU32::new(0),
    posted: AtomicU32::new(0),
    uncounted: AtomicU32::new(0),
    lock: Mutex::new(()),
};
static RINGS: [Ring; MAX_RINGS] = [FREE_RING; MAX_RINGS];

// ---- setting rings up ----

/// Whether this kernel can post a completion to another ring and skip a
/// NOP's: checked once, on the first ring.
fn kernel_can_capture() -> bool {
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let _lib = LibraryScope::enter();
            // The probe's ring is open only inside this hold: an
            // application's closefrom waits for it.
            let _changing = crate::own_fds::changing();
            let ok = (|| {
                let ring = io_uring::IoUring::new(2).ok()?;
                let mut probe = io_uring::Probe::new();
                ring.submitter().register_probe(&mut probe).ok()?;
                Some(
                    ring.params().is_feature_skip_cqe_on_success()
                        && probe.is_supported(io_uring::opcode::MsgRingData::CODE)
                        && probe.is_supported(io_uring::opcode::Nop::CODE),
                )
            })()
            .unwrap_or(false);
            STATE.store(if ok { 2 } else { 1 }, Relaxed);
            ok
        }
    }
}

/// Whether a ring with these setup flags can be captured on this kernel.
pub fn capturable(setup_flags: u32) -> Result<(), String> {
    if setup_flags & !SETUP_CAPTURABLE != 0 {
        return Err(format!(
            "io_uring setup flags {setup_flags:#x} (SQPOLL, IOPOLL or deferred task running) cannot be captured"
        ));
    }
    if !kernel_can_capture() {
        return Err("this kernel lacks IORING_OP_MSG_RING or IOSQE_CQE_SKIP_SUCCESS (Linux 5.18 or later has both), which capturing io_uring writes needs".into());
    }
    Ok(())
}

/// Follow a ring liburing has just set up. False when all slots are taken.
///
/// # Safety
/// `ring` is a `struct io_uring` that liburing initialised.
pub unsafe fn register(ring: *mut c_void) -> bool {
    let app = ring.cast::<LiburingRing>();
    // liburing's io_uring_queue_init calls io_uring_queue_init_params through
    // its PLT, so both hooks see the same ring: follow it once.
    if find(ring).is_some() {
        return true;
    }
    for r in &RINGS {
        let _l = r.lock.lock().unwrap_or_else(|e| e.into_inner());
        if r.app.load(Acquire).is_null() {
            r.nops.store(0, Relaxed);
            r.posted.store(0, Relaxed);
            r.uncounted.store(0, Relaxed);
            // SAFETY: liburing filled in the ring; ring_fd is plain data.
            r.fd.store(unsafe { (*app).ring_fd }, Relaxed);
            r.app.store(app, Release);
            return true;
        }
    }
    false
}

/// Stop following a ring the application tears down, once every operation
/// taken out of it has been completed.
pub fn unregister(ring: *mut c_void) {
    let Some(r) = find(ring) else { return };
    let began = Instant::now();
    while r.posted.load(Acquire) != r.nops.load(Acquire)
        && began.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _l = r.lock.lock().unwrap_or_else(|e| e.into_inner());
    r.app.store(core::ptr::null_mut(), Release);
    r.fd.store(-1, Relaxed);
}

/// How many entries a followed ring has queued (0 for other rings).
pub fn queued(ring: *mut c_void) -> u32 {
    if find(ring).is_none() {
        return 0;
    }
    let app = ring.cast::<LiburingRing>();
    // SAFETY: a followed ring, read by its submitting thread (the caller's
    // contract in the hooks).
    unsafe { (*app).sq.sqe_tail.wrapping_sub((*app).sq.sqe_head) }
}

#[inline]
fn find(ring: *mut c_void) -> Option<&'static Ring> {
    let app = ring.cast::<LiburingRing>();
    RINGS.iter().find(|r| r.app.load(Relaxed) == app)
}

/// Whether `fd` is a ring this module follows or one of its own.
pub fn is_followed(fd: c_int) -> bool {
    RINGS
        .iter()
        .any(|r| !r.app.load(Acquire).is_null() && r.fd.load(Relaxed) == fd)
        || WORKER_RING_FDS.iter().any(|w| w.load(Relaxed) == fd)
}

// ---- submitting ----

/// The queued entries of `app`, in order.
///
/// # Safety
/// `app` is a followed ring, and the caller is its submitter (liburing's
/// rule: one thread submits at a time), so the entries stand still.
unsafe fn pending(app: *mut LiburingRing) -> impl Iterator<Item = *mut Sqe> {
    // SAFETY: per the contract, liburing's fields are initialised and only
    // this thread changes them now.
    let (head, tail, mask, sqes, shift) = unsafe {
        let sq = &(*app).sq;
        (
            sq.sqe_head,
            sq.sqe_tail,
            *sq.kring_mask,
            sq.sqes,
            u32::from((*app).flags & SETUP_SQE128 != 0),
        )
    };
    // SAFETY: every index is masked into the entry array liburing mapped.
    (0..tail.wrapping_sub(head))
        .map(move |i| unsafe { sqes.add(((head.wrapping_add(i) & mask) << shift) as usize) })
}

/// Whether the kernel posts exactly one completion for this entry, which
/// counting in-flight operations relies on. Opcodes of io_uring.h; not
/// ACCEPT (13) and RECV (27), which may be multishot, EPOLL_CTL (29),
/// MSG_RING (40), which posts into another ring, nor anything newer.
fn countable(sqe: &Sqe) -> bool {
    let multishot = match sqe.opcode {
        OP_POLL_ADD => sqe.len & 1 != 0,            // IORING_POLL_ADD_MULTI
        OP_RECVMSG => sqe.ioprio & (1 << 1) != 0,   // IORING_RECV_MULTISHOT
        OP_TIMEOUT => sqe.op_flags & (1 << 6) != 0, // IORING_TIMEOUT_MULTISHOT
        _ => false,
    };
    sqe.flags & IOSQE_CQE_SKIP_SUCCESS == 0
        && !multishot
        && matches!(
            sqe.opcode,
            0..=12 // NOP .. TIMEOUT_REMOVE
                | 14..=26 // ASYNC_CANCEL .. SEND
                | 28 // OPENAT2
                | 30..=39 // SPLICE .. LINKAT
        )
}

/// Mark `r` uncountable if `sqe`, submitted natively, may complete other
/// than once.
fn note_native(r: &Ring, sqe: &Sqe) {
    if !countable(sqe) {
        r.uncounted.store(u32::from(sqe.opcode) + 1, Relaxed);
    }
}

/// What an entry asks, when the pool can run it through the interposed
/// functions.
#[derive(Clone, Copy)]
enum Call {
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
const AT_POSITION: u64 = u64::MAX;

fn call_of(sqe: &Sqe) -> Option<Call> {
    // Fixed files, links, drains and buffer selection tie an entry to its
    // ring; only IOSQE_ASYNC (a hint) is harmless.
    if sqe.flags & !IOSQE_ASYNC != 0 {
        return None;
    }
    let fd = sqe.fd;
    let rw_plain = sqe.op_flags == 0;
    Some(match sqe.opcode {
        OP_NOP => Call::Nop,
        OP_WRITEV if rw_plain => Call::Writev { fd, off: sqe.off },
        OP_READV if rw_plain => Call::Readv { fd, off: sqe.off },
        OP_WRITE | OP_WRITE_FIXED if rw_plain => Call::Write {
            fd,
            buf: sqe.addr,
            n: sqe.len,
            off: sqe.off,
        },
        OP_READ | OP_READ_FIXED if rw_plain => Call::Read {
            fd,
            buf: sqe.addr,
            n: sqe.len,
            off: sqe.off,
        },
        OP_FSYNC if sqe.op_flags & !IORING_FSYNC_DATASYNC == 0 && sqe.off == 0 && sqe.len == 0 => {
            Call::Fsync {
                fd,
                datasync: sqe.op_flags & IORING_FSYNC_DATASYNC != 0,
            }
        }
        OP_FALLOCATE => Call::Fallocate {
            fd,
            mode: sqe.len as c_int,
            off: sqe.off,
            len: sqe.addr,
        },
        OP_SYNC_FILE_RANGE => Call::SyncFileRange {
            fd,
            off: sqe.off,
            len: sqe.len,
            flags: sqe.op_flags,
        },
        OP_FADVISE => Call::Fadvise {
            fd,
            off: sqe.off,
            len: sqe.len,
            advice: sqe.op_flags,
        },
        _ => return None,
    })
}

/// A taken-out operation, for the pool.
struct Op {
    ring: &'static Ring,
    user_data: u64,
    call: Call,
    /// The iovec array, copied: the application may reuse its own once the
    /// submit returns (IORING_FEAT_SUBMIT_STABLE).
    iov: Vec<iovec>,
}

// SAFETY: the raw pointers inside are the application's buffers, which
// io_uring's contract keeps valid until the operation completes; the pool
// thread is the only one using them.
unsafe impl Send for Op {}

/// The submit hooks: `submit` is liburing's real function, called once.
///
/// # Safety
/// `ring` is the application's `struct io_uring`, and the caller is its
/// submitter.
pub unsafe fn submit<R>(gate: &Gate, ring: *mut c_void, submit: impl FnOnce() -> R) -> R {
    let Some(r) = find(ring) else {
        return submit();
    };
    let app = ring.cast::<LiburingRing>();
    if !gate.capturing() {
        if r.uncounted.load(Relaxed) == 0 {
            // SAFETY: per this function's contract.
            for sqe in unsafe { pending(app) } {
                // SAFETY: a queued entry, not yet submitted.
                note_native(r, unsafe { &*sqe });
            }
        }
        return submit();
    }
    let _l = r.lock.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: per this function's contract.
    let taken = std::panic::catch_unwind(|| unsafe { take_out(gate, r, app) });
    if taken.is_err() {
        fail(
            gate,
            "internal error while taking io_uring entries out".into(),
        );
    }
    submit()
}

/// Turn each queued entry into a skipped NOP and hand it to the pool.
///
/// # Safety
/// As `submit`.
unsafe fn take_out(gate: &Gate, r: &'static Ring, app: *mut LiburingRing) {
    if !pool_running() {
        fail(
            gate,
            "cannot start the threads that run io_uring operations during a backup".into(),
        );
        return;
    }
    // SAFETY: per the contract.
    for p in unsafe { pending(app) } {
        // SAFETY: a queued entry, ours to read and rewrite until the real
        // submit below hands it to the kernel.
        let sqe = unsafe { &mut *p };
        let Some(call) = call_of(sqe) else {
            fail(
                gate,
                format!(
                    "io_uring operation {} (flags {:#x}) on descriptor {} ran during the backup; it cannot be captured",
                    sqe.opcode, sqe.flags, sqe.fd
                ),
            );
            note_native(r, sqe);
            continue;
        };
        // The iovec array is copied without trusting it: the kernel would
        // complete a bad one with an error, which the pool posts instead.
        let (call, iov) = match call {
            Call::Writev { .. } | Call::Readv { .. } => {
                match crate::staging::read_iovecs(sqe.addr as *const iovec, sqe.len as usize) {
                    Ok(iov) => (call, iov),
                    Err(e) => (Call::Fail(-e), Vec::new()),
                }
            }
            _ => (call, Vec::new()),
        };
        enqueue(Op {
            ring: r,
            user_data: sqe.user_data,
            call,
            iov,
        });
        *sqe = Sqe {
            opcode: OP_NOP,
            flags: IOSQE_CQE_SKIP_SUCCESS,
            ..Sqe::default()
        };
        r.nops.fetch_add(1, Release);
    }
}

fn fail(gate: &Gate, msg: String) {
    if let Some((_guard, s)) = crate::session::enter(gate) {
        s.fail_raw(libc::EOPNOTSUPP, msg);
    }
}

// ---- waiting for native operations ----

/// A followed ring's counters, read together under its lock.
struct Counts {
    /// Entries the kernel consumed, and entries queued for it.
    sq_head: u32,
    sq_tail: u32,
    /// Completions posted, less the ones the pool posted (read after the
    /// kernel's count, so the difference can only undercount).
    native_done: u32,
    nops: u32,
}

impl Ring {
    /// None once the ring is no longer followed.
    fn counts(&self) -> Option<Counts> {
        let _l = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let app = self.app.load(Acquire);
        if app.is_null() {
            return None;
        }
        // SAFETY: the ring stays set up while followed; unregister takes
        // the lock we hold.
        let (sq_head, sq_tail, cq_tail) = unsafe {
            (
                (*(*app).sq.khead).load(Acquire),
                (*(*app).sq.ktail).load(Acquire),
                (*(*app).cq.ktail).load(Acquire),
            )
        };
        Some(Counts {
            sq_head,
            sq_tail,
            native_done: cq_tail.wrapping_sub(self.posted.load(Acquire)),
            nops: self.nops.load(Acquire),
        })
    }
}

/// Wait until no operation submitted natively (before capture started) is
/// still in the kernel. Capture must be on: every submit now takes its
/// entries out, so no native operation starts meanwhile.
pub fn wait_native(timeout: Duration) -> Result<(), (i32, String)> {
    let began = Instant::now();
    let pause = |what: &dyn Fn() -> String| {
        if began.elapsed() > timeout {
            return Err((libc::ETIMEDOUT, what()));
        }
        std::thread::sleep(Duration::from_micros(100));
        Ok(())
    };
    'rings: for r in &RINGS {
        let uncounted = r.uncounted.load(Relaxed);
        if uncounted != 0 && !r.app.load(Acquire).is_null() {
            return Err((
                libc::EOPNOTSUPP,
                format!(
                    "the io_uring ring on descriptor {} ran operation {} (or skipped a completion), whose completions cannot be counted, so writes still in flight cannot be waited for",
                    r.fd.load(Relaxed),
                    uncounted - 1
                ),
            ));
        }
        // Entries a failed submit left for the next one may be our NOPs or
        // not: count once the kernel has consumed everything.
        let consumed = loop {
            let Some(c) = r.counts() else { continue 'rings };
            if c.sq_head == c.sq_tail {
                break c.sq_head.wrapping_sub(c.nops);
            }
            pause(&|| {
                format!(
                    "the io_uring ring on descriptor {} kept entries unsubmitted for {timeout:?}",
                    r.fd.load(Relaxed)
                )
            })?;
        };
        while let Some(c) = r.counts() {
            if c.native_done.wrapping_sub(consumed) as i32 >= 0 {
                break;
            }
            pause(&|| {
                format!(
                    "{} io_uring operation(s) submitted before the backup on descriptor {} did not complete within {timeout:?}",
                    consumed.wrapping_sub(c.native_done),
                    r.fd.load(Relaxed)
                )
            })?;
        }
    }
    Ok(())
}

// ---- the pool ----

const WORKERS: usize = 4;
static QUEUE: Mutex<VecDeque<Op>> = Mutex::new(VecDeque::new());
static QUEUED: Condvar = Condvar::new();
static STARTED: AtomicBool = AtomicBool::new(false);
#[allow(clippy::declare_interior_mutable_const)]
const NO_FD: AtomicI32 = AtomicI32::new(-1);
static WORKER_RING_FDS: [AtomicI32; WORKERS] = [NO_FD; WORKERS];

/// Start the pool once; false when no thread could be started (entries
/// are then left in their ring and the backup fails).
fn pool_running() -> bool {
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
        let Ok(ring) = io_uring::IoUring::new(2) else {
            continue;
        };
        let ring_fd = std::os::fd::AsRawFd::as_raw_fd(&ring);
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

fn enqueue(op: Op) {
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
        op.ring.posted.fetch_add(1, Release);
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
    // SAFETY: each arm forwards the application's own arguments to the
    // function the entry stands for.
    let r: i64 = unsafe {
        match op.call {
            Call::Nop => 0,
            Call::Fail(e) => return e,
            Call::Writev {
                fd,
                off: AT_POSITION,
            } => hooks::writev(fd, iov, cnt) as i64,
            Call::Writev { fd, off } => hooks::pwritev64(fd, iov, cnt, off as i64) as i64,
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
            } => hooks::write(fd, buf as *const c_void, n as usize) as i64,
            Call::Write { fd, buf, n, off } => {
                hooks::pwrite64(fd, buf as *const c_void, n as usize, off as i64) as i64
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
                i64::from(hooks::fallocate64(fd, mode, off as i64, len as i64))
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
    let ring_fd = op.ring.fd.load(Relaxed);
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

pub fn after_fork_child() {
    // The pool's threads are gone in the child; a later backup starts new ones.
    STARTED.store(false, Relaxed);
    for fd in &WORKER_RING_FDS {
        fd.store(-1, Relaxed);
    }
}
