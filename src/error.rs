//! The engine's one error type: the errno, what was being done, to which
//! path, and on which side of the backup - the application's source trees
//! or the destinations. A backup that fails reports these to the caller's
//! error callback, one message each.

use rustix::io::Errno;
use std::fmt;
use std::path::PathBuf;

/// Where an error happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// Reading the source trees (or the application's files).
    Source,
    /// Creating or writing a destination.
    Destination,
    /// Neither: the arguments, the process, the library itself.
    Engine,
}

#[derive(Clone, Debug)]
enum What {
    /// `op` on `path` failed with the errno: "op path: strerror".
    Op { op: &'static str, path: PathBuf },
    /// A sentence of its own (it names the path and the cause itself).
    Text(String),
}

#[derive(Clone, Debug)]
pub struct Error {
    errno: i32,
    side: Side,
    what: What,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// `op` failed on `path` (of `side`) with `e`.
    pub fn op(side: Side, op: &'static str, path: impl Into<PathBuf>, e: Errno) -> Error {
        Error {
            errno: e.raw_os_error(),
            side,
            what: What::Op {
                op,
                path: path.into(),
            },
        }
    }

    /// `op` failed on a source path.
    pub fn source(op: &'static str, path: impl Into<PathBuf>, e: Errno) -> Error {
        Error::op(Side::Source, op, path, e)
    }

    /// `op` failed on a destination path.
    pub fn dest(op: &'static str, path: impl Into<PathBuf>, e: Errno) -> Error {
        Error::op(Side::Destination, op, path, e)
    }

    /// An error described by a sentence of its own.
    pub fn text(side: Side, errno: i32, text: impl Into<String>) -> Error {
        Error {
            errno,
            side,
            what: What::Text(text.into()),
        }
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }

    pub fn side(&self) -> Side {
        self.side
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::Op { op, path } => write!(
                f,
                "{op} {}: {}",
                path.display(),
                crate::sys::strerror(Errno::from_raw_os_error(self.errno))
            ),
            What::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_names_its_path_and_cause() {
        let e = Error::dest("write", "/backup/db/t.ibd", Errno::NOSPC);
        assert_eq!(e.errno(), libc::ENOSPC);
        assert_eq!(e.side(), Side::Destination);
        assert_eq!(
            e.to_string(),
            "write /backup/db/t.ibd: No space left on device (os error 28)"
        );
        let t = Error::text(Side::Engine, libc::EIO, "internal error");
        assert_eq!(
            (t.errno(), t.to_string()),
            (libc::EIO, "internal error".into())
        );
    }
}
