//! `tastedb serve`: the Postgres wire server until SIGINT or SIGTERM.

use tastedb::engine::CurrentEngine;
use tastedb::http::{HttpOptions, HttpServer};
use tastedb::server::{Alongside, AuthMode, ServeOptions, Server};
use tastedb::{Engine, Error, Result};
use tokio_util::sync::CancellationToken;

/// Name of the admin user created at first start.
pub const ADMIN_USER: &str = "tastedb";

/// Serves `engine` over the wire protocol and, with `http`, over HTTP; creates the admin user
/// from `password` when no user exists.
pub async fn run(
    engine: Engine,
    options: ServeOptions,
    http: Option<HttpOptions>,
    password: Option<String>,
) -> Result<()> {
    let users = engine.users();
    if let Some(password) = password.filter(|p| !p.is_empty())
        && users.is_empty()?
    {
        users.set_password(ADMIN_USER, &password)?;
        eprintln!("created user {ADMIN_USER}");
    }
    let signalled = shutdown_signal();
    // one engine for both servers, which a replica's follower replaces for both
    let engine = CurrentEngine::new(engine);
    let server = Server::bind(engine.clone(), options).await?;
    eprintln!(
        "TasteDB listening on {} (database tastedb, user {ADMIN_USER}); Ctrl-C stops it",
        server.local_addr()?
    );
    let http = match http {
        Some(http) => {
            let scheme = if http.tls.is_some() { "https" } else { "http" };
            let http = HttpServer::bind(engine, http).await?;
            eprintln!(
                "HTTP API and console on {scheme}://{} (Authorization: Bearer <key from CREATE API KEY>)",
                http.local_addr()?
            );
            Some(http)
        }
        None => None,
    };
    run_until(server, http, signalled).await?;
    eprintln!("stopped");
    Ok(())
}

/// Runs the wire server and, if given, the HTTP server on its runtime until `signalled`;
/// then both stop (the HTTP server letting its requests in flight finish).
pub async fn run_until(
    server: Server,
    http: Option<HttpServer>,
    signalled: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let stop = CancellationToken::new();
    let alongside: Vec<Alongside> = http
        .into_iter()
        .map(|http| Box::pin(http.run(stop.clone().cancelled_owned())) as Alongside)
        .collect();
    let stopping = stop.clone();
    let shutdown = async move {
        signalled.await;
        stopping.cancel();
    };
    let ran = server.run_with(shutdown, alongside).await;
    stop.cancel();
    ran
}

/// Completes at SIGINT (Ctrl-C) or SIGTERM. The signals are taken over when it is called, not
/// when it is first awaited: a signal that comes in between is not lost (nor kills the
/// process with the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for {name}");
            None
        }
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        let received = |signal: &mut Option<tokio::signal::unix::Signal>| {
            let signal = signal.take();
            async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = received(&mut interrupt) => {}
            _ = received(&mut terminate) => {}
        }
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
