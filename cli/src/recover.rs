//! `verify --recover`: proves a backup restores. A scratch copy (reflinks
//! or copy_file_range; the backup is only read) is started as a throwaway
//! server, crash recovery runs, CHECK TABLE runs on every table.

use crate::args::VerifyArgs;
use crate::error::{Error, Exit, Result};
use crate::manifest::Backup;
use crate::mariadb::{Conn, ConnectOptions};
use crate::restore::{self, Target};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Server option for each directory setting the manifest names.
fn option_for(t: &Target, b: &Backup) -> Option<String> {
    let p = t.path.display();
    Some(match t.dir.setting.as_str() {
        "datadir" => format!("--datadir={p}"),
        "innodb_data_home_dir" => format!("--innodb-data-home-dir={p}"),
        "innodb_log_group_home_dir" => format!("--innodb-log-group-home-dir={p}"),
        "innodb_undo_directory" => format!("--innodb-undo-directory={p}"),
        "aria_log_dir_path" => format!("--aria-log-dir-path={p}"),
        "log_bin_basename" => {
            let base = b.binlog.as_ref()?.file.rsplit_once('.')?.0.to_string();
            format!("--log-bin={p}/{base}")
        }
        _ => return None,
    })
}

fn bin_log_option(b: &Backup, targets: &[Target]) -> Vec<String> {
    let Some(bl) = &b.binlog else {
        return Vec::new();
    };
    let mut v = vec!["--server-id=1".to_string()];
    if !targets.iter().any(|t| t.dir.setting == "log_bin_basename") {
        let base = bl.file.rsplit_once('.').map_or("mysql-bin", |(b, _)| b);
        v.push(format!("--log-bin={base}"));
    }
    v
}

struct Scratch {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_tail(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn recovery_failed(msg: String) -> Error {
    Error::new(Exit::Recovery, msg)
}

pub fn run(b: &Backup, a: &VerifyArgs) -> Result<()> {
    let parent = a
        .scratch
        .clone()
        .unwrap_or_else(|| b.dir.parent().unwrap_or(Path::new("/tmp")).to_path_buf());
    let dir = parent.join(format!(".tokubackup-recover-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(Exit::Recovery, "cannot create", &dir, &e))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        child: None,
    };
    let maps: Vec<String> = b
        .dirs
        .iter()
        .map(|d| {
            format!(
                "{}={}",
                d.original.display(),
                dir.join("d").join(&d.subdir).display()
            )
        })
        .collect();
    let targets = restore::targets(b, &dir.join("d/mysql_data_dir"), &maps)?;
    let t0 = Instant::now();
    let how = restore::Placing {
        owner: None,
        threads: a.threads,
        move_files: false,
        durable: false,
    };
    restore::place(b, &targets, how)?;
    let copy_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut conn = start(b, &targets, &mut scratch, &a.mariadbd, &a.mariadbd_args)?;
    let recovery = t1.elapsed().as_secs_f64();
    let (tables, bad) = check_tables(&mut conn)?;
    if !bad.is_empty() {
        return Err(recovery_failed(format!(
            "CHECK TABLE failed on the recovered copy:\n  {}",
            bad.join("\n  ")
        )));
    }
    println!(
        "verify --recover: copy {copy_secs:.1} s, crash recovery and start {recovery:.1} s, CHECK TABLE: all {tables} tables OK"
    );
    Ok(())
}

/// Starts `mariadbd` on the directories of `targets` (in place), with its
/// socket, pid file, error log and tmpdir in `s.dir` and the options of
/// --mariadbd-arg (which were not passed before); waits for crash recovery.
fn start(
    b: &Backup,
    targets: &[Target],
    s: &mut Scratch,
    mariadbd: &str,
    extra: &[String],
) -> Result<Conn> {
    let dir = s.dir.clone();
    let sock = dir.join("sock");
    let err_log = dir.join("err.log");
    let mut cmd = isolated_command(targets, mariadbd)?;
    cmd.arg("--no-defaults")
        .args(targets.iter().filter_map(|t| option_for(t, b)))
        .args(bin_log_option(b, targets))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--log-error={}", err_log.display()))
        .arg(format!("--tmpdir={}", dir.display()))
        .args([
            "--skip-networking",
            "--skip-grant-tables",
            "--skip-slave-start",
        ])
        .args(extra);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--user=root");
    }
    cmd.env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| recovery_failed(format!("cannot start '{mariadbd}': {e}")))?;
    s.child = Some(child);
    wait_ready(s, &sock, &err_log)
}

/// InnoDB's redo log names DATA DIRECTORY tablespaces by their absolute
/// path, so recovery would write the original files. When they exist, the
/// server runs in a private mount namespace where the scratch copies are
/// bind-mounted over the original paths (root only).
fn isolated_command(targets: &[Target], mariadbd: &str) -> Result<Command> {
    let shadow: Vec<&Target> = targets
        .iter()
        .filter(|t| t.dir.setting == "data_directory" && t.dir.original.exists())
        .collect();
    if shadow.is_empty() {
        return Ok(Command::new(mariadbd));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(recovery_failed(format!(
            "the backup has DATA DIRECTORY tables whose original directory '{}' exists here; recovery would write it: run verify --recover as root (it then runs the server in a private mount namespace) or on another host",
            shadow[0].dir.original.display()
        )));
    }
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let mut script = String::new();
    for t in shadow {
        script += &format!("mount --bind {} {} && ", q(&t.path), q(&t.dir.original));
    }
    script += "exec \"$0\" \"$@\"";
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
        mariadbd,
    ]);
    Ok(c)
}

fn wait_ready(s: &mut Scratch, sock: &Path, err_log: &Path) -> Result<Conn> {
    let opts = ConnectOptions {
        socket: Some(sock.display().to_string()),
        user: Some("root".into()),
        // No option file: option_lines stays empty.
        ..ConnectOptions::default()
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if crate::signals::interrupted() {
            return Err(Error::new(
                Exit::Interrupted,
                "verify --recover interrupted",
            ));
        }
        if let Some(Ok(Some(st))) = s.child.as_mut().map(|c| c.try_wait()) {
            return Err(recovery_failed(format!(
                "the server on the copy exited ({st}) during crash recovery; its log:\n{}",
                log_tail(err_log)
            )));
        }
        if sock.exists() {
            if let Ok(c) = Conn::connect(&opts) {
                return Ok(c);
            }
        }
        if Instant::now() > deadline {
            return Err(recovery_failed(format!(
                "the server on the copy did not start in 900 s; its log:\n{}",
                log_tail(err_log)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CHECK TABLE on every base table; (tables checked, problems).
fn check_tables(c: &mut Conn) -> Result<(usize, Vec<String>)> {
    let sql_err =
        |e: crate::mariadb::SqlError| recovery_failed(format!("on the recovered copy: {e}"));
    let tables = c
        .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN ('information_schema','performance_schema')")
        .map_err(sql_err)?;
    let mut bad = Vec::new();
    for t in &tables {
        let (db, name) = (
            t[0].clone().unwrap_or_default(),
            t[1].clone().unwrap_or_default(),
        );
        let q = format!(
            "CHECK TABLE `{}`.`{}`",
            db.replace('`', "``"),
            name.replace('`', "``")
        );
        for row in c.query(&q).map_err(sql_err)? {
            let kind = row.get(2).cloned().flatten().unwrap_or_default();
            let text = row.get(3).cloned().flatten().unwrap_or_default();
            if kind.eq_ignore_ascii_case("error")
                || (kind.eq_ignore_ascii_case("status")
                    && text != "OK"
                    && !text.contains("up to date"))
            {
                bad.push(format!("{db}.{name}: {kind}: {text}"));
            }
        }
    }
    Ok((tables.len(), bad))
}
