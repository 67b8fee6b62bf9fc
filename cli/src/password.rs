//! Passwords: prompted for on the terminal (echo off) or read from a file.

use crate::error::{Error, Exit, Result};
use std::io::{BufRead, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub fn prompt(what: &str) -> Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            Error::new(
                Exit::Usage,
                format!("cannot prompt for {what} (no terminal: {e}); give it in an option file or a file"),
            )
        })?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios of an open terminal; restored below.
    let old = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(fd, &mut t);
        let old = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        old
    };
    let mut w = &tty;
    let _ = write!(w, "Enter {what}: ");
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    let _ = writeln!(w);
    r.map_err(|e| Error::new(Exit::Usage, format!("cannot read {what}: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The first line of `path`.
pub fn from_file(path: &Path) -> Result<String> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| Error::io(Exit::Usage, "cannot read the password file", path, &e))?;
    Ok(t.lines().next().unwrap_or("").to_string())
}
