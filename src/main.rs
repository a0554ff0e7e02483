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
    // A panic fails its statement (XX000) and everything else goes on (`server::stop`); the
    // log gets one line for it.
    std::panic::set_hook(Box::new(|panic| {
        let location = panic.location().map(|l| l.to_string()).unwrap_or_default();
        let message = panic
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "panic: {}", message.replace('\n', " "));
    }));
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ERROR {}: {error}", error.sqlstate());
            ExitCode::FAILURE
        }
    }
}
