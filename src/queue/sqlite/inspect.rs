//! What a database file is, for `check`, read without changing it (no schema is created and
//! no migration applied).

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::BUSY_TIMEOUT_SECS;
use crate::queue::DatabaseFile;

/// Looks at the file at `path`.
pub(crate) async fn inspect_database(path: &Path) -> DatabaseFile {
    if !path.exists() {
        return DatabaseFile::Missing;
    }
    match read(path).await {
        Ok(file) => file,
        Err(e) => DatabaseFile::Unreadable(e.to_string()),
    }
}

async fn read(path: &Path) -> Result<DatabaseFile, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(BUSY_TIMEOUT_SECS));
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema \
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await?;
    let file = if !tables.iter().any(|name| name == "_sqlx_migrations") {
        if tables.is_empty() {
            DatabaseFile::Ours {
                version: 0,
                latest: latest_version(),
                jobs: 0,
            }
        } else {
            DatabaseFile::Foreign(tables.into_iter().take(5).collect::<Vec<_>>().join(", "))
        }
    } else {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await?;
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut conn)
            .await?;
        DatabaseFile::Ours {
            version: version.unwrap_or(0),
            latest: latest_version(),
            jobs,
        }
    };
    conn.close().await?;
    Ok(file)
}

fn latest_version() -> i64 {
    super::migrator()
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Queue;

    #[tokio::test]
    async fn a_file_is_told_apart_as_missing_ours_another_programs_or_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        assert_eq!(inspect_database(&path).await, DatabaseFile::Missing);
        Queue::open(&path).await.unwrap();
        let DatabaseFile::Ours {
            version,
            latest,
            jobs,
        } = inspect_database(&path).await
        else {
            panic!("expected our database");
        };
        assert_eq!((version, jobs), (latest, 0));
        assert!(latest >= 5);

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
        assert!(matches!(
            inspect_database(&garbage).await,
            DatabaseFile::Unreadable(reason) if reason.contains("not a database")
        ));

        let crm = dir.path().join("crm.db");
        let options = SqliteConnectOptions::new()
            .filename(&crm)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        assert_eq!(
            inspect_database(&crm).await,
            DatabaseFile::Foreign("customers".into())
        );
    }
}
