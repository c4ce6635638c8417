//! The outcome half of `copy-to`: the followed approvals (`outcomes`) and the outbox of
//! their notifications (`outcome_deliveries`), page by page inside the copy's transactions.

use sqlx::FromRow;

use super::copy::CopyRefused;

/// Rows per round trip.
const PAGE: i64 = 1_000;

const SOURCE_OUTCOMES_SQL: &str = "SELECT job_id, instance_id, outcome, submitted_at, \
         decided_at, learned_at, learned_from, records, checks, next_check_at, last_error, \
         callback_url, updated_at \
     FROM outcomes WHERE job_id > ?1 ORDER BY job_id LIMIT ?2";

const TARGET_OUTCOMES_SQL: &str = "\
INSERT INTO outcomes (job_id, instance_id, outcome, submitted_at, decided_at, learned_at,
                      learned_from, records, checks, next_check_at, last_error, callback_url,
                      updated_at)
SELECT job_id, instance_id, outcome, submitted_at, decided_at, learned_at, learned_from,
       records::jsonb, checks, next_check_at, last_error, callback_url, updated_at
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
            $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::text[],
            $13::bigint[])
    AS o (job_id, instance_id, outcome, submitted_at, decided_at, learned_at, learned_from,
          records, checks, next_check_at, last_error, callback_url, updated_at)";

const SOURCE_DELIVERIES_SQL: &str = "SELECT id, delivery_id, job_id, url, body, status, \
         attempts, next_attempt_at, last_status, last_error, created_at, delivered_at, \
         updated_at \
     FROM outcome_deliveries WHERE id > ?1 ORDER BY id LIMIT ?2";

/// Ids are kept: the history of a job's notifications reads in their order.
const TARGET_DELIVERIES_SQL: &str = "\
INSERT INTO outcome_deliveries (id, delivery_id, job_id, url, body, status, attempts,
                                next_attempt_at, last_status, last_error, created_at,
                                delivered_at, updated_at)
OVERRIDING SYSTEM VALUE
SELECT id, delivery_id, job_id, url, body::jsonb, status, attempts, next_attempt_at,
       last_status, last_error, created_at, delivered_at, updated_at
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[],
            $12::bigint[], $13::bigint[])
    AS d (id, delivery_id, job_id, url, body, status, attempts, next_attempt_at,
          last_status, last_error, created_at, delivered_at, updated_at)";

const TARGET_DELIVERY_SEQUENCE_SQL: &str = "SELECT setval(\
     pg_get_serial_sequence('outcome_deliveries', 'id'), \
     greatest((SELECT max(id) FROM outcome_deliveries), 1))";

#[derive(FromRow)]
struct OutcomeRow {
    job_id: i64,
    instance_id: String,
    outcome: String,
    submitted_at: i64,
    decided_at: Option<i64>,
    learned_at: Option<i64>,
    learned_from: Option<String>,
    records: Option<String>,
    checks: i64,
    next_check_at: Option<i64>,
    last_error: Option<String>,
    callback_url: Option<String>,
    updated_at: i64,
}

#[derive(FromRow)]
struct DeliveryRow {
    id: i64,
    delivery_id: String,
    job_id: i64,
    url: String,
    body: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
    updated_at: i64,
}

/// Copies every outcome row; returns how many.
pub(super) async fn copy_outcomes(
    from: &mut sqlx::SqliteConnection,
    to: &mut sqlx::PgConnection,
) -> Result<i64, CopyRefused> {
    let mut after = 0_i64;
    let mut copied = 0_i64;
    loop {
        let rows: Vec<OutcomeRow> = sqlx::query_as(SOURCE_OUTCOMES_SQL)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *from)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = last.job_id;
        copied += i64::try_from(rows.len()).unwrap_or(i64::MAX);
        sqlx::query(TARGET_OUTCOMES_SQL)
            .bind(rows.iter().map(|r| r.job_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.instance_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.submitted_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.decided_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.learned_at).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.learned_from.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.records.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.checks).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.next_check_at).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.last_error.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|r| r.callback_url.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .execute(&mut *to)
            .await?;
    }
}

/// Copies every notification with its id, then moves the target's id sequence past them;
/// returns how many.
pub(super) async fn copy_deliveries(
    from: &mut sqlx::SqliteConnection,
    to: &mut sqlx::PgConnection,
) -> Result<i64, CopyRefused> {
    let mut after = 0_i64;
    let mut copied = 0_i64;
    loop {
        let rows: Vec<DeliveryRow> = sqlx::query_as(SOURCE_DELIVERIES_SQL)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *from)
            .await?;
        let Some(last) = rows.last() else {
            sqlx::query(TARGET_DELIVERY_SEQUENCE_SQL)
                .execute(&mut *to)
                .await?;
            return Ok(copied);
        };
        after = last.id;
        copied += i64::try_from(rows.len()).unwrap_or(i64::MAX);
        sqlx::query(TARGET_DELIVERIES_SQL)
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.delivery_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.job_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.url.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.body.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.attempts).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.last_status).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.last_error.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.delivered_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .execute(&mut *to)
            .await?;
    }
}
