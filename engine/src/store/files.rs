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

/// Object storage under the data folder, and the folder itself for fsync.
#[derive(Clone, Debug)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    /// The local folder the store writes to.
    pub root: PathBuf,
}

const MANIFEST: &str = "manifest.json";

impl Files {
    /// The data folder `root`, created if missing.
    pub fn local(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            store: Arc::new(store),
            root,
        })
    }

    /// The URL DataFusion reads a file at.
    pub fn url(&self, relative: &str) -> String {
        format!("file://{}/{}", self.root.display(), relative)
    }

    async fn put_durably(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        // The local store writes a temporary file and renames it: readers never see
        // half a file. The fsyncs make the rename survive a power cut before the
        // write-ahead log that covers it is deleted.
        self.store
            .put(&ObjectPath::from(relative), PutPayload::from(bytes))
            .await?;
        let path = self.root.join(relative);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }

    /// The manifest, or an empty one for a new store.
    pub async fn manifest(&self) -> Result<Manifest> {
        match self.store.get(&ObjectPath::from(MANIFEST)).await {
            Ok(found) => {
                let bytes = found.bytes().await?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Store(format!("{MANIFEST} is not readable: {e}")))
            }
            Err(datafusion::object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the manifest: the moment a flush takes effect.
    pub async fn save_manifest(&self, manifest: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| Error::Store(format!("manifest: {e}")))?;
        self.put_durably(MANIFEST, bytes).await
    }

    /// Writes batches as one zstd Parquet file.
    pub async fn write_parquet(&self, relative: &str, batches: &[RecordBatch]) -> Result<()> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(256 * 1024))
            .build();
        let mut bytes = Vec::new();
        {
            let mut writer = ArrowWriter::try_new(&mut bytes, first.schema(), Some(props))
                .map_err(|e| Error::Store(format!("{relative}: {e}")))?;
            for batch in batches {
                writer
                    .write(batch)
                    .map_err(|e| Error::Store(format!("{relative}: {e}")))?;
            }
            writer
                .close()
                .map_err(|e| Error::Store(format!("{relative}: {e}")))?;
        }
        self.put_durably(relative, bytes).await
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
            .map_err(|e| Error::Store(format!("{relative}: {e}")))?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Store(format!("{relative}: {e}")))
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
