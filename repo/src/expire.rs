//! Expiring backups: keep the newest N, one a day for N days and one a
//! week for N weeks (the newest of each day or ISO week, UTC), remove the
//! rest, and delete the chunks no kept backup needs. Safe against pushes
//! running at the same time: see lock.rs.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Datelike, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::lock;
use crate::repository::Repo;

/// How many backups to keep.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub keep_last: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
}

/// What expire did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExpireReport {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub chunks_deleted: usize,
    /// A push was running: unreferenced chunks were left for a later expire.
    pub chunks_deferred: bool,
}

impl Repo {
    pub fn expire(&self, policy: &Policy) -> Result<ExpireReport> {
        if policy.keep_last + policy.keep_daily + policy.keep_weekly == 0 {
            return Err(Error::Refused("expire: give at least one of --keep-last, --keep-daily, --keep-weekly above 0 (it would remove every backup)".into()));
        }
        self.rt.block_on(async {
            let marker = lock::hold(self, lock::EXPIRE, &crate::snapshot::new_id()).await?;
            let result = self.expire_held(policy, &marker.name).await;
            marker.release(self).await;
            result
        })
    }

    async fn expire_held(&self, policy: &Policy, marker: &str) -> Result<ExpireReport> {
        let mut times = Vec::new();
        for s in self.snapshots().await? {
            let t = DateTime::parse_from_rfc3339(&s.time).map_err(|e| {
                Error::Damaged(format!(
                    "{}: backup {}: time {}: {e}",
                    self.objects.url, s.id, s.time
                ))
            })?;
            times.push((s.id, t.with_timezone(&Utc)));
        }
        let keep = select(&times, policy);
        let mut report = ExpireReport::default();
        for (id, _) in times {
            if keep.contains(&id) {
                report.kept.push(id);
            } else {
                self.objects
                    .delete(&crate::snapshot::object_name(&id))
                    .await?;
                report.removed.push(id);
            }
        }
        if !lock::live(self, lock::PUSH, None).await?.is_empty() {
            report.chunks_deferred = true;
            return Ok(report);
        }
        // Listed after the push check: a push that finished before it is seen here.
        let mut needed = HashSet::new();
        for s in self.snapshots().await? {
            needed.extend(s.entries.into_iter().flat_map(|e| e.chunks));
        }
        let garbage: Vec<String> = self
            .objects
            .list("chunks")
            .await?
            .into_iter()
            .filter(|(n, _)| n.rsplit('/').next().is_some_and(|c| !needed.contains(c)))
            .map(|(n, _)| n)
            .collect();
        let mut beat = Instant::now();
        for batch in garbage.chunks(256) {
            if beat.elapsed() > lock::EXPIRE_HEARTBEAT {
                lock::refresh(self, marker).await?;
                beat = Instant::now();
            }
            futures::stream::iter(batch)
                .map(|n| self.objects.delete(n))
                .buffer_unordered(self.opts.parallel)
                .try_collect::<()>()
                .await?;
            report.chunks_deleted += batch.len();
        }
        Ok(report)
    }
}

/// Ids to keep, from (id, time) pairs.
fn select(snaps: &[(String, DateTime<Utc>)], policy: &Policy) -> HashSet<String> {
    let mut newest_first: Vec<&(String, DateTime<Utc>)> = snaps.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep = HashSet::new();
    for (id, _) in newest_first.iter().take(policy.keep_last) {
        keep.insert(id.clone());
    }
    let mut bucketed = |n: usize, bucket: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
        let mut seen = HashSet::new();
        for (id, t) in &newest_first {
            if seen.len() == n {
                break;
            }
            if seen.insert(bucket(t)) {
                keep.insert(id.clone());
            }
        }
    };
    bucketed(policy.keep_daily, &|t| (t.year(), t.ordinal()));
    bucketed(policy.keep_weekly, &|t| {
        (t.iso_week().year(), t.iso_week().week())
    });
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn keeps_last_daily_weekly() {
        let snaps: Vec<(String, DateTime<Utc>)> = [
            ("a", "2026-11-02T10:00:00Z"), // Monday, week 45
            ("b", "2026-11-09T10:00:00Z"), // week 46
            ("c", "2026-11-10T10:00:00Z"),
            ("d", "2026-11-10T12:00:00Z"),
            ("e", "2026-11-11T09:00:00Z"),
        ]
        .iter()
        .map(|(i, t)| (i.to_string(), at(t)))
        .collect();
        let ids = |p: Policy| {
            let mut v: Vec<String> = select(&snaps, &p).into_iter().collect();
            v.sort();
            v.join(",")
        };
        assert_eq!(
            ids(Policy {
                keep_last: 2,
                ..Default::default()
            }),
            "d,e"
        );
        assert_eq!(
            ids(Policy {
                keep_daily: 2,
                ..Default::default()
            }),
            "d,e"
        );
        assert_eq!(
            ids(Policy {
                keep_daily: 3,
                ..Default::default()
            }),
            "b,d,e"
        );
        assert_eq!(
            ids(Policy {
                keep_weekly: 2,
                ..Default::default()
            }),
            "a,e"
        );
        assert_eq!(
            ids(Policy {
                keep_last: 1,
                keep_weekly: 2,
                ..Default::default()
            }),
            "a,e"
        );
    }
}
