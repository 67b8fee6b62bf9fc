//! tokubackup against real throwaway MariaDB servers (the plugin tests'
//! harness): backup under the bank load with DDL, verify, verify --recover,
//! restore to new directories and a server on them; damaged backups and
//! refused restores; an interrupted backup.

#[path = "../../plugin/tests/common/mod.rs"]
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The program under test: cargo's build, or $HOTBACKUP_TEST_BUILD/tokubackup
/// (CI's glibc 2.17 build, the one the RPMs and the tarball ship).
fn tokubackup_bin() -> PathBuf {
    match std::env::var_os("HOTBACKUP_TEST_BUILD") {
        Some(dir) => PathBuf::from(dir).join("tokubackup"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_tokubackup")),
    }
}

fn tb(args: &[&str]) -> Output {
    Command::new(tokubackup_bin()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs tokubackup and checks its exit status; returns stdout+stderr.
fn tb_expect(args: &[&str], code: i32) -> String {
    let o = tb(args);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "tokubackup {args:?}: expected exit {code}, got {:?}:\n{t}",
        o.status.code()
    );
    t
}

fn conn_args(s: &Server) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        format!("--socket={}", s.sock.display()),
        "--user=root".into(),
    ]
}

fn backup_with(s: &Server, dest: &Path, more: &[&str]) -> Output {
    let mut a = vec!["backup".to_string(), dest.display().to_string()];
    a.extend(conn_args(s));
    a.extend(more.iter().map(|m| m.to_string()));
    let r: Vec<&str> = a.iter().map(String::as_str).collect();
    tb(&r)
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// The layout of the consistency test (every directory the server writes
/// outside its datadir, DATA DIRECTORY tables of InnoDB and Aria), the bank
/// under transfers and DDL; tokubackup backup, verify, verify --recover,
/// restore --map to new directories, a server on them.
#[test]
fn backup_verify_recover_restore_under_load() {
    let work = std::fs::canonicalize(scratch("cli-layout")).unwrap();
    let dirs = OutsideDirs::create(&work);
    let extra = dirs.options();
    install_db(&dirs.datadir, &extra[..INSTALL_DB_OPTIONS]);
    let OutsideDirs {
        datadir,
        ibdata,
        redo,
        undo,
        binlog,
        arialog,
        ext,
        ext_aria,
    } = dirs;
    let s = Server::start(
        "cli-layout",
        Opts {
            log_bin: false,
            extra,
            datadir: Some(datadir.clone()),
            ..Opts::default()
        },
    );
    load_bank_with(&s, 16384, Some(&ext), Some(&ext_aria));
    let mut load = Load::start(&s);
    std::thread::sleep(Duration::from_secs(1));
    let bk = work.join("backup");
    let o = backup_with(&s, &bk, &["--throttle=40000000", "--json"]);
    let out = text(&o);
    assert!(
        o.status.success(),
        "backup failed: {out}\n{}",
        s.log_tail(20)
    );
    // Not a terminal: plain progress lines, then the manifest on stdout.
    assert!(
        out.contains("tokubackup: copying"),
        "no progress line: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("tokubackup: copying") && l.ends_with(" files")),
        "no file count in the progress: {out}"
    );
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed, read_manifest(&bk));
    load.assert_running();
    load.stop();
    drop(s);

    let v = tb_expect(&["verify", p(&bk)], 0);
    eprintln!("{v}");
    let r = tb_expect(
        &[
            "verify",
            p(&bk),
            "--recover",
            "--mariadbd=/usr/sbin/mariadbd",
            "--mariadbd-arg=--innodb-undo-tablespaces=2",
        ],
        0,
    );
    eprintln!("{r}");
    assert!(r.contains("tables OK"), "{r}");

    // Restore every directory to a new place; the originals are gone.
    let new = work.join("new");
    let m = read_manifest(&bk);
    let mut args: Vec<String> = vec![
        "restore".into(),
        bk.display().to_string(),
        format!("--datadir={}/data", new.display()),
        "--user=root".into(),
        "--mariadbd=/usr/sbin/mariadbd".into(),
    ];
    for dir in m["directories"].as_array().unwrap() {
        let sub = dir["subdirectory"].as_str().unwrap();
        // InnoDB DATA DIRECTORY tablespaces go back to their original path
        // (the redo log names them); everything else moves.
        if sub != "mysql_data_dir" && !sub.starts_with("data_directory_") {
            let orig = dir["original_path"].as_str().unwrap();
            args.push(format!("--map={orig}={}/{sub}", new.display()));
        }
    }
    for orig in [
        &datadir, &ibdata, &redo, &undo, &binlog, &arialog, &ext, &ext_aria,
    ] {
        std::fs::remove_dir_all(orig).unwrap();
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    // A restore that fails part way (the last directory cannot be created)
    // leaves no target and no partial copy behind.
    let last = m["directories"].as_array().unwrap().iter().rfind(|d| {
        !d["subdirectory"]
            .as_str()
            .unwrap()
            .starts_with("data_directory_")
    });
    let bad = format!(
        "--map={}=/proc/tokubackup-test/x",
        last.unwrap()["original_path"].as_str().unwrap()
    );
    let mut failing: Vec<&str> = a.clone();
    failing.retain(|x| {
        !x.starts_with(&format!(
            "--map={}=",
            last.unwrap()["original_path"].as_str().unwrap()
        ))
    });
    failing.push(&bad);
    assert!(tb_expect(&failing, 10).contains("/proc/tokubackup-test"));
    let left: Vec<_> =
        std::fs::read_dir(&new).map_or(Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    assert!(left.is_empty(), "a failed restore left {left:?}");
    let ext_bank = format!("--map={}={}/x", ext.join("bank").display(), new.display());
    let mut moved = a.clone();
    moved.push(&ext_bank);
    assert!(tb_expect(&moved, 1).contains("InnoDB DATA DIRECTORY"));
    eprintln!("{}", tb_expect(&a, 0));
    assert!(ext.join("bank/accounts.ibd").is_file());
    let n = |sub: &str| new.join(sub);
    let extra = outside_options(
        &n("innodb_data_home_dir"),
        &n("innodb_log_dir"),
        &n("innodb_undo_dir"),
        &n("aria_log_dir"),
        &n("mysql_log_bin"),
    );
    let r = Server::start(
        "cli-restored",
        Opts {
            preload: None,
            install_plugin: false,
            log_bin: false,
            extra,
            datadir: Some(n("data")),
            env: Vec::new(),
        },
    );
    verify_restored("tokubackup restore --map", &r, &bk);
    drop(r);
    std::fs::remove_dir_all(&work).unwrap();
}

/// Damage of each kind is named by verify and makes restore refuse;
/// restores into a non-empty directory or onto a running server are
/// refused and change nothing; bad input gets its own exit status.
#[test]
fn damaged_backups_and_refused_requests() {
    let s = Server::start("cli-damage", Opts::default());
    load_bank(&s, 1024);
    let work = scratch("cli-damage-work");
    let bk = work.join("backup");
    let o = backup_with(&s, &bk, &[]);
    assert!(o.status.success(), "{}", text(&o));
    tb_expect(&["verify", p(&bk)], 0);
    // Connection settings from an option file: [client] and [tokubackup].
    let cnf = work.join("my.cnf");
    let options = format!(
        "[client]\nsocket={}\n[tokubackup]\nuser=root\n",
        s.sock.display()
    );
    std::fs::write(&cnf, options).unwrap();
    let bk2 = work.join("backup-cnf");
    let o = tb(&[
        "backup",
        p(&bk2),
        &format!("--defaults-file={}", cnf.display()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    tb_expect(&["verify", p(&bk2)], 0);
    let info = tb_expect(&["info", p(&bk)], 0);
    assert!(
        info.contains("complete") && info.contains("mysql_data_dir"),
        "{info}"
    );

    let target = work.join("target");
    let restore = |code: i32| {
        tb_expect(
            &[
                "restore",
                p(&bk),
                &format!("--datadir={}", target.display()),
                "--user=root",
                "--mariadbd=/usr/sbin/mariadbd",
            ],
            code,
        )
    };
    let file = bk.join("mysql_data_dir/bank/accounts.ibd");
    let orig = std::fs::read(&file).unwrap();
    let damages: Vec<Damage> = vec![
        (
            "flipped byte",
            Box::new(|| {
                let mut b = orig.clone();
                b[orig.len() / 2] ^= 1;
                std::fs::write(&file, b).unwrap();
            }),
            "checksum differs: mysql_data_dir/bank/accounts.ibd",
        ),
        (
            "deleted file",
            Box::new(|| std::fs::remove_file(&file).unwrap()),
            "missing: mysql_data_dir/bank/accounts.ibd",
        ),
        (
            "truncated file",
            Box::new(|| std::fs::write(&file, &orig[..4096]).unwrap()),
            "size differs: mysql_data_dir/bank/accounts.ibd is 4096 bytes",
        ),
        (
            "extra file",
            Box::new(|| std::fs::write(bk.join("mysql_data_dir/bank/extra.ibd"), b"x").unwrap()),
            "not in the manifest: mysql_data_dir/bank/extra.ibd",
        ),
    ];
    for (what, damage, named) in &damages {
        damage();
        let v = tb_expect(&["verify", p(&bk)], 7);
        assert!(
            v.contains(named),
            "{what}: verify does not say '{named}':\n{v}"
        );
        let r = restore(7);
        assert!(
            r.contains(named),
            "{what}: restore does not say '{named}':\n{r}"
        );
        assert!(
            !target.exists(),
            "{what}: restore wrote {}",
            target.display()
        );
        std::fs::write(&file, &orig).unwrap();
        let _ = std::fs::remove_file(bk.join("mysql_data_dir/bank/extra.ibd"));
        tb_expect(&["verify", p(&bk)], 0);
    }
    let marker = bk.join("BACKUP-COMPLETE");
    std::fs::rename(&marker, work.join("marker")).unwrap();
    assert!(tb_expect(&["verify", p(&bk)], 6).contains("BACKUP-COMPLETE"));
    assert!(restore(6).contains("BACKUP-COMPLETE"));
    std::fs::rename(work.join("marker"), &marker).unwrap();

    let manifest = bk.join("backup-manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    assert!(tb_expect(&["verify", p(&bk)], 6).contains("garbled manifest"));
    assert!(tb_expect(&["info", p(&bk)], 6).contains("garbled manifest"));
    std::fs::write(&manifest, &good).unwrap();

    std::fs::rename(&manifest, work.join("manifest")).unwrap();
    assert!(tb_expect(&["verify", p(&bk)], 6).contains("cannot read"));
    std::fs::rename(work.join("manifest"), &manifest).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&tb_expect(&["info", "--json", p(&bk)], 0)).unwrap();
    assert_eq!(info, read_manifest(&bk));

    // A server binary of another version.
    let fake = work.join("mariadbd-5.7");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'mysqld  Ver 5.7.44 for Linux on x86_64'\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&fake)
        .status()
        .unwrap();
    let r = tb_expect(
        &[
            "restore",
            p(&bk),
            &format!("--datadir={}", target.display()),
            "--user=root",
            &format!("--mariadbd={}", fake.display()),
        ],
        9,
    );
    assert!(r.contains("Ver 5.7.44"), "{r}");
    assert!(!target.exists());

    // Non-empty target: refused, the file in it untouched.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep"), b"mine").unwrap();
    assert!(restore(9).contains(&format!("'{}' is not empty", target.display())));
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"mine");
    // Onto the running server's datadir: refused, nothing changed.
    let before = tree(&s.datadir);
    let r = tb_expect(
        &[
            "restore",
            p(&bk),
            &format!("--datadir={}", s.datadir.display()),
            "--user=root",
            "--mariadbd=/usr/sbin/mariadbd",
        ],
        9,
    );
    assert!(r.contains("is running on"), "{r}");
    assert_eq!(tree(&s.datadir), before);
    // An unknown --map path.
    let r = tb_expect(
        &[
            "restore",
            p(&bk),
            "--datadir=/nonexistent/tb",
            "--map=/not/in/backup=/x",
        ],
        1,
    );
    assert!(
        r.contains("'/not/in/backup' is not a directory of this backup"),
        "{r}"
    );

    // Refused by the plugin (destination not empty), wrong password, no server.
    let o = backup_with(&s, &target, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(p(&target)), "{}", text(&o));
    s.sql("CREATE USER tb@localhost IDENTIFIED BY 'right'");
    let o = tb(&[
        "backup",
        p(&work.join("b2")),
        "--no-defaults",
        &format!("--socket={}", s.sock.display()),
        "--user=tb",
        "--password=wrong",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Access denied"), "{}", text(&o));
    let o = tb(&[
        "backup",
        "/tmp/x",
        "--no-defaults",
        "--socket=/nonexistent.sock",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // --move: the backup's directories become the target.
    let moved = work.join("moved");
    tb_expect(
        &[
            "restore",
            p(&bk),
            &format!("--datadir={}", moved.display()),
            "--user=root",
            "--mariadbd=/usr/sbin/mariadbd",
            "--move",
        ],
        0,
    );
    assert!(moved.join("bank/accounts.ibd").is_file());
    assert!(!bk.join("mysql_data_dir").exists());
    let partial = work
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("partial"));
    assert!(!partial, "a partial copy was left in {}", work.display());
    std::fs::remove_dir_all(&work).unwrap();
}

/// What is done to the backup, and what verify must say about it.
type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);

fn tree(d: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let md = e.metadata().unwrap();
        if md.is_dir() {
            out.extend(tree(&e.path()));
        } else if !e.path().ends_with("sock") {
            out.push((e.path(), md.len()));
        }
    }
    out.sort();
    out
}

/// Starts a throttled `tokubackup backup` and sends it `sig` once the
/// backup is copying.
fn slow_backup_then(s: &Server, dest: &Path, sig: i32) -> std::process::Child {
    let child = Command::new(tokubackup_bin())
        .arg("backup")
        .arg(dest)
        .args(conn_args(s))
        .arg("--throttle=2000000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    s.backup_connection();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    child
}

/// SIGTERM to a running `tokubackup backup` stops the backup on the server
/// (KILL QUERY), leaves the destination marked incomplete, exits 5.
#[test]
fn interrupted_backup_is_stopped_on_the_server() {
    let s = Server::start("cli-kill", Opts::default());
    load_bank(&s, 65536);
    let work = scratch("cli-kill-work");
    let dest = work.join("backup");
    let mut child = slow_backup_then(&s, &dest, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "tokubackup did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("marked incomplete"), "{}", text(&o));
    assert!(dest.join("BACKUP-INCOMPLETE").is_file());
    assert!(!dest.join("BACKUP-COMPLETE").exists());
    assert_eq!(s.status("Tokudb_backup_state"), "idle");
    assert!(tb_expect(&["verify", p(&dest)], 6).contains("BACKUP-INCOMPLETE"));

    // SIGKILL cannot be caught: the guard process stops the backup.
    let dest = work.join("backup-killed");
    let child = slow_backup_then(&s, &dest, libc::SIGKILL);
    child.wait_with_output().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.status("Tokudb_backup_state") != "idle" {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup still runs after tokubackup was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dest.join("BACKUP-INCOMPLETE").is_file());
    assert!(s.status("Tokudb_backup_last_result").contains("killed"));
    std::fs::remove_dir_all(&work).unwrap();
}

/// A replica seeded from a backup taken under load, started with the
/// statements `replica-sql` prints, catches up with the still-loaded source
/// and then holds the same data (CHECKSUM TABLE of every table).
#[test]
fn replica_from_a_backup_catches_up() {
    let (s, mut load) = start_bank_under_load("cli-source", Opts::default());
    s.sql(
        "CREATE USER repl@'%' IDENTIFIED BY 'repl-pw'; GRANT REPLICATION SLAVE ON *.* TO repl@'%'",
    );
    std::thread::sleep(Duration::from_secs(1));
    let work = scratch("cli-replica-work");
    let bk = work.join("backup");
    let o = backup_with(&s, &bk, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let data = work.join("rdata");
    tb_expect(
        &[
            "restore",
            p(&bk),
            &format!("--datadir={}", data.display()),
            "--user=root",
            "--mariadbd=/usr/sbin/mariadbd",
        ],
        0,
    );
    let r = Server::start(
        "cli-replica",
        Opts {
            preload: None,
            install_plugin: false,
            log_bin: false,
            extra: vec!["--log-bin=mysql-bin".into(), "--server-id=2".into()],
            datadir: Some(data),
            env: Vec::new(),
        },
    );
    let pw = work.join("pw");
    std::fs::write(&pw, "repl-pw\n").unwrap();
    let stmts = tb_expect(
        &[
            "replica-sql",
            p(&bk),
            "--source-host=127.0.0.1",
            &format!("--source-port={}", s.port),
            "--source-user=repl",
            &format!("--source-password-file={}", pw.display()),
        ],
        0,
    );
    let gtid = read_manifest(&bk)["binlog"]["gtid_position"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stmts.contains(&format!("SET GLOBAL gtid_slave_pos='{gtid}'")),
        "{stmts}"
    );
    assert!(stmts.contains("MASTER_USE_GTID=slave_pos"), "{stmts}");
    r.sql(&stmts);
    // The load goes on while the replica catches up.
    std::thread::sleep(Duration::from_secs(3));
    load.assert_running();
    load.stop();
    // Killed clients' last statements may still commit: the source's
    // position is read anew each time.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let target = loop {
        let target = s.sql("SELECT @@gtid_binlog_pos");
        if r.sql("SELECT @@gtid_slave_pos") == target {
            break target;
        }
        let st = r.sql("SHOW SLAVE STATUS");
        assert!(
            std::time::Instant::now() < deadline,
            "replica did not reach {target}: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let tables = s.sql(
        "SELECT CONCAT('`', TABLE_SCHEMA, '`.`', TABLE_NAME, '`') FROM information_schema.TABLES \
         WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1",
    );
    assert_eq!(
        tables,
        r.sql(
            "SELECT CONCAT('`', TABLE_SCHEMA, '`.`', TABLE_NAME, '`') FROM information_schema.TABLES \
             WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1"
        ),
        "the replica has other tables"
    );
    let list: Vec<&str> = tables.lines().collect();
    assert!(list.len() >= 4, "{tables}");
    let q = format!("CHECKSUM TABLE {}", list.join(", "));
    assert_eq!(s.sql(&q), r.sql(&q), "source and replica differ");
    eprintln!("replica caught up at {target}; {} tables equal", list.len());
    verify_bank(&r);
    std::fs::remove_dir_all(&work).unwrap();
}
