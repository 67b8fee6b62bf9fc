//! Option files, read as the `mariadb` client reads them: /etc/my.cnf,
//! /etc/mysql/my.cnf, $MARIADB_HOME/my.cnf (else $MYSQL_HOME), then
//! --defaults-extra-file, then ~/.my.cnf; or only --defaults-file; or none
//! (--no-defaults). `!include FILE` and `!includedir DIR` (every `*.cnf` in
//! it, in name order) are followed. The lines of the groups [client],
//! [client-server], [client-mariadb] and [tokubackup] are kept in reading
//! order (a later line wins) and handed to libmariadb, which interprets them
//! as its own options. libmariadb's own reader is not used for the files: it
//! reads only DIR/my.cnf of an `!includedir DIR`, so it misses Debian's
//! /etc/mysql/mariadb.conf.d/50-client.cnf.

use crate::error::{Error, Exit, Result};
use std::path::{Path, PathBuf};

/// The groups read, as the mariadb client's plus our own.
pub const GROUPS: [&str; 4] = ["client", "client-server", "client-mariadb", "tokubackup"];

/// Which files to read.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub defaults_file: Option<PathBuf>,
    pub extra_file: Option<PathBuf>,
    pub no_defaults: bool,
}

/// The lines of `GROUPS` from the files `s` names, in reading order.
pub fn collect(s: &Sources) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if s.no_defaults {
        return Ok(out);
    }
    if let Some(f) = &s.defaults_file {
        read_file(f, true, 0, &mut out)?;
        return Ok(out);
    }
    let mut files = vec![
        PathBuf::from("/etc/my.cnf"),
        PathBuf::from("/etc/mysql/my.cnf"),
    ];
    if let Some(h) = std::env::var_os("MARIADB_HOME").or_else(|| std::env::var_os("MYSQL_HOME")) {
        files.push(Path::new(&h).join("my.cnf"));
    }
    for f in &files {
        read_file(f, false, 0, &mut out)?;
    }
    if let Some(f) = &s.extra_file {
        read_file(f, true, 0, &mut out)?;
    }
    if let Some(h) = std::env::var_os("HOME") {
        read_file(&Path::new(&h).join(".my.cnf"), false, 0, &mut out)?;
    }
    Ok(out)
}

fn unreadable(path: &Path, e: &std::io::Error) -> Error {
    Error::io(Exit::Usage, "cannot read the option file", path, e)
}

/// Appends the lines of `GROUPS` in `path` (and the files it includes).
/// A missing file is skipped unless `required`.
fn read_file(path: &Path, required: bool, depth: u32, out: &mut Vec<String>) -> Result<()> {
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unreadable(path, &e)),
    };
    if depth > 10 {
        return Err(Error::new(
            Exit::Usage,
            format!("option file '{}': !include nested too deep", path.display()),
        ));
    }
    let mut keep = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("!includedir") {
            for f in cnf_files(Path::new(rest.trim()))? {
                read_file(&f, true, depth + 1, out)?;
            }
        } else if let Some(rest) = l.strip_prefix("!include") {
            read_file(Path::new(rest.trim()), true, depth + 1, out)?;
        } else if let Some(g) = l.strip_prefix('[') {
            let name = g.split(']').next().unwrap_or("").trim();
            keep = GROUPS.contains(&name);
        } else if keep && !l.is_empty() && !l.starts_with(['#', ';']) {
            out.push(l.to_string());
        }
    }
    Ok(())
}

/// The `*.cnf` files of `dir`, in name order (an absent directory has none,
/// as for the mariadb client).
fn cnf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(dir, &e)),
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cnf") && p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_includes_and_order() {
        let d = std::env::temp_dir().join(format!("tb-options-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("conf.d")).unwrap();
        std::fs::write(d.join("conf.d/b.cnf"), "[client-mariadb]\nuser=b\n").unwrap();
        std::fs::write(
            d.join("conf.d/a.cnf"),
            "[mysqld]\nuser=no\n[client]\nuser=a\n",
        )
        .unwrap();
        std::fs::write(d.join("conf.d/c.txt"), "[client]\nuser=not-cnf\n").unwrap();
        std::fs::write(d.join("inc.cnf"), "[tokubackup]\npassword = \"x y\"\n").unwrap();
        let main = d.join("main.cnf");
        std::fs::write(
            &main,
            format!(
                "# c\n[client-server]\nsocket=/s\n\n[mysql]\nuser=mysql-only\n!includedir {}\n!include {}\n",
                d.join("conf.d").display(),
                d.join("inc.cnf").display()
            ),
        )
        .unwrap();
        let s = Sources {
            defaults_file: Some(main),
            ..Sources::default()
        };
        assert_eq!(
            collect(&s).unwrap(),
            ["socket=/s", "user=a", "user=b", "password = \"x y\""]
        );
        let missing = Sources {
            defaults_file: Some(d.join("none.cnf")),
            ..Sources::default()
        };
        let e = collect(&missing).unwrap_err();
        assert!(e.message.contains("none.cnf"), "{}", e.message);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
