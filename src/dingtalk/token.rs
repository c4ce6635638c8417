//! The app access-token cache: refresh before expiry, one fetch at a time, targeted invalidation.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::DingTalkError;
use crate::secret::Secret;

/// Refresh at most this long before DingTalk's stated expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A token with the moment we stop trusting it.
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Outcome of the most recent fetch, so callers that queued behind a failed fetch share its
/// error instead of each hammering the token endpoint in turn.
struct LastFetch {
    generation: u64,
    error: Option<DingTalkError>,
}

/// Cache of one app's access token, shared by every clone of the client.
pub(super) struct TokenCache {
    // std mutexes: held only to copy or compare, never across an await.
    current: Mutex<Option<Cached>>,
    last: Mutex<LastFetch>,
    /// Serialises fetches (single flight); the token itself lives in `current`.
    fetching: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl TokenCache {
    pub(super) fn new() -> Self {
        Self {
            current: Mutex::new(None),
            last: Mutex::new(LastFetch {
                generation: 0,
                error: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached token if it is still fresh, else the result of one `fetch` shared by all
    /// concurrent callers. `fetch` returns the token and its lifetime.
    pub(super) async fn get<F, Fut>(&self, fetch: F) -> Result<Secret, DingTalkError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), DingTalkError>>,
    {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.generation.load(Ordering::Acquire);
        let _single_flight = self.fetching.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.generation != seen {
                // A fetch finished while we waited and produced no usable token.
                if let Some(error) = &last.error {
                    return Err(error.clone());
                }
            }
        }
        let result = fetch().await;
        let error = match &result {
            Ok((token, lifetime)) => {
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
                    token: token.clone(),
                    refresh_at: Instant::now() + trusted_for(*lifetime),
                });
                None
            }
            Err(error) => Some(error.clone()),
        };
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = LastFetch { generation, error };
        result.map(|(token, _)| token)
    }

    /// Forgets `failed` if it is still the cached token; a newer token fetched meanwhile by
    /// another caller is kept, so one stale request cannot trigger a second refresh.
    pub(super) fn invalidate(&self, failed: &Secret) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|cached| &cached.token == failed)
        {
            *current = None;
        }
    }

    fn fresh(&self) -> Option<Secret> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|cached| Instant::now() < cached.refresh_at)
            .map(|cached| cached.token.clone())
    }
}

/// How long a token with DingTalk's stated `lifetime` is used before refreshing: a margin of
/// a tenth of the lifetime, at most five minutes, absorbs clock drift and slow calls.
fn trusted_for(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(MAX_REFRESH_MARGIN.min(lifetime / 10))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn counting_fetch(
        calls: &Arc<AtomicUsize>,
        lifetime: Duration,
    ) -> impl Future<Output = Result<(Secret, Duration), DingTalkError>> + use<> {
        let calls = Arc::clone(calls);
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok((Secret::new(format!("token-{n}")), lifetime))
        }
    }

    #[test]
    fn refresh_margin_is_a_tenth_capped_at_five_minutes() {
        let secs = Duration::from_secs;
        assert_eq!(trusted_for(secs(7200)), secs(6900));
        assert_eq!(trusted_for(secs(100)), secs(90));
        assert_eq!(trusted_for(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn cached_while_fresh_refetched_when_stale() {
        let cache = TokenCache::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let hour = Duration::from_secs(7200);
        let t1 = cache.get(|| counting_fetch(&calls, hour)).await.unwrap();
        let again = cache.get(|| counting_fetch(&calls, hour)).await.unwrap();
        assert_eq!((t1.expose(), again.expose()), ("token-1", "token-1"));

        // A token that is already due for refresh is never handed out twice.
        let cache = TokenCache::new();
        let t = cache
            .get(|| counting_fetch(&calls, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(t.expose(), "token-2");
        let t = cache
            .get(|| counting_fetch(&calls, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(t.expose(), "token-3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_renewed_a_tenth_of_its_lifetime_before_it_expires() {
        let cache = TokenCache::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let lifetime = Duration::from_secs(1);
        let first = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        // The fetch itself took 20 ms of the paused clock; the token was cached after it.
        tokio::time::advance(Duration::from_millis(890)).await;
        let still = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        assert_eq!((first.expose(), still.expose()), ("token-1", "token-1"));
        tokio::time::advance(Duration::from_millis(20)).await;
        let renewed = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        assert_eq!(
            renewed.expose(),
            "token-2",
            "renewed before DingTalk's expiry"
        );
        // DingTalk's two hours: renewed five minutes early, not twelve.
        let cache = TokenCache::new();
        let hours = Duration::from_secs(7200);
        cache.get(|| counting_fetch(&calls, hours)).await.unwrap();
        tokio::time::advance(Duration::from_secs(7200 - 301)).await;
        assert_eq!(
            cache
                .get(|| counting_fetch(&calls, hours))
                .await
                .unwrap()
                .expose(),
            "token-3"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache
                .get(|| counting_fetch(&calls, hours))
                .await
                .unwrap()
                .expose(),
            "token-4"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
                tokio::spawn(async move {
                    cache
                        .get(|| counting_fetch(&calls, Duration::from_secs(7200)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().expose(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn waiters_share_a_failed_fetch() {
        let cache = Arc::new(TokenCache::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
                tokio::spawn(async move {
                    cache
                        .get(|| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err(DingTalkError::Config("boom".into()))
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A later caller tries again rather than reusing the old failure.
        let t = cache
            .get(|| counting_fetch(&calls, Duration::from_secs(7200)))
            .await
            .unwrap();
        assert_eq!(t.expose(), "token-2");
    }

    #[tokio::test]
    async fn invalidate_only_forgets_the_failed_token() {
        let cache = TokenCache::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let lifetime = Duration::from_secs(7200);
        let t1 = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        cache.invalidate(&Secret::new("some-older-token"));
        let same = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        assert_eq!(same, t1);
        cache.invalidate(&t1);
        let t2 = cache
            .get(|| counting_fetch(&calls, lifetime))
            .await
            .unwrap();
        assert_eq!(t2.expose(), "token-2");
    }
}
