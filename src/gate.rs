//! The gate every interposed call passes: what an idle hook costs, and how a
//! backup knows which calls are still in flight when capture starts or stops.
//!
//! Each thread owns a cache-line sized slot in a static array. Entering a
//! hook writes the thread's own slot (a sequence number made odd, and the
//! descriptor involved), then reads the global `CAPTURING` flag. No write to
//! memory shared with another thread, no lock, no system call, no
//! allocation. The backup thread does the expensive half: after flipping
//! `CAPTURING` it runs `membarrier(PRIVATE_EXPEDITED)`, which acts as a full
//! memory barrier on every thread of the process, then reads all slots. That
//! is the asymmetric form of Dekker's algorithm: either a hook saw the new
//! flag, or the backup thread sees the hook's odd sequence number and waits
//! for it to become even. Where membarrier is unavailable the hooks issue the
//! fence themselves.
//!
//! A second bit per slot, `capture`, is held only while a hook is mirroring,
//! so that stopping capture waits for mirrors in flight and not for a
//! `write` blocked on a socket.

use core::cell::Cell;
use core::sync::atomic::{
    compiler_fence, fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*,
};
use std::time::{Duration, Instant};

/// True while a backup captures changes.
pub static CAPTURING: AtomicBool = AtomicBool::new(false);

/// True while the snapshot check holds every change still (see `freeze`).
static FROZEN: AtomicBool = AtomicBool::new(false);

/// Until the library's constructor has registered with membarrier, hooks
/// fence for themselves.
static HOOKS_FENCE: AtomicBool = AtomicBool::new(true);

pub const NSLOTS: usize = 4096;

/// What kind of call holds a slot: the backup start waits only for calls
/// that can change a file.
pub const KIND_NO_CHANGE: i32 = -3;
pub const KIND_PATH: i32 = -2;

#[repr(align(64))]
pub struct Slot {
    /// Odd while the owning thread is inside a hook.
    seq: AtomicU64,
    /// The descriptor the call writes through, or a KIND_* value.
    what: AtomicI32,
    /// Set while the thread mirrors a change for the running backup.
    capture: AtomicBool,
    claimed: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    seq: AtomicU64::new(0),
    what: AtomicI32::new(0),
    capture: AtomicBool::new(false),
    claimed: AtomicBool::new(false),
};
static SLOTS: [Slot; NSLOTS] = [EMPTY_SLOT; NSLOTS];
/// One past the highest slot ever claimed: scans stop there.
static SLOTS_HIGH: AtomicUsize = AtomicUsize::new(0);
/// Calls from threads that found no free slot (more than NSLOTS threads).
static OVERFLOW_INFLIGHT: AtomicUsize = AtomicUsize::new(0);
static OVERFLOW_CAPTURE: AtomicUsize = AtomicUsize::new(0);

const NO_SLOT: u32 = 0x0FFF_FFFF;
const OVERFLOW: u32 = 0x0FFF_FFFE;
/// Set in MY_SLOT while the thread is inside a hook: a hook reached from
/// inside another (the library closing its own descriptor through libc,
/// say) leaves the slot alone.
const INSIDE: u32 = 0x4000_0000;
const NESTED: u32 = 0x2000_0000;

/// This thread's slot index, as MY_SLOT.get()/set() below: an
/// initial-exec TLS variable defined in src/c/shim.c, addressed through its
/// GOT entry (one load and an %fs-relative access, where Rust's
/// thread_local would call __tls_get_addr in a shared library).
struct MySlot;

impl MySlot {
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn ptr(&self) -> *mut u32 {
        thread_local! {
            static SLOT: core::cell::UnsafeCell<u32> = const { core::cell::UnsafeCell::new(NO_SLOT) };
        }
        SLOT.with(|s| s.get())
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn ptr(&self) -> *mut u32 {
        let p: *mut u32;
        // SAFETY: reads the thread pointer and the variable's TLS offset
        // from the GOT (R_X86_64_TPOFF64); touches no memory otherwise.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + hb_slot_tls@GOTTPOFF]",
                "add {p}, qword ptr fs:0",
                p = out(reg) p,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        p
    }

    #[inline(always)]
    fn get(&self) -> u32 {
        // SAFETY: the pointer is this thread's own TLS variable, valid for
        // the thread's life and touched by no other thread.
        unsafe { *self.ptr() }
    }

    #[inline(always)]
    fn set(&self, v: u32) {
        // SAFETY: this thread's own TLS variable, as in `get`; no reference
        // to it is alive (`get` returns a copy), so the write aliases nothing.
        unsafe { *self.ptr() = v }
    }
}

static MY_SLOT: MySlot = MySlot;

thread_local! {
    /// Set while this thread runs the library's own code: hooks called from
    /// there (a callback, a panic message) behave as if no backup ran.
    static IN_LIBRARY: Cell<bool> = const { Cell::new(false) };
}

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

#[inline(always)]
fn hook_fence() {
    if HOOKS_FENCE.load(Relaxed) {
        fence(SeqCst);
    } else {
        compiler_fence(SeqCst);
    }
}

/// Proof that the current thread is inside a hook; dropping it leaves.
pub struct Gate {
    slot: u32,
    seq: u64,
}

impl Gate {
    #[inline(always)]
    pub fn enter(what: i32) -> Gate {
        let idx = MY_SLOT.get();
        if (idx as usize) < NSLOTS {
            MY_SLOT.set(idx | INSIDE);
            let slot = &SLOTS[idx as usize];
            let seq = slot.seq.load(Relaxed) + 1;
            slot.what.store(what, Relaxed);
            slot.seq.store(seq, Relaxed);
            hook_fence();
            return Gate { slot: idx, seq };
        }
        Self::enter_slow(what)
    }

    #[cold]
    fn enter_slow(what: i32) -> Gate {
        let v = MY_SLOT.get();
        if v & INSIDE != 0 {
            return Gate {
                slot: NESTED,
                seq: 0,
            };
        }
        if v == NO_SLOT {
            claim_slot();
            if (MY_SLOT.get() as usize) < NSLOTS {
                return Self::enter(what);
            }
        }
        MY_SLOT.set(OVERFLOW | INSIDE);
        OVERFLOW_INFLIGHT.fetch_add(1, SeqCst);
        Gate {
            slot: OVERFLOW,
            seq: 0,
        }
    }

    /// This thread's slot, if it has one of its own.
    pub fn slot(&self) -> Option<usize> {
        ((self.slot as usize) < NSLOTS).then_some(self.slot as usize)
    }

    /// Whether a backup is capturing; false inside the library's own code.
    #[inline(always)]
    pub fn capturing(&self) -> bool {
        CAPTURING.load(Acquire) && self.capturing_here()
    }

    /// Out of line, so that the idle path never computes the address of a
    /// Rust thread-local (a __tls_get_addr call in a shared library).
    #[inline(never)]
    fn capturing_here(&self) -> bool {
        self.slot != NESTED && !IN_LIBRARY.get()
    }

    /// Declare that this call will mirror a change; returns false if capture
    /// stopped meanwhile (then the call must not touch the session).
    pub fn begin_capture(&self) -> Option<CaptureGuard> {
        if self.slot == NESTED {
            return None;
        }
        if (self.slot as usize) < NSLOTS {
            SLOTS[self.slot as usize].capture.store(true, Relaxed);
            hook_fence();
        } else {
            OVERFLOW_CAPTURE.fetch_add(1, SeqCst);
        }
        let guard = CaptureGuard {
            slot: self.slot,
            was_in_library: IN_LIBRARY.replace(true),
        };
        if !CAPTURING.load(SeqCst) {
            return None;
        }
        if FROZEN.load(SeqCst) {
            drop(guard);
            return self.wait_thaw();
        }
        Some(guard)
    }

    /// The trees are being compared with their copies: wait, holding
    /// nothing the check waits for, then start again.
    #[cold]
    fn wait_thaw(&self) -> Option<CaptureGuard> {
        while FROZEN.load(SeqCst) {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.begin_capture()
    }
}

impl Drop for Gate {
    #[inline(always)]
    fn drop(&mut self) {
        if (self.slot as usize) < NSLOTS {
            SLOTS[self.slot as usize].seq.store(self.seq + 1, Release);
            MY_SLOT.set(self.slot);
        } else if self.slot == OVERFLOW {
            OVERFLOW_INFLIGHT.fetch_sub(1, SeqCst);
            MY_SLOT.set(OVERFLOW);
        }
    }
}

/// Held while a hook may use the session; stopping capture waits for it.
pub struct CaptureGuard {
    slot: u32,
    was_in_library: bool,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        IN_LIBRARY.set(self.was_in_library);
        if self.slot == NESTED {
            return;
        }
        if (self.slot as usize) < NSLOTS {
            SLOTS[self.slot as usize].capture.store(false, Release);
        } else {
            OVERFLOW_CAPTURE.fetch_sub(1, SeqCst);
        }
    }
}

/// Marks the current thread as running library code until dropped.
pub struct LibraryScope(bool);

impl LibraryScope {
    pub fn enter() -> LibraryScope {
        LibraryScope(IN_LIBRARY.replace(true))
    }
}

impl Drop for LibraryScope {
    fn drop(&mut self) {
        IN_LIBRARY.set(self.0);
    }
}

/// Run `f` as application code even if called from inside the library (the
/// caller's callbacks must be captured like any other application call).
pub fn as_application<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_LIBRARY.replace(false);
    let r = f();
    IN_LIBRARY.set(was);
    r
}

#[cold]
fn claim_slot() {
    let start = SLOTS_HIGH.load(Relaxed).min(NSLOTS);
    // Prefer slots freed by exited threads, then fresh ones.
    let found = (0..start).chain(start..NSLOTS).find(|&i| {
        SLOTS[i]
            .claimed
            .compare_exchange(false, true, AcqRel, Relaxed)
            .is_ok()
    });
    match found {
        Some(i) => {
            SLOTS_HIGH.fetch_max(i + 1, AcqRel);
            MY_SLOT.set(i as u32);
            register_thread_exit(i);
        }
        None => MY_SLOT.set(OVERFLOW),
    }
}

extern "C" fn release_slot(value: *mut libc::c_void) {
    let idx = value as usize - 1;
    // Calls made by later thread destructors use the overflow counters.
    MY_SLOT.set(OVERFLOW);
    if idx < NSLOTS {
        SLOTS[idx].capture.store(false, Relaxed);
        SLOTS[idx].claimed.store(false, Release);
    }
}

fn register_thread_exit(idx: usize) {
    let mut key = KEY.load(Acquire);
    if key == u32::MAX {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: `k` is a valid out-pointer; `release_slot` matches the
        // destructor signature. Creating one key is cheap and never allocates.
        if unsafe { libc::pthread_key_create(&mut k, Some(release_slot)) } != 0 {
            return;
        }
        key = match KEY.compare_exchange(u32::MAX, k, AcqRel, Acquire) {
            Ok(_) => k,
            Err(existing) => {
                // SAFETY: `k` was created above and never handed out.
                unsafe { libc::pthread_key_delete(k) };
                existing
            }
        };
    }
    // SAFETY: `key` is a live key; the value encodes the slot index + 1 so it
    // is never NULL (NULL values get no destructor call).
    unsafe { libc::pthread_setspecific(key, (idx + 1) as *const libc::c_void) };
}

/// Library constructor work: decide whether hooks may rely on membarrier.
pub fn init() {
    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};
    let q = membarrier_query();
    if q.contains(MembarrierQuery::PRIVATE_EXPEDITED)
        && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
    {
        HOOKS_FENCE.store(false, SeqCst);
    }
}

/// A barrier on every thread of the process (or nothing needed, when hooks
/// fence themselves).
fn process_barrier() {
    fence(SeqCst);
    if !HOOKS_FENCE.load(SeqCst) {
        // Registered in the constructor, so this cannot fail for want of it.
        let _ = rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited);
    }
    fence(SeqCst);
}

/// In the child of fork(): other threads are gone, and so is their state.
pub fn after_fork_child() {
    CAPTURING.store(false, SeqCst);
    FROZEN.store(false, SeqCst);
    let mine = (MY_SLOT.get() & !INSIDE) as usize;
    for (i, slot) in SLOTS.iter().enumerate().take(SLOTS_HIGH.load(Relaxed)) {
        if i != mine {
            slot.capture.store(false, Relaxed);
            slot.claimed.store(false, Relaxed);
            slot.seq.store(0, Relaxed);
        }
    }
    OVERFLOW_INFLIGHT.store(0, Relaxed);
    OVERFLOW_CAPTURE.store(0, Relaxed);
}

/// A thread that stayed inside a file operation too long for capture to start.
#[derive(Debug)]
pub struct Stuck {
    pub what: i32,
    pub waited: Duration,
}

/// Turn capture on, then wait for every call that began before and may still
/// change a file. A call blocked on something other than a regular file (a
/// socket, a pipe) cannot change a file and is not waited for.
pub fn start_capture(timeout: Duration) -> Result<(), Stuck> {
    CAPTURING.store(true, SeqCst);
    process_barrier();
    let high = SLOTS_HIGH.load(Acquire);
    let pending: Vec<(usize, u64)> = (0..high)
        .filter_map(|i| {
            let seq = SLOTS[i].seq.load(Acquire);
            (seq % 2 == 1 && SLOTS[i].what.load(Relaxed) != KIND_NO_CHANGE).then_some((i, seq))
        })
        .collect();
    let began = Instant::now();
    for (i, seq) in pending {
        let mut checked_fd = false;
        while SLOTS[i].seq.load(Acquire) == seq {
            let what = SLOTS[i].what.load(Relaxed);
            if !checked_fd && began.elapsed() > Duration::from_millis(20) && what >= 0 {
                checked_fd = true;
                if !is_regular_file(what) {
                    break;
                }
            }
            if began.elapsed() > timeout {
                stop_capture();
                return Err(Stuck {
                    what,
                    waited: began.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let mut spins = 0u64;
    while OVERFLOW_INFLIGHT.load(SeqCst) != 0 {
        if began.elapsed() > timeout {
            stop_capture();
            return Err(Stuck {
                what: KIND_PATH,
                waited: began.elapsed(),
            });
        }
        spins += 1;
        std::thread::sleep(Duration::from_micros(50 * spins.min(20)));
    }
    Ok(())
}

fn is_regular_file(fd: i32) -> bool {
    matches!(crate::sys::file_id(crate::sys::borrow(fd)), Ok(Some(_)))
}

/// Turn capture off and wait until no hook is mirroring any more. After this
/// returns no hook touches the session.
pub fn stop_capture() {
    CAPTURING.store(false, SeqCst);
    process_barrier();
    wait_for_mirrors();
}

/// Hold every change to a file still while capture is on: a hook that
/// would mirror waits in `begin_capture` until `thaw`, and the ones
/// mirroring already have finished when this returns. The trees and their
/// copies then stand still together (the snapshot check compares them).
pub fn freeze() {
    FROZEN.store(true, SeqCst);
    process_barrier();
    wait_for_mirrors();
}

pub fn thaw() {
    FROZEN.store(false, SeqCst);
}

fn wait_for_mirrors() {
    let high = SLOTS_HIGH.load(Acquire);
    for slot in SLOTS.iter().take(high) {
        while slot.capture.load(Acquire) {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    while OVERFLOW_CAPTURE.load(SeqCst) != 0 {
        std::thread::sleep(Duration::from_micros(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sequence_is_odd_inside_and_even_after() {
        let g = Gate::enter(5);
        let idx = (MY_SLOT.get() & !INSIDE) as usize;
        assert!(idx < NSLOTS);
        assert_eq!(SLOTS[idx].seq.load(Relaxed) % 2, 1);
        assert_eq!(SLOTS[idx].what.load(Relaxed), 5);
        // A hook reached from inside this one leaves the slot alone.
        let inner = Gate::enter(7);
        assert_eq!(SLOTS[idx].seq.load(Relaxed) % 2, 1);
        assert_eq!(SLOTS[idx].what.load(Relaxed), 5);
        assert!(!inner.capturing());
        drop(inner);
        assert_eq!(SLOTS[idx].seq.load(Relaxed) % 2, 1);
        drop(g);
        assert_eq!(SLOTS[idx].seq.load(Relaxed) % 2, 0);
    }

    #[test]
    fn live_threads_get_distinct_slots() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    drop(Gate::enter(1));
                    b.wait();
                    MY_SLOT.get()
                })
            })
            .collect();
        let mut idx: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(idx.iter().all(|&i| (i as usize) < NSLOTS));
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 8, "threads alive together share no slot");
    }
}
