//! Backups in a repository on object storage or a local directory
//! (tokubackup-repo): `push`, `backup --push`, `list`, `expire`, and the
//! REPO:ID forms of `restore` and `verify`, which download the backup into
//! a scratch directory and then run the local restore or verify on it, so
//! the same safety rules apply.

use crate::args::{ExpireArgs, KeyArgs, ListArgs, PushArgs, RestoreArgs, VerifyArgs};
use crate::error::{Error, Exit, Result};
use crate::info::human_bytes;
use crate::manifest::{self, Backup};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tokubackup_repo::{Options, Policy, Repo};

/// A repository and optionally one backup in it, from `REPO[:ID]`.
pub struct RepoRef {
    pub repo: String,
    pub id: Option<String>,
}

/// `s3://BUCKET/PREFIX[:ID]`, or a local repository directory `DIR[:ID]`
/// (one with a `config` object and no backup manifest). `None`: a backup directory.
pub fn parse_ref(arg: &Path) -> Option<RepoRef> {
    let s = arg.to_str()?;
    let split = |s: &str| match s.rsplit_once(':') {
        Some((r, id))
            if !id.is_empty() && !id.contains('/') && !r.is_empty() && !r.ends_with(':') =>
        {
            (r.to_string(), Some(id.to_string()))
        }
        _ => (s.to_string(), None),
    };
    if let Some(rest) = s.strip_prefix("s3://") {
        let (r, id) = split(rest);
        return Some(RepoRef {
            repo: format!("s3://{r}"),
            id,
        });
    }
    let is_repo = |p: &Path| p.join("config").is_file() && !p.join(manifest::MANIFEST).exists();
    if arg.is_dir() {
        return is_repo(arg).then(|| RepoRef {
            repo: s.to_string(),
            id: None,
        });
    }
    let (r, id) = split(s);
    (id.is_some() && is_repo(Path::new(&r))).then_some(RepoRef { repo: r, id })
}

fn repo_error(e: tokubackup_repo::Error, damaged: Exit) -> Error {
    use tokubackup_repo::Error as E;
    let exit = match &e {
        E::Damaged(_) => damaged,
        E::Refused(_) | E::NoSnapshot(_) => Exit::Usage,
        E::Io(..) => Exit::RestoreFailed,
        E::Location(_) | E::Store(..) | E::NoRepository(_) | E::WrongKey(_) => Exit::Repository,
    };
    Error::new(exit, e.to_string())
}

pub fn open(repo: &str, key: &KeyArgs, create: bool) -> Result<Repo> {
    let secret = tokubackup_repo::read_key(key.key_file.as_deref())
        .map_err(|e| Error::new(Exit::Usage, e.to_string()))?;
    Repo::open(repo, &secret, create, Options::default())
        .map_err(|e| repo_error(e, Exit::Repository))
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new(what: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let template = format!("{what} [{{elapsed_precise}}] {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar(Some(bar))
    }
}

impl tokubackup_repo::Progress for Bar {
    fn total(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.set_length(bytes);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Verify the local backup `dir` against its manifest, then push it.
pub fn push(dir: &Path, repo: &str, key: &KeyArgs, threads: usize, json: bool) -> Result<()> {
    manifest::check_marker(dir)?;
    let b = Backup::open(dir)?;
    let n = crate::verify::check(&b, threads)?;
    eprintln!("push: backup '{}' verified ({n} files)", dir.display());
    let repo_h = open(repo, key, true)?;
    let t0 = std::time::Instant::now();
    let r = repo_h
        .push(dir, &Bar::new("push"))
        .map_err(|e| repo_error(e, Exit::Repository))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!(
            "push: {} -> {repo}:{} in {:.1} s: {} in {} files, {} of {} chunks uploaded ({})",
            dir.display(),
            r.id,
            t0.elapsed().as_secs_f64(),
            human_bytes(r.bytes),
            r.files,
            r.chunks_uploaded,
            r.chunks,
            human_bytes(r.bytes_uploaded)
        );
    }
    Ok(())
}

pub fn run_push(a: &PushArgs) -> Result<()> {
    push(&a.backup, &a.repo, &a.key, a.threads, a.json)
}

pub fn run_list(a: &ListArgs) -> Result<()> {
    let list = open(&a.repo, &a.key, false)?
        .list()
        .map_err(|e| repo_error(e, Exit::Repository))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    for s in &list {
        println!(
            "{}  {}  {:>10}  {:>6} files  {}:{}",
            s.id,
            s.time,
            human_bytes(s.bytes),
            s.files,
            s.host,
            s.source
        );
    }
    eprintln!("list: {} backup(s) in {}", list.len(), a.repo);
    Ok(())
}

pub fn run_expire(a: &ExpireArgs) -> Result<()> {
    let policy = Policy {
        keep_last: a.keep_last,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
    };
    let r = open(&a.repo, &a.key, false)?
        .expire(&policy)
        .map_err(|e| repo_error(e, Exit::Repository))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    for id in &r.removed {
        println!("removed {id}");
    }
    println!(
        "expire: kept {}, removed {}, {} chunks deleted",
        r.kept.len(),
        r.removed.len(),
        r.chunks_deleted
    );
    if r.chunks_deferred {
        eprintln!(
            "expire: a push is running: chunks no kept backup needs are left for the next expire"
        );
    }
    Ok(())
}

/// Download backup `id` into a fresh scratch directory beside `near`.
fn download(repo: &Repo, id: &str, near: &Path) -> Result<PathBuf> {
    let parent = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = parent.join(format!(".tokubackup-download-{}", std::process::id()));
    repo.restore(id, &scratch, &Bar::new("download"))
        .map_err(|e| repo_error(e, Exit::RestoreFailed))?;
    Ok(scratch)
}

/// Removes the downloaded copy whatever happens.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `restore REPO:ID --datadir DIR`: download, then the local restore (moving the files).
pub fn restore(r: &RepoRef, a: &RestoreArgs) -> Result<()> {
    let id = r.id.as_deref().ok_or_else(|| {
        Error::new(
            Exit::Usage,
            format!("restore from {}: give REPO:ID or REPO:latest", r.repo),
        )
    })?;
    // Refuse before downloading what could not be placed.
    if !crate::copy::absent_or_empty(&a.datadir).unwrap_or(false) {
        return Err(Error::new(
            Exit::RestoreRefused,
            format!("restore target '{}' is not empty", a.datadir.display()),
        ));
    }
    let repo = open(&r.repo, &a.key, false)?;
    let scratch = Scratch(download(&repo, id, &a.datadir)?);
    let local = RestoreArgs {
        backup: scratch.0.clone(),
        move_files: true,
        ..a.clone()
    };
    crate::restore::run(&local)
}

/// `verify REPO[:ID]`: every chunk present and authentic; with --recover,
/// also download and run the local verify --recover.
pub fn verify(r: &RepoRef, a: &VerifyArgs) -> Result<()> {
    let repo = open(&r.repo, &a.key, false)?;
    let report = repo
        .verify(r.id.as_deref(), &Bar::new("verify"))
        .map_err(|e| repo_error(e, Exit::Differs))?;
    if !report.problems.is_empty() {
        let lines: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("  {}", p.cause))
            .collect();
        return Err(Error::new(
            Exit::Differs,
            format!(
                "{}: {} problem(s):\n{}",
                r.repo,
                report.problems.len(),
                lines.join("\n")
            ),
        ));
    }
    println!(
        "verify: {}: {} backup(s), {} chunks ({}) present and authentic",
        r.repo,
        report.backups.len(),
        report.chunks,
        human_bytes(report.bytes)
    );
    if a.recover {
        let id = r.id.clone().unwrap_or_else(|| "latest".into());
        let near = a
            .scratch
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("x"));
        let scratch = Scratch(download(&repo, &id, &near)?);
        let local = VerifyArgs {
            backup: scratch.0.clone(),
            ..a.clone()
        };
        crate::verify::run(&local)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_references() {
        let r = parse_ref(Path::new("s3://b/p/q:latest")).unwrap();
        assert_eq!(
            (r.repo.as_str(), r.id.as_deref()),
            ("s3://b/p/q", Some("latest"))
        );
        let r = parse_ref(Path::new("s3://b")).unwrap();
        assert_eq!((r.repo.as_str(), r.id), ("s3://b", None));
        assert!(parse_ref(Path::new("/no/such/dir")).is_none());
    }
}
