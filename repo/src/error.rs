//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// What went wrong, with the object, file or repository it concerns.
#[derive(Debug)]
pub enum Error {
    /// A repository address that cannot be used (`s3://bucket/prefix` or a path).
    Location(String),
    /// Reading or writing a local file or directory.
    Io(PathBuf, std::io::Error),
    /// The object store refused or failed a request.
    Store(String, object_store::Error),
    /// No repository (no `config` object) at the address.
    NoRepository(String),
    /// The key does not open this repository.
    WrongKey(String),
    /// An object is missing or fails authentication (changed in the store).
    Damaged(String),
    /// An unknown snapshot id.
    NoSnapshot(String),
    /// A request the caller must change (bad policy, non-empty restore target...).
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Location(m) | Error::Damaged(m) | Error::Refused(m) => f.write_str(m),
            Error::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Error::Store(what, e) => write!(f, "{what}: {e}"),
            Error::NoRepository(r) => write!(
                f,
                "{r}: no repository here (no config object); push creates one"
            ),
            Error::WrongKey(r) => write!(
                f,
                "{r}: the key does not open this repository (wrong key file?)"
            ),
            Error::NoSnapshot(id) => write!(f, "no backup {id} in the repository"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(_, e) => Some(e),
            Error::Store(_, e) => Some(e),
            _ => None,
        }
    }
}

/// `map_err` helper for local I/O.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |e| Error::Io(path, e)
}
