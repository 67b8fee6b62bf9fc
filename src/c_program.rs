//! Test support: compile a C program against installed headers and run it,
//! so that layout tests compare Rust's `repr(C)` structures and constants
//! with what the C compiler makes of the headers. Shared by the engine's
//! liburing test and the plugin's server ABI test (plugin/src/lib.rs
//! includes this file by path).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Compiles `source` with `cc` and `cflags`, runs it, and returns what it
/// printed. `name` tells the temporary directory apart; any failure panics
/// with the compiler's or the program's message.
pub fn output_of(name: &str, source: &str, cflags: &[&str]) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{name}_{}_{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let exe = dir.join(name);
    let out = Command::new("cc")
        .args(cflags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
