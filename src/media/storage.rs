//! Where media bytes live: a directory (default) or an S3-compatible bucket, through
//! `object_store`. Keys are made here from ids the server generated; nothing a client sends
//! becomes part of a key.

use std::sync::Arc;

use anyhow::Context;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::config::MediaStoreConfig;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Parts of a multipart upload are this large (S3 needs at least 5 MiB but the last).
    pub part_size: usize,
}

impl Storage {
    pub fn open(config: &MediaStoreConfig) -> anyhow::Result<Storage> {
        match config {
            MediaStoreConfig::Fs { dir } => {
                crate::config::create_private_dir(dir)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening the media dir {}", dir.display()))?;
                Ok(Storage {
                    store: Arc::new(store),
                    part_size: 1024 * 1024,
                })
            }
            MediaStoreConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
                path_style,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_virtual_hosted_style_request(!path_style);
                if let Some(endpoint) = endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(id) = access_key_id {
                    b = b.with_access_key_id(id);
                }
                if let Some(secret) = secret_access_key {
                    b = b.with_secret_access_key(secret.expose());
                }
                let store = b.build().context("configuring the S3 media store")?;
                Ok(Storage {
                    store: Arc::new(store),
                    part_size: 5 * 1024 * 1024,
                })
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of an upload's bytes.
    pub fn original_key(workspace_id: &str, media_id: &str) -> String {
        format!("{workspace_id}/{media_id}/original")
    }

    /// The key of an upload's thumbnail (always JPEG).
    pub fn thumbnail_key(workspace_id: &str, media_id: &str) -> String {
        format!("{workspace_id}/{media_id}/thumbnail.jpg")
    }

    /// A stored key as an object path. Keys come from the database, written by the functions
    /// above; one that does not parse is refused rather than used.
    pub fn path(key: &str) -> object_store::Result<Path> {
        Path::parse(key).map_err(|e| object_store::Error::Generic {
            store: "media",
            source: Box::new(e),
        })
    }

    /// Deletes an object; one already gone is fine.
    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.store.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
