//! tokubackup with a repository on a real three-node Garage cluster (the
//! harness of tokubackup-repo's tests): `backup --push` under the bank load,
//! `list --json`, `verify REPO:latest`, `restore REPO:latest` and a server on
//! the restored datadir that keeps the bank's invariants; `list` with the
//! store's settings in ~/.aws only; a wrong key; expire.

#[path = "../../plugin/tests/common/mod.rs"]
mod common;
#[path = "../../repo/tests/common/garage.rs"]
#[allow(dead_code)] // restart() serves the repository tests only
mod garage;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn tb(g: &garage::Garage, key: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokubackup"))
        .args(args)
        .envs(g.env(0))
        .env("TOKUBACKUP_KEY_FILE", key)
        .output()
        .unwrap()
}

fn tb_expect(g: &garage::Garage, key: &Path, args: &[&str], code: i32) -> String {
    let o = tb(g, key, args);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        o.status.code(),
        Some(code),
        "tokubackup {args:?}: expected exit {code}:\n{t}"
    );
    t
}

#[test]
fn backup_push_list_verify_restore_from_garage() {
    let g = garage::Garage::start("cli");
    let work = std::fs::canonicalize(scratch("cli-repo")).unwrap();
    let key = work.join("key");
    std::fs::write(&key, "a repository passphrase\n").unwrap();
    let repo = "s3://cli/bank";

    let s = Server::start("cli-repo", Opts::default());
    load_bank(&s, 2048);
    let mut load = Load::start(&s);
    std::thread::sleep(Duration::from_secs(1));
    let bk = work.join("backup");
    let sock = format!("--socket={}", s.sock.display());
    let out = tb_expect(
        &g,
        &key,
        &[
            "backup",
            bk.to_str().unwrap(),
            "--no-defaults",
            &sock,
            "--user=root",
            "--push",
            repo,
        ],
        0,
    );
    assert!(
        out.contains("push: ") && out.contains("chunks uploaded"),
        "{out}"
    );
    load.assert_running();
    load.stop();
    drop(s);

    let o = tb(&g, &key, &["list", repo, "--json"]);
    assert!(o.status.success());
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Endpoint, region and keys from ~/.aws instead of the environment.
    let home = work.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            g.key_id, g.secret
        ),
    )
    .unwrap();
    let config = format!(
        "[default]\nregion = garage\nendpoint_url = {}\n",
        g.endpoint(1)
    );
    std::fs::write(home.join(".aws/config"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokubackup"));
    for (k, _) in g.env(0) {
        cmd.env_remove(k);
    }
    let o = cmd
        .args(["list", repo])
        .env("HOME", &home)
        .env("TOKUBACKUP_KEY_FILE", &key)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && t.contains(&id),
        "list with ~/.aws: {t}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = tb_expect(&g, &key, &["verify", &format!("{repo}:latest")], 0);
    assert!(v.contains("present and authentic"), "{v}");

    // A wrong key: a clear error, exit 11, nothing written.
    let wrong = work.join("wrong");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let target = work.join("restored");
    let e = tb_expect(
        &g,
        &wrong,
        &[
            "restore",
            &format!("{repo}:{id}"),
            &format!("--datadir={}", target.display()),
            "--user=root",
        ],
        11,
    );
    assert!(e.contains("key"), "{e}");
    assert!(!target.exists());

    let r = tb_expect(
        &g,
        &key,
        &[
            "restore",
            &format!("{repo}:latest"),
            &format!("--datadir={}", target.display()),
            "--user=root",
            "--mariadbd=/usr/sbin/mariadbd",
        ],
        0,
    );
    eprintln!("{r}");
    let restored = Server::start(
        "cli-repo-restored",
        Opts {
            preload: None,
            install_plugin: false,
            datadir: Some(target.clone()),
            ..Opts::default()
        },
    );
    verify_restored("tokubackup restore REPO:latest", &restored, &bk);
    drop(restored);

    let x = tb_expect(&g, &key, &["expire", repo, "--keep-last", "1"], 0);
    assert!(x.contains("kept 1, removed 0"), "{x}");
    tb_expect(&g, &key, &["expire", repo], 1);
    std::fs::remove_dir_all(&work).unwrap();
}
