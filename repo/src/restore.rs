//! Restoring a backup from the repository into a directory: parallel
//! downloads written in place, every chunk authenticated before it is
//! written. The files go to a hidden directory beside the target, renamed
//! to the target only when all are written and synced, so a failed restore
//! never leaves a target that looks complete.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use crate::error::{io, Error, Result};
use crate::push::chunk_object;
use crate::repository::Repo;
use crate::snapshot::Snapshot;
use crate::Progress;

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    pub id: String,
    pub files: usize,
    pub bytes: u64,
}

impl Repo {
    /// Restore backup `id` (or `latest`) into `target`, which must be
    /// absent or an empty directory.
    pub fn restore(
        &self,
        id: &str,
        target: &Path,
        progress: &dyn Progress,
    ) -> Result<RestoreReport> {
        self.rt.block_on(async {
            let id = self.resolve(id).await?;
            let snap = self.read_snapshot(&id).await?;
            check_target(target)?;
            let partial = partial_dir(target)?;
            progress.total(snap.bytes);
            let result = self.restore_into(&snap, &partial, progress).await;
            if let Err(e) = result {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
            if target.exists() {
                std::fs::remove_dir(target).map_err(io(target))?;
            }
            std::fs::rename(&partial, target).map_err(io(target))?;
            let files = snap.entries.iter().filter(|e| !e.dir).count();
            Ok(RestoreReport {
                id,
                files,
                bytes: snap.bytes,
            })
        })
    }

    async fn restore_into(
        &self,
        snap: &Snapshot,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<()> {
        for e in &snap.entries {
            let p = dir.join(&e.path);
            if e.dir {
                std::fs::create_dir_all(&p).map_err(io(&p))?;
            } else {
                let f = std::fs::File::create(&p).map_err(io(&p))?;
                f.set_len(e.size).map_err(io(&p))?;
            }
        }
        let pieces = snap.entries.iter().filter(|e| !e.dir).flat_map(|e| {
            e.chunks
                .iter()
                .enumerate()
                .map(move |(k, c)| (e, k as u64 * snap.chunk_size, c))
        });
        futures::stream::iter(pieces)
            .map(|(e, offset, cid)| async move {
                let len = (e.size - offset).min(snap.chunk_size) as usize;
                let data = self.fetch_chunk(&snap.id, &e.path, cid, len).await?;
                let path = dir.join(&e.path);
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(&path))?;
                    f.write_all_at(&data, offset).map_err(io(&path))
                })
                .await
                .expect("write task does not panic")?;
                progress.advance(len as u64);
                Ok::<(), Error>(())
            })
            .buffer_unordered(self.opts.parallel)
            .try_collect::<()>()
            .await?;
        finish_files(snap, dir)
    }

    /// Download, authenticate and decompress one chunk of `file` in backup `id`.
    pub(crate) async fn fetch_chunk(
        &self,
        id: &str,
        file: &str,
        cid: &str,
        len: usize,
    ) -> Result<Vec<u8>> {
        let damaged = |why: &str| {
            Error::Damaged(format!(
                "{}: backup {id}: file {file}: chunk {cid} {why}",
                self.objects.url
            ))
        };
        let sealed = self
            .objects
            .get(&chunk_object(cid))
            .await?
            .ok_or_else(|| damaged("is missing from the store"))?;
        let keys = self.keys.clone();
        let cid2 = cid.to_string();
        let data = tokio::task::spawn_blocking(move || keys.open_chunk(&cid2, &sealed))
            .await
            .expect("decrypt task does not panic")
            .ok_or_else(|| damaged("fails authentication (changed in the store)"))?;
        if data.len() != len {
            return Err(damaged(&format!(
                "holds {} bytes where {len} belong",
                data.len()
            )));
        }
        Ok(data)
    }
}

/// Modes as in the backup, files synced; directories last (a read-only
/// directory would refuse its files).
fn finish_files(snap: &Snapshot, dir: &Path) -> Result<()> {
    for e in snap.entries.iter().filter(|e| !e.dir) {
        let p = dir.join(&e.path);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io(&p))?;
        f.sync_all().map_err(io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode)).map_err(io(&p))?;
    }
    for e in snap.entries.iter().rev().filter(|e| e.dir) {
        let p = dir.join(&e.path);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode)).map_err(io(&p))?;
    }
    Ok(())
}

fn check_target(target: &Path) -> Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut d) => match d.next() {
            None => Ok(()),
            Some(_) => Err(Error::Refused(format!(
                "{}: restore target is not empty; nothing was written",
                target.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(target.to_path_buf(), e)),
    }
}

/// A fresh hidden directory beside `target`.
fn partial_dir(target: &Path) -> Result<PathBuf> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let p = parent.join(format!(
        ".{name}.restoring-{}",
        crate::crypto::random_hex(4)
    ));
    std::fs::create_dir_all(&p).map_err(io(&p))?;
    Ok(p)
}
