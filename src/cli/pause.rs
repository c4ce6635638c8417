//! `pause` and `resume`: stop and restart the claiming of one queue's jobs, in every worker
//! process at its next claim.

use clap::Args;
use serde_json::json;

use super::{CliError, open_existing_queue};
use crate::config::Config;
use crate::queue::now_ms;

/// Examples shown by `pause --help`.
pub(crate) const PAUSE_EXAMPLES: &str = "Examples:
  approval-worker pause default --reason 'DingTalk outage'
  approval-worker stats            # lists paused queues
  approval-worker resume default

No worker claims a paused queue's jobs; jobs already running go on to their end. Producers
may keep enqueueing.";

/// `pause` arguments.
#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    /// The queue (`default` unless producers name another).
    queue: String,
    /// Why, shown by `stats`.
    #[arg(long)]
    reason: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `resume` arguments.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The queue.
    queue: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn pause(config: &Config, args: PauseArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    let paused = queue
        .pause(&args.queue, args.reason.as_deref(), now_ms())
        .await;
    queue.close().await;
    let paused = paused?;
    if args.json {
        println!(
            "{}",
            json!({"queue": args.queue, "paused": true, "changed": paused})
        );
    } else if paused {
        println!(
            "queue {:?} paused: no worker claims its jobs until `resume`",
            args.queue
        );
    } else {
        println!("queue {:?} was paused already", args.queue);
    }
    Ok(())
}

pub(crate) async fn resume(config: &Config, args: ResumeArgs) -> Result<(), CliError> {
    let queue = open_existing_queue(config).await?;
    let resumed = queue.resume(&args.queue).await;
    queue.close().await;
    let resumed = resumed?;
    if args.json {
        println!(
            "{}",
            json!({"queue": args.queue, "paused": false, "changed": resumed})
        );
    } else if resumed {
        println!("queue {:?} resumed", args.queue);
    } else {
        println!("queue {:?} was not paused", args.queue);
    }
    Ok(())
}
