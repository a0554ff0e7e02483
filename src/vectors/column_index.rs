//! HNSW indexes over vector columns (`CREATE INDEX … USING hnsw (column)`), and `nearest`'s
//! search through them.
//!
//! An index is its definition (RocksDB key `i`) and a graph over the rows indexed when it was
//! last built or extended (key `h`: the graph, the row key of every point, the transform). Rows
//! written after that are *pending*: kept in memory, searched exactly by every query, so a query
//! always sees every row. Once [`EXTEND_AFTER`] rows are pending, a background thread adds them
//! to a copy of the graph, stores it and swaps it in. After a restart, the first query of an index
//! finds the pending rows again by scanning the table for keys the graph lacks.

use crate::ann::hnsw::{Hnsw, HnswError, HnswParams};
use crate::ann::metric::{Metric, Transform};
use crate::blocking::Stopped;
use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableDef};
use crate::storage::{RowDecoder, Scan, Store, StoredTable, WriteSet, WrittenBatch, keys};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float32Type;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Pending rows that start a background extension of the graph.
pub const EXTEND_AFTER: usize = 1_000;
/// `ef` of a search when the query does not give one.
pub const DEFAULT_EF_SEARCH: usize = 100;

/// An index as `CREATE INDEX` defined it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexDef {
    /// Index name (normalised).
    pub name: String,
    /// The indexed table.
    pub table: String,
    /// The table's id: an index belongs to one incarnation of a table name.
    pub table_id: u64,
    /// The vector column.
    pub column: String,
    /// The distance it ranks by.
    pub metric: Metric,
    /// Links per point (HNSW's M; layer 0 has twice as many).
    pub m: usize,
    /// Candidates gathered when linking a point.
    pub ef_construction: usize,
}

/// One index's state as `tastedb_indexes` shows it.
#[derive(Debug, Clone)]
pub struct IndexStatus {
    /// The definition.
    pub def: IndexDef,
    /// Rows in the graph (None: not loaded since the server started).
    pub indexed_rows: Option<u64>,
    /// Rows searched exactly until the next extension (None: not loaded).
    pub pending_rows: Option<u64>,
}

/// The graph of an index and what its points are.
#[derive(Serialize, Deserialize)]
struct Graph {
    /// Length of the column's vectors (0 while no vector has been seen).
    dim: usize,
    transform: Transform,
    hnsw: Hnsw,
    /// Row key of each point, by point id.
    keys: Vec<Vec<u8>>,
}

/// A loaded index: its graph, the rows written since the graph was made, and the points of
/// the graph whose rows were removed or changed since (HNSW cannot remove a point: searches
/// pass over them).
struct Loaded {
    def: IndexDef,
    graph: RwLock<Arc<Graph>>,
    pending: Mutex<BTreeMap<Vec<u8>, Vec<f32>>>,
    dead: Mutex<HashSet<u32>>,
    extending: AtomicBool,
}

impl Loaded {
    fn new(def: IndexDef, graph: Graph) -> Loaded {
        Loaded {
            def,
            graph: RwLock::new(Arc::new(graph)),
            pending: Mutex::new(BTreeMap::new()),
            dead: Mutex::new(HashSet::new()),
            extending: AtomicBool::new(false),
        }
    }
}

/// Every vector index of the database.
pub struct VectorIndexes {
    store: Arc<Store>,
    defs: RwLock<BTreeMap<String, IndexDef>>,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Taken while an index's stored state changes (create, drop, store an extension).
    writes: Mutex<()>,
}

impl std::fmt::Debug for VectorIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndexes").finish()
    }
}

/// A row of an indexed table: its key and vector.
type Row = (Vec<u8>, Vec<f32>);

/// One search hit: the row's key and the metric's distance.
pub type Hit = (Vec<u8>, f64);

impl VectorIndexes {
    /// Reads the index definitions of `store`.
    pub fn load(store: Arc<Store>) -> Result<Arc<VectorIndexes>> {
        let stored: Vec<IndexDef> =
            store.records(&keys::vector_index(""), "vector index definition")?;
        let defs = stored
            .into_iter()
            .map(|def| (def.name.clone(), def))
            .collect();
        Ok(Arc::new(VectorIndexes {
            store,
            defs: RwLock::new(defs),
            loaded: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
        }))
    }

    /// Creates and builds an index over the rows `table` has now; rows written meanwhile are
    /// pending. False when it exists and `if_not_exists` is set. Nothing is stored when
    /// `stopped` is set before the build ends.
    pub fn create(
        self: &Arc<Self>,
        def: IndexDef,
        table: &StoredTable,
        if_not_exists: bool,
        stopped: &Stopped,
    ) -> Result<bool> {
        table.def.refuse_on_blocks("an hnsw index")?;
        let _turn = lock(&self.writes);
        if self.read_defs().contains_key(&def.name) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::DuplicateTable(def.name));
        }
        let column = column_index(&table.def, &def.column)?;
        if self
            .read_defs()
            .values()
            .any(|d| d.table_id == def.table_id && d.column == def.column)
        {
            return Err(Error::DuplicateObject(format!(
                "column \"{}\" of \"{}\" already has an hnsw index",
                def.column, def.table
            )));
        }
        let loaded = Arc::new(Loaded::new(
            def.clone(),
            empty_graph(&def, &table.def, column),
        ));
        // Registered before the scan: rows written from now on reach `pending`.
        lock(&self.loaded).insert(def.name.clone(), loaded.clone());
        let built = scan_rows(&self.store, &table.def, column, &HashSet::new())
            .and_then(|rows| {
                stopped.check()?;
                build_graph(&def, &table.def, column, rows, stopped)
            })
            .and_then(|graph| stopped.check().map(|()| graph));
        let graph = match built {
            Ok(graph) => graph,
            Err(e) => {
                lock(&self.loaded).remove(&def.name);
                return Err(e);
            }
        };
        let mut write = WriteSet::default();
        write.put(keys::vector_index(&def.name), to_json(&def)?);
        write.put(keys::vector_graph(&def.name), encode_graph(&graph)?);
        if let Err(e) = self.store.write(write) {
            lock(&self.loaded).remove(&def.name);
            return Err(e);
        }
        install(&loaded, graph);
        self.write_defs().insert(def.name.clone(), def);
        Ok(true)
    }

    /// Drops an index; false when it does not exist and `if_exists` is set.
    pub fn drop_index(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _turn = lock(&self.writes);
        if !self.read_defs().contains_key(name) {
            if if_exists {
                return Ok(false);
            }
            return Err(Error::UndefinedObject(format!(
                "index \"{name}\" does not exist"
            )));
        }
        let mut write = WriteSet::default();
        write.delete(keys::vector_index(name));
        write.delete(keys::vector_graph(name));
        self.store.write(write)?;
        self.write_defs().remove(name);
        lock(&self.loaded).remove(name);
        Ok(true)
    }

    /// Drops the indexes of the table with id `table_id` (the table was dropped).
    pub fn drop_for_table(&self, table_id: u64) -> Result<()> {
        let names: Vec<String> = self
            .read_defs()
            .values()
            .filter(|d| d.table_id == table_id)
            .map(|d| d.name.clone())
            .collect();
        for name in names {
            self.drop_index(&name, true)?;
        }
        Ok(())
    }

    /// The index on `column` of `table`, if there is one.
    pub fn for_column(&self, table: &TableDef, column: &str) -> Option<IndexDef> {
        self.read_defs()
            .values()
            .find(|d| d.table_id == table.id && d.column == column)
            .cloned()
    }

    /// The definition of the index `name`.
    pub fn get(&self, name: &str) -> Option<IndexDef> {
        self.read_defs().get(name).cloned()
    }

    /// Every index with its state.
    pub fn list(&self) -> Vec<IndexStatus> {
        let loaded = lock(&self.loaded);
        self.read_defs()
            .values()
            .map(|def| {
                // pending first, and the graph under it: `install` swaps the graph while it
                // holds the pending rows, so the two counts are of one moment
                let counts = loaded.get(&def.name).map(|l| {
                    let pending = lock(&l.pending);
                    (read(&l.graph).keys.len() as u64, pending.len() as u64)
                });
                IndexStatus {
                    def: def.clone(),
                    indexed_rows: counts.map(|(indexed, _)| indexed),
                    pending_rows: counts.map(|(_, pending)| pending),
                }
            })
            .collect()
    }

    /// The `k` rows nearest to `query` by the index `def` of `table`, nearest first: the
    /// graph searched with `ef` candidates, and every pending row exactly.
    pub fn search(
        self: &Arc<Self>,
        def: &IndexDef,
        table: &StoredTable,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<Hit>> {
        let loaded = self.loaded(def, table)?;
        // pending first, and the graph under it: `install` swaps the graph while it holds the
        // pending rows, so no row is in neither (a row moves from one to the other at once)
        let pending = lock(&loaded.pending);
        let graph = read(&loaded.graph).clone();
        let dead = lock(&loaded.dead).clone();
        if graph.dim != 0 && query.len() != graph.dim {
            return Err(Error::DataException(format!(
                "expected {} dimensions, not {}",
                graph.dim,
                query.len()
            )));
        }
        let point = graph.transform.query(query);
        let wanted = k + dead.len();
        let mut hits: Vec<Hit> = graph
            .hnsw
            .search(&point, wanted, ef.max(wanted))
            .into_iter()
            .filter(|(id, _)| !dead.contains(id))
            .filter_map(|(id, squared)| {
                let key = graph.keys.get(id as usize)?.clone();
                Some((key, graph.transform.distance(squared)))
            })
            .collect();
        let cosine = def.metric == Metric::Cosine;
        for (key, vector) in pending.iter() {
            if vector.len() != query.len() || (cosine && vector.iter().all(|v| *v == 0.0)) {
                continue;
            }
            hits.push((key.clone(), def.metric.distance(query, vector)));
        }
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let mut seen = HashSet::new();
        hits.retain(|(key, _)| seen.insert(key.clone()));
        hits.truncate(k);
        Ok(hits)
    }

    /// Whether an index over `table` is loaded (and so wants the rows written to it).
    pub fn watches(&self, table: &TableDef) -> bool {
        lock(&self.loaded)
            .values()
            .any(|l| l.def.table_id == table.id)
    }

    /// Queues the rows of a durable write to `table` for its loaded indexes, and starts an
    /// extension of a graph when enough rows wait.
    pub fn rows_written(self: &Arc<Self>, table: &TableDef, batches: &[WrittenBatch]) {
        let targets = self.loaded_for(table.id);
        for loaded in targets {
            let Some(column) = table
                .columns
                .iter()
                .position(|c| c.name == loaded.def.column)
            else {
                continue;
            };
            let waiting = {
                let mut pending = lock(&loaded.pending);
                for batch in batches {
                    let Some(list) = batch
                        .columns
                        .get(column)
                        .and_then(|c| c.as_list_opt::<i32>())
                    else {
                        continue;
                    };
                    let Some(values) = list.values().as_primitive_opt::<Float32Type>() else {
                        continue;
                    };
                    let offsets = list.value_offsets();
                    for row in (0..list.len()).filter(|&r| list.is_valid(r)) {
                        let vector =
                            &values.values()[offsets[row] as usize..offsets[row + 1] as usize];
                        pending.insert(batch.keys.key(row), vector.to_vec());
                    }
                }
                pending.len()
            };
            if waiting >= EXTEND_AFTER && !loaded.extending.swap(true, Ordering::AcqRel) {
                let indexes = self.clone();
                std::thread::spawn(move || {
                    if let Err(e) = indexes.extend(&loaded) {
                        tracing::warn!("extending index {} failed: {e}", loaded.def.name);
                    }
                    loaded.extending.store(false, Ordering::Release);
                });
            }
        }
    }

    /// Forgets rows of `table` that were removed (or changed: their new versions follow as
    /// written rows): their pending vectors, and their points in the graphs.
    pub fn rows_removed(&self, table: &TableDef, row_keys: &[Vec<u8>]) {
        let removed: HashSet<&[u8]> = row_keys.iter().map(Vec::as_slice).collect();
        let targets = self.loaded_for(table.id);
        for loaded in targets {
            let mut pending = lock(&loaded.pending);
            pending.retain(|key, _| !removed.contains(key.as_slice()));
            let graph = read(&loaded.graph).clone();
            let mut dead = lock(&loaded.dead);
            for (id, key) in graph.keys.iter().enumerate() {
                if removed.contains(key.as_slice()) {
                    dead.insert(id as u32);
                }
            }
        }
    }

    /// The loaded indexes of the table with id `table_id`.
    fn loaded_for(&self, table_id: u64) -> Vec<Arc<Loaded>> {
        lock(&self.loaded)
            .values()
            .filter(|l| l.def.table_id == table_id)
            .cloned()
            .collect()
    }

    /// Adds the pending rows to a copy of the graph, stores it and swaps it in.
    fn extend(&self, loaded: &Loaded) -> Result<()> {
        let batch: Vec<(Vec<u8>, Vec<f32>)> = lock(&loaded.pending)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let old = read(&loaded.graph).clone();
        // An index over a REAL[] column that was empty has no dimension yet: the first rows
        // give it one.
        let graph = match old.dim {
            // the background extension runs for no statement: nothing stops it
            0 => {
                let graph = rebuild(&loaded.def, 0, batch, &Stopped::default())?;
                lock(&loaded.dead).clear();
                graph
            }
            _ => extended(&old, &batch)?,
        };
        let _turn = lock(&self.writes);
        if !self.read_defs().contains_key(&loaded.def.name) {
            return Ok(());
        }
        let mut write = WriteSet::default();
        write.put(keys::vector_graph(&loaded.def.name), encode_graph(&graph)?);
        self.store.write(write)?;
        install(loaded, graph);
        Ok(())
    }

    /// The loaded state of `def`, reading its graph and finding its pending rows on first use.
    fn loaded(&self, def: &IndexDef, table: &StoredTable) -> Result<Arc<Loaded>> {
        if let Some(loaded) = lock(&self.loaded).get(&def.name) {
            return Ok(loaded.clone());
        }
        let column = column_index(&table.def, &def.column)?;
        let bytes = self
            .store
            .get(&keys::vector_graph(&def.name))?
            .ok_or_else(|| Error::Corrupt(format!("index \"{}\" has no graph", def.name)))?;
        let graph: Graph = postcard::from_bytes(&bytes)
            .map_err(|e| Error::Corrupt(format!("index \"{}\": {e}", def.name)))?;
        let loaded = Arc::new(Loaded::new(def.clone(), graph));
        {
            let mut all = lock(&self.loaded);
            if let Some(existing) = all.get(&def.name) {
                return Ok(existing.clone());
            }
            all.insert(def.name.clone(), loaded.clone());
        }
        // the rows the graph lacks, or has with another vector, are pending; its points of
        // rows that are gone or changed are dead
        let rows = scan_rows(&self.store, &table.def, column, &HashSet::new())?;
        let graph = read(&loaded.graph).clone();
        let (missing, dead) = reconcile(&graph, rows);
        lock(&loaded.pending).extend(missing);
        lock(&loaded.dead).extend(dead);
        Ok(loaded)
    }

    fn read_defs(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, IndexDef>> {
        self.defs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_defs(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, IndexDef>> {
        self.defs.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Checks that `name` is a vector column of `table` and returns its position.
pub fn column_index(table: &TableDef, name: &str) -> Result<usize> {
    let index = table
        .columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| Error::UndefinedColumn(name.to_string()))?;
    match table.columns[index].column_type {
        ColumnType::Vector(_) => Ok(index),
        other => Err(Error::DatatypeMismatch(format!(
            "column \"{name}\" is {}, not a vector (REAL[])",
            other.sql_name()
        ))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn to_json(def: &IndexDef) -> Result<Vec<u8>> {
    serde_json::to_vec(def).map_err(|e| Error::Internal(format!("index definition: {e}")))
}

fn encode_graph(graph: &Graph) -> Result<Vec<u8>> {
    postcard::to_stdvec(graph).map_err(|e| Error::Internal(format!("index encoding: {e}")))
}

/// Swaps in a new graph and drops the pending rows it now holds.
/// The rows (key, vector) that `graph` does not hold as they are, and its points that hold no
/// row as it is now.
fn reconcile(graph: &Graph, rows: Vec<(Vec<u8>, Vec<f32>)>) -> (Vec<Row>, Vec<u32>) {
    // a key's newest point is the one that may be current
    let newest: HashMap<&[u8], u32> = (graph.keys.iter().enumerate())
        .map(|(id, key)| (key.as_slice(), id as u32))
        .collect();
    let mut current = HashSet::new();
    let mut missing = Vec::new();
    for (key, vector) in rows {
        let point = graph.transform.point(&vector);
        match newest.get(key.as_slice()) {
            Some(&id) if point.as_deref() == graph.hnsw.vector(id) => {
                current.insert(id);
            }
            _ => missing.push((key, vector)),
        }
    }
    let dead = (0..graph.keys.len() as u32)
        .filter(|id| !current.contains(id))
        .collect();
    (missing, dead)
}

fn install(loaded: &Loaded, graph: Graph) {
    let dead = lock(&loaded.dead);
    let indexed: HashSet<&Vec<u8>> = (graph.keys.iter().enumerate())
        .filter(|(id, _)| !dead.contains(&(*id as u32)))
        .map(|(_, key)| key)
        .collect();
    drop(dead);
    let mut pending = lock(&loaded.pending);
    pending.retain(|key, _| !indexed.contains(key));
    drop(indexed);
    *loaded.graph.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(graph);
}

fn params(def: &IndexDef) -> HnswParams {
    HnswParams {
        m: def.m,
        ef_construction: def.ef_construction,
        seed: 1,
        distance: Transform::new(def.metric).graph_distance(),
    }
}

fn empty_graph(def: &IndexDef, table: &TableDef, column: usize) -> Graph {
    let dim = match table.columns[column].column_type {
        ColumnType::Vector(Some(dim)) => dim as usize,
        _ => 0,
    };
    Graph {
        dim,
        transform: Transform::new(def.metric),
        hnsw: Hnsw::new(dim, params(def)),
        keys: Vec::new(),
    }
}

/// A graph of `rows` (key, vector); all vectors must have one length.
fn build_graph(
    def: &IndexDef,
    table: &TableDef,
    column: usize,
    rows: Vec<(Vec<u8>, Vec<f32>)>,
    stopped: &Stopped,
) -> Result<Graph> {
    let dim = match (table.columns[column].column_type, rows.first()) {
        (ColumnType::Vector(Some(dim)), _) => dim as usize,
        (_, Some((_, first))) => first.len(),
        _ => return Ok(empty_graph(def, table, column)),
    };
    if let Some((_, other)) = rows.iter().find(|(_, v)| v.len() != dim) {
        return Err(Error::DataException(format!(
            "column \"{}\" holds vectors of {dim} and of {} dimensions; an index needs one",
            def.column,
            other.len()
        )));
    }
    rebuild(def, dim, rows, stopped)
}

/// A new graph of `rows` (vectors of `dim` values; others are left out); 57014 once `stopped`
/// is set.
fn rebuild(
    def: &IndexDef,
    dim: usize,
    rows: Vec<(Vec<u8>, Vec<f32>)>,
    stopped: &Stopped,
) -> Result<Graph> {
    let dim = if dim == 0 {
        rows.first().map_or(0, |(_, v)| v.len())
    } else {
        dim
    };
    let rows: Vec<(Vec<u8>, Vec<f32>)> = rows.into_iter().filter(|(_, v)| v.len() == dim).collect();
    let transform = Transform::new(def.metric);
    let mut keys = Vec::with_capacity(rows.len());
    let mut points = Vec::with_capacity(rows.len() * dim);
    for (key, vector) in rows {
        if let Some(point) = transform.point(&vector) {
            points.extend_from_slice(&point);
            keys.push(key);
        }
    }
    let hnsw = Hnsw::build_unless(dim, params(def), &points, &|| stopped.is_set()).map_err(
        |e| match e {
            HnswError::Stopped => Error::QueryCanceled("its statement was stopped".into()),
            other => Error::Internal(format!("index build: {other}")),
        },
    )?;
    Ok(Graph {
        dim,
        transform,
        hnsw,
        keys,
    })
}

/// `old` with `rows` inserted (rows of another dimension are left out).
fn extended(old: &Graph, rows: &[(Vec<u8>, Vec<f32>)]) -> Result<Graph> {
    let mut hnsw = old.hnsw.clone();
    let mut keys = old.keys.clone();
    for (key, vector) in rows.iter().filter(|(_, v)| v.len() == old.dim) {
        let Some(point) = old.transform.point(vector) else {
            continue;
        };
        hnsw.insert(&point)
            .map_err(|e| Error::Internal(format!("index extension: {e}")))?;
        keys.push(key.clone());
    }
    Ok(Graph {
        dim: old.dim,
        transform: old.transform,
        hnsw,
        keys,
    })
}

/// Every row of `table` with a vector in `column` whose key is not in `skip`.
fn scan_rows(
    store: &Store,
    table: &TableDef,
    column: usize,
    skip: &HashSet<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Vec<f32>)>> {
    let prefix = keys::table_prefix(table.id);
    let schema = Arc::new(table.schema().project(&[column])?);
    let mut rows = Vec::new();
    let mut decoder = RowDecoder::new(table, &[column], schema, SCAN_BATCH);
    let mut batch_keys = Vec::with_capacity(SCAN_BATCH);
    let mut take_batch = |decoder: &mut RowDecoder, batch_keys: &mut Vec<Vec<u8>>| {
        let batch = decoder.finish()?;
        let list = batch.column(0).as_list::<i32>();
        let values = list.values().as_primitive::<Float32Type>().values();
        let offsets = list.value_offsets();
        for (row, key) in batch_keys.drain(..).enumerate() {
            if list.is_valid(row) {
                let vector = &values[offsets[row] as usize..offsets[row + 1] as usize];
                rows.push((key, vector.to_vec()));
            }
        }
        Ok::<_, Error>(())
    };
    let expiry = crate::storage::Expiry::now(table);
    store.scan(
        &prefix,
        &keys::table_end(table.id),
        Scan::Bulk,
        |key, value| {
            let row_key = key.get(prefix.len()..).unwrap_or_default().to_vec();
            let expired = expiry.as_ref().is_some_and(|e| e.expired(value));
            if !skip.contains(&row_key) && !expired {
                decoder.push(value)?;
                batch_keys.push(row_key);
            }
            if decoder.len() >= SCAN_BATCH {
                take_batch(&mut decoder, &mut batch_keys)?;
            }
            Ok(true)
        },
    )?;
    if !decoder.is_empty() {
        take_batch(&mut decoder, &mut batch_keys)?;
    }
    Ok(rows)
}

/// Rows decoded at a time when scanning a table for an index.
const SCAN_BATCH: usize = 4096;
