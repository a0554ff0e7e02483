//! `tastedb serve`: the Postgres wire server until SIGINT or SIGTERM.

use tastedb::server::{AuthMode, ServeOptions, Server};
use tastedb::{Engine, Error, Result};

/// Name of the admin user created at first start.
pub const ADMIN_USER: &str = "tastedb";

/// Serves `engine`; creates the admin user from `password` when no user exists.
pub async fn run(engine: Engine, options: ServeOptions, password: Option<String>) -> Result<()> {
    let users = engine.users();
    if let Some(password) = password.filter(|p| !p.is_empty())
        && users.is_empty()?
    {
        users.set_password(ADMIN_USER, &password)?;
        eprintln!("created user {ADMIN_USER}");
    }
    let server = Server::bind(engine, options).await?;
    eprintln!(
        "TasteDB listening on {} (database tastedb, user {ADMIN_USER}); Ctrl-C stops it",
        server.local_addr()?
    );
    server.run(shutdown_signal()).await?;
    eprintln!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Parses `--auth`.
pub fn auth_mode(name: &str) -> Result<AuthMode> {
    match name {
        "scram" | "scram-sha-256" => Ok(AuthMode::Scram),
        "trust" => Ok(AuthMode::Trust),
        other => Err(Error::InvalidParameter(format!(
            "unknown --auth {other}; use scram-sha-256 or trust"
        ))),
    }
}

/// The password in the first line of `file` (`--password-file`); an empty or unreadable file
/// is an error.
pub fn read_password_file(file: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot read --password-file {}: {e}", file.display()),
        ))
    })?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "--password-file {} is empty",
            file.display()
        )));
    }
    Ok(password)
}
