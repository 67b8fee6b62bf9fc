//! A backup in the repository: its files and the chunks each is made of.
//! Stored sealed as `snapshots/ID`; written only after every chunk it
//! names is stored, so a listed snapshot is always whole.

use serde::{Deserialize, Serialize};

/// One file (or directory) of a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the backup's root, '/'-separated.
    pub path: String,
    pub dir: bool,
    pub mode: u32,
    pub size: u64,
    /// Chunk ids in file order; every chunk but the last is `chunk_size` long.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
}

/// A whole backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The directory that was pushed, as given.
    pub source: String,
    pub host: String,
    pub bytes: u64,
    pub chunk_size: u64,
    pub entries: Vec<Entry>,
}

/// What `list` shows of a snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub time: String,
    pub source: String,
    pub host: String,
    pub files: usize,
    pub bytes: u64,
}

impl Snapshot {
    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            time: self.time.clone(),
            source: self.source.clone(),
            host: self.host.clone(),
            files: self.entries.iter().filter(|e| !e.dir).count(),
            bytes: self.bytes,
        }
    }
}

pub(crate) fn object_name(id: &str) -> String {
    format!("snapshots/{id}")
}

/// Sortable by time, unique across hosts: `20261129T171500.123Z-1a2b3c4d`.
pub(crate) fn new_id() -> String {
    format!(
        "{}-{}",
        // Milliseconds: `latest` is the last in this order, and two pushes
        // a second apart are common (a rerun, a script).
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        crate::crypto::random_hex(4)
    )
}
