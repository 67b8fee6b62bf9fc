//! libHotBackup: hot backup of directories that the process it is loaded
//! into keeps writing. Preloaded (LD_PRELOAD), it interposes the libc
//! functions that change files; `tokubackup_create_backup` copies
//! directories while mirroring every change to the parts already copied, so
//! the destination ends as an exact snapshot of one instant.
//!
//! Modules, in layers that read bottom-up (no import cycle: `layering`
//! below checks):
//! - the library's own raw I/O and errors: `sys`, `own_fds` (the numbers
//!   of the library's descriptors, which closefrom spares), `error`,
//!   `logging`;
//! - files: `source_file` (a file by identity, its range locks and mirror
//!   descriptors), `fd_cache` (the library's descriptors, bounded),
//!   `fd_table` (which file each application descriptor writes),
//!   `staging` (copies of the bytes being written);
//! - trees and names: `rel_path`, `namespace`, `dest_path`;
//! - the running backup: `session`, `progress`, `throttle`;
//! - on top: `capture` (what a hook does during a backup), `copier` (the
//!   walk and the copy), `verify` (the snapshot check), `api` (the C API);
//! - the doors: `gate` (the idle path and per-thread slots, which the
//!   layers below use too), `hooks` (interposed symbols),
//!   `boundary` (the panic boundary of every exported function), `real`
//!   (the libc functions behind them), `aio` (which asynchronous I/O is
//!   followed or refused), `uring` (io_uring rings followed), `uring_pool`
//!   (the threads that run their operations), `liburing` (its layout and
//!   numbers);
//! - tests only: `c_program` (compiles and runs C against the installed
//!   headers, for the layout tests).

#![allow(non_snake_case)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod aio;
mod api;
mod boundary;
#[cfg(test)]
mod c_program;
mod capture;
mod copier;
mod dest_path;
mod error;
mod fd_cache;
mod fd_table;
mod gate;
mod hooks;
mod liburing;
mod logging;
mod namespace;
mod own_fds;
mod progress;
mod real;
mod rel_path;
#[cfg(test)]
mod scratch;
mod session;
mod source_file;
mod staging;
mod sys;
mod throttle;
mod uring;
mod uring_pool;
mod verify;
mod write_behind;

// The constructor and the fork handler are called from C too: behind the
// panic boundary like the exported functions (gate.rs's thread-exit
// destructor only stores two flags, and gate cannot use `boundary`, which
// builds on it).
extern "C" fn after_fork_child() {
    boundary::boundary!(
        "after_fork_child",
        |_made| {
            own_fds::after_fork_child();
            gate::after_fork_child();
            session::forget_after_fork();
            api::after_fork_child();
            uring_pool::after_fork_child();
        },
        ()
    )
}

extern "C" fn init() {
    boundary::boundary!(
        "init",
        |_made| {
            gate::init();
            // SAFETY: registering a plain function as the fork child handler.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
        },
        ()
    )
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

/// The engine's modules form layers that read bottom-up: no module may
/// reach, through `crate::` paths, a module that reaches it back.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};

    /// Cycles tolerated for now: none.
    const KNOWN: &[(&str, &str)] = &[];

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut g = BTreeMap::new();
        let is_module = |name: &str| {
            dir.join(format!("{name}.rs")).exists() || dir.join(name).join("mod.rs").exists()
        };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let module = path.file_stem().unwrap().to_string_lossy().into_owned();
            // A module is a file, or a directory whose files are its parts.
            let files: Vec<_> = if path.is_dir() && is_module(&module) {
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![path]
            };
            let deps: &mut BTreeSet<String> = g.entry(module.clone()).or_default();
            for file in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "rs"))
            {
                let text = std::fs::read_to_string(file).unwrap();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (i, _) in line.match_indices("crate::") {
                        let name: String = line[i + 7..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if is_module(&name) && name != module {
                            deps.insert(name);
                        }
                    }
                }
            }
        }
        g
    }

    /// A cycle through `from`, if any: the modules along it.
    fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
        let mut stack = vec![(from.to_string(), vec![from.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for d in g.get(&m).into_iter().flatten() {
                if KNOWN
                    .iter()
                    .any(|&(a, b)| (m == a && d == b) || (m == b && d == a))
                {
                    continue;
                }
                if d == from {
                    return Some(path.clone());
                }
                if seen.insert(d.clone()) {
                    let mut p = path.clone();
                    p.push(d.clone());
                    stack.push((d.clone(), p));
                }
            }
        }
        None
    }

    #[test]
    fn modules_import_no_cycle() {
        let g = graph();
        assert!(g["capture"].contains("session") && g["hooks"].contains("capture"));
        let cycles: Vec<_> = g.keys().filter_map(|m| cycle_from(&g, m)).collect();
        assert!(cycles.is_empty(), "import cycles: {cycles:?}");
    }
}
