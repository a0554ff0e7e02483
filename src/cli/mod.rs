//! Command-line arguments and the subcommands behind them.

mod cluster;
mod demo;
mod import;
mod serve;
mod sql;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tastedb::backups::{CheckpointPlace, Followed, RemoteCheckpoints};
use tastedb::http::HttpOptions;
use tastedb::server::ServeOptions;
use tastedb::{Engine, Error, Result};

/// TasteDB: a recommendation database you talk to in SQL.
#[derive(Debug, Parser)]
#[command(name = "tastedb", version, about)]
pub struct Cli {
    /// Data directory (created when missing).
    #[arg(
        long,
        env = "TASTEDB_DATA",
        default_value = "./tastedb-data",
        global = true
    )]
    data: PathBuf,
    /// Memory that all statements together may use before they spill to temporary files or
    /// fail with SQLSTATE 53200: 4GB, 512MB, … or a share of the machine's memory such as 25%.
    #[arg(long, default_value = "50%", global = true)]
    memory_limit: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// parsed once at start: the size of its largest variant costs nothing
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve the data directory over the Postgres wire protocol (psql, drivers, BI tools).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: std::net::SocketAddr,
        /// scram-sha-256 (default) or trust (loopback only).
        #[arg(long, default_value = "scram-sha-256")]
        auth: String,
        /// Password of the admin user `tastedb`, created at the first start.
        #[arg(
            long,
            env = "TASTEDB_PASSWORD",
            hide_env_values = true,
            conflicts_with = "password_file"
        )]
        password: Option<String>,
        /// A file whose first line is that password (kept out of the process list and the
        /// environment).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Connections served at once; one more is refused with SQLSTATE 53300.
        #[arg(long, default_value_t = 100)]
        max_connections: usize,
        /// PEM certificate chain: offer TLS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Refuse clients that do not use TLS.
        #[arg(long, requires = "tls_cert")]
        tls_required: bool,
        /// Stop statements running longer (57014) in sessions that do not set their own
        /// statement_timeout: 0 for never, milliseconds, or 30s, 5min, …
        #[arg(long, default_value = "0")]
        statement_timeout: String,
        /// Also serve the HTTP API, metrics and web console on this address (HTTPS with
        /// --tls-cert and --tls-key).
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// Serve the data directory (a replica's checkpoint) without changing it: statements
        /// that write get SQLSTATE 25006.
        #[arg(long, conflicts_with = "checkpoint_to")]
        read_only: bool,
        /// Add a checkpoint of the data directory to this directory, or upload one to this
        /// s3://bucket/prefix, at every --checkpoint-every, for read replicas (`--read-only
        /// --follow`) to serve.
        #[arg(long, value_name = "DIR_OR_URL")]
        checkpoint_to: Option<String>,
        /// How often --checkpoint-to adds one: 30s, 5min, … (PostgreSQL's forms).
        #[arg(long, default_value = "1min", requires = "checkpoint_to")]
        checkpoint_every: String,
        /// Serve the newest checkpoint in this directory or s3://bucket/prefix (a primary's
        /// --checkpoint-to) and move to newer ones as they appear, keeping connections. A
        /// directory is served in place (--data is not used); checkpoints from a URL are
        /// downloaded into --data.
        #[arg(long, value_name = "DIR_OR_URL", requires = "read_only")]
        follow: Option<String>,
        /// How often --follow looks for a newer checkpoint: 1s, 30s, … (PostgreSQL's forms).
        #[arg(long, default_value = "1s", requires = "follow")]
        follow_every: String,
        /// Run queries over archives on this Ballista cluster (df://host:port), as
        /// `SET tastedb.cluster` does.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// The product on a generated shop: 3,000 users, 2,000 items and their events, a trained
    /// model, served over the wire protocol (trust on loopback) and HTTP with the console.
    Demo {
        /// Wire-protocol address (loopback only: logins are trusted).
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: std::net::SocketAddr,
        /// HTTP API and console address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
    /// Run SQL: from -c, from a file, or from standard input.
    Sql {
        /// SQL to run (one or more statements separated by `;`).
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// A file of SQL statements.
        file: Option<PathBuf>,
        /// Print each statement's run time (parse excluded) to standard error, like psql's
        /// `\timing`.
        #[arg(long)]
        timing: bool,
        /// Print nothing but errors, notices and timings (for benchmarks).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Back up the data directory into a backup directory (incremental: files earlier backups
    /// there hold are not copied again). A directory a running server holds is backed up by
    /// that server: run `BACKUP TO 'dir'` there.
    Backup {
        /// The backup directory (created if missing).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup as the data directory, which must not exist or be empty.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The backup to restore (`backup_id`); the latest by default.
        #[arg(long)]
        backup: Option<u32>,
    },
    /// Run a Ballista scheduler: with executors, the cluster that queries over archives run on
    /// (`SET tastedb.cluster = 'df://host:port'`).
    Scheduler {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: std::net::SocketAddr,
        /// An executor not heard from for this long is lost and its tasks run elsewhere.
        #[arg(long, default_value = "30s")]
        executor_timeout: String,
        /// How long a job waits when no executor is left before it fails.
        #[arg(long, default_value = "30s")]
        no_executor_grace: String,
    },
    /// Run a Ballista executor of a scheduler (`tastedb scheduler`).
    Executor {
        /// The scheduler: df://host:port.
        #[arg(long, default_value = "df://127.0.0.1:50050")]
        scheduler: String,
        /// Address to listen on: clients fetch results from its port, the scheduler sends
        /// tasks to the next one; both must be reachable (and fixed: not 0).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: std::net::SocketAddr,
        /// Tasks run at once; all cores by default.
        #[arg(long)]
        cores: Option<usize>,
        /// How often it tells the scheduler it is alive (less than the scheduler's
        /// --executor-timeout).
        #[arg(long, default_value = "5s")]
        heartbeat: String,
    },
    /// Import a CSV or Parquet file into an existing table, all rows or none.
    Import {
        /// Target table.
        #[arg(long)]
        table: String,
        /// The file to import.
        file: PathBuf,
        /// csv or parquet; by default the file extension decides.
        #[arg(long)]
        format: Option<String>,
        /// Whether a CSV file starts with a header line.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        header: bool,
        /// CSV field delimiter.
        #[arg(long)]
        delimiter: Option<char>,
    },
}

/// Runs the subcommand `args` asks for.
pub async fn run(args: Cli) -> Result<()> {
    let engine_options = tastedb::EngineOptions {
        memory_limit: tastedb::engine::memory::parse_size(&args.memory_limit)?,
        read_only: matches!(
            args.command,
            Command::Serve {
                read_only: true,
                ..
            }
        ),
    };
    let open = || Engine::open_with(&args.data, &engine_options);
    match args.command {
        Command::Serve {
            listen,
            auth,
            password,
            password_file,
            max_connections,
            tls_cert,
            tls_key,
            tls_required,
            statement_timeout,
            http,
            read_only: _,
            checkpoint_to,
            checkpoint_every,
            follow,
            follow_every,
            cluster,
        } => {
            let every = interval("--checkpoint-every", &checkpoint_every)?;
            let follow_every = interval("--follow-every", &follow_every)?;
            let tls = tls_cert.zip(tls_key);
            let http = http.map(|listen| HttpOptions {
                tls: tls.clone(),
                ..HttpOptions::new(listen)
            });
            let checkpoints = match checkpoint_to {
                Some(to) => {
                    let place = CheckpointPlace::parse(&to)?;
                    if let CheckpointPlace::ObjectStore(url) = &place {
                        RemoteCheckpoints::at(&Default::default(), url)?;
                    }
                    Some((place, every))
                }
                None => None,
            };
            let followed = match follow {
                Some(from) => Some(Followed::new(&CheckpointPlace::parse(&from)?, &args.data)?),
                None => None,
            };
            let options = ServeOptions {
                listen,
                auth: serve::auth_mode(&auth)?,
                max_connections,
                tls,
                tls_required,
                statement_timeout,
                checkpoints,
                follow: followed.clone().map(|followed| (followed, follow_every)),
            };
            let password = match password_file {
                Some(file) => Some(serve::read_password_file(&file)?),
                None => password,
            };
            let engine = match &followed {
                Some(followed) => {
                    let newest = tastedb::backups::first_checkpoint(followed, follow_every).await?;
                    Engine::open_with(newest, &engine_options)?
                }
                None => open()?,
            };
            if let Some(url) = cluster {
                tastedb::cluster::scheduler_address(&url)?;
                let setting = tastedb::cluster::SETTING;
                let quoted = url.replace('\'', "''");
                engine.sql(&format!("SET {setting} = '{quoted}'")).await?;
            }
            serve::run(engine, options, http, password).await
        }
        Command::Demo { listen, http } => {
            demo::run(open()?, demo::DemoOptions { listen, http }).await
        }
        Command::Backup { to } => {
            let engine = match open() {
                Err(tastedb::Error::DirectoryLocked { path }) => {
                    return Err(tastedb::Error::ObjectInUse(format!(
                        "data directory {} is held by a running server: back it up online \
                         there with BACKUP TO '{}'",
                        path.display(),
                        to.display()
                    )));
                }
                opened => opened?,
            };
            let store = engine.catalog().store().clone();
            let info = store.backup(&to)?;
            eprintln!(
                "backup {} of {} in {}: {} files, {} bytes",
                info.id,
                args.data.display(),
                to.display(),
                info.files,
                info.bytes
            );
            Ok(())
        }
        Command::Restore { from, backup } => {
            let info = tastedb::storage::backup::restore(&from, &args.data, backup)?;
            eprintln!(
                "restored backup {} of {} into {}",
                info.id,
                from.display(),
                args.data.display()
            );
            Ok(())
        }
        Command::Sql {
            command,
            file,
            timing,
            quiet,
        } => {
            let output = sql::Output { timing, quiet };
            sql::run(&open()?, command, file, output).await
        }
        Command::Import {
            table,
            file,
            format,
            header,
            delimiter,
        } => {
            let options = import::ImportOptions {
                format,
                header,
                delimiter,
            };
            import::run(&open()?, &table, &file, options).await
        }
        Command::Scheduler {
            listen,
            executor_timeout,
            no_executor_grace,
        } => {
            cluster::scheduler(tastedb::cluster::processes::SchedulerOptions {
                listen,
                executor_timeout: interval("--executor-timeout", &executor_timeout)?,
                no_executor_grace: interval("--no-executor-grace", &no_executor_grace)?,
            })
            .await
        }
        Command::Executor {
            scheduler,
            listen,
            cores,
            heartbeat,
        } => {
            let cores = cores
                .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
                .unwrap_or(1);
            cluster::executor(tastedb::cluster::processes::ExecutorOptions {
                scheduler: cluster::scheduler_address(&scheduler)?,
                listen,
                cores,
                heartbeat: interval("--heartbeat", &heartbeat)?,
            })
            .await
        }
    }
}

/// A positive interval given to `flag` (PostgreSQL's forms: `500ms`, `30s`, `1min`, …).
fn interval(flag: &str, text: &str) -> Result<std::time::Duration> {
    tastedb::sql::timeouts::parse(flag, text)?
        .ok_or_else(|| Error::InvalidParameter(format!("{flag} must be longer than 0")))
}
