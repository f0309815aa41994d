//! Persistence with sea-orm: the batching writer task and the database connection.
//!
//! The writer task owns every insert. It takes decoded messages from the MQTT task, writes them
//! in one transaction per batch, and only after the commit hands them to the hub and hands
//! their receipts back to the MQTT task, which acknowledges them to the broker. No actix or
//! MQTT types here: a receipt is opaque to the store.

pub mod queries;
pub mod replay;
pub mod rollup;
mod tables;
mod writer;

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

pub(crate) use writer::{dedup_key, reserve_seqs};
pub use writer::{Backlog, Incoming, Receipts, StoreHandle, Writer, WriterConfig};

/// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads and then writes is refused on the spot
/// (`SQLITE_BUSY`, whatever the busy timeout) when another writer (the store's writer, the
/// commands service, the heartbeat) wrote in between, while an immediate one waits its turn.
/// PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Connects, applies the gateway's SQLite settings (WAL, NORMAL sync, busy timeout) or turns
/// Nagle's algorithm off for PostgreSQL over TCP, and runs the migrations.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    // SQLite: one writer at a time anyway; more connections only add lock contention.
    let db = open(url, if is_sqlite(url) { 4 } else { 10 }).await?;
    Migrator::up(&db, None)
        .await
        .context("running database migrations")?;
    Ok(db)
}

/// The store writer's own connection (after [`connect`] has migrated), so that ingest never
/// waits for one behind readers: a thousand lagging clients paging from the database held
/// every connection of the shared pool, and ingest fell tenfold while they did.
pub async fn connect_writer(url: &str) -> anyhow::Result<DatabaseConnection> {
    // PostgreSQL: a second one, so a broken connection is replaced without a wait.
    open(url, if is_sqlite(url) { 1 } else { 2 }).await
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

async fn open(url: &str, connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(connections)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    if is_sqlite(url) {
        // A connection coming back from a transaction that failed (its rollback still queued,
        // or refused because SQLite had already rolled back, as it does when the disk is full)
        // is closed, not reused: sqlx would take it for one still inside a transaction, turn
        // the next BEGIN IMMEDIATE into a SAVEPOINT and so give up the write lock's ordering.
        opts.map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_release(|conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::Connection;
                    Ok(!conn.is_in_transaction())
                })
            })
        });
    } else {
        // Connections open at start, not on the first busy moment: opening one (and turning
        // Nagle off on it) took ~90 ms, a delay a client would see on its frames.
        opts.min_connections(connections.min(4));
        if let Some(port) = tcp_port(url) {
            opts.map_sqlx_postgres_pool_opts(move |pool| {
                pool.after_connect(move |_, _| {
                    Box::pin(async move {
                        // Reads /proc: off the async runtime.
                        let _ = tokio::task::spawn_blocking(move || nodelay_towards(port)).await;
                        Ok(())
                    })
                })
            });
        }
    }
    Database::connect(opts)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(url)))
}

/// The TCP port of a PostgreSQL URL; `None` when it names a Unix socket directory (`host=/...`).
fn tcp_port(url: &str) -> Option<u16> {
    let u = url::Url::parse(url).ok()?;
    let socket_dir = u
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'));
    (!socket_dir).then(|| u.port().unwrap_or(5432))
}

/// Turns Nagle's algorithm off on this process's TCP sockets connected to `port`.
///
/// sqlx 0.9 leaves it on for PostgreSQL over TCP, and gives no access to the socket: a
/// multi-row INSERT larger than one TCP segment then waits for the server's delayed ACK (up to
/// 40 ms on Linux) before its last bytes leave. The ingest benchmark's 2,000-row batches took
/// 140 ms to commit over TCP and 60 ms over the Unix socket (PostgreSQL's own log: 16 ms per
/// 1,000-row INSERT). Called after each new pool connection; setting it twice is harmless.
pub fn nodelay_towards(port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in fds.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<libc::c_int>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if is_socket && peer_port(fd) == Some(port) {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a descriptor of this process with a valid int option; if
            // the descriptor was closed meanwhile, the call fails and nothing else happens.
            let ok = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            } == 0;
            set += usize::from(ok);
        }
    }
    set
}

/// The remote port of a connected IPv4 or IPv6 socket.
fn peer_port(fd: libc::c_int) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len` bytes
    // into it and reports the family, which decides how it is read below.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return None;
        }
        match libc::c_int::from(addr.ss_family) {
            libc::AF_INET => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Some(u16::from_be(a.sin_port))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Some(u16::from_be(a.sin6_port))
            }
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodelay_reaches_the_sockets_connected_to_the_port_and_no_others() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_target = std::net::TcpStream::connect(target.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_target.nodelay().unwrap());

        assert!(nodelay_towards(target.local_addr().unwrap().port()) >= 1);
        assert!(to_target.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }

    #[test]
    fn tcp_port_of_database_urls() {
        assert_eq!(tcp_port("postgres://u@db.example:6543/x"), Some(6543));
        assert_eq!(tcp_port("postgres://u@127.0.0.1/x"), Some(5432));
        assert_eq!(
            tcp_port("postgres://u@localhost/x?host=/var/run/postgresql"),
            None
        );
    }
}
