//! What a PostgreSQL database holds, read without changing it, for `check` and for the
//! commands that must not create a queue.

use sqlx::{Connection, PgConnection};

use super::{HAS_HISTORY_SQL, PgOptions, SOME_TABLES_SQL, connect_once, connect_options, migrator};
use crate::queue::{DatabaseFile, QueueError};

/// One connection to the database of `options`, outside any pool.
async fn connect(options: &PgOptions) -> Result<PgConnection, sqlx::Error> {
    connect_once(&connect_options(options)?).await
}

/// What the database holds, and the server's version when it could be reached.
pub(in crate::queue) async fn inspect(options: &PgOptions) -> (DatabaseFile, Option<String>) {
    let mut conn = match connect(options).await {
        Ok(conn) => conn,
        Err(e) => return (DatabaseFile::Unreadable(e.to_string()), None),
    };
    let server: Option<String> =
        sqlx::query_scalar("SELECT 'PostgreSQL ' || current_setting('server_version')")
            .fetch_one(&mut conn)
            .await
            .ok();
    let state = match read(&mut conn).await {
        Ok(state) => state,
        Err(e) => DatabaseFile::Unreadable(e.to_string()),
    };
    let _ = conn.close().await;
    (state, server)
}

/// Whether the database holds this program's migration history.
pub(in crate::queue) async fn has_schema(options: &PgOptions) -> Result<bool, QueueError> {
    let mut conn = connect(options).await?;
    let found: bool = sqlx::query_scalar(HAS_HISTORY_SQL)
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(found)
}

async fn read(conn: &mut PgConnection) -> Result<DatabaseFile, sqlx::Error> {
    let latest = migrator().iter().map(|m| m.version).max().unwrap_or(0);
    let has_history: bool = sqlx::query_scalar(HAS_HISTORY_SQL)
        .fetch_one(&mut *conn)
        .await?;
    if !has_history {
        let tables: Vec<String> = sqlx::query_scalar(SOME_TABLES_SQL)
            .fetch_all(&mut *conn)
            .await?;
        return Ok(if tables.is_empty() {
            DatabaseFile::Ours {
                version: 0,
                latest,
                jobs: 0,
            }
        } else {
            DatabaseFile::Foreign(tables.join(", "))
        });
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    Ok(DatabaseFile::Ours {
        version: version.unwrap_or(0),
        latest,
        jobs,
    })
}
