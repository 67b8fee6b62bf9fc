//! What the backup holds, for the person (or script) restoring it.
//!
//! `backup-manifest.json` names each subdirectory's original path, the
//! versions, times, size and the binary log position; `tokubackup_binlog_info`
//! repeats the position in Percona's format. The marker `BACKUP-COMPLETE` is
//! written last; `BACKUP-INCOMPLETE` is there from the start until then, and
//! says why when a backup failed.

use crate::binlog::Position;
use crate::error::Failure;
use crate::layout::SourceDir;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MANIFEST: &str = "backup-manifest.json";
pub const BINLOG_INFO: &str = "tokubackup_binlog_info";
pub const COMPLETE: &str = "BACKUP-COMPLETE";
pub const INCOMPLETE: &str = "BACKUP-INCOMPLETE";

pub struct Manifest<'a> {
    pub dirs: &'a [SourceDir],
    pub server_version: &'a str,
    pub library_version: &'a str,
    pub started: SystemTime,
    pub snapshot: Option<SystemTime>,
    pub finished: SystemTime,
    pub bytes: u64,
    pub binlog: Option<&'a Position>,
    pub exclude: Option<&'a str>,
}

/// RFC 3339 UTC, e.g. 2024-05-01T12:00:00.123Z.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl Manifest<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": "tokudb_backup-manifest-1",
            "plugin_version": env!("CARGO_PKG_VERSION"),
            "library_version": self.library_version,
            "server_version": self.server_version,
            "started_at": rfc3339(self.started),
            "snapshot_at": self.snapshot.map(rfc3339),
            "finished_at": rfc3339(self.finished),
            "bytes": self.bytes,
            "exclude": self.exclude,
            "directories": self.dirs.iter().map(|d| serde_json::json!({
                "subdirectory": d.subdir,
                "original_path": d.path,
                "setting": d.role,
            })).collect::<Vec<_>>(),
            "binlog": self.binlog.map(|b| serde_json::json!({
                "file": b.file,
                "position": b.position,
                "gtid_position": b.gtid,
            })),
        })
    }
}

/// Writes `name` in `dir` durably (write, fsync file, fsync directory).
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), Failure> {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).map_err(|e| Failure::io("cannot create", &p, &e))?;
    f.write_all(contents)
        .map_err(|e| Failure::io("cannot write", &p, &e))?;
    f.sync_all()
        .map_err(|e| Failure::io("cannot fsync", &p, &e))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), Failure> {
    let d = std::fs::File::open(dir).map_err(|e| Failure::io("cannot open", dir, &e))?;
    d.sync_all()
        .map_err(|e| Failure::io("cannot fsync", dir, &e))
}

/// Total size of the regular files under `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.789Z");
    }
}
