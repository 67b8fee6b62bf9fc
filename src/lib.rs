//! libHotBackup: hot backup of directories that the process it is loaded
//! into keeps writing. Preloaded (LD_PRELOAD), it interposes the libc
//! functions that change files; `tokubackup_create_backup` copies
//! directories while mirroring every change to the parts already copied, so
//! the destination ends as an exact snapshot of one instant.
//!
//! Module map: `gate` (the idle path), `hooks` (interposed symbols),
//! `boundary` (the panic boundary of every exported function), `real`
//! (the libc functions behind them), `capture` (what a hook does during a
//! backup), `staging` (copies of the bytes being written), `session` (a running backup), `fd_table`, `fd_cache` (the library's own descriptors, bounded), `own_fds` (their numbers, which closefrom spares), `source_file` (and its
//! range locks), `namespace` (names and paths), `copier`, `throttle`, `aio` (which asynchronous I/O is followed or refused), `uring` (io_uring rings followed), `uring_pool` (the threads that run their operations), `liburing` (its layout and numbers), `api`
//! (the C API), `verify` (the snapshot check), `sys` (the library's own
//! raw I/O).

#![allow(non_snake_case)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod aio;
mod api;
mod boundary;
mod capture;
mod copier;
mod fd_cache;
mod fd_table;
mod gate;
mod hooks;
mod liburing;
mod logging;
mod namespace;
mod own_fds;
mod real;
mod session;
mod source_file;
mod staging;
mod sys;
mod throttle;
mod uring;
mod uring_pool;
mod verify;

// The constructor and the fork handler are called from C too: behind the
// panic boundary like the exported functions (gate.rs's thread-exit
// destructor only stores two flags, and gate cannot use `boundary`, which
// builds on it).
extern "C" fn after_fork_child() {
    boundary::boundary!(
        "after_fork_child",
        |_made| {
            own_fds::after_fork_child();
            gate::after_fork_child();
            session::forget_after_fork();
            api::after_fork_child();
            uring_pool::after_fork_child();
        },
        ()
    )
}

extern "C" fn init() {
    boundary::boundary!(
        "init",
        |_made| {
            gate::init();
            // SAFETY: registering a plain function as the fork child handler.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
        },
        ()
    )
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
