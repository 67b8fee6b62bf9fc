//! Where a repository lives: `s3://bucket/prefix` (AWS_* environment
//! variables or the AWS shared files, see aws_profile.rs; path-style
//! requests for self-hosted stores), `gs://` and
//! `az://` (object_store's own environment settings; not tested here: no
//! such store is reachable from CI) or a local directory, behind
//! object_store with its retries and backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig,
};

use crate::aws_profile;
use crate::error::{io, Error, Result};

/// The objects of one repository, under its prefix.
#[derive(Clone)]
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The repository address as the user wrote it, for messages.
    pub(crate) url: String,
    /// The S3 endpoint requests go to, when not the provider's default.
    endpoint: Option<String>,
}

impl Objects {
    pub(crate) fn open(url: &str) -> Result<Objects> {
        let mut endpoint = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::Location(format!(
                        "{url}: no bucket name (s3://BUCKET/PREFIX)"
                    )));
                }
                let (store, ep) = s3(url, bucket)?;
                endpoint = ep;
                (Arc::new(store), prefix.trim_matches('/').to_string())
            } else if let Some((scheme, rest)) = url
                .split_once("://")
                .filter(|(s, _)| ["gs", "az", "azure"].contains(s))
            {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                (
                    cloud(url, scheme, bucket)?,
                    prefix.trim_matches('/').to_string(),
                )
            } else if url.contains("://") {
                return Err(Error::Location(format!(
                    "{url}: unsupported repository address (s3://BUCKET/PREFIX or a local path)"
                )));
            } else {
                std::fs::create_dir_all(url).map_err(io(url))?;
                let fs = LocalFileSystem::new_with_prefix(url)
                    .map_err(|e| Error::Location(format!("{url}: {e}")))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), String::new())
            };
        Ok(Objects {
            store,
            prefix,
            url: url.to_string(),
            endpoint,
        })
    }

    fn path(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(&self, name: &str) -> impl FnOnce(object_store::Error) -> Error + '_ {
        let what = match &self.endpoint {
            Some(ep) => format!("{} (endpoint {ep}): object {name}", self.url),
            None => format!("{}: object {name}", self.url),
        };
        move |e| Error::Store(what, e)
    }

    /// `None` when the object does not exist.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(name)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(self.err(name))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(name)(e)),
        }
    }

    pub(crate) async fn put(&self, name: &str, data: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(name), data.into())
            .await
            .map_err(self.err(name))?;
        Ok(())
    }

    /// Put unless the object exists; false when it did.
    pub(crate) async fn create(&self, name: &str, data: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(name), data.into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(name)(e)),
        }
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name)(e)),
        }
    }

    /// Objects under `dir` (e.g. "chunks"), with names relative to the repository.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let base = self.path(dir);
        let skip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let metas: Vec<ObjectMeta> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(self.err(dir))?;
        Ok(metas
            .into_iter()
            .map(|m| (m.location.as_ref()[skip..].to_string(), m))
            .collect())
    }
}

fn s3(url: &str, bucket: &str) -> Result<(object_store::aws::AmazonS3, Option<String>)> {
    // A store that stays down fails the command within about a minute.
    let retry = RetryConfig {
        max_retries: 6,
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(120)));
    let s = aws_profile::settings()?;
    if let Some(endpoint) = &s.endpoint {
        b = b.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            b = b.with_allow_http(true);
        }
        // Self-hosted stores (Garage, MinIO) are addressed path-style.
        b = b.with_virtual_hosted_style_request(false);
    }
    b = b.with_region(s.region.as_deref().unwrap_or("us-east-1"));
    if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = &s.session_token {
            b = b.with_token(token);
        }
    }
    let store = b
        .build()
        .map_err(|e| Error::Location(format!("{url}: {e}")))?;
    Ok((store, s.endpoint))
}

/// Google Cloud Storage (`gs://`, GOOGLE_SERVICE_ACCOUNT and the like) and
/// Azure Blob Storage (`az://`, AZURE_STORAGE_ACCOUNT_NAME and the like),
/// configured from the environment by object_store itself.
fn cloud(url: &str, scheme: &str, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    let bad = |e: object_store::Error| Error::Location(format!("{url}: {e}"));
    Ok(if scheme == "gs" {
        Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(bad)?,
        )
    } else {
        Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()
                .map_err(bad)?,
        )
    })
}
