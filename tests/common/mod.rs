//! Shared by the engine's integration tests: find the built library, compile
//! the C test programs in tests/c against it, run them with it preloaded
//! (under a timeout, so a deadlock fails the test instead of hanging CI), and
//! temporary directories that remove themselves.

#![allow(dead_code)] // each test binary uses part of this module

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Exit status of a C program whose scenario cannot run here (hbtest.h).
pub const SKIP: i32 = 77;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cdylib cargo built for this test run: the test binary is
/// target/<profile>/deps/<name>-<hash>; the library is target/<profile>/
/// after `cargo build`, or deps/ when cargo built it only as a dependency of
/// the tests (the library target also has the rlib crate type for that);
/// or $HOTBACKUP_TEST_BUILD/libHotBackup.so when that is set.
pub fn lib_path() -> PathBuf {
    // CI points this at another build of the library (the glibc 2.17 one the
    // RPM and tarball ship) to run the same tests against it.
    if let Some(dir) = std::env::var_os("HOTBACKUP_TEST_BUILD") {
        let p = PathBuf::from(dir).join("libHotBackup.so");
        assert!(
            p.is_file(),
            "HOTBACKUP_TEST_BUILD: {} not found",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.parent()
            .expect("target/<profile>")
            .join("libHotBackup.so"),
        deps.join("libHotBackup.so"),
    ];
    // The newest, so a stale uplifted copy does not shadow a fresh build.
    let found = candidates
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    match found {
        Some(p) => p.clone(),
        None => panic!(
            "libHotBackup.so not found in {} or {}: run `cargo build` first",
            candidates[0].display(),
            candidates[1].display()
        ),
    }
}

/// A directory under the system temp dir, removed (with everything in it)
/// when dropped, also when the test panics.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "hb-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A compiled C program; its directory goes away with it.
pub struct CProgram {
    pub path: PathBuf,
    _dir: TempDir,
}

/// Compile tests/c/<name>.c against include/backup.h and the library, with
/// extra compiler flags (e.g. -D_FILE_OFFSET_BITS=64).
pub fn build_c(name: &str, flags: &[&str]) -> CProgram {
    build_c_source(
        &repo_root().join("tests/c").join(format!("{name}.c")),
        name,
        flags,
        true,
    )
}

/// Compile a C file (C++ if it ends in .cc); `link_lib` false builds a
/// program that does not depend on the library (the baseline of the errno
/// and benchmark comparisons).
pub fn build_c_source(src: &Path, name: &str, flags: &[&str], link_lib: bool) -> CProgram {
    let dir = TempDir::new(&format!("cc-{name}"));
    let out = dir.path().join(name);
    let lib = lib_path();
    let cxx = src.extension().is_some_and(|e| e == "cc");
    let mut cmd = Command::new(if cxx { "g++" } else { "gcc" });
    cmd.arg(if cxx { "-std=c++11" } else { "-std=gnu11" })
        .args(["-g", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .args(flags.iter().filter(|f| !f.starts_with("-l")))
        .arg(format!("-I{}", repo_root().join("include").display()))
        .arg("-o")
        .arg(&out)
        .arg(src)
        // Libraries after the source that uses them.
        .args(flags.iter().filter(|f| f.starts_with("-l")));
    if link_lib {
        cmd.arg(format!("-L{}", lib.parent().unwrap().display()))
            .arg("-l:libHotBackup.so");
    }
    cmd.args(["-lpthread", "-ldl"]);
    let o = cmd.output().expect("run gcc");
    assert!(
        o.status.success(),
        "gcc failed for {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    CProgram {
        path: out,
        _dir: dir,
    }
}

/// A command for `prog` with the library preloaded as a server would have it.
pub fn preloaded(prog: &Path) -> Command {
    let mut c = Command::new(prog);
    c.env("LD_PRELOAD", lib_path());
    c
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn kill_group(child: &mut Child) {
    // The program may have children of its own (fork tests): kill them too.
    let pid = child.id() as i32;
    // SAFETY: kill(2) on the process group we created for the child.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.kill();
}

/// Run a command to completion; after `timeout` kill it (and its process
/// group) and panic, naming the command.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > timeout {
            kill_group(&mut child);
            let _ = child.wait();
            let e = err.join().unwrap_or_default();
            panic!(
                "{shown} did not finish within {timeout:?} (deadlock?); stderr:\n{}",
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Panic unless the program exited 0. A program that skipped (exit 77:
/// the machine lacks what it needs, e.g. root to mount a tmpfs) proved
/// nothing, so that fails too - CI has everything - unless
/// HOTBACKUP_ALLOW_SKIP=1 accepts it for a local run, after printing why.
pub fn expect_pass(what: &str, o: &Output) {
    if o.status.code() == Some(SKIP) {
        let why = String::from_utf8_lossy(&o.stdout);
        assert!(
            std::env::var_os("HOTBACKUP_ALLOW_SKIP").is_some_and(|v| v == "1"),
            "{what} skipped itself (set HOTBACKUP_ALLOW_SKIP=1 to accept that): {}",
            show(o)
        );
        eprintln!("SKIPPED {what}: {}", why.trim());
        return;
    }
    assert!(o.status.success(), "{what} failed: {}", show(o));
}
