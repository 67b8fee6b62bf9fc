//! The repository against a real three-node Garage cluster (and a local
//! directory): push, list, verify, restore, wrong key, an object changed in
//! the store, a node killed during a push (another node, then the one the
//! client talks to), a restore with a node down, two pushes at once, expire
//! during a push, an interrupted push resumed, settings from the AWS files.
//! One cluster serves every scenario, in order (they share its nodes).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

use common::garage::Garage;
use common::tree;
use tokubackup_repo::{Error, NoProgress, Options, Policy, Progress, Repo};

const KEY: &[u8] = b"correct horse battery staple";

fn opts() -> Options {
    Options {
        chunk_size: 64 * 1024,
        parallel: 8,
        ..Default::default()
    }
}

fn open(url: &str) -> Repo {
    Repo::open(url, KEY, true, opts()).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("repo-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Calls `f` once, when `at` bytes have been read.
struct At<F: Fn() + Sync> {
    seen: AtomicU64,
    at: u64,
    f: F,
}
impl<F: Fn() + Sync> Progress for At<F> {
    fn advance(&self, bytes: u64) {
        let before = self.seen.fetch_add(bytes, Ordering::SeqCst);
        if before < self.at && before + bytes >= self.at {
            (self.f)();
        }
    }
}
fn at<F: Fn() + Sync>(at: u64, f: F) -> At<F> {
    At {
        seen: AtomicU64::new(0),
        at,
        f,
    }
}

fn round_trip(url: &str, work: &Path) {
    let src = work.join("src");
    tree::make(&src, 1);
    let repo = open(url);
    let first = repo.push(&src, &NoProgress).unwrap();
    assert!(
        first.chunks_uploaded > 0 && first.chunks_uploaded < first.chunks,
        "zero pages dedup: {first:?}"
    );
    let list = repo.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, first.id);
    assert_eq!(list[0].files, 6);
    let v = repo.verify(None, &NoProgress).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(v.chunks > 0);
    let out = work.join("restored");
    repo.restore(&first.id, &out, &NoProgress).unwrap();
    tree::assert_same(&src, &out);

    // One 16 KiB page changed: the second push stores one chunk.
    let f = src.join("db1/big.ibd");
    let mut data = std::fs::read(&f).unwrap();
    data[2_000_000..2_016_384].copy_from_slice(&tree::noise(99, 16384));
    std::fs::write(&f, &data).unwrap();
    let second = repo.push(&src, &NoProgress).unwrap();
    assert_eq!(second.chunks_uploaded, 1, "{second:?}");
    let out2 = work.join("restored2");
    repo.restore("latest", &out2, &NoProgress).unwrap();
    tree::assert_same(&src, &out2);
    // The first backup still restores as it was.
    let out1 = work.join("restored1");
    repo.restore(&first.id, &out1, &NoProgress).unwrap();
    tree::assert_same(&out, &out1);

    // A non-empty target is refused and left alone.
    let e = repo.restore("latest", &out, &NoProgress).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    tree::assert_same(&out, &out1);
}

fn wrong_key(url: &str, work: &Path) {
    let e = Repo::open(url, b"not the key", false, opts())
        .err()
        .expect("a wrong key must not open the repository");
    assert!(matches!(e, Error::WrongKey(_)), "{e}");
    assert!(e.to_string().contains("key"), "{e}");
    let e = Repo::open(&format!("{url}-none"), KEY, false, opts())
        .err()
        .expect("no repository");
    assert!(matches!(e, Error::NoRepository(_)), "{e}");
    assert_eq!(
        std::fs::read_dir(work).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A client of node `node`'s S3 API, outside the repository code.
fn s3_client(g: &Garage, node: usize) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(g.endpoint(node))
        .with_allow_http(true)
        .with_region("garage")
        .with_bucket_name(&g.bucket)
        .with_access_key_id(&g.key_id)
        .with_secret_access_key(&g.secret)
        .build()
        .unwrap()
}

/// The chunk objects of the repository `prefix`, as node `node` lists them.
fn chunk_objects(g: &Garage, node: usize, prefix: &str) -> Vec<object_store::ObjectMeta> {
    use futures::TryStreamExt;
    use object_store::{path::Path as OPath, ObjectStore};
    let s3 = s3_client(g, node);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(
        s3.list(Some(&OPath::from(format!("{prefix}/chunks"))))
            .try_collect(),
    )
    .unwrap()
}

/// Overwrite one chunk object of the repository `prefix` with `f` applied to it.
fn tamper(g: &Garage, prefix: &str, f: impl Fn(&mut Vec<u8>)) -> String {
    use object_store::ObjectStoreExt;
    let victim = chunk_objects(g, 0, prefix)
        .into_iter()
        .max_by_key(|m| m.size)
        .unwrap()
        .location;
    let s3 = s3_client(g, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut data = s3
            .get(&victim)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        f(&mut data);
        s3.put(&victim, data.into()).await.unwrap();
        victim.as_ref().rsplit('/').next().unwrap().to_string()
    })
}

fn tampered(g: &Garage, url: &str, prefix: &str, work: &Path) {
    let src = work.join("src");
    tree::make(&src, 2);
    let repo = open(url);
    let id = repo.push(&src, &NoProgress).unwrap().id;
    let chunk = tamper(g, prefix, |d| {
        let n = d.len();
        d[n / 2] ^= 0x40;
    });
    let v = repo.verify(Some(&id), &NoProgress).unwrap();
    assert!(!v.problems.is_empty(), "verify must find the changed chunk");
    let p = &v.problems[0];
    assert_eq!(p.backup, id);
    assert_eq!(p.chunk, chunk);
    assert!(p.file.starts_with("db1/") || p.file == "ibdata1", "{p:?}");
    assert!(
        p.cause.contains(&id) && p.cause.contains(&p.file) && p.cause.contains("authentication"),
        "{}",
        p.cause
    );
    let out = work.join("restored");
    let e = repo.restore(&id, &out, &NoProgress).unwrap_err();
    assert!(matches!(e, Error::Damaged(_)), "{e}");
    assert!(e.to_string().contains(&chunk), "{e}");
    assert!(!out.exists(), "a refused restore leaves no target");
    assert_eq!(
        std::fs::read_dir(work).unwrap().count(),
        1,
        "no partial directory left: only src"
    );
}

fn node_killed_during_push(g: &Garage, url: &str, work: &Path) {
    let src = work.join("src");
    tree::make(&src, 3);
    let repo = open(url);
    // Node 2 (not the endpoint, node 0) dies a third of the way in; with
    // replication factor 3 the other two are a quorum.
    let report = repo.push(&src, &at(2_000_000, || g.kill(2))).unwrap();
    assert!(report.chunks_uploaded > 0);
    // Restore with node 2 still down.
    let out = work.join("restored");
    repo.restore(&report.id, &out, &NoProgress).unwrap();
    tree::assert_same(&src, &out);
    let v = repo.verify(Some("latest"), &NoProgress).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    g.restart(2);
    // A second push of the same tree finds every chunk stored.
    let again = repo.push(&src, &NoProgress).unwrap();
    assert_eq!(again.chunks_uploaded, 0, "{again:?}");
}

/// Sets environment variables for a scenario and puts the old values back
/// when dropped (also when the scenario panics).
struct EnvGuard(Vec<(&'static str, Option<std::ffi::OsString>)>);
impl EnvGuard {
    fn set(vars: &[(&'static str, Option<String>)]) -> EnvGuard {
        let old = vars
            .iter()
            .map(|(k, _)| (*k, std::env::var_os(k)))
            .collect();
        for (k, v) in vars {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        EnvGuard(old)
    }
}
impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (k, v) in &self.0 {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

/// The endpoint node (node 0) dies during a push: the push fails, naming
/// the endpoint; run again against node 1's endpoint, it uploads only the
/// chunks that were not stored; a restore through node 1 with node 0 down.
fn endpoint_killed_during_push(g: &Garage, url: &str, prefix: &str, work: &Path) {
    let src = work.join("src");
    tree::make(&src, 8);
    let e = open(url)
        .push(&src, &at(2_000_000, || g.kill(0)))
        .expect_err("a push whose endpoint died must fail");
    assert!(
        matches!(e, Error::Store(..))
            && e.to_string()
                .contains(&format!("(endpoint {})", g.endpoint(0))),
        "{e}"
    );
    let stored = chunk_objects(g, 1, prefix).len();
    assert!(stored > 0, "some chunks were stored before the node died");
    let _env = EnvGuard::set(&[("AWS_ENDPOINT_URL", Some(g.endpoint(1)))]);
    let repo = open(url);
    assert!(
        repo.list().unwrap().is_empty(),
        "a failed push leaves no backup"
    );
    let resumed = repo.push(&src, &NoProgress).unwrap();
    let after = chunk_objects(g, 1, prefix).len();
    assert_eq!(
        after,
        stored + resumed.chunks_uploaded,
        "the rerun uploaded chunks already stored: {resumed:?}"
    );
    let out = work.join("restored");
    repo.restore("latest", &out, &NoProgress).unwrap();
    tree::assert_same(&src, &out);
    g.restart(0);
}

/// Endpoint, region and keys from the AWS shared files instead of the
/// environment: a named profile in files named by AWS_CONFIG_FILE and
/// AWS_SHARED_CREDENTIALS_FILE (endpoint in a nested `s3 =` section), then
/// the default profile in ~/.aws.
fn aws_config_files(g: &Garage, url: &str, work: &Path) {
    let creds = work.join("credentials");
    let config = work.join("config");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = GKwrong\naws_secret_access_key = wrong\n\
             [garage]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            g.key_id, g.secret
        ),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\n[profile garage]\nregion = garage\ns3 =\n  endpoint_url = {}\n",
            g.endpoint(1)
        ),
    )
    .unwrap();
    let none = |k| (k, None);
    let path = |k, p: &Path| (k, Some(p.display().to_string()));
    let _env = EnvGuard::set(&[
        none("AWS_ENDPOINT_URL"),
        none("AWS_REGION"),
        none("AWS_ACCESS_KEY_ID"),
        none("AWS_SECRET_ACCESS_KEY"),
        ("AWS_PROFILE", Some("garage".into())),
        path("AWS_CONFIG_FILE", &config),
        path("AWS_SHARED_CREDENTIALS_FILE", &creds),
    ]);
    let src = work.join("src");
    tree::make(&src, 9);
    let id = open(url).push(&src, &NoProgress).unwrap().id;
    {
        let _p = EnvGuard::set(&[("AWS_PROFILE", Some("nosuch".into()))]);
        let e = Repo::open(url, KEY, false, opts())
            .err()
            .expect("no profile");
        let m = e.to_string();
        assert!(
            m.contains("nosuch") && m.contains(&creds.display().to_string()),
            "{m}"
        );
    }
    let home = work.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
            g.key_id, g.secret
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!("[default]\nregion=garage\nendpoint_url={}\n", g.endpoint(2)),
    )
    .unwrap();
    let _home = EnvGuard::set(&[
        none("AWS_PROFILE"),
        none("AWS_CONFIG_FILE"),
        none("AWS_SHARED_CREDENTIALS_FILE"),
        path("HOME", &home),
    ]);
    let list = open(url).list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
}

fn interrupted_push_resumes(url: &str, work: &Path) {
    let src = work.join("src");
    tree::make(&src, 4);
    let repo = open(url);
    // The last file in push order vanishes half way: the push fails, naming it.
    let last = src.join("small.txt");
    let e = repo
        .push(
            &src,
            &at(3_000_000, || {
                std::fs::rename(&last, work.join("moved")).unwrap()
            }),
        )
        .unwrap_err();
    assert!(e.to_string().contains("small.txt"), "{e}");
    assert!(
        repo.list().unwrap().is_empty(),
        "a failed push leaves no backup"
    );
    std::fs::rename(work.join("moved"), &last).unwrap();
    let total = open(&format!("{url}-fresh"))
        .push(&src, &NoProgress)
        .unwrap()
        .chunks_uploaded;
    let resumed = repo.push(&src, &NoProgress).unwrap();
    assert!(
        resumed.chunks_uploaded < total / 2,
        "resumed push re-uploaded stored chunks: {resumed:?} of {total}"
    );
    let out = work.join("restored");
    repo.restore("latest", &out, &NoProgress).unwrap();
    tree::assert_same(&src, &out);
}

fn concurrent_pushes(url: &str, work: &Path) {
    let (a, b) = (work.join("a"), work.join("b"));
    tree::make(&a, 5);
    tree::make(&b, 6); // shares ibdata1 with a
    open(url); // the repository exists before the race
    let ids: Vec<String> = std::thread::scope(|s| {
        let h: Vec<_> = [&a, &b]
            .map(|d| s.spawn(move || open(url).push(d, &NoProgress).unwrap().id))
            .into();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let repo = open(url);
    assert_eq!(repo.list().unwrap().len(), 2);
    assert!(repo.verify(None, &NoProgress).unwrap().problems.is_empty());
    for (id, d) in ids.iter().zip([&a, &b]) {
        let out = work.join(format!("r-{id}"));
        repo.restore(id, &out, &NoProgress).unwrap();
        tree::assert_same(d, &out);
    }
}

fn expire_during_push(url: &str, work: &Path) {
    let (a, c) = (work.join("a"), work.join("c"));
    tree::make(&a, 7);
    tree::make(&c, 7);
    std::fs::write(c.join("db1/new.ibd"), tree::noise(70, 500_000)).unwrap();
    let repo = open(url);
    let old = repo.push(&a, &NoProgress).unwrap().id;
    std::fs::write(a.join("db1/only_a.ibd"), tree::noise(71, 300_000)).unwrap();
    repo.push(&a, &NoProgress).unwrap();
    // c reuses a's chunks; expire (keep the last 1) runs while c's push is
    // half done, removing both of a's backups.
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, go_rx) = (Mutex::new(ready_tx), Mutex::new(go_rx));
    let (during, pushed) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let p = at(3_000_000, || {
                ready_tx.lock().unwrap().send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            });
            open(url).push(&c, &p).unwrap()
        });
        ready_rx.recv().unwrap();
        let r = open(url).expire(&Policy {
            keep_last: 1,
            ..Default::default()
        });
        // Let the push go on before any assertion can fail.
        go_tx.send(()).unwrap();
        (r.unwrap(), h.join().unwrap())
    });
    assert_eq!(during.removed.len(), 1, "{during:?}");
    assert!(
        during.chunks_deferred,
        "expire must see the running push: {during:?}"
    );
    assert!(repo.list().unwrap().iter().all(|s| s.id != old));
    // With no push running, expire deletes what no kept backup needs.
    let r = repo
        .expire(&Policy {
            keep_last: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.kept, vec![pushed.id.clone()]);
    assert!(r.chunks_deleted > 0 && !r.chunks_deferred, "{r:?}");
    let v = repo.verify(None, &NoProgress).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let out = work.join("restored");
    repo.restore(&pushed.id, &out, &NoProgress).unwrap();
    tree::assert_same(&c, &out);
}

#[test]
fn local_directory_repository() {
    let work = scratch("local");
    let url = work.join("repo").display().to_string();
    let w = work.join("w");
    std::fs::create_dir_all(&w).unwrap();
    round_trip(&url, &w);
    let w = work.join("k");
    std::fs::create_dir_all(&w).unwrap();
    wrong_key(&url, &w);
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn garage_cluster() {
    let g = Garage::start("backups");
    for (k, v) in g.env(0) {
        std::env::set_var(k, v);
    }
    let base = scratch("garage");
    let mut failed = Vec::new();
    type Scenario<'a> = (&'static str, Box<dyn Fn(&Path) + 'a>);
    let scenarios: Vec<Scenario> = vec![
        ("round_trip", Box::new(|w| round_trip("s3://backups/rt", w))),
        ("wrong_key", Box::new(|w| wrong_key("s3://backups/rt", w))),
        (
            "tampered",
            Box::new(|w| tampered(&g, "s3://backups/tamper", "tamper", w)),
        ),
        (
            "interrupted_push_resumes",
            Box::new(|w| interrupted_push_resumes("s3://backups/resume", w)),
        ),
        (
            "concurrent_pushes",
            Box::new(|w| concurrent_pushes("s3://backups/two", w)),
        ),
        (
            "expire_during_push",
            Box::new(|w| expire_during_push("s3://backups/expire", w)),
        ),
        (
            "aws_config_files",
            Box::new(|w| aws_config_files(&g, "s3://backups/profile", w)),
        ),
        (
            "node_killed_during_push",
            Box::new(|w| node_killed_during_push(&g, "s3://backups/kill", w)),
        ),
        (
            "endpoint_killed_during_push",
            Box::new(|w| endpoint_killed_during_push(&g, "s3://backups/kill0", "kill0", w)),
        ),
    ];
    for (name, f) in &scenarios {
        let w = base.join(name);
        std::fs::create_dir_all(&w).unwrap();
        let t0 = std::time::Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&w))) {
            Ok(()) => eprintln!("scenario {name}: ok ({:.1}s)", t0.elapsed().as_secs_f64()),
            Err(_) => failed.push(*name),
        }
    }
    assert!(
        failed.is_empty(),
        "failed scenarios: {failed:?} (garage logs in {})",
        g.dir.display()
    );
    std::fs::remove_dir_all(&base).unwrap();
}
