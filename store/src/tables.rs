//! The store's tables for DataFusion.
//!
//! `readings` is a view: the buffer (a [`LiveTable`], read at each query's planning)
//! unioned with the day files (a `ListingTable` over exactly the manifest's files, so
//! orphans and files written mid-flush are never read). Where the buffer holds a
//! newer value for a key already in a file (a correction, or a replayed log
//! segment), the files' rows are anti-joined with the buffer's keys, so each
//! reading appears once, with its last value. The view is rebuilt when a flush
//! swaps the files or when such overlap appears or clears; filters on `asset` and
//! `ts` pass through it to the Parquet scan, which prunes row groups by their
//! statistics (files are sorted by asset then time).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::JoinType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// A table whose rows are taken from a closure when a query plans.
pub struct LiveTable {
    schema: SchemaRef,
    rows: Box<dyn Fn() -> Vec<RecordBatch> + Send + Sync>,
}

impl LiveTable {
    /// A table of `schema` reading `rows`.
    pub fn new(
        schema: SchemaRef,
        rows: impl Fn() -> Vec<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            rows: Box::new(rows),
        }
    }
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("schema", &self.schema)
            .finish()
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batches: Vec<RecordBatch> = (self.rows)()
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// A Parquet table over exactly these files (URLs), or an empty table.
pub fn files_table(schema: SchemaRef, urls: &[String]) -> Result<Arc<dyn TableProvider>> {
    if urls.is_empty() {
        return Ok(Arc::new(LiveTable::new(schema, Vec::new)));
    }
    let paths = urls
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The `readings` view: buffer rows, then file rows not shadowed by `shadow` keys.
pub fn readings_view(
    ctx: &SessionContext,
    buffer: Arc<dyn TableProvider>,
    files: Arc<dyn TableProvider>,
    shadow: Option<Arc<dyn TableProvider>>,
) -> Result<Arc<dyn TableProvider>> {
    let buffered = ctx.read_table(buffer)?;
    let mut stored = ctx.read_table(files)?;
    if let Some(shadow) = shadow {
        let keys = ctx
            .read_table(shadow)?
            .select_columns(&["asset", "quantity", "ts"])?
            .with_column_renamed("asset", "shadow_asset")?
            .with_column_renamed("quantity", "shadow_quantity")?
            .with_column_renamed("ts", "shadow_ts")?;
        stored = stored.join(
            keys,
            JoinType::LeftAnti,
            &["asset", "quantity", "ts"],
            &["shadow_asset", "shadow_quantity", "shadow_ts"],
            None,
        )?;
    }
    Ok(buffered.union(stored)?.into_view())
}
