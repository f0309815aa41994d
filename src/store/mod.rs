//! Persistence with sea-orm: the batching writer task and the database connection.
//!
//! The writer task owns every insert. It takes decoded messages from the MQTT task, writes them
//! in one transaction per batch, and only after the commit hands them to the hub and
//! acknowledges them to the broker. No actix types here.

pub mod queries;
pub mod replay;
mod writer;

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

pub use writer::{Incoming, StoreHandle, Writer, WriterConfig};

/// Connects, applies the gateway's SQLite settings (WAL, NORMAL sync, busy timeout), and runs
/// the migrations.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    if url.starts_with("sqlite:") {
        // One writer at a time anyway; more connections only add lock contention.
        opts.max_connections(4);
    } else {
        opts.max_connections(10);
    }
    let db = Database::connect(opts)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(url)))?;
    Migrator::up(&db, None)
        .await
        .context("running database migrations")?;
    Ok(db)
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
