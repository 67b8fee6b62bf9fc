//! What a backup costs the server in memory: reading the snapshot's binlog
//! position must not load the last binary log into mariadbd.

mod common;

use common::*;

/// A /proc/PID/status field in kB.
fn status_kb(pid: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A 64 MiB binary log (row images of large updates) raises mariadbd's peak
/// resident memory during a backup by far less than its size.
#[test]
fn backup_of_a_large_binlog_keeps_the_server_peak_memory_flat() {
    let s = Server::start("binlog-memory", Opts::default());
    s.sql("CREATE DATABASE big; CREATE TABLE big.t(id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB; INSERT INTO big.t VALUES (1, '')");
    // Each update logs the before and after images: 8 MiB of binlog.
    for i in 0..8 {
        s.sql(&format!(
            "SET SESSION binlog_format=ROW; UPDATE big.t SET b=REPEAT(CHAR({}), 4194304) WHERE id=1",
            65 + i
        ));
    }
    let master = s.sql("SHOW MASTER STATUS");
    let binlog_bytes: u64 = master.split('\t').nth(1).unwrap().parse().unwrap();
    assert!(binlog_bytes > 48 << 20, "binlog only {binlog_bytes} bytes");

    let pid = std::fs::read_to_string(s.datadir.join("mariadbd.pid")).unwrap();
    let pid = pid.trim();
    // Peak resident size from now on (proc(5): clear_refs 5).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let rss_before = status_kb(pid, "VmRSS:");
    let dest = scratch("binlog-memory-bk").join("bk");
    let (res, _, msg) = s.backup("root", "", dest.to_str().unwrap());
    res.unwrap_or_else(|e| panic!("{e} {msg}"));
    let grew_kb = status_kb(pid, "VmHWM:").saturating_sub(rss_before);
    eprintln!(
        "binlog {} KiB; mariadbd peak RSS grew by {grew_kb} KiB during the backup",
        binlog_bytes / 1024
    );
    assert_eq!(
        read_manifest(&dest)["binlog"]["position"].as_u64(),
        Some(binlog_bytes)
    );
    assert!(
        grew_kb * 1024 < binlog_bytes / 4,
        "peak RSS grew by {grew_kb} KiB for a {binlog_bytes}-byte binlog"
    );
    drop(s);
    std::fs::remove_dir_all(dest.parent().unwrap()).unwrap();
}
