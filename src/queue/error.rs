//! The queue's errors, and the check that refuses a schema newer than this binary.

use super::JobId;

/// Errors at the queue boundary.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused or failed a statement, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file could not be prepared.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The job was re-claimed (or finished) by someone else: this claim must stop quietly.
    #[error("lease lost on job {id} attempt {attempt}")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The attempt whose write was refused.
        attempt: i64,
    },
    /// The database is another program's: it has tables but no history of this program's
    /// migrations, so nothing is added to it.
    #[error(
        "{path} is not an approval-worker database: it holds other tables ({tables}) and no \
         approval-worker schema; give the queue a database of its own"
    )]
    NotOurs {
        /// The file or the database (its URL without the password).
        path: String,
        /// Some of the tables it holds.
        tables: String,
    },
    /// The database was migrated by a newer approval-worker than this one.
    #[error(
        "{path} has schema version {found}, newer than this approval-worker knows ({known}): \
         run the newer binary, or restore a backup taken before it migrated"
    )]
    SchemaNewer {
        /// The file or the database (its URL without the password).
        path: String,
        /// The newest migration applied to it.
        found: i64,
        /// The newest migration this binary has.
        known: i64,
    },
    /// The operation needs the other store (a SQLite file's online backup, say).
    #[error("{0}")]
    Unsupported(&'static str),
    /// No job has this id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// The job is not in a status that allows the operation.
    #[error("job {id} is {status}: {reason}")]
    WrongStatus {
        /// The job.
        id: JobId,
        /// Its current status.
        status: String,
        /// What was refused.
        reason: &'static str,
    },
}

/// Refuses a database that has migrations this binary does not know: it was migrated by a
/// newer approval-worker, whose rows this one may misread.
pub(super) fn check_schema_known(
    migrator: &sqlx::migrate::Migrator,
    applied: &[i64],
    name: &str,
) -> Result<(), QueueError> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied.iter().copied().max() {
        Some(found) if found > known => Err(QueueError::SchemaNewer {
            path: name.to_owned(),
            found,
            known,
        }),
        _ => Ok(()),
    }
}
