//! The flushed history of a data location, for readers other than the store
//! that writes it: a cluster's scheduler and executors, or any number of
//! service replicas that only query.
//!
//! [`History`] reads the manifest (never the write-ahead log or the buffer,
//! which live in the one process that ingests) and registers `readings` as a
//! Parquet listing table over exactly the manifest's day files and `assets`
//! over `assets.parquet`: plain tables that a distributed planner can send to
//! its executors, unlike the store's own view, which unions the in-memory
//! buffer. What it covers ends at the last flush ([`History::flushed_ms`]).

use std::sync::Arc;

use datafusion::datasource::TableProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;

use crate::error::Result;
use crate::files::{ASSETS_FILE, DataLocation, Files, Manifest};
use crate::record::readings_schema;
use crate::tables::files_table;

/// `config` with the options every reader of the day files uses, the store
/// and a cluster alike, so that a query prunes and decodes the same way
/// wherever it runs.
pub fn with_day_file_reading(mut config: SessionConfig) -> SessionConfig {
    // A feeder's readings are a few thousand rows of a day file: filters
    // evaluated while decoding (late materialisation) skip the other columns'
    // values of rows that do not match, and the page index skips whole pages
    // (the files are sorted by asset, then quantity and time).
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    config
}

/// A data location's flushed history, as its manifest names it.
#[derive(Clone, Debug)]
pub struct History {
    files: Files,
    manifest: Manifest,
    has_assets: bool,
}

impl History {
    /// Reads the manifest at `location` (nothing there: an empty history).
    pub async fn open(location: &DataLocation) -> Result<Self> {
        let files = Files::open(location)?;
        let manifest = files.manifest().await?;
        let has_assets = files.exists(ASSETS_FILE).await?;
        Ok(Self {
            files,
            manifest,
            has_assets,
        })
    }

    /// When the last flush committed, ms since the epoch (0: never): the
    /// history covers readings flushed by then.
    pub fn flushed_ms(&self) -> i64 {
        self.manifest.flushed_ms
    }

    /// The day files, oldest day first.
    pub fn readings_urls(&self) -> Vec<String> {
        self.manifest
            .readings
            .values()
            .map(|path| self.files.url(path))
            .collect()
    }

    /// The object store a reader must register for these URLs (`None` for a
    /// local folder).
    pub fn object_store(&self) -> Option<(url::Url, Arc<dyn ObjectStore>)> {
        self.files.object_store()
    }

    /// The `readings` table: a listing table over the day files.
    pub fn readings_table(&self) -> Result<Arc<dyn TableProvider>> {
        let urls = self.readings_urls();
        if urls.is_empty() {
            return Ok(Arc::new(EmptyTable::new(readings_schema())));
        }
        files_table(readings_schema(), &urls)
    }

    /// The `assets` table: a listing table over `assets.parquet`.
    pub fn assets_table(&self) -> Result<Arc<dyn TableProvider>> {
        if !self.has_assets {
            return Ok(Arc::new(EmptyTable::new(crate::assets_schema())));
        }
        files_table(crate::assets_schema(), &[self.files.url(ASSETS_FILE)])
    }

    /// Registers `readings` and `assets` (and the object store) on `ctx`.
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        if let Some((url, store)) = self.object_store() {
            ctx.register_object_store(&url, store);
        }
        ctx.register_table("readings", self.readings_table()?)?;
        ctx.register_table("assets", self.assets_table()?)?;
        Ok(())
    }
}
