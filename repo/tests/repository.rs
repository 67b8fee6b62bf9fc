//! The repository against a real three-node Garage cluster (and a local
//! directory): push, list, verify, restore, wrong key, an object changed in
//! the store, a node killed during a push, a restore with a node down,
//! two pushes at once, expire during a push, an interrupted push resumed.
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

/// Overwrite one chunk object of the repository `prefix` with `f` applied to it.
fn tamper(g: &Garage, prefix: &str, f: impl Fn(&mut Vec<u8>)) -> String {
    use futures::TryStreamExt;
    use object_store::{aws::AmazonS3Builder, path::Path as OPath, ObjectStore, ObjectStoreExt};
    let s3 = AmazonS3Builder::new()
        .with_endpoint(g.endpoint(0))
        .with_allow_http(true)
        .with_region("garage")
        .with_bucket_name(&g.bucket)
        .with_access_key_id(&g.key_id)
        .with_secret_access_key(&g.secret)
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let chunks: Vec<_> = s3
            .list(Some(&OPath::from(format!("{prefix}/chunks"))))
            .try_collect()
            .await
            .unwrap();
        let victim = chunks
            .iter()
            .max_by_key(|m| m.size)
            .unwrap()
            .location
            .clone();
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
            "node_killed_during_push",
            Box::new(|w| node_killed_during_push(&g, "s3://backups/kill", w)),
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
