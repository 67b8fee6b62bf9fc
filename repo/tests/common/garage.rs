//! A real Garage cluster for the tests: three nodes on 127.0.0.1 with
//! replication factor 3, set up with Garage's own CLI (layout, bucket, key)
//! in a temporary directory, stopped when dropped. The garage binary comes
//! from ci/setup.sh (pinned version); GARAGE_BIN overrides it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Garage {
    pub dir: PathBuf,
    nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

struct Node {
    config: PathBuf,
    /// `ID@ADDR` as `garage node id` prints it.
    id: String,
    s3_port: u16,
    child: Mutex<Option<Child>>,
}

pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return p.into();
    }
    let home =
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin/garage");
    if home.exists() {
        return home;
    }
    PathBuf::from("garage")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn garage(config: &Path, args: &[&str]) -> String {
    try_garage(config, args).unwrap_or_else(|e| panic!("garage {args:?} failed: {e}"))
}

/// The output of the garage CLI, or its error output.
fn try_garage(config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install it with ci/setup.sh): {e}",
                garage_bin().display()
            )
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Garage {
    pub fn start(bucket: &str) -> Garage {
        let dir = std::env::temp_dir().join(format!(
            "garage-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + std::process::id() as usize) % 256))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let nd = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&nd).unwrap();
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            let config = nd.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{m}/meta\"\ndata_dir = \"{m}/data\"\ndb_engine = \"lmdb\"\n\
                     replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                     [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                    m = nd.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                config,
                id: String::new(),
                s3_port: s3,
                child: Mutex::new(None),
            });
        }
        let mut g = Garage {
            dir,
            nodes,
            bucket: bucket.into(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..3 {
            g.start_node(i);
        }
        g.wait_rpc();
        g.configure();
        g
    }

    fn start_node(&self, i: usize) {
        let n = &self.nodes[i];
        let log = std::fs::File::create(n.config.with_file_name("garage.log")).unwrap();
        let mut cmd = Command::new(garage_bin());
        cmd.arg("-c")
            .arg(&n.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when
        // the spawning thread (the test's) exits, so no node outlives a
        // killed or crashed test run.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install it with ci/setup.sh): {e}",
                garage_bin().display()
            )
        });
        *n.child.lock().unwrap() = Some(child);
    }

    /// Until each node answers `node id` on its RPC port.
    fn wait_rpc(&self) {
        for n in &self.nodes {
            let t0 = Instant::now();
            loop {
                let ok = Command::new(garage_bin())
                    .arg("-c")
                    .arg(&n.config)
                    .args(["node", "id", "-q"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "garage node {} did not start",
                    n.config.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn configure(&mut self) {
        let c0 = self.nodes[0].config.clone();
        let ids: Vec<String> = self
            .nodes
            .iter()
            .map(|n| garage(&n.config, &["node", "id", "-q"]).trim().to_string())
            .collect();
        for id in &ids[1..] {
            garage(&c0, &["node", "connect", id]);
        }
        for (n, id) in self.nodes.iter_mut().zip(&ids) {
            n.id = id.clone();
        }
        for id in &ids {
            let short = &id[..16];
            garage(&c0, &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
        }
        garage(&c0, &["layout", "apply", "--version", "1"]);
        garage(&c0, &["bucket", "create", &self.bucket.clone()]);
        let key = garage(&c0, &["key", "create", "tokubackup-test"]);
        let field = |label: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {label} in `garage key create` output: {key}"))
        };
        self.key_id = field("Key ID:");
        self.secret = field("Secret key:");
        garage(
            &c0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &self.bucket.clone(),
                "--key",
                "tokubackup-test",
            ],
        );
    }

    pub fn endpoint(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[node].s3_port)
    }

    /// AWS_* variables for a client of node `node`'s S3 API.
    pub fn env(&self, node: usize) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint(node)),
            ("AWS_REGION", "garage".into()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// SIGKILL node `i` (a crash, not a shutdown).
    pub fn kill(&self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start node `i` again; returns once it serves and is
    /// connected to the other running nodes (a peer that saw it die may
    /// otherwise take a while to reconnect, failing quorum through it).
    pub fn restart(&self, i: usize) {
        self.kill(i);
        self.start_node(i);
        let up: Vec<&Node> = (0..self.nodes.len())
            .filter(|&j| self.nodes[j].child.lock().unwrap().is_some())
            .map(|j| &self.nodes[j])
            .collect();
        let all = up.len() == self.nodes.len();
        let t0 = Instant::now();
        loop {
            // Both ways: each side otherwise waits for its own retry timer.
            let me = &self.nodes[i];
            let connected = up.iter().filter(|n| n.id != me.id).all(|n| {
                try_garage(&me.config, &["node", "connect", &n.id]).is_ok()
                    && try_garage(&n.config, &["node", "connect", &me.id]).is_ok()
            });
            let healthy = || {
                up.iter().all(|n| {
                    try_garage(&n.config, &["status"]).is_ok_and(|s| !s.contains("FAILED NODES"))
                })
            };
            if connected && (!all || healthy()) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "garage node {i} did not rejoin the cluster (logs in {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
