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
use std::io::{self, BufRead, BufReader, Read};
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

/// GTID state: domain -> (server_id, seq_no).
pub type GtidState = BTreeMap<u32, (u32, u64)>;

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

/// Scans one binlog file; returns (end of last complete group, GTID state there).
pub fn scan(input: impl Read) -> io::Result<(u64, GtidState)> {
    let mut events = Events::new(input)?;
    let mut state = GtidState::new();
    let mut safe = (MAGIC.len() as u64, state.clone());
    let mut checksum_len = 0usize;
    // (domain, server, seq, standalone) of the open group.
    let mut group: Option<(u32, u32, u64, bool)> = None;
    while let Some(ev) = events.next_event()? {
        let body = ev.body;
        let mut group_done = false;
        match ev.ev_type {
            FORMAT_DESCRIPTION_EVENT => {
                // binlog_version(2) server_version(50) timestamp(4)
                // header_len(1) post_header_lens(...) alg(1) crc(4)
                if body.len() >= 57 + 5 {
                    let alg = body[body.len() - 5];
                    checksum_len = if alg == 1 { 4 } else { 0 };
                }
            }
            GTID_LIST_EVENT if group.is_none() => state = gtid_list(body, ev.truncated)?,
            GTID_EVENT if body.len() >= 13 => {
                let flags = body[12];
                group = Some((
                    u32le(body, 8),
                    ev.server_id,
                    u64le(body, 0),
                    flags & FL_STANDALONE != 0,
                ));
                continue;
            }
            XID_EVENT => group_done = group.is_some(),
            QUERY_EVENT => {
                if let Some((.., standalone)) = group {
                    // COMMIT and ROLLBACK are short: a truncated query is neither.
                    group_done =
                        standalone || (!ev.truncated && query_ends_group(body, checksum_len));
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
            safe = (ev.end, state.clone());
        }
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
    let f = std::fs::File::open(&file).map_err(|e| {
        Failure::io(
            "binary log listed in the copied index is missing from the backup",
            &file,
            &e,
        )
    })?;
    let (pos, state) = scan(f).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Failure::new(
            libc::EINVAL,
            format!("cannot parse '{}': {e}", file.display()),
        ),
        _ => Failure::io("cannot read", &file, &e),
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
        assert_eq!(gtid_string(&st), "0-2-9");
        // Torn event at the end, inside the first transaction.
        let (pos, st) = scan(&f[..after_trx as usize - 3]).unwrap();
        assert!(pos < after_trx);
        assert_eq!(gtid_string(&st), "0-1-7");
        f.extend(event(QUERY_EVENT, 1, &query("COMMIT")));
        assert_eq!(scan(&f[..]).unwrap().0, f.len() as u64);
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
        assert_eq!((pos, gtid_string(&st)), (after_trx, "0-1-8".into()));
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
