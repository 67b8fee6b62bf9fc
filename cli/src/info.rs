//! `tokubackup info`: what a backup holds, for a person or (--json) a script.

use crate::args::InfoArgs;
use crate::error::Result;
use crate::manifest::{Backup, Kind};

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(a: &InfoArgs) -> Result<()> {
    let b = Backup::open(&a.backup)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&b.json).unwrap_or_default()
        );
        return Ok(());
    }
    let j = &b.json;
    let s = |k: &str| j[k].as_str().unwrap_or("-").to_string();
    let state = match b.check_marker() {
        Ok(()) => "complete".to_string(),
        Err(e) => format!("NOT USABLE: {e}"),
    };
    println!("backup        {}", b.dir.display());
    println!("state         {state}");
    println!("server        {}", b.server_version);
    println!(
        "plugin        {}, libHotBackup {}",
        s("plugin_version"),
        s("library_version")
    );
    println!("started       {}", s("started_at"));
    println!("snapshot      {}", s("snapshot_at"));
    println!("finished      {}", s("finished_at"));
    let bytes = j["bytes"].as_u64().unwrap_or(0);
    let files = b.files.as_ref().map_or("not listed".to_string(), |f| {
        let regular = f
            .iter()
            .filter(|e| matches!(e.kind, Kind::Regular { .. }))
            .count();
        format!(
            "{regular} files, {} links, {}",
            f.len() - regular,
            s("checksum_algorithm")
        )
    });
    println!(
        "size          {} ({bytes} bytes); {files}",
        human_bytes(bytes)
    );
    if let Some(x) = j["exclude"].as_str() {
        println!("excluded      {x}");
    }
    match &b.binlog {
        Some(bl) => println!(
            "binlog        {}:{}, GTID '{}'",
            bl.file, bl.position, bl.gtid
        ),
        None => println!("binlog        none (the server ran without log-bin)"),
    }
    println!("directories");
    for d in &b.dirs {
        println!(
            "  {:<24} {}  ({})",
            d.subdir,
            d.original.display(),
            d.setting
        );
    }
    Ok(())
}
