//! What the configured database holds, read without changing it (no schema is created and
//! no migration applied), for `check`.

use super::{Location, QueueError};

/// What the configured database holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DatabaseFile {
    /// There is no SQLite file: `migrate` or `run` creates it.
    Missing,
    /// An approval-worker database.
    Ours {
        /// The latest migration applied.
        version: i64,
        /// The latest migration this binary knows.
        latest: i64,
        /// Jobs it holds.
        jobs: i64,
    },
    /// Another program's database (up to five of its tables).
    Foreign(String),
    /// Not a database that can be read, or one that cannot be reached; the reason.
    Unreadable(String),
}

/// What the database at `location` holds, and for PostgreSQL the server's version.
pub(crate) async fn inspect(location: &Location) -> (DatabaseFile, Option<String>) {
    match location {
        Location::Sqlite(path) => (super::sqlite::inspect_database(path).await, None),
        Location::Postgres(options) => super::postgres::inspect(options).await,
    }
}

/// Whether the database at `location` holds this program's schema (a SQLite file that
/// exists, a PostgreSQL database with its migration history), so commands about existing
/// jobs can refuse to create an empty queue at a mistyped location.
pub(crate) async fn exists(location: &Location) -> Result<bool, QueueError> {
    match location {
        Location::Sqlite(path) => Ok(path.exists()),
        Location::Postgres(options) => super::postgres::has_schema(options).await,
    }
}
