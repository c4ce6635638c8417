//! approval-worker submits DingTalk approval instances with file attachments, reliably, from
//! a persistent SQLite queue.
//!
//! # Layout
//! - [`queue`]: the SQLite queue, the only module with SQL (enqueue, claim, fenced
//!   checkpoints, rescue, operator queries).
//! - [`approval`]: the state machine `space → upload_info → put → commit → … → submit →
//!   done`; advances one step at a time and classifies its errors (retry, wait, give up,
//!   outcome unknown), knowing no SQL or leases.
//! - [`dingtalk`] and [`oss`]: HTTP clients for DingTalk and the OSS upload; they know
//!   nothing of jobs.
//! - `webhook`: signed outcome notifications to the producer; an HTTP client that knows
//!   nothing of jobs either.
//! - [`worker`]: the pool that claims jobs and drives them through the steps; the only
//!   module using both the queue and the state machine. What happens to a job after a step
//!   is a pure function there (`worker::policy`).
//! - [`dashboard`]: the operators' web dashboard, an HTTP face like `cli` that reads and
//!   acts through the queue only.
//! - [`sandbox`]: a DingTalk-compatible server on 127.0.0.1 for the demo and the tests.
//! - [`config`], [`cli`], [`secret`]: settings, the command line, credential hygiene;
//!   `bench`: the benchmark behind `approval-worker bench`; `clock`: time as stored;
//!   `resolved`: opening an attachment at its checked path, following no link.
//!
//! The public modules are what the binary and the integration tests use.

pub mod approval;
mod bench;
pub mod cli;
mod clock;
pub mod config;
pub mod dashboard;
pub mod dingtalk;
mod net;
pub mod oss;
pub mod queue;
mod resolved;
pub mod sandbox;
pub mod secret;
mod webhook;
pub mod worker;
