//! The `tastedb` command line: run SQL on a data directory, import files.

use clap::Parser;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Statements run on threads with the stack that deep ones need (`engine::depth`); the
    // command itself runs in a task, not on the main thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(tastedb::engine::depth::STATEMENT_STACK_BYTES)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ERROR 58000: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { runtime.spawn(command()).await }) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ERROR XX000: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn command() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TASTEDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ERROR {}: {error}", error.sqlstate());
            ExitCode::FAILURE
        }
    }
}
