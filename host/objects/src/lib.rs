//! Checkpoints in S3 and S3-compatible object stores (MinIO, Ceph, R2, …) through the
//! `object_store` crate: the [`ObjectStorage`] the core's checkpoint storage stages
//! and uploads through. A leaf crate, so that the engine builds without HTTP clients.
//!
//! The bucket and prefix come from the URL (`s3://bucket/prefix`); everything else from
//! the standard environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT` (an S3-compatible server) and `AWS_ALLOW_HTTP=true`
//! (for one without TLS).

use std::path::Path;

use bytes::Bytes;
use eddy_core::checkpoint::objects::{ObjectError, ObjectStorage};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// One job's prefix in an S3 bucket, driven from plain threads.
#[derive(Debug)]
pub struct S3 {
    url: String,
    prefix: Key,
    store: AmazonS3,
    /// The checkpoint coordinator calls from its own thread; requests run here.
    runtime: tokio::runtime::Runtime,
}

fn error(e: impl std::fmt::Display) -> ObjectError {
    ObjectError(e.to_string())
}

impl S3 {
    /// The objects under `url` (`s3://bucket/prefix`).
    pub fn open(url: &str) -> Result<S3, ObjectError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(ObjectError(format!(
                "{url}: unsupported object store (checkpoint URLs start with s3://)"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ObjectError(format!("{url}: the URL names no bucket")));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| ObjectError(format!("{url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ObjectError(format!("cannot start the object store's runtime: {e}")))?;
        Ok(S3 {
            url: url.trim_end_matches('/').to_owned(),
            prefix: Key::from(prefix.trim_matches('/')),
            store,
            runtime,
        })
    }

    /// The full key of `key`, under the prefix.
    fn key(&self, key: &str) -> Key {
        key.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.clone().join(part))
    }

    /// `full` without the prefix.
    fn relative(&self, full: &Key) -> String {
        let full = full.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return full.to_owned();
        }
        full.strip_prefix(prefix)
            .map_or(full, |rest| rest.trim_start_matches('/'))
            .to_owned()
    }
}

impl ObjectStorage for S3 {
    fn url(&self) -> &str {
        &self.url
    }

    fn upload(&self, file: &Path, key: &str) -> Result<(), ObjectError> {
        let bytes = std::fs::read(file).map_err(|e| error(format!("{}: {e}", file.display())))?;
        let payload = PutPayload::from(Bytes::from(bytes));
        self.runtime
            .block_on(self.store.put(&self.key(key), payload))
            .map(drop)
            .map_err(error)
    }

    fn copy(&self, from: &str, to: &str) -> Result<(), ObjectError> {
        self.runtime
            .block_on(self.store.copy(&self.key(from), &self.key(to)))
            .map_err(error)
    }

    fn download(&self, key: &str, file: &Path) -> Result<(), ObjectError> {
        let bytes = self
            .runtime
            .block_on(async { self.store.get(&self.key(key)).await?.bytes().await });
        let bytes = bytes.map_err(error)?;
        std::fs::write(file, bytes).map_err(|e| error(format!("{}: {e}", file.display())))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let under = self.key(prefix);
        let listed: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&under)).try_collect())
            .map_err(error)?;
        Ok(listed
            .iter()
            .map(|meta| self.relative(&meta.location))
            .filter(|key| key.starts_with(prefix))
            .collect())
    }

    fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
        let paths: Vec<object_store::Result<Key>> = keys.iter().map(|k| Ok(self.key(k))).collect();
        self.runtime
            .block_on(
                self.store
                    .delete_stream(futures::stream::iter(paths).boxed())
                    .try_collect::<Vec<_>>(),
            )
            .map(drop)
            .map_err(error)
    }
}
