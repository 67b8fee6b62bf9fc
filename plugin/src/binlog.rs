//! Binary log position of the snapshot, read from the copy itself.
//!
//! The library captures the binary log's writes exactly, so when capture
//! stops the copied binlog index and files are those of the snapshot instant.
//! The last file in the copied index, cut at its last complete event group,
//! is the position. The GTID position is the state at the file's start
//! advanced by every complete group after it: MariaDB records that state in a
//! Gtid_list event and marks groups with GTID events; MySQL records it in a
//! Previous_gtids event and marks groups with Gtid / Anonymous_gtid events,
//! ending them with an XID, a COMMIT or ROLLBACK query, an XA_prepare event,
//! or (DDL, compressed transactions) with their one event. This needs no lock
//! in the server (BACKUP STAGE or FLUSH TABLES WITH READ LOCK would wait for
//! running DDL and stall writers), and it is exactly what crash recovery of
//! the copy does: prepared transactions found in the binlog are committed,
//! the others rolled back.

use crate::error::Failure;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

const MAGIC: &[u8; 4] = b"\xfebin";
const HEADER_LEN: usize = 19;
const QUERY_EVENT: u8 = 2;
const FORMAT_DESCRIPTION_EVENT: u8 = 15;
const XID_EVENT: u8 = 16;
const GTID_EVENT: u8 = 162;
const GTID_LIST_EVENT: u8 = 163;
/// MySQL's event types (binlog_event.h, 5.7 and 8.0).
const MYSQL_GTID_EVENT: u8 = 33;
const ANONYMOUS_GTID_EVENT: u8 = 34;
const PREVIOUS_GTIDS_EVENT: u8 = 35;
/// XA PREPARE ends the group of an XA transaction (MySQL and MariaDB).
const XA_PREPARE_EVENT: u8 = 38;
/// FL_STANDALONE of Gtid_log_event: the group is the one next event.
const FL_STANDALONE: u8 = 1;
/// Post-header length of Query_log_event.
const QUERY_POST_HEADER: usize = 13;

/// Bytes read from the file at a time.
const READ_BUFFER: usize = 64 * 1024;
/// Bytes of an event body kept in memory. Every event the position needs is
/// far smaller (a Gtid_list of 4,000 domains fits); larger ones (row events,
/// big queries) are skipped past, so memory use does not depend on the file:
/// the scan runs inside the server, and a binlog may be 1 GiB.
pub const MAX_BODY: usize = 64 * 1024;

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

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One event of a binary log, as [`Events`] hands it out.
pub struct Event<'a> {
    pub ev_type: u8,
    pub server_id: u32,
    /// Offset of the event's end in the file.
    pub end: u64,
    /// The body (after the common header): all of it, or its first
    /// [`MAX_BODY`] bytes when `truncated`.
    pub body: &'a [u8],
    pub truncated: bool,
}

/// The complete events of a binary log file in order, read through two
/// fixed buffers ([`READ_BUFFER`] and [`MAX_BODY`] bytes). Iteration ends at
/// the end of the file or at an event cut short by it (a torn tail, written
/// after the snapshot instant).
pub struct Events<R> {
    input: BufReader<R>,
    pos: u64,
    body: Vec<u8>,
}

impl<R: Read> Events<R> {
    /// Checks the magic number at the start of `input`.
    pub fn new(input: R) -> io::Result<Events<R>> {
        let mut input = BufReader::with_capacity(READ_BUFFER, input);
        let mut magic = [0u8; 4];
        if !read_full(&mut input, &mut magic)? || &magic != MAGIC {
            return Err(invalid("not a binary log (bad magic)"));
        }
        Ok(Events {
            input,
            pos: MAGIC.len() as u64,
            body: vec![0; MAX_BODY],
        })
    }

    /// The next complete event, or None at the end.
    pub fn next_event(&mut self) -> io::Result<Option<Event<'_>>> {
        let mut header = [0u8; HEADER_LEN];
        if !read_full(&mut self.input, &mut header)? {
            return Ok(None);
        }
        let len = u32le(&header, 9) as usize;
        if len < HEADER_LEN {
            return Ok(None); // garbage after the last event the server finished
        }
        let body_len = len - HEADER_LEN;
        let kept = body_len.min(MAX_BODY);
        if !read_full(&mut self.input, &mut self.body[..kept])?
            || !skip(&mut self.input, (body_len - kept) as u64)?
        {
            return Ok(None);
        }
        self.pos += len as u64;
        Ok(Some(Event {
            ev_type: header[4],
            server_id: u32le(&header, 5),
            end: self.pos,
            body: &self.body[..kept],
            truncated: kept < body_len,
        }))
    }
}

/// Fills `buf`; false when the input ends first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads past `n` bytes inside the reader's own buffer; false when the
/// input ends first.
fn skip(input: &mut impl BufRead, mut n: u64) -> io::Result<bool> {
    while n > 0 {
        let avail = input.fill_buf()?.len();
        if avail == 0 {
            return Ok(false);
        }
        let k = avail.min(usize::try_from(n).unwrap_or(usize::MAX));
        input.consume(k);
        n -= k as u64;
    }
    Ok(true)
}

/// MariaDB GTID state: domain -> (server_id, seq_no).
pub type GtidState = BTreeMap<u32, (u32, u64)>;

/// MySQL GTID set: source UUID -> sorted, disjoint intervals [start, end).
pub type SidSet = BTreeMap<[u8; 16], Vec<(u64, u64)>>;

/// The GTID position of either server family (one of the two is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gtids {
    pub maria: GtidState,
    pub mysql: SidSet,
}

impl Gtids {
    /// gtid_binlog_pos syntax for MariaDB (`0-1-9`), gtid_executed syntax
    /// for MySQL (`uuid:1-5:7`), with "," between entries.
    pub fn to_text(&self) -> String {
        let maria = self.maria.iter().map(|(d, (s, q))| format!("{d}-{s}-{q}"));
        let mysql = self.mysql.iter().map(|(sid, ivs)| {
            let mut t = uuid_text(sid);
            for &(a, b) in ivs {
                t += &if b == a + 1 {
                    format!(":{a}")
                } else {
                    format!(":{a}-{}", b - 1)
                };
            }
            t
        });
        maria.chain(mysql).collect::<Vec<_>>().join(",")
    }

    fn add_mysql(&mut self, sid: [u8; 16], gno: u64) {
        let ivs = self.mysql.entry(sid).or_default();
        if ivs.iter().any(|&(a, b)| (a..b).contains(&gno)) {
            return;
        }
        if let Some(last) = ivs.last_mut().filter(|l| l.1 == gno) {
            last.1 += 1; // the common case: the source's next number
            return;
        }
        ivs.push((gno, gno + 1));
        ivs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
        for &(a, b) in ivs.iter() {
            match merged.last_mut() {
                Some(m) if m.1 >= a => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *ivs = merged;
    }
}

fn uuid_text(sid: &[u8; 16]) -> String {
    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The GTID state a Gtid_list event's body records.
fn gtid_list(body: &[u8], truncated: bool) -> io::Result<GtidState> {
    if truncated {
        return Err(invalid(format!(
            "Gtid_list event larger than {MAX_BODY} bytes"
        )));
    }
    let n = (u32le(body, 0) & 0x0fff_ffff) as usize;
    Ok((0..n)
        .map(|i| 4 + i * 16)
        .take_while(|&o| o + 16 <= body.len())
        .map(|o| (u32le(body, o), (u32le(body, o + 4), u64le(body, o + 8))))
        .collect())
}

/// The GTID set a Previous_gtids event's body records: n_sids, then per
/// source its UUID, n_intervals and [start, end) pairs.
fn previous_gtids(body: &[u8], truncated: bool) -> io::Result<SidSet> {
    let bad = || invalid("malformed Previous_gtids event");
    if truncated {
        return Err(invalid(format!(
            "Previous_gtids event larger than {MAX_BODY} bytes"
        )));
    }
    let mut set = SidSet::new();
    let n_sids = body.get(..8).map(|_| u64le(body, 0)).ok_or_else(bad)?;
    let mut o = 8;
    for _ in 0..n_sids {
        let head = body.get(o..o + 24).ok_or_else(bad)?;
        let sid: [u8; 16] = head[..16].try_into().map_err(|_| bad())?;
        let n = u64le(head, 16);
        o += 24;
        let len = usize::try_from(n).ok().and_then(|n| n.checked_mul(16));
        let ivs = len
            .and_then(|l| body.get(o..o.checked_add(l)?))
            .ok_or_else(bad)?;
        o += ivs.len();
        let ivs: Vec<(u64, u64)> = ivs
            .chunks_exact(16)
            .map(|c| (u64le(c, 0), u64le(c, 8)))
            .collect();
        set.insert(sid, ivs);
    }
    Ok(set)
}

/// The transaction an event group belongs to.
enum Gtid {
    Maria(u32, u32, u64),
    Mysql([u8; 16], u64),
    /// MySQL with gtid_mode=OFF (Anonymous_gtid), or no GTID event at all.
    Anonymous,
}

/// Where the open group is.
#[derive(PartialEq)]
enum Stage {
    /// MySQL: after the GTID, before the event that says what follows.
    First,
    /// Between BEGIN (or MariaDB's non-standalone GTID) and its end.
    Transaction,
    /// MariaDB FL_STANDALONE: the group is the one next event.
    Standalone,
}

struct Group {
    gtid: Gtid,
    stage: Stage,
}

impl Group {
    /// Moves past `ev`; true when `ev` completes the group.
    fn advance(&mut self, ev: &Event<'_>, checksum_len: usize) -> bool {
        let query = || {
            (ev.ev_type == QUERY_EVENT && !ev.truncated)
                .then(|| query_text(ev.body, checksum_len))
                .flatten()
        };
        match self.stage {
            Stage::Standalone => true,
            Stage::First => {
                if query().is_some_and(opens_transaction) {
                    self.stage = Stage::Transaction;
                    false
                } else {
                    // DDL, XA COMMIT, a Transaction_payload: one event.
                    true
                }
            }
            Stage::Transaction => match ev.ev_type {
                XID_EVENT | XA_PREPARE_EVENT => true,
                // COMMIT and ROLLBACK are short: a truncated query is neither.
                QUERY_EVENT => query().is_some_and(|q| {
                    q.eq_ignore_ascii_case(b"COMMIT") || q.eq_ignore_ascii_case(b"ROLLBACK")
                }),
                _ => false,
            },
        }
    }
}

fn opens_transaction(q: &[u8]) -> bool {
    q.eq_ignore_ascii_case(b"BEGIN")
        || q.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"XA START"))
}

/// Scans one binlog file (MariaDB's or MySQL's format); returns the end of
/// its last complete group and the GTID position there.
pub fn scan(input: impl Read) -> io::Result<(u64, Gtids)> {
    let mut events = Events::new(input)?;
    let mut state = Gtids::default();
    let mut safe = (MAGIC.len() as u64, state.clone());
    let mut checksum_len = 0usize;
    let mut group: Option<Group> = None;
    while let Some(ev) = events.next_event()? {
        let body = ev.body;
        let opened = match ev.ev_type {
            FORMAT_DESCRIPTION_EVENT => {
                // binlog_version(2) server_version(50) timestamp(4)
                // header_len(1) post_header_lens(...) alg(1) crc(4)
                if body.len() >= 57 + 5 {
                    let alg = body[body.len() - 5];
                    checksum_len = if alg == 1 { 4 } else { 0 };
                }
                None
            }
            GTID_LIST_EVENT if group.is_none() => {
                state.maria = gtid_list(body, ev.truncated)?;
                None
            }
            PREVIOUS_GTIDS_EVENT if group.is_none() => {
                state.mysql = previous_gtids(
                    &body[..body.len() - checksum_len.min(body.len())],
                    ev.truncated,
                )?;
                None
            }
            GTID_EVENT if body.len() >= 13 => Some(Group {
                gtid: Gtid::Maria(u32le(body, 8), ev.server_id, u64le(body, 0)),
                stage: if body[12] & FL_STANDALONE != 0 {
                    Stage::Standalone
                } else {
                    Stage::Transaction
                },
            }),
            // flags(1) sid(16) gno(8) ...
            MYSQL_GTID_EVENT if body.len() >= 25 => Some(Group {
                gtid: Gtid::Mysql(body[1..17].try_into().unwrap_or_default(), u64le(body, 17)),
                stage: Stage::First,
            }),
            ANONYMOUS_GTID_EVENT => Some(Group {
                gtid: Gtid::Anonymous,
                stage: Stage::First,
            }),
            // A BEGIN without a GTID event before it (MySQL 5.6 format).
            QUERY_EVENT
                if group.is_none()
                    && !ev.truncated
                    && query_text(body, checksum_len).is_some_and(opens_transaction) =>
            {
                Some(Group {
                    gtid: Gtid::Anonymous,
                    stage: Stage::Transaction,
                })
            }
            _ => None,
        };
        if opened.is_some() {
            group = opened;
        } else if group.as_mut().is_some_and(|g| g.advance(&ev, checksum_len)) {
            match group.take().map(|g| g.gtid) {
                Some(Gtid::Maria(d, s, q)) => {
                    state.maria.insert(d, (s, q));
                }
                Some(Gtid::Mysql(sid, gno)) => state.add_mysql(sid, gno),
                _ => {}
            }
        }
        if group.is_none() {
            safe = (ev.end, state.clone());
        }
    }
    Ok(safe)
}

/// The statement of a Query event's body.
fn query_text(body: &[u8], checksum_len: usize) -> Option<&[u8]> {
    if body.len() < QUERY_POST_HEADER + checksum_len {
        return None;
    }
    let db_len = body[8] as usize;
    let status_len = u16le(body, 11) as usize;
    let start = QUERY_POST_HEADER + status_len + db_len + 1;
    body.get(start..body.len() - checksum_len)
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
    let f = std::fs::File::open(&file).map_err(|e| {
        Failure::io(
            "binary log listed in the copied index is missing from the backup",
            &file,
            &e,
        )
    })?;
    let (pos, gtids) = scan(f).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Failure::new(
            libc::EINVAL,
            format!("cannot parse '{}': {e}", file.display()),
        ),
        _ => Failure::io("cannot read", &file, &e),
    })?;
    Ok(Position {
        file: name,
        position: pos,
        gtid: gtids.to_text(),
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

    fn gtid_list_event(domain: u32, server: u32, seq: u64) -> Vec<u8> {
        let mut list = 1u32.to_le_bytes().to_vec();
        list.extend(domain.to_le_bytes());
        list.extend(server.to_le_bytes());
        list.extend(seq.to_le_bytes());
        event(GTID_LIST_EVENT, 1, &list)
    }

    #[test]
    fn position_stops_before_an_unfinished_group() {
        let mut f = MAGIC.to_vec();
        f.extend(gtid_list_event(0, 1, 7));
        f.extend(event(GTID_EVENT, 1, &gtid(8, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        f.extend(event(XID_EVENT, 1, &[0; 8]));
        let after_trx = f.len() as u64;
        f.extend(event(GTID_EVENT, 2, &gtid(9, 0, FL_STANDALONE)));
        f.extend(event(QUERY_EVENT, 2, &query("CREATE TABLE t(a int)")));
        let after_ddl = f.len() as u64;
        f.extend(event(GTID_EVENT, 1, &gtid(10, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        let (pos, st) = scan(&f[..]).unwrap();
        assert_eq!(pos, after_ddl);
        assert_eq!(st.to_text(), "0-2-9");
        // Torn event at the end, inside the first transaction.
        let (pos, st) = scan(&f[..after_trx as usize - 3]).unwrap();
        assert!(pos < after_trx);
        assert_eq!(st.to_text(), "0-1-7");
        f.extend(event(QUERY_EVENT, 1, &query("COMMIT")));
        assert_eq!(scan(&f[..]).unwrap().0, f.len() as u64);
    }

    /// A MySQL Format_description body with CRC32 checksums: every event
    /// after it ends with 4 checksum bytes.
    fn mysql_fde() -> Vec<u8> {
        let mut b = 4u16.to_le_bytes().to_vec();
        let mut version = b"8.0.40-log".to_vec();
        version.resize(50, 0);
        b.extend(version);
        b.extend(0u32.to_le_bytes());
        b.push(HEADER_LEN as u8);
        b.extend([0u8; 40]); // post-header lengths
        b.push(1); // BINLOG_CHECKSUM_ALG_CRC32
        b.extend([0xcc; 4]);
        b
    }

    /// A MySQL event after the checksummed FDE: the body plus a checksum.
    fn crc_event(ev_type: u8, body: &[u8]) -> Vec<u8> {
        let mut b = body.to_vec();
        b.extend([0xcc; 4]);
        event(ev_type, 1, &b)
    }

    const SID_A: [u8; 16] = [
        0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95,
        0x62,
    ];
    const SID_B: [u8; 16] = [0xff; 16];

    fn mysql_gtid(sid: [u8; 16], gno: u64) -> Vec<u8> {
        let mut b = vec![1u8]; // FLAG_MAY_HAVE_SBR
        b.extend(sid);
        b.extend(gno.to_le_bytes());
        b.push(2); // logical timestamps
        b.extend([0u8; 16]);
        crc_event(MYSQL_GTID_EVENT, &b)
    }

    fn anonymous_gtid() -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend([0u8; 24]);
        b.push(2);
        b.extend([0u8; 16]);
        crc_event(ANONYMOUS_GTID_EVENT, &b)
    }

    fn prev_gtids(sets: &SidSet) -> Vec<u8> {
        let mut b = (sets.len() as u64).to_le_bytes().to_vec();
        for (sid, ivs) in sets {
            b.extend(sid);
            b.extend((ivs.len() as u64).to_le_bytes());
            for (a, e) in ivs {
                b.extend(a.to_le_bytes());
                b.extend(e.to_le_bytes());
            }
        }
        crc_event(PREVIOUS_GTIDS_EVENT, &b)
    }

    fn mysql_query(text: &str) -> Vec<u8> {
        crc_event(QUERY_EVENT, &query(text))
    }

    /// A row transaction: GTID, BEGIN, Table_map, Write_rows, XID.
    fn mysql_trx(gtid: Vec<u8>) -> Vec<u8> {
        let mut f = gtid;
        f.extend(mysql_query("BEGIN"));
        f.extend(crc_event(19, &[7; 30])); // TABLE_MAP_EVENT
        f.extend(crc_event(30, &[9; 200])); // WRITE_ROWS_EVENT
        f.extend(crc_event(XID_EVENT, &[0; 8]));
        f
    }

    /// A MySQL binlog built event by event, and the end of each group in it
    /// with the GTID set there.
    fn mysql_binlog() -> (Vec<u8>, Vec<(u64, String)>) {
        let set = |a: &str, b: &str| {
            format!(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:{a},ffffffff-ffff-ffff-ffff-ffffffffffff:{b}"
            )
        };
        let mut f = MAGIC.to_vec();
        f.extend(event(FORMAT_DESCRIPTION_EVENT, 1, &mysql_fde()));
        f.extend(prev_gtids(&SidSet::from([
            (SID_A, vec![(1, 6)]),
            (SID_B, vec![(1, 3), (5, 6)]),
        ])));
        let mut ends = vec![(f.len() as u64, set("1-5", "1-2:5"))];
        f.extend(mysql_trx(mysql_gtid(SID_A, 6)));
        ends.push((f.len() as u64, set("1-6", "1-2:5")));
        // DDL: one Query event after the GTID.
        f.extend(mysql_gtid(SID_A, 7));
        f.extend(mysql_query("CREATE TABLE t (a INT)"));
        ends.push((f.len() as u64, set("1-7", "1-2:5")));
        // gtid_mode=OFF: Anonymous_gtid, ended by a COMMIT query (MyISAM).
        f.extend(anonymous_gtid());
        f.extend(mysql_query("BEGIN"));
        f.extend(crc_event(30, &[9; 20]));
        f.extend(mysql_query("COMMIT"));
        ends.push((f.len() as u64, set("1-7", "1-2:5")));
        // XA: prepared by XA_prepare, committed by a query of its own.
        f.extend(mysql_gtid(SID_B, 3));
        f.extend(mysql_query("XA START X'31',X'',1"));
        f.extend(crc_event(30, &[9; 20]));
        f.extend(mysql_query("XA END X'31',X'',1"));
        f.extend(crc_event(XA_PREPARE_EVENT, &[0; 20]));
        ends.push((f.len() as u64, set("1-7", "1-3:5")));
        f.extend(mysql_gtid(SID_B, 4));
        f.extend(mysql_query("XA COMMIT X'31',X'',1"));
        ends.push((f.len() as u64, set("1-7", "1-5")));
        f.extend(mysql_trx(mysql_gtid(SID_A, 8)));
        ends.push((f.len() as u64, set("1-8", "1-5")));
        // 8.0.20+ binlog_transaction_compression: the transaction is one
        // Transaction_payload event after its GTID.
        f.extend(mysql_gtid(SID_A, 9));
        f.extend(crc_event(40, &[3; 90]));
        ends.push((f.len() as u64, set("1-9", "1-5")));
        (f, ends)
    }

    #[test]
    fn mysql_binlog_position_and_gtid_set() {
        let (f, ends) = mysql_binlog();
        let (pos, st) = scan(&f[..]).unwrap();
        assert_eq!(
            (pos, st.to_text()),
            (f.len() as u64, ends[ends.len() - 1].1.clone())
        );
        // Cut at every byte: the position is the end of the last group the
        // cut file holds whole, never inside a transaction, with its GTIDs.
        let header_end = ends[0].0 as usize;
        for cut in header_end..=f.len() {
            let (pos, st) = scan(&f[..cut]).unwrap();
            let (end, set) = ends.iter().rev().find(|(e, _)| *e as usize <= cut).unwrap();
            assert_eq!((pos, st.to_text()), (*end, set.clone()), "cut at {cut}");
        }
    }

    /// A transaction the snapshot cut after its rows and before its XID is
    /// left out of the position and of the GTID set.
    #[test]
    fn mysql_binlog_cut_inside_a_transaction() {
        let (mut f, _) = mysql_binlog();
        let end = f.len() as u64;
        f.extend(mysql_gtid(SID_A, 10));
        f.extend(mysql_query("BEGIN"));
        f.extend(crc_event(19, &[7; 30]));
        f.extend(crc_event(30, &[9; 200]));
        let (pos, st) = scan(&f[..]).unwrap();
        assert_eq!(pos, end);
        assert!(
            st.to_text()
                .starts_with("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9,"),
            "{}",
            st.to_text()
        );
        // A binlog without GTID events (5.6 format): BEGIN ... XID.
        let mut old = MAGIC.to_vec();
        old.extend(event(FORMAT_DESCRIPTION_EVENT, 1, &mysql_fde()));
        old.extend(mysql_query("BEGIN"));
        old.extend(crc_event(30, &[9; 20]));
        let open = old.len() as u64;
        old.extend(crc_event(XID_EVENT, &[0; 8]));
        assert_eq!(
            scan(&old[..open as usize]).unwrap().0,
            (MAGIC.len() + 19 + mysql_fde().len()) as u64
        );
        assert_eq!(
            scan(&old[..]).unwrap(),
            (old.len() as u64, Gtids::default())
        );
    }

    #[test]
    fn mysql_gtid_sets_merge_and_print_like_the_server() {
        let mut g = Gtids::default();
        for gno in [1, 2, 3, 7, 5, 6, 10, 4, 3] {
            g.add_mysql(SID_A, gno);
        }
        assert_eq!(g.to_text(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7:10");
        assert!(previous_gtids(&[1, 0, 0, 0, 0, 0, 0, 0, 1], false).is_err());
    }

    /// Events larger than the body buffer are skipped past, a torn one of
    /// them ends the scan, and a large query is not taken for a COMMIT.
    #[test]
    fn events_larger_than_the_buffer_are_skipped() {
        let rows = vec![0x5au8; 3 * MAX_BODY + 17];
        let mut f = MAGIC.to_vec();
        f.extend(gtid_list_event(0, 1, 7));
        f.extend(event(GTID_EVENT, 1, &gtid(8, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        f.extend(event(30, 1, &rows)); // WRITE_ROWS
        f.extend(event(XID_EVENT, 1, &[0; 8]));
        let after_trx = f.len() as u64;
        f.extend(event(GTID_EVENT, 1, &gtid(9, 0, 0)));
        f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
        let long_insert = format!("INSERT INTO t VALUES ('{}') COMMIT", "x".repeat(MAX_BODY));
        f.extend(event(QUERY_EVENT, 1, &query(&long_insert)));
        let (pos, st) = scan(&f[..]).unwrap();
        assert_eq!((pos, st.to_text()), (after_trx, "0-1-8".into()));
        let mut torn = f[..after_trx as usize].to_vec();
        torn.extend(event(GTID_EVENT, 1, &gtid(9, 0, FL_STANDALONE)));
        torn.extend(&event(30, 1, &rows)[..MAX_BODY + 100]);
        assert_eq!(scan(&torn[..]).unwrap().0, after_trx);

        let mut ev = Events::new(&f[..]).unwrap();
        let mut seen = Vec::new();
        while let Some(e) = ev.next_event().unwrap() {
            seen.push((e.ev_type, e.body.len(), e.truncated));
        }
        assert!(seen.contains(&(30, MAX_BODY, true)), "{seen:?}");
        assert_eq!(seen.len(), 8);
        assert!(scan(&b"GIF89a"[..]).is_err());
    }

    /// Bytes this thread has allocated and not freed, and their peak: the
    /// scan runs on the thread that calls it, so its memory use is what
    /// this thread holds while it runs.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(delta: isize) {
            let _ = LIVE.try_with(|l| {
                l.set(l.get() + delta);
                let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
            });
        }

        /// Runs `f`; returns its result and the most bytes it held at once.
        pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
            let base = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(base));
            let r = f();
            (r, (PEAK.with(Cell::get) - base).max(0) as usize)
        }

        pub struct Counting;

        // SAFETY: every call is forwarded to the system allocator unchanged;
        // the counters are const-initialised thread locals without
        // destructors, so updating them never allocates.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                // SAFETY: forwarded with the caller's guarantees.
                let p = unsafe { System.alloc(l) };
                if !p.is_null() {
                    note(l.size() as isize);
                }
                p
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.dealloc(p, l) };
                note(-(l.size() as isize));
            }
            unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
                // SAFETY: forwarded with the caller's guarantees.
                let q = unsafe { System.realloc(p, l, new) };
                if !q.is_null() {
                    note(new as isize - l.size() as isize);
                }
                q
            }
        }

        #[global_allocator]
        static A: Counting = Counting;
    }

    /// The position of a multi-megabyte binlog is read with a bounded
    /// amount of memory: the two buffers, not the file.
    #[test]
    fn position_of_a_large_binlog_holds_a_bounded_amount_of_memory() {
        let dir = std::env::temp_dir().join(format!("tokudb_backup_binlog_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = "mysql-bin.000007";
        let mut f = MAGIC.to_vec();
        f.extend(gtid_list_event(0, 1, 7));
        let rows = vec![0x5au8; 1 << 20];
        for seq in 8..40 {
            f.extend(event(GTID_EVENT, 1, &gtid(seq, 0, 0)));
            f.extend(event(QUERY_EVENT, 1, &query("BEGIN")));
            f.extend(event(30, 1, &rows));
            f.extend(event(XID_EVENT, 1, &[0; 8]));
        }
        let end = f.len() as u64;
        std::fs::write(dir.join(name), &f).unwrap();
        std::fs::write(dir.join("mysql-bin.index"), format!("./{name}\n")).unwrap();
        drop(f);

        let (pos, peak) =
            counting::peak_during(|| position(&dir.join("mysql-bin.index"), &dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((pos.position, pos.gtid.as_str()), (end, "0-1-39"));
        let bound = READ_BUFFER + MAX_BODY + 16 * 1024;
        assert!(
            peak <= bound,
            "reading a {end}-byte binlog held {peak} bytes at once (bound {bound})"
        );
    }
}
