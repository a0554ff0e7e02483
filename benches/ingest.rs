//! Ingest benchmark: 1,000,000 synthetic events (power-law item popularity) loaded
//! (a) through the embedding API in batches of 10,000 and (b) with COPY from a CSV file.
//! Reports rows/s, peak memory (VmHWM) and bytes on disk for each, each phase in its own
//! process so that peak memory is its own.
//!
//! Run: `cargo bench --bench ingest` (release build). `TASTEDB_BENCH_ROWS` changes the row count.

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use tastedb::Engine;

const BATCH_ROWS: usize = 10_000;
const USERS: u64 = 50_000;
const ITEMS: f64 = 20_000.0;
const CREATE: &str = "CREATE TABLE events (user_id TEXT, item_id TEXT, event_type TEXT, weight DOUBLE, ts TIMESTAMP)";

fn rows_wanted() -> usize {
    std::env::var("TASTEDB_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// xorshift64*: deterministic and dependency-free.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Event `i`: item ids follow a power law (item 0 is the most popular).
fn event(random: &mut Random, i: usize) -> (String, String, &'static str, f64, i64) {
    let user = random.next() % USERS;
    let item = (ITEMS * random.unit().powf(3.0)) as u64;
    let (kind, weight) = match random.next() % 10 {
        0 => ("purchase", 5.0),
        1 | 2 => ("cart", 3.0),
        _ => ("view", 1.0),
    };
    let ts = 1_700_000_000_000_000 + i as i64 * 1_000_000;
    (format!("u{user}"), format!("i{item}"), kind, weight, ts)
}

fn batch(random: &mut Random, start: usize, rows: usize) -> RecordBatch {
    let events: Vec<_> = (start..start + rows).map(|i| event(random, i)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("item_id", DataType::Utf8, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("weight", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.0.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.1.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.2))),
        Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.3))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            events.iter().map(|e| e.4),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("valid batch")
}

fn write_csv(path: &Path, rows: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("csv file"));
    writeln!(out, "user_id,item_id,event_type,weight,ts").expect("write");
    let mut random = Random(42);
    for i in 0..rows {
        let (user, item, kind, weight, ts) = event(&mut random, i);
        let seconds = ts / 1_000_000;
        let time = chrono_like(seconds);
        writeln!(out, "{user},{item},{kind},{weight},{time}").expect("write");
    }
    out.flush().expect("flush");
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time, via DataFusion's own Arrow formatting.
fn chrono_like(seconds: i64) -> String {
    let array = TimestampMicrosecondArray::from(vec![seconds * 1_000_000]);
    datafusion::arrow::util::display::array_value_to_string(&array, 0)
        .expect("formattable")
        .replace('T', " ")
}

fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            bytes_on_disk(&path)
        } else {
            entry.metadata().map_or(0, |m| m.len())
        };
    }
    total
}

async fn phase(name: &str, rows: usize) {
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("data");
    let engine = Engine::open(&data).expect("open");
    engine.sql(CREATE).await.expect("create");
    let csv = work.path().join("events.csv");
    if name == "copy" {
        write_csv(&csv, rows);
    }
    let started = Instant::now();
    let loaded = match name {
        "api" => {
            let mut random = Random(42);
            let mut loaded = 0;
            for start in (0..rows).step_by(BATCH_ROWS) {
                let n = BATCH_ROWS.min(rows - start);
                let batch = batch(&mut random, start, n);
                loaded += engine
                    .insert_batches("events", vec![batch])
                    .await
                    .expect("insert");
            }
            loaded
        }
        _ => {
            let sql = format!(
                "COPY events FROM '{}' (FORMAT csv, HEADER true)",
                csv.display()
            );
            let result = engine.sql(&sql).await.expect("copy");
            let counts = result[0]
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>();
            counts.map_or(0, |c| c.value(0))
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(loaded as usize, rows);
    let count = engine
        .sql("SELECT count(*) FROM events")
        .await
        .expect("count");
    let stored = datafusion::arrow::util::pretty::pretty_format_batches(&count).expect("fmt");
    assert!(stored.to_string().contains(&rows.to_string()), "{stored}");
    println!(
        "{name}\t{rows}\t{seconds:.2}\t{:.0}\t{:.0}\t{}",
        rows as f64 / seconds,
        peak_memory_mib(),
        bytes_on_disk(&data)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows = rows_wanted();
    if let Some(name) = args.iter().find_map(|a| a.strip_prefix("--phase=")) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(phase(name, rows));
        return;
    }
    println!("phase\trows\tseconds\trows/s\tpeak MiB\tbytes on disk");
    for name in ["api", "copy"] {
        let status = Command::new(std::env::current_exe().expect("exe"))
            .arg(format!("--phase={name}"))
            .status()
            .expect("run phase");
        assert!(status.success(), "phase {name} failed");
    }
}
