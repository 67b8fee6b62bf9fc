//! Test harness: throwaway MariaDB servers with libHotBackup preloaded and
//! the plugin in their plugin dir, a SQL client, and the bank workload.
//!
//! Every server lives in its own temporary directory (datadir, socket, pid
//! file, error log) and listens on a free port of 127.0.0.1; it is killed by
//! pid when its guard drops, and shared servers are killed at exit. The
//! directory is kept (and named on stderr) when the test failed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// target/<profile> of this test binary (target/<profile>/deps/test-xxx).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// target/<profile>/deps/NAME, which the test build itself (re)builds (the
/// library is a dev-dependency, the plugin's lib target is built for its
/// tests), else target/<profile>/NAME. deps/ first: target/<profile>/ may
/// hold a build of another server ABI (--features mysql80). Or
/// $HOTBACKUP_TEST_BUILD/NAME when that is set.
fn artifact(name: &str) -> PathBuf {
    // CI points this at another build (the glibc 2.17 one the RPM and
    // tarball ship) to run the same tests against it.
    if let Some(dir) = std::env::var_os("HOTBACKUP_TEST_BUILD") {
        let p = PathBuf::from(dir).join(name);
        assert!(
            p.is_file(),
            "HOTBACKUP_TEST_BUILD: {} not found",
            p.display()
        );
        return p;
    }
    let t = target_dir();
    [t.join("deps").join(name), t.join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} not built in {} (run cargo build --workspace)",
                t.display()
            )
        })
}

pub fn library_path() -> PathBuf {
    artifact("libHotBackup.so")
}

pub fn plugin_path() -> PathBuf {
    let p = artifact("libtokudb_backup.so");
    // A build for another server ABI (--features mysql80) writes the same
    // file name, and cargo may then take the MariaDB build for fresh.
    let bytes = std::fs::read(&p).unwrap();
    let marker = b"_maria_plugin_declarations_";
    assert!(
        bytes.windows(marker.len()).any(|w| w == marker),
        "{} is not a MariaDB build of the plugin (another --features build overwrote it): \
         run `cargo clean -p tokudb_backup` and test again",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Installs the server packages once per test binary when they are missing.
pub fn ensure_deps() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if Path::new("/usr/sbin/mariadbd").exists()
            && which("mariadb-install-db")
            && which("mariadb")
        {
            return;
        }
        let st = Command::new("bash")
            .arg(repo_root().join("ci/install-deps.sh"))
            .status()
            .expect("run ci/install-deps.sh");
        assert!(st.success(), "ci/install-deps.sh failed");
    });
}

pub fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn scratch_root() -> PathBuf {
    let r = std::env::temp_dir().join("tokudb-backup-tests");
    std::fs::create_dir_all(&r).unwrap();
    r
}

/// Build tests/c/progress_client.c (libmariadb, through mariadb_config)
/// into `dir`.
pub fn build_progress_client(dir: &Path) -> PathBuf {
    let flags = Command::new("mariadb_config")
        .args(["--cflags", "--libs"])
        .output()
        .expect("mariadb_config (package libmariadb-dev)");
    assert!(flags.status.success(), "mariadb_config failed");
    let out = dir.join("progress_client");
    let src = repo_root().join("plugin/tests/c/progress_client.c");
    let o = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(String::from_utf8_lossy(&flags.stdout).split_whitespace())
        .output()
        .expect("run gcc");
    assert!(
        o.status.success(),
        "gcc failed for {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A new empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = scratch_root().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A datadir made by mariadb-install-db once per test binary, copied for
/// each server (install-db takes seconds; a copy is instant).
fn template_datadir() -> PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        ensure_deps();
        let base = scratch("template");
        remove_at_exit(&base);
        let d = base.join("data");
        install_db(&d, &[]);
        d
    })
    .clone()
}

/// Every directory a server writes outside its datadir: InnoDB's data home,
/// redo log and undo, the binary log, Aria's log, and DATA DIRECTORY
/// tables of InnoDB (`ext`) and Aria (`ext_aria`).
pub struct OutsideDirs {
    pub datadir: PathBuf,
    pub ibdata: PathBuf,
    pub redo: PathBuf,
    pub undo: PathBuf,
    pub binlog: PathBuf,
    pub arialog: PathBuf,
    pub ext: PathBuf,
    pub ext_aria: PathBuf,
}

impl OutsideDirs {
    /// Under `work`; all but the datadir (which install-db makes) created.
    pub fn create(work: &Path) -> OutsideDirs {
        let d = |n: &str| {
            let p = work.join(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        OutsideDirs {
            datadir: work.join("data"),
            ibdata: d("ibdata"),
            redo: d("redo"),
            undo: d("undo"),
            binlog: d("binlog"),
            arialog: d("arialog"),
            ext: d("ext"),
            ext_aria: d("ext_aria"),
        }
    }

    /// [`create`](Self::create)d under `work`, with a datadir installed
    /// for them; and the server options that place them.
    pub fn installed(work: &Path) -> (OutsideDirs, Vec<String>) {
        let dirs = OutsideDirs::create(work);
        let options = dirs.options();
        install_db(&dirs.datadir, &options[..INSTALL_DB_OPTIONS]);
        (dirs, options)
    }

    /// The server options that place the directories; the first
    /// `INSTALL_DB_OPTIONS` of them are also install-db's.
    pub fn options(&self) -> Vec<String> {
        outside_options(
            &self.ibdata,
            &self.redo,
            &self.undo,
            &self.arialog,
            &self.binlog,
        )
    }
}

/// How many of [`outside_options`] mariadb-install-db needs (the binary log
/// options come after them).
pub const INSTALL_DB_OPTIONS: usize = 5;

/// Server options for InnoDB's data home, redo log and undo, Aria's log and
/// the binary log in the given directories.
pub fn outside_options(
    ibdata: &Path,
    redo: &Path,
    undo: &Path,
    arialog: &Path,
    binlog: &Path,
) -> Vec<String> {
    vec![
        format!("--innodb-data-home-dir={}", ibdata.display()),
        format!("--innodb-log-group-home-dir={}", redo.display()),
        format!("--innodb-undo-directory={}", undo.display()),
        "--innodb-undo-tablespaces=2".to_string(),
        format!("--aria-log-dir-path={}", arialog.display()),
        format!("--log-bin={}/mysql-bin", binlog.display()),
        "--server-id=1".to_string(),
    ]
}

/// A fresh datadir made with extra server options (e.g. an undo directory
/// or InnoDB data home outside it, which must be set at creation).
pub fn install_db(datadir: &Path, extra: &[String]) {
    ensure_deps();
    // Its own tmpdir: no other server on the machine sees (or cleans) the
    // bootstrap's temporary tables.
    let tmp = datadir.with_extension("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new("mariadb-install-db")
        .arg(format!("--tmpdir={}", tmp.display()))
        .args([
            "--no-defaults",
            "--user=root",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ])
        .arg(format!("--datadir={}", datadir.display()))
        .args(extra)
        .output()
        .expect("mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pids of servers to kill when the test process exits (shared servers
/// live in statics, whose destructors never run), and directories to remove
/// then (the template datadir, the shared servers' directories). Set
/// KEEP_TEST_DIRS=1 to keep the directories.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static AT_EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn clean_up_at_exit() {
    if let Ok(v) = LIVE.lock() {
        for &pid in v.iter() {
            // SAFETY: kill() on a pid we started; SIGKILL cannot be caught.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Reap it so its files are closed before they are removed.
            // SAFETY: waitpid on our own child; status is not needed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
    if std::env::var_os("KEEP_TEST_DIRS").is_none() {
        if let Ok(v) = AT_EXIT_DIRS.lock() {
            for d in v.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

fn at_exit_once() {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" fn with no arguments.
        unsafe { libc::atexit(clean_up_at_exit) };
    });
}

/// Removes `dir` when the test process exits.
pub fn remove_at_exit(dir: &Path) {
    at_exit_once();
    AT_EXIT_DIRS.lock().unwrap().push(dir.to_path_buf());
}

fn register(pid: i32) {
    at_exit_once();
    LIVE.lock().unwrap().push(pid);
}

fn unregister(pid: i32) {
    LIVE.lock().unwrap().retain(|&p| p != pid);
}

#[derive(Clone)]
pub struct Opts {
    /// Library to LD_PRELOAD (None: start without it).
    pub preload: Option<PathBuf>,
    /// INSTALL PLUGIN after start.
    pub install_plugin: bool,
    pub log_bin: bool,
    pub extra: Vec<String>,
    /// Use this datadir instead of a fresh copy of the template.
    pub datadir: Option<PathBuf>,
    /// More environment for mariadbd.
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            preload: Some(library_path()),
            install_plugin: true,
            log_bin: true,
            extra: Vec::new(),
            datadir: None,
            env: Vec::new(),
        }
    }
}

pub struct Server {
    pub base: PathBuf,
    pub datadir: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub err_log: PathBuf,
    pub plugin_dir: PathBuf,
    /// More directories to remove with the server (e.g. a restored copy).
    pub owned_dirs: Vec<PathBuf>,
    child: Option<Child>,
    pid: i32,
}

impl Server {
    pub fn start(name: &str, opts: Opts) -> Server {
        ensure_deps();
        let base = scratch(name);
        let datadir = match &opts.datadir {
            Some(d) => d.clone(),
            None => {
                let d = base.join("data");
                let st = Command::new("cp")
                    .arg("-a")
                    .arg(template_datadir())
                    .arg(&d)
                    .status()
                    .unwrap();
                assert!(st.success());
                d
            }
        };
        let plugin_dir = base.join("plugins");
        std::fs::create_dir_all(&plugin_dir).unwrap();
        let plugin = plugin_path();
        std::os::unix::fs::symlink(&plugin, plugin_dir.join("tokudb_backup.so")).unwrap();
        std::os::unix::fs::symlink(&plugin, plugin_dir.join("tokubackup.so")).unwrap();
        // Socket and pid file in the datadir, as many installations have
        // them: the backup must leave both out.
        let sock = datadir.join("sock");
        let err_log = base.join("err.log");
        let tmpdir = base.join("tmp");
        std::fs::create_dir_all(&tmpdir).unwrap();
        let port = free_port();
        let mut cmd = Command::new("/usr/sbin/mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg(format!(
                "--pid-file={}",
                datadir.join("mariadbd.pid").display()
            ))
            .arg(format!("--log-error={}", err_log.display()))
            .arg(format!("--plugin-dir={}", plugin_dir.display()))
            .arg(format!("--tmpdir={}", tmpdir.display()))
            .arg("--innodb-buffer-pool-size=128M")
            .arg("--max-connections=200");
        if opts.log_bin {
            cmd.arg("--log-bin=mysql-bin").arg("--server-id=1");
        }
        cmd.args(&opts.extra);
        cmd.env_remove("LD_PRELOAD");
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        if let Some(lib) = &opts.preload {
            cmd.env("LD_PRELOAD", lib);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn mariadbd");
        let pid = child.id() as i32;
        register(pid);
        let mut s = Server {
            base,
            datadir,
            sock,
            port,
            err_log,
            plugin_dir,
            owned_dirs: Vec::new(),
            child: Some(child),
            pid,
        };
        s.wait_ready();
        if opts.install_plugin {
            s.sql("INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'");
        }
        s
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "mariadbd exited ({st}) while starting; error log:\n{}",
                        self.log_tail(40)
                    );
                }
            }
            if self.query("SELECT 1").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start; log:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err_log).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        let lines: Vec<&str> = l.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A client command for this server (batch mode, no column names).
    pub fn client(&self, user: &str) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", self.sock.display()))
            .arg(format!("-u{user}"))
            // -r: values as they are (batch mode would escape backslashes).
            .args(["-N", "-B", "-r"]);
        c
    }

    /// Runs statements as root; Err(stderr) when one fails.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        self.query_as("root", sql)
    }

    pub fn query_as(&self, user: &str, sql: &str) -> Result<String, String> {
        let out = self
            .client(user)
            .arg("-e")
            .arg(sql)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// Runs statements as root and panics (with the error log) on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.query(sql).unwrap_or_else(|e| {
            panic!("SQL failed: {sql}\n{e}\nserver log:\n{}", self.log_tail(20))
        })
    }

    /// Runs a script in one session, continuing after errors (--force).
    /// Returns (stdout, stderr).
    pub fn session(&self, user: &str, script: &str) -> (String, String) {
        let out = self.session_output(user, script);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn session_output(&self, user: &str, script: &str) -> Output {
        self.spawn_session(user, script).wait_with_output().unwrap()
    }

    /// Starts a session running `script` in the background (--force: later
    /// statements run after a failed one).
    pub fn spawn_session(&self, user: &str, script: &str) -> Child {
        use std::io::Write;
        let mut child = self
            .client(user)
            .arg("--force")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child
    }

    /// Runs `SET tokudb_backup_dir` in one session and returns
    /// (Ok or the client's error, last_error, last_error_string).
    pub fn backup(
        &self,
        user: &str,
        prelude: &str,
        dest: &str,
    ) -> (Result<(), String>, u64, String) {
        let (out, err) = self.session(user, &backup_script(prelude, dest));
        parse_backup_result(&out, &err)
    }

    /// Runs `script` in a background session. Without `force` it stops at
    /// its first error (which rolls the open transaction back when the
    /// session ends); with it, it goes on.
    pub fn spawn_script(&self, user: &str, script: &str, force: bool) -> Child {
        use std::io::Write;
        let mut cmd = self.client(user);
        if force {
            cmd.arg("--force");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let script = script.to_string();
        // Fed from a thread: the script may be larger than the pipe buffer.
        std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        child
    }

    /// Starts `SET tokudb_backup_dir` in a background session; finish it
    /// with [`finish_backup`].
    pub fn spawn_backup(&self, prelude: &str, dest: &str) -> Child {
        self.spawn_session("root", &backup_script(prelude, dest))
    }

    /// Connection id of the session running a backup, once it is copying.
    pub fn backup_connection(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let id = self.sql(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SET tokudb_backup_dir%' AND STATE LIKE '%done%'",
            );
            if let Ok(id) = id.trim().parse() {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "backup did not show up in the processlist"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A global status variable's value.
    pub fn status(&self, name: &str) -> String {
        let out = self.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        out.split_once('\t')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    }
}

pub fn backup_script(prelude: &str, dest: &str) -> String {
    format!(
        "{prelude}\nSET tokudb_backup_dir='{}';\nSELECT 'RESULT', @@tokudb_backup_last_error, IFNULL(@@tokudb_backup_last_error_string, '');\n",
        dest.replace('\'', "''")
    )
}

/// Waits for a session from [`Server::spawn_backup`]; same result as [`Server::backup`].
pub fn finish_backup(child: Child) -> (Result<(), String>, u64, String) {
    let out = child.wait_with_output().unwrap();
    parse_backup_result(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

fn parse_backup_result(out: &str, err: &str) -> (Result<(), String>, u64, String) {
    {
        let line = out
            .lines()
            .find(|l| l.starts_with("RESULT\t"))
            .unwrap_or_else(|| panic!("no result line; stdout: {out}\nstderr: {err}"));
        let mut parts = line.splitn(3, '\t');
        parts.next();
        let errno: u64 = parts.next().unwrap().parse().unwrap();
        let msg = parts.next().unwrap_or("").to_string();
        let res = if err.contains("ERROR") {
            Err(err.to_string())
        } else {
            Ok(())
        };
        (res, errno, msg)
    }
}

impl Server {
    /// Stops the server cleanly (SIGTERM, then wait).
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            unregister(self.pid);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            unregister(self.pid);
        }
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
            for d in &self.owned_dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

/// Starts a server on a backup: its mysql_data_dir (copied, so the backup
/// stays as it was), with the binary log when the backup has one.
pub fn start_restored(name: &str, backup: &Path) -> Server {
    let manifest = read_manifest(backup);
    let work = scratch(&format!("{name}-restore"));
    let data = work.join("data");
    let st = Command::new("cp")
        .arg("-a")
        .arg(backup.join("mysql_data_dir"))
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    let log_bin = !manifest["binlog"].is_null();
    let mut s = Server::start(
        name,
        Opts {
            preload: None,
            install_plugin: false,
            log_bin,
            extra: Vec::new(),
            datadir: Some(data),
            env: Vec::new(),
        },
    );
    s.owned_dirs.push(work);
    s
}

pub fn read_manifest(backup: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(backup.join("backup-manifest.json"))
        .unwrap_or_else(|e| panic!("no manifest in {}: {e}", backup.display()));
    serde_json::from_str(&text).unwrap()
}

/// CHECK TABLE on every table of every database; panics on anything not OK.
pub fn check_all_tables(s: &Server) -> usize {
    let out = Command::new("mariadb-check")
        .arg("--no-defaults")
        .arg(format!("--socket={}", s.sock.display()))
        .args(["-uroot", "--all-databases", "--check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mariadb-check failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tables = 0;
    let mut bad = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.ends_with("OK") {
            tables += 1;
        } else if !(l.starts_with("note") || l.contains("doesn't support check") || l.is_empty()) {
            bad.push(line.to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "CHECK TABLE problems:\n{}\nfull output:\n{text}",
        bad.join("\n")
    );
    tables
}

// ---------------------------------------------------------------- workload

pub const ACCOUNTS: u32 = 100;
pub const INITIAL: i64 = 1000;

/// Bank schema: InnoDB accounts + transfer log, an Aria ledger, and a filler
/// table so the backup takes a moment.
/// The server of the consistency test and of its crash control: started
/// with `opts` (the library preloaded, default I/O settings: InnoDB writes
/// pages through io_uring, which the library follows), the bank loaded,
/// transfers and DDL running.
pub fn start_bank_under_load(name: &str, opts: Opts) -> (Server, Load) {
    start_bank_under_load_with(name, opts, true)
}

/// `start_bank_under_load`, with or without transfers on the Aria ledger.
pub fn start_bank_under_load_with(name: &str, opts: Opts, aria: bool) -> (Server, Load) {
    let s = Server::start(name, opts);
    let log = s.log();
    assert!(
        log.contains("Using io_uring") && !log.contains("falling back"),
        "InnoDB does not use io_uring with the library preloaded:\n{}",
        s.log_tail(30)
    );
    load_bank(&s, 65536);
    let load = Load::start_with(&s, aria);
    (s, load)
}

pub fn load_bank(s: &Server, filler_rows: u32) {
    load_bank_with(s, filler_rows, None, None)
}

/// Same, with the accounts (InnoDB) and the ledger (Aria) created with
/// DATA DIRECTORY outside the datadir when given.
pub fn load_bank_with(
    s: &Server,
    filler_rows: u32,
    innodb_dir: Option<&Path>,
    aria_dir: Option<&Path>,
) {
    let dd = |d: Option<&Path>| {
        d.map(|d| format!(" DATA DIRECTORY='{}'", d.display()))
            .unwrap_or_default()
    };
    let mut sql = format!(
        "CREATE DATABASE bank;
         CREATE TABLE bank.accounts(id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB{};
         CREATE TABLE bank.transfers(id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL, client INT NOT NULL) ENGINE=InnoDB;
         CREATE TABLE bank.aria_ledger(id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=Aria TRANSACTIONAL=1{};
         CREATE TABLE bank.filler(id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB;\n",
        dd(innodb_dir),
        dd(aria_dir)
    );
    let vals: Vec<String> = (1..=ACCOUNTS).map(|i| format!("({i},{INITIAL})")).collect();
    sql += &format!("INSERT INTO bank.accounts VALUES {};\n", vals.join(","));
    sql += &format!("INSERT INTO bank.aria_ledger VALUES {};\n", vals.join(","));
    sql += "INSERT INTO bank.filler(pad) VALUES (REPEAT('x',255)),(REPEAT('y',255)),(REPEAT('z',255)),(REPEAT('w',255));\n";
    let mut rows = 4u32;
    while rows < filler_rows {
        sql += "INSERT INTO bank.filler(pad) SELECT pad FROM bank.filler;\n";
        rows *= 2;
    }
    s.sql(&sql);
}

/// Deterministic pseudo-random numbers (no extra crate).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A transfer client's script: `n` transactions, rows locked in id order so
/// writers never deadlock (a deadlock would make the client stop); with
/// `aria`, each also moves money between two rows of the Aria ledger.
pub fn transfer_script(client: u32, n: u32, aria: bool) -> String {
    let mut r = Rng::new(u64::from(client) + 1);
    let mut s = String::new();
    for _ in 0..n {
        let a = 1 + r.below(u64::from(ACCOUNTS)) as u32;
        let mut b = 1 + r.below(u64::from(ACCOUNTS)) as u32;
        if b == a {
            b = a % ACCOUNTS + 1;
        }
        let amount = 1 + r.below(50);
        let (lo, hi) = (a.min(b), a.max(b));
        let delta = |id: u32| {
            if id == a {
                format!("-{amount}")
            } else {
                format!("+{amount}")
            }
        };
        s += &format!(
            "START TRANSACTION;\nUPDATE bank.accounts SET balance=balance{} WHERE id={lo};\nUPDATE bank.accounts SET balance=balance{} WHERE id={hi};\nINSERT INTO bank.transfers(src,dst,amount,client) VALUES ({a},{b},{amount},{client});\nCOMMIT;\n",
            delta(lo),
            delta(hi)
        );
        // One statement moves money between two Aria rows (atomic per statement).
        if aria {
            s += &format!(
                "UPDATE bank.aria_ledger SET balance=balance+IF(id={a},-{amount},{amount}) WHERE id IN ({a},{b});\n"
            );
        }
    }
    s
}

/// DDL of every kind on InnoDB and Aria tables, `rounds` times.
pub fn ddl_script(client: u32, rounds: u32) -> String {
    let mut s = String::from("CREATE DATABASE IF NOT EXISTS ddl;\n");
    for i in 0..rounds {
        let t = format!("ddl.t{client}_{i}");
        let u = format!("ddl.u{client}_{i}");
        let db = format!("ddldb{client}_{i}");
        s += &format!(
            "CREATE TABLE {t}(id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB;
INSERT INTO {t}(v) VALUES ('a'),('b'),('c');
INSERT INTO {t}(v) SELECT v FROM {t};
ALTER TABLE {t} FORCE;
OPTIMIZE TABLE {t};
RENAME TABLE {t} TO {u};
CREATE TABLE {t}(id INT PRIMARY KEY, v INT) ENGINE=Aria;
INSERT INTO {t} VALUES (1,1),(2,2);
ALTER TABLE {t} FORCE;
CREATE DATABASE {db};
CREATE TABLE {db}.x(id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE {db}.y(id INT PRIMARY KEY) ENGINE=Aria;
INSERT INTO {db}.x VALUES (1);
DROP DATABASE {db};
DROP TABLE {t};
"
        );
        if i % 2 == 1 {
            // Keep some of the renamed tables, drop the others.
            s += &format!("DROP TABLE {u};\n");
        }
        if i % 3 == 0 {
            // Rebuild the hot table while transfers run.
            s += "ALTER TABLE bank.accounts FORCE;\nOPTIMIZE TABLE bank.transfers;\n";
        }
    }
    s
}

/// Checks the bank's invariants on a (restored) server; returns the number
/// of transfers.
pub fn verify_bank(s: &Server) -> u64 {
    let total: i64 = s
        .sql("SELECT SUM(balance) FROM bank.accounts")
        .parse()
        .unwrap();
    assert_eq!(total, i64::from(ACCOUNTS) * INITIAL, "InnoDB total changed");
    let aria: i64 = s
        .sql("SELECT SUM(balance) FROM bank.aria_ledger")
        .parse()
        .unwrap();
    assert_eq!(aria, i64::from(ACCOUNTS) * INITIAL, "Aria total changed");
    // Every committed transfer is in the log exactly once: each balance is
    // the initial one plus what the log says came in minus what went out.
    let mismatched = s.sql(&format!(
        "SELECT COUNT(*) FROM bank.accounts a LEFT JOIN (
            SELECT id, SUM(d) AS d FROM (
              SELECT src AS id, -amount AS d FROM bank.transfers
              UNION ALL SELECT dst, amount FROM bank.transfers) m GROUP BY id) t
         ON a.id=t.id WHERE a.balance <> {INITIAL} + IFNULL(t.d, 0)"
    ));
    assert_eq!(mismatched, "0", "balances disagree with the transfer log");
    s.sql("SELECT COUNT(*) FROM bank.transfers")
        .parse()
        .unwrap()
}

pub const TRANSFER_CLIENTS: u32 = 3;

/// The consistency load: transfer clients and one DDL client.
pub struct Load {
    clients: Vec<(String, Child)>,
}

impl Load {
    /// Transfers on InnoDB and Aria, and the DDL client.
    pub fn start(s: &Server) -> Load {
        Load::start_with(s, true)
    }

    /// The same with transfers on InnoDB only (see `replica_from_a_backup_catches_up`).
    pub fn start_with(s: &Server, aria: bool) -> Load {
        let mut clients = Vec::new();
        for c in 0..TRANSFER_CLIENTS {
            clients.push((
                format!("transfers {c}"),
                s.spawn_script("root", &transfer_script(c, 60_000, aria), false),
            ));
        }
        clients.push((
            "ddl".into(),
            s.spawn_script("root", &ddl_script(100, 2000), false),
        ));
        Load { clients }
    }

    /// Every client must still be running: the load covered the backup.
    pub fn assert_running(&mut self) {
        for (name, c) in &mut self.clients {
            if let Ok(Some(st)) = c.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                let _ = c.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("client '{name}' ended early ({st}): {err}");
            }
        }
    }

    pub fn stop(self) {
        for (_, mut c) in self.clients {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------- restored-server checks

/// Transfers recorded in the backup's binary logs up to the snapshot position.
pub fn transfers_in_binlog(backup: &Path) -> u64 {
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

pub fn verify_restored(name: &str, r: &Server, backup: &Path) {
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
    // The restored server's GTID position is the snapshot's, plus what its
    // own DDL crash recovery finished and logged (an ALTER interrupted by the
    // snapshot instant is completed and binlogged anew on startup).
    let snapshot = m["binlog"]["gtid_position"].as_str().unwrap();
    let restored = r.sql("SELECT @@gtid_binlog_pos");
    if restored != snapshot {
        let seq = |g: &str| -> u64 { g.rsplit('-').next().unwrap().parse().unwrap() };
        let redone: u64 = r
            .log()
            .lines()
            .find_map(|l| l.split("DDL_LOG: Crash recovery executed ").nth(1))
            .and_then(|t| t.split(' ').next()?.parse().ok())
            .unwrap_or(0);
        assert!(
            seq(&restored) > seq(snapshot) && seq(&restored) - seq(snapshot) <= redone,
            "restored GTID {restored} vs snapshot {snapshot} ({redone} DDL recovered)"
        );
    }
}
