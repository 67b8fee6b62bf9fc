//! Which server directories go where in the backup.
//!
//! The datadir goes to `mysql_data_dir/`; every other directory the server
//! writes and a restore needs gets its own sibling subdirectory, named after
//! the setting it comes from (Percona's plugin used `mysql_log_bin/` etc.).

use crate::error::Failure;
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// One source directory and its place in the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDir {
    /// Setting it comes from, for the manifest.
    pub role: String,
    /// Subdirectory of the destination.
    pub subdir: String,
    /// Canonical path of the source.
    pub path: PathBuf,
}

fn canonical(p: &Path) -> Result<PathBuf, Failure> {
    std::fs::canonicalize(p).map_err(|e| Failure::io("cannot resolve server directory", p, &e))
}

/// Directories of tables created with DATA DIRECTORY / INDEX DIRECTORY by
/// MyISAM and Aria: symbolic links in the datadir's database directories.
fn symlinked_table_dirs(datadir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dbs) = std::fs::read_dir(datadir) else {
        return out;
    };
    for db in dbs.flatten() {
        if !db.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(db.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                if let Ok(target) = std::fs::canonicalize(f.path()) {
                    if let Some(parent) = target.parent() {
                        out.push(parent.to_path_buf());
                    }
                }
            }
        }
    }
    out
}

/// The source directories of a backup, datadir first, none inside another.
pub fn plan(s: &Settings) -> Result<Vec<SourceDir>, Failure> {
    let datadir = canonical(&s.datadir)?;
    let mut wanted: Vec<(String, String, PathBuf)> =
        vec![("datadir".into(), "mysql_data_dir".into(), datadir.clone())];
    let mut add = |role: &str, subdir: &str, p: &Option<PathBuf>| {
        if let Some(p) = p {
            wanted.push((role.into(), subdir.into(), p.clone()));
        }
    };
    add(
        "innodb_data_home_dir",
        "innodb_data_home_dir",
        &s.innodb_data_home_dir,
    );
    add(
        "innodb_log_group_home_dir",
        "innodb_log_dir",
        &s.innodb_log_group_home_dir,
    );
    add(
        "innodb_undo_directory",
        "innodb_undo_dir",
        &s.innodb_undo_directory,
    );
    let binlog_dir = s
        .log_bin_basename
        .as_ref()
        .and_then(|b| b.parent().map(Path::to_path_buf));
    add("log_bin_basename", "mysql_log_bin", &binlog_dir);
    let index_dir = s
        .log_bin_index
        .as_ref()
        .and_then(|b| b.parent().map(Path::to_path_buf));
    add("log_bin_index", "mysql_log_bin_index", &index_dir);
    add("aria_log_dir_path", "aria_log_dir", &s.aria_log_dir);
    let mut remote: Vec<PathBuf> = s
        .remote_files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    remote.extend(symlinked_table_dirs(&datadir));
    remote.extend(s.innodb_directories.iter().cloned());
    for r in remote {
        wanted.push(("data_directory".into(), String::new(), r));
    }

    let mut out: Vec<SourceDir> = Vec::new();
    let mut n_remote = 0;
    for (role, subdir, p) in wanted {
        let Ok(c) = std::fs::canonicalize(&p) else {
            // A setting naming a directory that does not exist holds no files.
            continue;
        };
        if out.iter().any(|o| c.starts_with(&o.path)) {
            continue;
        }
        if let Some(o) = out.iter().find(|o| o.path.starts_with(&c)) {
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "server directory '{}' ({role}) contains '{}' ({}): nested source directories are not supported",
                    c.display(),
                    o.path.display(),
                    o.role
                ),
            ));
        }
        let subdir = if subdir.is_empty() {
            n_remote += 1;
            format!("data_directory_{n_remote}")
        } else {
            subdir
        };
        out.push(SourceDir {
            role,
            subdir,
            path: c,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_inside_the_datadir_are_not_repeated_and_others_get_subdirs() {
        let d = std::env::temp_dir().join(format!("tokudb_backup_layout_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for sub in ["data/db", "binlogs", "undo", "ext/db"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let s = Settings {
            datadir: d.join("data"),
            innodb_log_group_home_dir: Some(d.join("data/.")),
            innodb_undo_directory: Some(d.join("undo")),
            log_bin_basename: Some(d.join("binlogs/mysql-bin")),
            log_bin_index: Some(d.join("binlogs/mysql-bin.index")),
            remote_files: vec![d.join("ext/db/t.ibd")],
            ..Settings::default()
        };
        let p = plan(&s).unwrap();
        let names: Vec<&str> = p.iter().map(|s| s.subdir.as_str()).collect();
        assert_eq!(
            names,
            [
                "mysql_data_dir",
                "innodb_undo_dir",
                "mysql_log_bin",
                "data_directory_1"
            ]
        );
        assert_eq!(p[3].path, std::fs::canonicalize(d.join("ext/db")).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
