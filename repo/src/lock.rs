//! Markers that let expire and push run at the same time safely.
//!
//! A push holds `locks/push-ID` from before it lists the stored chunks until
//! its snapshot is written; an expire holds `locks/expire-ID` while it runs.
//! Expire deletes chunks only when it sees no live push marker after writing
//! its own. A push whose marker expire did not see was started after the
//! expire's marker existed, so it sees that marker at its end: it waits for
//! the expire to finish, lists the chunks again and stores any that went
//! missing before writing its snapshot. Either way no snapshot names a
//! deleted chunk. A crashed process leaves a marker: push markers older than
//! `Options::stale_after` are ignored; an expire rewrites its marker every
//! `EXPIRE_HEARTBEAT`, and one not rewritten for `EXPIRE_STALE` is ignored.

use std::time::Duration;

use crate::error::Result;
use crate::repository::Repo;

pub(crate) const PUSH: &str = "push";
pub(crate) const EXPIRE: &str = "expire";
pub(crate) const EXPIRE_HEARTBEAT: Duration = Duration::from_secs(30);
const EXPIRE_STALE: Duration = Duration::from_secs(300);

pub(crate) struct Marker {
    pub(crate) name: String,
}

/// Write the marker `locks/KIND-ID`.
pub(crate) async fn hold(repo: &Repo, kind: &str, id: &str) -> Result<Marker> {
    let name = format!("locks/{kind}-{id}");
    refresh(repo, &name).await?;
    Ok(Marker { name })
}

pub(crate) async fn refresh(repo: &Repo, name: &str) -> Result<()> {
    let body = format!(
        "{{\"pid\":{},\"time\":\"{}\"}}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    );
    repo.objects
        .put(name, repo.keys.seal(name, body.as_bytes()))
        .await
}

impl Marker {
    /// Remove the marker; a failure only leaves a marker that goes stale.
    pub(crate) async fn release(self, repo: &Repo) {
        let _ = repo.objects.delete(&self.name).await;
    }
}

/// Names of the live markers of `kind` other than `except`.
pub(crate) async fn live(repo: &Repo, kind: &str, except: Option<&str>) -> Result<Vec<String>> {
    let stale = if kind == EXPIRE {
        EXPIRE_STALE
    } else {
        repo.opts.stale_after
    };
    let oldest =
        chrono::Utc::now() - chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX);
    let prefix = format!("locks/{kind}-");
    Ok(repo
        .objects
        .list("locks")
        .await?
        .into_iter()
        .filter(|(n, m)| {
            n.starts_with(&prefix) && Some(n.as_str()) != except && m.last_modified > oldest
        })
        .map(|(n, _)| n)
        .collect())
}

/// Return once no live expire marker is left.
pub(crate) async fn wait_for_expires(repo: &Repo) -> Result<()> {
    while !live(repo, EXPIRE, None).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
