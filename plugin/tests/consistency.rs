//! Backups taken while clients run transfers and DDL on InnoDB and Aria
//! tables, with the server's default I/O settings, restored and verified:
//! the copy starts, every table passes CHECK TABLE, the bank's totals hold,
//! every committed transfer is logged exactly once, and the data matches
//! the binary log up to the recorded position.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const TRANSFER_CLIENTS: u32 = 3;

struct Load {
    clients: Vec<(String, Child)>,
}

impl Load {
    fn start(s: &Server) -> Load {
        let mut clients = Vec::new();
        for c in 0..TRANSFER_CLIENTS {
            clients.push((
                format!("transfers {c}"),
                s.spawn_script("root", &transfer_script(c, 20_000), false),
            ));
        }
        clients.push((
            "ddl".into(),
            s.spawn_script("root", &ddl_script(100, 400), false),
        ));
        Load { clients }
    }

    /// Every client must still be running: the load covered the backup.
    fn assert_running(&mut self) {
        for (name, c) in &mut self.clients {
            if let Ok(Some(st)) = c.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                let _ = c.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("client '{name}' ended early ({st}): {err}");
            }
        }
    }

    fn stop(self) {
        for (_, mut c) in self.clients {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Transfers recorded in the backup's binary logs up to the snapshot position.
fn transfers_in_binlog(backup: &Path) -> u64 {
    let m = read_manifest(backup);
    let stop_file = m["binlog"]["file"].as_str().unwrap().to_string();
    let stop_pos = m["binlog"]["position"].as_u64().unwrap();
    // The binlog files are in whichever subdirectory holds the index.
    let dirs: Vec<PathBuf> = m["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| backup.join(d["subdirectory"].as_str().unwrap()))
        .collect();
    let index = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "index") && p.to_string_lossy().contains("mysql-bin")
        })
        .expect("binlog index in the backup");
    let mut total = 0;
    for line in std::fs::read_to_string(&index)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
    {
        let name = Path::new(line)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let file = dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| p.exists())
            .expect("binlog file in the backup");
        let mut cmd = Command::new("mariadb-binlog");
        cmd.arg("--no-defaults");
        if name == stop_file {
            cmd.arg(format!("--stop-position={stop_pos}"));
        }
        let out = cmd.arg(&file).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        total += text
            .lines()
            .filter(|l| l.starts_with("INSERT INTO bank.transfers"))
            .count() as u64;
        if name == stop_file {
            break;
        }
    }
    total
}

fn verify_restored(name: &str, r: &Server, backup: &Path) {
    let transfers = verify_bank(r);
    let tables = check_all_tables(r);
    let logged = transfers_in_binlog(backup);
    let m = read_manifest(backup);
    eprintln!(
        "{name}: restored {transfers} transfers, {tables} tables OK, binlog up to {}:{} has {logged} transfers",
        m["binlog"]["file"], m["binlog"]["position"]
    );
    assert!(
        transfers > 0,
        "no transfer was committed before the snapshot"
    );
    assert_eq!(
        transfers, logged,
        "data and binary log up to the recorded position disagree"
    );
    assert_eq!(
        r.sql("SELECT @@gtid_binlog_pos"),
        m["binlog"]["gtid_position"].as_str().unwrap()
    );
}

#[test]
fn backups_under_transfers_and_ddl_restore_consistently() {
    let s = Server::start("consistency", Opts::default());
    // Default I/O settings: the preloaded library made InnoDB fall back
    // from native AIO to pwrite, which it captures.
    assert!(
        s.log()
            .contains("falling back to innodb_use_native_aio=OFF"),
        "{}",
        s.log_tail(30)
    );
    load_bank(&s, 65536);
    let mut load = Load::start(&s);
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
