//! Saying clearly why the database cannot be opened: which file or host, and the cause once, within
//! a few seconds (a refused PostgreSQL says so instead of a pool timing out).
use sea_orm::sqlx::Connection;
use std::path::Path;
use std::time::Duration;

/// How long a first connection may take before appkeys gives up and says so.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database a URL names, without credentials: `the SQLite file ./appkeys.db()` or
/// `PostgreSQL at db.example.com:5432/appkeys`.
pub(super) fn describe(url: &str) -> String {
    if let Some(path) = sqlite_path(url) {
        return format!("(the SQLite file {path})");
    }
    match postgres_target(url) {
        Some(target) => format!("(PostgreSQL at {target})"),
        None => "(the URL given with --database-url / DATABASE_URL)".to_owned(),
    }
}

/// Whether a URL names a PostgreSQL database (the two schemes its URLs use).
pub(super) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest))
}

/// Where a PostgreSQL URL connects, as the driver reads it (a `host=` parameter, a socket
/// directory, the `PG…` environment, the driver's default socket), without its password.
fn postgres_target(url: &str) -> Option<String> {
    if !is_postgres(url) {
        return None;
    }
    let options: sea_orm::sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    let port = options.get_port();
    let database = options.get_database().unwrap_or(options.get_username());
    let host = options.get_host();
    // A socket directory, given as one or as a host that is a path, as the driver connects.
    let socket = options
        .get_socket()
        .map(|dir| dir.display().to_string())
        .or_else(|| host.starts_with('/').then(|| host.to_owned()));
    Some(match socket {
        Some(dir) => format!("the socket {}/.s.PGSQL.{port}, database {database}", dir.trim_end_matches('/')),
        None => format!("{host}:{port}/{database}"),
    })
}

/// Opens one connection first, to report the real cause quickly.
pub(super) async fn probe(url: &str) -> Result<(), String> {
    if let Some(path) = sqlite_path(url) {
        return probe_sqlite(path);
    }
    if is_postgres(url) {
        let connecting = sea_orm::sqlx::PgConnection::connect(url);
        return match tokio::time::timeout(PROBE_TIMEOUT, connecting).await {
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
            Ok(Err(error)) => Err(sqlx_cause(&error)),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(())
            }
        };
    }
    Err("the URL must start with sqlite:// or postgres://".into())
}

/// A SQLite file can be opened if it exists and is writable, or its directory can take a new file.
fn probe_sqlite(path: &str) -> Result<(), String> {
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    let file = Path::new(path);
    if file.exists() {
        let metadata = std::fs::metadata(file).map_err(|e| e.to_string())?;
        if metadata.permissions().readonly() {
            return Err("the file is read-only".into());
        }
        return Ok(());
    }
    let directory = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !directory.is_dir() {
        return Err(format!("the directory {} does not exist", directory.display()));
    }
    tempfile::tempfile_in(directory).map(|_| ()).map_err(|error| directory_problem(directory, &error))
}

/// Why a new file cannot be made in `directory`.
fn directory_problem(directory: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            format!("the directory {} is read-only ({error})", directory.display())
        }
        _ => format!("cannot create a file in {}: {error}", directory.display()),
    }
}

fn sqlx_cause(error: &sea_orm::sqlx::Error) -> String {
    match error {
        sea_orm::sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is PostgreSQL running there?)".into()
        }
        sea_orm::sqlx::Error::Io(io) => io.to_string(),
        sea_orm::sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// The innermost message of a connection error, once.
pub(super) fn cause(error: &sea_orm::DbErr) -> String {
    let text = error.to_string();
    text.rsplit(": ").next().unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_named_without_its_password() {
        assert_eq!(describe("sqlite://appkeys.db()?mode=rwc"), "(the SQLite file appkeys.db())");
        assert_eq!(
            describe("postgres://app:s3cret@db.example.com:6543/keys"),
            "(PostgreSQL at db.example.com:6543/keys)"
        );
        assert_eq!(describe("postgres://db.example.com/keys"), "(PostgreSQL at db.example.com:5432/keys)");
        assert!(!describe("postgres://app:s3cret@h/d").contains("s3cret"));
        assert_eq!(
            describe("postgres:///keys?host=/var/run/postgresql/&user=app"),
            "(PostgreSQL at the socket /var/run/postgresql/.s.PGSQL.5432, database keys)",
            "a socket is named as one, not as localhost"
        );
        assert_eq!(
            describe("postgresql://app@%2Ftmp:5433/keys"),
            "(PostgreSQL at the socket /tmp/.s.PGSQL.5433, database keys)"
        );
        assert_eq!(describe("postgres://app@h?sslmode=require"), "(PostgreSQL at h:5432/app)", "the user's database");
    }

    #[tokio::test]
    async fn a_refused_postgresql_is_reported_as_refused_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let url = format!("postgres://postgres@127.0.0.1:{}/none", port.expect("a free port"));
        let started = std::time::Instant::now();
        let error = probe(&url).await.expect_err("nothing listens there");
        assert!(error.contains("connection refused"), "{error}");
        assert!(started.elapsed() < PROBE_TIMEOUT);
    }

    #[test]
    fn a_read_only_directory_is_named() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let message = directory_problem(Path::new("/srv/appkeys"), &denied);
        assert!(message.starts_with("the directory /srv/appkeys is read-only"), "{message}");
        let missing = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(directory_problem(Path::new("/srv"), &missing).starts_with("cannot create a file in /srv"));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let error = probe_sqlite("/no/such/dir/appkeys.db()").expect_err("no such directory");
        assert_eq!(error, "the directory /no/such/dir does not exist");
    }
}
