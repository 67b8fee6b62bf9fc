//! Binary log position of the snapshot, read from the copy itself.
//!
//! The library captures the binary log's writes exactly, so when capture
//! stops the copied binlog index and files are those of the snapshot instant.
//! The last file in the copied index, cut at its last complete event group,
//! is the position; the GTID position is the file's Gtid_list (state at the
//! file's start) advanced by every complete GTID event group after it. This
//! needs no lock in the server (BACKUP STAGE or FLUSH TABLES WITH READ LOCK
//! would wait for running DDL and stall writers), and it is exactly what
//! crash recovery of the copy does: prepared transactions found in the
//! binlog are committed, the others rolled back.

use crate::error::Failure;
use std::collections::BTreeMap;
use std::path::Path;

const MAGIC: &[u8; 4] = b"\xfebin";
const HEADER_LEN: usize = 19;
const QUERY_EVENT: u8 = 2;
const FORMAT_DESCRIPTION_EVENT: u8 = 15;
const XID_EVENT: u8 = 16;
const GTID_EVENT: u8 = 162;
const GTID_LIST_EVENT: u8 = 163;
/// FL_STANDALONE of Gtid_log_event: the group is the one next event.
const FL_STANDALONE: u8 = 1;
/// Post-header length of Query_log_event.
const QUERY_POST_HEADER: usize = 13;

/// Position of the snapshot in the binary log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub position: u64,
    /// gtid_binlog_pos syntax: domain-server-seq, by domain.
    pub gtid: String,
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}

/// GTID state: domain -> (server_id, seq_no).
pub type GtidState = BTreeMap<u32, (u32, u64)>;

/// Scans one binlog file; returns (end of last complete group, GTID state there).
pub fn scan(data: &[u8]) -> Result<(u64, GtidState), String> {
    if data.len() < 4 || &data[..4] != MAGIC {
        return Err("not a binary log (bad magic)".into());
    }
    let mut state = GtidState::new();
    let mut safe = (4u64, state.clone());
    let mut checksum_len = 0usize;
    // (domain, server, seq, standalone) of the open group.
    let mut group: Option<(u32, u32, u64, bool)> = None;
    let mut pos = 4usize;
    while pos + HEADER_LEN <= data.len() {
        let ev_type = data[pos + 4];
        let server_id = u32le(data, pos + 5);
        let len = u32le(data, pos + 9) as usize;
        if len < HEADER_LEN || pos + len > data.len() {
            break; // torn tail: written after the snapshot instant
        }
        let ev = &data[pos..pos + len];
        let body = &ev[HEADER_LEN..];
        let end = pos + len;
        let mut group_done = false;
        match ev_type {
            FORMAT_DESCRIPTION_EVENT => {
                // binlog_version(2) server_version(50) timestamp(4)
                // header_len(1) post_header_lens(...) alg(1) crc(4)
                if body.len() >= 57 + 5 {
                    let alg = body[body.len() - 5];
                    checksum_len = if alg == 1 { 4 } else { 0 };
                }
            }
            GTID_LIST_EVENT if group.is_none() => {
                let n = (u32le(body, 0) & 0x0fff_ffff) as usize;
                state.clear();
                for i in 0..n {
                    let o = 4 + i * 16;
                    if o + 16 > body.len() {
                        break;
                    }
                    state.insert(u32le(body, o), (u32le(body, o + 4), u64le(body, o + 8)));
                }
            }
            GTID_EVENT if body.len() >= 13 => {
                let seq = u64le(body, 0);
                let domain = u32le(body, 8);
                let flags = body[12];
                group = Some((domain, server_id, seq, flags & FL_STANDALONE != 0));
                pos = end;
                continue;
            }
            XID_EVENT => group_done = group.is_some(),
            QUERY_EVENT => {
                if let Some((.., standalone)) = group {
                    group_done = standalone || query_ends_group(body, checksum_len);
                }
            }
            _ => {
                if let Some((.., true)) = group {
                    group_done = true;
                }
            }
        }
        if group_done {
            if let Some((d, s, q, _)) = group.take() {
                state.insert(d, (s, q));
            }
        }
        if group.is_none() {
            safe = (end as u64, state.clone());
        }
        pos = end;
    }
    Ok(safe)
}

/// True for the COMMIT / ROLLBACK query that closes a transaction's group.
fn query_ends_group(body: &[u8], checksum_len: usize) -> bool {
    if body.len() < QUERY_POST_HEADER + checksum_len {
        return false;
    }
    let db_len = body[8] as usize;
    let status_len = u16le(body, 11) as usize;
    let start = QUERY_POST_HEADER + status_len + db_len + 1;
    let stop = body.len() - checksum_len;
    if start > stop {
        return false;
    }
    let q = &body[start..stop];
    q.eq_ignore_ascii_case(b"COMMIT") || q.eq_ignore_ascii_case(b"ROLLBACK")
}

pub fn gtid_string(state: &GtidState) -> String {
    state
        .iter()
        .map(|(d, (s, q))| format!("{d}-{s}-{q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Position of the snapshot from the copied index (`index`) and binlog
/// directory (`dir`).
pub fn position(index: &Path, dir: &Path) -> Result<Position, Failure> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Failure::io("cannot read copied binlog index", index, &e))?;
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| {
            Failure::new(
                libc::EINVAL,
                format!("copied binlog index '{}' is empty", index.display()),
            )
        })?;
    let name = Path::new(last)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = dir.join(&name);
    let data = std::fs::read(&file).map_err(|e| {
        Failure::io(
            "binary log listed in the copied index is missing from the backup",
            &file,
            &e,
        )
    })?;
    let (pos, state) = scan(&data).map_err(|m| {
        Failure::new(
            libc::EINVAL,
            format!("cannot parse '{}': {m}", file.display()),
        )
    })?;
    Ok(Position {
        file: name,
        position: pos,
        gtid: gtid_string(&state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ev_type: u8, server: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 4];
        v.push(ev_type);
        v.extend(server.to_le_bytes());
        v.extend(((HEADER_LEN + body.len()) as u32).to_le_bytes());
        v.extend(0u32.to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend(body);
        v
    }

    fn gtid(seq: u64, domain: u32, flags: u8) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend(domain.to_le_bytes());
        b.push(flags);
        b.extend([0u8; 6]);
        b
    }

    fn query(text: &str) -> Vec<u8> {
        let mut b = vec![0u8; QUERY_POST_HEADER];
        b[8] = 1; // db_len
        b.extend(b"d\0");
        b.extend(text.as_bytes());
        b
    }

    #[test]
    fn position_stops_before_an_unfinished_group() {
        let mut f = MAGIC.to_vec();
        let mut list = 1u32.to_le_bytes().to_vec();
        list.extend(0u32.to_le_bytes());
        list.extend(1u32.to_le_bytes());
        list.extend(7u64.to_le_bytes());
        f.extend(event(GTID_LIST_EVENT, 1, &list));
        f.extend(event(GTID_EVENT, 1, &gtid(8, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        f.extend(event(XID_EVENT, 1, &[0; 8]));
        let after_trx = f.len() as u64;
        f.extend(event(GTID_EVENT, 2, &gtid(9, 0, FL_STANDALONE)));
        f.extend(event(QUERY_EVENT, 2, &query("CREATE TABLE t(a int)")));
        let after_ddl = f.len() as u64;
        f.extend(event(GTID_EVENT, 1, &gtid(10, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        let (pos, st) = scan(&f).unwrap();
        assert_eq!(pos, after_ddl);
        assert_eq!(gtid_string(&st), "0-2-9");
        // Torn event at the end, inside the first transaction.
        let (pos, st) = scan(&f[..after_trx as usize - 3]).unwrap();
        assert!(pos < after_trx);
        assert_eq!(gtid_string(&st), "0-1-7");
        f.extend(event(QUERY_EVENT, 1, &query("COMMIT")));
        assert_eq!(scan(&f).unwrap().0, f.len() as u64);
    }
}
