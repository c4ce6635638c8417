//! Outcomes and their notifications on SQLite: recording decisions, claiming reads and
//! sends, and the reads for the command line.

use super::{JobId, QueueError, SqliteStore, tx};
use crate::queue::outcome::{
    CheckDone, Decision, DecisionFollowUp, DeliveryRow, DueCheck, DueDelivery, OutcomeRow,
    OutcomeStats, Recorded, Sent, new_delivery_id,
};

/// A pending instance gets its decision; nothing changes once it has one.
const DECIDE_SQL: &str = "UPDATE outcomes SET outcome = ?1, decided_at = COALESCE(?2, ?5), \
         learned_at = ?5, learned_from = ?3, records = COALESCE(?4, records), \
         next_check_at = ?6, last_error = NULL, updated_at = ?5 \
     WHERE instance_id = ?7 AND outcome = 'pending' \
     RETURNING job_id, callback_url, submitted_at";

/// The notification of a decision just recorded, its body built from the stored rows.
const DELIVERY_INSERT_SQL: &str = "INSERT INTO outcome_deliveries \
         (delivery_id, job_id, url, body, next_attempt_at, created_at, updated_at) \
     SELECT ?1, o.job_id, ?2, json_object( \
             'event', 'approval.decided', 'delivery_id', ?1, 'job_id', o.job_id, \
             'idempotency_key', j.idempotency_key, 'queue', j.queue, \
             'instance_id', o.instance_id, 'outcome', o.outcome, \
             'decided_at', o.decided_at, 'submitted_at', o.submitted_at), ?3, ?3, ?3 \
     FROM outcomes o JOIN jobs j ON j.id = o.job_id WHERE o.job_id = ?4";

/// Due reads, oldest first, each pushed a lease ahead and counted.
const CLAIM_CHECKS_SQL: &str = "UPDATE outcomes SET next_check_at = ?1 + ?2, \
         checks = checks + 1, updated_at = ?1 \
     WHERE job_id IN (SELECT job_id FROM outcomes \
                      WHERE next_check_at IS NOT NULL AND next_check_at <= ?1 \
                      ORDER BY next_check_at LIMIT ?3) \
     RETURNING job_id, instance_id, outcome, submitted_at, checks";

/// What a read found, under its fence (`checks`).
const FINISH_CHECK_SQL: &str = "UPDATE outcomes SET next_check_at = ?3, \
         records = COALESCE(?4, records), last_error = ?5, updated_at = ?6 \
     WHERE job_id = ?1 AND checks = ?2";

/// Due sends, oldest first, each pushed a lease ahead and counted.
const CLAIM_DELIVERIES_SQL: &str = "UPDATE outcome_deliveries SET next_attempt_at = ?1 + ?2, \
         attempts = attempts + 1, updated_at = ?1 \
     WHERE id IN (SELECT id FROM outcome_deliveries \
                  WHERE status = 'pending' AND next_attempt_at <= ?1 \
                  ORDER BY next_attempt_at LIMIT ?3) \
     RETURNING id, delivery_id, job_id, url, body, attempts, created_at";

/// How a send ended, under its fence (`attempts`).
const FINISH_DELIVERY_SQL: &str = "UPDATE outcome_deliveries SET status = ?3, \
         next_attempt_at = ?4, last_status = COALESCE(?5, last_status), last_error = ?6, \
         delivered_at = ?7, updated_at = ?8 \
     WHERE id = ?1 AND attempts = ?2 AND status = 'pending'";

const OUTCOME_SQL: &str = "SELECT job_id, instance_id, outcome, submitted_at, decided_at, \
         learned_at, learned_from, records, checks, next_check_at, last_error, callback_url \
     FROM outcomes WHERE job_id = ?1";

const DELIVERIES_SQL: &str = "SELECT delivery_id, url, status, attempts, next_attempt_at, \
         last_status, last_error, created_at, delivered_at \
     FROM outcome_deliveries WHERE job_id = ?1 ORDER BY id";

const OUTCOME_COUNTS_SQL: &str =
    "SELECT outcome, COUNT(*) FROM outcomes GROUP BY outcome ORDER BY outcome";

const CHECKS_SQL: &str = "SELECT COALESCE(SUM(checks), 0) FROM outcomes";

const AWAITING_RECORDS_SQL: &str = "SELECT COUNT(*) FROM outcomes \
     WHERE next_check_at IS NOT NULL AND outcome <> 'pending'";

const DELIVERY_COUNTS_SQL: &str =
    "SELECT status, COUNT(*) FROM outcome_deliveries GROUP BY status ORDER BY status";

impl SqliteStore {
    pub(in crate::queue) async fn record_decisions(
        &self,
        decisions: &[Decision],
        follow_up: &DecisionFollowUp,
        now_ms: i64,
    ) -> Result<Vec<Option<Recorded>>, QueueError> {
        let recorded = tx::immediate(&self.pool, async |conn| {
            let mut recorded = Vec::with_capacity(decisions.len());
            for decision in decisions {
                let changed: Option<(JobId, Option<String>, i64)> = sqlx::query_as(DECIDE_SQL)
                    .bind(decision.verdict.as_str())
                    .bind(decision.decided_at_ms)
                    .bind(decision.learned_from())
                    .bind(decision.records.as_deref())
                    .bind(now_ms)
                    .bind(decision.next_check_at(follow_up, now_ms))
                    .bind(&decision.instance_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some((job_id, callback_url, submitted_at)) = changed else {
                    recorded.push(None);
                    continue;
                };
                if let Some(url) = callback_url.or_else(|| follow_up.default_url.clone()) {
                    sqlx::query(DELIVERY_INSERT_SQL)
                        .bind(new_delivery_id())
                        .bind(url)
                        .bind(now_ms)
                        .bind(job_id)
                        .execute(&mut *conn)
                        .await?;
                }
                recorded.push(Some(Recorded {
                    job_id,
                    submitted_at,
                }));
            }
            Ok(recorded)
        })
        .await?;
        self.count_commit();
        Ok(recorded)
    }

    pub(in crate::queue) async fn claim_checks(
        &self,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<DueCheck>, QueueError> {
        let claimed = sqlx::query_as(CLAIM_CHECKS_SQL)
            .bind(now_ms)
            .bind(lease_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        self.count_commit();
        Ok(claimed)
    }

    pub(in crate::queue) async fn finish_check(
        &self,
        done: &CheckDone,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let result = sqlx::query(FINISH_CHECK_SQL)
            .bind(done.job_id)
            .bind(done.checks)
            .bind(done.next_check_at)
            .bind(done.records.as_deref())
            .bind(done.error.as_deref())
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(result.rows_affected() == 1)
    }

    pub(in crate::queue) async fn claim_deliveries(
        &self,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<DueDelivery>, QueueError> {
        let claimed = sqlx::query_as(CLAIM_DELIVERIES_SQL)
            .bind(now_ms)
            .bind(lease_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        self.count_commit();
        Ok(claimed)
    }

    pub(in crate::queue) async fn finish_delivery(
        &self,
        id: i64,
        attempts: i64,
        sent: &Sent,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let (status, next_attempt_at, last_status, last_error, delivered_at) = sent.columns(now_ms);
        let result = sqlx::query(FINISH_DELIVERY_SQL)
            .bind(id)
            .bind(attempts)
            .bind(status)
            .bind(next_attempt_at)
            .bind(last_status)
            .bind(last_error)
            .bind(delivered_at)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(result.rows_affected() == 1)
    }

    pub(in crate::queue) async fn outcome(
        &self,
        id: JobId,
    ) -> Result<Option<OutcomeRow>, QueueError> {
        Ok(sqlx::query_as(OUTCOME_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(in crate::queue) async fn deliveries(
        &self,
        id: JobId,
    ) -> Result<Vec<DeliveryRow>, QueueError> {
        Ok(sqlx::query_as(DELIVERIES_SQL)
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub(in crate::queue) async fn outcome_stats(&self) -> Result<OutcomeStats, QueueError> {
        let by_outcome = sqlx::query_as(OUTCOME_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await?;
        let checks = sqlx::query_scalar(CHECKS_SQL).fetch_one(&self.pool).await?;
        let awaiting_records = sqlx::query_scalar(AWAITING_RECORDS_SQL)
            .fetch_one(&self.pool)
            .await?;
        let deliveries = sqlx::query_as(DELIVERY_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await?;
        Ok(OutcomeStats {
            by_outcome,
            checks,
            awaiting_records,
            deliveries,
        })
    }
}
