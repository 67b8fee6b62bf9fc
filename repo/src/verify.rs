//! Verifying backups in the repository: every chunk a backup needs is
//! downloaded once, authenticated and checked against its keyed hash; each
//! problem names the backup, the file and the chunk.

use std::collections::HashMap;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::repository::Repo;
use crate::snapshot::Snapshot;
use crate::Progress;

/// A chunk (or snapshot object) that is missing or not authentic.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    pub backup: String,
    /// Empty when the snapshot object itself is damaged.
    pub file: String,
    pub chunk: String,
    pub cause: String,
}

/// What verify checked and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub backups: Vec<String>,
    pub chunks: usize,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl Repo {
    /// Verify one backup (`id` or `latest`), or all with `None`.
    pub fn verify(&self, id: Option<&str>, progress: &dyn Progress) -> Result<VerifyReport> {
        self.rt.block_on(async {
            let ids = match id {
                Some(id) => vec![self.resolve(id).await?],
                None => self.snapshot_ids().await?,
            };
            let mut report = VerifyReport {
                backups: ids.clone(),
                ..Default::default()
            };
            let mut snaps = Vec::new();
            for id in ids {
                match self.read_snapshot(&id).await {
                    Ok(s) => snaps.push(s),
                    Err(Error::Damaged(cause)) => report.problems.push(Problem {
                        backup: id,
                        file: String::new(),
                        chunk: String::new(),
                        cause,
                    }),
                    Err(e) => return Err(e),
                }
            }
            let bad = self.check_chunks(&snaps, &mut report, progress).await?;
            for s in &snaps {
                for e in &s.entries {
                    for c in e.chunks.iter().filter(|c| bad.contains_key(*c)) {
                        report.problems.push(Problem {
                            backup: s.id.clone(),
                            file: e.path.clone(),
                            chunk: c.clone(),
                            cause: format!(
                                "backup {}: file {}: chunk {c} {}",
                                s.id, e.path, bad[c]
                            ),
                        });
                    }
                }
            }
            Ok(report)
        })
    }

    /// Check each distinct chunk once; the bad ones with their cause.
    async fn check_chunks(
        &self,
        snaps: &[Snapshot],
        report: &mut VerifyReport,
        progress: &dyn Progress,
    ) -> Result<HashMap<String, String>> {
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for s in snaps {
            for e in s.entries.iter().filter(|e| !e.dir) {
                for (k, c) in e.chunks.iter().enumerate() {
                    let len = (e.size - k as u64 * s.chunk_size).min(s.chunk_size) as usize;
                    wanted.insert(c, len);
                }
            }
        }
        report.chunks = wanted.len();
        report.bytes = wanted.values().map(|&l| l as u64).sum();
        progress.total(report.bytes);
        let results: Vec<(String, Option<String>)> = futures::stream::iter(wanted)
            .map(|(cid, len)| async move {
                let r = self.fetch_chunk("", "", cid, len).await;
                progress.advance(len as u64);
                (cid.to_string(), r)
            })
            .buffer_unordered(self.opts.parallel)
            .map(|(cid, r)| match r {
                Ok(_) => Ok((cid, None)),
                // "...: chunk ID why": keep the why.
                Err(Error::Damaged(m)) => Ok((
                    cid.clone(),
                    Some(
                        m.rsplit_once(&cid)
                            .map_or(m.clone(), |(_, w)| w.trim().to_string()),
                    ),
                )),
                Err(e) => Err(e),
            })
            .collect::<Vec<Result<_>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok(results
            .into_iter()
            .filter_map(|(c, why)| why.map(|w| (c, w)))
            .collect())
    }
}
