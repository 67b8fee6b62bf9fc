//! The engine (libHotBackup.so) tested from outside, as a server uses it:
//! C programs from tests/c, linked against include/backup.h and run with
//! the library preloaded. Each test runs one named scenario and asserts on
//! the program's own checks (bytes, names, return codes, errno values).

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LFS: &str = "-D_FILE_OFFSET_BITS=64";

/// Build `program`, run `scenario` in a fresh work dir with the library
/// preloaded; it must pass (see `expect_pass` for skips).
fn scenario(program: &str, scenario: &str, timeout_s: u64) {
    scenario_with(program, scenario, timeout_s, &[], &[])
}

fn scenario_with(
    program: &str,
    scenario: &str,
    timeout_s: u64,
    flags: &[&str],
    env: &[(&str, &str)],
) {
    let prog = build_c(program, flags);
    let work = TempDir::new(&format!("{program}-{scenario}"));
    let mut cmd = preloaded(&prog.path);
    cmd.arg(work.path()).arg(scenario).envs(env.iter().copied());
    let out = run_with_timeout(cmd, Duration::from_secs(timeout_s));
    expect_pass(&format!("{program} {scenario}"), &out);
}

// ---- 1. randomized concurrency (tests/c/stress.c) ----

fn stress(flags: &[&str], throttle: Option<&str>) {
    stress_with(flags, throttle, &[]);
}

fn stress_with(flags: &[&str], throttle: Option<&str>, env: &[(&str, &str)]) {
    let iterations = std::env::var("HOTBACKUP_STRESS_ITERATIONS").unwrap_or_else(|_| "60".into());
    let seed = std::env::var("HOTBACKUP_STRESS_SEED").unwrap_or_else(|_| {
        (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000)
            .to_string()
    });
    let prog = build_c("stress", flags);
    let work = TempDir::new("stress");
    let mut cmd = preloaded(&prog.path);
    cmd.args([iterations.as_str(), seed.as_str()])
        .arg(work.path());
    if let Some(t) = throttle {
        cmd.env("STRESS_THROTTLE", t);
    }
    cmd.envs(env.iter().copied());
    // Generous: CI raises the iteration count; a hang is still caught.
    let limit = Duration::from_secs(120 + 3 * iterations.parse::<u64>().unwrap_or(60));
    let out = run_with_timeout(cmd, limit);
    assert!(
        out.status.success(),
        "stress {flags:?} throttle {throttle:?} failed. Reproduce with HOTBACKUP_STRESS_SEED={seed} \
         HOTBACKUP_STRESS_ITERATIONS={iterations} (or `stress 1 <seed printed below> DIR`).\n{}",
        show(&out)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

#[test]
fn stress_plain_symbols() {
    stress(&[], None);
}

#[test]
fn stress_large_file_symbols() {
    stress(&[LFS], None);
}

#[test]
fn stress_throttled_copier() {
    stress(&[LFS], Some("20000000"));
}

/// Mirrored bytes written by the application's threads themselves, as
/// with `HOTBACKUP_WRITE_BEHIND=off`.
#[test]
fn stress_without_write_behind() {
    stress_with(&[LFS], None, &[("HOTBACKUP_WRITE_BEHIND", "off")]);
}

// ---- 2. the C API's contract (tests/c/api.c) ----

#[test]
fn api_null_args() {
    scenario("api", "null_args", 30);
}

#[test]
fn api_missing_source() {
    scenario("api", "missing_source", 30);
}

#[test]
fn api_dest_not_empty() {
    scenario("api", "dest_not_empty", 30);
}

#[test]
fn api_overlap() {
    scenario("api", "overlap", 30);
}

#[test]
fn api_dest_contract() {
    scenario("api", "dest_contract", 30);
}

/// C++ callers of Percona's header pass nine arguments, leaving the
/// stop-capture callbacks to their default (NULL): that must compile
/// against ours, link, and back up.
#[test]
fn api_cxx_default_arguments() {
    let prog = build_c_source(
        &repo_root().join("tests/c/cxx_defaults.cc"),
        "cxx_defaults",
        &[],
        true,
    );
    let work = TempDir::new("cxx-defaults");
    let mut cmd = preloaded(&prog.path);
    cmd.arg(work.path());
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    expect_pass("cxx_defaults", &out);
}

#[test]
fn api_concurrent_busy() {
    scenario("api", "concurrent_busy", 60);
}

#[test]
fn api_poll_progress() {
    scenario("api", "poll_progress", 60);
}

#[test]
fn api_poll_abort() {
    scenario("api", "poll_abort", 60);
}

#[test]
fn api_exclude() {
    scenario("api", "exclude", 30);
}

#[test]
fn api_stop_callbacks() {
    scenario("api", "stop_callbacks", 30);
}

#[test]
fn api_version_is_cargo_version() {
    scenario_with(
        "api",
        "version",
        30,
        &[],
        &[("HB_EXPECT_VERSION", env!("CARGO_PKG_VERSION"))],
    );
}

#[test]
fn api_throttle_pause() {
    scenario("api", "throttle_pause", 60);
}

// ---- 3. holes ----

#[test]
fn sparse_1gib_holes_stay_holes() {
    scenario("sparse_holes", "sparse_1gib", 120);
}

// ---- 4. faults ----

/// Lazily unmounts what a crashed program left mounted under the work dir,
/// before the TempDir removes it (fields drop in order).
struct UnmountGuard(std::path::PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.0.to_string_lossy().into_owned();
        for line in mounts.lines() {
            if let Some(mp) = line.split(' ').nth(1) {
                if mp.starts_with(&prefix) {
                    let _ = Command::new("umount").arg("-l").arg(mp).status();
                }
            }
        }
    }
}

#[test]
fn fault_enospc_full_destination() {
    let prog = build_c("faults", &[]);
    let work = TempDir::new("faults-enospc");
    let _unmount = UnmountGuard(work.path().to_path_buf());
    let mut cmd = preloaded(&prog.path);
    cmd.arg(work.path()).arg("enospc");
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    expect_pass("faults enospc", &out);
}

#[test]
fn fault_destination_removed() {
    scenario("faults", "dest_removed", 120);
}

#[test]
fn fault_panic_in_hook() {
    scenario("faults", "panic_in_hook", 60);
}

// ---- 5. exports ----

#[test]
fn exports_match_list_and_soname() {
    let lib = lib_path();
    let nm = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(nm.status.success(), "nm: {}", show(&nm));
    let mut exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    exported.sort();
    exported.dedup();
    let list =
        std::fs::read_to_string(repo_root().join("src/exports.txt")).expect("src/exports.txt");
    let mut wanted: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    wanted.sort();
    let extra: Vec<_> = exported.iter().filter(|n| !wanted.contains(n)).collect();
    let missing: Vec<_> = wanted.iter().filter(|n| !exported.contains(n)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "exports differ from src/exports.txt: extra {extra:?}, missing {missing:?}"
    );

    let re = Command::new("readelf")
        .args(["-d"])
        .arg(&lib)
        .output()
        .expect("run readelf");
    let dynamic = String::from_utf8_lossy(&re.stdout);
    let want = format!(
        "Library soname: [libHotBackup.so.{}]",
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert!(
        dynamic.contains(&want),
        "no `{want}` in readelf -d:\n{dynamic}"
    );
}

// ---- 6. process hygiene and small deterministic scenarios ----

#[test]
fn fork_while_writing() {
    scenario("fork_exec", "fork_while_writing", 120);
}

#[test]
fn exec_and_pipeline() {
    scenario("fork_exec", "exec_and_pipeline", 60);
}

// close_range and closefrom through the hooks (tests/c/missing_libc.c); on a
// glibc without them ci/test-old-glibc.sh runs the same scenarios.
#[test]
fn close_range_forgets_the_descriptor() {
    scenario("missing_libc", "close_range_reused", 60);
}

#[test]
fn closefrom_closes_without_close_range_syscall() {
    scenario("missing_libc", "closefrom_closes", 30);
    scenario("missing_libc", "closefrom_without_close_range_syscall", 30);
}

/// The application's closefrom/close_range during a backup closes its own
/// descriptors, not the library's.
#[test]
fn closefrom_during_backup_spares_the_library() {
    scenario("missing_libc", "closefrom_during_backup", 90);
}

#[test]
fn close_range_during_backup_spares_the_library() {
    scenario("missing_libc", "close_range_during_backup", 90);
}

#[test]
fn exec_under_preload() {
    // The library in programs that never call it, including a shell that
    // forks and execs a pipeline.
    let out = run_with_timeout(
        {
            let mut c = preloaded(std::path::Path::new("/bin/true"));
            c.env("LD_BIND_NOW", "1");
            c
        },
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "/bin/true: {}", show(&out));
    let mut sh = preloaded(std::path::Path::new("/bin/sh"));
    sh.args(["-c", "printf 'b\\na\\n' | sort | tr a-z A-Z; echo done >&2"]);
    let out = run_with_timeout(sh, Duration::from_secs(20));
    assert!(out.status.success(), "sh pipeline: {}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A\nB\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
}

#[test]
fn errno_preserved() {
    let with = build_c("errno_preserved", &[]);
    let without = build_c_source(
        &repo_root().join("tests/c/errno_preserved.c"),
        "errno_nolib",
        &["-DNO_LIBRARY"],
        false,
    );
    let w1 = TempDir::new("errno-lib");
    let w2 = TempDir::new("errno-nolib");
    let mut c = preloaded(&with.path);
    c.arg(w1.path());
    let a = run_with_timeout(c, Duration::from_secs(60));
    let mut c = Command::new(&without.path);
    c.arg(w2.path());
    let b = run_with_timeout(c, Duration::from_secs(60));
    assert!(
        b.status.success(),
        "baseline without the library: {}",
        show(&b)
    );
    assert!(a.status.success(), "with the library: {}", show(&a));
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout),
        "errno with the library (left) differs from without (right)"
    );
}

#[test]
fn descriptors_within_budget_under_small_limit() {
    scenario("fd_budget", "many_files_small_limit", 120);
}

#[test]
fn rename_with_no_descriptor_left() {
    scenario("fd_budget", "rename_with_no_descriptor_left", 60);
}

#[test]
fn unlink_open_file_then_write() {
    scenario("scenarios", "unlink_open_file_then_write", 60);
}

#[test]
fn rename_dir_during_copy() {
    scenario("scenarios", "rename_dir_during_copy", 60);
}

#[test]
fn truncate_then_extend() {
    scenario("scenarios", "truncate_then_extend", 60);
}

#[test]
fn append_two_threads() {
    scenario("scenarios", "append_two_threads", 60);
}

#[test]
fn dup_write() {
    scenario("scenarios", "dup_write", 60);
}

#[test]
fn closed_behind_the_hooks() {
    scenario("scenarios", "closed_behind_the_hooks", 60);
}

#[test]
fn captured_writes_read_no_timestamps() {
    scenario("scenarios", "captured_writes_read_no_timestamps", 60);
}

#[test]
fn snapshot_check_with_nonstop_writer() {
    scenario("scenarios", "snapshot_check_with_nonstop_writer", 60);
}

#[test]
fn buffer_changed_during_write() {
    scenario("scenarios", "buffer_changed_during_write", 60);
}

#[test]
fn snapshot_check_sees_hidden_write() {
    scenario("scenarios", "snapshot_check_sees_hidden_write", 60);
}

#[test]
fn chdir_relative_paths() {
    scenario("scenarios", "chdir_relative_paths", 60);
}

#[test]
fn o_direct_writes() {
    scenario("scenarios", "o_direct_writes", 60);
}

#[test]
fn scenarios_large_file_symbols() {
    // The same scenarios through open64/pwrite64/...: one run of all of them.
    let prog = build_c("scenarios", &[LFS]);
    let work = TempDir::new("scenarios-lfs");
    let mut cmd = preloaded(&prog.path);
    cmd.arg(work.path());
    let out = run_with_timeout(cmd, Duration::from_secs(180));
    expect_pass("scenarios (large-file symbols)", &out);
}

// ---- io_uring rings (tests/c/uring.c) ----

fn uring_scenario(name: &str) {
    scenario_with("uring", name, 90, &["-luring"], &[]);
}

#[test]
fn writes_through_a_ring_under_backup() {
    uring_scenario("writes_through_a_ring_under_backup");
}

/// closefrom between two backups leaves the io_uring pool's rings open.
#[test]
fn closefrom_keeps_the_pool_rings() {
    uring_scenario("closefrom_keeps_the_pool_rings");
}

#[test]
fn ring_writes_reach_copied_file() {
    uring_scenario("ring_writes_reach_copied_file");
}

#[test]
fn write_in_flight_when_backup_starts() {
    uring_scenario("write_in_flight_when_backup_starts");
}

#[test]
fn submit_and_wait_under_backup() {
    uring_scenario("submit_and_wait_under_backup");
}

#[test]
fn linked_writes_fail_the_backup() {
    uring_scenario("linked_writes_fail_the_backup");
}

#[test]
fn skipped_completion_refuses_backup() {
    uring_scenario("skipped_completion_refuses_backup");
}

#[test]
fn bad_arguments_through_a_ring() {
    uring_scenario("bad_arguments_through_a_ring");
}

#[test]
fn rings_torn_down_are_forgotten() {
    uring_scenario("rings_torn_down_are_forgotten");
}
