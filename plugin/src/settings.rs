//! Where the server keeps its files: read from the running server.
//!
//! MariaDB answers every setting (`@@innodb_undo_directory`,
//! `@@aria_log_dir_path`, ...) and the paths of tablespaces created with
//! DATA DIRECTORY in SQL (`sql`). MySQL 5.7 and 8.0 are read through their
//! exported variables: the datadir, the binary log, the pid file, the
//! socket and InnoDB's directories (`srv_*`, `char *` in 5.7 and 8.0); the
//! tablespace files outside them come from SQL (INFORMATION_SCHEMA.FILES,
//! through the srv_session and command services) and from 5.7's `.isl`
//! files in the datadir (8.0.21 and later create DATA DIRECTORY tablespaces
//! only in innodb_directories).

use crate::abi::Thd;
use crate::error::Failure;
use crate::server::{self, char_array, lookup};
use crate::sql::Local;
use std::ffi::c_char;
use std::path::{Path, PathBuf};

/// The server's files and identity.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub datadir: PathBuf,
    pub innodb_data_home_dir: Option<PathBuf>,
    pub innodb_log_group_home_dir: Option<PathBuf>,
    pub innodb_undo_directory: Option<PathBuf>,
    pub log_bin: bool,
    pub log_bin_basename: Option<PathBuf>,
    pub log_bin_index: Option<PathBuf>,
    pub aria_log_dir: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub server_version: String,
    /// Files of InnoDB tablespaces outside the datadir (DATA DIRECTORY).
    pub remote_files: Vec<PathBuf>,
    /// innodb_directories (MySQL 8.0): where its DATA DIRECTORY tablespaces are.
    pub innodb_directories: Vec<PathBuf>,
}

/// Paths in settings are relative to the datadir (the server chdir()s there).
fn abs(datadir: &Path, v: Option<String>) -> Option<PathBuf> {
    let v = v.filter(|s| !s.is_empty())?;
    let p = Path::new(&v);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        datadir.join(p)
    })
}

#[cfg(feature = "mariadb")]
pub fn read(_thd: Thd) -> Result<Settings, Failure> {
    match Local::open() {
        Ok(l) => read_sql(&l),
        Err(_) => read_symbols(),
    }
}

/// MySQL: the variables, and the tablespace files SQL and `.isl` files
/// name. Without SQL the backup still runs, with a warning in the error
/// log: tablespaces outside every known directory that no `.isl` file
/// names (8.0.20 and earlier) would be missing from it.
#[cfg(not(feature = "mariadb"))]
pub fn read(thd: Thd) -> Result<Settings, Failure> {
    let mut s = read_symbols()?;
    match Local::open(thd).and_then(|l| tablespace_files(&l, &s.datadir)) {
        Ok(files) => {
            for f in files {
                if !s.remote_files.contains(&f) {
                    s.remote_files.push(f);
                }
            }
        }
        Err(e) => server::log_line(
            "Warning",
            &format!(
                "cannot list the InnoDB tablespace files in SQL ({}); the backup takes \
                 the server's directories and the tablespaces its .isl files name",
                e.message
            ),
        ),
    }
    Ok(s)
}

/// Query of the InnoDB tablespace files outside the datadir (5.7.8 and 8.0).
#[cfg(not(feature = "mariadb"))]
pub const TABLESPACE_FILES: &str =
    "SELECT FILE_NAME FROM INFORMATION_SCHEMA.FILES WHERE ENGINE = 'InnoDB' AND FILE_NAME LIKE '/%'";

#[cfg(not(feature = "mariadb"))]
fn tablespace_files(l: &Local, datadir: &Path) -> Result<Vec<PathBuf>, Failure> {
    Ok(l.query(TABLESPACE_FILES)?
        .into_iter()
        .filter_map(|r| abs(datadir, r.into_iter().next().flatten()))
        .collect())
}

#[cfg(feature = "mariadb")]
fn read_sql(l: &Local) -> Result<Settings, Failure> {
    let datadir = l
        .var("datadir")
        .map(PathBuf::from)
        .ok_or_else(|| Failure::new(libc::EIO, "cannot read @@datadir from the server"))?;
    let d = &datadir;
    let log_bin = l
        .var("log_bin")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("on"))
        .unwrap_or(false);
    let remote_files = l
        .query("SELECT FILENAME FROM information_schema.INNODB_SYS_TABLESPACES WHERE FILENAME LIKE '/%'")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(PathBuf::from)
        .collect();
    Ok(Settings {
        innodb_data_home_dir: abs(d, l.var("innodb_data_home_dir")),
        innodb_log_group_home_dir: abs(d, l.var("innodb_log_group_home_dir")),
        innodb_undo_directory: abs(d, l.var("innodb_undo_directory")),
        log_bin,
        log_bin_basename: if log_bin {
            abs(d, l.var("log_bin_basename"))
        } else {
            None
        },
        log_bin_index: if log_bin {
            abs(d, l.var("log_bin_index"))
        } else {
            None
        },
        aria_log_dir: abs(d, l.var("aria_log_dir_path")),
        pid_file: abs(d, l.var("pid_file")),
        socket: abs(d, l.var("socket")),
        server_version: l.var("version").unwrap_or_default(),
        remote_files,
        innodb_directories: Vec::new(),
        datadir,
    })
}

/// Reads a `char *name` data symbol of the server.
fn char_ptr(name: &str) -> Option<String> {
    let p = lookup(name) as *const *const c_char;
    if p.is_null() {
        return None;
    }
    // SAFETY: the symbol is a `char *` variable holding null or a string.
    unsafe { server::c_to_string(*p) }.filter(|s| !s.is_empty())
}

fn read_symbols() -> Result<Settings, Failure> {
    let datadir = char_array("mysql_real_data_home")
        .map(PathBuf::from)
        .ok_or_else(|| Failure::new(libc::ENOSYS, "cannot find the server's datadir"))?;
    let d = &datadir;
    let basename = abs(d, char_ptr("log_bin_basename"));
    let index = abs(d, char_ptr("log_bin_index"))
        .or_else(|| basename.as_ref().map(|b| b.with_extension("index")));
    let innodb_directories = char_ptr("srv_innodb_directories")
        .map(|v| {
            v.split(';')
                .filter_map(|p| abs(d, Some(p.trim().to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Settings {
        innodb_data_home_dir: abs(d, char_ptr("srv_data_home")),
        innodb_log_group_home_dir: abs(d, char_ptr("srv_log_group_home_dir")),
        innodb_undo_directory: abs(d, char_ptr("srv_undo_dir")),
        log_bin: basename.is_some(),
        log_bin_index: index,
        log_bin_basename: basename,
        pid_file: abs(d, char_array("pidfile_name")),
        socket: abs(d, char_ptr("mysqld_unix_port")),
        server_version: server::version().unwrap_or_default(),
        remote_files: isl_targets(d),
        innodb_directories,
        datadir,
        ..Settings::default()
    })
}

/// The tablespace files that `.isl` files in the datadir's database
/// directories point to (InnoDB of MySQL 5.7 writes one per DATA DIRECTORY
/// table: the .ibd's path, as text).
fn isl_targets(datadir: &Path) -> Vec<PathBuf> {
    let Ok(dbs) = std::fs::read_dir(datadir) else {
        return Vec::new();
    };
    dbs.flatten()
        .filter(|db| db.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|db| std::fs::read_dir(db.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "isl"))
        .filter_map(|f| std::fs::read_to_string(f.path()).ok())
        .map(|t| PathBuf::from(t.trim_end_matches(['\n', '\r', '\0'])))
        .filter(|p| p.is_absolute())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isl_files_name_the_remote_tablespaces() {
        let d = std::env::temp_dir().join(format!("tokudb_backup_isl_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("db1")).unwrap();
        std::fs::write(d.join("db1/t1.isl"), "/ext/db1/t1.ibd").unwrap();
        std::fs::write(d.join("db1/t2.isl"), "relative/t2.ibd\n").unwrap();
        std::fs::write(d.join("db1/t3.frm"), "/not/a/path").unwrap();
        assert_eq!(isl_targets(&d), vec![PathBuf::from("/ext/db1/t1.ibd")]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
