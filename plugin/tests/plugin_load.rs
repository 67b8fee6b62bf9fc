//! Loading the plugin: INSTALL PLUGIN and plugin-load-add under both names,
//! a server without the library, a library of another major version, and
//! tokudb_backup_allowed_prefix given at startup.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn plugin_status(s: &Server) -> String {
    s.sql("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME='tokudb_backup'")
}

#[test]
fn install_and_uninstall_by_sql_under_both_names() {
    let s = Server::start(
        "install",
        Opts {
            install_plugin: false,
            ..Opts::default()
        },
    );
    assert_eq!(plugin_status(&s), "");
    s.sql("INSTALL PLUGIN tokudb_backup SONAME 'tokubackup.so'");
    assert_eq!(plugin_status(&s), "ACTIVE");
    assert_eq!(
        s.sql("SELECT @@tokudb_backup_version"),
        env!("CARGO_PKG_VERSION")
    );
    s.sql("UNINSTALL PLUGIN tokudb_backup");
    assert_eq!(plugin_status(&s), "");
    assert!(s.query("SELECT @@tokudb_backup_version").is_err());
    s.sql("INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'");
    assert_eq!(plugin_status(&s), "ACTIVE");
    // Loaded once more, it still runs backups.
    let dest = scratch("install").join("bk");
    let (res, _, msg) = s.backup("root", "", dest.to_str().unwrap());
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert!(dest.join("BACKUP-COMPLETE").is_file());
    std::fs::remove_dir_all(dest.parent().unwrap()).unwrap();
}

#[test]
fn without_the_library_the_plugin_loads_and_explains_how_to_preload() {
    let s = Server::start(
        "nolib",
        Opts {
            preload: None,
            install_plugin: false,
            extra: vec!["--plugin-load-add=tokubackup.so".into()],
            ..Opts::default()
        },
    );
    assert_eq!(plugin_status(&s), "ACTIVE");
    assert_eq!(s.sql("SELECT @@tokudb_backup_version"), "");
    assert_eq!(
        s.sql("SELECT @@tokudb_backup_plugin_version"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(s
        .log()
        .contains("tokudb_backup: plugin loaded, but backups cannot run"));
    let dest = scratch("nolib").join("bk");
    let (res, errno, msg) = s.backup("root", "", dest.to_str().unwrap());
    let e = res.unwrap_err();
    assert!(e.contains("ERROR 1231"), "{e}");
    assert_eq!(errno, libc::ENOSYS as u64);
    assert!(
        msg.contains("LD_PRELOAD") && msg.contains("libHotBackup"),
        "{msg}"
    );
    assert!(!dest.exists());
    assert!(s
        .log()
        .contains("[ERROR] tokudb_backup: backup failed: libHotBackup is not loaded"));
    std::fs::remove_dir_all(dest.parent().unwrap()).unwrap();
}

/// A stand-in library that claims the next major version: the plugin must
/// refuse it before calling anything.
fn other_major_library(dir: &Path) -> std::path::PathBuf {
    let major: u64 = env!("CARGO_PKG_VERSION")
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let src = dir.join("other_major.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n\
             const char *tokubackup_version_string = \"{}.0.0\";\n\
             int tokubackup_create_backup() {{ abort(); }}\n\
             void tokubackup_throttle_backup(unsigned long b) {{ (void)b; }}\n",
            major + 1
        ),
    )
    .unwrap();
    let so = dir.join("libHotBackup-other-major.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

#[test]
fn library_of_another_major_version_is_refused() {
    let work = scratch("major");
    let fake = other_major_library(&work);
    let s = Server::start(
        "major",
        Opts {
            preload: Some(fake),
            ..Opts::default()
        },
    );
    let dest = work.join("bk");
    let (res, errno, msg) = s.backup("root", "", dest.to_str().unwrap());
    assert!(res.is_err());
    assert_eq!(errno, libc::EPROTO as u64, "{msg}");
    assert!(
        msg.contains("major version differs") && msg.contains(env!("CARGO_PKG_VERSION")),
        "{msg}"
    );
    assert!(!dest.exists());
    assert_eq!(s.sql("SELECT 1"), "1");
    drop(s);
    std::fs::remove_dir_all(&work).unwrap();
}

/// tokudb_backup.so built with TOKUDB_BACKUP_SERVER_VERSION=`version`, as a
/// packager building against another point release would; copied into `dir`.
fn plugin_built_for(version: &str, dir: &Path) -> std::path::PathBuf {
    let target = target_dir().join("other-release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--lib",
            "-p",
            "tokudb_backup",
            "--manifest-path",
        ])
        .arg(repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("TOKUDB_BACKUP_SERVER_VERSION", version)
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build for {version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let so = dir.join(format!("tokudb_backup-{version}.so"));
    std::fs::copy(target.join("debug/libtokudb_backup.so"), &so).unwrap();
    so
}

/// The server refuses a daemon plugin that declares another release than
/// its own: built for the releases before and after the running one, the
/// plugin still loads and backs up; built for another series, it refuses
/// to start with one clear error line.
#[test]
fn plugin_built_for_another_point_release_loads() {
    let work = scratch("releases");
    let s = Server::start(
        "releases",
        Opts {
            install_plugin: false,
            ..Opts::default()
        },
    );
    let running = s.sql("SELECT VERSION()");
    let v: Vec<u32> = running
        .split(['.', '-'])
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    let (major, minor, patch) = (v[0], v[1], v[2]);
    let releases = [patch.max(1) - 1, patch + 1].map(|p| format!("{major}.{minor}.{p}"));
    for release in &releases {
        let so = plugin_built_for(release, &work);
        let name = so.file_name().unwrap().to_str().unwrap();
        std::fs::copy(&so, s.plugin_dir.join(name)).unwrap();
        s.query(&format!("INSTALL PLUGIN tokudb_backup SONAME '{name}'"))
            .unwrap_or_else(|e| panic!("built for {release}, in {running}: {e}"));
        assert_eq!(plugin_status(&s), "ACTIVE", "built for {release}");
        let dest = work.join(format!("bk-{release}"));
        let (res, _, msg) = s.backup("root", "", dest.to_str().unwrap());
        res.unwrap_or_else(|e| panic!("built for {release}: {e} {msg}"));
        assert!(dest.join("BACKUP-COMPLETE").is_file());
        s.sql("UNINSTALL PLUGIN tokudb_backup");
    }

    let other_series = format!("{major}.{}.0", minor + 1);
    let so = plugin_built_for(&other_series, &work);
    let name = so.file_name().unwrap().to_str().unwrap();
    std::fs::copy(&so, s.plugin_dir.join(name)).unwrap();
    let errors = |s: &Server| {
        s.log()
            .lines()
            .filter(|l| l.contains("[ERROR] tokudb_backup:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = errors(&s).len();
    let e = s
        .query(&format!("INSTALL PLUGIN tokudb_backup SONAME '{name}'"))
        .unwrap_err();
    assert!(e.contains("ERROR"), "{e}");
    assert_eq!(plugin_status(&s), "");
    let new = errors(&s).split_off(before);
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].contains(&format!("built for the {major}.{} series", minor + 1))
            && new[0].contains(&running),
        "{}",
        new[0]
    );
    drop(s);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn allowed_prefix_is_enforced_through_symlinks_and_dotdot() {
    let work = std::fs::canonicalize(scratch("prefix")).unwrap();
    let allowed = work.join("allowed");
    let outside = work.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
    let s = Server::start(
        "prefix",
        Opts {
            install_plugin: false,
            extra: vec![
                "--plugin-load-add=tokudb_backup.so".into(),
                format!("--tokudb-backup-allowed-prefix={}", allowed.display()),
            ],
            ..Opts::default()
        },
    );
    assert_eq!(
        s.sql("SELECT @@tokudb_backup_allowed_prefix"),
        allowed.to_str().unwrap()
    );
    for dest in [
        allowed.join("escape/bk"),
        Path::new(&format!("{}/../outside/bk", allowed.display())).to_path_buf(),
        outside.join("bk"),
        Path::new("/tmp/bk-outside-prefix").to_path_buf(),
    ] {
        let (res, errno, msg) = s.backup("root", "", dest.to_str().unwrap());
        assert!(res.is_err(), "{}", dest.display());
        assert_eq!(errno, libc::EPERM as u64, "{}: {msg}", dest.display());
        assert!(msg.contains("tokudb_backup_allowed_prefix"), "{msg}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside the prefix"
    );
    assert!(!Path::new("/tmp/bk-outside-prefix").exists());
    let ok = allowed.join("nightly");
    let (res, _, msg) = s.backup("root", "", ok.to_str().unwrap());
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert!(ok.join("BACKUP-COMPLETE").is_file());
    drop(s);
    std::fs::remove_dir_all(&work).unwrap();
}

/// Without the binary log there is no position to record: no
/// tokubackup_binlog_info, `binlog: null` in the manifest, and the copy
/// starts without log-bin. The session keeps the destination in
/// @@tokudb_backup_dir, as Percona's plugin did.
#[test]
fn backup_without_binary_log() {
    let s = Server::start(
        "nobinlog",
        Opts {
            log_bin: false,
            ..Opts::default()
        },
    );
    load_bank(&s, 1024);
    let dest = scratch("nobinlog-bk").join("bk");
    let (out, err) = s.session(
        "root",
        &format!(
            "SET tokudb_backup_dir='{}';\nSELECT 'DIR', @@tokudb_backup_dir, @@tokudb_backup_last_error;\n",
            dest.display()
        ),
    );
    assert!(!err.contains("ERROR"), "{err}");
    assert!(
        out.contains(&format!("DIR\t{}\t0", dest.display())),
        "{out}"
    );
    assert!(dest.join("BACKUP-COMPLETE").is_file());
    assert!(!dest.join("tokubackup_binlog_info").exists());
    let m = read_manifest(&dest);
    assert!(m["binlog"].is_null(), "{m}");
    drop(s);
    let r = start_restored("nobinlog", &dest);
    verify_bank(&r);
    check_all_tables(&r);
    drop(r);
    std::fs::remove_dir_all(dest.parent().unwrap()).unwrap();
}
