//! The SQL interface on one shared server (library preloaded, plugin
//! installed with INSTALL PLUGIN): variables, status, privileges,
//! destination checks, exclude, throttle, KILL QUERY, concurrent backups,
//! and a backup of a loaded server restored and verified.

mod common;

use common::*;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let s = Server::start("sql", Opts::default());
        // A static is never dropped: its directory goes at exit.
        remove_at_exit(&s.base);
        load_bank(&s, 65536);
        s.sql("CREATE DATABASE excl_db; CREATE TABLE excl_db.t(id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO excl_db.t VALUES (1)");
        s.sql("CREATE USER plain@localhost; GRANT ALL ON bank.* TO plain@localhost");
        s
    })
}

/// Backups are one at a time per server: tests that run one take turns.
fn backup_turn() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

fn errors_logged(s: &Server) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("[ERROR] tokudb_backup:"))
        .count()
}

#[test]
fn variables_have_percona_names_scopes_and_defaults() {
    let s = server();
    let vars = s.sql("SELECT VARIABLE_NAME, VARIABLE_SCOPE, READ_ONLY, IFNULL(DEFAULT_VALUE,'') FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME LIKE 'TOKUDB_BACKUP%' ORDER BY 1");
    let expected = [
        ("TOKUDB_BACKUP_ALLOWED_PREFIX", "GLOBAL", "YES"),
        ("TOKUDB_BACKUP_DIR", "SESSION", "NO"),
        ("TOKUDB_BACKUP_EXCLUDE", "SESSION", "NO"),
        ("TOKUDB_BACKUP_LAST_ERROR", "SESSION", "NO"),
        ("TOKUDB_BACKUP_LAST_ERROR_STRING", "SESSION", "NO"),
        ("TOKUDB_BACKUP_PLUGIN_VERSION", "GLOBAL", "YES"),
        ("TOKUDB_BACKUP_THROTTLE", "SESSION", "NO"),
        ("TOKUDB_BACKUP_VERSION", "GLOBAL", "YES"),
    ];
    let rows: Vec<Vec<&str>> = vars.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), expected.len(), "{vars}");
    for (row, (name, scope, ro)) in rows.iter().zip(expected) {
        assert_eq!((row[0], row[1], row[2]), (name, scope, ro), "{vars}");
    }
    let v = s.sql("SELECT @@tokudb_backup_throttle, @@tokudb_backup_last_error, @@tokudb_backup_plugin_version, @@tokudb_backup_version");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(v, format!("18446744073709551615\t0\t{version}\t{version}"));
    // Read-only globals stay read-only.
    let e = s
        .query("SET GLOBAL tokudb_backup_allowed_prefix='/'")
        .unwrap_err();
    assert!(e.contains("read only"), "{e}");
    assert!(s.query("SET GLOBAL tokudb_backup_version='x'").is_err());
}

#[test]
fn status_variables_are_listed() {
    let s = server();
    let names = s.sql("SELECT VARIABLE_NAME FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME LIKE 'TOKUDB_BACKUP%' ORDER BY 1");
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "TOKUDB_BACKUP_BYTES_COPIED",
            "TOKUDB_BACKUP_BYTES_TOTAL",
            "TOKUDB_BACKUP_DESTINATION",
            "TOKUDB_BACKUP_ELAPSED_SECONDS",
            "TOKUDB_BACKUP_LAST_RESULT",
            "TOKUDB_BACKUP_RATE",
            "TOKUDB_BACKUP_STATE",
        ]
    );
}

#[test]
fn setting_dir_needs_super() {
    let s = server();
    let _turn = backup_turn();
    let dest = scratch("nosuper").join("bk");
    let before = errors_logged(s);
    let (res, errno, msg) = s.backup("plain", "", dest.to_str().unwrap());
    let e = res.unwrap_err();
    assert!(e.contains("ERROR 1227") && e.contains("SUPER"), "{e}");
    assert_eq!(errno, libc::EACCES as u64);
    assert!(msg.contains("SUPER"), "{msg}");
    assert!(!dest.exists(), "nothing may be created without SUPER");
    assert_eq!(errors_logged(s), before + 1, "one error log line");
}

#[test]
fn bad_destinations_are_refused_with_errno_and_message() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("baddest");
    let nonempty = base.join("nonempty");
    std::fs::create_dir(&nonempty).unwrap();
    std::fs::write(nonempty.join("keep"), b"user data").unwrap();
    let datadir = std::fs::canonicalize(&s.datadir).unwrap();
    let long = format!("{}/{}", base.display(), "d/".repeat(2100));
    let file = base.join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let cases: Vec<(String, i32, &str)> = vec![
        ("relative/bk".into(), libc::EINVAL, "not an absolute path"),
        (long, libc::ENAMETOOLONG, "too long"),
        (nonempty.display().to_string(), libc::ENOTEMPTY, "not empty"),
        (
            datadir.join("bk").display().to_string(),
            libc::EINVAL,
            "overlaps",
        ),
        (
            datadir.parent().unwrap().display().to_string(),
            libc::EINVAL,
            "overlaps",
        ),
        (file.display().to_string(), libc::ENOTDIR, "not a directory"),
        (
            base.join("missing/parent/bk").display().to_string(),
            libc::ENOENT,
            "cannot create",
        ),
    ];
    for (dest, errno, text) in cases {
        let before = errors_logged(s);
        let (res, got, msg) = s.backup("root", "", &dest);
        let e = res.expect_err(&dest);
        assert!(e.contains("ERROR 1231"), "{dest}: {e}");
        assert_eq!(got, errno as u64, "{dest}: {msg}");
        assert!(msg.contains(text), "{dest}: {msg}");
        assert_eq!(errors_logged(s), before + 1, "{dest}: one error log line");
    }
    // Nothing of the user's was touched and the server still serves.
    assert_eq!(std::fs::read(nonempty.join("keep")).unwrap(), b"user data");
    assert_eq!(std::fs::read_dir(&nonempty).unwrap().count(), 1);
    assert!(!datadir.join("bk").exists());
    assert_eq!(
        s.sql("SELECT COUNT(*) FROM bank.accounts"),
        ACCOUNTS.to_string()
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn invalid_exclude_pattern_is_refused_at_set() {
    let s = server();
    let e = s
        .query("SET tokudb_backup_exclude='(unclosed'")
        .unwrap_err();
    assert!(e.contains("ERROR 1231"), "{e}");
    assert_eq!(
        s.sql("SET tokudb_backup_exclude='/lost\\\\+found($|/)'; SELECT @@tokudb_backup_exclude"),
        "/lost\\+found($|/)"
    );
}

/// Files are all there and byte-equal? A backup of a server at rest must
/// equal its datadir except for the files that legitimately differ.
#[test]
fn backup_of_loaded_server_restores_with_manifest_and_markers() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("full");
    let dest = base.join("bk");
    let (res, errno, msg) = s.backup("root", "", dest.to_str().unwrap());
    res.unwrap_or_else(|e| panic!("backup failed: {e} / {msg}\n{}", s.log_tail(20)));
    assert_eq!(errno, 0);
    assert!(msg.is_empty() || msg == "NULL", "{msg}");

    // Layout, markers, modes.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(dest.join("BACKUP-COMPLETE").is_file());
    assert!(!dest.join("BACKUP-INCOMPLETE").exists());
    let data = dest.join("mysql_data_dir");
    assert!(data.join("bank/accounts.ibd").is_file());
    assert!(data.join("bank/aria_ledger.MAD").is_file());
    assert!(data.join("ibdata1").is_file() && data.join("ib_logfile0").is_file());
    assert!(!data.join("sock").exists() && !data.join("mariadbd.pid").exists());
    // Every file of the datadir is in the copy (the server keeps writing,
    // so contents may differ by now; the restore below checks them).
    let mut missing = Vec::new();
    for db in std::fs::read_dir(&s.datadir).unwrap().flatten() {
        let rel = db.file_name();
        if rel == "sock" || rel == "mariadbd.pid" {
            continue;
        }
        if db.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(db.path()).unwrap().flatten() {
                let r = Path::new(&rel).join(f.file_name());
                if !data.join(&r).exists() {
                    missing.push(r);
                }
            }
        } else if !data.join(&rel).exists() {
            missing.push(rel.into());
        }
    }
    assert!(missing.is_empty(), "missing from the backup: {missing:?}");

    // Manifest.
    let m = read_manifest(&dest);
    let datadir = std::fs::canonicalize(&s.datadir).unwrap();
    assert_eq!(m["directories"][0]["subdirectory"], "mysql_data_dir");
    assert_eq!(
        m["directories"][0]["original_path"],
        datadir.to_str().unwrap()
    );
    assert_eq!(m["library_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["plugin_version"], env!("CARGO_PKG_VERSION"));
    assert!(m["server_version"].as_str().unwrap().contains("MariaDB"));
    assert!(m["bytes"].as_u64().unwrap() > 10_000_000);
    assert!(m["started_at"].as_str().unwrap() <= m["finished_at"].as_str().unwrap());
    let bl = &m["binlog"];
    let info = std::fs::read_to_string(dest.join("tokubackup_binlog_info")).unwrap();
    assert_eq!(
        info,
        format!(
            "{}\t{}\t{}\n",
            bl["file"].as_str().unwrap(),
            bl["position"],
            bl["gtid_position"].as_str().unwrap()
        )
    );
    // At rest, the snapshot position is the server's current one.
    let master = s.sql("SHOW MASTER STATUS");
    let cols: Vec<&str> = master.split('\t').collect();
    assert_eq!(
        (cols[0], cols[1]),
        (
            bl["file"].as_str().unwrap(),
            bl["position"].to_string().as_str()
        )
    );
    assert_eq!(
        s.sql("SELECT @@gtid_binlog_pos"),
        bl["gtid_position"].as_str().unwrap()
    );

    // Status after the backup.
    assert_eq!(s.status("Tokudb_backup_state"), "idle");
    assert!(s.status("Tokudb_backup_last_result").starts_with("success"));
    assert_eq!(
        s.status("Tokudb_backup_destination"),
        std::fs::canonicalize(&dest).unwrap().to_str().unwrap()
    );

    // Restore and verify.
    let r = start_restored("full", &dest);
    verify_bank(&r);
    let tables = check_all_tables(&r);
    assert!(tables > 20, "only {tables} tables checked");
    assert_eq!(
        r.sql("SELECT @@gtid_binlog_pos"),
        bl["gtid_position"].as_str().unwrap()
    );
    drop(r);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn exclude_leaves_matching_files_out() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("exclude");
    let dest = base.join("bk");
    let (res, _, msg) = s.backup(
        "root",
        "SET tokudb_backup_exclude='/excl_db/|/filler\\\\.ibd$';",
        dest.to_str().unwrap(),
    );
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    let data = dest.join("mysql_data_dir");
    assert!(data.join("bank/accounts.ibd").is_file());
    assert!(
        data.join("bank/filler.frm").is_file(),
        "only what matches is left out"
    );
    assert!(!data.join("bank/filler.ibd").exists());
    assert!(!data.join("excl_db/t.ibd").exists() && !data.join("excl_db/t.frm").exists());
    assert_eq!(read_manifest(&dest)["exclude"], "/excl_db/|/filler\\.ibd$");
    std::fs::remove_dir_all(&base).unwrap();
}

/// One SET of several variables: the server runs every check before any
/// update, so each checked value must live until its own update, and the
/// backup (run by the check of dir) takes the exclude set before it.
#[test]
fn exclude_and_dir_in_one_set() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("one-set");
    let dest = base.join("bk");
    let pattern = "abcdefgh_exclude_pattern|/excl_db/";
    let (out, err) = s.session(
        "root",
        &format!(
            "SET SESSION tokudb_backup_exclude='{pattern}', tokudb_backup_dir='{}';\n\
             SELECT 'VARS', @@tokudb_backup_exclude, @@tokudb_backup_dir, @@tokudb_backup_last_error;\n",
            dest.display()
        ),
    );
    assert!(!err.contains("ERROR"), "{err}");
    assert!(
        out.contains(&format!("VARS\t{pattern}\t{}\t0", dest.display())),
        "{out}"
    );
    assert_eq!(read_manifest(&dest)["exclude"], pattern);
    let data = dest.join("mysql_data_dir");
    assert!(data.join("bank/accounts.ibd").is_file());
    assert!(!data.join("excl_db/t.ibd").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

/// A throttle set in the same SET, before the directory, applies to that
/// backup.
#[test]
fn throttle_and_dir_in_one_set() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("one-set-throttle");
    let dest = base.join("bk");
    let throttle = 2_000_000u64;
    // Unsigned: a negative value is 0, as the server's own check makes it
    // (0 pauses a running backup: this test holds the turn).
    assert_eq!(
        s.sql("SET tokudb_backup_throttle=-5; SELECT @@tokudb_backup_throttle"),
        "0"
    );
    let child = s.spawn_session(
        "root",
        &format!(
            "SET tokudb_backup_throttle={throttle}, tokudb_backup_dir='{}';\n\
             SELECT 'RESULT', @@tokudb_backup_last_error, @@tokudb_backup_throttle;\n",
            dest.display()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.status("Tokudb_backup_state") != "copying" {
        assert!(Instant::now() < deadline, "the backup did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let total: u64 = s.status("Tokudb_backup_bytes_total").parse().unwrap();
    let copied: u64 = s.status("Tokudb_backup_bytes_copied").parse().unwrap();
    assert_eq!(s.status("Tokudb_backup_state"), "copying");
    assert!(
        copied < total / 2,
        "copied {copied} of {total} in 2 s at {throttle} B/s"
    );
    s.sql("SET tokudb_backup_throttle=18446744073709551615");
    let (res, errno, msg) = finish_backup(child);
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert_eq!((errno, msg.as_str()), (0, throttle.to_string().as_str()));
    assert!(dest.join("BACKUP-COMPLETE").is_file());
    std::fs::remove_dir_all(&base).unwrap();
}

/// The client's progress line: SET tokudb_backup_dir sends progress reports
/// to a client that asks for them (the mariadb client shows "Stage: 1 of 1
/// 'tokudb backup about N% done ...'"), as ALTER TABLE does; other SET
/// statements send none.
#[test]
fn client_receives_progress_reports() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("client-progress");
    let dest = base.join("bk");
    let client = build_progress_client(&base);
    let run = |statements: &[&str]| {
        let out = std::process::Command::new(&client)
            .arg(&s.sock)
            .args(statements)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let backup = format!("SET tokudb_backup_dir='{}'", dest.display());
    let out = run(&[
        "SET GLOBAL progress_report_time=1",
        "SET tokudb_backup_throttle=10000000",
        &backup,
        "SET GLOBAL progress_report_time=5",
    ]);
    let percents: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("progress 1 1 "))
        .inspect(|r| assert!(r.contains("tokudb backup about"), "{r}"))
        .map(|r| r.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(percents.len() >= 2, "progress reports: {out:?}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(*percents.last().unwrap() > 0.0, "{percents:?}");
    assert!(dest.join("BACKUP-COMPLETE").exists());
    assert_eq!(run(&["SET @a=1", "SET SESSION sql_mode=DEFAULT"]), "");
    std::fs::remove_dir_all(&base).unwrap();
}

/// Throttled backup: progress is visible from another session, and raising
/// the throttle from another session speeds the running backup up at once.
#[test]
fn throttle_and_progress_of_a_running_backup() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("throttle");
    let dest = base.join("bk");
    let throttle = 2_000_000u64;
    let child = s.spawn_backup(
        &format!("SET tokudb_backup_throttle={throttle};"),
        dest.to_str().unwrap(),
    );
    let id = s.backup_connection();
    std::thread::sleep(Duration::from_secs(2));
    let state = s.sql(&format!(
        "SELECT STATE, PROGRESS FROM information_schema.PROCESSLIST WHERE ID={id}"
    ));
    assert!(
        state.contains("tokudb backup about") && state.contains("% done"),
        "{state}"
    );
    // thd_progress_report feeds the PROGRESS column, as ALTER TABLE does.
    let progress: f64 = state.rsplit('\t').next().unwrap().parse().unwrap();
    assert!(progress > 0.0 && progress < 100.0, "PROGRESS {progress}");
    assert_eq!(s.status("Tokudb_backup_state"), "copying");
    let total: u64 = s.status("Tokudb_backup_bytes_total").parse().unwrap();
    let copied: u64 = s.status("Tokudb_backup_bytes_copied").parse().unwrap();
    let elapsed: f64 = s.status("Tokudb_backup_elapsed_seconds").parse().unwrap();
    assert!(
        total > 20 * throttle,
        "dataset too small for this test: {total}"
    );
    assert!(elapsed >= 1.0, "elapsed {elapsed}");
    // Throttled: far from done (allow the first chunk and some slack).
    assert!(
        copied < total / 2,
        "copied {copied} of {total} at {throttle} B/s"
    );
    let rate: u64 = s.status("Tokudb_backup_rate").parse().unwrap();
    assert!(rate < 4 * throttle, "rate {rate} above throttle {throttle}");
    assert_eq!(
        s.status("Tokudb_backup_destination"),
        std::fs::canonicalize(&base)
            .unwrap()
            .join("bk")
            .to_str()
            .unwrap()
    );

    // Unthrottle from another session: the backup ends long before the
    // throttled pace would have allowed.
    let raised = Instant::now();
    s.sql("SET tokudb_backup_throttle=18446744073709551615");
    let (res, errno, msg) = finish_backup(child);
    let took = raised.elapsed();
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert_eq!(errno, 0);
    let throttled_eta = Duration::from_secs((total - copied) / throttle);
    assert!(
        took < throttled_eta / 2,
        "took {took:?}; throttled it would take {throttled_eta:?}"
    );
    assert!(dest.join("BACKUP-COMPLETE").is_file());
    std::fs::remove_dir_all(&base).unwrap();
}

/// Tokudb_backup_rate is the current rate: after a fast start, a lower
/// throttle shows in it within seconds (an average since the start would
/// stay above twice the new throttle for long); the last result keeps the
/// average.
#[test]
fn rate_follows_a_throttle_change() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("rate");
    let dest = base.join("bk");
    let (fast, slow) = (10_000_000u64, 1_000_000u64);
    let child = s.spawn_backup(
        &format!("SET tokudb_backup_throttle={fast};"),
        dest.to_str().unwrap(),
    );
    s.backup_connection();
    let copied = || -> u64 { s.status("Tokudb_backup_bytes_copied").parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while copied() < 15_000_000 {
        assert!(Instant::now() < deadline, "backup too slow to start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.sql(&format!("SET tokudb_backup_throttle={slow}"));
    let changed = Instant::now();
    let mut rates = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let rate: u64 = s.status("Tokudb_backup_rate").parse().unwrap();
        rates.push(rate);
        if rate < 2 * slow {
            eprintln!(
                "rate {:?} after the throttle change: {rates:?}",
                changed.elapsed()
            );
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(8),
            "rate did not follow the throttle ({slow} B/s): {rates:?}"
        );
    }
    s.sql("SET tokudb_backup_throttle=18446744073709551615");
    let (res, _, msg) = finish_backup(child);
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert_eq!(s.status("Tokudb_backup_rate"), "0", "idle");
    let last = s.status("Tokudb_backup_last_result");
    assert!(
        last.starts_with("success") && last.ends_with("bytes/s on average"),
        "{last}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// A backup whose destination goes away while it copies (while the server
/// writes files the library mirrors into it) fails with the library's
/// errors, written to the error log as one line.
#[test]
fn a_failed_copy_writes_one_error_line() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("lost-dest");
    let dest = base.join("bk");
    let child = s.spawn_backup(
        "SET tokudb_backup_throttle=2000000;",
        dest.to_str().unwrap(),
    );
    s.backup_connection();
    let before = errors_logged(s);
    // A file in its place, and the directory removed (again while the copy
    // threads create files in it, until it is gone).
    let moved = base.join("moved");
    std::fs::rename(&dest, &moved).unwrap();
    std::fs::write(&dest, b"not a directory").unwrap();
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(&moved) {
        tries += 1;
        assert!(tries < 100, "cannot remove {}: {e}", moved.display());
    }
    // Writes the library mirrors into the lost destination while its copy
    // threads find it gone: the library may report several errors.
    s.sql("UPDATE bank.aria_ledger SET balance=balance+1 WHERE id=1; UPDATE bank.aria_ledger SET balance=balance-1 WHERE id=1; FLUSH TABLES; SET tokudb_backup_throttle=18446744073709551615");
    let (res, errno, msg) = finish_backup(child);
    assert!(res.is_err(), "{msg}");
    assert_ne!(errno, 0, "{msg}");
    let new: Vec<String> = s
        .log()
        .lines()
        .filter(|l| l.contains("[ERROR] tokudb_backup:"))
        .skip(before)
        .map(str::to_string)
        .collect();
    assert_eq!(new.len(), 1, "{new:#?}\n{msg}");
    assert!(
        new[0].contains("backup failed") && new[0].contains("No such file"),
        "{}",
        new[0]
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// KILL QUERY ends a running backup within about a second, marks the
/// destination incomplete and the server keeps serving; a second backup
/// while one runs is refused.
#[test]
fn kill_query_and_concurrent_backup() {
    let s = server();
    let _turn = backup_turn();
    let base = scratch("kill");
    let dest = base.join("bk");
    let child = s.spawn_backup(
        "SET tokudb_backup_throttle=1000000;",
        dest.to_str().unwrap(),
    );
    let id = s.backup_connection();

    // A second backup meanwhile: EBUSY, clear message, nothing created.
    let other = base.join("other");
    let (res, errno, msg) = s.backup("root", "", other.to_str().unwrap());
    assert!(res.is_err());
    assert_eq!(errno, libc::EBUSY as u64, "{msg}");
    assert!(msg.contains("already running"), "{msg}");
    assert!(!other.exists());
    // Writes go on during the backup.
    s.sql("UPDATE bank.accounts SET balance=balance-1 WHERE id=1; UPDATE bank.accounts SET balance=balance+1 WHERE id=2");

    let errors_before = errors_logged(s);
    let killed_at = Instant::now();
    s.sql(&format!("KILL QUERY {id}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s
        .sql(&format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID={id} AND INFO LIKE 'SET tokudb%'"))
        .starts_with('0')
    {
        assert!(Instant::now() < deadline, "backup did not end after KILL QUERY");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed_at.elapsed();
    eprintln!("backup ended {took:?} after KILL QUERY");
    assert!(
        took < Duration::from_millis(2000),
        "KILL QUERY took {took:?}"
    );
    let (res, errno, msg) = finish_backup(child);
    assert!(res.is_err());
    assert_eq!(errno, libc::EINTR as u64, "{msg}");
    assert!(msg.contains("interrupted"), "{msg}");
    assert_eq!(
        errors_logged(s),
        errors_before + 1,
        "one error log line for the killed backup:\n{}",
        s.log_tail(10)
    );
    let marker =
        std::fs::read_to_string(dest.join("BACKUP-INCOMPLETE")).expect("incomplete marker");
    assert!(
        marker.contains("FAILED") && marker.contains("interrupted"),
        "{marker}"
    );
    assert!(!dest.join("BACKUP-COMPLETE").exists() && !dest.join("backup-manifest.json").exists());
    let last = s.status("Tokudb_backup_last_result");
    assert!(last.starts_with("killed"), "{last}");
    assert_eq!(s.status("Tokudb_backup_state"), "idle");
    assert_eq!(
        s.sql("SELECT SUM(balance) FROM bank.accounts"),
        (i64::from(ACCOUNTS) * INITIAL).to_string()
    );
    // And the next backup runs.
    let again = base.join("again");
    let (res, _, msg) = s.backup("root", "", again.to_str().unwrap());
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    assert!(Path::new(&again).join("BACKUP-COMPLETE").is_file());
    std::fs::remove_dir_all(&base).unwrap();
}
