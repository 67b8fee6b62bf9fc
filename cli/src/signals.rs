//! SIGINT, SIGTERM and SIGHUP become a flag the long-running loops check
//! (a backup stops on the server, a restore removes its partial copy). They
//! are blocked in every thread and taken by one thread with sigwait, so no
//! code runs in a signal handler.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Call first in main, before any thread starts (threads inherit the mask).
pub fn install() {
    let s = set();
    // SAFETY: blocks the signals in this (the only) thread.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: waits for one of the blocked signals.
        if unsafe { libc::sigwait(&s, &mut sig) } == 0 {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                // A second signal: the user insists.
                eprintln!("tokubackup: interrupted again, exiting");
                std::process::exit(crate::error::Exit::Interrupted as i32);
            }
            eprintln!("tokubackup: interrupted (signal {sig}), stopping");
        }
    });
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
