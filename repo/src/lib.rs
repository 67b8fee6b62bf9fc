//! tokubackup repositories: backups stored as deduplicated, compressed and
//! client-side encrypted chunks on S3-compatible object storage (or a local
//! directory), each restorable on its own. See repository.rs for the layout.

mod aws_profile;
mod crypto;
mod error;
mod expire;
mod lock;
mod push;
mod repository;
mod restore;
mod snapshot;
mod store;
mod verify;

use std::path::Path;

pub use error::{Error, Result};
pub use expire::{ExpireReport, Policy};
pub use push::PushReport;
pub use repository::{Options, Repo};
pub use restore::RestoreReport;
pub use snapshot::{Entry, Snapshot, SnapshotInfo};
pub use verify::{Problem, VerifyReport};

/// Chunk size of a new repository. Database files change in scattered
/// pages of 16 KiB; smaller chunks store less after a change but cost one
/// object (one request, and the store's metadata for it) each: on Garage,
/// 256 KiB chunks made a push 1.45 times slower than a plain upload, 1 MiB
/// chunks 0.83 times, for 1.5 times the bytes after 1% of the pages changed.
/// See BENCHMARKS.md.
pub const DEFAULT_CHUNK_SIZE: u64 = 1024 * 1024;

/// The environment variable naming the key file when no --key-file is given.
pub const KEY_FILE_ENV: &str = "TOKUBACKUP_KEY_FILE";

/// Byte counts as work proceeds (a progress bar).
pub trait Progress: Sync {
    fn total(&self, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The key (or password) from `key_file`, else from the file named by
/// TOKUBACKUP_KEY_FILE; one trailing newline is not part of it.
pub fn read_key(key_file: Option<&Path>) -> Result<Vec<u8>> {
    let path = match key_file {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(KEY_FILE_ENV)
            .map(Into::into)
            .ok_or_else(|| {
                Error::Refused(format!(
                    "a repository needs a key: give --key-file FILE or set {KEY_FILE_ENV}"
                ))
            })?,
    };
    let mut key = std::fs::read(&path).map_err(error::io(&path))?;
    if key.ends_with(b"\n") {
        key.pop();
    }
    if key.is_empty() {
        return Err(Error::Refused(format!(
            "{}: the key file is empty",
            path.display()
        )));
    }
    Ok(key)
}

impl Repo {
    /// The backups, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        self.rt
            .block_on(async { Ok(self.snapshots().await?.iter().map(Snapshot::info).collect()) })
    }

    /// The full snapshot of `id` (or `latest`).
    pub fn snapshot(&self, id: &str) -> Result<Snapshot> {
        self.rt.block_on(async {
            let id = self.resolve(id).await?;
            self.read_snapshot(&id).await
        })
    }
}
