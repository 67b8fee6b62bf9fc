//! Benchmark (ignored by `cargo test`; run with
//! `cargo test --release -p tokubackup-repo --test bench -- --ignored --nocapture`):
//! on a three-node Garage cluster, push of a datadir-like tree against a
//! plain parallel upload of the same files with the aws command line
//! (`pip install awscli`), bytes stored by a second push after scattered
//! 16 KiB pages changed, restore against a local copy, and peak memory.
//! BENCH_MIB (per file, 8 files; 64) and BENCH_CHUNK_KIB (1024) set the sizes.
//! `with_garage` runs the command in GARAGE_RUN under a cluster (for
//! repo/bench/sysbench-repo.sh, which benchmarks the tokubackup commands).

#[allow(dead_code)] // the harness serves the repository tests too
mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::garage::Garage;
use tokubackup_repo::{NoProgress, Options, Repo};

const PAGE: usize = 16384;

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024.0
}
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Pages like InnoDB's: half the page data, half zeros (free space).
fn make_tree(root: &Path, files: usize, mib: usize) {
    std::fs::create_dir_all(root.join("db")).unwrap();
    for f in 0..files {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(root.join(format!("db/t{f}.ibd"))).unwrap(),
        );
        for p in 0..mib * 1024 * 1024 / PAGE {
            let mut page = common::tree::noise((f * 1_000_000 + p) as u64, PAGE / 2);
            page.resize(PAGE, 0);
            out.write_all(&page).unwrap();
        }
    }
}

fn change_pages(root: &Path, share: f64) -> u64 {
    let mut changed = 0;
    for e in std::fs::read_dir(root.join("db")).unwrap() {
        let p = e.unwrap().path();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let pages = f.metadata().unwrap().len() as usize / PAGE;
        let step = (1.0 / share) as usize;
        for i in (0..pages).step_by(step) {
            let k = (i * 7919) % pages; // scattered
            use std::os::unix::fs::FileExt;
            f.write_all_at(
                &common::tree::noise(k as u64 + 77, PAGE / 2),
                (k * PAGE) as u64,
            )
            .unwrap();
            changed += PAGE as u64;
        }
    }
    changed
}

#[test]
#[ignore]
fn push_restore_against_aws_cli() {
    let g = Garage::start("bench");
    for (k, v) in g.env(0) {
        std::env::set_var(k, v);
    }
    let work = std::env::temp_dir().join(format!("repo-bench-{}", std::process::id()));
    let src = work.join("src");
    let (files, mib) = (
        8,
        std::env::var("BENCH_MIB").map_or(64, |v| v.parse().unwrap()),
    );
    make_tree(&src, files, mib);
    let size = (files * mib) as u64 * 1024 * 1024;
    let key = b"bench key".as_slice();

    reset_peak();
    let t = Instant::now();
    let chunk_kib: u64 = std::env::var("BENCH_CHUNK_KIB").map_or(1024, |v| v.parse().unwrap());
    let opts = Options {
        chunk_size: chunk_kib * 1024,
        ..Options::default()
    };
    let repo = Repo::open("s3://bench/repo", key, true, opts).unwrap();
    let first = repo.push(&src, &NoProgress).unwrap();
    let push_s = t.elapsed().as_secs_f64();
    let push_peak = peak_mib();

    let t = Instant::now();
    let st = Command::new("aws")
        .args([
            "s3",
            "cp",
            "--recursive",
            "--quiet",
            src.to_str().unwrap(),
            "s3://bench/plain/",
        ])
        .envs(g.env(0))
        .status()
        .unwrap();
    assert!(st.success());
    let aws_s = t.elapsed().as_secs_f64();

    let changed = change_pages(&src, 0.01);
    let second = repo.push(&src, &NoProgress).unwrap();

    reset_peak();
    let t = Instant::now();
    repo.restore(&second.id, &work.join("restored"), &NoProgress)
        .unwrap();
    let restore_s = t.elapsed().as_secs_f64();
    let restore_peak = peak_mib();
    let t = Instant::now();
    assert!(Command::new("cp")
        .args([
            "-a",
            src.to_str().unwrap(),
            work.join("copy").to_str().unwrap()
        ])
        .status()
        .unwrap()
        .success());
    Command::new("sync").status().unwrap();
    let cp_s = t.elapsed().as_secs_f64();

    let mb = |b: u64| b as f64 / 1048576.0;
    println!(
        "tree: {files} files, {:.0} MiB; chunk size {chunk_kib} KiB",
        mb(size)
    );
    println!(
        "push: {push_s:.1} s, {:.0} MiB uploaded (zstd+encrypted), peak RSS {push_peak:.0} MiB",
        mb(first.bytes_uploaded)
    );
    println!(
        "aws s3 cp --recursive: {aws_s:.1} s; push / aws = {:.2}",
        push_s / aws_s
    );
    println!(
        "second push after {:.1} MiB of scattered 16 KiB pages changed (1% of pages): {} chunks, {:.1} MiB uploaded = {:.1}% of the tree, {:.1}x the changed bytes",
        mb(changed),
        second.chunks_uploaded,
        mb(second.bytes_uploaded),
        100.0 * second.bytes_uploaded as f64 / size as f64,
        second.bytes_uploaded as f64 / changed as f64
    );
    println!("restore: {restore_s:.1} s, peak RSS {restore_peak:.0} MiB; cp -a + sync: {cp_s:.1} s; restore / cp = {:.2}", restore_s / cp_s);
    std::fs::remove_dir_all(&work).unwrap();
}

/// Runs `sh -c "$GARAGE_RUN"` with the AWS_* variables of node 0 and
/// GARAGE_BUCKET set, and fails when it fails.
#[test]
#[ignore]
fn with_garage() {
    let cmd = std::env::var("GARAGE_RUN").expect("GARAGE_RUN: the command to run");
    let g = Garage::start("bench");
    let st = Command::new("sh")
        .args(["-c", &cmd])
        .envs(g.env(0))
        .env("GARAGE_BUCKET", &g.bucket)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}: {st}");
}
