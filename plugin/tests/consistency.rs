//! Backups taken while clients run transfers and DDL on InnoDB and Aria
//! tables, with the server's default I/O settings, restored and verified:
//! the copy starts, every table passes CHECK TABLE, the bank's totals hold,
//! every committed transfer is logged exactly once, and the data matches
//! the binary log up to the recorded position.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn backups_under_transfers_and_ddl_restore_consistently() {
    // The library compares the trees with their copies at the snapshot
    // instant (the server's file changes held meanwhile) and fails the
    // backup on any difference: a restore that fails then is the server's
    // recovery, not the copy.
    let (s, mut load) = start_bank_under_load(
        "consistency",
        Opts {
            env: vec![("HOTBACKUP_VERIFY_SNAPSHOT".into(), "1".into())],
            ..Opts::default()
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let base = scratch("consistency-bk");
    let mut backups = Vec::new();
    // A throttled backup (long enough to overlap much DDL) and a fast one.
    for (i, throttle) in [(1, 40_000_000u64), (2, u64::MAX)] {
        let dest = base.join(format!("bk{i}"));
        let (res, errno, msg) = s.backup(
            "root",
            &format!("SET tokudb_backup_throttle={throttle};"),
            dest.to_str().unwrap(),
        );
        res.unwrap_or_else(|e| panic!("backup {i} failed: {e} {msg}\n{}", s.log_tail(20)));
        assert_eq!(errno, 0);
        load.assert_running();
        backups.push(dest);
    }
    load.stop();
    // The workload itself keeps its invariants on the live server.
    verify_bank(&s);
    drop(s);
    for (i, b) in backups.iter().enumerate() {
        assert!(b.join("BACKUP-COMPLETE").is_file());
        let r = start_restored(&format!("consistency-r{i}"), b);
        verify_restored(&format!("backup {}", i + 1), &r, b);
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// Every directory the server writes outside its datadir (InnoDB data home,
/// redo log, undo, binary log, Aria log, DATA DIRECTORY tables of InnoDB and
/// Aria) is in the backup, and restoring each subdirectory to the original
/// path named in the manifest gives a working, consistent server.
#[test]
fn directories_outside_the_datadir_are_backed_up_and_restore_in_place() {
    let work = std::fs::canonicalize(scratch("layout")).unwrap();
    let (outside, extra) = OutsideDirs::installed(&work);
    let opts = Opts {
        log_bin: false, // given with its own directory above
        extra,
        datadir: Some(outside.datadir.clone()),
        ..Opts::default()
    };
    let s = Server::start("layout", opts.clone());
    load_bank_with(&s, 16384, Some(&outside.ext), Some(&outside.ext_aria));
    assert!(
        outside.ext.join("bank/accounts.ibd").is_file()
            && outside.ext_aria.join("aria_ledger.MAD").is_file()
    );
    let mut load = Load::start(&s);
    std::thread::sleep(Duration::from_secs(1));
    let bk = work.join("backup");
    let (res, _, msg) = s.backup(
        "root",
        "SET tokudb_backup_throttle=40000000;",
        bk.to_str().unwrap(),
    );
    res.unwrap_or_else(|e| panic!("backup failed: {e} {msg}\n{}", s.log_tail(20)));
    load.assert_running();
    load.stop();
    let m = read_manifest(&bk);
    let dirs: Vec<(String, String)> = m["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["subdirectory"].as_str().unwrap().to_string(),
                d["original_path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eprintln!("backup layout: {dirs:?}");
    for (sub, orig) in [
        ("mysql_data_dir", &outside.datadir),
        ("innodb_data_home_dir", &outside.ibdata),
        ("innodb_log_dir", &outside.redo),
        ("innodb_undo_dir", &outside.undo),
        ("mysql_log_bin", &outside.binlog),
        ("aria_log_dir", &outside.arialog),
    ] {
        assert!(
            dirs.contains(&(sub.to_string(), orig.display().to_string())),
            "{sub} -> {} missing from {dirs:?}",
            orig.display()
        );
    }
    for orig in [outside.ext.join("bank"), outside.ext_aria.clone()] {
        assert!(
            dirs.iter()
                .any(|(s, o)| s.starts_with("data_directory_") && Path::new(o) == orig),
            "{} missing from {dirs:?}",
            orig.display()
        );
    }
    assert!(bk.join("innodb_log_dir/ib_logfile0").is_file());
    assert!(bk.join("innodb_undo_dir/undo001").is_file());
    assert!(bk.join("innodb_data_home_dir/ibdata1").is_file());
    assert!(bk.join("aria_log_dir/aria_log_control").is_file());

    // Restore as a DBA would: stop the server, put every subdirectory back
    // at its original path, start the server with the same options.
    drop(s);
    for (sub, orig) in &dirs {
        std::fs::remove_dir_all(orig).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(bk.join(sub))
            .arg(orig)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let r = Server::start(
        "layout-restored",
        Opts {
            preload: None,
            install_plugin: false,
            ..opts
        },
    );
    verify_restored("separate directories", &r, &bk);
    drop(r);
    std::fs::remove_dir_all(&work).unwrap();
}
