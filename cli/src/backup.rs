//! `tokubackup backup`: runs `SET tokudb_backup_dir` on one connection and
//! watches it from a second one, which also stops it (`KILL QUERY`) when the
//! command is interrupted.

use crate::args::{BackupArgs, ConnArgs};
use crate::error::{Error, Exit, Result};
use crate::guard::Guard;
use crate::mariadb::{quote, Conn, ConnectOptions, SqlError};
use crate::progress::{files_in, Progress, Reading};
use crate::{options, password, signals};
use std::time::{Duration, Instant};

/// errno values with which the plugin refuses a backup before it begins.
const REFUSED: [i32; 11] = [
    libc::EINVAL,
    libc::EPERM,
    libc::EACCES,
    libc::EBUSY,
    libc::ENOSYS,
    libc::EPROTO,
    libc::EEXIST,
    libc::ENOTEMPTY,
    libc::ENAMETOOLONG,
    libc::ENOTDIR,
    libc::EXDEV,
];
const ER_ACCESS_DENIED: u32 = 1227;
const ER_UNKNOWN_SYSTEM_VARIABLE: u32 = 1193;

pub fn connect_options(c: &ConnArgs) -> Result<ConnectOptions> {
    let password = match &c.password {
        Some(p) if p.is_empty() => Some(password::prompt("password")?),
        p => p.clone(),
    };
    Ok(ConnectOptions {
        socket: c.socket.clone(),
        host: c.host.clone(),
        port: c.port,
        user: c.user.clone(),
        password,
        option_lines: options::collect(&options::Sources {
            defaults_file: c.defaults_file.clone(),
            extra_file: c.defaults_extra_file.clone(),
            no_defaults: c.no_defaults,
        })?,
    })
}

fn prepare(conn: &mut Conn, a: &BackupArgs) -> Result<()> {
    let refused = |e: SqlError| Error::new(Exit::Refused, format!("the server refused: {e}"));
    match conn.value("SELECT @@tokudb_backup_plugin_version") {
        Err(e) if e.code == ER_UNKNOWN_SYSTEM_VARIABLE => {
            return Err(Error::new(
                Exit::Refused,
                "the tokudb_backup plugin is not installed on the server (INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so')",
            ))
        }
        Err(e) => return Err(refused(e)),
        Ok(_) => {}
    }
    if let Some(t) = a.throttle {
        conn.query(&format!("SET tokudb_backup_throttle={t}"))
            .map_err(refused)?;
    }
    if let Some(x) = &a.exclude {
        conn.query(&format!("SET tokudb_backup_exclude={}", quote(x)))
            .map_err(refused)?;
    }
    Ok(())
}

fn read_progress(c: &mut Conn, id: u64) -> Option<Reading> {
    let rows = c.query("SHOW GLOBAL STATUS LIKE 'Tokudb_backup%'").ok()?;
    let mut r = Reading::default();
    for row in rows {
        let (k, v) = (
            row[0].clone().unwrap_or_default(),
            row[1].clone().unwrap_or_default(),
        );
        let n = v.parse().unwrap_or(0);
        match k.to_ascii_lowercase().as_str() {
            "tokudb_backup_state" => r.state = v,
            "tokudb_backup_bytes_copied" => r.copied = n,
            "tokudb_backup_bytes_total" => r.total = n,
            "tokudb_backup_rate" => r.rate = n,
            _ => {}
        }
    }
    let state = c
        .value(&format!(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID={id}"
        ))
        .ok()
        .flatten()
        .unwrap_or_default();
    r.files = files_in(&state);
    Some(r)
}

/// What the SET statement returned, with the session's last error.
struct Outcome {
    result: std::result::Result<(), SqlError>,
    errno: i32,
    message: String,
}

fn run_set(mut conn: Conn, dest: String) -> Outcome {
    let result = conn
        .query(&format!("SET tokudb_backup_dir={}", quote(&dest)))
        .map(|_| ());
    let last = conn
        .query("SELECT @@tokudb_backup_last_error, @@tokudb_backup_last_error_string")
        .ok()
        .and_then(|r| r.into_iter().next());
    let (errno, message) = match last {
        Some(row) => (
            row[0].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            row[1].clone().unwrap_or_default(),
        ),
        None => (0, String::new()),
    };
    Outcome {
        result,
        errno,
        message,
    }
}

fn classify(o: Outcome, killed: bool, dest: &str) -> Result<()> {
    let Err(e) = o.result else { return Ok(()) };
    let why = if o.message.is_empty() {
        e.to_string()
    } else {
        o.message.clone()
    };
    if killed {
        return Err(Error::new(
            Exit::Interrupted,
            format!("interrupted: the backup into '{dest}' was stopped on the server and is marked incomplete: {why}"),
        ));
    }
    if e.code == ER_ACCESS_DENIED || REFUSED.contains(&o.errno) {
        return Err(Error::new(
            Exit::Refused,
            format!("the server refused the backup into '{dest}': {why}"),
        ));
    }
    if o.errno == 0 && o.message.is_empty() {
        return Err(Error::new(
            Exit::BackupFailed,
            format!("the backup into '{dest}' failed: {e} (the connection ended; the server stops the backup and marks it incomplete)"),
        ));
    }
    Err(Error::new(
        Exit::BackupFailed,
        format!("the backup into '{dest}' failed (errno {}): {why}", o.errno),
    ))
}

pub fn run(a: &BackupArgs, opts: &ConnectOptions, mut guard: Guard) -> Result<()> {
    let mut main = Conn::connect(opts)?;
    let mut watch = Conn::connect(opts)?;
    prepare(&mut main, a)?;
    let id = main.thread_id();
    guard.arm(id);
    let dest = a.dest.clone();
    let t0 = Instant::now();
    let worker = std::thread::spawn(move || run_set(main, dest));
    let mut progress = Progress::new();
    let mut killed = false;
    let mut last_poll: Option<Instant> = None;
    while !worker.is_finished() {
        if signals::interrupted() && !killed {
            killed = true;
            progress.note("tokubackup: stopping the backup on the server (KILL QUERY)");
            if let Err(e) = watch.query(&format!("KILL QUERY {id}")) {
                progress.note(&format!("tokubackup: KILL QUERY {id} failed: {e}"));
            }
        }
        if last_poll.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            last_poll = Some(Instant::now());
            if let Some(r) = read_progress(&mut watch, id) {
                progress.update(&r);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    progress.finish();
    let outcome = worker.join();
    guard.disarm();
    let outcome =
        outcome.map_err(|_| Error::new(Exit::BackupFailed, "the backup thread panicked"))?;
    classify(outcome, killed, &a.dest)?;
    eprintln!(
        "tokubackup: backup into '{}' complete in {:.1} s",
        a.dest,
        t0.elapsed().as_secs_f64()
    );
    if let Some(repo) = &a.push {
        let threads = crate::args::default_threads();
        crate::repository::push(std::path::Path::new(&a.dest), repo, &a.key, threads, false)?;
    }
    if a.json {
        let p = std::path::Path::new(&a.dest).join(crate::manifest::MANIFEST);
        match std::fs::read_to_string(&p) {
            Ok(t) => print!("{t}"),
            Err(e) => eprintln!("tokubackup: the backup is complete but its manifest '{}' is not readable here ({e}): is the server on another host?", p.display()),
        }
    }
    Ok(())
}
