//! Integration tests: one binary, driving the real worker and binary against the sandbox on
//! 127.0.0.1. Shared set-up lives in `helpers`.

// Test code: a failed set-up step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod cli;
mod faults;
mod helpers;
mod kill;
mod notify;
mod ops;
mod pipeline;
mod postgres;
mod processes;
mod producers;
mod queue;
mod recovery;
mod security;
mod stops;
