//! Capture: what an interposed call does while a backup runs. The real call
//! and its mirror happen under one lock - the byte range of the file for
//! data, the namespace lock for names - so the destination sees changes in
//! the order the source did.
//!
//! Whatever happens to the mirror, the application gets the real call's
//! result and errno. A mirror that fails marks the backup failed; a panic in
//! here is caught and does the same.
//!
//! By concept: `write` (bytes written through a descriptor), `resize`
//! (sizes and allocation), `open` (creating and truncating opens), `names`
//! (renames, links, removals); this module holds what they share: which
//! descriptor writes to which file, and the locks a mirror takes.

use crate::fd_cache::MirrorFds;
use crate::fd_table::FdState;
use crate::gate::Gate;
use crate::session::{self, Session};
use crate::source_file::SourceFile;
use crate::sys;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

mod names;
mod open;
mod resize;
mod write;

pub use names::{names_op, NameOp};
pub use open::open;
pub use resize::{mirror_fallocate, resize_fd, truncate_path};
pub use write::write_to;

/// Run mirror work; a panic fails the backup instead of unwinding into C.
fn guarded(s: &Session, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        s.fail_raw(
            libc::EIO,
            "internal error in libHotBackup while mirroring a change".into(),
        );
    }
}

/// Run the real call, keeping its errno across our own work afterwards.
fn real_call<R>(real: impl FnOnce() -> R) -> (R, libc::c_int) {
    let r = real();
    (r, sys::errno())
}

/// Where a write lands.
#[derive(Clone, Copy)]
pub enum At {
    Offset(u64),
    /// At the descriptor's file offset (write, writev, sendfile).
    Current,
}

/// What a change through a descriptor needs during capture.
enum Target {
    /// A file of the backup: lock, change, mirror (O_APPEND, O_DIRECT).
    Mirror(Arc<SourceFile>, bool, bool),
    /// Nothing to do (a socket, a pipe, a file left out of the backup).
    Plain,
    /// A regular file not (yet) in the trees as of `generation`. If the
    /// generation moves while the call is in flight (the initial walk ends,
    /// or a file enters the trees), the file may have become part of the
    /// backup after we looked, and its changed bytes are copied again.
    Watch(u64),
}

fn target(s: &Session, fd: libc::c_int) -> Target {
    match s.tracked(fd) {
        FdState::Tracked {
            file,
            append,
            direct,
        } if file.in_backup() && !s.failed() => Target::Mirror(file, append, direct),
        FdState::Untracked {
            generation,
            id: Some(_),
        } if !s.failed() => Target::Watch(generation),
        _ => Target::Plain,
    }
}

/// Lock `range` of `file` with the descriptors a mirror needs in hand.
/// They are opened first (the namespace lock precedes range locks); if the
/// copier starts on the file meanwhile, try again.
fn lock_with_fds<'a>(
    s: &Session,
    file: &'a Arc<SourceFile>,
    range: (u64, u64),
    names_held: bool,
) -> (crate::source_file::RangeGuard<'a>, Option<MirrorFds>) {
    loop {
        let fds = match s.mirror_fds(file, names_held) {
            Ok(fds) => fds,
            Err(e) => {
                s.fail(e);
                None
            }
        };
        let guard = file.ranges.lock(range.0, range.1);
        if fds.is_some() || !file.started() || s.failed() {
            return (guard, fds);
        }
    }
}

/// `lock_with_fds` for a change the caller makes to the destination
/// itself: the file's queued writes are in it first (see `write_behind`).
fn lock_settled<'a>(
    s: &Session,
    file: &'a Arc<SourceFile>,
    range: (u64, u64),
    names_held: bool,
) -> (crate::source_file::RangeGuard<'a>, Option<MirrorFds>) {
    let locked = lock_with_fds(s, file, range, names_held);
    s.write_behind.settle(file);
    locked
}

fn describe(s: &Session, file: &SourceFile) -> String {
    file.current_name()
        .map(|n| s.src_path(&n).display().to_string())
        .unwrap_or_else(|| format!("inode {}", file.ino))
}

fn forget_fd(s: &Session, fd: libc::c_int) {
    if fd >= 0 {
        s.fds.forget(fd);
    }
}

/// A descriptor number changes meaning (close, dup2 onto it, fcntl F_SETFL).
#[inline(never)]
pub fn forget(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        forget_fd(s, fd);
    }
}

#[inline(never)]
pub fn forget_range(gate: &Gate, first: u32, last: u32) {
    if let Some((_capture, s)) = session::enter(gate) {
        s.fds.forget_range(first, last);
    }
}

/// A shared writable mapping of a file being backed up: stores through it
/// bypass every hook, so the backup cannot be exact and is failed.
#[inline(never)]
pub fn mapped_shared(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        if let Target::Mirror(file, ..) = target(s, fd) {
            s.fail_raw(
                libc::EOPNOTSUPP,
                format!("{} was mapped shared and writable during the backup; stores through a mapping cannot be captured", describe(s, &file)),
            );
        }
    }
}
