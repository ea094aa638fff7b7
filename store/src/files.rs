//! The store's files in object storage: Parquet readings partitioned by UTC day
//! (`readings/date=YYYY-MM-DD/part-N.parquet`, one live file per day, sorted by
//! asset then time, zstd), Parquet rejected rows (`rejected/part-N.parquet`), and
//! `manifest.json`, the one source of truth of which files are live and how much of
//! the write-ahead log they hold. A file not named in the manifest is an orphan of
//! an interrupted flush and is deleted on start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::buffer::DAY_MS;
use crate::error::{Error, Result};

/// Which files are live.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Number for the next file written.
    pub next_file: u64,
    /// The write-ahead log's segments up to this one are in the files below.
    pub wal_flushed_through: u64,
    /// The live file of each day, by `YYYY-MM-DD`.
    pub readings: BTreeMap<String, String>,
    /// Files of rejected rows.
    pub rejected: Vec<String>,
    /// When the last flush committed, ms since the epoch (0: none yet): what
    /// a query over the files alone covers, the buffer being in one process.
    #[serde(default)]
    pub flushed_ms: i64,
    /// Day files no longer live (rewritten by a flush, or past the retention)
    /// but not yet deleted: a query planned on an earlier manifest, by another
    /// process or a cluster, may still be reading them.
    #[serde(default)]
    pub superseded: Vec<Superseded>,
}

/// A file the manifest no longer reads, kept for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    /// The file, relative to the data location.
    pub path: String,
    /// When the manifest stopped naming it, ms since the epoch.
    pub since_ms: i64,
}

impl Manifest {
    /// Marks `paths` superseded at `now_ms` and takes out of the list (to be
    /// deleted once this manifest is saved) those superseded at least
    /// `keep_ms` before (with `keep_ms` 0, `paths` too).
    pub fn supersede(
        &mut self,
        paths: impl IntoIterator<Item = String>,
        now_ms: i64,
        keep_ms: i64,
    ) -> Vec<String> {
        self.superseded
            .extend(paths.into_iter().map(|path| Superseded {
                path,
                since_ms: now_ms,
            }));
        let (due, kept): (Vec<Superseded>, Vec<Superseded>) = std::mem::take(&mut self.superseded)
            .into_iter()
            .partition(|s| now_ms - s.since_ms >= keep_ms);
        self.superseded = kept;
        due.into_iter().map(|s| s.path).collect()
    }
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

/// The UTC day number of `YYYY-MM-DD`.
pub fn day_number(name: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(midnight.div_euclid(DAY_MS))
}

/// Where a store keeps its files: a local folder, or a prefix in an S3 bucket
/// (`s3://bucket/prefix`) with the write-ahead log in a local folder, since object
/// storage cannot append and fsync. One writer per location: two stores writing
/// one manifest would each delete the other's files as orphans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataLocation {
    /// Everything under one local folder (the log in its `wal/`).
    Local(PathBuf),
    /// Parquet files, manifest and network under an S3 prefix; the log local.
    S3 {
        /// `s3://bucket` or `s3://bucket/prefix`, without a trailing slash.
        url: String,
        /// The local folder of the write-ahead log.
        wal_dir: PathBuf,
    },
}

impl DataLocation {
    /// Default local folder of the log for an S3 location.
    pub const DEFAULT_S3_WAL_DIR: &'static str = "headroom-wal";

    /// `s3://bucket[/prefix]` (credentials, region and endpoint from the usual
    /// `AWS_*` variables) or a local path; `wal_dir` is the log's folder for S3.
    pub fn parse(text: &str, wal_dir: Option<&Path>) -> Result<Self> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.contains("://") {
                return Err(Error::BadLocation(format!(
                    "--data-dir {text}: only local folders and s3:// URLs are supported"
                )));
            }
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let rest = rest.trim_end_matches('/');
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(Error::BadLocation(format!(
                "--data-dir {text}: an S3 location needs a bucket: s3://bucket/prefix"
            )));
        }
        Ok(Self::S3 {
            url: format!("s3://{rest}"),
            wal_dir: wal_dir.map_or_else(
                || PathBuf::from(Self::DEFAULT_S3_WAL_DIR),
                Path::to_path_buf,
            ),
        })
    }

    /// The folder of the write-ahead log.
    pub fn wal_dir(&self) -> PathBuf {
        match self {
            Self::Local(dir) => dir.join("wal"),
            Self::S3 { wal_dir, .. } => wal_dir.clone(),
        }
    }
}

impl std::fmt::Display for DataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::S3 { url, .. } => f.write_str(url),
        }
    }
}

/// How the store reaches its files.
#[derive(Clone, Debug)]
enum Root {
    /// A local folder: written through the local store, then fsynced.
    Local(PathBuf),
    /// An S3 prefix: a completed PUT is durable and atomic.
    S3 {
        /// `s3://bucket/prefix`.
        url: String,
        /// `s3://bucket`, where DataFusion finds the bucket's store.
        bucket_url: url::Url,
        /// The store of the whole bucket, for DataFusion.
        bucket: Arc<dyn ObjectStore>,
    },
}

/// The store's files in object storage.
#[derive(Clone, Debug)]
pub struct Files {
    /// Rooted at the data location: paths are relative to it.
    store: Arc<dyn ObjectStore>,
    root: Root,
}

const MANIFEST: &str = "manifest.json";

/// The `assets` table as a Parquet file beside the readings, rewritten whole
/// when the network is: for readers that plan without the store in memory (a
/// cluster's scheduler and executors).
pub const ASSETS_FILE: &str = "assets.parquet";

impl Files {
    /// The files at `location`; a local folder is created if missing.
    pub fn open(location: &DataLocation) -> Result<Self> {
        match location {
            DataLocation::Local(root) => {
                std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
                let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
                let store = LocalFileSystem::new_with_prefix(&root)?;
                Ok(Self {
                    store: Arc::new(store),
                    root: Root::Local(root),
                })
            }
            DataLocation::S3 { url, .. } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| Error::BadLocation(format!("--data-dir {url}: {e}")))?;
                let bucket_name = parsed.host_str().unwrap_or_default().to_owned();
                let bucket: Arc<dyn ObjectStore> = Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(&bucket_name)
                        .build()?,
                );
                let prefix = parsed.path().trim_matches('/').to_owned();
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    bucket.clone()
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(
                        bucket.clone(),
                        prefix.as_str(),
                    ))
                };
                let bucket_url = url::Url::parse(&format!("s3://{bucket_name}"))
                    .map_err(|e| Error::BadLocation(format!("--data-dir {url}: {e}")))?;
                Ok(Self {
                    store,
                    root: Root::S3 {
                        url: url.clone(),
                        bucket_url,
                        bucket,
                    },
                })
            }
        }
    }

    /// Lets DataFusion read these files (object stores other than local ones
    /// are found by URL in the session's registry).
    pub fn register(&self, ctx: &datafusion::prelude::SessionContext) {
        if let Root::S3 {
            bucket_url, bucket, ..
        } = &self.root
        {
            ctx.register_object_store(bucket_url, bucket.clone());
        }
    }

    /// The object store DataFusion must know for these files' URLs: `None`
    /// for a local folder (the file system needs no registration).
    pub fn object_store(&self) -> Option<(url::Url, Arc<dyn ObjectStore>)> {
        match &self.root {
            Root::S3 {
                bucket_url, bucket, ..
            } => Some((bucket_url.clone(), bucket.clone())),
            Root::Local(_) => None,
        }
    }

    /// The URL DataFusion reads a file at.
    pub fn url(&self, relative: &str) -> String {
        match &self.root {
            Root::Local(root) => format!("file://{}/{}", root.display(), relative),
            Root::S3 { url, .. } => format!("{url}/{relative}"),
        }
    }

    /// Writes an object whole, durably: the stored network, the manifest, files.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        // Both stores make a new object visible whole or not at all (the local one
        // writes a temporary file and renames it). Locally the fsyncs make the
        // rename survive a power cut before the log that covers it is deleted; an
        // S3 PUT is durable once answered.
        self.store
            .put(&ObjectPath::from(relative), PutPayload::from(bytes))
            .await?;
        if let Root::Local(root) = &self.root {
            let path = root.join(relative);
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(dir, e))?;
            }
        }
        Ok(())
    }

    /// A small object whole, or `None` when there is none.
    pub async fn get(&self, relative: &str) -> Result<Option<Vec<u8>>> {
        match self.store.get(&ObjectPath::from(relative)).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object is there (a HEAD: nothing read).
    pub async fn exists(&self, relative: &str) -> Result<bool> {
        match self.store.head(&ObjectPath::from(relative)).await {
            Ok(_) => Ok(true),
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest, or an empty one for a new store.
    pub async fn manifest(&self) -> Result<Manifest> {
        match self.get(MANIFEST).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("{MANIFEST} is not readable: {e}"))),
            None => Ok(Manifest::default()),
        }
    }

    /// Replaces the manifest: the moment a flush takes effect.
    pub async fn save_manifest(&self, manifest: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
        self.put(MANIFEST, bytes).await
    }

    /// Writes batches as one zstd Parquet file.
    pub async fn write_parquet(&self, relative: &str, batches: &[RecordBatch]) -> Result<()> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        // Pages of at most 8,192 rows: the page index then lets a query for one
        // feeder's assets (rows adjacent in asset order) decode a few pages per
        // column instead of a whole row group; the cost is a larger index.
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(256 * 1024))
            .set_data_page_row_count_limit(8 * 1024)
            .set_write_batch_size(1024)
            .build();
        let mut bytes = Vec::new();
        {
            let mut writer = ArrowWriter::try_new(&mut bytes, first.schema(), Some(props))
                .map_err(|e| Error::Internal(format!("{relative}: {e}")))?;
            for batch in batches {
                writer
                    .write(batch)
                    .map_err(|e| Error::Internal(format!("{relative}: {e}")))?;
            }
            writer
                .close()
                .map_err(|e| Error::Internal(format!("{relative}: {e}")))?;
        }
        self.put(relative, bytes).await
    }

    /// Reads a whole Parquet file.
    pub async fn read_parquet(&self, relative: &str) -> Result<Vec<RecordBatch>> {
        let bytes = self
            .store
            .get(&ObjectPath::from(relative))
            .await?
            .bytes()
            .await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::Internal(format!("{relative}: {e}")))?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("{relative}: {e}")))
    }

    /// Deletes a file; one already gone is fine.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(relative)).await {
            Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every Parquet file under the store, relative paths.
    pub async fn parquet_files(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let listed: Vec<_> = self.store.list(None).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.location.to_string())
            .filter(|p| p.ends_with(".parquet"))
            .collect())
    }
}
