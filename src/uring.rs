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
use crate::liburing::{self as lu, Ring as LiburingRing, Sqe};
use crate::uring_pool::{self as pool, Call, Op};
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering::*};
use libc::{c_int, c_void, iovec};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Setup flags a ring may have and still be captured. Not SQPOLL (the
/// kernel would consume entries on its own time), IOPOLL, R_DISABLED or
/// DEFER_TASKRUN.
const SETUP_CAPTURABLE: u32 = lu::IORING_SETUP_CQSIZE
    | lu::IORING_SETUP_CLAMP
    | lu::IORING_SETUP_ATTACH_WQ
    | lu::IORING_SETUP_SUBMIT_ALL
    | lu::IORING_SETUP_COOP_TASKRUN
    | lu::IORING_SETUP_TASKRUN_FLAG
    | lu::IORING_SETUP_SQE128
    | lu::IORING_SETUP_CQE32
    | lu::IORING_SETUP_SINGLE_ISSUER;

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
            // SAFETY: `app` is the struct io_uring liburing just
            // initialised (this function's contract); ring_fd is an int.
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
    // SAFETY: a followed ring (found above), so a struct io_uring liburing
    // initialised and not yet torn down; its sqe_head and sqe_tail are
    // changed only by its submitter, the calling thread (the hooks' rule).
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
        || pool::is_worker_ring(fd)
}

// ---- submitting ----

/// The queued entries of `app`, in order.
///
/// # Safety
/// `app` is a followed ring, and the caller is its submitter (liburing's
/// rule: one thread submits at a time), so the entries stand still.
unsafe fn pending(app: *mut LiburingRing) -> impl Iterator<Item = *mut Sqe> {
    // SAFETY: `app` is a struct io_uring liburing initialised (followed
    // rings only); `kring_mask` points into the ring it mapped, and the
    // submitter (this thread, by contract) is the only one changing the
    // head and tail read here.
    let (head, tail, mask, sqes, shift) = unsafe {
        let sq = &(*app).sq;
        (
            sq.sqe_head,
            sq.sqe_tail,
            *sq.kring_mask,
            sq.sqes,
            u32::from((*app).flags & lu::IORING_SETUP_SQE128 != 0),
        )
    };
    // SAFETY: every index is masked by the ring's mask (shifted for 128-byte
    // entries) into the `sqes` array liburing mapped, of mask + 1 entries.
    (0..tail.wrapping_sub(head))
        .map(move |i| unsafe { sqes.add(((head.wrapping_add(i) & mask) << shift) as usize) })
}

/// Whether the kernel posts exactly one completion for this entry, which
/// counting in-flight operations relies on. The opcodes from NOP to LINKAT
/// but ACCEPT and RECV, which may be multishot, EPOLL_CTL and, after
/// LINKAT, MSG_RING, which posts into another ring, nor anything newer.
fn countable(sqe: &Sqe) -> bool {
    use lu::*;
    let multishot = match sqe.opcode {
        OP_POLL_ADD => sqe.len & IORING_POLL_ADD_MULTI != 0,
        OP_RECVMSG => sqe.ioprio & IORING_RECV_MULTISHOT != 0,
        OP_TIMEOUT => sqe.op_flags & IORING_TIMEOUT_MULTISHOT != 0,
        _ => false,
    };
    sqe.flags & IOSQE_CQE_SKIP_SUCCESS == 0
        && !multishot
        && (OP_NOP..=OP_LINKAT).contains(&sqe.opcode)
        && ![OP_ACCEPT, OP_RECV, OP_EPOLL_CTL].contains(&sqe.opcode)
}

/// Mark `r` uncountable if `sqe`, submitted natively, may complete other
/// than once.
fn note_native(r: &Ring, sqe: &Sqe) {
    if !countable(sqe) {
        r.uncounted.store(u32::from(sqe.opcode) + 1, Relaxed);
    }
}

/// What `sqe` asks, if the pool can run it through the interposed
/// functions; None for anything else.
fn call_of(sqe: &Sqe) -> Option<Call> {
    use lu::*;
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
            // SAFETY: `app` is a followed ring (found above) and this thread
            // its submitter (this function's contract): `pending`'s.
            for sqe in unsafe { pending(app) } {
                // SAFETY: an entry of liburing's mapped array between its
                // head and tail: queued, not submitted, so nobody writes it.
                note_native(r, unsafe { &*sqe });
            }
        }
        return submit();
    }
    let _l = r.lock.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: `app` is followed (found above), this thread submits it (this
    // function's contract), and `r`'s lock is held: `take_out`'s contract.
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
    if !pool::running() {
        fail(
            gate,
            "cannot start the threads that run io_uring operations during a backup".into(),
        );
        return;
    }
    // SAFETY: `app` is followed and this thread its submitter (this
    // function's contract): `pending`'s.
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
        pool::enqueue(Op {
            ring_fd: &r.fd,
            posted: &r.posted,
            user_data: sqe.user_data,
            call,
            iov,
        });
        *sqe = Sqe {
            opcode: lu::OP_NOP,
            flags: lu::IOSQE_CQE_SKIP_SUCCESS,
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

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    fn sqe(op: u8) -> Sqe {
        Sqe {
            opcode: op,
            fd: 7,
            off: 4096,
            addr: 0x1000,
            len: 512,
            user_data: 99,
            ..Sqe::default()
        }
    }

    fn with(op: u8, f: impl FnOnce(&mut Sqe)) -> Sqe {
        let mut e = sqe(op);
        f(&mut e);
        e
    }

    #[test]
    fn countable_entries_complete_exactly_once() {
        for op in [
            opcode::Nop::CODE,
            opcode::Writev::CODE,
            opcode::Write::CODE,
            opcode::Fsync::CODE,
            opcode::PollAdd::CODE,
            opcode::RecvMsg::CODE,
            opcode::Timeout::CODE,
            opcode::TimeoutRemove::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Send::CODE,
            opcode::OpenAt2::CODE,
            opcode::Splice::CODE,
            opcode::LinkAt::CODE,
        ] {
            assert!(countable(&sqe(op)), "opcode {op}");
        }
        // Possibly multishot, posting elsewhere, or newer than LINKAT.
        for op in [
            opcode::Accept::CODE,
            opcode::Recv::CODE,
            opcode::EpollCtl::CODE,
            opcode::MsgRingData::CODE,
            opcode::LinkAt::CODE + 2,
            u8::MAX,
        ] {
            assert!(!countable(&sqe(op)), "opcode {op}");
        }
        // Multishot forms, and skipped completions.
        let multi = [
            with(opcode::PollAdd::CODE, |e| e.len = lu::IORING_POLL_ADD_MULTI),
            with(opcode::RecvMsg::CODE, |e| {
                e.ioprio = lu::IORING_RECV_MULTISHOT
            }),
            with(opcode::Timeout::CODE, |e| {
                e.op_flags = lu::IORING_TIMEOUT_MULTISHOT
            }),
            with(opcode::Write::CODE, |e| {
                e.flags = lu::IOSQE_CQE_SKIP_SUCCESS
            }),
        ];
        for e in multi {
            assert!(!countable(&e), "opcode {} counted", e.opcode);
        }
    }

    #[test]
    fn call_of_runs_plain_file_operations_only() {
        assert_eq!(call_of(&sqe(opcode::Nop::CODE)), Some(Call::Nop));
        assert_eq!(
            call_of(&sqe(opcode::Writev::CODE)),
            Some(Call::Writev { fd: 7, off: 4096 })
        );
        let write = Call::Write {
            fd: 7,
            buf: 0x1000,
            n: 512,
            off: 4096,
        };
        assert_eq!(call_of(&sqe(opcode::Write::CODE)), Some(write));
        // A registered buffer is still the application's memory.
        assert_eq!(call_of(&sqe(opcode::WriteFixed::CODE)), Some(write));
        assert_eq!(
            call_of(&sqe(opcode::Read::CODE)),
            Some(Call::Read {
                fd: 7,
                buf: 0x1000,
                n: 512,
                off: 4096
            })
        );
        let fsync = with(opcode::Fsync::CODE, |e| {
            e.off = 0;
            e.len = 0;
            e.op_flags = lu::IORING_FSYNC_DATASYNC;
        });
        assert_eq!(
            call_of(&fsync),
            Some(Call::Fsync {
                fd: 7,
                datasync: true
            })
        );
        assert_eq!(
            call_of(&sqe(opcode::Fallocate::CODE)),
            Some(Call::Fallocate {
                fd: 7,
                mode: 512,
                off: 4096,
                len: 0x1000
            })
        );
        // IOSQE_ASYNC is a hint: run as well.
        let async_hint = with(opcode::Writev::CODE, |e| e.flags = lu::IOSQE_ASYNC);
        assert!(call_of(&async_hint).is_some());

        let refused = [
            // RWF_ flags, a range fsync, fixed files, links, drains...
            with(opcode::Writev::CODE, |e| {
                e.op_flags = libc::RWF_DSYNC as u32
            }),
            with(opcode::Write::CODE, |e| {
                e.op_flags = libc::RWF_APPEND as u32
            }),
            sqe(opcode::Fsync::CODE),
            with(opcode::Write::CODE, |e| e.flags = 1), // IOSQE_FIXED_FILE
            with(opcode::Write::CODE, |e| e.flags = 1 << 2), // IOSQE_IO_LINK
            with(opcode::Write::CODE, |e| e.flags = 1 << 1), // IOSQE_IO_DRAIN
            with(opcode::Write::CODE, |e| {
                e.flags = lu::IOSQE_CQE_SKIP_SUCCESS
            }),
            // ...and what is not a plain file operation.
            sqe(opcode::OpenAt::CODE),
            sqe(opcode::Send::CODE),
            sqe(opcode::MsgRingData::CODE),
        ];
        for e in refused {
            assert_eq!(
                call_of(&e),
                None,
                "opcode {} flags {:#x}",
                e.opcode,
                e.flags
            );
        }
    }
}
