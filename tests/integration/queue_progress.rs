//! Live upload progress in the queue, on both stores: a report lands only while its claim
//! holds the job, and a read shows only the upload of the attempt running now.

use approval_worker::queue::{Failure, NewJob, Queue, StepDone, Unstored, UploadReport, now_ms};
use serde_json::json;

contract!(
    an_upload_report_lands_for_the_running_claim_and_is_read_back_while_it_runs,
    a_report_from_a_claim_that_lost_the_job_lands_nowhere,
);

fn report(fence: approval_worker::queue::Fence, sent: i64, started_at: i64) -> UploadReport {
    UploadReport {
        fence,
        file_index: 1,
        file_count: 2,
        file_name: "合同.pdf".to_owned(),
        bytes_sent: sent,
        bytes_total: 300_000_000,
        started_at,
    }
}

/// A job claimed and checkpointed at its PUT.
async fn uploading(queue: &Queue, now: i64) -> approval_worker::queue::ClaimedJob {
    let job = NewJob {
        payload: json!({"process_code": "PROC-1"}).to_string(),
        ..NewJob::default()
    };
    queue.enqueue(&job, now).await.unwrap();
    let claimed = queue
        .claim("default", "w1", 1, 30_000, now)
        .await
        .unwrap()
        .remove(0);
    let done = StepDone {
        step: "upload_info",
        duration_ms: 40,
        at_ms: now,
    };
    queue
        .checkpoint(claimed.fence(), &Unstored::default(), &done, "put", "{}")
        .await
        .unwrap();
    claimed
}

async fn an_upload_report_lands_for_the_running_claim_and_is_read_back_while_it_runs(queue: Queue) {
    let now = now_ms();
    let claimed = uploading(&queue, now).await;
    assert_eq!(queue.live_upload(claimed.id).await.unwrap(), None);

    let landed = queue
        .report_uploads(&[report(claimed.fence(), 1_000_000, now)], now + 1_000)
        .await
        .unwrap();
    assert_eq!(landed, 1);
    let landed = queue
        .report_uploads(&[report(claimed.fence(), 9_000_000, now)], now + 2_000)
        .await
        .unwrap();
    assert_eq!(landed, 1, "the same row, updated");
    let live = queue.live_upload(claimed.id).await.unwrap().unwrap();
    assert_eq!(
        (
            live.file_index,
            live.file_count,
            live.file_name.as_str(),
            live.bytes_sent,
            live.bytes_total,
            live.started_at,
            live.updated_at
        ),
        (1, 2, "合同.pdf", 9_000_000, 300_000_000, now, now + 2_000)
    );
    assert_eq!(live.bytes_per_sec(), Some(4_500_000.0));

    let failure = Failure {
        step: "put".to_owned(),
        message: "OSS said no".to_owned(),
        http_status: Some(503),
        duration_ms: 10,
    };
    queue
        .retry_later(
            claimed.fence(),
            &Unstored::default(),
            &failure,
            now + 60_000,
            now + 3_000,
        )
        .await
        .unwrap();
    assert_eq!(
        queue.live_upload(claimed.id).await.unwrap(),
        None,
        "a job no longer running shows no upload"
    );
}

async fn a_report_from_a_claim_that_lost_the_job_lands_nowhere(queue: Queue) {
    let now = now_ms();
    let claimed = uploading(&queue, now).await;
    // The lease runs out; another worker rescues and claims the job again.
    assert_eq!(queue.rescue(now + 31_000).await.unwrap(), [claimed.id]);
    let again = queue
        .claim("default", "w2", 1, 30_000, now + 31_000)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.id, claimed.id);

    let landed = queue
        .report_uploads(
            &[
                report(claimed.fence(), 5_000, now),
                report(again.fence(), 7_000, now + 31_000),
            ],
            now + 32_000,
        )
        .await
        .unwrap();
    assert_eq!(landed, 1, "only the live claim's report");
    let live = queue.live_upload(again.id).await.unwrap().unwrap();
    assert_eq!(live.bytes_sent, 7_000);
}
