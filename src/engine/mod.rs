//! The engine: [`Engine`] opens a data directory, parses statements ([`parse`]) and runs each
//! through one dispatch ([`Engine::execute`]) to a typed [`Outcome`]. TasteDB's own statements
//! are [`Command`]s of the [`FAMILIES`] that the feature folders define; prepared statements
//! ([`Prepared`]) are planned once and run with parameters, by embedded callers and the wire
//! session alike.

mod access;
mod activity;
mod alter;
mod command;
mod current;
pub mod depth;
mod execute;
mod extensions;
mod fast_path;
mod maintenance;
pub mod memory;
mod modify;
mod outcome;
mod prepared;
mod process;
use process::Process;
mod read_only;
mod retention;
pub mod session_values;
mod statement;
mod tables;
pub mod transaction;

pub use access::{Access, FUNCTION_OBJECTS, FunctionObject};
pub use activity::{Activity, CancelBackend, Connected, Connection, Running};
pub use command::{Command, Context, Family};
pub use current::CurrentEngine;
pub use extensions::{FAMILIES, QUERY_SIGNATURES};
pub use fast_path::{Shaped, Spoken, Template, shape};
pub use outcome::{CommandTag, Outcome};
pub use prepared::Prepared;
pub(crate) use retention::interval_micros;
pub use statement::{Statement, parse};

use crate::archive::Archives;
use crate::catalog::pg_indexes::{IndexCatalog, ListIndexes};
use crate::catalog::system_tables::SystemTables;
use crate::catalog::{Catalog, ExtraSchema, StoredView, TasteSchema};
use crate::error::{Error, Result};
use crate::features::FeatureViews;
use crate::filters::Filters;
use crate::metrics::Metrics;
use crate::models::{
    Experiments, ImpressionLog, ModelRegistry, Serving, ServingCache, ServingLive,
};
use crate::roles::{Actor, Object, Privilege, RoleCatalog, RoleOids, RoleTables, Users};
use crate::schema::TableDef;
use crate::sources::Sources;
use crate::sql::config::TasteConfig;
use crate::sql::names;
use crate::sql::notices::Notices;
use crate::sql::parser::{CopyFrom, CopySourceKind};
use crate::sql::query_arguments::QueryArguments;
use crate::storage::{Store, StoredTable, TableChange, bulk_insert};
use crate::vectors::VectorIndexes;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open TasteDB data directory. Cheap to clone; clones share everything, and an `Engine` can
/// be used from many tasks and threads at once.
///
/// ```no_run
/// # async fn demo() -> tastedb::Result<()> {
/// let engine = tastedb::Engine::open("./tastedb-data")?;
/// engine.sql("CREATE TABLE IF NOT EXISTS t (id BIGINT PRIMARY KEY, name TEXT)").await?;
/// engine.sql("INSERT INTO t VALUES (1, 'one')").await?;
/// let batches = engine.sql("SELECT name FROM t WHERE id = 1").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// First, so that the consumers stop before anything they write to goes.
    sources: Arc<Sources>,
    /// Next, so that the archives' runners stop before anything they read goes.
    archives: Arc<Archives>,
    ctx: SessionContext,
    users: Users,
    activity: Arc<Activity>,
    catalog: Arc<Catalog>,
    schema: Arc<TasteSchema>,
    models: Arc<ModelRegistry>,
    /// The live deltas of served model versions.
    live: Arc<ServingLive>,
    features: Arc<FeatureViews>,
    indexes: Arc<VectorIndexes>,
    query_arguments: Arc<QueryArguments>,
    shapes: Arc<fast_path::Shapes>,
    filters: Arc<Filters>,
    experiments: Arc<Experiments>,
    impressions: Arc<ImpressionLog>,
    metrics: Arc<Metrics>,
    cache: Arc<ServingCache>,
    /// Distinguishes this engine from every other one the process opened
    /// ([`Prepared::is_current`]).
    instance: u64,
}

/// A reference to an engine that does not keep it open: what background consumers hold.
#[derive(Clone)]
pub struct WeakEngine(std::sync::Weak<EngineInner>);

impl WeakEngine {
    /// The engine, unless it has been closed.
    pub fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // datafusion-pg-catalog's pg_catalog schema holds the catalog list that holds it: a
        // reference cycle that would keep RocksDB (and its directory lock) open for ever.
        if let Some(catalog) = self.ctx.catalog(names::CATALOG) {
            let _ = catalog.deregister_schema(PG_CATALOG, true);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.catalog.store().dir())
            .finish()
    }
}

/// How an [`Engine`] runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Bytes that all statements together may hold in memory before they spill or fail with
    /// 53200 ([`memory`]); half the machine's memory by default.
    pub memory_limit: usize,
    /// Opens the directory for reading only (a replica's checkpoint): nothing in it changes,
    /// statements that write get 25006, sources and archives do not run.
    pub read_only: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: memory::default_limit(),
            read_only: false,
        }
    }
}

impl Engine {
    /// Opens the data directory `dir`, creating it if it does not exist or is empty. Fails with
    /// a clear error when another process holds it, when it cannot be written, or when it is
    /// not a TasteDB directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Engine::open_with(dir, &EngineOptions::default())
    }

    /// Like [`Engine::open`], with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Engine> {
        Engine::open_in(dir.as_ref(), options, Process::new(options.memory_limit)?)
    }

    /// Opens the checkpoint `dir` read-only to replace this engine in a read replica, sharing
    /// what belongs to the process rather than to a data directory: connections and their
    /// cancel keys, metrics, the memory pool and the object stores.
    pub fn open_replacement(&self, dir: impl AsRef<Path>) -> Result<Engine> {
        let options = EngineOptions {
            read_only: true,
            ..EngineOptions::default()
        };
        Engine::open_in(dir.as_ref(), &options, Process::of(self))
    }

    fn open_in(dir: &Path, options: &EngineOptions, process: Process) -> Result<Engine> {
        let Process {
            activity,
            metrics,
            stores,
            runtime,
        } = process;
        let store = Arc::new(match options.read_only {
            true => Store::open_read_only(dir)?,
            false => Store::open(dir)?,
        });
        let catalog = Arc::new(Catalog::load(store)?);
        let models = Arc::new(ModelRegistry::load(catalog.store().clone())?);
        let features = Arc::new(FeatureViews::load(catalog.store().clone())?);
        let query_arguments = Arc::new(QueryArguments::default());
        let cache = Arc::new(ServingCache::default());
        let indexes = VectorIndexes::load(catalog.store().clone())?;
        let users = Users::load(catalog.store().clone())?;
        let role_tables = Arc::new(RoleTables::new(users.clone()));
        let shapes = Arc::new(fast_path::Shapes::default());
        let filters = Arc::new(Filters::load(catalog.store().clone())?);
        let experiments = Arc::new(Experiments::load(catalog.store().clone())?);
        let impressions = Arc::new(ImpressionLog::new(catalog.clone()));
        let sources = Arc::new(Sources::load(catalog.store().clone())?);
        let archives = Arc::new(Archives::load(catalog.store().clone(), stores.clone())?);
        let system_tables: Vec<Arc<dyn SystemTables>> = vec![
            filters.clone(),
            sources.clone(),
            archives.clone(),
            experiments.clone(),
            role_tables.clone(),
            shapes.clone(),
            models.clone(),
            cache.clone(),
            features.clone(),
            indexes.clone(),
        ];
        let schema = Arc::new(TasteSchema::new(catalog.clone(), system_tables));
        role_tables.list_tables_of(&schema);
        let mut config = SessionConfig::new()
            .with_option_extension(TasteConfig::default())
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(names::CATALOG, names::SCHEMA);
        config.options_mut().sql_parser.dialect = "PostgreSQL".parse()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let database = MemoryCatalogProvider::new();
        database.register_schema(names::SCHEMA, schema.clone())?;
        ctx.register_catalog(names::CATALOG, Arc::new(database));
        // pg_catalog tables and functions that Postgres clients and BI tools query.
        datafusion_pg_catalog::setup_pg_catalog(&ctx, names::CATALOG, RoleCatalog(users.clone()))
            .map_err(|e| Error::from(*e))?;
        crate::roles::register_catalog(&ctx, &users, schema.clone());
        let role_oids = Arc::new(RoleOids(users.clone()));
        ctx.register_udf(role_oids.get_userbyid());
        let pg_catalog: Vec<Arc<dyn SystemTables>> = vec![
            Arc::new(RoleCatalog(users.clone())),
            role_oids.clone(),
            activity.clone(),
        ];
        let index_catalog = IndexCatalog::new(
            catalog.clone(),
            vec![catalog.clone(), indexes.clone() as Arc<dyn ListIndexes>],
            role_oids,
        );
        add_to_pg_catalog(&ctx, pg_catalog, index_catalog.clone())?;
        for function in index_catalog.functions() {
            ctx.register_udf(function);
        }
        ctx.register_udf(ScalarUDF::from(CancelBackend::new(activity.clone())));
        let live = Arc::new(ServingLive::new(
            catalog.clone(),
            models.clone(),
            cache.clone(),
        ));
        // Weak: the store holds its observers, and the deltas hold the store.
        let observed = Arc::downgrade(&live);
        let watching = Arc::downgrade(&live);
        catalog.store().on_rows_changed(
            Arc::new(move |table, change| {
                if let Some(live) = observed.upgrade() {
                    match change {
                        TableChange::Written(batches) => live.rows_written(table, batches),
                        TableChange::Removed(_) => live.rows_removed(table),
                    }
                }
            }),
            Arc::new(move |table| watching.upgrade().is_some_and(|l| l.watches(table))),
        );
        // Weak: the store holds its observers, and the indexes hold the store.
        let indexed = Arc::downgrade(&indexes);
        let watching = Arc::downgrade(&indexes);
        catalog.store().on_rows_changed(
            Arc::new(move |table, change| {
                if let Some(indexes) = indexed.upgrade() {
                    match change {
                        TableChange::Written(batches) => indexes.rows_written(table, batches),
                        TableChange::Removed(keys) => indexes.rows_removed(table, keys),
                    }
                }
            }),
            Arc::new(move |table| watching.upgrade().is_some_and(|i| i.watches(table))),
        );
        let serving = Serving {
            registry: models.clone(),
            cache: cache.clone(),
            inputs: query_arguments.clone(),
            live: live.clone(),
            experiments: experiments.clone(),
            impressions: impressions.clone(),
        };
        extensions::register_functions(&ctx, &catalog, serving, &features, &indexes);
        crate::archive::register_functions(&ctx, &archives, &catalog);
        let stored_views = catalog.stored_views()?;
        define_views(&ctx, stored_views);
        let engine = Engine {
            inner: Arc::new(EngineInner {
                sources,
                archives,
                users,
                activity,
                ctx,
                catalog,
                schema,
                models,
                live,
                features,
                indexes,
                query_arguments,
                shapes,
                filters,
                experiments,
                impressions,
                metrics,
                cache,
                instance: process::next_instance(),
            }),
        };
        if !options.read_only {
            // stored sources resume from their stored offsets
            engine.sources().start_all(&engine.downgrade());
            engine.archives().start_all(&engine.downgrade());
        }
        Ok(engine)
    }

    /// A reference to this engine that does not keep it open.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// Whether the engine was opened read-only ([`EngineOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.catalog().store().is_read_only()
    }

    /// The tables' Parquet archives (`ALTER TABLE … SET (archive = …)`).
    pub fn archives(&self) -> &Arc<Archives> {
        &self.inner.archives
    }

    /// The stream sources (`CREATE SOURCE`).
    pub fn sources(&self) -> &Arc<Sources> {
        &self.inner.sources
    }

    /// Runs one or more `;`-separated statements and returns the rows of the last one.
    /// Statements run one after another; an error stops the run at the failing statement.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let stream = self.sql_stream(sql).await?;
        Ok(stream.try_collect().await?)
    }

    /// Like [`Engine::sql`], but the rows of the last statement arrive as a stream, batch by
    /// batch, so results larger than memory can be consumed. A statement that returns no rows
    /// gives its count as one `count` row when its command tag has one (INSERT, COPY), and no
    /// rows otherwise; [`Engine::execute`] gives the typed [`Outcome`].
    pub async fn sql_stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.sql_stream_as(&Actor::Embedder, sql).await
    }

    /// Like [`Engine::sql`], on behalf of the role `role`: with its privileges, owning what
    /// it creates, as if it had logged in over the wire. 42704 when the role does not exist.
    pub async fn sql_as(&self, role: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        if self.users().get(role)?.is_none() {
            return Err(Error::UndefinedObject(format!(
                "role \"{role}\" does not exist"
            )));
        }
        let stream = self
            .sql_stream_as(&Actor::Role(role.to_string()), sql)
            .await?;
        Ok(stream.try_collect().await?)
    }

    async fn sql_stream_as(&self, actor: &Actor, sql: &str) -> Result<SendableRecordBatchStream> {
        tracing::debug!(sql, "statement");
        let mut statements = parse(sql)?.into_iter().peekable();
        while let Some(statement) = statements.next() {
            let outcome = self
                .execute_as(statement, actor, &Notices::tracing())
                .await?;
            if statements.peek().is_none() {
                return outcome.into_stream();
            }
            if let Outcome::Rows(stream) = outcome {
                let _: Vec<RecordBatch> = stream.try_collect().await?;
            }
        }
        Outcome::done("").into_stream()
    }

    /// Inserts `batches` into the stored table `table` as one atomic, durable write; columns
    /// are matched by position and cast to the table's types. Returns the number of rows.
    pub async fn insert_batches(&self, table: &str, batches: Vec<RecordBatch>) -> Result<u64> {
        self.load_and_insert(table, &[], move |_, emit| {
            batches.into_iter().try_for_each(emit)
        })
        .await
    }

    /// Inserts JSON rows into the stored table `table` on behalf of `actor` (who needs its
    /// INSERT privilege), with values for the columns `listed` and defaults for the others:
    /// all rows or none, durable when it returns. Returns the number of rows.
    pub async fn insert_json(
        &self,
        table: &str,
        actor: &Actor,
        listed: Vec<String>,
        rows: crate::sql::json_rows::JsonRows,
    ) -> Result<u64> {
        self.stored_table(table)?;
        self.users()
            .check(actor, &Object::table(table.to_string()), Privilege::Insert)?;
        let given = listed.clone();
        self.load_and_insert(table, &listed, move |def, emit| {
            crate::sql::json_rows::load(def, &given, rows, emit)
        })
        .await
    }

    /// Runs a `COPY … FROM 'file'`, reporting the fraction of the file read to `progress`.
    /// All rows are inserted, or none. Returns the number of rows.
    pub async fn copy_from_file(
        &self,
        copy: CopyFrom,
        mut progress: impl FnMut(f64) + Send + 'static,
    ) -> Result<u64> {
        let CopySourceKind::File(path) = &copy.source else {
            return Err(Error::FeatureNotSupported(
                "COPY FROM STDIN needs a client connection; use COPY FROM 'file' here".into(),
            ));
        };
        let path = PathBuf::from(path);
        let (table, listed) = (copy.table.clone(), copy.columns.clone());
        self.load_and_insert(&table, &listed, move |def, emit| {
            crate::sql::copy_from::load(def, &copy, &path, &mut progress, emit)
        })
        .await
    }

    /// Runs a `COPY … FROM STDIN` whose data a client sends (text, csv or binary format),
    /// read from `data` as it arrives: all rows are inserted, or none. Returns the number of
    /// rows.
    pub async fn copy_from_reader(
        &self,
        copy: CopyFrom,
        data: impl std::io::Read + Send + 'static,
    ) -> Result<u64> {
        let (table, listed) = (copy.table.clone(), copy.columns.clone());
        self.load_and_insert(&table, &listed, move |def, emit| {
            crate::sql::copy_from::load_reader(def, &copy, data, emit)
        })
        .await
    }

    /// On a blocking thread: `load` the rows for the stored table `table`, handing each batch
    /// to the function it is given; when they come for the columns `listed` only, the others
    /// get their defaults. The rows are inserted as one atomic, durable write, within the
    /// memory of `tastedb.write_buffer_mb` (see [`bulk_insert::insert_from`]).
    async fn load_and_insert(
        &self,
        table: &str,
        listed: &[String],
        load: impl FnOnce(&TableDef, &mut bulk_insert::Rows<'_>) -> Result<()> + Send + 'static,
    ) -> Result<u64> {
        let stored = self.stored_table(table)?;
        let store = self.inner.catalog.store().clone();
        let txn = transaction::current();
        let budget = self.taste_config().write_buffer_mb.saturating_mul(1 << 20);
        let engine = self.clone();
        let listed = listed.to_vec();
        let runtime = tokio::runtime::Handle::current();
        crate::blocking::run("the load", move |stopped| {
            let def = &stored.def;
            bulk_insert::insert_from(&store, &stored, txn.as_deref(), budget, stopped, |rows| {
                load(def, &mut |batch| {
                    let defaulted = runtime.block_on(engine.copy_defaults(def, &listed, batch))?;
                    rows(defaulted)
                })
            })
        })
        .await
    }

    /// Checks that `copy` can run on behalf of `actor` (table, INSERT privilege, columns,
    /// format) and returns how many columns its input has.
    pub fn copy_input_width(&self, copy: &CopyFrom, actor: &Actor) -> Result<usize> {
        let stored = self.stored_table(&copy.table)?;
        let table = Object::table(copy.table.clone());
        self.users().check(actor, &table, Privilege::Insert)?;
        crate::sql::copy_from::input_width(&stored.def, copy)
    }

    /// The definition of the stored table `name`, if it exists.
    pub fn table_def(&self, name: &str) -> Option<TableDef> {
        self.inner.catalog.get(name).map(|t| t.def.clone())
    }

    /// The DataFusion session behind the engine, for registering functions or tables.
    pub fn session_context(&self) -> &SessionContext {
        &self.inner.ctx
    }

    /// The sessions of the wire server and their running statements.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.inner.activity
    }

    /// The users of the wire server, stored in this data directory.
    pub fn users(&self) -> &Users {
        &self.inner.users
    }

    fn stored_table(&self, name: &str) -> Result<Arc<StoredTable>> {
        self.inner
            .catalog
            .get(name)
            .ok_or_else(|| Error::UndefinedTable(name.to_string()))
    }

    /// The prepared shapes of statements written with their values.
    fn shapes(&self) -> &fast_path::Shapes {
        &self.inner.shapes
    }

    /// The stored tables.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    fn schema(&self) -> &Arc<TasteSchema> {
        &self.inner.schema
    }

    /// The engine's `tastedb.*` settings as they stand.
    pub fn taste_config(&self) -> TasteConfig {
        // read under the state's lock: copying the whole state costs more than a serving read
        let state = self.session_context().state_ref();
        let state = state.read();
        (state.config_options().extensions.get::<TasteConfig>())
            .cloned()
            .unwrap_or_default()
    }

    /// The model registry of this data directory.
    pub fn models(&self) -> &Arc<ModelRegistry> {
        &self.inner.models
    }

    /// The live deltas of served model versions.
    pub(crate) fn live(&self) -> &Arc<ServingLive> {
        &self.inner.live
    }

    /// The experiments between model versions (`CREATE EXPERIMENT`).
    pub fn experiments(&self) -> &Arc<Experiments> {
        &self.inner.experiments
    }

    /// The log of impressions served through experiments (`tastedb_impressions`).
    pub fn impressions(&self) -> &Arc<ImpressionLog> {
        &self.inner.impressions
    }

    /// The named filters (`CREATE FILTER`).
    pub fn filters(&self) -> &Arc<Filters> {
        &self.inner.filters
    }

    /// The prediction cache of `recommend` answers.
    pub fn prediction_cache(&self) -> &Arc<ServingCache> {
        &self.inner.cache
    }

    /// What `GET /metrics` reports.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The feature views.
    pub fn features(&self) -> &Arc<FeatureViews> {
        &self.inner.features
    }

    /// The vector indexes.
    pub fn indexes(&self) -> &Arc<VectorIndexes> {
        &self.inner.indexes
    }

    fn query_arguments(&self) -> &Arc<QueryArguments> {
        &self.inner.query_arguments
    }
}

/// Defines the stored views in `ctx` again. A view may read another, so views are defined
/// until no more can be; one that cannot (a table it reads was dropped) is logged and stays
/// stored, to come back once what it reads exists again at a later start.
fn define_views(ctx: &SessionContext, mut views: Vec<StoredView>) {
    loop {
        let before = views.len();
        // planning a view needs no runtime: the futures of its tables' lookups are ready
        views.retain(|view| futures::executor::block_on(ctx.sql(&view.definition)).is_err());
        if views.is_empty() || views.len() == before {
            break;
        }
    }
    for view in views {
        let error = futures::executor::block_on(ctx.sql(&view.definition)).err();
        tracing::warn!(
            "view {} is stored but cannot be defined: {}",
            view.name,
            error.map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

/// The schema of PostgreSQL's catalog tables.
const PG_CATALOG: &str = "pg_catalog";

/// Adds the tables of `extra` (`pg_user`, `pg_stat_activity`) and of `indexes` to the
/// `pg_catalog` schema that datafusion-pg-catalog set up in `ctx`, which takes no
/// registrations of its own.
fn add_to_pg_catalog(
    ctx: &SessionContext,
    extra: Vec<Arc<dyn SystemTables>>,
    indexes: Arc<IndexCatalog>,
) -> Result<()> {
    let database = ctx
        .catalog(names::CATALOG)
        .ok_or_else(|| Error::Internal("the catalog is missing".into()))?;
    if let Some(pg_catalog) = database.schema(PG_CATALOG) {
        database.register_schema(
            PG_CATALOG,
            Arc::new(ExtraSchema::new(pg_catalog, extra, indexes)),
        )?;
    }
    Ok(())
}
