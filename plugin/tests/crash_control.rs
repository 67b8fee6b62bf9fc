//! Control experiment for the consistency test: the same server (same
//! options, libHotBackup preloaded, plugin installed), the same bank,
//! transfer and DDL load, but no backup: mariadbd is killed with SIGKILL
//! after a random 1-4 s and a server is restarted on the same datadir with
//! the options the consistency test uses for restored servers (binary log
//! on, no preload). It must start (InnoDB and binlog XA crash recovery) and
//! pass the same verification: bank totals, the transfer log, CHECK TABLE,
//! and the data agreeing with the binary log.
//!
//! Tells a crash-recovery failure of the server from one a backup causes.
//! Ignored in normal runs; run with
//! `CRASH_CONTROL_ROUNDS=25 cargo test -p tokudb_backup --test crash_control -- --ignored --nocapture`
//! (CRASH_CONTROL_MIN_MS / CRASH_CONTROL_MAX_MS: when to kill, default 1000-4000).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server's pid, from the pid file the harness puts in the datadir.
fn server_pid(s: &Server) -> i32 {
    let f = s.datadir.join("mariadbd.pid");
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .parse()
        .unwrap()
}

/// SIGKILL, then wait until the process is gone or a zombie (its files are
/// closed then). It is not reaped here: the Server guard owns the child.
fn kill_hard(pid: i32) {
    // SAFETY: signalling the mariadbd this test started (pid from its pid file).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(st) => {
                let state = st
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().chars().next());
                if state == Some(Some('Z')) {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "mariadbd {pid} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Transfers recorded in all of the datadir's binary logs.
fn transfers_in_binlog(datadir: &Path) -> u64 {
    let index = datadir.join("mysql-bin.index");
    let mut total = 0;
    for line in std::fs::read_to_string(&index)
        .unwrap_or_else(|e| panic!("{}: {e}", index.display()))
        .lines()
        .filter(|l| !l.is_empty())
    {
        let name = Path::new(line).file_name().unwrap();
        let file: PathBuf = datadir.join(name);
        let out = Command::new("mariadb-binlog")
            .arg("--no-defaults")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        total += text
            .lines()
            .filter(|l| l.starts_with("INSERT INTO bank.transfers"))
            .count() as u64;
    }
    total
}

fn one_round(round: u32, sleep_ms: u64) {
    // Started as the consistency test starts its server (without its
    // snapshot check, which needs a backup).
    let (s, mut load) = start_bank_under_load("crash", Opts::default());
    std::thread::sleep(Duration::from_millis(sleep_ms));
    load.assert_running();
    let pid = server_pid(&s);
    kill_hard(pid);
    load.stop();
    // Restarted on the same datadir as start_restored starts a server on a
    // backup's copy: no preload, no plugin, binary log on. `s` is kept until
    // the end: dropping it removes its directory, datadir included.
    let r = Server::start(
        &format!("crash-restart{round}"),
        Opts {
            preload: None,
            install_plugin: false,
            log_bin: true,
            extra: Vec::new(),
            datadir: Some(s.datadir.clone()),
            env: Vec::new(),
        },
    );
    let log = r.log();
    let prepared = log
        .lines()
        .find(|l| l.contains("prepared transaction(s) in InnoDB"))
        .unwrap_or("no prepared transactions reported");
    let transfers = verify_bank(&r);
    let tables = check_all_tables(&r);
    let logged = transfers_in_binlog(&r.datadir);
    eprintln!(
        "round {round}: killed after {sleep_ms} ms; {transfers} transfers, {tables} tables OK, \
         binlog has {logged} transfers; {}",
        prepared.trim()
    );
    assert!(transfers > 0, "no transfer was committed before the kill");
    assert_eq!(
        transfers, logged,
        "data and binary log disagree after crash recovery"
    );
    drop(r);
    drop(s);
}

#[test]
#[ignore = "control experiment, minutes per round: CRASH_CONTROL_ROUNDS=N cargo test --test crash_control -- --ignored"]
fn plain_crash_under_transfers_and_ddl_recovers() {
    let rounds: u32 = std::env::var("CRASH_CONTROL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id());
    // The kill comes 1-4 s into the load unless CRASH_CONTROL_MIN_MS /
    // CRASH_CONTROL_MAX_MS say otherwise (the consistency test's second
    // backup takes its snapshot about 8 s into the load).
    let ms = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let min_ms = ms("CRASH_CONTROL_MIN_MS", 1000);
    let max_ms = ms("CRASH_CONTROL_MAX_MS", 4000).max(min_ms);
    let mut rng = Rng::new(seed);
    for round in 1..=rounds {
        let sleep_ms = min_ms + rng.below(max_ms - min_ms + 1);
        one_round(round, sleep_ms);
    }
    eprintln!("{rounds} plain-crash rounds recovered");
}
