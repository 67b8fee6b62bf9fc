//! Pushing a backup directory: fixed-size chunks, each stored once under
//! its keyed hash; chunks already in the store (an earlier backup, or an
//! interrupted push of this one) are not uploaded again. The snapshot is
//! written last, after a final listing shows every chunk it needs.

use std::collections::HashSet;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use crate::error::{io, Error, Result};
use crate::lock;
use crate::repository::Repo;
use crate::snapshot::{self, Entry, Snapshot};
use crate::Progress;

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub id: String,
    pub files: usize,
    /// Bytes of the backup.
    pub bytes: u64,
    /// Chunks the backup is made of (with repeats).
    pub chunks: usize,
    /// Chunks this push stored, and their size in the store.
    pub chunks_uploaded: usize,
    pub bytes_uploaded: u64,
}

/// One chunk of one file: (entry index, chunk index, offset, length).
type Piece = (usize, usize, u64, usize);

impl Repo {
    /// Store the directory `dir` as a new backup; returns its id.
    pub fn push(&self, dir: &Path, progress: &dyn Progress) -> Result<PushReport> {
        self.rt.block_on(self.push_async(dir, progress))
    }

    async fn push_async(&self, dir: &Path, progress: &dyn Progress) -> Result<PushReport> {
        let entries = scan(dir)?;
        let id = snapshot::new_id();
        let bytes: u64 = entries.iter().map(|e| e.size).sum();
        progress.total(bytes);
        let marker = lock::hold(self, lock::PUSH, &id).await?;
        let result = self.push_entries(dir, &id, entries, bytes, progress).await;
        marker.release(self).await;
        result
    }

    async fn push_entries(
        &self,
        dir: &Path,
        id: &str,
        mut entries: Vec<Entry>,
        bytes: u64,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let pieces = self.pieces(&entries);
        let claimed = Arc::new(Mutex::new(self.stored_chunks().await?));
        let mut report = PushReport {
            id: id.to_string(),
            bytes,
            chunks: pieces.len(),
            ..Default::default()
        };
        for e in &mut entries {
            e.chunks = vec![String::new(); chunk_count(e.size, self.chunk_size)];
        }
        let done: Vec<(Piece, String, Option<u64>)> = futures::stream::iter(pieces.iter().copied())
            .map(|p| self.push_piece(dir, &entries, p, &claimed, progress))
            .buffer_unordered(self.opts.parallel)
            .try_collect()
            .await?;
        for ((entry, k, _, _), cid, uploaded) in done {
            entries[entry].chunks[k] = cid;
            if let Some(n) = uploaded {
                report.chunks_uploaded += 1;
                report.bytes_uploaded += n;
            }
        }
        // An expire that ran meanwhile may have removed a chunk this push
        // found stored; once none runs, store again whatever is missing.
        lock::wait_for_expires(self).await?;
        let stored = self.stored_chunks().await?;
        let missing: Vec<Piece> = pieces
            .into_iter()
            .filter(|&(e, k, _, _)| !stored.contains(&entries[e].chunks[k]))
            .collect();
        if !missing.is_empty() {
            let fresh = Arc::new(Mutex::new(HashSet::new()));
            let redone: Vec<(Piece, String, Option<u64>)> = futures::stream::iter(missing)
                .map(|p| self.push_piece(dir, &entries, p, &fresh, &crate::NoProgress))
                .buffer_unordered(self.opts.parallel)
                .try_collect()
                .await?;
            for (_, _, uploaded) in redone {
                report.chunks_uploaded += uploaded.is_some() as usize;
                report.bytes_uploaded += uploaded.unwrap_or(0);
            }
        }
        report.files = entries.iter().filter(|e| !e.dir).count();
        let snap = Snapshot {
            id: id.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source: dir.display().to_string(),
            host: hostname(),
            bytes,
            chunk_size: self.chunk_size,
            entries,
        };
        let name = snapshot::object_name(id);
        let plain = serde_json::to_vec(&snap).expect("snapshot serializes");
        self.objects
            .put(&name, self.keys.seal(&name, &plain))
            .await?;
        Ok(report)
    }

    /// Read, hash and (unless stored or claimed by another task) seal and
    /// upload one chunk. Returns its id and the bytes uploaded.
    async fn push_piece(
        &self,
        dir: &Path,
        entries: &[Entry],
        piece: Piece,
        claimed: &Arc<Mutex<HashSet<String>>>,
        progress: &dyn Progress,
    ) -> Result<(Piece, String, Option<u64>)> {
        let (entry, _, offset, len) = piece;
        let path = dir.join(&entries[entry].path);
        let (keys, claimed) = (self.keys.clone(), claimed.clone());
        let (cid, sealed) =
            tokio::task::spawn_blocking(move || -> Result<(String, Option<Vec<u8>>)> {
                let data = read_at(&path, offset, len)?;
                let cid = keys.chunk_id(&data);
                let fresh = claimed
                    .lock()
                    .expect("no panics while held")
                    .insert(cid.clone());
                Ok((
                    cid.clone(),
                    fresh.then(|| keys.seal(&crate::crypto::chunk_name(&cid), &data)),
                ))
            })
            .await
            .expect("chunk task does not panic")?;
        let uploaded = match sealed {
            Some(s) => {
                let n = s.len() as u64;
                self.objects.put(&chunk_object(&cid), s).await?;
                Some(n)
            }
            None => None,
        };
        progress.advance(len as u64);
        Ok((piece, cid, uploaded))
    }

    fn pieces(&self, entries: &[Entry]) -> Vec<Piece> {
        let cs = self.chunk_size;
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| !e.dir) {
            for k in 0..chunk_count(e.size, cs) {
                let off = k as u64 * cs;
                out.push((i, k, off, (e.size - off).min(cs) as usize));
            }
        }
        out
    }

    /// Ids of the chunks in the store.
    pub(crate) async fn stored_chunks(&self) -> Result<HashSet<String>> {
        Ok(self
            .objects
            .list("chunks")
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.rsplit('/').next().map(str::to_string))
            .collect())
    }
}

pub(crate) fn chunk_object(id: &str) -> String {
    format!("chunks/{}/{id}", &id[..2])
}

pub(crate) fn chunk_count(size: u64, chunk_size: u64) -> usize {
    size.div_ceil(chunk_size) as usize
}

fn read_at(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).map_err(io(path))?;
    Ok(buf)
}

/// Every directory and regular file under `dir`, parents before children.
fn scan(dir: &Path) -> Result<Vec<Entry>> {
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(Error::Refused(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    walk(dir, PathBuf::new(), &mut out)?;
    Ok(out)
}

fn walk(root: &Path, rel: PathBuf, out: &mut Vec<Entry>) -> Result<()> {
    let here = root.join(&rel);
    let mut names: Vec<_> = std::fs::read_dir(&here)
        .map_err(io(&here))?
        .map(|d| d.map(|d| d.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io(&here))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let text = rel
            .to_str()
            .ok_or_else(|| Error::Refused(format!("{}: file name is not UTF-8", path.display())))?
            .to_string();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.push(Entry {
                path: text,
                dir: true,
                mode,
                size: 0,
                chunks: vec![],
            });
            walk(root, rel, out)?;
        } else if meta.is_file() {
            out.push(Entry {
                path: text,
                dir: false,
                mode,
                size: meta.len(),
                chunks: vec![],
            });
        } else {
            return Err(Error::Refused(format!(
                "{}: not a regular file or directory; a backup has only those",
                path.display()
            )));
        }
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
