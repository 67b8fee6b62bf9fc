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
    let (outside, extra) = OutsideDirs::installed(&work);
    let s = Server::start(
        "cli-layout",
        Opts {
            log_bin: false,
            extra,
            datadir: Some(outside.datadir.clone()),
            ..Opts::default()
        },
    );
    load_bank_with(&s, 16384, Some(&outside.ext), Some(&outside.ext_aria));
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
        &outside.datadir,
        &outside.ibdata,
        &outside.redo,
        &outside.undo,
        &outside.binlog,
        &outside.arialog,
        &outside.ext,
        &outside.ext_aria,
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
    let ext_bank = format!(
        "--map={}={}/x",
        outside.ext.join("bank").display(),
        new.display()
    );
    let mut moved = a.clone();
    moved.push(&ext_bank);
    assert!(tb_expect(&moved, 1).contains("InnoDB DATA DIRECTORY"));
    eprintln!("{}", tb_expect(&a, 0));
    assert!(outside.ext.join("bank/accounts.ibd").is_file());
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
///
/// The transfers run on InnoDB only: Aria has no two-phase commit with the
/// binary log, so a statement on an Aria table that commits at the snapshot
/// instant can be in the binary log position but rolled back by Aria's
/// recovery of the copy (README, "Binary log position without a lock"; seen
/// once: the snapshot's last GTID was such an UPDATE, and the replica's
/// ledger differed from the source's by exactly it).
#[test]
fn replica_from_a_backup_catches_up() {
    let (s, mut load) = start_bank_under_load_with("cli-source", Opts::default(), false);
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
            extra: vec![
                "--log-bin=mysql-bin".into(),
                "--server-id=2".into(),
                "--gtid-strict-mode=1".into(),
                "--log-slave-updates".into(),
            ],
            datadir: Some(data),
            env: Vec::new(),
        },
    );
    // What the restored server wrote itself (DDL recovery can binlog an
    // interrupted ALTER anew); one such GTID is written here for sure.
    eprintln!(
        "restored: gtid_binlog_pos {}, snapshot {}",
        r.sql("SELECT @@gtid_binlog_pos"),
        read_manifest(&bk)["binlog"]["gtid_position"]
    );
    r.sql("CREATE DATABASE replica_own; DROP DATABASE replica_own");
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

/// `tokubackup ARGS` on a pseudo-terminal of its own (its controlling
/// terminal, so /dev/tty is it), typing `typed` once "Enter password: "
/// shows; returns the exit status and all it wrote there.
fn on_terminal(args: &[String], env: &[(&str, &Path)], typed: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::os::unix::io::FromRawFd;
    use std::os::unix::process::CommandExt;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills the two descriptors; no name, default settings.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: each is a fresh descriptor owned by one File.
    let (mut m, s) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut cmd = Command::new(tokubackup_bin());
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(s.try_clone().unwrap())
        .stdout(s.try_clone().unwrap())
        .stderr(s.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec: a new
    // session whose controlling terminal is the pty (fd 0).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    drop(s);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent = false;
    // Reads until every holder of the pty's other side is gone (EIO).
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if !sent && String::from_utf8_lossy(&out).contains("Enter password: ") {
            m.write_all(typed.as_bytes()).unwrap();
            sent = true;
        }
    }
    let st = child.wait().unwrap();
    (st.code(), String::from_utf8_lossy(&out).into_owned())
}

/// Connection settings from the usual option files and the password
/// prompt: ~/.my.cnf, $MARIADB_HOME/my.cnf with `!includedir` (every
/// *.cnf), groups [client], [client-server], [client-mariadb] and
/// [tokubackup]; --defaults-extra-file, --defaults-file, --no-defaults;
/// `--password` without a value prompts on the terminal, echo off.
#[test]
fn option_files_and_password_prompt() {
    let s = Server::start("cli-options", Opts::default());
    load_bank(&s, 256);
    s.sql("CREATE USER tb@localhost IDENTIFIED BY 'right'; GRANT ALL ON *.* TO tb@localhost");
    let work = std::fs::canonicalize(scratch("cli-options-work")).unwrap();
    let (home, mhome) = (work.join("home"), work.join("mhome"));
    std::fs::create_dir_all(mhome.join("conf.d")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        mhome.join("my.cnf"),
        format!(
            "[mysqld]\nuser=nobody\n!includedir {}\n",
            mhome.join("conf.d").display()
        ),
    )
    .unwrap();
    // Not my.cnf: libmariadb's own reader would read only conf.d/my.cnf.
    std::fs::write(
        mhome.join("conf.d/50-client.cnf"),
        "[client-server]\nuser=tb\n[mysql]\nuser=mysql-only\n",
    )
    .unwrap();
    std::fs::write(
        home.join(".my.cnf"),
        format!(
            "[client-mariadb]\nsocket={}\n[tokubackup]\npassword = right\n",
            s.sock.display()
        ),
    )
    .unwrap();
    let env = [("HOME", home.as_path()), ("MARIADB_HOME", mhome.as_path())];
    let run = |n: &str, more: &[String]| {
        let dest = work.join(n);
        let o = Command::new(tokubackup_bin())
            .arg("backup")
            .arg(&dest)
            .args(more)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        (o.status.code(), text(&o), dest)
    };
    let (code, out, dest) = run("b-usual", &[]);
    assert_eq!(code, Some(0), "{out}");
    tb_expect(&["verify", p(&dest)], 0);
    // --no-defaults: the password of ~/.my.cnf is not read.
    let sock = format!("--socket={}", s.sock.display());
    let (code, out, _) = run(
        "b-none",
        &["--no-defaults".into(), sock.clone(), "--user=tb".into()],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("Access denied for user 'tb'"), "{out}");
    // --defaults-extra-file: read after $MARIADB_HOME/my.cnf (its user wins),
    // before ~/.my.cnf (whose password wins).
    let extra = work.join("extra.cnf");
    std::fs::write(&extra, "[client]\nuser=nouser\npassword=wrong\n").unwrap();
    let (code, out, _) = run(
        "b-extra",
        &[format!("--defaults-extra-file={}", extra.display())],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("Access denied for user 'nouser'"), "{out}");
    std::fs::write(&extra, "[client]\npassword=wrong\n").unwrap();
    let (code, out, _) = run(
        "b-extra2",
        &[format!("--defaults-extra-file={}", extra.display())],
    );
    assert_eq!(code, Some(0), "{out}");
    // --defaults-file: that file only (not ~/.my.cnf's password).
    let only = work.join("only.cnf");
    std::fs::write(
        &only,
        format!("[client]\nsocket={}\nuser=tb\n", s.sock.display()),
    )
    .unwrap();
    let df = format!("--defaults-file={}", only.display());
    let (code, out, _) = run("b-only", std::slice::from_ref(&df));
    assert_eq!(code, Some(2), "{out}");
    std::fs::write(
        &only,
        format!(
            "[client]\nsocket={}\nuser=tb\npassword=right\n",
            s.sock.display()
        ),
    )
    .unwrap();
    let (code, out, _) = run("b-only2", std::slice::from_ref(&df));
    assert_eq!(code, Some(0), "{out}");
    let missing = format!("--defaults-file={}", work.join("none.cnf").display());
    let (code, out, _) = run("b-missing", &[missing]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("none.cnf"), "{out}");

    // The prompt: the right password backs up, a wrong one is refused.
    let prompted = |n: &str| {
        vec![
            "backup".to_string(),
            work.join(n).display().to_string(),
            "--no-defaults".into(),
            sock.clone(),
            "--user=tb".into(),
            "--password".into(),
        ]
    };
    let (code, out) = on_terminal(&prompted("b-prompt"), &[], "right\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("right"), "the password was echoed: {out}");
    tb_expect(&["verify", p(&work.join("b-prompt"))], 0);
    let (code, out) = on_terminal(&prompted("b-prompt-wrong"), &[], "wrong\n");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("Access denied for user 'tb'"), "{out}");
    assert!(!work.join("b-prompt-wrong").exists());
    drop(s);
    std::fs::remove_dir_all(&work).unwrap();
}

/// A restore interrupted mid-copy (SIGINT, SIGTERM) exits 5 and leaves
/// neither a target nor a partial copy; one killed (SIGKILL) leaves only a
/// hidden `.NAME.tokubackup-partial-PID`, which the next restore removes
/// before it succeeds. TOKUBACKUP_TEST_COPY_DELAY_MS makes each file copy
/// wait, so the signals surely land mid-copy.
#[test]
fn interrupted_restore_leaves_nothing_usable() {
    let s = Server::start("cli-intr", Opts::default());
    load_bank(&s, 1024);
    let work = std::fs::canonicalize(scratch("cli-intr-work")).unwrap();
    let bk = work.join("backup");
    let o = backup_with(&s, &bk, &[]);
    assert!(o.status.success(), "{}", text(&o));
    drop(s);
    let target = work.join("rdata");
    let restore_args = [
        "restore".to_string(),
        bk.display().to_string(),
        format!("--datadir={}", target.display()),
        "--user=root".into(),
        "--mariadbd=/usr/sbin/mariadbd".into(),
        "--threads=1".into(),
    ];
    let partials = || -> Vec<PathBuf> {
        std::fs::read_dir(&work)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".rdata.tokubackup-partial-"))
            .collect()
    };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let child = Command::new(tokubackup_bin())
            .args(&restore_args)
            .env("TOKUBACKUP_TEST_COPY_DELAY_MS", "100")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Mid-copy: the partial datadir holds a file.
        let partial = work.join(format!(".rdata.tokubackup-partial-{}", child.id()));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !partial.exists() || tree(&partial).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no partial copy appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        assert!(
            !target.exists(),
            "signal {sig}: {} exists",
            target.display()
        );
        if sig == libc::SIGKILL {
            assert_eq!(o.status.code(), None);
            assert_eq!(partials(), vec![partial]);
        } else {
            assert_eq!(o.status.code(), Some(5), "signal {sig}: {}", text(&o));
            assert!(text(&o).contains("restore interrupted"), "{}", text(&o));
            assert!(partials().is_empty(), "signal {sig} left {:?}", partials());
        }
    }
    let a: Vec<&str> = restore_args.iter().map(String::as_str).collect();
    let out = tb_expect(&a, 0);
    assert!(out.contains("the partial copy of a restore"), "{out}");
    assert!(partials().is_empty(), "left {:?}", partials());
    let strip = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        tree(root)
            .into_iter()
            .map(|(f, _)| {
                (
                    f.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&f).unwrap(),
                )
            })
            .collect()
    };
    assert!(
        strip(&target) == strip(&bk.join("mysql_data_dir")),
        "restored files differ from the backup"
    );
    std::fs::remove_dir_all(&work).unwrap();
}
