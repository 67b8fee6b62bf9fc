//! Test support: an empty scratch directory for one test, under the
//! system's temporary directory, named after the test and this process.

use std::path::PathBuf;

/// An empty directory `hb-NAME-PID` (emptied if it exists).
pub fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
