//! A backup never runs on orphaned: a guard process, forked before any
//! thread starts, holds a pipe from tokubackup. If tokubackup dies while a
//! backup runs (even by SIGKILL, which nothing can catch) the pipe ends
//! without "done", and the guard stops the backup with `KILL QUERY` on a
//! connection of its own.

use crate::error::{Error, Exit, Result};
use crate::mariadb::{Conn, ConnectOptions};
use std::io::{Read, Write};
use std::os::unix::io::FromRawFd;

pub struct Guard {
    pipe: Option<std::fs::File>,
    pid: libc::pid_t,
}

/// Forks the guard. Call while the process has one thread.
pub fn start(opts: &ConnectOptions) -> Result<Guard> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::new(
            Exit::Usage,
            format!("pipe: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: the process has a single thread here, so the child may run
    // any code; it leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::new(
            Exit::Usage,
            format!("fork: {}", std::io::Error::last_os_error()),
        ));
    }
    if pid == 0 {
        // SAFETY: fds[0] is our read end; fds[1] the parent's, closed here.
        let r = unsafe {
            libc::close(fds[1]);
            std::fs::File::from_raw_fd(fds[0])
        };
        watch(r, opts);
        // SAFETY: leaves the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: fds[1] is our write end; fds[0] the child's, closed here.
    let w = unsafe {
        libc::close(fds[0]);
        std::fs::File::from_raw_fd(fds[1])
    };
    Ok(Guard { pipe: Some(w), pid })
}

/// The guard's life: the id of the backup's connection, then "done" or EOF.
fn watch(mut r: std::fs::File, opts: &ConnectOptions) {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: ignoring signals: the guard ends when its pipe does.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut text = String::new();
    let _ = r.read_to_string(&mut text);
    let mut id = None;
    for line in text.lines() {
        match line {
            "done" => return,
            l => id = l.parse::<u64>().ok(),
        }
    }
    if let Some(id) = id {
        if let Ok(mut c) = Conn::connect(opts) {
            let _ = c.query(&format!("KILL QUERY {id}"));
        }
    }
}

impl Guard {
    /// The backup runs on connection `id` from now on.
    pub fn arm(&mut self, id: u64) {
        if let Some(p) = self.pipe.as_mut() {
            let _ = writeln!(p, "{id}");
        }
    }

    /// The backup statement has ended: the guard leaves.
    pub fn disarm(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = writeln!(p, "done");
        }
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}
