//! One error of a backup: an errno and a message naming the path and cause.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub errno: i32,
    pub message: String,
}

impl Failure {
    pub fn new(errno: i32, message: impl Into<String>) -> Failure {
        Failure {
            errno,
            message: message.into(),
        }
    }

    /// From an io::Error on `path` while doing `what`.
    pub fn io(what: &str, path: &std::path::Path, e: &std::io::Error) -> Failure {
        Failure::new(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("{what} '{}': {e}", path.display()),
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
