//! The one error type of tokubackup: a message and the exit status that
//! tells its kind (documented in `tokubackup --help` and the man page).

use std::fmt;

/// Exit statuses; each has one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Bad arguments or input given on the command line (a --map path not in
    /// the manifest, an unreadable password file).
    Usage = 1,
    /// The server cannot be reached, or refused the login.
    Connect = 2,
    /// The server refused the backup before it began (no privilege, plugin
    /// or library missing, destination refused, another backup running).
    Refused = 3,
    /// The backup began and failed; the destination is marked incomplete.
    BackupFailed = 4,
    /// Interrupted (Ctrl-C, SIGTERM, SIGHUP); a running backup was stopped
    /// on the server and its destination is marked incomplete.
    Interrupted = 5,
    /// Not a usable backup: manifest missing or garbled, or no completion marker.
    NotABackup = 6,
    /// verify: files missing, unlisted, or with another size or checksum.
    Differs = 7,
    /// verify --recover: the server did not recover, or CHECK TABLE failed.
    Recovery = 8,
    /// restore refused: target not empty, a server running on it, another
    /// server version.
    RestoreRefused = 9,
    /// restore failed while writing the target (the partial copy is removed).
    RestoreFailed = 10,
}

pub const EXIT_HELP: &str = "\
EXIT STATUS:
   0  success
   1  bad arguments or input (unknown --map path, unreadable password file)
   2  cannot connect to the server or log in
   3  the server refused the backup (privilege, plugin or library missing,
      destination refused, another backup running)
   4  the backup failed on the server (destination marked incomplete)
   5  interrupted (Ctrl-C, SIGTERM): the backup was stopped on the server
   6  not a usable backup: manifest missing or garbled, no completion marker
   7  verify found differences (missing, unlisted, resized or changed files)
   8  verify --recover: crash recovery or CHECK TABLE failed
   9  restore refused (target not empty, server running on it, version)
  10  restore failed while writing (the partial target was removed)";

#[derive(Debug)]
pub struct Error {
    pub exit: Exit,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(exit: Exit, message: impl Into<String>) -> Error {
        Error {
            exit,
            message: message.into(),
        }
    }

    /// An I/O error doing `what` on `path`.
    pub fn io(exit: Exit, what: &str, path: &std::path::Path, e: &std::io::Error) -> Error {
        Error::new(exit, format!("{what} '{}': {e}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
