//! Integration tests: one binary, driving the real worker and binary against the sandbox on
//! 127.0.0.1. Shared set-up lives in `helpers`.

// Test code: a failed set-up step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs each named test of the contract once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, queue) = crate::helpers::fresh_sqlite_queue().await;
                    super::$name(queue).await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(database) = crate::helpers::cluster::Database::create() else { return };
                    super::$name(database.queue().await).await;
                }
            )*
        }
    };
}

mod bad_input;
mod cli;
mod dashboard;
mod faults;
mod helpers;
mod kill;
mod multipart;
mod notify;
mod ops;
mod outcomes;
mod outcomes_queue;
mod pipeline;
mod postgres;
mod postgres_cli;
mod postgres_copy;
mod postgres_workers;
mod processes;
mod producers;
mod queue;
mod queue_progress;
mod queue_shared;
mod recovery;
mod sandbox_cli;
mod security;
mod stops;
mod stream_sdk;
mod template;
