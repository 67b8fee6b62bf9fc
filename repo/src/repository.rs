//! Opening a repository: its `config` object (salt, key derivation cost,
//! chunk size and a key check), the keys, and the snapshot objects.
//! Layout under the prefix:
//!   config              plain JSON; `check` is sealed, so a wrong key fails here
//!   chunks/XX/ID        sealed chunk data, ID = keyed hash of the plaintext
//!   snapshots/ID        sealed Snapshot (file names are inside)
//!   locks/push-ID       a push is running (see expire.rs)
//!   locks/expire-ID     an expire is running

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Keys};
use crate::error::{Error, Result};
use crate::snapshot::{self, Snapshot};
use crate::store::Objects;

const CHECK: &[u8] = b"tokubackup repository";

/// Settings fixed when the repository is created.
#[derive(Serialize, Deserialize)]
struct Config {
    version: u32,
    salt: String,
    kdf_memory_kib: u32,
    kdf_iterations: u32,
    chunk_size: u64,
    check: String,
}

/// Knobs of a repository handle.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests in flight at once (uploads, downloads).
    pub parallel: usize,
    /// Chunk size for a repository created by this push.
    pub chunk_size: u64,
    /// Markers of a push or expire older than this are taken as left by a crash.
    pub stale_after: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallel: 16,
            chunk_size: crate::DEFAULT_CHUNK_SIZE,
            stale_after: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// An open repository.
pub struct Repo {
    pub(crate) objects: Objects,
    pub(crate) keys: Arc<Keys>,
    pub(crate) chunk_size: u64,
    pub(crate) opts: Options,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Repo {
    /// Open the repository at `url` with the key file's content `secret`;
    /// with `create`, make one when there is none.
    pub fn open(url: &str, secret: &[u8], create: bool, opts: Options) -> Result<Repo> {
        if secret.is_empty() {
            return Err(Error::Refused("the key file is empty".into()));
        }
        let objects = Objects::open(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(crate::error::io(url))?;
        let (keys, chunk_size) = rt.block_on(load_or_create(&objects, secret, create, &opts))?;
        Ok(Repo {
            objects,
            keys: Arc::new(keys),
            chunk_size,
            opts,
            rt,
        })
    }

    pub fn url(&self) -> &str {
        &self.objects.url
    }

    pub(crate) async fn snapshot_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .objects
            .list("snapshots")
            .await?
            .into_iter()
            .filter_map(|(n, _)| n.strip_prefix("snapshots/").map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub(crate) async fn read_snapshot(&self, id: &str) -> Result<Snapshot> {
        let name = snapshot::object_name(id);
        let sealed = self
            .objects
            .get(&name)
            .await?
            .ok_or_else(|| Error::NoSnapshot(id.to_string()))?;
        let plain = self
            .keys
            .open(&name, &sealed)
            .ok_or_else(|| Error::Damaged(format!("{}: backup {id}: its snapshot object {name} fails authentication (changed in the store)", self.objects.url)))?;
        serde_json::from_slice(&plain).map_err(|e| {
            Error::Damaged(format!(
                "{}: backup {id}: snapshot object {name}: {e}",
                self.objects.url
            ))
        })
    }

    /// All snapshots, oldest first.
    pub(crate) async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for id in self.snapshot_ids().await? {
            out.push(self.read_snapshot(&id).await?);
        }
        Ok(out)
    }

    /// `latest` or an id (a unique prefix is enough).
    pub(crate) async fn resolve(&self, id: &str) -> Result<String> {
        let ids = self.snapshot_ids().await?;
        if id == "latest" {
            return ids
                .last()
                .cloned()
                .ok_or_else(|| Error::NoSnapshot("latest (the repository is empty)".into()));
        }
        let found: Vec<&String> = ids.iter().filter(|i| i.starts_with(id)).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NoSnapshot(id.to_string())),
            _ => Err(Error::Refused(format!(
                "backup id {id} is ambiguous: {} backups start with it",
                found.len()
            ))),
        }
    }
}

async fn load_or_create(
    objects: &Objects,
    secret: &[u8],
    create: bool,
    opts: &Options,
) -> Result<(Keys, u64)> {
    let raw = match objects.get("config").await? {
        Some(raw) => raw,
        None if create => {
            let config = new_config(secret, opts.chunk_size)?;
            // Two first pushes at once: one config wins, both use it.
            objects
                .create(
                    "config",
                    serde_json::to_vec_pretty(&config).expect("config serializes"),
                )
                .await?;
            objects
                .get("config")
                .await?
                .ok_or_else(|| Error::NoRepository(objects.url.clone()))?
        }
        None => return Err(Error::NoRepository(objects.url.clone())),
    };
    let config: Config = serde_json::from_slice(&raw)
        .map_err(|e| Error::Damaged(format!("{}: object config: {e}", objects.url)))?;
    let salt = crypto::unhex(&config.salt)
        .ok_or_else(|| Error::Damaged(format!("{}: object config: bad salt", objects.url)))?;
    let keys = Keys::derive(secret, &salt, config.kdf_memory_kib, config.kdf_iterations)?;
    let check = crypto::unhex(&config.check).unwrap_or_default();
    match keys.open("config", &check) {
        Some(c) if c == CHECK => Ok((keys, config.chunk_size)),
        _ => Err(Error::WrongKey(objects.url.clone())),
    }
}

fn new_config(secret: &[u8], chunk_size: u64) -> Result<Config> {
    let salt = crypto::random_hex(16);
    let salt_bytes = crypto::unhex(&salt).expect("random_hex is hex");
    let keys = Keys::derive(
        secret,
        &salt_bytes,
        crypto::KDF_MEMORY_KIB,
        crypto::KDF_ITERATIONS,
    )?;
    Ok(Config {
        version: 1,
        salt,
        kdf_memory_kib: crypto::KDF_MEMORY_KIB,
        kdf_iterations: crypto::KDF_ITERATIONS,
        chunk_size,
        check: crypto::hex(&keys.seal("config", CHECK)),
    })
}
