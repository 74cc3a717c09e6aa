//! Where attachment bytes live (not to be confused with `store`, the database): a local folder or
//! an S3-compatible bucket, through `object_store` (`STORAGE_URL`). It knows objects and keys,
//! nothing of uploads' rules (`attachments`). Keys are made of ids only, never of a filename a
//! user chose.
//!
//! - `uploads/{id}/{offset}-{random}`: an upload's bytes, one part per PATCH, kept as they are
//!   once it completes (a download reads them one after the other: nothing is copied);
//! - `files/{id}.thumbnail`: an image's thumbnail.
//!
//! Bytes stream through in chunks: no whole file is ever held in memory.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};
use uuid::Uuid;

use crate::config::{StorageLocation, StorageSettings};
use crate::store::Part;

/// S3's smallest part of a multipart upload (all but the last).
const S3_PART: usize = 5 * 1024 * 1024;
/// The chunk a local file is written in.
const LOCAL_CHUNK: usize = 256 * 1024;

/// The attachment store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    objects: Arc<dyn ObjectStore>,
    /// What a multipart write buffers before sending a part.
    chunk: usize,
    /// `file` or `s3`, for logs and the readiness check.
    pub kind: &'static str,
}

pub type ByteStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

/// The key of an image's thumbnail.
pub fn thumbnail_key(id: Uuid) -> String {
    format!("files/{id}.thumbnail")
}

/// A new key for the part of upload `id` that starts at `offset`: two requests racing at the
/// same offset never write the same object.
pub fn part_key(id: Uuid, offset: u64) -> String {
    format!("uploads/{id}/{offset:020}-{}", Uuid::now_v7().simple())
}

impl Storage {
    /// Opens the store `STORAGE_URL` names (creating a local folder).
    pub fn open(settings: &StorageSettings) -> anyhow::Result<Self> {
        match &settings.location {
            StorageLocation::Folder(folder) => {
                std::fs::create_dir_all(folder).with_context(|| {
                    format!("STORAGE_URL: cannot create the folder {}", folder.display())
                })?;
                let local = LocalFileSystem::new_with_prefix(folder)
                    .with_context(|| format!("STORAGE_URL: cannot use {}", folder.display()))?
                    .with_automatic_cleanup(true);
                Ok(Self {
                    objects: Arc::new(local),
                    chunk: LOCAL_CHUNK,
                    kind: "file",
                })
            }
            StorageLocation::S3 { bucket, prefix } => {
                // A store that does not answer is told within seconds (503), not after the
                // client's default three minutes of retries.
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(10),
                    ..RetryConfig::default()
                };
                let client = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(60));
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&settings.s3_region)
                    .with_retry(retry)
                    .with_client_options(client);
                if let Some(endpoint) = &settings.s3_endpoint {
                    // S3-compatible servers: path-style addresses, plain HTTP allowed (loopback).
                    builder = builder
                        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(endpoint.scheme() == "http");
                }
                if let Some((id, secret)) = &settings.s3_credentials {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret.expose());
                }
                let s3 = builder
                    .build()
                    .context("STORAGE_URL: cannot use the bucket")?;
                let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                Ok(Self {
                    objects,
                    chunk: S3_PART,
                    kind: "s3",
                })
            }
        }
    }

    /// Starts writing the object `key`.
    pub async fn writer(&self, key: &str) -> object_store::Result<ObjectWriter> {
        let upload = self.objects.put_multipart(&Path::from(key)).await?;
        Ok(ObjectWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, self.chunk),
            written: 0,
        })
    }

    /// Writes a small object at once (thumbnails).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.objects
            .put(&Path::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The bytes `range` (all when `None`) of a file kept as consecutive parts, read part after
    /// part, each part only when the one before is done.
    pub fn read_parts(&self, parts: &[Part], range: Option<Range<u64>>) -> ByteStream {
        let total: u64 = parts.iter().map(|p| p.size).sum();
        let wanted = range.unwrap_or(0..total);
        let pieces: Vec<(String, Range<u64>)> = parts
            .iter()
            .filter_map(|part| {
                let (start, end) = (part.offset, part.offset + part.size);
                let from = wanted.start.max(start);
                let to = wanted.end.min(end);
                (from < to).then(|| (part.key.clone(), from - start..to - start))
            })
            .collect();
        let storage = self.clone();
        futures_util::stream::iter(pieces)
            .then(move |(key, range)| {
                let storage = storage.clone();
                async move { storage.read(&key, Some(range)).await }
            })
            .try_flatten()
            .boxed()
    }

    /// The bytes of `key`, or of `range` of them.
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> object_store::Result<ByteStream> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self.objects.get_opts(&Path::from(key), options).await?;
        Ok(got.into_stream())
    }

    /// Whether the store answers: a look-up of a key nobody writes finds nothing, or fails.
    pub async fn ping(&self) -> bool {
        match self.objects.head(&Path::from("readiness-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => true,
            Err(e) => {
                tracing::warn!(category = "error", error = %e, "❌ the attachment storage does not answer");
                false
            }
        }
    }

    /// The size of the object `key`.
    pub async fn size(&self, key: &str) -> object_store::Result<u64> {
        Ok(self.objects.head(&Path::from(key)).await?.size)
    }

    /// The first `len` bytes of a file kept as `parts` (fewer when it is shorter), in memory.
    pub async fn head_bytes(&self, parts: &[Part], len: u64) -> object_store::Result<Vec<u8>> {
        let mut stream = self.read_parts(parts, Some(0..len));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let room = (len as usize).saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if bytes.len() as u64 >= len {
                break;
            }
        }
        Ok(bytes)
    }

    /// Removes objects; one that is not there is not an error.
    pub async fn remove(&self, keys: &[String]) -> object_store::Result<()> {
        for key in keys {
            match self.objects.delete(&Path::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes every object under `prefix/` (what a crash may have left of an upload's parts).
    pub async fn remove_under(&self, prefix: &str) -> object_store::Result<()> {
        let prefix = Path::from(prefix);
        let mut listed = self.objects.list(Some(&prefix));
        let mut keys = Vec::new();
        while let Some(meta) = listed.next().await {
            match meta {
                Ok(meta) => keys.push(meta.location.to_string()),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        self.remove(&keys).await
    }
}

/// An object being written in chunks; nothing is visible under its key before `finish`.
pub struct ObjectWriter {
    inner: WriteMultipart,
    written: u64,
}

impl ObjectWriter {
    /// Appends bytes; waits while a part is still being sent, so at most two chunks are held.
    pub async fn write(&mut self, bytes: &[u8]) -> object_store::Result<()> {
        self.inner.wait_for_capacity(1).await?;
        self.inner.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn finish(self) -> object_store::Result<()> {
        self.inner.finish().await?;
        Ok(())
    }

    /// Gives up; whatever was sent is discarded.
    pub async fn abort(self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(category = "warn", error = %e, "⚠️ could not abort an object write");
        }
    }
}
